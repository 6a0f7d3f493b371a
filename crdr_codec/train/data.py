"""Training data: folders of PNG/JPEG photos, random crops and flips.

Sampling is a pure function of (seed, step, rank): every batch is drawn with a
generator seeded from those numbers, so a resumed run sees exactly the batches the
uninterrupted run would have seen, with no sampler state to save.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..errors import CrdrError

EXTENSIONS = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff"}


def list_images(folders: list[str] | tuple[str, ...]) -> list[Path]:
    files: list[Path] = []
    for f in folders:
        p = Path(f)
        if not p.is_dir():
            raise CrdrError(f"training data folder not found: {p}")
        files += sorted(x for x in p.rglob("*") if x.suffix.lower() in EXTENSIONS)
    if not files:
        raise CrdrError(f"no PNG/JPEG images found in {', '.join(map(str, folders))}")
    return files


def _load(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def step_generator(seed: int, step: int, rank: int = 0) -> torch.Generator:
    g = torch.Generator()
    g.manual_seed((seed * 1_000_003 + step) * 257 + rank)
    return g


class CropSampler:
    """Draws batches of random crops (reflect-padded if an image is smaller) with flips."""

    def __init__(self, files: list[Path], cache: bool = True) -> None:
        self.files = files
        self.cache = [_load(f) for f in files] if cache else None

    def __len__(self) -> int:
        return len(self.files)

    def image(self, i: int) -> np.ndarray:
        return self.cache[i] if self.cache is not None else _load(self.files[i])

    def crop(self, img: np.ndarray, size: int, g: torch.Generator) -> np.ndarray:
        h, w = img.shape[:2]
        if h < size or w < size:
            ph, pw = max(0, size - h), max(0, size - w)
            mode = "reflect" if ph < h and pw < w else "symmetric"
            img = np.pad(img, ((0, ph), (0, pw), (0, 0)), mode=mode)
            h, w = img.shape[:2]
        y0 = int(torch.randint(0, h - size + 1, (1,), generator=g))
        x0 = int(torch.randint(0, w - size + 1, (1,), generator=g))
        out = img[y0 : y0 + size, x0 : x0 + size]
        if torch.rand(1, generator=g).item() < 0.5:
            out = out[:, ::-1]
        return out

    def batch(self, size: int, batch: int, g: torch.Generator) -> torch.Tensor:
        """A (batch, 3, size, size) float32 tensor in [-1, 1]."""
        idx = torch.randint(0, len(self.files), (batch,), generator=g).tolist()
        crops = np.stack([self.crop(self.image(i), size, g) for i in idx])
        x = torch.from_numpy(np.ascontiguousarray(crops)).permute(0, 3, 1, 2).float()
        return x / 127.5 - 1.0


class StepBatches(torch.utils.data.Dataset):
    """Map-style view "step -> batch" so DataLoader workers can prepare batches ahead.

    Because every batch is a pure function of (seed, step, rank), prefetching in worker
    processes gives exactly the batches the main process would have drawn.
    """

    def __init__(self, sampler: CropSampler, crop_at, seed: int, rank: int) -> None:
        self.sampler, self.crop_at, self.seed, self.rank = sampler, crop_at, seed, rank

    def __len__(self) -> int:
        return 1 << 62

    def __getitem__(self, step: int) -> torch.Tensor:
        crop, batch = self.crop_at(step)
        return self.sampler.batch(crop, batch, step_generator(self.seed, step, self.rank))


def prefetching_loader(dataset: StepBatches, start: int, end: int, workers: int):
    """Batches for steps start..end-1, prepared by ``workers`` processes (in step order)."""
    return iter(
        torch.utils.data.DataLoader(
            dataset, batch_size=None, sampler=range(start, end), num_workers=workers,
            prefetch_factor=2, persistent_workers=False,
        )
    )
