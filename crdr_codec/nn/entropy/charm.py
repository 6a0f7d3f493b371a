"""Channel-wise autoregressive context model with latent residual prediction
(Minnen & Singh 2020, "ChARM"), as used by CRDR.

y (B, M, h, w) is split into S equal slices along channels, coded in order. Slice k is
modelled as a Gaussian whose mean and scale come from small conv nets fed with the
hyper-synthesis output and up to ``max_support`` earlier decoded slices. After a slice
is quantised, a third net predicts its quantisation residual (LRP), bounded to +-0.5.

The per-slice step (:meth:`ChannelContext.params` then :meth:`ChannelContext.refine`)
is the single implementation used by training, encoding and decoding, so encoder and
decoder compute identical parameters.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from ...config import ModelConfig
from ..layers import conv

# Scales are coded by index into this fixed, log-spaced table (same range as
# CompressAI's default): predicted scale -> smallest table entry >= it.
SCALE_MIN, SCALE_MAX, SCALE_LEVELS = 0.11, 256.0, 64


def scale_table() -> Tensor:
    return torch.exp(
        torch.linspace(math.log(SCALE_MIN), math.log(SCALE_MAX), SCALE_LEVELS, dtype=torch.float64)
    ).float()


def scale_to_index(scale: Tensor, table: Tensor) -> Tensor:
    """Index of the smallest table entry >= scale (clamped to the table), int64."""
    return torch.searchsorted(table, scale.contiguous(), right=False).clamp_(max=len(table) - 1)


def _slice_net(cin: int, hidden: tuple[int, int], cout: int) -> nn.Sequential:
    h1, h2 = hidden
    return nn.Sequential(
        conv(cin, h1, 5), nn.ReLU(inplace=True),
        conv(h1, h2, 5), nn.ReLU(inplace=True),
        conv(h2, cout, 3),
    )


class ChannelContext(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.num_slices = cfg.num_slices
        self.max_support = cfg.max_support
        s, m = cfg.slice_channels, cfg.latent
        widths = [m + s * min(k, cfg.max_support) for k in range(cfg.num_slices)]
        self.mean_nets = nn.ModuleList([_slice_net(w, cfg.charm_hidden, s) for w in widths])
        self.scale_nets = nn.ModuleList([_slice_net(w, cfg.charm_hidden, s) for w in widths])
        self.lrp_nets = nn.ModuleList([_slice_net(w + s, cfg.charm_hidden, s) for w in widths])

    def _support(self, k: int, decoded: list[Tensor]) -> list[Tensor]:
        return decoded[: min(k, self.max_support)]

    def params(
        self, k: int, hyper_mean: Tensor, hyper_scale: Tensor, decoded: list[Tensor]
    ) -> tuple[Tensor, Tensor]:
        """Mean and scale of slice k given the hyper output and earlier decoded slices."""
        sup = self._support(k, decoded)
        mu = self.mean_nets[k](torch.cat([hyper_mean, *sup], dim=1))
        scale = self.scale_nets[k](torch.cat([hyper_scale, *sup], dim=1))
        return mu, scale

    def refine(self, k: int, hyper_mean: Tensor, decoded: list[Tensor], y_hat_k: Tensor) -> Tensor:
        """Add the latent residual prediction to a quantised slice."""
        sup = self._support(k, decoded)
        lrp = self.lrp_nets[k](torch.cat([hyper_mean, *sup, y_hat_k], dim=1))
        return y_hat_k + 0.5 * torch.tanh(lrp)
