"""Grow a weights file's transforms to a wider model preset, keeping what it computes.

    python scripts/grow_model.py weights/crdr-lite.pt runs/wide/start.pt --config lite-wide

The new channels start as fresh features that nothing reads yet (crdr_codec/grow.py), so
the grown file codes every image to the same symbols as the source, and decodes to the
same pixels up to float rounding. Train it with the preset's model, e.g.

    crdr train --config lite-final --set train.model=lite-wide --stage 3 \\
        --init runs/wide/start.pt --warmup-steps 200 ...

or carry it to a GPU: scripts/make_gpu_bundle.py OUT --init runs/wide/start.pt, then
``bash OUT/run.sh --minutes 8 -- --set train.model=lite-wide``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from crdr_codec.config import get_config  # noqa: E402
from crdr_codec.errors import CrdrError  # noqa: E402
from crdr_codec.nn.grow import grow_weights  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("src", help="weights file to grow")
    ap.add_argument("dst", help="grown weights file to write (atomically)")
    ap.add_argument("--config", required=True, help="model preset to grow to (e.g. lite-wide)")
    a = ap.parse_args(argv)
    if Path(a.dst).resolve() == Path(a.src).resolve():
        print(f"grow_model: {a.dst}: refusing to overwrite the source", file=sys.stderr)
        return 2
    try:
        fp = grow_weights(a.src, a.dst, get_config(a.config))
    except (CrdrError, ValueError) as e:
        print(f"grow_model: {e}", file=sys.stderr)
        return 2
    print(f"wrote {a.dst}: model {fp[:4].hex()} ({a.config}), grown from {a.src}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
