"""The transform ceiling: PSNR of g_a -> g_s with an unquantised latent, per q.

For each image and q, the analysis transform's latent y goes straight into the synthesis
transform (beta = 0), with no rounding and no entropy model: no bitrate can buy more PSNR
than this from these transforms. Beside it, unless ``--no-coded``, the real coded result
at the same q (a .crdr file written and decoded by ``Codec``: bpp from its bytes, PSNR
at beta = 0), so the gap between the two is what quantisation costs at that q.

Images are padded and cropped as the codec does (multiples of 64, edge replicated) and
the reconstruction is rounded to 8 bits before PSNR, as a decoded image is; PSNR is the
mean over images of each image's PSNR. Images too large for one pass (over 2048x2048
padded) are skipped. Run as::

    .venv/bin/python benchmarks/capacity.py ../shared/data/kodak [--weights FILE]
        [--q 0,1,2,3,4] [--limit N] [--threads 1] [--no-coded] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def parse_qs(text: str) -> list[float]:
    if ":" in text:
        a, b, s = (float(v) for v in text.split(":"))
        n = int(round((b - a) / s))
        return [round(a + i * s, 6) for i in range(n + 1)]
    return [float(v) for v in text.split(",") if v.strip()]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("images", help="folder of images (e.g. ../shared/data/kodak)")
    ap.add_argument("--weights", default=None, help="weights file (default: the shipped one)")
    ap.add_argument("--q", default="0,1,2,3,4", help="comma list or start:stop:step")
    ap.add_argument("--limit", type=int, default=0, help="first N images (by name) only")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--no-coded", action="store_true", help="skip the real encode/decode")
    ap.add_argument("--json", help="write per-q results and per-image rows here")
    a = ap.parse_args(argv)

    import torch

    torch.set_num_threads(a.threads)
    from crdr_codec.codec import Codec, TILE_THRESHOLD
    from crdr_codec.config import PAD_MULTIPLE
    from crdr_codec.image_io import crop, pad_to_multiple, read_image, to_tensor, to_uint8
    from crdr_codec.metrics.basic import psnr
    from crdr_codec.train.data import list_images

    files = list_images([a.images])
    if a.limit:
        files = files[: a.limit]
    qs = parse_qs(a.q)
    t0 = time.time()
    codec = Codec(a.weights, device="cpu")
    model = codec.model
    rows = []
    for f in files:
        rgb = read_image(f)
        h, w = rgb.shape[:2]
        x = pad_to_multiple(to_tensor(rgb), PAD_MULTIPLE)
        if x.shape[-2] * x.shape[-1] > TILE_THRESHOLD:
            print(f"skipped {f.name}: larger than one pass", file=sys.stderr)
            continue
        for q in qs:
            with torch.inference_mode():
                y = model.analyze(x, q)  # float latent, never rounded
                x_hat = model.synthesize(y, q, 0.0)
            row = {"image": f.name, "q": q,
                   "psnr_unquantised": psnr(rgb, to_uint8(crop(x_hat, h, w)))}
            if not a.no_coded:
                data = codec.encode(rgb, q).data
                row["bpp"] = len(data) * 8 / (h * w)
                row["psnr_coded"] = psnr(rgb, codec.decode(data, 0.0))
            rows.append(row)
        print(f"{f.name} done ({time.time() - t0:.0f} s)", file=sys.stderr, flush=True)

    summary = []
    for q in qs:
        sel = [r for r in rows if r["q"] == q]
        if not sel:
            continue
        s = {"q": q, "images": len(sel)}
        for k in ("psnr_unquantised", "bpp", "psnr_coded"):
            if k in sel[0]:
                s[k] = sum(r[k] for r in sel) / len(sel)
        summary.append(s)

    print(f"weights {codec.model_id.hex() if hasattr(codec, 'model_id') else '?'}, "
          f"{len(files)} image(s) of {a.images}, beta 0, {a.threads} thread(s), "
          f"{time.time() - t0:.0f} s")
    head = "|   q | PSNR unquantised |"
    if not a.no_coded:
        head += " coded bpp | coded PSNR | gap (dB) |"
    print(head)
    print("|" + "|".join("---" for _ in range(head.count("|") - 1)) + "|")
    for s in summary:
        line = f"| {s['q']:>3g} | {s['psnr_unquantised']:.2f} |"
        if "psnr_coded" in s:
            line += (f" {s['bpp']:.4f} | {s['psnr_coded']:.2f} | "
                     f"{s['psnr_unquantised'] - s['psnr_coded']:.2f} |")
        print(line)
    if a.json:
        Path(a.json).write_text(json.dumps({"images": a.images, "weights": a.weights,
                                            "summary": summary, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
