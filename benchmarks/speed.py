"""Encode/decode speed and peak memory of crdr's model configurations.

Times one Kodak-sized image (768x512) through the ``lite`` and ``paper`` configurations
(random weights: the timing does not depend on training) beside CompressAI's
``mbt2018-mean`` (quality 3, untrained, real ``compress``/``decompress``) measured in
the same run, and prints crdr/mbt2018-mean ratios, which stay comparable on noisy or
loaded machines where absolute seconds do not.

Encode is split into analysis (g_a), entropy (h_a + h_s + ChARM + range coding) and
total; decode into entropy decoding, synthesis (g_s) and total. Each entry runs in a
fresh subprocess after one warm-up, so its peak RSS (minus the RSS after imports) is
its own. Values are medians over ``--repeats`` runs, with [min-max].

The paper configuration takes tens of seconds per image on 2 CPU cores, so it gets
1 repeat unless ``--repeats`` is given; the default run takes a few minutes::

    .venv/bin/python benchmarks/speed.py                      # lite, paper, mbt2018-mean
    .venv/bin/python benchmarks/speed.py --configs lite --repeats 5 --json speed.json
    .venv/bin/python benchmarks/speed.py --configs lite --weights weights/crdr.pt
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from typing import Any, Callable

DEFAULT_IMAGE = "/work/shared/data/kodak/kodim01.png"
Q, BETA = 2.0, 0.0  # crdr quality / realism used for timing
MBT = "mbt2018-mean"
BUDGET_S = 1.5  # lite target: encode and decode <= 1.5 s each, 768x512, 2 cores
STAGES = ("enc_ga", "enc_entropy", "enc_total", "dec_entropy", "dec_gs", "dec_total")


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KB on Linux


def _run_worker(name: str, image: str, repeats: int, threads: int, weights: str | None) -> dict[str, Any]:
    """Benchmark one entry in this (fresh) process; returns per-stage time lists etc."""
    import numpy as np
    import torch
    from PIL import Image

    from crdr_codec.image_io import pad_to_multiple, to_tensor

    torch.set_num_threads(threads)
    rgb = np.asarray(Image.open(image).convert("RGB"))
    if name == MBT:
        from compressai.zoo import mbt2018_mean
    else:
        from crdr_codec.codec import Codec
        from crdr_codec.config import get_config
        from crdr_codec.model import CRDRModel
        from crdr_codec.weights import load_weights
    base_mb = _rss_mb()  # after imports and image load; peak is reported above this

    codec = None
    with torch.inference_mode():
        if name == MBT:
            net = mbt2018_mean(quality=3, pretrained=False).eval()
            net.update(force=True)
            x = pad_to_multiple(torch.from_numpy(rgb.copy()).permute(2, 0, 1)[None].float() / 255.0, 64)
        else:
            if name == "weights":
                net, fp = load_weights(weights)
                codec = Codec(model=net, fingerprint=fp, device="cpu")
            else:
                torch.manual_seed(0)
                net = CRDRModel(get_config(name)).eval()
            x = pad_to_multiple(to_tensor(rgb), 64)
        H, W = x.shape[-2:]
        params = sum(p.numel() for p in net.parameters())

        def once() -> tuple[dict[str, float], int]:
            t = [time.perf_counter()]
            if name == MBT:
                out = net.compress(x)
                t += [t[0], time.perf_counter()]
                net.decompress(out["strings"], out["shape"])
                t += [t[2], time.perf_counter()]
                nbytes = sum(len(s[0]) for s in out["strings"])
            else:
                y = net.analyze(x, Q)
                t.append(time.perf_counter())
                payload, _ = net.compress_latent(y)
                t.append(time.perf_counter())
                y_hat = net.decode_latent(payload, H, W)
                t.append(time.perf_counter())
                net.synthesize(y_hat, Q, BETA)
                t.append(time.perf_counter())
                nbytes = len(payload)
            d = [b - a for a, b in zip(t, t[1:])]
            return dict(zip(STAGES, (d[0], d[1], d[0] + d[1], d[2], d[3], d[2] + d[3]))), nbytes

        once()  # warm-up
        times: dict[str, list[float]] = {k: [] for k in STAGES}
        for _ in range(repeats):
            r, nbytes = once()
            for k, v in r.items():
                times[k].append(v)
        if codec is not None:  # the trained file end to end through the file-level API
            codec.decode(codec.encode(rgb, Q).data, BETA)
            for _ in range(repeats):
                t0 = time.perf_counter()
                data = codec.encode(rgb, Q).data
                t1 = time.perf_counter()
                codec.decode(data, BETA)
                times.setdefault("codec_enc", []).append(t1 - t0)
                times.setdefault("codec_dec", []).append(time.perf_counter() - t1)
    return {"name": name, "params": params, "times": times, "bytes": nbytes,
            "bpp": 8.0 * nbytes / (rgb.shape[0] * rgb.shape[1]), "size": [int(W), int(H)],
            "base_rss_mb": base_mb, "peak_mb": _rss_mb() - base_mb, "threads": threads,
            "repeats": repeats}


def _measure(name: str, args: argparse.Namespace) -> dict[str, Any]:
    """Run one entry in a subprocess (re-invoking this script) and parse its JSON."""
    reps = args.repeats if args.repeats is not None else (1 if name == "paper" else 3)
    cmd = [sys.executable, os.path.abspath(__file__), "--_worker", name, "--image", args.image,
           "--repeats", str(reps), "--threads", str(args.threads)]
    if args.weights:
        cmd += ["--weights", args.weights]
    print(f"... {name} ({reps} repeat{'s' * (reps != 1)} + warm-up)", file=sys.stderr, flush=True)
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"worker {name} failed:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _med(r: dict[str, Any], key: str) -> float:
    return statistics.median(r["times"][key])


def _fmt_total(r: dict[str, Any], key: str) -> str:
    v = r["times"][key]
    return f"{statistics.median(v):6.2f} [{min(v):.2f}-{max(v):.2f}]"


def _report(results: list[dict[str, Any]]) -> None:
    base = next((r for r in results if r["name"] == MBT), None)
    cols = ["config", "params M", "enc g_a", "enc ent", "enc total [min-max]", "dec ent",
            "dec g_s", "dec total [min-max]", "peak MB", "enc/mbt", "dec/mbt", "reps"]
    rows = []
    for r in results:
        def sec(k: str) -> str:
            return "-" if r["name"] == MBT and k not in ("enc_total", "dec_total") else f"{_med(r, k):.2f}"

        def ratio(k: str) -> str:
            return f"{_med(r, k) / _med(base, k):.2f}x" if base else "-"

        rows.append([r["name"], f"{r['params'] / 1e6:.2f}", sec("enc_ga"), sec("enc_entropy"),
                     _fmt_total(r, "enc_total"), sec("dec_entropy"), sec("dec_gs"),
                     _fmt_total(r, "dec_total"), f"{r['peak_mb']:.0f}", ratio("enc_total"),
                     ratio("dec_total"), str(r["repeats"])])
    widths = [max(len(c), *(len(row[i]) for row in rows)) for i, c in enumerate(cols)]
    line = lambda cells: "  ".join(c.rjust(w) for c, w in zip(cells, widths))  # noqa: E731
    print(line(cols))
    print("  ".join("-" * w for w in widths))
    for row in rows:
        print(line(row))
    for r in results:
        if "codec_enc" in r["times"]:
            print(f"{r['name']} via Codec (file-level): encode {_fmt_total(r, 'codec_enc')} s, "
                  f"decode {_fmt_total(r, 'codec_dec')} s")
    for r in results:
        if r["name"] == "lite":
            for side, k in (("encode", "enc_total"), ("decode", "dec_total")):
                ok = _med(r, k) <= BUDGET_S
                print(f"{'PASS' if ok else 'FAIL'}: lite {side} {_med(r, k):.2f} s <= {BUDGET_S} s "
                      f"({r['size'][0]}x{r['size'][1]}, {r['threads']} threads)")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--configs", default="lite,paper", help="comma-separated crdr presets")
    p.add_argument("--repeats", type=int, default=None,
                   help="timed runs per entry (default 3; 1 for paper)")
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (default 2)")
    p.add_argument("--image", default=DEFAULT_IMAGE, help="RGB image (default Kodak kodim01)")
    p.add_argument("--weights", default=None, help="also time this trained weights file (+ Codec)")
    p.add_argument("--no-baseline", action="store_true", help=f"skip {MBT}")
    p.add_argument("--json", default=None, metavar="OUT", help="write the results as JSON")
    p.add_argument("--_worker", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.repeats is not None and args.repeats < 1:
        p.error("--repeats must be >= 1")

    if args._worker:
        print(json.dumps(_run_worker(args._worker, args.image, args.repeats, args.threads, args.weights)))
        return

    names = [c.strip() for c in args.configs.split(",") if c.strip()]
    if args.weights:
        names.append("weights")
    if not args.no_baseline:
        names.append(MBT)
    load = ", ".join(f"{v:.2f}" for v in os.getloadavg())
    print(f"image {args.image}, {args.threads} threads, q={Q}, load average {load} "
          f"(times in s per image, medians; ratios are crdr / {MBT})", flush=True)
    results = [_measure(n, args) for n in names]
    _report(results)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"image": args.image, "threads": args.threads, "q": Q, "loadavg": load,
                       "results": results}, f, indent=2)
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
