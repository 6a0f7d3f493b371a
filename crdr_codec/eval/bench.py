"""``crdr bench``: encode/decode speed and peak memory, crdr beside the alternatives.

Entries, all timed on the same images in the same run:

* ``crdr:<config>`` (e.g. ``crdr:lite``, ``crdr:paper``): the model built from a preset
  with random weights (speed does not depend on training, except entropy coding, which
  depends somewhat on the symbol statistics);
* ``crdr:weights``: a trained weights file (``--weights``), additionally timed end to end
  through :class:`crdr_codec.codec.Codec` (file bytes in, image out);
* ``mbt2018-mean``: CompressAI's mean-scale hyperprior (quality 3, untrained, real
  ``compress``/``decompress``), the usual learned-codec speed reference;
* the conventional codecs of :mod:`crdr_codec.eval.anchors` at a mid-rate quality.

Times are split where the codec allows it:

==============  ============================================  ============================
stage           crdr                                          mbt2018-mean
==============  ============================================  ============================
enc analysis    g_a                                           g_a (timed on its own)
enc entropy     h_a, h_s, ChARM, range coding                 compress() minus g_a
dec entropy     h_s, ChARM, range decoding                    decompress() minus g_s
dec synthesis   g_s (beta-conditioned)                        g_s (timed on its own)
==============  ============================================  ============================

The mbt2018-mean split is derived (total minus the separately timed transform), the crdr
split is measured directly. Anchors have totals only.

Each entry runs in a fresh subprocess, so its peak memory (``ru_maxrss`` minus the RSS
after imports and image loading) is its own. Every image is coded once as warm-up, then
``--repeats`` times; per stage the median over repeats is reported with its [min-max]
spread, for the average image (each repeat's times summed over images, divided by the
number of images). Megapixels per second use the median. Ratios to a baseline entry
(``mbt2018-mean`` by default) are printed because they stay comparable on loaded or
noisy machines where absolute seconds do not.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from crdr_codec.errors import CrdrError, DependencyError, ParameterError

__all__ = ["BenchConfig", "run_bench", "format_bench", "main", "MBT", "STAGES"]

MBT = "mbt2018-mean"
STAGES = ("enc_analysis", "enc_entropy", "enc_total", "dec_entropy", "dec_synthesis", "dec_total")
#: crdr lite target: encode and decode at most this many seconds for 768x512 on 2 cores.
LITE_BUDGET_S = 1.5
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff", ".bmp", ".ppm")


class BenchConfig:
    """Settings of a benchmark run.

    Args:
        images: image files (folders are expanded to their images).
        configs: crdr presets to time with random weights (``lite``, ``paper``, ``tiny``).
        weights: a trained weights file to time as ``crdr:weights`` (also via Codec).
        anchors: conventional codec names.
        mbt: include CompressAI's mbt2018-mean.
        q, beta: crdr quality and realism used for timing.
        repeats: timed runs per image (None: 3, and 1 for the slow ``paper`` preset).
        threads: torch threads, and encoder threads for the anchors that allow it.
        baseline: entry the ratios refer to (default mbt2018-mean, else the first).
    """

    def __init__(
        self,
        images: Sequence[str],
        configs: Sequence[str] = ("lite",),
        weights: Optional[str] = None,
        anchors: Sequence[str] = ("jpeg", "webp", "avif", "jxl", "heic"),
        mbt: bool = True,
        q: float = 2.0,
        beta: float = 0.0,
        repeats: Optional[int] = None,
        threads: int = 2,
        baseline: Optional[str] = None,
        quiet: bool = False,
    ) -> None:
        self.images = expand_images(images)
        self.configs = list(configs)
        self.weights = weights
        self.anchors = list(anchors)
        self.mbt = mbt
        self.q, self.beta = q, beta
        self.repeats = repeats
        self.threads = threads
        self.baseline = baseline
        self.quiet = quiet

    def entries(self) -> List[str]:
        names = [f"crdr:{c}" for c in self.configs]
        if self.weights:
            names.append("crdr:weights")
        if self.mbt:
            names.append(MBT)
        return names + list(self.anchors)


def expand_images(items: Sequence[str]) -> List[str]:
    """Files as given; folders replaced by their image files (sorted)."""
    out: List[str] = []
    for item in items:
        p = Path(item)
        if p.is_dir():
            found = sorted(str(f) for f in p.iterdir() if f.suffix.lower() in IMAGE_EXTENSIONS)
            if not found:
                raise CrdrError(f"{p}: no images in this folder")
            out.extend(found)
        elif p.is_file():
            out.append(str(p))
        else:
            raise CrdrError(f"{item}: no such file or folder")
    if not out:
        raise CrdrError("no images given")
    return out


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


# --------------------------------------------------------------------------- worker


def _worker(spec: Dict[str, Any]) -> Dict[str, Any]:
    """Time one entry on all images in this (fresh) process.

    The process gets the same allocator tuning as the ``crdr`` command (for every entry,
    so the ratios compare like with like).
    """
    import numpy as np

    from crdr_codec.runtime import tune_malloc

    tune_malloc()

    from crdr_codec.image_io import read_image

    name: str = spec["name"]
    threads: int = spec["threads"]
    repeats: int = spec["repeats"]
    q, beta = spec["q"], spec["beta"]
    images = [read_image(p) for p in spec["images"]]
    params: Optional[int] = None
    if name.startswith("crdr:") or name == MBT:
        import torch

        torch.set_num_threads(threads)
        from crdr_codec.image_io import pad_to_multiple, to_tensor

        if name == MBT:
            try:
                from compressai.zoo import mbt2018_mean
            except ImportError as exc:
                raise DependencyError(f"{MBT} needs compressai: pip install compressai ({exc})") from None
        else:
            from crdr_codec.codec import Codec
            from crdr_codec.config import get_config
            from crdr_codec.model import CRDRModel
            from crdr_codec.weights import load_weights
    else:
        from crdr_codec.eval.anchors import get_anchor

        anchor = get_anchor(name)
    base_mb = _rss_mb()

    codec = None
    if name == MBT:
        net = mbt2018_mean(quality=3, pretrained=False).eval()
        net.update(force=True)
        params = sum(p.numel() for p in net.parameters())
    elif name.startswith("crdr:"):
        if name == "crdr:weights":
            net, fp = load_weights(spec["weights"])
            codec = Codec(model=net, fingerprint=fp, device="cpu")
        else:
            torch.manual_seed(0)
            net = CRDRModel(get_config(name.split(":", 1)[1])).eval()
        params = sum(p.numel() for p in net.parameters())

    def once(rgb: "np.ndarray") -> tuple:
        """One encode + decode; returns (stage seconds, bytes)."""
        t: Dict[str, float] = {}
        if name == MBT:
            x = pad_to_multiple(torch.from_numpy(rgb.copy()).permute(2, 0, 1)[None].float() / 255.0, 64)
            with torch.inference_mode():
                t0 = time.perf_counter()
                y = net.g_a(x)
                t1 = time.perf_counter()
                out = net.compress(x)
                t2 = time.perf_counter()
                net.g_s(y)
                t3 = time.perf_counter()
                net.decompress(out["strings"], out["shape"])
                t4 = time.perf_counter()
            nbytes = sum(len(s[0]) for s in out["strings"])
            t = {"enc_analysis": t1 - t0, "enc_total": t2 - t1, "dec_synthesis": t3 - t2,
                 "dec_total": t4 - t3}
            t["enc_entropy"] = max(0.0, t["enc_total"] - t["enc_analysis"])
            t["dec_entropy"] = max(0.0, t["dec_total"] - t["dec_synthesis"])
        elif name.startswith("crdr:"):
            x = pad_to_multiple(to_tensor(rgb), 64)
            H, W = x.shape[-2:]
            t0 = time.perf_counter()
            y = net.analyze(x, q)
            t1 = time.perf_counter()
            payload = net.compress_latent(y).payload
            t2 = time.perf_counter()
            y_hat, _ = net.decode_latent(payload, H, W)
            t3 = time.perf_counter()
            net.synthesize(y_hat, q, beta)
            t4 = time.perf_counter()
            nbytes = len(payload)
            t = {"enc_analysis": t1 - t0, "enc_entropy": t2 - t1, "enc_total": t2 - t0,
                 "dec_entropy": t3 - t2, "dec_synthesis": t4 - t3, "dec_total": t4 - t2}
            if codec is not None:  # the file-level API end to end
                t5 = time.perf_counter()
                data = codec.encode(rgb, q).data
                t6 = time.perf_counter()
                codec.decode(data, beta)
                t7 = time.perf_counter()
                t.update(file_enc=t6 - t5, file_dec=t7 - t6)
        else:
            t0 = time.perf_counter()
            data = anchor.encode(rgb, anchor.bench_quality, threads=threads)
            t1 = time.perf_counter()
            anchor.decode(data)
            t2 = time.perf_counter()
            nbytes = len(data)
            t = {"enc_total": t1 - t0, "dec_total": t2 - t1}
        return t, nbytes

    per_image = []
    for path, rgb in zip(spec["images"], images):
        once(rgb)  # warm-up
        times: Dict[str, List[float]] = {}
        nbytes = 0
        for _ in range(repeats):
            t, nbytes = once(rgb)
            for k, v in t.items():
                times.setdefault(k, []).append(v)
        h, w = rgb.shape[:2]
        per_image.append({"image": path, "width": w, "height": h, "bytes": nbytes,
                          "bpp": nbytes * 8.0 / (h * w), "times": times})
    setting = (f"quality {anchor.bench_quality}, {anchor.settings}" if not (name.startswith("crdr:") or name == MBT)
               else (f"q={q:g} beta={beta:g}" if name.startswith("crdr:") else "quality 3, untrained"))
    return {"name": name, "setting": setting, "params": params, "threads": threads, "repeats": repeats,
            "per_image": per_image, "base_rss_mb": base_mb, "peak_mb": max(0.0, _rss_mb() - base_mb)}


def _measure(cfg: BenchConfig, name: str) -> Dict[str, Any]:
    """Run one entry in a subprocess and parse its JSON result."""
    reps = cfg.repeats if cfg.repeats is not None else (1 if name == "crdr:paper" else 3)
    spec = {"name": name, "images": cfg.images, "repeats": reps, "threads": cfg.threads,
            "q": cfg.q, "beta": cfg.beta, "weights": cfg.weights}
    env = {**os.environ, "OMP_NUM_THREADS": str(cfg.threads)}
    if not cfg.quiet:
        print(f"... {name} ({reps} repeat{'s' * (reps != 1)} + warm-up, {len(cfg.images)} image"
              f"{'s' * (len(cfg.images) != 1)})", file=sys.stderr, flush=True)
    proc = subprocess.run([sys.executable, "-m", "crdr_codec.eval.bench", "--_worker", json.dumps(spec)],
                          capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
        last = lines[-1] if lines else f"exit code {proc.returncode}"
        raise CrdrError(f"benchmark of {name} failed: {last}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _aggregate(result: Dict[str, Any]) -> Dict[str, Any]:
    """Per-stage median and spread for the average image, and megapixels per second."""
    imgs = result["per_image"]
    n = len(imgs)
    pixels = sum(i["width"] * i["height"] for i in imgs)
    stats: Dict[str, Dict[str, float]] = {}
    keys = imgs[0]["times"].keys()
    for k in keys:
        per_rep = [sum(i["times"][k][r] for i in imgs) / n for r in range(len(imgs[0]["times"][k]))]
        med = statistics.median(per_rep)
        stats[k] = {"median": med, "min": min(per_rep), "max": max(per_rep),
                    "mpix_per_s": (pixels / n) / med / 1e6 if med > 0 else float("inf")}
    return {"stats": stats, "bpp": sum(i["bpp"] for i in imgs) / n, "megapixels": pixels / n / 1e6}


def run_bench(cfg: BenchConfig) -> Dict[str, Any]:
    """Time all entries; returns a JSON-ready dict with raw times and aggregates."""
    from crdr_codec.config import check_beta, check_q
    from crdr_codec.eval.anchors import anchor_versions, get_anchor

    check_q(cfg.q)
    check_beta(cfg.beta)
    if cfg.repeats is not None and cfg.repeats < 1:
        raise ParameterError("--repeats must be at least 1")
    if cfg.threads < 1:
        raise ParameterError("--threads must be at least 1")
    from crdr_codec.config import PRESETS

    for c in cfg.configs:
        if c not in PRESETS:
            raise ParameterError(f"unknown crdr config '{c}'; choose from {', '.join(sorted(PRESETS))}")
    for a in cfg.anchors:
        get_anchor(a)  # unknown name or missing plugin: fail before timing anything
    entries = cfg.entries()
    if not entries:
        raise ParameterError("nothing to benchmark")
    baseline = cfg.baseline or (MBT if MBT in entries else entries[0])
    if baseline not in entries:
        raise ParameterError(f"--baseline {baseline} is not among the entries ({', '.join(entries)})")
    load_before = os.getloadavg()
    results = []
    for name in entries:
        r = _measure(cfg, name)
        r.update(_aggregate(r))
        results.append(r)
    versions: Dict[str, str] = {"python": platform.python_version()}
    try:
        import torch

        versions["torch"] = torch.__version__
    except ImportError:  # pragma: no cover
        pass
    versions.update(anchor_versions(cfg.anchors))
    return {
        "images": cfg.images, "threads": cfg.threads, "q": cfg.q, "beta": cfg.beta,
        "baseline": baseline, "cpu_count": os.cpu_count(), "machine": platform.processor() or platform.machine(),
        "loadavg_before": list(load_before), "loadavg_after": list(os.getloadavg()),
        "versions": versions, "results": results,
    }


def format_bench(report: Dict[str, Any]) -> str:
    """The printed table: seconds per image, spread, MP/s, peak memory and ratios."""
    results = report["results"]
    base = next(r for r in results if r["name"] == report["baseline"])

    def sec(r: Dict[str, Any], k: str) -> str:
        s = r["stats"].get(k)
        return "-" if s is None else f"{s['median']:.3f}"

    def tot(r: Dict[str, Any], k: str) -> str:
        s = r["stats"][k]
        return f"{s['median']:.3f} [{s['min']:.3f}-{s['max']:.3f}]"

    def ratio(r: Dict[str, Any], k: str) -> str:
        v = r["stats"][k]["median"] / base["stats"][k]["median"]
        return f"{v:.2f}x" if v >= 0.1 else f"{v:.4f}x"

    cols = ["entry", "params M", "bpp", "enc ana", "enc ent", "enc total [min-max]", "enc MP/s",
            "dec ent", "dec syn", "dec total [min-max]", "dec MP/s", "peak MB",
            f"enc/{base['name']}", f"dec/{base['name']}"]
    rows = []
    for r in results:
        rows.append([
            r["name"], "-" if r["params"] is None else f"{r['params'] / 1e6:.2f}", f"{r['bpp']:.3f}",
            sec(r, "enc_analysis"), sec(r, "enc_entropy"), tot(r, "enc_total"),
            f"{r['stats']['enc_total']['mpix_per_s']:.2f}", sec(r, "dec_entropy"), sec(r, "dec_synthesis"),
            tot(r, "dec_total"), f"{r['stats']['dec_total']['mpix_per_s']:.2f}", f"{r['peak_mb']:.0f}",
            ratio(r, "enc_total"), ratio(r, "dec_total"),
        ])
    widths = [max(len(c), *(len(row[i]) for row in rows)) for i, c in enumerate(cols)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))

    n = len(report["images"])
    mp = results[0]["megapixels"]
    la = ", ".join(f"{v:.2f}" for v in report["loadavg_before"])
    out = [f"{n} image{'s' * (n != 1)} ({mp:.2f} MP average), {report['threads']} threads, "
           f"crdr q={report['q']:g} beta={report['beta']:g}, load average {la}; seconds per image "
           f"(median over repeats [min-max]); ratios to {base['name']} (lower is faster)",
           line(cols), "  ".join("-" * w for w in widths)]
    out += [line(row) for row in rows]
    for r in results:
        if "file_enc" in r["stats"]:
            out.append(f"{r['name']} through Codec (file bytes): encode {tot(r, 'file_enc')} s, "
                       f"decode {tot(r, 'file_dec')} s")
    out.append("bpp: crdr = range-coded payload (a .crdr file adds 22-24 header bytes; random weights "
               "give meaningless rates), mbt2018-mean = its strings, anchors = the complete file")
    out.append("settings:")
    out += [f"  {r['name']}: {r['setting']}" for r in results]
    for r in results:
        if r["name"] == "crdr:lite" and all((i["width"], i["height"]) == (768, 512) or
                                            (i["width"], i["height"]) == (512, 768) for i in r["per_image"]):
            for side, k in (("encode", "enc_total"), ("decode", "dec_total")):
                v = r["stats"][k]["median"]
                out.append(f"{'PASS' if v <= LITE_BUDGET_S else 'FAIL'}: lite {side} {v:.2f} s <= "
                           f"{LITE_BUDGET_S} s (768x512, {report['threads']} threads)")
    return "\n".join(out)


# --------------------------------------------------------------------------- entry points


def main(argv: Optional[Sequence[str]] = None) -> None:
    """``python -m crdr_codec.eval.bench`` (also the worker entry point)."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("images", nargs="*")
    p.add_argument("--configs", default="lite")
    p.add_argument("--weights", default=None)
    p.add_argument("--anchors", default="jpeg,webp,avif,jxl,heic")
    p.add_argument("--no-mbt", action="store_true")
    p.add_argument("--q", type=float, default=2.0)
    p.add_argument("--beta", type=float, default=0.0)
    p.add_argument("--repeats", type=int, default=None)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--baseline", default=None)
    p.add_argument("--json", default=None)
    p.add_argument("--_worker", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args._worker:
        try:
            result = _worker(json.loads(args._worker))
        except CrdrError as e:
            print(" ".join(str(e).split()), file=sys.stderr)
            sys.exit(1)
        print(json.dumps(result))
        return
    from crdr_codec.eval.anchors import parse_anchor_names

    try:
        cfg = BenchConfig(args.images, configs=_split(args.configs), weights=args.weights,
                          anchors=parse_anchor_names(args.anchors), mbt=not args.no_mbt, q=args.q,
                          beta=args.beta, repeats=args.repeats, threads=args.threads, baseline=args.baseline)
        report = run_bench(cfg)
    except CrdrError as e:
        print("crdr bench: error: " + " ".join(str(e).split()), file=sys.stderr)
        sys.exit(1)
    print(format_bench(report))
    if args.json:
        write_json(args.json, report)


def _split(text: str) -> List[str]:
    return [] if text.strip().lower() in ("", "none") else [c.strip() for c in text.split(",") if c.strip()]


def write_json(path: str, report: Dict[str, Any]) -> None:
    from crdr_codec.fileutil import atomic_write_bytes

    atomic_write_bytes(path, (json.dumps(report, indent=2) + "\n").encode())


if __name__ == "__main__":
    main()
