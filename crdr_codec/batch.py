"""The work on one file of ``crdr encode`` / ``crdr decode``, in one place.

The single-process batch (:mod:`crdr_codec.cli.encode`, :mod:`crdr_codec.cli.decode`) and
the Ray path (:mod:`crdr_codec.raybatch`) both call :class:`Encoder` and :class:`Decoder`:
bytes (or a path) in, the output file's bytes and its result line out. Neither writes
anything; the callers write the bytes with crdr's atomic rules. That is why ``--ray``
writes the same files, byte for byte, as the single-process batch on the same machine.

Each holds its model(s), loaded on first use (a missing or bad input is reported without
loading any model). Errors are :class:`~crdr_codec.errors.CrdrError`; input notices are
Python warnings (:class:`~crdr_codec.errors.InputNotice`), as :func:`read_image` raises them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from .limits import DEFAULT_MAX_PIXELS


@dataclass(frozen=True)
class EncodeSettings:
    """What ``crdr encode`` does to each file (its options)."""

    q: float = 2.0
    target_bpp: float | None = None  # instead of q: the --bpp search
    refine: int = 0
    alpha: str = "refuse"
    strip: bool = False
    max_pixels: int = DEFAULT_MAX_PIXELS
    weights: str | None = None  # None: $CRDR_WEIGHTS or the shipped model
    device: str = "auto"
    threads: int | None = None


@dataclass(frozen=True)
class Encoded:
    """One encoded file: its bytes and what its result line and the manifest say."""

    data: bytes
    q: float  # as stored in the header
    width: int
    height: int
    encodes: int  # real encodes of a --bpp search (0 without --bpp)
    model_id: bytes
    target_bpp: float | None

    @property
    def bpp(self) -> float:
        return len(self.data) * 8 / (self.width * self.height)

    @property
    def missed(self) -> bool:
        """Over the --bpp target (even q = 0 was larger)."""
        return self.target_bpp is not None and self.bpp > self.target_bpp

    def line(self, name: str, out: str) -> str:
        """The result line (without the ``[k/N]`` of a batch)."""
        from .cli.common import plural

        searched = ("" if self.target_bpp is None else
                    f" (--bpp {self.target_bpp:g}: {plural(self.encodes, 'encode')})")
        return (f"{name} -> {out}: {self.width}x{self.height}, q={self.q:g}, "
                f"{len(self.data)} bytes, {self.bpp:.4f} bpp{searched}")

    def warning(self, name: str, out: str) -> str:
        """The warning line of a missed --bpp target."""
        return (f"crdr: warning: {name}: --bpp {self.target_bpp:g} cannot be reached; the "
                f"smallest file (q={self.q:g}) is {self.bpp:.4f} bpp, written to {out}")


class Encoder:
    """Encodes images into .crdr bytes with one model, loaded on first use."""

    def __init__(self, settings: EncodeSettings) -> None:
        self.settings = settings
        self._codec = None

    @property
    def codec(self):
        if self._codec is None:
            from .codec import Codec

            s = self.settings
            self._codec = Codec(s.weights, device=s.device, max_pixels=s.max_pixels,
                                threads=s.threads)
        return self._codec

    def encode(self, source, name: str,
               progress: Callable[[int, float, float], None] | None = None) -> Encoded:
        """Encode one image.

        Args:
            source: the image file's bytes, or its path.
            name: how the input is named in messages.
            progress: with --bpp, called after each real encode as ``progress(n, q, bpp)``.
        """
        from . import metadata
        from .image_io import read_image

        s = self.settings
        found: list = []
        rgb = read_image(source, alpha=s.alpha, name=name, max_pixels=s.max_pixels, meta=found)
        sections = metadata.to_sections(found[0].stripped() if s.strip else found[0])
        codec = self.codec  # loaded once an input has been read
        encodes = [0]
        if s.target_bpp is not None:
            def step(n: int, q_tried: float, bpp_tried: float) -> None:
                encodes[0] = n
                if progress is not None:
                    progress(n, q_tried, bpp_tried)

            res = codec.encode_to_bpp(rgb, s.target_bpp, sections=sections, progress=step,
                                      refine=s.refine)
        else:
            res = codec.encode(rgb, s.q, sections, s.refine)
        h, w = rgb.shape[:2]
        return Encoded(res.data, res.q, w, h, encodes[0], codec.model_id, s.target_bpp)


@dataclass(frozen=True)
class DecodeSettings:
    """What ``crdr decode`` does to each file (its options; the output format is chosen
    per file, from --format or the output's extension)."""

    beta: float = 0.0
    jpeg_quality: int | None = None
    strip: bool = False
    max_pixels: int = DEFAULT_MAX_PIXELS
    weights: str | None = None  # a file or folder searched first for each file's model id
    device: str = "auto"
    threads: int | None = None


@dataclass(frozen=True)
class Decoded:
    """One decoded file: the image file's bytes and what the manifest says."""

    data: bytes
    width: int
    height: int
    q: float
    model_id: bytes
    beta: float
    in_bytes: int

    @property
    def bpp(self) -> float:
        """Of the .crdr input."""
        return self.in_bytes * 8 / (self.width * self.height)

    def line(self, name: str, out: str) -> str:
        return f"{name} -> {out}: {self.width}x{self.height}, beta={self.beta:g}"


class Decoder:
    """Decodes .crdr bytes into image file bytes; the model of each file is found by the
    model id in its header and loaded on first use (then kept).

    ``note(message)`` is called once per model loaded whose weights come from before
    realism training while beta is not 0.
    """

    def __init__(self, settings: DecodeSettings, note: Callable[[str], None] | None = None):
        from .weights_search import WeightsSearch

        self.settings = settings
        self.note = note
        self.search = WeightsSearch(settings.weights, device=settings.device,
                                    threads=settings.threads)
        self.codecs: dict[bytes, object] = {}

    def codec_for(self, model_id: bytes):
        if model_id not in self.codecs:
            from .codec import Codec

            s = self.settings
            model, fingerprint, _ = self.search.find(model_id)
            codec = Codec(model=model, fingerprint=fingerprint, device=s.device,
                          max_pixels=s.max_pixels)
            if s.beta != 0 and not codec.realism_trained and self.note is not None:
                self.note(
                    f"crdr: note: the weights of model {model_id.hex()} come from training "
                    f"stage {codec.model.meta.get('stage')}, before realism training; beta "
                    "has no trained effect yet")
            self.codecs[model_id] = codec
        return self.codecs[model_id]

    def decode(self, data: bytes, fmt: str) -> Decoded:
        """Decode one .crdr file's bytes to the bytes of an image file in format ``fmt``."""
        from .bitstream import unpack
        from .image_io import encode_image_bytes
        from .limits import check_pixels
        from .metadata import from_sections

        s = self.settings
        # Header checks first: a damaged, forged or oversized file costs no model work.
        header, _, sections = unpack(data)
        check_pixels(header.width, header.height, s.max_pixels)
        codec = self.codec_for(header.model_id)
        rgb = codec.decode(data, s.beta)
        meta = from_sections(sections)
        if s.strip:
            meta = meta.stripped()
        out = encode_image_bytes(rgb, fmt, meta, s.jpeg_quality)
        h, w = rgb.shape[:2]
        return Decoded(out, w, h, header.q, header.model_id, s.beta, len(data))
