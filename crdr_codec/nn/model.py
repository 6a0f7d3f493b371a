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

import dataclasses
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from ..config import ModelConfig
from .entropy.charm import ChannelContext, scale_table
from ..runtime import latent as coding
from ..runtime.coder import Tables
from .entropy.hyperprior import HyperAnalysis, HyperSynthesis
from .entropy.integer import ChannelsLast, IntegerEntropy, quantize
from .entropy.tables import y_frequency_tables, z_frequency_tables
from ..errors import WeightsError
from .transforms import AnalysisTransform, SynthesisTransform


def ste_round(x: Tensor) -> Tensor:
    """Round with a straight-through gradient."""
    return x + (torch.round(x) - x).detach()


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
        #: loaded from a version-1 weights file: no integer entropy model, cannot code
        self.from_v1_weights = False

    # ------------------------------------------------------------------ tables
    def set_z_tables(self, tables: dict[str, Tensor]) -> None:
        """Install the float z prior: medians, pmf (C, L), lengths, minsym.

        Coding uses the integer tables of :meth:`quantize_entropy`, built from these.
        """
        self.z_tables = {
            "medians": tables["medians"].float().cpu(),
            "pmf": tables["pmf"].float().cpu(),
            "lengths": tables["lengths"].to(torch.int32).cpu(),
            "minsym": tables["minsym"].to(torch.int32).cpu(),
        }
        self.entropy_state = None
        self._coding = None

    def set_entropy_state(self, state: dict[str, Tensor]) -> None:
        """Install the integer entropy model (as stored in a weights file)."""
        self.entropy_state = {k: v.cpu() for k, v in state.items()}
        self._coding = None

    @torch.no_grad()
    def quantize_entropy(self, calib: list[Tensor] | None = None) -> None:
        """Build the exact integer entropy model from the float h_s / ChARM / z prior.

        Args:
            calib: latents y (1, M, h, w) on which activation ranges are measured
                (default: latents of synthetic images at q = 0, 2, 4).
        """
        was_training = self.training
        self.eval()
        if calib is None:
            calib = synthetic_calibration(self)
        t = self.z_tables
        table = self.scale_table.cpu()
        state = quantize(self, [c.cpu() for c in calib], t["medians"], t["minsym"], t["lengths"], table)
        state.update(y_frequency_tables(table.numpy()))
        state["z.freq"] = z_frequency_tables(t["pmf"].double().numpy(), t["lengths"].numpy())
        state["z.lengths"] = t["lengths"].to(torch.int64)
        self.set_entropy_state(state)
        self.train(was_training)

    def _coder(self) -> tuple[IntegerEntropy, Tables]:
        if self._coding is None:
            if self.entropy_state is None and not self.from_v1_weights:
                self.quantize_entropy()  # a model built in code: synthetic calibration
            if self.entropy_state is None:
                raise WeightsError(
                    "these weights have no integer entropy model (weights file version 1); "
                    "convert them with scripts/quantize_entropy.py"
                )
            st = self.entropy_state
            ie = IntegerEntropy(st, self.cfg.num_slices, self.cfg.max_support)
            self._coding = (ChannelsLast(ie), Tables({k: v.numpy() for k, v in st.items()}))
        return self._coding

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
    @torch.inference_mode()
    def analyze(self, x: Tensor, q: float) -> Tensor:
        """g_a on one padded image (1, 3, H, W); returns y on the CPU in float32."""
        qt = torch.tensor([q], dtype=torch.float32, device=x.device)
        return self.g_a(x, qt).float().cpu()

    def compress(self, x: Tensor, q: float) -> coding.CodedLatent:
        """Encode one padded image (1, 3, H, W) at quality q; see :meth:`compress_latent`."""
        return self.compress_latent(self.analyze(x, q))

    @torch.inference_mode()
    def compress_latent(self, y: Tensor, z: Tensor | None = None) -> coding.CodedLatent:
        """Range-code a latent y (1, M, h, w) (CPU, float32) with the integer entropy model.

        The torch reference of the runtime's coding (:mod:`crdr_codec.runtime.latent`, the
        same procedure; here the integer networks run on torch's int8 products). ``z``
        (default ``h_a(y)``) is the hyper latent to code: :func:`crdr_codec.nn.refine.
        refine_latent` keeps the unrefined latent's. ``y_hat`` of the result is a tensor.
        """
        ie, tables = self._coder()
        y = y.float().cpu()
        z = self.h_a(y) if z is None else z.float().cpu()
        coded = coding.compress_latent(ie, tables, self.cfg.num_slices, y.numpy(), z.numpy())
        return dataclasses.replace(coded, y_hat=torch.from_numpy(coded.y_hat))

    def min_payload_bytes(self, height: int, width: int) -> int:
        """A lower bound on the payload bytes of any valid file of this padded size."""
        return coding.min_payload_bytes(self._coder()[1], height, width)

    @torch.inference_mode()
    def decode_latent(self, payload: bytes, height: int, width: int) -> tuple[Tensor, int]:
        """Entropy-decode y_hat (1, M, H/16, W/16) (torch reference of the runtime's
        :func:`crdr_codec.runtime.latent.decode_latent`)."""
        ie, tables = self._coder()
        y_hat, check = coding.decode_latent(ie, tables, self.cfg.num_slices, payload, height, width)
        return torch.from_numpy(y_hat), check

    @torch.inference_mode()
    def synthesize(self, y_hat: Tensor, q: float, beta: float) -> Tensor:
        dev = next(self.g_s.parameters()).device
        y_hat = y_hat.to(dev)
        qt = torch.tensor([q], dtype=torch.float32, device=dev)
        bt = torch.tensor([beta], dtype=torch.float32, device=dev)
        return self.g_s(y_hat, qt, bt).float().clamp_(-1, 1)

    def decompress(self, payload: bytes, height: int, width: int, q: float, beta: float) -> Tensor:
        return self.synthesize(self.decode_latent(payload, height, width)[0], q, beta)


@torch.no_grad()
def synthetic_calibration(model: CRDRModel, size: int = 128, count: int = 4) -> list[Tensor]:
    """Latents of smooth random images with edges at q = 0, 2, 4 (seeded, for calibration
    when no real images are at hand, e.g. tiny test models)."""
    g = torch.Generator().manual_seed(0)
    dev = next(model.g_a.parameters()).device
    out = []
    for _ in range(count):
        small = torch.rand(1, 3, size // 8, size // 8, generator=g) * 2 - 1
        x = torch.nn.functional.interpolate(small, size=(size, size), mode="bicubic", align_corners=False)
        x = (x + 0.05 * torch.randn(x.shape, generator=g)).clamp(-1, 1)
        for q in (0.0, 2.0, 4.0):
            out.append(model.analyze(x.to(dev), q))
    return out


@torch.no_grad()
def image_calibration(model: CRDRModel, images: list, crop: int = 512) -> list[Tensor]:
    """Calibration latents from real photos: the top-left ``crop`` pixels of each
    (H, W, 3) uint8 image at q = 0, 1, 2, 3, 4 (for :meth:`CRDRModel.quantize_entropy`)."""
    from ..config import NUM_LEVELS, PAD_MULTIPLE
    from ..image_io import pad_to_multiple, to_tensor

    dev = next(model.g_a.parameters()).device
    out = []
    for rgb in images:
        x = pad_to_multiple(to_tensor(rgb[:crop, :crop]), PAD_MULTIPLE).to(dev)
        out += [model.analyze(x, float(q)) for q in range(NUM_LEVELS)]
    return out
