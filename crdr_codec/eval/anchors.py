"""Conventional codecs ("anchors") through Pillow and its plugins.

Each anchor maps a name to ``encode(rgb, quality) -> bytes`` and ``decode(bytes) -> rgb``
with fixed, documented settings, and a default quality sweep chosen so that the mean
rate over Kodak spans about 0.05-1.5 bpp. The sweeps were calibrated on kodim01, 03, 13
and 23 (two detailed, two smooth images), whose mean bpp is noted per codec below.

=========  =====================================  ========================  ==================
name       library (route)                        settings                  Kodak sample bpp
=========  =====================================  ========================  ==================
jpeg       libjpeg-turbo (Pillow)                 4:2:0, optimized Huffman  0.09 (q2)-1.69 (q80)
webp       libwebp (Pillow)                       method 6 (slowest/best)   0.11 (q0)-1.37 (q80)
avif       libavif + aom (Pillow)                 4:4:4, speed 6            0.08 (q0)-1.2 (q65)
jxl        libjxl (pillow-jxl-plugin)             effort 7 (libjxl default) 0.16 (q0)-1.27 (q80)
heic       libheif + x265 (pillow-heif)           4:2:0 (x265 default)      0.04 (q0)-1.39 (q50)
=========  =====================================  ========================  ==================

Floors: JPEG cannot go below ~0.09 bpp on Kodak (quality 1 and 2 give the same tables),
and the JPEG XL plugin exposes ``quality`` only, whose lowest setting (distance 15) gives
~0.16 bpp; both curves therefore start above 0.05 bpp.

All codecs are run single-threaded by default (``threads=1``) so that several can run in
parallel processes and timings are comparable; the thread count never changes the bytes.
The reported rate is the length of the complete file the library writes (container and
headers included), as a user would store it.

Only the standard library, numpy and Pillow are imported at module import; the plugins
are imported when their codec is first used, and a missing plugin raises
:class:`~crdr_codec.errors.DependencyError` naming the pip command.
"""

from __future__ import annotations

import importlib
import io
from dataclasses import dataclass, field
from importlib import metadata
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
from PIL import Image, features

from crdr_codec.errors import DependencyError, ParameterError

__all__ = ["Anchor", "ANCHORS", "get_anchor", "parse_anchor_names", "parse_anchor_qualities", "anchor_versions"]


@dataclass(frozen=True)
class Anchor:
    """A conventional codec with fixed settings.

    Attributes:
        name: short name used on the command line and in outputs (``"jpeg"``).
        label: human-readable name for plots (``"JPEG 4:2:0"``).
        pil_format: Pillow format name used to save.
        extension: usual file extension.
        qualities: default quality sweep (ascending rate).
        quality_range: valid ``(min, max)`` quality.
        settings: one-line description of the fixed settings.
        plugin: module to import first (registers the Pillow plugin), or None.
        package: PyPI name of the plugin, for install hints and versions.
        bench_quality: a mid-rate quality used by ``crdr bench``.
    """

    name: str
    label: str
    pil_format: str
    extension: str
    qualities: Tuple[int, ...]
    quality_range: Tuple[int, int]
    settings: str
    options: Callable[[int, int], dict] = field(repr=False)
    plugin: Optional[str] = None
    package: Optional[str] = None
    bench_quality: int = 50

    # ----------------------------------------------------------------- plumbing
    def ensure_available(self) -> None:
        """Import the plugin (once) and check Pillow can write and read the format.

        Raises:
            DependencyError: the plugin is not installed or Pillow lacks the codec.
        """
        if self.plugin is not None:
            try:
                _load_plugin(self.plugin)
            except ImportError:
                raise DependencyError(
                    f"anchor {self.name} needs the Pillow plugin {self.package}: "
                    f"pip install {self.package}"
                ) from None
        Image.init()
        if self.pil_format not in Image.SAVE:
            raise DependencyError(
                f"this Pillow build cannot write {self.pil_format} (anchor {self.name}); "
                "pip install --upgrade pillow"
            )

    def check_quality(self, quality: int) -> int:
        """Return ``quality`` as int, or raise ParameterError if outside the valid range."""
        q = int(quality)
        lo, hi = self.quality_range
        if q != quality or not lo <= q <= hi:
            raise ParameterError(f"{self.name} quality must be an integer in [{lo}, {hi}], got {quality}")
        return q

    # ----------------------------------------------------------------- codec
    def encode(self, rgb: np.ndarray, quality: int, threads: int = 1) -> bytes:
        """Encode an ``(H, W, 3)`` uint8 image; returns the complete file contents.

        Args:
            rgb: the image.
            quality: codec quality, see :attr:`quality_range`.
            threads: encoder threads where the library allows choosing (AVIF, JPEG XL,
                HEIC); JPEG and WebP encode on one thread anyway.
        """
        self.ensure_available()
        q = self.check_quality(quality)
        if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
            raise ValueError(f"expected a uint8 (H, W, 3) image, got {rgb.dtype} {rgb.shape}")
        buf = io.BytesIO()
        Image.fromarray(np.ascontiguousarray(rgb), "RGB").save(
            buf, format=self.pil_format, **self.options(q, max(1, int(threads)))
        )
        return buf.getvalue()

    def decode(self, data: bytes) -> np.ndarray:
        """Decode file contents written by :meth:`encode` to an ``(H, W, 3)`` uint8 image."""
        self.ensure_available()
        with Image.open(io.BytesIO(data)) as im:
            if im.format != self.pil_format:
                raise ValueError(f"{self.name}: decoded a {im.format} file")
            im.load()
            return np.asarray(im.convert("RGB"), dtype=np.uint8).copy()

    def version(self) -> str:
        """Library versions behind this anchor, e.g. ``"libavif 1.4.2 (Pillow 13.0.0)"``."""
        return anchor_versions([self.name])[self.name]


