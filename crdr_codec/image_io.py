"""Reading and writing images, and the pixel conventions of the network.

This is the only module that knows how pixels are represented:

* on disk / in memory: ``numpy.ndarray`` of shape (H, W, 3), dtype uint8, RGB;
* in the network: ``torch.Tensor`` of shape (1, 3, H, W), float32 in [-1, 1]
  (``x / 127.5 - 1``), padded right and bottom to a multiple of
  :data:`~crdr_codec.config.PAD_MULTIPLE`.

Input handling: EXIF orientation is applied; grayscale, palette, CMYK, YCbCr etc. are
converted to RGB; 16-bit and floating-point images are reduced to 8 bits with a
:class:`PrecisionWarning`; images with an alpha channel are refused unless the caller
asks for the alpha to be dropped. Colour profiles (ICC) are ignored: pixels are taken
as sRGB. Of multi-frame files (animated GIF/WebP, multi-page TIFF) the first frame is
read, with a :class:`FramesWarning`. Both warnings derive from :class:`InputNotice`,
which the command line prints as one-line notes. Input files are opened read-only.

numpy and Pillow are imported here; torch only inside the tensor functions.
"""

from __future__ import annotations

import io
import os
import struct
import warnings
from typing import TYPE_CHECKING, Union

import numpy as np
from PIL import Image, ImageOps

from .config import PAD_MULTIPLE
from .errors import FramesWarning, ImageError, InputNotice, PrecisionWarning  # noqa: F401 (re-exported)
from .fileutil import OutputError, atomic_writer
from .formats import (EXTENSION_FORMATS, FORMAT_ALIASES, FORMAT_NAMES,  # noqa: F401
                      IMAGE_EXTENSIONS, extension_list, format_list)
from .limits import DEFAULT_MAX_PIXELS, HOW_TO_RAISE, check_max_pixels, check_pixels

if TYPE_CHECKING:
    import torch

PathLike = Union[str, "os.PathLike[str]"]

#: Default largest image read, in pixels after padding (see :mod:`crdr_codec.limits`;
#: ``read_image`` takes a ``max_pixels`` argument, ``crdr encode`` ``--max-pixels``).
#: ``read_image`` checks the header's size itself, then decodes with Pillow's own
#: decompression-bomb limit (``Image.MAX_IMAGE_PIXELS``) set to the same value and its
#: warning turned into an error; both refusals are one-line ImageErrors naming
#: --max-pixels. The global is also set here, at import, for other Pillow users.
MAX_PIXELS = DEFAULT_MAX_PIXELS
Image.MAX_IMAGE_PIXELS = MAX_PIXELS

ALPHA_MODES = ("refuse", "drop")

# Output formats: extension -> canonical name (crdr_codec.formats) -> Pillow format
# name + save options.
_EXTENSIONS = EXTENSION_FORMATS
_ALIASES = FORMAT_ALIASES
_PIL_FORMATS = {name: name.upper() for name in FORMAT_NAMES}
#: JPEG quality of decoded images unless asked otherwise (crdr decode --jpeg-quality).
DEFAULT_JPEG_QUALITY = 95
_SAVE_OPTIONS: dict[str, dict] = {
    "png": {"compress_level": 6},
    # 4:4:4 chroma: the decoded image is evaluated against the original; chroma
    # subsampling would add its own loss on top of the codec's.
    "jpeg": {"quality": DEFAULT_JPEG_QUALITY, "subsampling": 0},
    # Lossless: the file holds exactly what the decoder produced.
    "webp": {"lossless": True},
    "tiff": {},
    "bmp": {},
    "ppm": {},
}
_EXTENSION_HINT = f"use {extension_list()}"

# Modes carrying an alpha band (lower-case 'a': premultiplied).
_ALPHA_IMAGE_MODES = frozenset({"RGBA", "RGBa", "LA", "La", "PA"})

# Everything Pillow's decoders are known to raise on a malformed or hostile file.
_DECODE_ERRORS = (
    OSError,  # includes UnidentifiedImageError and "image file is truncated"
    ValueError,
    SyntaxError,  # PNG and some other plugins signal broken files this way
    EOFError,
    struct.error,
    IndexError,
    KeyError,
    ZeroDivisionError,
    MemoryError,
    Image.DecompressionBombError,
    Image.DecompressionBombWarning,  # turned into an error while opening
)



# --------------------------------------------------------------------------- formats


def _canonical_format(fmt: str) -> str:
    name = fmt.lower().lstrip(".")
    name = _ALIASES.get(name, name)
    if name not in _PIL_FORMATS:
        raise ImageError(
            f"unsupported image format '{fmt}'; crdr writes {format_list()}"
        )
    return name


