"""Peak memory and time of whole `crdr encode` / `crdr decode` processes on a large photo.

Issue 2 asks that a 24-megapixel photo (6000x4000) encodes and decodes within 8 GiB of
RAM. This builds such a picture as a mosaic of the Kodak images at their native
resolution (so it has photo statistics at every scale, unlike an upscaled image), runs
the real command line on it under GNU time, and reports wall seconds, peak RSS against
the budget, file size, bpp and the PSNR of the decoded picture. Exit status 1 when a
process fails or goes over the budget.

    .venv-runtime/bin/python benchmarks/large_image.py [--size 6000x4000] [--q 2] [--beta 0]
        [--budget-gib 8] [--weights FILE] [--threads 2] [--refine STEPS]
        [--baseline-checkout DIR --baseline-python .venv/bin/python]

The crdr of the Python running this script is measured (the runtime in .venv-runtime;
``--refine`` needs .venv). With ``--refine`` the encode refines the latent (crdr encode
--refine), window by window: its peak memory should not grow with the image size. With
``--baseline-checkout`` the same commands of an earlier crdr (a source folder, e.g. the
torch-based one: ``git worktree add ../crdr-torch d2ffcab``) run too, in the same run,
on the same file.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from runtime import run_timed  # benchmarks/runtime.py: GNU time, peak RSS of the child

ROOT = Path(__file__).resolve().parents[1]
KODAK = ROOT.parent / "shared/data/kodak"


def mosaic(width: int, height: int, folder: Path) -> np.ndarray:
    """Kodak images tiled at native size (landscape ones; cycled), cropped to the size."""
    tiles = []
    for p in sorted(folder.glob("*.png")):
        with Image.open(p) as im:
            rgb = np.asarray(im.convert("RGB"))
        if rgb.shape[0] > rgb.shape[1]:
            rgb = rgb.transpose(1, 0, 2)
        tiles.append(rgb)
    if not tiles:
        raise SystemExit(f"no PNG images in {folder}")
    th, tw = tiles[0].shape[:2]
    out = np.empty((height, width, 3), np.uint8)
    k = 0
    for y in range(0, height, th):
        for x in range(0, width, tw):
            t = tiles[k % len(tiles)]
            k += 1
            h, w = min(th, height - y), min(tw, width - x)
            out[y:y + h, x:x + w] = t[:h, :w]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", default="6000x4000", help="WIDTHxHEIGHT (default 6000x4000, 24 MP)")
    ap.add_argument("--q", type=float, default=2.0)
    ap.add_argument("--beta", type=float, default=0.0)
    ap.add_argument("--budget-gib", type=float, default=8.0)
    ap.add_argument("--weights", default=None, help="weights file (default: the crdr default)")
    ap.add_argument("--threads", type=int, default=2, help="crdr --threads (and OMP_NUM_THREADS)")
    ap.add_argument("--refine", type=int, default=0, help="crdr encode --refine STEPS (default 0)")
    ap.add_argument("--kodak", default=str(KODAK), help="folder of tiles (default ../shared/data/kodak)")
    ap.add_argument("--baseline-checkout", help="source folder of another crdr to run too")
    ap.add_argument("--baseline-python", default=str(ROOT / ".venv" / "bin" / "python"))
    a = ap.parse_args()
    width, height = (int(v) for v in a.size.lower().split("x"))
    env = {**os.environ, "OMP_NUM_THREADS": str(a.threads)}
    extra = ["--weights", a.weights] if a.weights else []
    with tempfile.TemporaryDirectory(prefix="crdr-large-") as tmp:
        src = Path(tmp) / "in.png"
        img = mosaic(width, height, Path(a.kodak))
        Image.fromarray(img).save(src, compress_level=1)
        print(f"{width}x{height} ({width * height / 1e6:.1f} MP) mosaic of {a.kodak}, q={a.q:g}, "
              f"beta={a.beta:g}, refine {a.refine}, {a.threads} threads, budget {a.budget_gib:g} GiB")
        rows = []
        engines = [("", [sys.executable, "-m", "crdr_codec"], None)]
        if a.baseline_checkout:
            engines.append(("baseline ", [a.baseline_python, "-m", "crdr_codec"], a.baseline_checkout))
        th = ["--threads", str(a.threads)]
        outputs = []
        for label, crdr, cwd in engines:
            enc, dec = Path(tmp) / f"{label.strip() or 'out'}.crdr", Path(tmp) / f"{label.strip() or 'out'}.png"
            outputs.append((label, enc, dec))
            refine = ["--refine", str(a.refine)] if a.refine else []
            for name, cmd in (("encode", [*crdr, "encode", str(src), str(enc), "--q", str(a.q),
                                          *refine, "--quiet", "--force", *th, *extra]),
                              ("decode", [*crdr, "decode", str(enc), str(dec), "--beta", str(a.beta),
                                          "--quiet", "--force", *th, *extra])):
                wall, rss_mb = run_timed(cmd, env, cwd)
                rows.append((label + name, wall, rss_mb / 1024))
        Image.MAX_IMAGE_PIXELS = None  # our own output, larger than Pillow's bomb warning size
        quality = []
        for label, enc, dec in outputs:
            with Image.open(dec) as im:
                rec = np.asarray(im.convert("RGB"))
            if rec.shape != img.shape:
                sys.exit(f"decoded size {rec.shape[1]}x{rec.shape[0]} != {width}x{height}")
            mse = np.mean((rec.astype(np.float64) - img.astype(np.float64)) ** 2)
            quality.append((label, enc.stat().st_size, mse))
    over = False
    for name, wall, rss in rows:
        ok = rss <= a.budget_gib
        over |= not ok
        print(f"  {name:<16} {wall:7.1f} s wall, peak RSS {rss:5.2f} GiB  {'ok' if ok else 'OVER BUDGET'}")
    for label, nbytes, mse in quality:
        print(f"  {label}file {nbytes} bytes = {nbytes * 8 / (width * height):.4f} bpp, "
              f"PSNR {10 * np.log10(255 ** 2 / mse):.2f} dB")
    sys.exit(1 if over else 0)


if __name__ == "__main__":
    main()
