"""Markdown tables from a `crdr eval` summary.json (for the README and the model card).

    python scripts/results_table.py results/kodak/summary.json
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict


def _fmt(v, nd):
    return "-" if v is None else f"{v:.{nd}f}"


def main(path: str) -> None:
    s = json.load(open(path))
    print(f"Kodak-style set: {s['num_images']} images; model {s['model']['weights']} "
          f"(id {s['model']['model_id']}, config {s['model']['config']})\n")
    by_q: dict[float, dict[float, dict]] = defaultdict(dict)
    betas = []
    for c in s["curves"]:
        if c["codec"] != "crdr":
            continue
        betas.append(c["beta"])
        for p in c["points"]:
            by_q[p["q"]][c["beta"]] = p
    betas = sorted(set(betas))
    head = "| q | bpp |" + "".join(f" PSNR b={b:g} | MS-SSIM b={b:g} | LPIPS b={b:g} |" for b in betas)
    print(head)
    print("|" + "---|" * (2 + 3 * len(betas)))
    for q in sorted(by_q):
        row = by_q[q]
        first = row[betas[0]]
        cells = "".join(
            f" {_fmt(row[b]['psnr'], 2)} | {_fmt(row[b]['ms_ssim'], 4)} | {_fmt(row[b]['lpips'], 4)} |"
            for b in betas if b in row
        )
        print(f"| {q:g} | {first['bpp']:.4f} |{cells}")
    print("\nBD-rate of crdr against each anchor (negative = crdr needs fewer bits):\n")
    print("| crdr | anchor | BD-rate (PSNR) | BD-rate (LPIPS) |")
    print("|---|---|---|---|")
    for r in s["bd_rate"]:
        def cell(m):
            return f"{m['percent']:+.1f}%" if m.get("percent") is not None else f"n/a ({m.get('reason')})"
        print(f"| {r['test']} | {r['anchor']} | {cell(r['psnr'])} | {cell(r['lpips'])} |")
    anchors = [c for c in s["curves"] if c["codec"] != "crdr"]
    if anchors:
        print("\nAnchor ranges covered (set-mean bpp / PSNR):\n")
        for c in anchors:
            pts = c["points"]
            print(f"- {c['label']}: {min(p['bpp'] for p in pts):.3f}-{max(p['bpp'] for p in pts):.3f} bpp, "
                  f"{min(p['psnr'] for p in pts):.2f}-{max(p['psnr'] for p in pts):.2f} dB")


if __name__ == "__main__":
    main(sys.argv[1])