def format_from_extension(path: PathLike) -> str:
    """The output image format implied by the extension of ``path``.

    Meant to be called before any heavy work, so a bad output name fails fast.

    Args:
        path: output file name; the extension is matched case-insensitively.

    Returns:
        One of ``'png'``, ``'jpeg'``, ``'webp'``, ``'tiff'``, ``'bmp'``, ``'ppm'``.

    Raises:
        ImageError: the extension is missing (the message says so) or not that of a
            format crdr writes (the message lists them).
    """
    name = os.fspath(path)
    ext = os.path.splitext(name)[1].lower()
    try:
        return _EXTENSIONS[ext]
    except KeyError:
        if not ext:
            raise ImageError(
                f"cannot tell the image format from '{name}' (no extension); {_EXTENSION_HINT}"
            ) from None
        raise ImageError(
            f"cannot write '{name}': {ext} is not a supported image format; crdr writes "
            f"{format_list()} ({extension_list()})"
        ) from None


def _check_rgb(rgb: np.ndarray) -> np.ndarray:
    if not isinstance(rgb, np.ndarray):
        raise TypeError(f"expected a numpy array, got {type(rgb).__name__}")
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(
            f"expected a uint8 array of shape (H, W, 3), got {rgb.dtype} {rgb.shape}"
        )
    if rgb.shape[0] == 0 or rgb.shape[1] == 0:
        raise ValueError(f"image has no pixels: shape {rgb.shape}")
    return np.ascontiguousarray(rgb)


def _save(rgb: np.ndarray, fp, fmt: str, meta=None, jpeg_quality: int | None = None) -> None:
    from .metadata import save_options, to_gray

    Image.init()
    pil_format = _PIL_FORMATS[fmt]
    if pil_format not in Image.SAVE:
        raise ImageError(f"this Pillow build cannot write {fmt.upper()} images")
    rgb = _check_rgb(rgb)
    if meta is not None and meta.grayscale and fmt != "webp":  # WebP has no gray mode
        im = to_gray(rgb)  # one channel: the mean of the decoded three
    else:
        im = Image.fromarray(rgb)
    options = dict(_SAVE_OPTIONS[fmt])
    if fmt == "jpeg" and jpeg_quality is not None:
        options["quality"] = _check_jpeg_quality(jpeg_quality)
    im.save(fp, format=pil_format, **options, **save_options(meta, fmt))


def _check_jpeg_quality(quality) -> int:
    from .errors import ParameterError

    if isinstance(quality, bool) or not isinstance(quality, (int, np.integer)) \
            or not 1 <= quality <= 100:
        raise ParameterError(f"JPEG quality must be an integer in [1, 100], got {quality!r}")
    return int(quality)


def encode_image_bytes(rgb: np.ndarray, fmt: str, meta=None,
                       jpeg_quality: int | None = None) -> bytes:
    """Encode an image in memory, e.g. for writing to stdout.

    Args:
        rgb: uint8 array of shape (H, W, 3).
        fmt: format name: png, jpeg (jpg), webp, tiff (tif), bmp or ppm.

    Returns:
        The encoded file contents.

    Raises:
        ImageError: unknown format.
        ValueError, TypeError: ``rgb`` is not a (H, W, 3) uint8 array.
    """
    name = _canonical_format(fmt)
    buf = io.BytesIO()
    _save(rgb, buf, name, meta, jpeg_quality)
    return buf.getvalue()


def write_image(path: PathLike, rgb: np.ndarray, format: str | None = None, meta=None,
                replace: bool = True, jpeg_quality: int | None = None) -> None:
    """Write an RGB image atomically; the format follows the extension of ``path``.

    JPEG is written at quality 95 (or ``jpeg_quality``) with 4:4:4 chroma, WebP losslessly, PNG at
    compression level 6.

    Args:
        path: output file. It appears only once completely written.
        rgb: uint8 array of shape (H, W, 3).
        format: format name overriding the extension (png, jpeg, webp, tiff, bmp, ppm).
        meta: a :class:`~crdr_codec.metadata.Metadata` to carry (ICC profile, EXIF, XMP
            where the format holds them; grayscale writes one channel).
        replace: if False, an existing file at ``path`` is never replaced
            (:class:`~crdr_codec.errors.OutputExistsError`).
        jpeg_quality: quality 1-100 of a JPEG file (default
            :data:`DEFAULT_JPEG_QUALITY`); other formats ignore it.

    Raises:
        ImageError: the format cannot be told from the extension or is unknown.
        OutputExistsError: ``replace`` is False and ``path`` exists.
        OutputError: the file cannot be written (missing directory, no permission,
            disk full); nothing is left at ``path``.
        ValueError, TypeError: ``rgb`` is not a (H, W, 3) uint8 array.
    """
    fmt = _canonical_format(format) if format is not None else format_from_extension(path)
    rgb = _check_rgb(rgb)
    with atomic_writer(path, replace=replace) as tmp:
        try:
            _save(rgb, tmp, fmt, meta, jpeg_quality)
        except OSError as exc:
            reason = exc.strerror or str(exc) or type(exc).__name__
            raise OutputError(f"cannot write '{os.fspath(path)}': {reason}") from exc


