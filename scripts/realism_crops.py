"""Crop comparison figure: Kodak images at two rates, each file decoded at two realism settings.

For kodim05, kodim13 and kodim23, encodes each image at every q, decodes each .crdr file at
every beta and draws one row per (image, q): the original crop, then one crop per beta. All
crops of an image use the same detail-rich window (picked on the original) and are shown
pixel for pixel. Captions give bpp (from the real .crdr file size), PSNR and LPIPS-Alex
measured on the whole image; the same numbers are printed as a table.

    python scripts/realism_crops.py [--kodak DIR] [--q 0,2] [--beta 0,3.84] [--weights FILE]
                                    [--crop 256] [--scale 1] [-o docs/results/kodak/realism_crops.png]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
IMAGES = ("kodim05", "kodim13", "kodim23")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kodak", default=str(ROOT.parent / "shared/data/kodak"),
                    help="folder with the Kodak PNGs (default: ../shared/data/kodak)")
    ap.add_argument("--q", default="0,2", help="quality values to encode at (default: 0,2)")
    ap.add_argument("--beta", default="0,3.84", help="realism values to decode at (default: 0,3.84)")
    ap.add_argument("--weights", help="weights file (default: the shipped weights)")
    ap.add_argument("--crop", type=int, default=256, help="crop side in pixels (default: 256)")
    ap.add_argument("--scale", type=int, default=1, help="integer magnification of the crops (default: 1)")
    ap.add_argument("-o", "--output", default=str(ROOT / "docs/results/kodak/realism_crops.png"),
                    help="output PNG (default: docs/results/kodak/realism_crops.png)")
    args = ap.parse_args()

    sys.path.insert(0, str(ROOT))
    from crdr_codec.config import BETA_MAX, BETA_MIN, Q_MAX, Q_MIN
    from crdr_codec.errors import CrdrError
    from crdr_codec.eval import parse_values

    try:
        qs = parse_values(args.q, "--q", Q_MIN, Q_MAX)
        betas = parse_values(args.beta, "--beta", BETA_MIN, BETA_MAX)
    except CrdrError as e:
        sys.exit(f"realism_crops: {e}")
    for value, option in ((args.crop, "--crop"), (args.scale, "--scale")):
        if value < 1:
            sys.exit(f"realism_crops: {option} must be a positive integer, got {value}")
    kodak = Path(args.kodak)
    if not kodak.is_dir():
        sys.exit(f"realism_crops: Kodak folder not found: {kodak} (pass --kodak DIR)")
    paths = [kodak / f"{name}.png" for name in IMAGES]
    missing = [p.name for p in paths if not p.is_file()]
    if missing:
        sys.exit(f"realism_crops: missing in {kodak}: {', '.join(missing)}")

    try:
        run(args, qs, betas, paths)
    except CrdrError as e:
        sys.exit(f"realism_crops: {e}")


def run(args: argparse.Namespace, qs: list[float], betas: list[float], paths: list[Path]) -> None:
    import torch

    from crdr_codec.codec import Codec
    from crdr_codec.eval.plots import crop_sheet
    from crdr_codec.eval.cropsheet import detail_window
    from crdr_codec.image_io import read_image, to_tensor
    from crdr_codec.metrics.basic import psnr
    from crdr_codec.metrics.lpips import LPIPS

    t0 = time.time()
    refs = [read_image(p) for p in paths]
    codec = Codec(args.weights, device="cpu")
    lpips = LPIPS("alex")
    model = codec.model_id.hex()
    if not codec.realism_trained:
        print(f"note: weights {model} are not realism-trained; beta has little or no effect",
              file=sys.stderr)

    side = min([args.crop] + [min(r.shape[:2]) for r in refs])  # one crop size for the grid
    if side * args.scale < 208:  # a metrics caption is about 200 px wide
        print(f"note: crops are shown {side * args.scale} px wide; captions may overlap "
              f"(raise --scale)", file=sys.stderr)
    panels: list[tuple[np.ndarray, str]] = []
    print(f"model {model}; numbers for the whole image")
    print(f"{'image':<8} {'q':>5} {'bytes':>7} {'bpp':>7} | {'beta':>5} {'PSNR dB':>8} {'LPIPS':>6}")
    for path, ref in zip(paths, refs):
        h, w = ref.shape[:2]
        y0, x0, s = detail_window(ref, side)
        ref_t = to_tensor(ref)

        def crop(img: np.ndarray) -> np.ndarray:
            return np.ascontiguousarray(img[y0 : y0 + s, x0 : x0 + s])

        for q in qs:
            enc = codec.encode(ref, q)
            size = len(enc.data)
            bpp = size * 8 / (h * w)
            panels.append((crop(ref), f"{path.stem} original\n{w}x{h}, crop at ({x0},{y0})"))
            for beta in betas:
                rec = codec.decode(enc.data, beta)
                with torch.inference_mode():
                    lp = float(lpips(to_tensor(rec), ref_t)[0])
                db = psnr(ref, rec)
                print(f"{path.stem:<8} {enc.q:>5g} {size:>7} {bpp:>7.4f} | {beta:>5g} {db:>8.2f} {lp:>6.4f}")
                panels.append((crop(rec), f"q={enc.q:g} beta={beta:g}\n"
                                          f"{bpp:.3f} bpp  {db:.2f} dB  LPIPS {lp:.3f}"))

    zoom = f", {args.scale}x zoom" if args.scale > 1 else ""
    title = (f"crdr model {model}: q x beta ({side}x{side} crops{zoom}); "
             f"bpp, PSNR, LPIPS for the whole image")
    out = crop_sheet(panels, args.output, title=title, columns=1 + len(betas), scale=args.scale)
    print(f"wrote {out} ({time.time() - t0:.1f} s)")


if __name__ == "__main__":
    main()
