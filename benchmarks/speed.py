"""Encode/decode speed and peak memory of crdr's model configurations.

A thin wrapper around :mod:`crdr_codec.eval.bench` (the code behind ``crdr bench``),
kept for ``make bench`` and its familiar options. It times one Kodak-sized image
(768x512) through the ``lite`` and ``paper`` configurations (random weights) beside
CompressAI's ``mbt2018-mean`` (quality 3, untrained, real ``compress``/``decompress``)
in the same run and prints crdr/mbt2018-mean ratios, which stay comparable on noisy or
loaded machines where absolute seconds do not. Encode is split into analysis (g_a) and
entropy coding, decode into entropy decoding and synthesis (g_s); each entry runs in a
fresh subprocess, so its peak memory is its own. ``paper`` gets 1 repeat unless
``--repeats`` is given (tens of seconds per image on 2 CPU cores)::

    .venv/bin/python benchmarks/speed.py                      # lite, paper, mbt2018-mean
    .venv/bin/python benchmarks/speed.py --configs lite --repeats 5 --json speed.json
    .venv/bin/python benchmarks/speed.py --configs lite --weights weights/crdr.pt

For conventional codecs and several images use ``crdr bench`` (same measurements).

``--startup`` also times whole ``crdr`` processes the way shell scripts run them
(``crdr --help``, ``crdr info``, ``crdr encode``, ``crdr decode`` on the image with the
trained weights) beside a bare ``python -c "import torch"``, with each process's peak RSS,
and prints how much of an encode/decode process is neither the torch import nor the
in-process codec time (``--weights``, default the shipped file)::

    .venv/bin/python benchmarks/speed.py --configs lite --startup
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from crdr_codec.errors import CrdrError
from crdr_codec.eval.bench import BenchConfig, format_bench, run_bench, write_json

TIME = "/usr/bin/time"
DEFAULT_IMAGE = str(Path(__file__).resolve().parents[1].parent / "shared/data/kodak/kodim01.png")


def _run_timed(cmd: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall seconds and peak RSS (MB) of one child process; a failure is an error.

    The peak RSS comes from GNU time: the child's own rusage would include the memory of
    this (torch-importing) parent from before the exec.
    """
    fd, stats = tempfile.mkstemp(prefix="crdr-speed-", suffix=".txt")
    os.close(fd)
    try:
        t0 = time.perf_counter()
        proc = subprocess.run([TIME, "-o", stats, "-f", "%M", *cmd], stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, env=env)
        wall = time.perf_counter() - t0
        err = proc.stderr.decode(errors="replace").strip()
        if proc.returncode != 0:
            raise CrdrError(f"{' '.join(cmd[:2])} failed: {err.splitlines()[-1] if err else proc.returncode}")
        rss_kb = float(Path(stats).read_text().split()[-1])
    finally:
        os.unlink(stats)
    return wall, rss_kb / 1024.0


def time_processes(image: str, weights: str, repeats: int, threads: int) -> dict[str, dict[str, float]]:
    """Median wall time and peak RSS of whole processes (one warm-up run each)."""
    if not os.access(TIME, os.X_OK):
        raise CrdrError(f"--startup needs GNU time at {TIME} (apt install time)")
    crdr = str(Path(sys.executable).with_name("crdr"))
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    with tempfile.TemporaryDirectory(prefix="crdr-speed-") as tmp:
        enc, dec = os.path.join(tmp, "a.crdr"), os.path.join(tmp, "b.png")
        commands = {
            "python -c 'import torch'": [sys.executable, "-c", "import torch"],
            "crdr --help": [crdr, "--help"],
            "crdr encode --q 2": [crdr, "encode", image, enc, "--q", "2", "--weights", weights, "--quiet", "--force"],
            "crdr info": [crdr, "info", enc],
            "crdr decode --beta 0": [crdr, "decode", enc, dec, "--weights", weights, "--quiet", "--force"],
        }
        out: dict[str, dict[str, float]] = {}
        for name, cmd in commands.items():
            _run_timed(cmd, env)  # warm-up: page cache, .pyc files
            runs = [_run_timed(cmd, env) for _ in range(repeats)]
            out[name] = {"median_s": statistics.median(r[0] for r in runs),
                         "min_s": min(r[0] for r in runs), "max_s": max(r[0] for r in runs),
                         "peak_rss_mb": max(r[1] for r in runs)}
    return out


def format_processes(proc: dict[str, dict[str, float]], report: dict) -> str:
    """Table of whole-process times; encode/decode split into import, codec and the rest."""
    codec_s: dict[str, float] = {}
    for r in report.get("results", []):
        if r["name"] == "crdr:weights":
            codec_s = {"encode": r["stats"]["file_enc"]["median"], "decode": r["stats"]["file_dec"]["median"]}
    imp = proc["python -c 'import torch'"]["median_s"]
    lines = ["", "whole processes (median wall s [min-max], peak RSS):"]
    for name, p in proc.items():
        line = f"  {name:<26} {p['median_s']:6.2f} s [{p['min_s']:.2f}-{p['max_s']:.2f}]  {p['peak_rss_mb']:6.0f} MB"
        kind = name.split()[1] if name.startswith("crdr e") or name.startswith("crdr d") else None
        if kind in codec_s:
            rest = p["median_s"] - imp - codec_s[kind]
            line += f"  = import torch {imp:.2f} + codec {codec_s[kind]:.2f} + other {rest:.2f}"
        lines.append(line)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--configs", default="lite,paper", help="comma-separated crdr presets")
    p.add_argument("--repeats", type=int, default=None,
                   help="timed runs per entry (default 3; 1 for paper)")
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (default 2)")
    p.add_argument("--image", default=DEFAULT_IMAGE, help="RGB image (default Kodak kodim01)")
    p.add_argument("--weights", default=None, help="also time this trained weights file (+ Codec)")
    p.add_argument("--no-baseline", action="store_true", help="skip mbt2018-mean")
    p.add_argument("--json", default=None, metavar="OUT", help="write the results as JSON")
    p.add_argument("--startup", action="store_true",
                   help="also time whole crdr processes (help, info, encode, decode) and import torch")
    args = p.parse_args(argv)
    if args.startup and args.weights is None:
        from crdr_codec.nn.weights import default_weights_path

        args.weights = str(default_weights_path())
    configs = [c.strip() for c in args.configs.split(",") if c.strip()]
    try:
        report = run_bench(BenchConfig([args.image], configs=configs, weights=args.weights, anchors=(),
                                       mbt=not args.no_baseline, repeats=args.repeats,
                                       threads=args.threads))
        if args.startup:
            report["processes"] = time_processes(args.image, args.weights, args.repeats or 3, args.threads)
    except CrdrError as e:
        sys.exit(f"speed.py: error: {e}")
    print(format_bench(report))
    if args.startup:
        print(format_processes(report["processes"], report))
    if args.json:
        write_json(args.json, report)
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
