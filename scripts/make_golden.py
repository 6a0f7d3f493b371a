"""Write the golden files of tests/test_golden.py from the shipped model.

Crops of three Kodak images are encoded at three q values; for each file the expected
check value, the SHA-256 of the integer latent (y_hat * 2^8 as little-endian int32) and
reference decodes (PNG) at beta 0 and 3.84 are stored. Run it only when the shipped
weights change (the files are then made on that machine; the test runs on others):

    python scripts/make_golden.py [--weights weights/crdr-lite.crdrm] [--out tests/golden]

Before that, move the previous set into ``tests/golden/<its model id>/`` and keep the
previous weights as ``weights/crdr-lite-<model id>.pt``: tests/test_golden.py then checks
that the files of every earlier shipped model still decode with a plain ``crdr decode``.
The files and reference decodes are made by the runtime (ONNX Runtime), like a user's.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import sys
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from crdr_codec.codec import Codec  # noqa: E402
from crdr_codec.image_io import read_image  # noqa: E402


def ort_version() -> str:
    import onnxruntime

    return onnxruntime.__version__

OUT = ROOT / "tests" / "golden"
#: (Kodak image, crop top, crop left, height, width, q)
CASES = [("kodim05", 100, 200, 128, 192, 0.5), ("kodim13", 0, 0, 150, 200, 2.0),
         ("kodim23", 180, 280, 130, 170, 4.0)]
BETAS = (0.0, 3.84)


def latent_digest(codec: Codec, data: bytes) -> tuple[str, int]:
    latent = codec.decode_latent(data)
    fx = np.round(latent.y_hat.astype(np.float64) * 256).astype("<i4")
    return hashlib.sha256(fx.tobytes()).hexdigest(), latent.header.check


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--weights", default=str(ROOT / "weights" / "crdr-lite.crdrm"))
    ap.add_argument("--kodak", default=str(ROOT.parent / "shared" / "data" / "kodak"))
    ap.add_argument("--out", default=str(OUT), help="folder for the files (default tests/golden)")
    args = ap.parse_args()
    codec = Codec(args.weights, device="cpu")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    expected = {"model_id": codec.model_id.hex(), "made_on": platform.processor() or platform.machine(),
                "engine": "onnxruntime " + ort_version(), "files": {}}
    for name, top, left, h, w, q in CASES:
        rgb = read_image(Path(args.kodak) / f"{name}.png")[top : top + h, left : left + w]
        stem = f"{name}_q{q:g}"
        data = codec.encode(np.ascontiguousarray(rgb), q).data
        (out / f"{stem}.crdr").write_bytes(data)
        digest, check = latent_digest(codec, data)
        entry = {"q": q, "height": h, "width": w, "check": check, "latent_sha256": digest, "decodes": {}}
        for beta in BETAS:
            png = f"{stem}_b{beta:g}.png"
            Image.fromarray(codec.decode(data, beta)).save(out / png, optimize=True)
            entry["decodes"][f"{beta:g}"] = png
        expected["files"][f"{stem}.crdr"] = entry
        print(stem, len(data), "bytes", digest[:12], check)
    (out / "expected.json").write_text(json.dumps(expected, indent=1) + "\n")


if __name__ == "__main__":
    main()
