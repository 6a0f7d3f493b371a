"""Per-quality-level patch discriminators for HRRGAN (paper Sec. 3.4).

All variants are unconditional (image only), use LeakyReLU(0.2), 3x3 convolutions, no
normalisation, and output patch logits at 1/16 resolution.

* ``hybrid`` (default, the paper's design): a shared backbone (first two stages) and
  one head per quality level (last two stages + 3x3 conv to one channel).
* ``separate``: one full discriminator per level (the released reference config).
"""

from __future__ import annotations

from torch import Tensor, nn

from ..config import NUM_LEVELS


def _stage(cin: int, cout: int) -> list[nn.Module]:
    return [
        nn.Conv2d(cin, cout, 3, 1, 1), nn.LeakyReLU(0.2, inplace=True),
        nn.Conv2d(cout, cout, 3, 2, 1), nn.LeakyReLU(0.2, inplace=True),
    ]


def _backbone(widths: tuple[int, ...]) -> nn.Sequential:
    layers: list[nn.Module] = []
    cin = 3
    for c in widths:
        layers += _stage(cin, c)
        cin = c
    return nn.Sequential(*layers)


def _head(cin: int, widths: tuple[int, ...]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for c in widths:
        layers += _stage(cin, c)
        cin = c
    layers.append(nn.Conv2d(cin, 1, 3, 1, 1))
    return nn.Sequential(*layers)


class MultiLevelDiscriminator(nn.Module):
    """D(x, level) -> patch logits (B, 1, H/16, W/16) for integer level in [0, levels)."""

    def __init__(
        self, kind: str = "hybrid", width: int = 64, levels: int = NUM_LEVELS
    ) -> None:
        super().__init__()
        w = (width, 2 * width, 4 * width, 8 * width)
        self.kind = kind
        if kind == "hybrid":
            self.shared = _backbone(w[:2])
            self.heads = nn.ModuleList([_head(w[1], w[2:]) for _ in range(levels)])
        elif kind == "separate":
            self.shared = nn.Identity()
            self.heads = nn.ModuleList(
                [nn.Sequential(_backbone(w[:2]), _head(w[1], w[2:])) for _ in range(levels)]
            )
        else:
            raise ValueError(f"unknown discriminator kind {kind!r}; use 'hybrid' or 'separate'")

    def forward(self, x: Tensor, level: int) -> Tensor:
        return self.heads[level](self.shared(x))
