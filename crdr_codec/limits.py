"""Safety limits on image size, shared by the encoder, the decoder and ``crdr info``.

A .crdr header or an image header can claim any size; crdr checks the claim against a
pixel limit before it allocates or computes anything, so a hostile or damaged input
costs milliseconds, not gigabytes. The limit counts the pixels of the image padded to
the model's multiple of 64 (the size the networks actually process), so a 1 x 10^8
strip cannot slip through as "only 10^8 pixels" when it would be processed as 64 x 10^8.

Only the standard library is imported here.
"""

from __future__ import annotations

from .config import PAD_MULTIPLE
from .errors import LimitError

#: Default pixel limit (after padding to multiples of 64): 2**27 = 134,217,728, e.g.
#: 11584 x 11584 or 16384 x 8192. Pillow's own default (``MAX_IMAGE_PIXELS``) is about
#: 89 megapixels with a warning, 179 with an error.
DEFAULT_MAX_PIXELS = 1 << 27

#: How users raise the limit (named in every refusal).
HOW_TO_RAISE = "raise it with --max-pixels N"


def padded(n: int) -> int:
    """``n`` rounded up to a multiple of :data:`~crdr_codec.config.PAD_MULTIPLE`."""
    return -(-n // PAD_MULTIPLE) * PAD_MULTIPLE


def padded_pixels(width: int, height: int) -> int:
    return padded(width) * padded(height)


def check_max_pixels(max_pixels: int) -> int:
    """Validate a limit given by a user (a positive integer)."""
    if isinstance(max_pixels, bool) or not isinstance(max_pixels, int) or max_pixels < 1:
        raise LimitError(f"--max-pixels must be a positive integer, got {max_pixels!r}")
    return max_pixels


def check_pixels(width: int, height: int, max_pixels: int, name: str | None = None,
                 error: type[Exception] = LimitError) -> None:
    """Refuse an image whose padded size is over ``max_pixels``.

    Args:
        width, height: the image size (as claimed by a header; nothing is allocated).
        max_pixels: the limit, in pixels after padding to multiples of 64.
        name: the input's name (a file name) to start the message with, if known.
        error: the exception class raised (``read_image`` raises its ImageError).

    Raises:
        LimitError: one line naming the input, its size, the limit and how to raise it.
    """
    need = padded_pixels(width, height)
    if need > max_pixels:
        raise error(
            (f"{name}: " if name else "") + f"{width}x{height} image is over the pixel limit "
            f"({need:,} pixels after padding to multiples of {PAD_MULTIPLE}, limit "
            f"{max_pixels:,}); {HOW_TO_RAISE}"
        )
