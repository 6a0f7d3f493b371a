"""crdr: a learned image codec with encode-time rate control (q) and decode-time
distortion/realism control (beta), after Iwai et al., "Controlling Rate, Distortion,
and Realism: Towards a Single Comprehensive Neural Image Compression Model", WACV 2024.

The product path (``Codec``, ``read_info``, the ``crdr`` command) runs on ONNX Runtime,
numpy and constriction, never torch; torch is for training and research
(:mod:`crdr_codec.nn`). Importing this package imports neither; the modules load on first
use.
"""

__version__ = "0.3.0"

__all__ = ["__version__", "Codec", "read_info"]


def __getattr__(name: str):
    # Codec loads ONNX Runtime; import it only when asked for (``from crdr_codec import Codec``).
    if name == "Codec":
        from .codec import Codec

        return Codec
    if name == "read_info":
        from .bitstream import read_info

        return read_info
    raise AttributeError(f"module 'crdr_codec' has no attribute {name!r}")
