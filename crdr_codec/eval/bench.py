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

Each entry runs in a fresh subprocess (:mod:`crdr_codec.eval.bench_worker`), so its peak
memory (``ru_maxrss`` minus the RSS after imports and image loading) is its own. Every
image is coded once as warm-up, then ``--repeats`` times; per stage the median over
repeats is reported with its [min-max] spread, for the average image (each repeat's times
summed over images, divided by the number of images). Megapixels per second use the
median. Ratios to a baseline entry (``mbt2018-mean`` by default) are printed because they
stay comparable on loaded or noisy machines where absolute seconds do not.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from crdr_codec.errors import CrdrError, ParameterError
from crdr_codec.formats import IMAGE_EXTENSIONS

__all__ = ["BenchConfig", "run_bench", "format_bench", "write_json", "parse_config_names", "MBT", "STAGES"]

MBT = "mbt2018-mean"
STAGES = ("enc_analysis", "enc_entropy", "enc_total", "dec_entropy", "dec_synthesis", "dec_total")
#: crdr lite target: encode and decode at most this many seconds for 768x512 on 2 cores.
LITE_BUDGET_S = 1.5


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

    @classmethod
    def from_options(cls, images: Sequence[str], configs: str = "lite",
                     anchors: str = "jpeg,webp,avif,jxl,heic", **settings: Any) -> "BenchConfig":
        """A config from the command line's text options: ``configs`` and ``anchors`` are
        comma lists (or ``"none"``); ``settings`` are the other arguments, as they are."""
        from crdr_codec.eval.anchors import parse_anchor_names

        return cls(list(images), configs=parse_config_names(configs), anchors=parse_anchor_names(anchors),
                   **settings)

    def entries(self) -> List[str]:
        names = [f"crdr:{c}" for c in self.configs]
        if self.weights:
            names.append("crdr:weights")
        if self.mbt:
            names.append(MBT)
        return names + list(self.anchors)


def parse_config_names(text: str) -> List[str]:
    """``"lite,paper"`` -> ``["lite", "paper"]``; ``""`` or ``"none"`` -> ``[]`` (checked by :func:`run_bench`)."""
    return [] if text.strip().lower() in ("", "none") else [c.strip() for c in text.split(",") if c.strip()]


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


def _measure(cfg: BenchConfig, name: str) -> Dict[str, Any]:
    """Run one entry in a subprocess and parse its JSON result."""
    reps = cfg.repeats if cfg.repeats is not None else (1 if name == "crdr:paper" else 3)
    spec = {"name": name, "images": cfg.images, "repeats": reps, "threads": cfg.threads,
            "q": cfg.q, "beta": cfg.beta, "weights": cfg.weights}
    env = {**os.environ, "OMP_NUM_THREADS": str(cfg.threads)}
    if not cfg.quiet:
        print(f"... {name} ({reps} repeat{'s' * (reps != 1)} + warm-up, {len(cfg.images)} image"
              f"{'s' * (len(cfg.images) != 1)})", file=sys.stderr, flush=True)
    proc = subprocess.run([sys.executable, "-m", "crdr_codec.eval.bench_worker", json.dumps(spec)],
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


def write_json(path: str, report: Dict[str, Any]) -> None:
    from crdr_codec.fileutil import atomic_write_bytes

    atomic_write_bytes(path, (json.dumps(report, indent=2) + "\n").encode())