# --------------------------------------------------------------------------- reading


def _rawmodes(im: Image.Image) -> list[str]:
    """The decoder raw modes of a not-yet-loaded image (e.g. 'RGB;16B')."""
    modes = []
    for tile in getattr(im, "tile", None) or []:
        args = tile[3] if len(tile) > 3 else None
        if isinstance(args, tuple) and args:
            args = args[0]
        if isinstance(args, str):
            modes.append(args)
    return modes


def _is_16bit_rawmode(rawmode: str) -> bool:
    # 'RGB;16B', 'I;16', 'LA;16B', 'CMYK;16L' ... are 16 bits per channel;
    # 'BGR;16' / 'BGR;15' are packed 5-6-5 / 5-5-5 pixels, i.e. fewer bits.
    base, _, rest = rawmode.partition(";")
    return rest.startswith("16") and not base.startswith("BGR")


def _has_alpha(im: Image.Image) -> bool:
    if im.mode in _ALPHA_IMAGE_MODES or "transparency" in im.info:
        return True
    return im.mode == "P" and im.palette is not None and im.palette.mode == "RGBA"


def _alpha_is_opaque(im: Image.Image) -> bool:
    try:
        return im.convert("RGBA").getchannel("A").getextrema() == (255, 255)
    except (ValueError, OSError):
        return False


def _gray_to_rgb(gray: np.ndarray) -> np.ndarray:
    return np.repeat(gray[:, :, None], 3, axis=2)


def _high_precision_to_rgb(im: Image.Image, name: str) -> np.ndarray:
    """8-bit RGB from a single-band integer ('I', 'I;16*') or float ('F') image."""
    a = np.asarray(im)
    if im.mode == "F":
        if not np.all(np.isfinite(a)):
            raise ImageError(f"{name}: floating-point image contains NaN or infinity")
        lo, hi = (float(a.min()), float(a.max())) if a.size else (0.0, 0.0)
        if lo < 0.0 or hi > 255.0:
            raise ImageError(
                f"{name}: floating-point pixels outside [0, 255] "
                f"(range {lo:g} to {hi:g}) are not supported"
            )
        scale = 255.0 if hi <= 1.0 else 1.0  # [0, 1] data, else already 0..255
        return _gray_to_rgb(np.rint(a.astype(np.float64) * scale).astype(np.uint8))
    a = a.astype(np.int64)
    if a.size and (a.min() < 0 or a.max() > 0xFFFF):
        raise ImageError(
            f"{name}: pixel values outside 0..65535 (32-bit or signed integer "
            "image) are not supported"
        )
    return _gray_to_rgb((a >> 8).astype(np.uint8))


def _frame_count(im: Image.Image) -> int:
    """Frames in a multi-frame file; 1 if Pillow cannot count them (a damaged later
    frame is not this image's problem: only the first is read). The extra images of a
    camera's MPO JPEG (previews, depth maps) are not frames of the picture: 1."""
    if im.format == "MPO":
        return 1
    try:
        return max(1, int(getattr(im, "n_frames", 1) or 1))
    except Exception:  # noqa: BLE001 - counting walks the file with the plugin's own parser
        return 1


