"""The training-time wrapper: a CRDRModel plus CompressAI's entropy models for rates.

z uses CompressAI's factorized ``EntropyBottleneck`` (noisy likelihoods for the rate;
the decoder sees z rounded around the learned medians with a straight-through
gradient). y uses CompressAI's ``GaussianConditional`` for likelihoods (scale lower bound
0.11), with the slice loop of the inference model. :func:`export_z_tables` turns the
learned z prior into the fixed tables stored in an inference weights file.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from compressai.entropy_models import EntropyBottleneck, GaussianConditional

from ..config import ModelConfig
from ..nn.model import CRDRModel, ste_round


@dataclass
class TrainOutput:
    x_hat: Tensor
    bpp: Tensor  # estimated bits per pixel of the batch (scalar, float32)
    y_hat: Tensor


class TrainableCRDR(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.codec = CRDRModel(cfg)
        self.z_prior = EntropyBottleneck(cfg.hyper)
        self.y_prior = GaussianConditional(None)

    def forward(self, x: Tensor, q: Tensor, beta: Tensor, y_autocast: bool = False) -> TrainOutput:
        m = self.codec
        b, _, h, w = x.shape
        y = m.g_a(x, q).float()
        with torch.autocast(device_type=x.device.type, enabled=False):
            z = m.h_a(y)
            _, z_lik = self.z_prior(z)
            med = self.z_prior._get_medians().detach().view(1, -1, 1, 1)
            z_hat = ste_round(z - med) + med
            ent = m.entropy_forward(y, z_hat)
            _, y_lik = self.y_prior(y, ent.scales, ent.means)
            bits = -(torch.log2(y_lik).sum() + torch.log2(z_lik).sum())
            bpp = bits / (b * h * w)
        x_hat = m.g_s(ent.y_hat, q, beta).float()
        return TrainOutput(x_hat=x_hat, bpp=bpp, y_hat=ent.y_hat)

    def aux_loss(self) -> Tensor:
        return self.z_prior.loss()


@torch.no_grad()
def export_z_tables(z_prior: EntropyBottleneck) -> dict[str, Tensor]:
    """Per-channel probability tables of round(z - median) from the learned prior.

    The tail mass outside [min, max] is added to the two end bins, so a clamped symbol
    keeps a sensible cost.
    """
    q = z_prior.quantiles.detach().float()[:, 0, :]
    med = q[:, 1]
    minima = torch.ceil(med - q[:, 0]).clamp(min=0).to(torch.int64)
    maxima = torch.ceil(q[:, 2] - med).clamp(min=0).to(torch.int64)
    lengths = minima + maxima + 1
    lmax = int(lengths.max())
    samples = torch.arange(lmax, dtype=torch.float32)[None, :] + (med - minima.float())[:, None]
    pmf, lower, upper = z_prior._likelihood(samples[:, None, :], stop_gradient=True)
    pmf = pmf[:, 0, :].clone()
    lo_tail = torch.sigmoid(lower[:, 0, 0])
    for c in range(pmf.shape[0]):
        n = int(lengths[c])
        pmf[c, n:] = 0
        pmf[c, 0] += lo_tail[c]
        pmf[c, n - 1] += torch.sigmoid(-upper[c, 0, n - 1])
    pmf = pmf.clamp(min=1e-9)
    for c in range(pmf.shape[0]):
        pmf[c, int(lengths[c]):] = 0
    return {
        "medians": med.clone(),
        "pmf": pmf,
        "lengths": lengths.to(torch.int32),
        "minsym": (-minima).to(torch.int32),
    }


def inference_model(net: TrainableCRDR) -> CRDRModel:
    """A standalone CRDRModel with the z tables exported from the training prior."""
    model = CRDRModel(net.codec.cfg)
    model.load_state_dict(net.codec.state_dict())
    model.set_z_tables(export_z_tables(net.z_prior))
    return model.eval()
