"""What `crdr encode --refine STEPS` buys and costs, per number of steps.

For each image and q, the plain encode and a refined encode for each STEPS value are
written and decoded (beta 0, real files), and the script reports, averaged over images
and q: the change of the objective the search minimises (rate weight x bpp + 150 x MSE,
the model's own training objective at beta 0), of the rate, of the PSNR, and the seconds
per encode. Each configuration runs in this process; the peak memory of a whole encode
is what `large_image.py --refine` measures. The search runs g_s under bf16 autocast on
CPUs with bf16 instructions (refine.bf16_search; the report says which); ``--fp32``
keeps it in float32 there too, for comparison.

    .venv/bin/python benchmarks/refine.py ../shared/data/kodak
        [--images kodim02,kodim05,kodim13,kodim23] [--q 0,2,4] [--steps 10,20,40]
        [--threads 2] [--weights FILE] [--fp32]
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from crdr_codec.nn import refine
from crdr_codec.codec import Codec


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("folder", help="folder of PNG images")
    ap.add_argument("--images", default="kodim02,kodim05,kodim13,kodim23",
                    help="image names (without .png) in the folder")
    ap.add_argument("--q", default="0,2,4", help="quality levels")
    ap.add_argument("--steps", default="10,20,40", help="refinement steps to compare")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--weights", default=None)
    ap.add_argument("--fp32", action="store_true", help="search in float32 also where bf16 is fast")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    if a.fp32:
        refine.bf16_search = lambda device: False
    codec = Codec(a.weights, device="cpu")
    qs = [float(v) for v in a.q.split(",")]
    images = {}
    for name in a.images.split(","):
        with Image.open(Path(a.folder) / f"{name}.png") as im:
            images[name] = np.asarray(im.convert("RGB"))

    def measure(rgb: np.ndarray, q: float, steps: int) -> tuple[float, float, float, float]:
        t0 = time.perf_counter()
        data = codec.encode(rgb, q, refine=steps).data
        sec = time.perf_counter() - t0
        rec = codec.decode(data).astype(np.float64) / 255
        mse = float(np.mean((rec - rgb / 255) ** 2))
        bpp = len(data) * 8 / rgb[..., 0].size
        return refine.file_cost(q, bpp, mse), bpp, -10 * math.log10(mse), sec

    plain = {(n, q): measure(rgb, q, 0) for n, rgb in images.items() for q in qs}
    search = "bf16 autocast" if refine.bf16_search(codec.device) else "float32"
    print(f"{len(images)} images x q {a.q}, {a.threads} threads, model {codec.model_id.hex()}, "
          f"search in {search}")
    print("| steps | objective | bpp | PSNR | s per encode |")
    print("|---|---|---|---|---|")
    print(f"| 0 | - | - | - | {np.mean([v[3] for v in plain.values()]):.2f} |")
    for steps in (int(v) for v in a.steps.split(",")):
        rows = []
        for (n, q), (j0, b0, p0, _) in plain.items():
            j, b, p, sec = measure(images[n], q, steps)
            rows.append((j / j0 - 1, b / b0 - 1, p - p0, sec))
        m = np.mean(rows, axis=0)
        print(f"| {steps} | {100 * m[0]:+.2f} % | {100 * m[1]:+.2f} % | {m[2]:+.3f} dB | {m[3]:.2f} |")


if __name__ == "__main__":
    main()
