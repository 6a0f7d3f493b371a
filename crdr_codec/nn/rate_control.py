"""Interpolated channel attention (ICA): CRDR's rate control (paper Sec. 3.2).

Each ICA layer holds a raw scale vector and a bias vector per quality level
(shape (levels, C)). For a continuous q in [0, levels-1] the raw parameters of the two
neighbouring levels are linearly interpolated, then ``y = softplus(w_q) * x + b_q``.
Initialised to the identity (softplus(w) = 1, b = 0) so a single-rate model can be
extended to multi-rate training without changing its output.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..config import NUM_LEVELS

_IDENTITY_RAW = math.log(math.e - 1.0)  # softplus(_IDENTITY_RAW) == 1


def level_weights(q: Tensor, levels: int = NUM_LEVELS) -> tuple[Tensor, Tensor, Tensor]:
    """Split q (B,) into lower level index, upper level index and fraction."""
    q = q.clamp(0.0, levels - 1.0)
    lo = torch.floor(q).long().clamp(max=levels - 1)
    hi = (lo + 1).clamp(max=levels - 1)
    frac = (q - lo.to(q.dtype))
    return lo, hi, frac


class ICA(nn.Module):
    """Channel-wise scale and bias selected by a continuous quality level q."""

    def __init__(self, channels: int, levels: int = NUM_LEVELS) -> None:
        super().__init__()
        self.levels = levels
        self.weight = nn.Parameter(torch.full((levels, channels), _IDENTITY_RAW))
        self.bias = nn.Parameter(torch.zeros(levels, channels))

    def forward(self, x: Tensor, q: Tensor) -> Tensor:
        """Args: x (B, C, H, W); q (B,) float levels in [0, levels-1]."""
        lo, hi, frac = level_weights(q, self.levels)
        f = frac.to(self.weight.dtype)[:, None]
        w = (1 - f) * self.weight[lo] + f * self.weight[hi]
        b = (1 - f) * self.bias[lo] + f * self.bias[hi]
        return x * F.softplus(w)[:, :, None, None].to(x.dtype) + b[:, :, None, None].to(x.dtype)
