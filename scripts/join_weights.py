"""Join weights split into parts (by a GPU bundle's run.sh) and check that they code.

    .venv/bin/python scripts/join_weights.py OUT/crdr-gpu.pt.parts.json weights/new.pt
        [--image ../shared/data/kodak/kodim23.png] [--q 0,2,4] [--no-check]

Every part and the joined file are checked against the SHA-256 in the manifest (a
missing, truncated or mixed-up part is an error; nothing is written then). The joined
file is then loaded as inference weights (format, integer entropy model, model id) and,
unless ``--no-check``, an image (``--image``, else a synthetic one) is encoded at each
``--q`` and decoded at beta 0 and 3.84: sizes and PSNR are printed, and a decode that
does not return the image's shape is an error. Exit status 0 when all of that holds.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def check_weights(path: Path, image: str | None, qs: list[float]) -> list[dict]:
    import numpy as np

    from crdr_codec.codec import Codec
    from crdr_codec.image_io import read_image
    from crdr_codec.metrics.basic import psnr

    codec = Codec(str(path), device="cpu")
    if image:
        rgb = read_image(image)
    else:
        rng = np.random.default_rng(0)
        yy, xx = np.mgrid[0:96, 0:128]
        rgb = np.stack([(xx * 2) % 256, (yy * 3) % 256, (xx + yy) % 256], -1).astype(np.int16)
        rgb = np.clip(rgb + rng.integers(-8, 9, rgb.shape), 0, 255).astype(np.uint8)
    h, w = rgb.shape[:2]
    rows = []
    for q in qs:
        data = codec.encode(rgb, q).data
        for beta in (0.0, 3.84):
            rec = codec.decode(data, beta)
            if rec.shape != rgb.shape:
                raise SystemExit(f"decode returned shape {rec.shape}, expected {rgb.shape}")
            rows.append({"q": q, "beta": beta, "bytes": len(data),
                         "bpp": len(data) * 8 / (h * w), "psnr": psnr(rgb, rec)})
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("manifest", help="NAME.parts.json written beside the parts")
    ap.add_argument("dest", help="the joined weights file to write")
    ap.add_argument("--image", help="image to encode/decode as a check (default: synthetic)")
    ap.add_argument("--q", default="0,2,4")
    ap.add_argument("--no-check", action="store_true", help="only join and verify checksums")
    a = ap.parse_args(argv)

    from crdr_codec.train.parts import PartsError, join_parts

    try:
        digest = join_parts(a.manifest, a.dest)
    except (PartsError, OSError) as e:
        print(f"join_weights: {e}", file=sys.stderr)
        return 1
    print(f"{a.dest}: joined, sha256 {digest}")
    from crdr_codec.errors import CrdrError
    from crdr_codec.nn.weights import load_weights

    try:
        model, fp = load_weights(a.dest)
    except CrdrError as e:
        print(f"join_weights: {e}", file=sys.stderr)
        return 1
    if model.entropy_state is None:
        print("join_weights: the file has no integer entropy model (it cannot code)", file=sys.stderr)
        return 1
    meta = getattr(model, "meta", {})
    print(f"model id {fp[:4].hex()}, config {model.cfg.name}, "
          f"stage {meta.get('stage')}, step {meta.get('step')}")
    if a.no_check:
        return 0
    try:
        rows = check_weights(Path(a.dest), a.image, [float(v) for v in a.q.split(",")])
    except CrdrError as e:
        print(f"join_weights: coding check failed: {e}", file=sys.stderr)
        return 1
    for r in rows:
        print(f"q {r['q']:g} beta {r['beta']:g}: {r['bytes']} bytes, {r['bpp']:.4f} bpp, "
              f"PSNR {r['psnr']:.2f} dB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
