"""crdr: a learned image codec with encode-time rate control (q) and decode-time
distortion/realism control (beta), after Iwai et al., "Controlling Rate, Distortion,
and Realism: Towards a Single Comprehensive Neural Image Compression Model", WACV 2024.

Importing this package does not import torch; the heavy modules load on first use.
"""

__version__ = "0.2.0"

__all__ = ["__version__"]
