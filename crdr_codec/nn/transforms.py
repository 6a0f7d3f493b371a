"""Analysis g_a and synthesis g_s transforms (ELIC-style, with ICA and beta conditioning).

g_a (ICA after every module)::

    x -> conv/2 -> RBxK -> conv/2 -> RBxK -> Attn -> conv/2 -> RBxK -> conv/2 -> Attn -> y

g_s (ICA before every module; residual units conditioned on beta)::

    y -> Attn -> up*2 -> RBxK(beta) -> up*2 -> Attn -> RBxK(beta) -> up*2 -> RBxK(beta) -> up*2 -> x_hat

Rates: q (B,) selects ICA scales in both transforms; beta (B,) only enters g_s.
"""

from __future__ import annotations

from torch import Tensor, nn

from .conditioning import BetaEmbedding
from ..config import ModelConfig
from .layers import Attention, ResidualBottleneck, conv, deconv
from .rate_control import ICA


class _Stack(nn.Module):
    """K residual bottleneck units applied in sequence (one module for ICA purposes)."""

    def __init__(self, channels: int, mid: int, units: int, cond_dim: int = 0) -> None:
        super().__init__()
        self.units = nn.ModuleList(
            [ResidualBottleneck(channels, mid, cond_dim) for _ in range(units)]
        )

    def forward(self, x: Tensor, c: Tensor | None = None) -> Tensor:
        for u in self.units:
            x = u(x, c)
        return x


def _maybe_attention(channels: int, enabled: bool) -> nn.Module:
    return Attention(channels) if enabled else nn.Identity()


class AnalysisTransform(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        n, m, mid, k = cfg.enc_width, cfg.latent, cfg.enc_mid, cfg.res_units
        self.blocks = nn.ModuleList([
            conv(3, n, 5, 2), _Stack(n, mid, k),
            conv(n, n, 5, 2), _Stack(n, mid, k), _maybe_attention(n, cfg.attention),
            conv(n, n, 5, 2), _Stack(n, mid, k),
            conv(n, m, 5, 2), _maybe_attention(m, cfg.attention),
        ])
        widths = [n, n, n, n, n, n, n, m, m]
        self.ica = nn.ModuleList([ICA(c) for c in widths])

    def forward(self, x: Tensor, q: Tensor) -> Tensor:
        for block, ica in zip(self.blocks, self.ica):
            x = ica(block(x), q)
        return x


class SynthesisTransform(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        n, m, mid, k, cd = cfg.dec_width, cfg.latent, cfg.dec_mid, cfg.res_units, cfg.cond_dim
        self.embed = BetaEmbedding(cd, cfg.fourier_bands)
        self.blocks = nn.ModuleList([
            _maybe_attention(m, cfg.attention), deconv(m, n),
            _Stack(n, mid, k, cd), deconv(n, n),
            _maybe_attention(n, cfg.attention), _Stack(n, mid, k, cd), deconv(n, n),
            _Stack(n, mid, k, cd), deconv(n, 3),
        ])
        widths = [m, m, n, n, n, n, n, n, n]
        self.ica = nn.ModuleList([ICA(c) for c in widths])

    def reset_beta_conditioning(self) -> None:
        """Fresh beta conditioning that leaves the output unchanged for every beta
        (stage 3 starts it from here; stages 1-2 never train it)."""
        self.embed.reset_parameters()
        for m in self.modules():
            if isinstance(m, ResidualBottleneck) and m.cond_dim:
                m.reset_conditioning()

    def forward(self, y: Tensor, q: Tensor, beta: Tensor) -> Tensor:
        c = self.embed(beta).to(y.dtype)
        for block, ica in zip(self.blocks, self.ica):
            y = ica(y, q)
            y = block(y, c) if isinstance(block, _Stack) else block(y)
        return y
