"""Tiled evaluation of a fully convolutional transform with overlap blending.

Large images are pushed through g_a and g_s tile by tile to bound memory. Neighbouring
tiles overlap; in the overlap the outputs are cross-faded with linear ramps, so seams
are invisible. The entropy model always sees the whole latent, so tiling never changes
the file format, only how the transforms are computed.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor


def _starts(length: int, tile: int, overlap: int) -> list[int]:
    if length <= tile:
        return [0]
    step = tile - overlap
    starts = list(range(0, length - tile, step)) + [length - tile]
    return sorted(set(starts))


def _ramp(n: int, ramp: int, left: bool, right: bool) -> Tensor:
    w = torch.ones(n)
    if ramp > 0:
        r = (torch.arange(ramp, dtype=torch.float32) + 0.5) / ramp
        if left:
            w[:ramp] = torch.minimum(w[:ramp], r)
        if right:
            w[n - ramp :] = torch.minimum(w[n - ramp :], r.flip(0))
    return w


def tiled(
    fn: Callable[[Tensor], Tensor], x: Tensor, tile: int, overlap: int, scale: float, out_channels: int
) -> Tensor:
    """Apply ``fn`` to overlapping tiles of x (1, C, H, W) and blend the results.

    Args:
        fn: maps (1, C, h, w) to (1, out_channels, h*scale, w*scale).
        tile, overlap: tile size and overlap in input pixels (overlap < tile).
        scale: spatial scale factor of fn (16 for g_s, 1/16 for g_a).
    """
    _, _, h, w = x.shape
    if h <= tile and w <= tile:
        return fn(x)
    oh, ow = round(h * scale), round(w * scale)
    out = torch.zeros(1, out_channels, oh, ow)
    norm = torch.zeros(1, 1, oh, ow)
    ramp = round(overlap * scale)
    ys, xs = _starts(h, tile, overlap), _starts(w, tile, overlap)
    for y0 in ys:
        for x0 in xs:
            th, tw = min(tile, h - y0), min(tile, w - x0)
            part = fn(x[:, :, y0 : y0 + th, x0 : x0 + tw]).float().cpu()
            py, px = round(y0 * scale), round(x0 * scale)
            ph, pw = part.shape[-2:]
            wy = _ramp(ph, ramp, y0 > 0, y0 + th < h)
            wx = _ramp(pw, ramp, x0 > 0, x0 + tw < w)
            wgt = (wy[:, None] * wx[None, :])[None, None]
            out[:, :, py : py + ph, px : px + pw] += part * wgt
            norm[:, :, py : py + ph, px : px + pw] += wgt
    return out / norm
