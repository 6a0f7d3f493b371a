"""Plots of ``crdr eval`` results (matplotlib with the non-interactive Agg backend).

All functions take plain data (the curves of the summary JSON, numpy images) and write a
PNG; none needs torch. A curve is a dict with ``label``, ``codec`` (``"crdr"`` or an
anchor name), ``beta`` (ours only) and ``points``: a list of dicts with at least ``bpp``
and the metric keys (``psnr``, ``ms_ssim``, ``lpips``, ``fid``, ``kid``), plus ``q``
(ours) or ``quality`` (anchors). Missing metrics are ``None`` and are skipped.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

__all__ = ["rd_plot", "beta_sweep_plot", "crop_sheet", "METRIC_LABELS"]

#: Axis label and direction ("higher" or "lower" is better) per metric.
METRIC_LABELS: Dict[str, Tuple[str, str]] = {
    "psnr": ("RGB PSNR (dB)", "higher"),
    "ms_ssim": ("MS-SSIM (RGB)", "higher"),
    "lpips": ("LPIPS-Alex", "lower"),
    "fid": ("FID (patches)", "lower"),
    "kid": ("KID (patches)", "lower"),
}

_ANCHOR_MARKERS = ("s", "D", "^", "v", "P", "X", "<", ">")
_BETA_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and math.isfinite(v)


def _xy(points: Sequence[Dict[str, Any]], xkey: str, ykey: str) -> Tuple[List[float], List[float]]:
    pts = [(p[xkey], p[ykey]) for p in points if _finite(p.get(xkey)) and _finite(p.get(ykey))]
    pts.sort()
    return [a for a, _ in pts], [b for _, b in pts]


def _save(fig, path: os.PathLike | str) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.png")
    fig.savefig(tmp, dpi=fig.get_dpi())
    os.replace(tmp, path)
    return path


def _our_colors(n: int) -> List[Any]:
    plt = _pyplot()
    cmap = plt.get_cmap("plasma")
    return [cmap(0.05 + 0.75 * (i / max(1, n - 1))) for i in range(n)]


def rd_plot(
    curves: Sequence[Dict[str, Any]],
    metric: str,
    path: os.PathLike | str,
    title: str = "",
    note: Optional[str] = None,
) -> Path:
    """Rate-``metric`` curves of all codecs in one plot.

    Our curves (one per beta) are solid lines in a plasma colour ramp (dark = beta 0);
    anchors are dashed with their own markers.

    Args:
        curves: curves as in the summary JSON.
        metric: ``psnr``, ``ms_ssim``, ``lpips``, ``fid`` or ``kid``.
        path: output PNG.
        title: plot title.
        note: a small footnote (e.g. the FID sample-size warning).

    Returns:
        The written path.
    """
    plt = _pyplot()
    ylabel, better = METRIC_LABELS[metric]
    ours = [c for c in curves if c["codec"] == "crdr"]
    others = [c for c in curves if c["codec"] != "crdr"]
    fig, ax = plt.subplots(figsize=(8.0, 5.6), dpi=110)
    for c, color in zip(ours, _our_colors(len(ours))):
        x, y = _xy(c["points"], "bpp", metric)
        if x:
            ax.plot(x, y, "-o", color=color, lw=2.0, ms=4, label=c["label"], zorder=3)
    anchor_cmap = plt.get_cmap("tab10")
    for i, c in enumerate(others):
        x, y = _xy(c["points"], "bpp", metric)
        if x:
            ax.plot(x, y, "--", marker=_ANCHOR_MARKERS[i % len(_ANCHOR_MARKERS)],
                    color=anchor_cmap(i % 10), lw=1.4, ms=4, label=c["label"], zorder=2)
    ax.set_xlabel("bits per pixel (from the actual file sizes)")
    ax.set_ylabel(f"{ylabel}, {better} is better")
    ax.set_xlim(left=0)
    ax.grid(True, alpha=0.3)
    if title:
        ax.set_title(title, fontsize=11)
    if ax.has_data():
        ax.legend(fontsize=8, loc="best")
    else:
        ax.text(0.5, 0.5, f"no {metric} values", ha="center", va="center", transform=ax.transAxes)
    if note:
        fig.text(0.01, 0.005, note, fontsize=7, color="0.3", ha="left", va="bottom", wrap=True)
    fig.tight_layout(rect=(0, 0.04 if note else 0, 1, 1))
    out = _save(fig, path)
    plt.close(fig)
    return out


def _pick_spread(values: Sequence[float], k: int) -> List[float]:
    """Up to ``k`` values spread evenly over the sorted ``values``."""
    vals = sorted(values)
    if len(vals) <= k:
        return vals
    idx = sorted({int(round(i)) for i in np.linspace(0, len(vals) - 1, k)})
    return [vals[i] for i in idx]


def beta_sweep_plot(
    curves: Sequence[Dict[str, Any]],
    path: os.PathLike | str,
    max_q: int = 4,
    title: str = "",
    fid_note: Optional[str] = None,
) -> Path:
    """PSNR against LPIPS (left) and against FID (right, if computed) at fixed q.

    Each line is one q (up to ``max_q`` q values spread over the sweep), coloured by q;
    its points are the betas, one marker shape per beta (hollow: the smallest beta). Moving along a line costs no bits: it is the same file decoded
    with another beta.

    Args:
        curves: curves as in the summary JSON (only ``codec == "crdr"`` ones are used).
        path: output PNG.
        max_q: how many q values to draw.
        title: figure title.
        fid_note: the FID sample-size warning, shown under the FID panel.
    """
    plt = _pyplot()
    ours = [c for c in curves if c["codec"] == "crdr"]
    # Regroup: q -> [(beta, point)].
    by_q: Dict[float, List[Tuple[float, Dict[str, Any]]]] = {}
    for c in ours:
        for p in c["points"]:
            by_q.setdefault(float(p["q"]), []).append((float(c["beta"]), p))
    qs = _pick_spread(list(by_q), max_q)
    has_fid = any(_finite(p.get("fid")) for c in ours for p in c["points"])
    panels = ["lpips"] + (["fid"] if has_fid else [])
    fig, axes = plt.subplots(1, len(panels), figsize=(6.2 * len(panels), 5.4), dpi=110, squeeze=False)
    colors = plt.get_cmap("viridis")
    betas = sorted({b for pts in by_q.values() for b, _ in pts})
    markers = {b: _BETA_MARKERS[i % len(_BETA_MARKERS)] for i, b in enumerate(betas)}
    from matplotlib.lines import Line2D

    for ax, metric in zip(axes[0], panels):
        for i, q in enumerate(qs):
            pts = sorted(by_q[q], key=lambda bp: bp[0])
            ok = [(p[metric], p["psnr"], b) for b, p in pts if _finite(p.get(metric)) and _finite(p.get("psnr"))]
            if not ok:
                continue
            bpp = np.mean([p["bpp"] for _, p in pts])
            color = colors(0.1 + 0.8 * i / max(1, len(qs) - 1))
            ax.plot([o[0] for o in ok], [o[1] for o in ok], "-", color=color, lw=1.5,
                    label=f"q={q:g} ({bpp:.3f} bpp)")
            for x, y, b in ok:
                ax.plot([x], [y], markers[b], color=color, ms=7, mfc="white" if b == betas[0] else color)
        handles, _ = ax.get_legend_handles_labels()
        handles += [Line2D([], [], ls="", marker=markers[b], color="0.3", mfc="white" if b == betas[0] else "0.3",
                           label=f"β={b:g}") for b in betas]
        label, _ = METRIC_LABELS[metric]
        ax.set_xlabel(f"{label}, lower is more realistic/closer")
        ax.set_ylabel("RGB PSNR (dB), higher is better")
        ax.grid(True, alpha=0.3)
        if ax.has_data():
            ax.legend(handles=handles, fontsize=8, loc="best")
        if metric == "fid" and fid_note:
            ax.set_title("FID: " + _wrap(fid_note, 70), fontsize=7, color="0.3")
        elif metric == "lpips":
            ax.set_title("same file per line; beta chosen at decode time", fontsize=8, color="0.3")
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    out = _save(fig, path)
    plt.close(fig)
    return out


def _wrap(text: str, width: int) -> str:
    import textwrap

    return "\n".join(textwrap.wrap(text, width))


def crop_sheet(
    panels: Sequence[Tuple[np.ndarray, str]],
    path: os.PathLike | str,
    title: str = "",
    columns: int = 4,
    scale: int = 1,
) -> Path:
    """A grid of same-size crops with captions, shown pixel for pixel (no smoothing).

    Args:
        panels: ``(crop, caption)`` pairs; crops are uint8 ``(h, w, 3)`` of equal size.
        path: output PNG.
        title: sheet title.
        columns: panels per row.
        scale: integer magnification (nearest neighbour) so small crops stay visible.
    """
    plt = _pyplot()
    if not panels:
        raise ValueError("no panels to draw")
    h, w = panels[0][0].shape[:2]
    cols = min(columns, len(panels))
    rows = int(math.ceil(len(panels) / cols))
    dpi = 100
    cap_in = 0.62  # caption height per row, inches
    pw, ph = w * scale / dpi, h * scale / dpi
    fig = plt.figure(figsize=(cols * (pw + 0.1) + 0.1, rows * (ph + cap_in) + (0.4 if title else 0.1)), dpi=dpi)
    W, H = fig.get_size_inches()
    top = 0.4 if title else 0.1
    for k, (img, caption) in enumerate(panels):
        r, c = divmod(k, cols)
        left = 0.1 + c * (pw + 0.1)
        bottom = H - top - (r + 1) * (ph + cap_in) + cap_in
        ax = fig.add_axes((left / W, bottom / H, pw / W, ph / H))
        shown = np.repeat(np.repeat(img, scale, 0), scale, 1) if scale > 1 else img
        ax.imshow(shown, interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
        for spine in ax.spines.values():  # a frame would paint over the crop's edge pixels
            spine.set_visible(False)
        ax.text(0.0, -0.02, caption, transform=ax.transAxes, ha="left", va="top", fontsize=7.5,
                family="monospace")
    if title:
        fig.text(0.5, 1 - 0.12 / H, title, ha="center", va="top", fontsize=10)
    out = _save(fig, path)
    plt.close(fig)
    return out