_LOADED: Dict[str, object] = {}


def _load_plugin(module: str) -> object:
    """Import a Pillow plugin module once and register it (single-threaded decoding)."""
    if module in _LOADED:
        return _LOADED[module]
    mod = importlib.import_module(module)
    if module == "pillow_heif":
        mod.register_heif_opener(decode_threads=1)  # type: ignore[attr-defined]
    elif module == "pillow_jxl":
        # The plugin decodes with all cores unless told otherwise (0 = no worker threads).
        plugin = importlib.import_module("pillow_jxl.JpegXLImagePlugin")
        setattr(plugin, "DECODE_THREADS", 0)
    _LOADED[module] = mod
    return mod


def _jpeg(q: int, threads: int) -> dict:
    # subsampling=2 is 4:2:0 (Pillow's own default for quality < 95 is also 4:2:0).
    return {"quality": q, "subsampling": 2, "optimize": True}


def _webp(q: int, threads: int) -> dict:
    return {"quality": q, "method": 6}


def _avif(q: int, threads: int) -> dict:
    return {"quality": q, "speed": 6, "subsampling": "4:4:4", "max_threads": threads}


def _jxl(q: int, threads: int) -> dict:
    # num_threads=0 runs libjxl without a thread pool.
    return {"quality": q, "effort": 7, "num_threads": 0 if threads <= 1 else threads}


def _heic(q: int, threads: int) -> dict:
    return {"quality": q, "enc_params": {"x265:pools": str(threads)}}


#: The available anchors, by name.
ANCHORS: Dict[str, Anchor] = {
    a.name: a
    for a in (
        Anchor("jpeg", "JPEG 4:2:0", "JPEG", "jpg",
               (2, 4, 6, 8, 10, 15, 20, 30, 40, 50, 60, 70, 80), (1, 100),
               "libjpeg-turbo, 4:2:0 chroma, optimized Huffman tables, baseline", _jpeg,
               bench_quality=75),
        Anchor("webp", "WebP", "WEBP", "webp",
               (0, 2, 5, 10, 20, 30, 40, 50, 60, 70, 80, 85), (0, 100),
               "libwebp lossy, method 6, 4:2:0 (the only lossy WebP mode)", _webp,
               bench_quality=75),
        Anchor("avif", "AVIF 4:4:4", "AVIF", "avif",
               (0, 10, 15, 20, 25, 30, 35, 40, 45, 50, 55, 60, 65), (0, 100),
               "libavif with libaom, 4:4:4 chroma, speed 6", _avif, bench_quality=50),
        Anchor("jxl", "JPEG XL", "JXL", "jxl",
               (0, 10, 20, 30, 40, 50, 60, 70, 75, 80), (0, 100),
               "libjxl via pillow-jxl-plugin, effort 7, quality -> distance mapping of libjxl",
               _jxl, plugin="pillow_jxl", package="pillow-jxl-plugin", bench_quality=75),
        Anchor("heic", "HEIC (x265)", "HEIF", "heic",
               (0, 5, 10, 15, 20, 25, 30, 35, 40, 45, 50), (0, 100),
               "libheif with x265 (HEVC intra), 4:2:0 chroma (x265 default)", _heic,
               plugin="pillow_heif", package="pillow-heif", bench_quality=30),
    )
}


