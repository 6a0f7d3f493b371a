"""Losses: switched rate weight, distortion, and the HRRGAN adversarial terms.

HRRGAN (paper Sec. 3.4, as in the reference code): the generator's reconstruction at
level q is judged *relative to* a reference ``a``: the stop-gradient reconstruction at
level q+1 with the same beta, or the original image at the top level.

* generator:      L_G = mean softplus(D(a) - D(x_hat))   (D(a) detached)
* discriminator:  L_D = 1/2 mean softplus(-(D(x) - D(x_hat))) + 1/2 mean softplus(D(x_hat) - D(x))
  (relativistic, real image vs fake; the other side of each difference detached)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def rate_weight(bpp: Tensor, target: float, lambda_a: float, lambda_b: float) -> Tensor:
    """HiFiC-style switching: the strong weight while the rate is above its target.

    Chosen on bpp's device (no wait for a GPU); the rate itself is not differentiated."""
    return torch.where(bpp.detach() > target, lambda_a, lambda_b)


def mse01(x_hat: Tensor, x: Tensor) -> Tensor:
    """MSE of images given in [-1, 1], measured on the [0, 1] scale."""
    return F.mse_loss((x_hat + 1) / 2, (x + 1) / 2)


def hrrgan_generator_loss(d_fake: Tensor, d_ref: Tensor) -> Tensor:
    """Both halves of the reference form reduce to mean softplus(D(a) - D(x_hat))."""
    return F.softplus(d_ref.detach() - d_fake).mean()


def hrrgan_discriminator_loss(d_real: Tensor, d_fake: Tensor) -> Tensor:
    """Relativistic real-vs-fake loss; call with d_fake computed on a detached x_hat."""
    real = F.binary_cross_entropy_with_logits(d_real - d_fake.detach(), torch.ones_like(d_real))
    fake = F.binary_cross_entropy_with_logits(d_fake - d_real.detach(), torch.zeros_like(d_fake))
    return 0.5 * (real + fake)
