"""The image file formats crdr writes, and the one list of image file extensions.

Every part of crdr that needs to know which files are images (decoding to a file name,
``-o DIR --format``, finding the images of a folder for ``crdr eval``, ``crdr bench``
or training) uses the names defined here.

Only the standard library is imported here (the command line reads it for its help).
"""

from __future__ import annotations

#: Image file extension (lower case, with the dot) -> canonical format name.
EXTENSION_FORMATS: dict[str, str] = {
    ".png": "png",
    ".jpg": "jpeg",
    ".jpeg": "jpeg",
    ".webp": "webp",
    ".tif": "tiff",
    ".tiff": "tiff",
    ".bmp": "bmp",
    ".ppm": "ppm",
}

#: The image file extensions crdr reads from a folder and writes, in the order above.
#: (Reading a single named file accepts anything Pillow decodes.)
IMAGE_EXTENSIONS: tuple[str, ...] = tuple(EXTENSION_FORMATS)

#: Canonical format names, in the order above.
FORMAT_NAMES: tuple[str, ...] = tuple(dict.fromkeys(EXTENSION_FORMATS.values()))

#: Other spellings accepted for ``--format``.
FORMAT_ALIASES: dict[str, str] = {"jpg": "jpeg", "tif": "tiff"}

#: The extension a file of each format gets when crdr names it (``-o DIR``).
DEFAULT_EXTENSION: dict[str, str] = {
    name: ".jpg" if name == "jpeg" else "." + name for name in FORMAT_NAMES
}


def is_image_file_name(name: str) -> bool:
    """Whether a file name ends in one of :data:`IMAGE_EXTENSIONS` (any case)."""
    dot = name.rfind(".")
    return dot >= 0 and name[dot:].lower() in EXTENSION_FORMATS


def format_list() -> str:
    """'png, jpeg, webp, tiff, bmp or ppm' (for messages and help)."""
    return ", ".join(FORMAT_NAMES[:-1]) + " or " + FORMAT_NAMES[-1]


def extension_list() -> str:
    """'.png, .jpg, .webp, .tiff, .bmp or .ppm': one extension per format."""
    exts = list(DEFAULT_EXTENSION.values())
    return ", ".join(exts[:-1]) + " or " + exts[-1]
