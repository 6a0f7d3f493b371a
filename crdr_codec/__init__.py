"""crdr: a learned image codec with encode-time rate control (q) and decode-time
distortion/realism control (beta), after Iwai et al., "Controlling Rate, Distortion,
and Realism: Towards a Single Comprehensive Neural Image Compression Model", WACV 2024.

Importing this package does not import torch; the heavy modules load on first use.
"""

__version__ = "0.2.0"

__all__ = ["__version__", "Codec", "read_info"]


def __getattr__(name: str):
    # Codec needs torch; import it only when asked for (``from crdr_codec import Codec``).
    if name == "Codec":
        from .codec import Codec

        return Codec
    if name == "read_info":
        from .bitstream import read_info

        return read_info
    raise AttributeError(f"module 'crdr_codec' has no attribute {name!r}")
