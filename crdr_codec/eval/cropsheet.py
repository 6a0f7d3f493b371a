"""The crop sheet of ``crdr eval``: the same detailed window of one image, crdr beside the anchors.

crdr is shown at the q whose rate is closest to ``--crop-bpp``, at the lowest and highest
beta of the run; each anchor at its quality closest to that crdr rate. The window is the
square with the most gradient energy (:func:`detail_window`), where coding artefacts and
synthesized texture show best. The panels are saved one by one under ``plots/crops/``
and together as ``plots/crops.png``.
"""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from crdr_codec.errors import ParameterError
from crdr_codec.eval.anchors import Anchor
from crdr_codec.eval.config import EvalConfig
from crdr_codec.eval.store import OURS, ResultStore, anchor_setting, num, ours_setting
from crdr_codec.fileutil import atomic_write_bytes
from crdr_codec.image_io import read_image

__all__ = ["detail_window", "make_crop_sheet"]


def detail_window(rgb: np.ndarray, size: int) -> Tuple[int, int, int]:
    """Top-left corner and side of the square window with the most gradient energy.

    Detail-rich regions show coding artefacts and synthesized texture best. The side is
    ``size`` or the image's short side if smaller; candidates lie on a grid of step
    ``side / 8``.
    """
    h, w = rgb.shape[:2]
    s = max(1, min(size, h, w))
    g = rgb.astype(np.float32).mean(axis=2)
    energy = np.zeros_like(g)
    energy[:, 1:] += np.abs(np.diff(g, axis=1))
    energy[1:, :] += np.abs(np.diff(g, axis=0))
    integral = np.pad(energy, ((1, 0), (1, 0))).cumsum(0).cumsum(1)
    step = max(1, s // 8)
    best, best_pos = -1.0, (0, 0)
    for y in range(0, h - s + 1, step):
        for x in range(0, w - s + 1, step):
            e = integral[y + s, x + s] - integral[y, x + s] - integral[y + s, x] + integral[y, x]
            if e > best:
                best, best_pos = float(e), (y, x)
    return best_pos[0], best_pos[1], s


def _write_png(path: Path, rgb: np.ndarray) -> None:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG")
    atomic_write_bytes(path, buf.getvalue())


def make_crop_sheet(cfg: EvalConfig, store: ResultStore, anchors: Sequence[Anchor], codec: Any,
                    pdir: Path) -> Optional[Path]:
    """Write the crops and ``pdir/crops.png``; returns its path (None: no crdr result yet).

    Args:
        codec: the :class:`~crdr_codec.codec.Codec` that decodes the stored ``.crdr`` file.

    Raises:
        ParameterError: ``--crop-image`` is not one of the evaluated images.
    """
    from crdr_codec.eval import plots

    names = [p.name for p in store.images]
    if cfg.crop_image is not None and cfg.crop_image not in names:
        raise ParameterError(f"--crop-image {cfg.crop_image} is not one of the evaluated images")
    image = cfg.crop_image or names[0]
    path = next(p for p in store.images if p.name == image)
    b_lo, b_hi = min(cfg.betas), max(cfg.betas)
    ours = [(q, store.row(image, OURS, ours_setting(q, b_lo))) for q in cfg.qs]
    ours = [(q, r) for q, r in ours if r is not None]
    if not ours:
        return None
    target = max(cfg.crop_bpp, 1e-6)
    q, row = min(ours, key=lambda qr: abs(math.log(max(num(qr[1]["bpp"]), 1e-9) / target)))
    ref = read_image(path)
    data = (store.out / row["file"]).read_bytes()
    bpp_ours = num(row["bpp"])

    def caption(title: str, r: Dict[str, str]) -> str:
        return (f"{title}\n{num(r['bpp']):.3f} bpp  {num(r['psnr']):.2f} dB\n"
                f"LPIPS {num(r['lpips']):.3f}  MS-SSIM {num(r['ms_ssim']):.3f}")

    recs: List[Tuple[str, np.ndarray, str]] = [("original", ref, f"original\n{image}\n{ref.shape[1]}x{ref.shape[0]}")]
    for b in ([b_lo, b_hi] if b_hi > b_lo else [b_lo]):
        r = store.csv.rows[(image, OURS, ours_setting(q, b))]
        recs.append((f"crdr_q{q:g}_beta{b:g}", codec.decode(data, b), caption(f"crdr q={q:g} β={b:g}", r)))
    for a in anchors:
        cands = [(qa, store.row(image, a.name, anchor_setting(int(qa)))) for qa in cfg.qualities(a.name)]
        cands = [(qa, r) for qa, r in cands if r is not None]
        if not cands:
            continue
        qa, r = min(cands, key=lambda c: abs(math.log(max(num(c[1]["bpp"]), 1e-9) / max(bpp_ours, 1e-9))))
        encoded = a.encode(ref, int(qa))
        cap = caption(f"{a.label} q={qa}", r)
        if len(encoded) != int(r["bytes"]):  # a non-deterministic encoder: say so
            cap += f"\n(re-encoded: {len(encoded)} B, CSV {r['bytes']} B)"
        recs.append((f"{a.name}_q{qa}", a.decode(encoded), cap))
    y0, x0, s = detail_window(ref, cfg.crop_size)
    crop_dir = pdir / "crops"
    crop_dir.mkdir(parents=True, exist_ok=True)
    panels = []
    for key, img, cap in recs:
        crop = np.ascontiguousarray(img[y0 : y0 + s, x0 : x0 + s])
        _write_png(crop_dir / f"{Path(image).stem}_{key}.png", crop)
        panels.append((crop, cap))
    scale = max(1, 256 // s)
    title = (f"{image}, {s}x{s} crop at ({x0},{y0}); anchors at the quality closest to "
             f"crdr's {bpp_ours:.3f} bpp; numbers for the whole image")
    return plots.crop_sheet(panels, pdir / "crops.png", title=title, columns=4, scale=scale)