def _open_and_load(source, name: str, max_pixels: int) -> tuple[Image.Image, bool, int]:
    """Decode ``source`` fully (its first frame); return the image (orientation
    applied), whether its samples had 16 bits before Pillow's loading truncated them to
    8, and the number of frames in the file.

    The size in the file's header is checked against ``max_pixels`` before any pixel
    is decoded (``Image.open`` reads only the header). While the pixels are decoded,
    Pillow's own decompression-bomb check (for frames or sub-images of other sizes)
    uses the same limit. Pillow's limit is a process global: not thread-safe."""
    old_limit = Image.MAX_IMAGE_PIXELS
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            Image.MAX_IMAGE_PIXELS = None  # check_pixels below replaces Pillow's check
            im = Image.open(source)
            Image.MAX_IMAGE_PIXELS = max_pixels
            with im:
                check_pixels(im.width, im.height, max_pixels, name, error=ImageError)
                deep = any(_is_16bit_rawmode(m) for m in _rawmodes(im))
                frames = _frame_count(im)
                im.load()
                orientation = im.getexif().get(0x0112)  # EXIF Orientation
                if orientation in (2, 3, 4, 5, 6, 7, 8):
                    return ImageOps.exif_transpose(im), deep, frames
                return im, deep, frames
    except ImageError:
        raise
    except Image.UnidentifiedImageError:
        raise ImageError(f"{name}: not a readable image (unknown or unsupported format)") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        detail = " ".join(str(exc).split())
        raise ImageError(
            f"{name}: image is over the pixel limit of {max_pixels:,} ({detail}); {HOW_TO_RAISE}"
        ) from None
    except _DECODE_ERRORS as exc:
        detail = " ".join(str(exc).split()) or type(exc).__name__
        raise ImageError(f"{name}: not a readable image ({detail})") from exc
    finally:
        Image.MAX_IMAGE_PIXELS = old_limit


def read_image(
    path_or_bytes: PathLike | bytes | bytearray | memoryview,
    alpha: str = "refuse",
    *,
    name: str | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    meta: list | None = None,
) -> np.ndarray:
    """Read an image file (or its bytes) as 8-bit RGB.

    Any format Pillow decodes is accepted (PNG, JPEG, WebP, TIFF, BMP, GIF, PPM, ...).
    EXIF orientation is applied. Grayscale, palette, CMYK, YCbCr etc. become RGB.
    16-bit and floating-point images are reduced to 8 bits (16-bit: ``v >> 8``) with a
    :class:`PrecisionWarning`. Of a multi-frame file the first frame is read, with a
    :class:`FramesWarning`.

    Args:
        path_or_bytes: a file path, or the raw file contents (e.g. read from stdin).
        alpha: what to do with an alpha channel or palette transparency:
            ``"refuse"`` raises :class:`ImageError`, ``"drop"`` discards it and keeps
            the colour values as they are (no compositing onto a background).
        name: how to call the input in messages; defaults to the path, or
            ``"<stdin>"`` for bytes.
        max_pixels: refuse images with more pixels than this after padding to
            multiples of 64, from the file's header, before any pixel is decoded.
        meta: if a list is given, the image's :class:`~crdr_codec.metadata.Metadata`
            (ICC, EXIF with orientation reset, XMP, grayscale) is appended to it.

    Returns:
        uint8 array of shape (H, W, 3), C-contiguous and writeable.

    Raises:
        ImageError: missing file, directory, unreadable or not an image, truncated,
            more pixels than ``max_pixels``, alpha refused, unsupported pixel format.
        ValueError: ``alpha`` is not one of ``"refuse"``, ``"drop"``.
    """
    if alpha not in ALPHA_MODES:
        raise ValueError(f"alpha must be one of {', '.join(ALPHA_MODES)}; got {alpha!r}")
    check_max_pixels(max_pixels)

    if isinstance(path_or_bytes, (bytes, bytearray, memoryview)):
        label = name if name is not None else "<stdin>"
        data = bytes(path_or_bytes)
        if not data:
            raise ImageError(f"{label}: not a readable image (empty input)")
        im, deep, frames = _open_and_load(io.BytesIO(data), label, max_pixels)
    else:
        path = os.fspath(path_or_bytes)
        label = name if name is not None else path
        try:
            f = open(path, "rb")
        except FileNotFoundError:
            raise ImageError(f"{label}: no such file") from None
        except IsADirectoryError:
            raise ImageError(f"{label}: is a directory, not an image file") from None
        except OSError as exc:
            reason = exc.strerror or str(exc)
            raise ImageError(f"{label}: cannot open ({reason})") from exc
        with f:
            if os.fstat(f.fileno()).st_size == 0:
                raise ImageError(f"{label}: not a readable image (empty file)")
            im, deep, frames = _open_and_load(f, label, max_pixels)

    if frames > 1:
        warnings.warn(f"{label}: {frames} frames (animation or pages); only the first is "
                      "encoded", FramesWarning, stacklevel=2)
    with im:
        if meta is not None:
            from .metadata import from_image

            meta.append(from_image(im))
        if _has_alpha(im):
            # A fully opaque alpha (common in screenshots) carries nothing: accept it.
            if alpha == "refuse" and not _alpha_is_opaque(im):
                raise ImageError(
                    f"{label} has an alpha channel; crdr codes RGB only "
                    "(use --alpha drop to discard it)"
                )
            im = im.convert("RGBA").convert("RGB")

        if im.mode in ("I", "F") or im.mode.startswith("I;16"):
            kind = "floating-point" if im.mode == "F" else "16-bit"
            rgb = _high_precision_to_rgb(im, label)
            warnings.warn(f"{label}: {kind} image reduced to 8 bits", PrecisionWarning, stacklevel=2)
            return rgb

        if im.mode != "RGB":
            try:
                im = im.convert("RGB")
            except ValueError:
                raise ImageError(
                    f"{label}: colour mode {im.mode} is not supported; convert it to RGB"
                ) from None
        if deep:
            warnings.warn(f"{label}: 16-bit image reduced to 8 bits", PrecisionWarning, stacklevel=2)
        rgb = np.array(im, dtype=np.uint8)
    if rgb.ndim != 3 or rgb.shape[2] != 3:  # defensive: Pillow always gives (H, W, 3)
        raise ImageError(f"{label}: unexpected pixel layout {rgb.shape}")
    return rgb


