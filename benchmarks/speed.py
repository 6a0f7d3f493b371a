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
"""

from __future__ import annotations

import argparse
import sys

from crdr_codec.errors import CrdrError
from crdr_codec.eval.bench import BenchConfig, format_bench, run_bench, write_json

DEFAULT_IMAGE = "/work/shared/data/kodak/kodim01.png"


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
    args = p.parse_args(argv)
    configs = [c.strip() for c in args.configs.split(",") if c.strip()]
    try:
        report = run_bench(BenchConfig([args.image], configs=configs, weights=args.weights, anchors=(),
                                       mbt=not args.no_baseline, repeats=args.repeats,
                                       threads=args.threads))
    except CrdrError as e:
        sys.exit(f"speed.py: error: {e}")
    print(format_bench(report))
    if args.json:
        write_json(args.json, report)
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
