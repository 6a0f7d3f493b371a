"""Generic building blocks of the transforms (no CRDR-specific logic).

* :class:`ResidualBottleneck`: ELIC's residual bottleneck unit, 1x1 -> 3x3 -> 1x1 with
  a skip; optionally conditioned by per-channel shifts computed from an embedding
  (CRDR's beta conditioning, paper Sec. 3.3).
* :class:`Attention`: the simplified attention block of Cheng et al. 2020,
  ``x + trunk(x) * sigmoid(mask(x))``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class Conv1x1(nn.Conv2d):
    """A 1x1 convolution that is bit-identical for any CPU thread count at inference.

    oneDNN's 1x1 convolution changes its reduction order with the number of threads
    (differences of ~1e-7, enough to flip a rounded pixel), which would make decoded
    images depend on ``torch.set_num_threads``. A plain matrix product does not, and is
    as fast here; training (grad enabled) keeps the regular convolution.
    """

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__(cin, cout, 1)

    def forward(self, x: Tensor) -> Tensor:
        if torch.is_grad_enabled():
            return super().forward(x)
        b, c, h, w = x.shape
        w_ = self.weight.view(self.out_channels, c).to(x.dtype)
        y = torch.matmul(w_, x.reshape(b, c, h * w))
        return (y + self.bias.view(1, -1, 1).to(x.dtype)).view(b, -1, h, w)


def conv(cin: int, cout: int, k: int = 5, stride: int = 1) -> nn.Conv2d:
    if k == 1 and stride == 1:
        return Conv1x1(cin, cout)
    return nn.Conv2d(cin, cout, k, stride=stride, padding=k // 2)


def deconv(cin: int, cout: int, k: int = 5, stride: int = 2) -> nn.ConvTranspose2d:
    return nn.ConvTranspose2d(
        cin, cout, k, stride=stride, padding=k // 2, output_padding=stride - 1
    )


class ResidualBottleneck(nn.Module):
    """x + conv1x1(relu(conv3x3(relu(conv1x1(x))))), optionally beta-conditioned.

    With ``cond_dim`` > 0 the unit takes an embedding ``c`` of shape (B, cond_dim) and
    adds three learned projections of it as per-channel shifts: after the first
    1x1+ReLU, after the 3x3+ReLU, and after the last 1x1 (before the skip).
    """

    def __init__(self, channels: int, mid: int, cond_dim: int = 0) -> None:
        super().__init__()
        self.conv1 = conv(channels, mid, 1)
        self.conv2 = conv(mid, mid, 3)
        self.conv3 = conv(mid, channels, 1)
        self.cond_dim = cond_dim
        if cond_dim:
            self.proj = nn.ModuleList(
                [nn.Linear(cond_dim, mid), nn.Linear(cond_dim, mid), nn.Linear(cond_dim, channels)]
            )
            self.reset_conditioning()

    def reset_conditioning(self) -> None:
        """Zero projections: the unit ignores beta until training teaches it otherwise."""
        for p in self.proj:
            nn.init.zeros_(p.weight)
            nn.init.zeros_(p.bias)

    def forward(self, x: Tensor, c: Tensor | None = None) -> Tensor:
        h = torch.relu(self.conv1(x))
        if self.cond_dim:
            h = h + self.proj[0](c)[:, :, None, None]
        h = torch.relu(self.conv2(h))
        if self.cond_dim:
            h = h + self.proj[1](c)[:, :, None, None]
        h = self.conv3(h)
        if self.cond_dim:
            h = h + self.proj[2](c)[:, :, None, None]
        return x + h


class _AttnUnit(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        half = max(channels // 2, 1)
        self.body = nn.Sequential(
            conv(channels, half, 1), nn.ReLU(inplace=True),
            conv(half, half, 3), nn.ReLU(inplace=True),
            conv(half, channels, 1),
        )

    def forward(self, x: Tensor) -> Tensor:
        return torch.relu(x + self.body(x))


class Attention(nn.Module):
    """Simplified attention: ``x + trunk(x) * sigmoid(mask(x))`` (Cheng et al. 2020)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.trunk = nn.Sequential(*[_AttnUnit(channels) for _ in range(3)])
        self.mask = nn.Sequential(*[_AttnUnit(channels) for _ in range(3)], conv(channels, channels, 1))

    def forward(self, x: Tensor) -> Tensor:
        return x + self.trunk(x) * torch.sigmoid(self.mask(x))
