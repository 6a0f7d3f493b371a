"""Encode-time latent refinement (``crdr encode --refine N``).

g_a predicts a good latent for a typical image in one pass; for the image at hand a
better one exists. Refinement searches for it with N gradient steps (Adam) on the
model's own stage-3 objective at beta = 0,

    lambda(q) * bits per pixel + LAMBDA_D * MSE,

with the synthesis fed the rounded latent (straight-through) and the rate taken from the
Gaussian likelihood of the unrounded residual. z, the hyperprior's side information, is
the one of the unrefined latent and stays fixed, so only y moves.

The decoder is untouched: refinement only chooses which latent the encoder codes, and
coding it runs the same exact integer entropy model as ever, so a refined file decodes on
every machine like any other. The floating-point search itself is not reproducible
across machines (nor needs to be): two machines may write different, equally valid files.

Memory is bounded independently of the image size: the latent is refined in windows of
at most (TILE + 2 * HALO)^2 latent positions (640x640 pixels), one after another; each
window updates only its interior and sees its refined neighbours through the halo.

On CPUs with native bfloat16 arithmetic (AVX512-BF16 or AMX) the synthesis runs under
bf16 autocast during the search (:func:`bf16_search`): a step takes about a quarter less
time there, for the same objective (measured in benchmarks/README.md). Elsewhere, where bf16
would be emulated, and on CUDA, the search stays in float32.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ..config import NUM_LEVELS, check_refine
from .entropy.charm import SCALE_MIN  # the coder's smallest scale: the likelihood's bound

#: Rate weight per quality level of the stage-3 objective that trained the shipped
#: weights (train/presets/lite-more.toml, kept by every later phase; a test checks).
RATE_LAMBDA = (4.5, 1.3, 0.4, 0.12, 0.006)
LAMBDA_D = 150.0  # MSE weight ([0, 1] images), as in training
LR = 0.01  # Adam step on y, cosine-decayed to 0 over the steps
STRIDE = 16  # pixels per latent position (g_a downsamples by 16)
TILE = 32  # window interior, latent positions (512 pixels)
HALO = 4  # context around the interior, latent positions (64 pixels)


def bf16_search(device: torch.device) -> bool:
    """Whether the search runs g_s under bf16 autocast on ``device``: on CPUs that have
    bfloat16 instructions (AVX512-BF16 or AMX; torch's probes), not elsewhere."""
    if device.type != "cpu":
        return False
    names = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    probes = [getattr(torch.cpu, n, None) for n in names]
    try:
        return any(bool(f()) for f in probes if f is not None)
    except RuntimeError:
        return False


def rate_lambda(q: float) -> float:
    """The rate weight at quality q: the per-level weights interpolated in log space."""
    q = min(max(float(q), 0.0), NUM_LEVELS - 1.0)
    lo = min(int(q), NUM_LEVELS - 2)
    f = q - lo
    return math.exp((1 - f) * math.log(RATE_LAMBDA[lo]) + f * math.log(RATE_LAMBDA[lo + 1]))


def file_cost(q: float, bpp: float, mse: float) -> float:
    """The objective of the search, measured on a real file: rate weight x bits per pixel +
    LAMBDA_D x MSE of its beta-0 decode ([0, 1] images)."""
    return rate_lambda(q) * bpp + LAMBDA_D * mse


def _spans(n: int, tile: int, halo: int) -> list[tuple[int, int, int, int]]:
    """(window start, window end, interior start, interior end) covering range(n) with
    interiors of near-equal length at most ``tile``."""
    count = max(1, math.ceil(n / tile))
    edges = [round(i * n / count) for i in range(count + 1)]
    return [(max(0, a - halo), min(n, b + halo), a, b) for a, b in zip(edges, edges[1:])]


def _bits(residual: Tensor, scale: Tensor) -> Tensor:
    """-log2 of the probability of the unit bin around ``residual`` under N(0, scale)."""
    r = residual.abs()
    s = scale.clamp(min=SCALE_MIN)
    sqrt2 = math.sqrt(2.0)
    upper = 0.5 * torch.erfc(-(0.5 - r) / (s * sqrt2))
    lower = 0.5 * torch.erfc(-(-0.5 - r) / (s * sqrt2))
    return -torch.log2((upper - lower).clamp(min=1e-9))


@torch.no_grad()
def _hyper(model, y: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """z of the unrefined latent and the float hyper features of its rounded symbols."""
    z = model.h_a(y)
    t = model.z_tables
    med = t["medians"].view(1, -1, 1, 1)
    lo = t["minsym"].view(1, -1, 1, 1).float()
    hi = lo + t["lengths"].view(1, -1, 1, 1).float() - 1
    z_hat = torch.maximum(torch.minimum(torch.round(z - med), hi), lo) + med
    hm, hs = model.h_s(z_hat)
    return z, hm, hs


def refine_latent(model, src, y: Tensor, q: float, steps: int, height: int,
                  width: int) -> tuple[Tensor, Tensor]:
    """Refine the latent ``y`` (1, M, h, w, CPU float32) of an image at quality ``q``.

    Args:
        model: the CRDRModel (g_s on any device; the entropy networks on the CPU).
        src: the padded image in [-1, 1], indexable as ``src[:, :, r0:r1, c0:c1]`` (a
            tensor, or tiles handed out on demand), on g_s's device.
        height, width: the image's real size (padding is not part of the objective).
    Returns:
        (refined y, z of the unrefined y): pass both to ``model.compress_latent``.
    """
    steps = check_refine(steps)
    # a search by gradients, also when the caller runs in inference mode or without grad
    with torch.inference_mode(False), torch.enable_grad():
        return _refine(model, src, y.detach().float().cpu().clone(), q, steps, height, width)


def _refine(model, src, y: Tensor, q: float, steps: int, height: int,
            width: int) -> tuple[Tensor, Tensor]:
    z, hm, hs = _hyper(model, y)
    if steps == 0:
        return y, z
    dev = next(model.g_s.parameters()).device
    qt = torch.tensor([float(q)], device=dev)
    bt = torch.zeros(1, device=dev)
    lam = rate_lambda(q)
    bf16 = bf16_search(dev)
    _, _, h, w = y.shape
    for r0, r1, i0, i1 in _spans(h, TILE, HALO):
        for c0, c1, j0, j1 in _spans(w, TILE, HALO):
            inner = (slice(None), slice(None), slice(i0 - r0, i1 - r0), slice(j0 - c0, j1 - c0))
            x = src[:, :, STRIDE * r0:STRIDE * r1, STRIDE * c0:STRIDE * c1]
            win = _refine_window(model, y[:, :, r0:r1, c0:c1], hm[:, :, r0:r1, c0:c1],
                                 hs[:, :, r0:r1, c0:c1], x, inner, qt, bt, lam, steps, bf16,
                                 rows=max(0, min(height, STRIDE * i1) - STRIDE * r0),
                                 cols=max(0, min(width, STRIDE * j1) - STRIDE * c0))
            y[:, :, i0:i1, j0:j1] = win[inner]
    return y, z


def _refine_window(model, y: Tensor, hm: Tensor, hs: Tensor, x: Tensor, inner: tuple,
                   qt: Tensor, bt: Tensor, lam: float, steps: int, bf16: bool, rows: int,
                   cols: int) -> Tensor:
    """Adam on one window of y; only the interior moves and only it is scored: its latent
    positions' bits and its real pixels' squared error (up to ``rows`` x ``cols``).
    ``bf16``: run g_s under bf16 autocast (the rate and the error stay float32)."""
    lat_mask = torch.zeros((1, 1) + tuple(y.shape[2:]))
    lat_mask[inner] = 1.0
    pix_mask = torch.zeros((1, 1) + tuple(x.shape[2:]), device=x.device)
    pr0, pc0 = STRIDE * inner[2].start, STRIDE * inner[3].start
    pix_mask[:, :, pr0:rows, pc0:cols] = 1.0
    pixels = float(pix_mask.sum())
    if pixels == 0:
        return y
    x = x.float().clone()  # a normal tensor even if the caller made it in inference mode
    param = y.clone().requires_grad_(True)
    opt = torch.optim.Adam([param], lr=LR)
    slices = model.cfg.num_slices
    for it in range(steps):
        for group in opt.param_groups:
            group["lr"] = LR * 0.5 * (1 + math.cos(math.pi * it / steps))
        decoded: list[Tensor] = []
        bits = torch.zeros(())
        for k, y_k in enumerate(param.chunk(slices, dim=1)):
            mu, scale = model.context.params(k, hm, hs, decoded)
            res = y_k - mu
            bits = bits + (_bits(res, scale) * lat_mask).sum()
            y_hat_k = res + (torch.round(res) - res).detach() + mu
            decoded.append(model.context.refine(k, hm, decoded, y_hat_k))
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=bf16):
            x_hat = model.g_s(torch.cat(decoded, 1).to(x.device), qt, bt)
        x_hat = x_hat.float()
        sq = (((x_hat - x) * 0.5) ** 2 * pix_mask).sum() / 3
        loss = (lam * bits.to(x.device) + LAMBDA_D * sq) / pixels
        (grad,) = torch.autograd.grad(loss, [param])
        param.grad = grad * lat_mask
        opt.step()
    return param.detach()
