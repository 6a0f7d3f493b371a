"""Hyper-analysis h_a and hyper-synthesis h_s (Minnen & Singh 2020 style).

h_a: y -> conv3x3 -> ReLU -> conv5x5/2 -> ReLU -> conv5x5/2 -> z
h_s: z_hat -> two branches (means, scales), each up5x5*2 -> ReLU -> up5x5*2 -> ReLU -> conv3x3.
Neither depends on q or beta, so entropy decoding never depends on the realism setting.
"""

from __future__ import annotations

from torch import Tensor, nn

from ...config import ModelConfig
from ..layers import conv, deconv


class HyperAnalysis(nn.Sequential):
    def __init__(self, cfg: ModelConfig) -> None:
        m, mid, h = cfg.latent, cfg.hyper_mid, cfg.hyper
        super().__init__(
            conv(m, m, 3), nn.ReLU(inplace=True),
            conv(m, mid, 5, 2), nn.ReLU(inplace=True),
            conv(mid, h, 5, 2),
        )


def _branch(cfg: ModelConfig) -> nn.Sequential:
    h, mid, m = cfg.hyper, cfg.hyper_mid, cfg.latent
    return nn.Sequential(
        deconv(h, h), nn.ReLU(inplace=True),
        deconv(h, mid), nn.ReLU(inplace=True),
        conv(mid, m, 3),
    )


class HyperSynthesis(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.mean = _branch(cfg)
        self.scale = _branch(cfg)

    def forward(self, z_hat: Tensor) -> tuple[Tensor, Tensor]:
        return self.mean(z_hat), self.scale(z_hat)
