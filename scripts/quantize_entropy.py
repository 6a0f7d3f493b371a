"""Build the exact integer entropy model of a weights file and write a new weights file.

The transforms (g_a, g_s) and the float networks are kept as they are; the integer h_s /
ChARM layers are quantised from the float ones after training, with activation ranges
measured on the latents of real photos (the first N images of a folder, sorted by name,
at q = 0..4). The new file has a new model id.

    python scripts/quantize_entropy.py IN.pt OUT.pt [--calib ../shared/data/train] [--images 12]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from crdr_codec.image_io import read_image  # noqa: E402
from crdr_codec.nn.model import image_calibration  # noqa: E402
from crdr_codec.train.data import list_images  # noqa: E402
from crdr_codec.nn.weights import model_from_record, save_weights  # noqa: E402


def calibration_latents(model, folder: str, images: int, crop: int) -> list[torch.Tensor]:
    files = sorted(list_images([folder]))[:images]
    if not files:
        raise SystemExit(f"quantize_entropy: no images in {folder}")
    return image_calibration(model, [read_image(f) for f in files], crop)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("src")
    ap.add_argument("dst")
    ap.add_argument("--calib", default=str(ROOT.parent / "shared/data/train"))
    ap.add_argument("--images", type=int, default=12)
    ap.add_argument("--crop", type=int, default=512, help="top-left crop of each image")
    args = ap.parse_args()
    torch.set_grad_enabled(False)
    t0 = time.time()
    rec = torch.load(args.src, map_location="cpu", weights_only=True)
    model, fp_in = model_from_record(rec, args.src)
    half = all(v.dtype == torch.float16 for v in rec["state_dict"].values() if v.is_floating_point())
    meta = dict(rec.get("meta", {}))  # including the z prior kept for training
    calib = calibration_latents(model, args.calib, args.images, args.crop)
    meta["entropy_calibration"] = f"{len(calib) // 5} images of {Path(args.calib).name} at q 0..4"
    meta["converted_from"] = fp_in[:4].hex()
    fp = save_weights(args.dst, model, half=half, meta=meta, calib=calib)
    print(f"{args.src} ({fp_in[:4].hex()}) -> {args.dst} (model id {fp[:4].hex()}), "
          f"{len(calib)} calibration latents, {time.time() - t0:.1f} s")


if __name__ == "__main__":
    main()
