"""Pixel metrics: MSE, PSNR, MS-SSIM, and bits per pixel.

``mse``, ``psnr`` and ``bpp`` need only numpy (torch tensors are accepted too, and
torch is imported only then). ``ms_ssim`` needs torch and ``pytorch-msssim`` (installed
with compressai).

Conventions: images are RGB, 8-bit ``(H, W, 3)`` numpy arrays unless stated; PSNR and
MSE are computed over all pixels and all three channels together (not averaged per
channel, not on luma).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, List, Sequence, Tuple, Union

import numpy as np

from crdr_codec.errors import DependencyError, ImageError

if TYPE_CHECKING:  # pragma: no cover
    import torch

    ArrayLike = Union[np.ndarray, "torch.Tensor"]
else:
    ArrayLike = Any

__all__ = ["mse", "psnr", "ms_ssim", "bpp", "MS_SSIM_WEIGHTS"]

#: Scale weights of Wang et al. (2003), finest scale first.
MS_SSIM_WEIGHTS: Tuple[float, ...] = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)

_WIN_SIZE = 11
_WIN_SIGMA = 1.5
_K1, _K2 = 0.01, 0.03

_MSSSIM_INSTALL = "pip install pytorch-msssim"


def _to_float64(a: ArrayLike) -> np.ndarray:
    """Return ``a`` as a float64 numpy array (torch tensors are detached, moved to CPU)."""
    if isinstance(a, np.ndarray):
        return a.astype(np.float64, copy=False)
    if type(a).__module__.startswith("torch"):
        return a.detach().to("cpu").double().numpy()
    return np.asarray(a, dtype=np.float64)


def mse(x: ArrayLike, y: ArrayLike) -> float:
    """Mean squared error over all elements.

    Args:
        x: Image(s), numpy array or torch tensor.
        y: Same shape as ``x``.

    Returns:
        The MSE in the units of the inputs (e.g. 8-bit levels squared).

    Raises:
        ValueError: Shapes differ.
    """
    a, b = _to_float64(x), _to_float64(y)
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: {a.shape} vs {b.shape}")
    if a.size == 0:
        raise ValueError("empty input")
    return float(np.mean(np.square(a - b)))


def psnr(x: ArrayLike, y: ArrayLike, data_range: float = 255.0) -> float:
    """RGB PSNR in dB over all pixels and channels.

    Args:
        x: Image(s), e.g. uint8 ``(H, W, 3)`` numpy arrays or torch tensors. A batch is
            treated as one big image (pooled MSE), not averaged per image.
        y: Same shape as ``x``.
        data_range: Peak value (255 for 8-bit data, 1.0 for ``[0, 1]`` floats).

    Returns:
        ``10 * log10(data_range**2 / mse)``; ``float('inf')`` for identical inputs.
    """
    err = mse(x, y)
    if err == 0.0:
        return float("inf")
    return 10.0 * math.log10(float(data_range) ** 2 / err)


def bpp(num_bytes: int, h: int, w: int) -> float:
    """Bits per pixel of a compressed image.

    Args:
        num_bytes: Size of the compressed representation in bytes.
        h: Image height in pixels.
        w: Image width in pixels.

    Returns:
        ``num_bytes * 8 / (h * w)``.
    """
    if h <= 0 or w <= 0:
        raise ValueError(f"invalid image size {h}x{w}")
    return num_bytes * 8.0 / (h * w)


# --------------------------------------------------------------------------- MS-SSIM


def ms_ssim_num_scales(h: int, w: int, win_size: int = _WIN_SIZE) -> int:
    """Number of MS-SSIM scales (at most 5) usable for an ``h x w`` image.

    With ``L`` scales the image is halved ``L - 1`` times and pytorch-msssim requires
    ``min(h, w) > (win_size - 1) * 2**(L - 1)``, i.e. more than 160 px for 5 scales.

    Args:
        h: Height.
        w: Width.
        win_size: Gaussian window size.

    Returns:
        The scale count, 0 if even single-scale SSIM is impossible.
    """
    side = min(h, w)
    levels = 0
    while levels < len(MS_SSIM_WEIGHTS) and side > (win_size - 1) * 2**levels:
        levels += 1
    return levels


def ms_ssim(x: np.ndarray, y: np.ndarray, data_range: float = 255.0) -> float:
    """RGB MS-SSIM (Wang et al. 2003; 11x11 Gaussian window, sigma 1.5).

    Images with a short side above 160 px use ``pytorch_msssim.ms_ssim`` with the
    standard 5 scales. Smaller images (where pytorch-msssim refuses to run) use fewer
    scales: the largest ``L`` with ``min(h, w) > 10 * 2**(L-1)`` (e.g. 3 scales for
    64x64), with the first ``L`` standard weights renormalised to sum to 1, computed by
    the same per-scale formulas (no padding). Values of such small images are therefore
    comparable with each other but not exactly with 5-scale values. Images with a short
    side of 10 px or less are rejected.

    Args:
        x: Reference, uint8 ``(H, W, 3)`` RGB (float arrays are accepted too, with the
            matching ``data_range``).
        y: Distorted image, same shape.
        data_range: Peak value, 255 for 8-bit data.

    Returns:
        MS-SSIM in ``[0, 1]`` (1 for identical images), averaged over the 3 channels.

    Raises:
        ValueError: Shapes differ or are not ``(H, W, 3)``.
        ImageError: The image is too small for any SSIM scale.
        DependencyError: torch or pytorch-msssim is missing.
    """
    x = np.asarray(x)
    y = np.asarray(y)
    if x.shape != y.shape:
        raise ValueError(f"shapes differ: {x.shape} vs {y.shape}")
    if x.ndim != 3 or x.shape[2] != 3:
        raise ValueError(f"expected (H, W, 3) RGB arrays, got {x.shape}")
    h, w = x.shape[:2]
    levels = ms_ssim_num_scales(h, w)
    if levels == 0:
        raise ImageError(f"image {w}x{h} is too small for MS-SSIM (short side must exceed {_WIN_SIZE - 1})")
    try:
        import torch
    except ImportError as exc:  # pragma: no cover - torch is a core dependency
        raise DependencyError("MS-SSIM needs torch: pip install torch") from exc

    def to_tensor(a: np.ndarray) -> "torch.Tensor":
        return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float64)).permute(2, 0, 1)[None]

    tx, ty = to_tensor(x), to_tensor(y)
    if levels == len(MS_SSIM_WEIGHTS):
        try:
            from pytorch_msssim import ms_ssim as _pm_ms_ssim
        except ImportError as exc:
            raise DependencyError(f"MS-SSIM needs pytorch-msssim: {_MSSSIM_INSTALL}") from exc
        # Pass a float64 window (pytorch-msssim builds it in float32) so that both paths
        # share the same precision.
        win = _gaussian_window(_WIN_SIZE, _WIN_SIGMA, tx.dtype).view(1, 1, 1, -1).repeat(3, 1, 1, 1)
        with torch.no_grad():
            return float(_pm_ms_ssim(tx, ty, data_range=data_range, size_average=True, win=win))
    weights = MS_SSIM_WEIGHTS[:levels]
    total = sum(weights)
    with torch.no_grad():
        return float(_ms_ssim_torch(tx, ty, data_range, [wt / total for wt in weights]))


def _gaussian_window(size: int, sigma: float, dtype: "torch.dtype") -> "torch.Tensor":
    import torch

    coords = torch.arange(size, dtype=dtype) - (size // 2)
    g = torch.exp(-(coords**2) / (2.0 * sigma**2))
    return g / g.sum()


def _blur(img: "torch.Tensor", g: "torch.Tensor") -> "torch.Tensor":
    """Separable Gaussian filter, per channel, 'valid' (no padding)."""
    import torch.nn.functional as F

    c = img.shape[1]
    k = g.numel()
    out = F.conv2d(img, g.view(1, 1, k, 1).expand(c, 1, k, 1), groups=c)
    return F.conv2d(out, g.view(1, 1, 1, k).expand(c, 1, 1, k), groups=c)


def _ssim_and_cs(
    x: "torch.Tensor", y: "torch.Tensor", data_range: float, g: "torch.Tensor"
) -> Tuple["torch.Tensor", "torch.Tensor"]:
    """Per-channel mean SSIM and contrast-structure term, each of shape (N, C)."""
    c1 = (_K1 * data_range) ** 2
    c2 = (_K2 * data_range) ** 2
    mu_x, mu_y = _blur(x, g), _blur(y, g)
    var_x = _blur(x * x, g) - mu_x * mu_x
    var_y = _blur(y * y, g) - mu_y * mu_y
    cov = _blur(x * y, g) - mu_x * mu_y
    cs_map = (2.0 * cov + c2) / (var_x + var_y + c2)
    lum_map = (2.0 * mu_x * mu_y + c1) / (mu_x * mu_x + mu_y * mu_y + c1)
    return (lum_map * cs_map).flatten(2).mean(-1), cs_map.flatten(2).mean(-1)


def _ms_ssim_torch(
    x: "torch.Tensor", y: "torch.Tensor", data_range: float, weights: Sequence[float]
) -> "torch.Tensor":
    """MS-SSIM with the given scale weights (finest first), mean over batch and channels.

    Same per-scale definition as pytorch-msssim: contrast-structure at every scale but
    the coarsest, full SSIM at the coarsest, negative terms clamped to 0, 2x2 average
    pooling between scales (odd sizes padded by one as avg_pool2d does).
    """
    import torch
    import torch.nn.functional as F

    g = _gaussian_window(_WIN_SIZE, _WIN_SIGMA, x.dtype)
    factors: List[torch.Tensor] = []
    for i in range(len(weights)):
        ssim_val, cs = _ssim_and_cs(x, y, data_range, g)
        if i < len(weights) - 1:
            factors.append(torch.relu(cs))
            pad = [s % 2 for s in x.shape[2:]]
            x = F.avg_pool2d(x, kernel_size=2, padding=pad)
            y = F.avg_pool2d(y, kernel_size=2, padding=pad)
        else:
            factors.append(torch.relu(ssim_val))
    w = torch.tensor(list(weights), dtype=x.dtype).view(-1, 1, 1)
    return torch.prod(torch.stack(factors, dim=0) ** w, dim=0).mean()
