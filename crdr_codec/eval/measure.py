"""The quality measurements of ``crdr eval``: PSNR, MS-SSIM, LPIPS-Alex and Inception patch features.

torch and the networks are loaded when :class:`Metrics` is made, not at import.
"""

from __future__ import annotations

from typing import Dict, Optional

import numpy as np

from crdr_codec.errors import ImageError
from crdr_codec.metrics.basic import ms_ssim, psnr

__all__ = ["Metrics"]


class Metrics:
    """PSNR, MS-SSIM, LPIPS-Alex and (optionally) Inception patch features."""

    def __init__(self, device: str, fid: bool, patch_size: int) -> None:
        import torch

        from crdr_codec.metrics.lpips import LPIPS

        self.torch = torch
        self.device = torch.device(device)
        self.lpips = LPIPS("alex").to(self.device)
        self.patch_size = patch_size
        self.inception = None
        if fid:
            from crdr_codec.metrics.fid import InceptionFeatures

            self.inception = InceptionFeatures(device=str(self.device))
        self._ref_key: Optional[str] = None
        self._ref_tensor = None

    def quality(self, ref: np.ndarray, rec: np.ndarray, key: str) -> Dict[str, float]:
        """Metrics of ``rec`` against ``ref``; ``key`` names ``ref`` (its tensor is cached)."""
        from crdr_codec.image_io import to_tensor

        try:
            mss = ms_ssim(ref, rec)
        except ImageError:  # too small for even one SSIM scale
            mss = float("nan")
        if self._ref_key != key:
            self._ref_key, self._ref_tensor = key, to_tensor(ref).to(self.device)
        with self.torch.inference_mode():
            lp = float(self.lpips(self._ref_tensor, to_tensor(rec).to(self.device))[0])
        return {"psnr": psnr(ref, rec), "ms_ssim": mss, "lpips": lp}

    def features(self, rgb: np.ndarray) -> np.ndarray:
        """Inception features of the HiFiC patches of ``rgb`` (needs ``fid=True``)."""
        from crdr_codec.metrics.fid import hific_patches

        assert self.inception is not None
        return self.inception(hific_patches(rgb, self.patch_size))