# --------------------------------------------------------------------------- tensors


def to_input(rgb: np.ndarray) -> np.ndarray:
    """Network input from an image.

    Args:
        rgb: uint8 array of shape (H, W, 3).

    Returns:
        float32 array of shape (1, 3, H, W) with values ``rgb / 127.5 - 1`` in [-1, 1].

    Raises:
        ValueError, TypeError: ``rgb`` is not a (H, W, 3) uint8 array.
    """
    rgb = _check_rgb(rgb)
    x = rgb.transpose(2, 0, 1)[None].astype(np.float32)
    x /= np.float32(127.5)
    x -= np.float32(1.0)
    return x


def to_tensor(rgb: np.ndarray) -> "torch.Tensor":
    """:func:`to_input` as a torch tensor (training, evaluation)."""
    import torch

    return torch.from_numpy(to_input(rgb))


def to_uint8(x) -> np.ndarray:
    """Image from a network output.

    Args:
        x: array or tensor of shape (1, 3, H, W) (or (3, H, W)) with values nominally in
            [-1, 1]; values outside are clamped, NaN becomes mid-gray.

    Returns:
        uint8 array of shape (H, W, 3): ``round((clamp(x, -1, 1) + 1) * 127.5)``.

    Raises:
        ValueError: wrong shape.
    """
    if not isinstance(x, np.ndarray):  # a torch tensor
        x = x.detach().to(device="cpu").float().numpy()
    if x.ndim == 4 and x.shape[0] == 1:
        x = x[0]
    if x.ndim != 3 or x.shape[0] != 3:
        raise ValueError(f"expected an array of shape (1, 3, H, W), got {tuple(x.shape)}")
    x = np.nan_to_num(x.astype(np.float32), nan=0.0)
    np.clip(x, -1.0, 1.0, out=x)
    x += np.float32(1.0)
    x *= np.float32(127.5)
    return np.ascontiguousarray(np.round(x).astype(np.uint8).transpose(1, 2, 0))


def pad_to_multiple(x, multiple: int = PAD_MULTIPLE):
    """Pad right and bottom so height and width are multiples of ``multiple``.

    Edge pixels are replicated (reflection is impossible for images smaller than the
    pad, e.g. 1x1). Undo with :func:`crop`.

    Args:
        x: array or tensor of shape (N, C, H, W), floating point.
        multiple: the required divisor of H and W.

    Returns:
        ``x`` itself if already aligned, else a new padded array (tensor for a tensor).

    Raises:
        ValueError: ``x`` is not 4-D or ``multiple`` is not positive.
    """
    if x.ndim != 4:
        raise ValueError(f"expected an array of shape (N, C, H, W), got {tuple(x.shape)}")
    if multiple < 1:
        raise ValueError(f"multiple must be positive, got {multiple}")
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph == 0 and pw == 0:
        return x
    if isinstance(x, np.ndarray):
        return np.pad(x, ((0, 0), (0, 0), (0, ph), (0, pw)), mode="edge")
    import torch.nn.functional as F

    return F.pad(x, (0, pw, 0, ph), mode="replicate")


def crop(x: "torch.Tensor", h: int, w: int) -> "torch.Tensor":
    """The top-left ``h`` x ``w`` region of ``x`` (removes :func:`pad_to_multiple`).

    Args:
        x: tensor of shape (..., H, W).
        h: height to keep, at most H.
        w: width to keep, at most W.

    Returns:
        A view of shape (..., h, w).

    Raises:
        ValueError: ``h`` or ``w`` is not in [1, H] / [1, W].
    """
    H, W = x.shape[-2:]
    if not (1 <= h <= H and 1 <= w <= W):
        raise ValueError(f"cannot crop {H}x{W} to {h}x{w}")
    return x[..., :h, :w]