def get_anchor(name: str) -> Anchor:
    """The anchor called ``name``, checked to be usable.

    Raises:
        ParameterError: unknown name (the message lists the known ones).
        DependencyError: its plugin is missing.
    """
    key = name.strip().lower()
    if key not in ANCHORS:
        raise ParameterError(f"unknown anchor '{name}'; choose from {', '.join(ANCHORS)}")
    anchor = ANCHORS[key]
    anchor.ensure_available()
    return anchor


def parse_anchor_names(text: str) -> List[str]:
    """``"jpeg,webp"`` -> ``["jpeg", "webp"]``; ``""`` or ``"none"`` -> ``[]``; checks names."""
    if text.strip().lower() in ("", "none"):
        return []
    names: List[str] = []
    for part in text.split(","):
        key = part.strip().lower()
        if not key:
            continue
        if key not in ANCHORS:
            raise ParameterError(f"unknown anchor '{part.strip()}'; choose from {', '.join(ANCHORS)}")
        if key not in names:
            names.append(key)
    return names


def parse_anchor_qualities(items: Sequence[str]) -> Dict[str, List[int]]:
    """``--anchor-q`` items ``NAME=LIST`` (``"jpeg=5:95:10"``) -> ``{name: qualities}``.

    Raises:
        ParameterError: not ``NAME=LIST``, an unknown name, or a quality outside the
            anchor's range (the message names the option).
    """
    from crdr_codec.eval import parse_values

    out: Dict[str, List[int]] = {}
    for item in items:
        name, sep, spec = item.partition("=")
        name = name.strip().lower()
        if not sep or name not in ANCHORS:
            raise ParameterError(f"--anchor-q expects NAME=LIST with NAME one of {', '.join(ANCHORS)}, got '{item}'")
        lo, hi = ANCHORS[name].quality_range
        out[name] = [int(v) for v in parse_values(spec, f"--anchor-q {name}", lo, hi, integer=True)]
    return out


def _dist_version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def anchor_versions(names: Sequence[str] = tuple(ANCHORS)) -> Dict[str, str]:
    """Library versions behind each anchor, as one string per name."""
    pillow = f"Pillow {Image.__version__}"
    out: Dict[str, str] = {}
    for name in names:
        if name == "jpeg":
            turbo = features.version("libjpeg_turbo")
            lib = f"libjpeg-turbo {turbo}" if turbo else f"libjpeg {features.version('jpg')}"
            out[name] = f"{lib}; {pillow}"
        elif name == "webp":
            out[name] = f"libwebp {features.version('webp')}; {pillow}"
        elif name == "avif":
            out[name] = f"libavif {features.version('avif')}; {pillow}"
        elif name == "jxl":
            out[name] = f"pillow-jxl-plugin {_dist_version('pillow-jxl-plugin')} (bundled libjxl); {pillow}"
        elif name == "heic":
            text = f"pillow-heif {_dist_version('pillow-heif')}"
            try:
                info = _load_plugin("pillow_heif").libheif_info()  # type: ignore[attr-defined]
                text += f", libheif {info.get('libheif')}, {info.get('HEIF') or 'no HEVC encoder'}"
            except ImportError:
                pass
            out[name] = f"{text}; {pillow}"
        else:
            raise ParameterError(f"unknown anchor '{name}'")
    return out
