"""What of a user's file besides pixels travels through a .crdr file.

At encode time :func:`from_image` takes from the opened original: its ICC profile, its
EXIF block (with the orientation reset to 1, because crdr applies the orientation to the
pixels, and only descriptive tags: a TIFF's first IFD also holds the tags that lay out its
own pixel data, see :data:`STRUCTURAL_TAGS`), its XMP packet, and whether it was
grayscale. :func:`to_sections` stores them in
the optional sections of the container (docs/FORMAT.md); :func:`from_sections` reads them
back, and :func:`save_options` turns them into Pillow save arguments for the decoded file
(formats that cannot hold a field simply do not get it; a field too large for the format,
or an EXIF block that a TIFF writer cannot parse, is refused with an ImageError). Only
Pillow and the standard library are imported here.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

from PIL import Image

from . import bitstream
from .errors import ImageError

_ORIENTATION = 0x0112
_XMP_TAG = 700  # TIFF tag of the XMP packet
_GRAY_MODES = ("1", "L", "LA", "La", "I", "F")
#: A JPEG file holds the EXIF block and the XMP packet in one marker segment each (at most
#: 65533 bytes, the XMP one after its 29-byte namespace); Pillow refuses larger ones.
_JPEG_LIMITS = {"EXIF block": 65533, "XMP packet": 65533 - 29}
_OTHER_FORMATS = {"jpeg": "PNG, WebP or TIFF", "tiff": "PNG, JPEG or WebP"}

#: TIFF tags of the first IFD that describe how that file stores its pixels, not the
#: picture: never carried as EXIF (they would be wrong for the decoded file, and a
#: float TIFF's BitsPerSample or SampleFormat could mislead a reader of it). The ICC
#: profile and XMP packet, which TIFF also keeps as tags, travel as their own sections.
STRUCTURAL_TAGS = frozenset({
    254, 255,  # NewSubfileType, SubfileType
    256, 257, 258, 259,  # ImageWidth, ImageLength, BitsPerSample, Compression
    262, 263, 264, 265, 266,  # PhotometricInterpretation, Threshholding, CellWidth/Length, FillOrder
    273, 277, 278, 279,  # StripOffsets, SamplesPerPixel, RowsPerStrip, StripByteCounts
    280, 281, 284,  # MinSampleValue, MaxSampleValue, PlanarConfiguration
    288, 289, 290, 291,  # FreeOffsets, FreeByteCounts, GrayResponseUnit, GrayResponseCurve
    292, 293, 317, 320,  # T4Options, T6Options, Predictor, ColorMap
    322, 323, 324, 325,  # TileWidth, TileLength, TileOffsets, TileByteCounts
    330, 332, 338, 339,  # SubIFDs, InkSet, ExtraSamples, SampleFormat
    340, 341, 347,  # SMinSampleValue, SMaxSampleValue, JPEGTables
    *range(512, 522),  # old-style JPEG compression (JPEGProc ... JPEGACTables)
    529, 530, 531, 532,  # YCbCrCoefficients, YCbCrSubSampling, YCbCrPositioning, ReferenceBlackWhite
    _XMP_TAG, 34675,  # XMP, InterColorProfile (carried as sections of their own)
    37724,  # ImageSourceData (Photoshop's layers)
})


@dataclass
class Metadata:
    icc: bytes | None = None
    exif: bytes | None = None
    xmp: bytes | None = None
    grayscale: bool = False

    def stripped(self) -> "Metadata":
        """No ICC/EXIF/XMP; the colour mode stays (it is about the pixels)."""
        return Metadata(grayscale=self.grayscale)


def to_gray(rgb) -> Image.Image:
    """A one-channel image from decoded RGB: the rounded mean of the three channels."""
    import numpy as np

    return Image.fromarray(((rgb.astype(np.uint16).sum(axis=2) + 1) // 3).astype(np.uint8), mode="L")


def from_image(im: Image.Image) -> Metadata:
    """The metadata of an opened image (after its orientation was applied)."""
    icc = im.info.get("icc_profile") or None
    exif = None
    ex = im.getexif()
    for tag in STRUCTURAL_TAGS & set(ex):
        del ex[tag]
    if len(ex):
        ex[_ORIENTATION] = 1  # the pixels are stored upright (Pillow may drop the tag instead)
        exif = ex.tobytes() or None
    xmp = im.info.get("xmp") or im.info.get("XML:com.adobe.xmp") or None
    if isinstance(xmp, str):
        xmp = xmp.encode("utf-8")
    gray = im.mode in _GRAY_MODES or im.mode.startswith("I;16")
    return Metadata(icc=icc, exif=exif, xmp=xmp, grayscale=gray)


def to_sections(meta: Metadata) -> list[bitstream.Section]:
    out = []
    for kind, data in ((bitstream.SECTION_ICC, meta.icc), (bitstream.SECTION_EXIF, meta.exif),
                       (bitstream.SECTION_XMP, meta.xmp)):
        if data:
            out.append(bitstream.Section(kind, False, bytes(data)))
    if meta.grayscale:
        out.append(bitstream.colour_mode_section(True))
    return out


def from_sections(sections) -> Metadata:
    meta = Metadata()
    for s in sections:
        if s.type == bitstream.SECTION_ICC:
            meta.icc = s.data
        elif s.type == bitstream.SECTION_EXIF:
            meta.exif = s.data
        elif s.type == bitstream.SECTION_XMP:
            meta.xmp = s.data
        elif s.type == bitstream.SECTION_COLOUR_MODE:
            meta.grayscale = s.value() == "grayscale"
    return meta


def save_options(meta: Metadata | None, fmt: str) -> dict:
    """Pillow save() arguments that carry ``meta`` into a file of format ``fmt``."""
    if meta is None:
        return {}
    opts: dict = {}
    if fmt == "jpeg":
        for what, data in (("EXIF block", meta.exif), ("XMP packet", meta.xmp)):
            if data and len(data) > _JPEG_LIMITS[what]:
                raise ImageError(f"its {what} ({len(data):,} bytes) does not fit into a JPEG file "
                                 f"(at most {_JPEG_LIMITS[what]:,} bytes); decode with --strip, or "
                                 f"to {_OTHER_FORMATS[fmt]}")
    if fmt in ("png", "jpeg", "webp", "tiff"):
        if meta.icc:
            opts["icc_profile"] = meta.icc
        if meta.exif and fmt != "tiff":
            opts["exif"] = meta.exif
    if fmt == "tiff" and (meta.exif or meta.xmp):
        opts["tiffinfo"] = _tiff_tags(meta)
    if meta.xmp:
        if fmt in ("jpeg", "webp"):
            opts["xmp"] = meta.xmp
        elif fmt == "png":
            from PIL.PngImagePlugin import PngInfo

            info = PngInfo()
            info.add_itxt("XML:com.adobe.xmp", meta.xmp.decode("utf-8", "replace"))
            opts["pnginfo"] = info
    return opts


def _tiff_tags(meta: Metadata) -> Image.Exif:
    """The EXIF tags and XMP packet of a TIFF output: tags of its IFD (XMP as tag 700).

    The other formats copy the EXIF block as it is; a TIFF writer must parse it, so here
    it is parsed and written once as a trial, and a block that Pillow cannot read or
    write back (a damaged or forged file) is refused. Structural tags are dropped, as
    :func:`from_image` drops them.
    """
    ex = Image.Exif()
    if meta.exif:
        try:
            ex.load(meta.exif)
            for tag in STRUCTURAL_TAGS & set(ex):
                del ex[tag]
            Image.new("L", (1, 1)).save(io.BytesIO(), format="TIFF", tiffinfo=ex)
        except Exception as e:  # Pillow's TIFF tag code raises many types on damaged data
            reason = " ".join(str(e).split())[:200] or type(e).__name__
            raise ImageError(f"its EXIF block is damaged ({reason}), so a TIFF file cannot "
                             f"carry it; decode with --strip, or to "
                             f"{_OTHER_FORMATS['tiff']}") from None
    if meta.xmp:
        ex[_XMP_TAG] = bytes(meta.xmp)
    return ex
