"""Training data: folders of PNG/JPEG photos, random crops and flips.

Sampling is a pure function of (seed, step, rank): every batch is drawn with a
generator seeded from those numbers, so a resumed run sees exactly the batches the
uninterrupted run would have seen, with no sampler state to save.
"""

from __future__ import annotations

from fnmatch import fnmatch
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..errors import CrdrError
from ..formats import IMAGE_EXTENSIONS as EXTENSIONS


def list_images(folders: list[str] | tuple[str, ...],
                exclude: list[str] | tuple[str, ...] = ()) -> list[Path]:
    """PNG/JPEG files under ``folders`` (sorted per folder), leaving out every file whose
    name matches one of the ``exclude`` glob patterns (a held-out set, e.g. ``budgie_*``)."""
    files: list[Path] = []
    for f in folders:
        p = Path(f)
        if not p.is_dir():
            raise CrdrError(f"training data folder not found: {p}")
        files += sorted(x for x in p.rglob("*") if x.suffix.lower() in EXTENSIONS
                        and not any(fnmatch(x.name, pat) for pat in exclude))
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

    def batch_u8(self, size: int, batch: int, g: torch.Generator) -> torch.Tensor:
        """A (batch, 3, size, size) uint8 tensor: the crops of :meth:`batch`, 4x fewer
        bytes to move between processes and to the GPU (:func:`to_unit` converts them)."""
        idx = torch.randint(0, len(self.files), (batch,), generator=g).tolist()
        crops = np.stack([self.crop(self.image(i), size, g) for i in idx])
        return torch.from_numpy(np.ascontiguousarray(crops)).permute(0, 3, 1, 2)

    def batch(self, size: int, batch: int, g: torch.Generator) -> torch.Tensor:
        """A (batch, 3, size, size) float32 tensor in [-1, 1]."""
        return to_unit(self.batch_u8(size, batch, g))


def to_unit(x: torch.Tensor) -> torch.Tensor:
    """uint8 pixels -> float32 in [-1, 1]; the same values on any device (one IEEE
    division and one subtraction per element), a float batch is returned as it is."""
    if x.dtype != torch.uint8:
        return x
    return x.float() / 127.5 - 1.0


class StepBatches(torch.utils.data.Dataset):
    """Map-style view "step -> batch" so DataLoader workers can prepare batches ahead.

    Because every batch is a pure function of (seed, step, rank), prefetching in worker
    processes gives exactly the batches the main process would have drawn. With
    ``raw=True`` the batches stay uint8 (what the workers hand over; the trainer converts
    them with :func:`to_unit` on its device).
    """

    def __init__(self, sampler: CropSampler, crop_at, seed: int, rank: int, raw: bool = False) -> None:
        self.sampler, self.crop_at, self.seed, self.rank = sampler, crop_at, seed, rank
        self.raw = raw

    def __len__(self) -> int:
        return 1 << 62

    def __getitem__(self, step: int) -> torch.Tensor:
        crop, batch = self.crop_at(step)
        g = step_generator(self.seed, step, self.rank)
        return self.sampler.batch_u8(crop, batch, g) if self.raw else self.sampler.batch(crop, batch, g)


def prefetching_loader(dataset: StepBatches, start: int, end: int, workers: int,
                       pin_memory: bool = False, prefetch: int = 2):
    """Batches for steps start..end-1, prepared by ``workers`` processes (in step order).
    ``pin_memory`` (for a CUDA device) lets the copy to the GPU overlap the step."""
    return iter(
        torch.utils.data.DataLoader(
            dataset, batch_size=None, sampler=range(start, end), num_workers=workers,
            prefetch_factor=prefetch, persistent_workers=False, pin_memory=pin_memory,
        )
    )
