"""What of a user's file besides pixels travels through a .crdr file.

At encode time :func:`from_image` takes from the opened original: its ICC profile, its
EXIF block (with the orientation reset to 1, because crdr applies the orientation to the
pixels), its XMP packet, and whether it was grayscale. :func:`to_sections` stores them in
the optional sections of the container (docs/FORMAT.md); :func:`from_sections` reads them
back, and :func:`save_options` turns them into Pillow save arguments for the decoded file
(formats that cannot hold a field simply do not get it). Only Pillow and the standard
library are imported here.
"""

from __future__ import annotations

from dataclasses import dataclass

from PIL import Image

from . import bitstream

_ORIENTATION = 0x0112
_GRAY_MODES = ("1", "L", "LA", "La", "I", "F")


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
    if fmt in ("png", "jpeg", "webp", "tiff"):
        if meta.icc:
            opts["icc_profile"] = meta.icc
        if meta.exif:
            opts["exif"] = meta.exif
    if meta.xmp:
        if fmt in ("jpeg", "webp"):
            opts["xmp"] = meta.xmp
        elif fmt == "png":
            from PIL.PngImagePlugin import PngInfo

            info = PngInfo()
            info.add_itxt("XML:com.adobe.xmp", meta.xmp.decode("utf-8", "replace"))
            opts["pnginfo"] = info
    return opts
