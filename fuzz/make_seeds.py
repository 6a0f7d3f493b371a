"""Write the fuzzer's seed files: small .crdr files of the tiny test model and the shipped
model (odd sizes, grayscale, metadata and unknown sections), or copies of the golden files.

    python fuzz/make_seeds.py [OUT_DIR]            # the encoded seeds
    python fuzz/make_seeds.py OUT_DIR --golden     # the golden files

OUT_DIR defaults to fuzz/seeds (committed; regenerate after a model or format change).
With ``--golden`` the golden files (tests/golden/*.crdr, tests/golden/*/*.crdr) are
copied into OUT_DIR instead; they are not kept in fuzz/seeds, so that folder never holds
stale copies of them.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from crdr_codec import bitstream  # noqa: E402
from crdr_codec.codec import Codec  # noqa: E402

MODELS = {
    "tiny": ROOT / "tests" / "data" / "tiny.crdrm",
    "lite": ROOT / "crdr_codec" / "models" / "crdr-lite.crdrm",
}
GOLDEN = ROOT / "tests" / "golden"


def image(h: int, w: int, seed: int) -> np.ndarray:
    """A smooth random image with some noise (as tests/conftest.py's natural_image)."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, size=(max(h // 8, 2), max(w // 8, 2), 3), dtype=np.uint8)
    img = np.asarray(Image.fromarray(small).resize((w, h), Image.BICUBIC), dtype=np.int16)
    return np.clip(img + rng.integers(-6, 7, size=img.shape), 0, 255).astype(np.uint8)


def sections_for(kind: str) -> list[bitstream.Section]:
    exif = Image.Exif()
    exif[0x010F] = "FuzzCam"  # Make
    exif[0x0112] = 1  # Orientation
    return {
        "plain": [],
        "gray": [bitstream.colour_mode_section(True)],
        "meta": [bitstream.Section(bitstream.SECTION_ICC, False, b"\0\0\0\x18fake icc profile"),
                 bitstream.Section(bitstream.SECTION_EXIF, False, exif.tobytes()),
                 bitstream.Section(bitstream.SECTION_XMP, False,
                                   b'<x:xmpmeta xmlns:x="adobe:ns:meta/"/>'),
                 bitstream.suggested_beta_section(3.84),
                 bitstream.Section(9, False, b"unknown, skipped")],
    }[kind]


#: (name, height, width, q, sections) per model; all small, so that each decodes fast.
SEEDS = {
    "tiny": [("1x1_q0", 1, 1, 0.0, "plain"), ("16x16_q2", 16, 16, 2.0, "plain"),
             ("40x56_q2_meta", 40, 56, 2.0, "meta"), ("64x64_q4", 64, 64, 4.0, "plain"),
             ("65x70_q1_gray", 65, 70, 1.0, "gray"), ("130x64_q3", 130, 64, 3.0, "plain")],
    "lite": [("1x1_q0", 1, 1, 0.0, "plain"), ("64x64_q4_meta", 64, 64, 4.0, "meta"),
             ("70x65_q2_gray", 70, 65, 2.0, "gray")],
}


def main(argv: list[str]) -> None:
    golden = "--golden" in argv
    args = [a for a in argv if a != "--golden"]
    out = Path(args[0]) if args else ROOT / "fuzz" / "seeds"
    out.mkdir(parents=True, exist_ok=True)
    for model, seeds in ({} if golden else SEEDS).items():
        codec = Codec(MODELS[model], device="cpu", threads=1)
        for k, (name, h, w, q, kind) in enumerate(seeds):
            rgb = image(h, w, seed=k)
            if kind == "gray":
                rgb = np.repeat(rgb[:, :, :1], 3, axis=2)
            data = codec.encode(rgb, q, sections=sections_for(kind)).data
            codec.decode_latent(data)  # each seed decodes
            (out / f"{model}_{name}.crdr").write_bytes(data)
    if golden:
        for src in sorted(GOLDEN.glob("*.crdr")) + sorted(GOLDEN.glob("*/*.crdr")):
            rel = src.relative_to(GOLDEN)
            shutil.copyfile(src, out / ("golden_" + "_".join(rel.parts)))
    n = len(list(out.iterdir()))
    size = sum(p.stat().st_size for p in out.iterdir())
    print(f"{out}: {n} files, {size:,} bytes")


if __name__ == "__main__":
    main(sys.argv[1:])
