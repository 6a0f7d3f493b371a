"""Tiled evaluation of a fully convolutional transform with overlap blending.

Large images are pushed through g_a and g_s tile by tile to bound memory. Neighbouring
tiles overlap; in the overlap the outputs are cross-faded with linear ramps, so seams
are invisible. The entropy model always sees the whole latent, so tiling never changes
the file format, only how the transforms are computed.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

Array = np.ndarray  # (1, C, H, W) float32


def _starts(length: int, tile: int, overlap: int) -> list[int]:
    if length <= tile:
        return [0]
    step = tile - overlap
    starts = list(range(0, length - tile, step)) + [length - tile]
    return sorted(set(starts))


def _ramp(n: int, ramp: int, left: bool, right: bool) -> np.ndarray:
    w = np.ones(n, np.float32)
    if ramp > 0:
        r = (np.arange(ramp, dtype=np.float32) + np.float32(0.5)) / np.float32(ramp)
        if left:
            w[:ramp] = np.minimum(w[:ramp], r)
        if right:
            w[n - ramp :] = np.minimum(w[n - ramp :], r[::-1])
    return w


def tiled(
    fn: Callable[[Array], Array], x: Array, tile: int, overlap: int, scale: float, out_channels: int
) -> Array:
    """Apply ``fn`` to overlapping tiles of x (1, C, H, W) and blend the results.

    ``x`` may be a tensor or anything with a ``shape`` and tensor-like 4-D slicing
    (e.g. an image that converts each tile on demand).

    Args:
        fn: maps (1, C, h, w) to (1, out_channels, h*scale, w*scale).
        tile, overlap: tile size and overlap in input pixels (overlap < tile).
        scale: spatial scale factor of fn (16 for g_s, 1/16 for g_a).
    """
    _, _, h, w = x.shape
    if h <= tile and w <= tile:
        return fn(x[:, :, 0:h, 0:w])
    out = np.empty((1, out_channels, round(h * scale), round(w * scale)), np.float32)

    def emit(r0: int, r1: int, rows: Array) -> None:
        out[:, :, r0:r1] = rows

    tiled_rows(fn, x, tile, overlap, scale, out_channels, emit)
    return out


def tiled_rows(
    fn: Callable[[Array], Array], x: Array, tile: int, overlap: int, scale: float,
    out_channels: int, emit: Callable[[int, int, Array], None],
) -> None:
    """:func:`tiled`, delivering the result in finished bands of rows instead of whole.

    Only one row of tiles is held at a time: when a
    row of tiles is done, every output row above the next row of tiles is final and is
    passed to ``emit(r0, r1, rows)`` (``rows``: (1, out_channels, r1 - r0, W*scale)),
    top to bottom, each row once. Memory is bounded by the tile height, not the image.
    """
    _, _, h, w = x.shape
    oh, ow = round(h * scale), round(w * scale)
    ramp = round(overlap * scale)
    ys, xs = _starts(h, tile, overlap), _starts(w, tile, overlap)
    carry: tuple[Array, Array] | None = None
    for i, y0 in enumerate(ys):
        th = min(tile, h - y0)
        py, ph = round(y0 * scale), round(th * scale)
        out = np.zeros((1, out_channels, ph, ow), np.float32)
        norm = np.zeros((1, 1, ph, ow), np.float32)
        if carry is not None:  # rows of the previous tile row still open: its partial sums
            n = carry[0].shape[2]
            out[:, :, :n], norm[:, :, :n] = carry
        for x0 in xs:
            tw = min(tile, w - x0)
            part = np.asarray(fn(x[:, :, y0 : y0 + th, x0 : x0 + tw]), dtype=np.float32)
            px = round(x0 * scale)
            pw = part.shape[-1]
            if part.shape[-2] != ph:
                raise ValueError(f"fn gave {part.shape[-2]} rows for a tile of {th}, expected {ph}")
            wy = _ramp(ph, ramp, y0 > 0, y0 + th < h)
            wx = _ramp(pw, ramp, x0 > 0, x0 + tw < w)
            wgt = (wy[:, None] * wx[None, :])[None, None]
            out[:, :, :, px : px + pw] += part * wgt
            norm[:, :, :, px : px + pw] += wgt
        done = (round(ys[i + 1] * scale) if i + 1 < len(ys) else oh) - py
        emit(py, py + done, out[:, :, :done] / norm[:, :, :done])
        carry = (out[:, :, done:].copy(), norm[:, :, done:].copy())
