"""CRDRModel: one network for every rate (q) and every distortion/realism balance (beta).

Data flow (paper Fig. 2)::

    x --g_a(q)--> y --h_a--> z --Q--> z_hat --h_s--> (mean, scale) hyper features
                  |                                         |
                  +-- slice k: ChARM params(k) -> Q(y_k - mu_k) -> + mu_k -> LRP -> y_hat_k
    y_hat --g_s(q, beta)--> x_hat

Three entry points share the slice step of :class:`ChannelContext`:

* :meth:`CRDRModel.entropy_forward` (training; straight-through rounding),
* :meth:`CRDRModel.compress` and :meth:`CRDRModel.decompress` (real range coding).

Everything that decides the coded symbols (h_s, the context nets, the coder) runs on
the CPU in float32; only g_a and g_s may run elsewhere (see :meth:`place`).
Images here are float tensors in [-1, 1], already padded to a multiple of 64.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from .config import ModelConfig
from .entropy.charm import ChannelContext, scale_table, scale_to_index
from .entropy.coder import Decoder, Encoder, YTables, ZTables
from .entropy.hyperprior import HyperAnalysis, HyperSynthesis
from .transforms import AnalysisTransform, SynthesisTransform


def ste_round(x: Tensor) -> Tensor:
    """Round with a straight-through gradient."""
    return x + (torch.round(x) - x).detach()


@dataclass(frozen=True)
class CodedLatent:
    """What the encoder's entropy coding produced for one latent."""

    payload: bytes  # the range coder's words (little-endian uint32)
    y_hat: Tensor  # the latent the decoder will reconstruct, bit for bit
    check: int  # CRC-32 of the coded integer symbols (stored in the file header)


@dataclass(frozen=True)
class EntropyOutput:
    y_hat: Tensor  # (B, M, h, w) quantised latent incl. LRP, straight-through
    means: Tensor  # (B, M, h, w)
    scales: Tensor  # (B, M, h, w) raw predicted scales (lower-bounded by the likelihood)


def default_z_tables(channels: int, half_width: int = 32, std: float = 4.0) -> dict[str, Tensor]:
    """A generic discretised Gaussian prior for z (used only before training exports one)."""
    support = torch.arange(-half_width, half_width + 1, dtype=torch.float64)
    pmf = torch.exp(-0.5 * (support / std) ** 2)
    pmf = (pmf / pmf.sum()).float()
    return {
        "medians": torch.zeros(channels),
        "pmf": pmf.repeat(channels, 1),
        "lengths": torch.full((channels,), 2 * half_width + 1, dtype=torch.int32),
        "minsym": torch.full((channels,), -half_width, dtype=torch.int32),
    }


