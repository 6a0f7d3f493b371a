"""The main job: encode one image at two rates, decode each at two realism settings.

Runs the real `crdr` command line (as a shell script would) with the shipped model
and prints file sizes, bits per pixel, PSNR and, where torch is installed (the train
extra), LPIPS for every combination. `make demo` runs it on the runtime alone.

    python scripts/demo.py [IMAGE] [--out DIR]

IMAGE defaults to docs/demo/kodim23.png, which ships with the repository.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
#: Ships with the repository (docs/demo/README.md: Kodak's kodim23, unrestricted usage).
DEFAULT_IMAGE = ROOT / "docs" / "demo" / "kodim23.png"


def crdr(*args: str) -> float:
    t = time.time()
    # --force: a second run with the same --out folder replaces the demo's own files
    subprocess.run([sys.executable, "-m", "crdr_codec.cli", *args, "--quiet", "--force"], check=True)
    return time.time() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("image", nargs="?", default=str(DEFAULT_IMAGE),
                    help="the image (default: docs/demo/kodim23.png, shipped)")
    ap.add_argument("--out", help="keep the files in this folder (default: a temp folder)")
    args = ap.parse_args()
    src = Path(args.image)
    if not src.is_file():
        sys.exit(f"demo: image not found: {src} (pass a path: make demo IMAGE=photo.png)")
    out = Path(args.out or tempfile.mkdtemp(prefix="crdr-demo-"))
    out.mkdir(parents=True, exist_ok=True)

    sys.path.insert(0, str(ROOT))
    from crdr_codec.extras import missing
    from crdr_codec.image_io import read_image
    from crdr_codec.metrics.basic import psnr

    lpips = None
    if missing("torch"):
        print("(LPIPS needs torch: pip install 'crdr[train]'; PSNR only)")
    else:
        try:
            from crdr_codec.metrics.lpips import LPIPS

            lpips = LPIPS("alex")
        except Exception as e:  # LPIPS is optional for the demo
            print(f"(LPIPS unavailable: {e})")

    ref = read_image(src)
    h, w = ref.shape[:2]
    print(f"{src.name}: {w}x{h}; files in {out}")
    print(f"{'q':>4} {'bytes':>7} {'bpp':>7} {'enc s':>6} | {'beta':>5} {'PSNR dB':>8} {'LPIPS':>6} {'dec s':>6}")
    for q in ("0.5", "3"):
        f = out / f"{src.stem}_q{q}.crdr"
        t_enc = crdr("encode", str(src), str(f), "--q", q)
        size = f.stat().st_size
        for beta in ("0", "3.84"):
            rec = out / f"{src.stem}_q{q}_b{beta}.png"
            t_dec = crdr("decode", str(f), str(rec), "--beta", beta)
            img = np.asarray(Image.open(rec).convert("RGB"))
            lp = ""
            if lpips is not None:
                from crdr_codec.image_io import to_tensor

                lp = f"{lpips(to_tensor(img), to_tensor(ref)).item():.4f}"
            print(f"{q:>4} {size:>7} {size * 8 / (h * w):>7.4f} {t_enc:>6.2f} | {beta:>5} "
                  f"{psnr(ref, img):>8.2f} {lp:>6} {t_dec:>6.2f}")
    print("(times are whole `crdr` processes, including Python start-up)")


if __name__ == "__main__":
    main()
