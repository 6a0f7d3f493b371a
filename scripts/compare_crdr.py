"""BD-rate of one `crdr eval` run's crdr curves against another's, beta by beta.

For comparing two weights files, or an encoder setting (``--refine``) against the plain
encoder, on the same images. Only the q values both runs measured are used, so a run at
q 0:4:1 compares fairly with one at 0:4:0.5. Negative = B needs fewer bits than A.

    python scripts/compare_crdr.py A/summary.json B/summary.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from crdr_codec.eval.bdrate import bd_rate  # noqa: E402


def crdr_curves(path: str) -> tuple[dict, dict[float, dict[float, dict]]]:
    """The summary and its crdr points as {beta: {q: point}}."""
    s = json.loads(Path(path).read_text())
    curves = {c["beta"]: {p["q"]: p for p in c["points"]} for c in s["curves"] if c["codec"] == "crdr"}
    return s, curves


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("a", help="summary.json of the reference run")
    ap.add_argument("b", help="summary.json of the run compared with it")
    args = ap.parse_args()
    sa, ca = crdr_curves(args.a)
    sb, cb = crdr_curves(args.b)
    if sa["images"] != sb["images"]:
        sys.exit("the two runs are over different images")
    for run, s in (("A", sa), ("B", sb)):
        print(f"{run}: model {s['model']['model_id']}, refine {s['settings'].get('refine', 0)}, "
              f"{s['num_images']} images")
    print("| beta | q values | bpp A -> B | PSNR A -> B | BD-rate PSNR | BD-rate LPIPS |")
    print("|---|---|---|---|---|---|")
    for beta in sorted(set(ca) & set(cb)):
        qs = sorted(set(ca[beta]) & set(cb[beta]))
        pa = [ca[beta][q] for q in qs]
        pb = [cb[beta][q] for q in qs]
        cells = []
        for metric, higher in (("psnr", True), ("lpips", False)):
            res = bd_rate([p["bpp"] for p in pa], [p[metric] for p in pa],
                          [p["bpp"] for p in pb], [p[metric] for p in pb], higher_is_better=higher,
                          metric=metric.upper())
            cells.append(f"{res.percent:+.1f} %" if res.ok else f"n/a ({res.reason})")
        span = lambda pts, k, nd: f"{pts[0][k]:.{nd}f}-{pts[-1][k]:.{nd}f}"  # noqa: E731
        print(f"| {beta:g} | {','.join(f'{q:g}' for q in qs)} | {span(pa, 'bpp', 3)} -> "
              f"{span(pb, 'bpp', 3)} | {span(pa, 'psnr', 2)} -> {span(pb, 'psnr', 2)} | "
              f"{cells[0]} | {cells[1]} |")


if __name__ == "__main__":
    main()