class CRDRModel(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.g_a = AnalysisTransform(cfg)
        self.g_s = SynthesisTransform(cfg)
        self.h_a = HyperAnalysis(cfg)
        self.h_s = HyperSynthesis(cfg)
        self.context = ChannelContext(cfg)
        self.register_buffer("scale_table", scale_table(), persistent=False)
        self.set_z_tables(default_z_tables(cfg.hyper))
        self._coder_tables: tuple[ZTables, YTables] | None = None

    # ------------------------------------------------------------------ tables
    def set_z_tables(self, tables: dict[str, Tensor]) -> None:
        """Install the coding tables of z: medians, pmf (C, L), lengths, minsym."""
        self.z_tables = {
            "medians": tables["medians"].float().cpu(),
            "pmf": tables["pmf"].float().cpu(),
            "lengths": tables["lengths"].to(torch.int32).cpu(),
            "minsym": tables["minsym"].to(torch.int32).cpu(),
        }
        self._coder_tables = None

    def _tables(self) -> tuple[ZTables, YTables]:
        if self._coder_tables is None:
            t = self.z_tables
            self._coder_tables = (
                ZTables(t["pmf"].numpy(), t["lengths"].numpy()),
                YTables(self.scale_table.cpu().numpy()),
            )
        return self._coder_tables

    def place(self, device: torch.device | str) -> "CRDRModel":
        """Run g_a and g_s on ``device``; keep everything that decides symbols on the CPU."""
        self.cpu()
        self.g_a.to(device)
        self.g_s.to(device)
        return self

    # ------------------------------------------------------------------ training path
    def entropy_forward(self, y: Tensor, z_hat: Tensor) -> EntropyOutput:
        """Slice loop with straight-through rounding (for training and rate estimates)."""
        hyper_mean, hyper_scale = self.h_s(z_hat)
        decoded: list[Tensor] = []
        means, scales = [], []
        for k, y_k in enumerate(y.chunk(self.cfg.num_slices, dim=1)):
            mu, sc = self.context.params(k, hyper_mean, hyper_scale, decoded)
            y_hat_k = ste_round(y_k - mu) + mu
            decoded.append(self.context.refine(k, hyper_mean, decoded, y_hat_k))
            means.append(mu)
            scales.append(sc)
        return EntropyOutput(torch.cat(decoded, 1), torch.cat(means, 1), torch.cat(scales, 1))

    # ------------------------------------------------------------------ coding path
    def _z_symbols(self, z: Tensor) -> tuple[np.ndarray, Tensor]:
        t = self.z_tables
        med = t["medians"][None, :, None, None]
        lo = t["minsym"][None, :, None, None].float()
        hi = lo + t["lengths"][None, :, None, None].float() - 1
        sym = torch.round(z - med).clamp(min=lo, max=hi)
        z_hat = sym + med
        shifted = (sym - lo).to(torch.int32)[0].flatten(1).numpy()
        return shifted, z_hat

    @torch.inference_mode()
    def analyze(self, x: Tensor, q: float) -> Tensor:
        """g_a on one padded image (1, 3, H, W); returns y on the CPU in float32."""
        qt = torch.tensor([q], dtype=torch.float32, device=x.device)
        return self.g_a(x, qt).float().cpu()

    def compress(self, x: Tensor, q: float) -> CodedLatent:
        """Encode one padded image (1, 3, H, W) at quality q; see :meth:`compress_latent`."""
        return self.compress_latent(self.analyze(x, q))

    @torch.inference_mode()
    def compress_latent(self, y: Tensor) -> CodedLatent:
        """Range-code a latent y (1, M, h, w) (CPU, float32)."""
        z = self.h_a(y)
        z_sym, z_hat = self._z_symbols(z)
        ztab, ytab = self._tables()
        enc = Encoder(ztab, ytab)
        enc.encode_z(z_sym)
        check = zlib.crc32(np.ascontiguousarray(z_sym, dtype="<i4").tobytes())
        hyper_mean, hyper_scale = self.h_s(z_hat)
        decoded: list[Tensor] = []
        for k, y_k in enumerate(y.chunk(self.cfg.num_slices, dim=1)):
            mu, sc = self.context.params(k, hyper_mean, hyper_scale, decoded)
            idx = scale_to_index(sc, self.scale_table)
            lim = torch.from_numpy(ytab.limits)[idx]
            sym = torch.maximum(torch.minimum(torch.round(y_k - mu), lim), -lim)
            flat = sym.to(torch.int64).flatten().numpy()
            enc.encode_y(flat, idx.flatten().numpy())
            check = zlib.crc32(flat.astype("<i4").tobytes(), check)
            decoded.append(self.context.refine(k, hyper_mean, decoded, sym + mu))
        return CodedLatent(enc.finish(), torch.cat(decoded, 1), check)

    def min_payload_bytes(self, height: int, width: int) -> int:
        """A lower bound on the payload size of any valid file of this padded size."""
        return 0

    @torch.inference_mode()
    def decode_latent(self, payload: bytes, height: int, width: int) -> tuple[Tensor, int]:
        """Entropy-decode y_hat (1, M, H/16, W/16) for a padded image of size (height, width).

        Returns y_hat and the CRC-32 of the decoded symbols (compare it with the header's).
        Raises PayloadError if the payload cannot be decoded or is not consumed exactly.
        """
        zh, zw = height // 64, width // 64
        ztab, ytab = self._tables()
        dec = Decoder(ztab, ytab, payload)
        t = self.z_tables
        z_sym = dec.decode_z(zh * zw)
        check = zlib.crc32(np.ascontiguousarray(z_sym, dtype="<i4").tobytes())
        sym = torch.from_numpy(z_sym).float().view(1, -1, zh, zw)
        z_hat = sym + t["minsym"][None, :, None, None].float() + t["medians"][None, :, None, None]
        hyper_mean, hyper_scale = self.h_s(z_hat)
        decoded: list[Tensor] = []
        for k in range(self.cfg.num_slices):
            mu, sc = self.context.params(k, hyper_mean, hyper_scale, decoded)
            idx = scale_to_index(sc, self.scale_table)
            flat = dec.decode_y(idx.flatten().numpy())
            check = zlib.crc32(flat.astype("<i4").tobytes(), check)
            res = torch.from_numpy(flat).float().view_as(mu)
            decoded.append(self.context.refine(k, hyper_mean, decoded, res + mu))
        dec.finish()
        return torch.cat(decoded, 1), check

    @torch.inference_mode()
    def synthesize(self, y_hat: Tensor, q: float, beta: float) -> Tensor:
        dev = next(self.g_s.parameters()).device
        y_hat = y_hat.to(dev)
        qt = torch.tensor([q], dtype=torch.float32, device=dev)
        bt = torch.tensor([beta], dtype=torch.float32, device=dev)
        return self.g_s(y_hat, qt, bt).float().clamp_(-1, 1)

    def decompress(self, payload: bytes, height: int, width: int, q: float, beta: float) -> Tensor:
        return self.synthesize(self.decode_latent(payload, height, width)[0], q, beta)
