"""What a person reads of a ``crdr eval`` run: the plots (``OUT/plots/``) and the printed report."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from crdr_codec.eval.anchors import Anchor
from crdr_codec.eval.config import EvalConfig
from crdr_codec.eval.store import SUMMARY_NAME, ResultStore

__all__ = ["write_plots", "format_report"]


def write_plots(cfg: EvalConfig, summary: Dict[str, Any], store: ResultStore, anchors: Sequence[Anchor],
                codec: Any) -> List[str]:
    """RD curves (PSNR, LPIPS, MS-SSIM, and FID when measured), the beta sweep (with more
    than one beta) and the crop sheet; returns their paths relative to the output folder."""
    from crdr_codec.eval import plots
    from crdr_codec.eval.cropsheet import make_crop_sheet

    pdir = store.out / "plots"
    n = summary["num_images"]
    where = f"{Path(cfg.data_dir).name} ({n} image{'s' * (n != 1)})"
    curves = summary["curves"]
    fid_note = summary["fid"]["note"] if cfg.fid else None
    written = [
        plots.rd_plot(curves, "psnr", pdir / "rd_psnr.png", f"Rate-distortion: PSNR, {where}"),
        plots.rd_plot(curves, "lpips", pdir / "rd_lpips.png", f"Rate-perception: LPIPS-Alex, {where}"),
        plots.rd_plot(curves, "ms_ssim", pdir / "rd_ms_ssim.png", f"Rate-distortion: MS-SSIM, {where}"),
    ]
    if any(p.get("fid") is not None for c in curves for p in c["points"]):
        written.append(plots.rd_plot(curves, "fid", pdir / "rd_fid.png",
                                     f"Rate-realism: FID on {cfg.patch_size}px patches, {where}",
                                     note=fid_note))
    if len(cfg.betas) > 1:
        written.append(plots.beta_sweep_plot(curves, pdir / "beta_sweep.png",
                                             title=f"crdr beta sweep at fixed q, {where}",
                                             fid_note=fid_note))
    sheet = make_crop_sheet(cfg, store, anchors, codec, pdir)
    if sheet is not None:
        written.append(sheet)
    return [str(Path(p).relative_to(store.out)) for p in written]


def format_report(summary: Dict[str, Any], out_dir: Path) -> str:
    """A short human-readable report of a summary (printed by ``crdr eval``)."""
    n = summary["num_images"]
    lines = [f"crdr eval: {n} image{'s' * (n != 1)}, model {summary['model']['config']} "
             f"({summary['model']['model_id']}), {summary['wall_s']:.1f} s"]
    lines.append(f"{'curve':<16} {'setting':<14} {'bpp':>7} {'PSNR':>7} {'MS-SSIM':>8} {'LPIPS':>7} {'FID':>8}")
    for c in summary["curves"]:
        for p in c["points"]:
            setting = f"q={p['q']:g}" if "q" in p else f"quality={p['quality']}"
            fid = "-" if p.get("fid") is None else f"{p['fid']:.2f}"

            def f(v: Optional[float], spec: str) -> str:
                return "-" if v is None else format(v, spec)

            lines.append(f"{c['label']:<16} {setting:<14} {f(p['bpp'], '.4f'):>7} {f(p['psnr'], '.2f'):>7} "
                         f"{f(p['ms_ssim'], '.4f'):>8} {f(p['lpips'], '.4f'):>7} {fid:>8}")
    if summary["bd_rate"]:
        lines.append("BD-rate of crdr vs anchors (negative = crdr saves bits):")
        for e in summary["bd_rate"]:
            parts = []
            for metric in ("psnr", "lpips"):
                r = e[metric]
                parts.append(f"{metric.upper()} {r['percent']:+.1f}%" if r["percent"] is not None
                             else f"{metric.upper()} n/a ({r['reason']})")
            lines.append(f"  {e['test']:<14} vs {e['anchor']:<5} " + ", ".join(parts))
    if summary["fid"]["enabled"]:
        lines.append("FID: " + summary["fid"]["note"])
    lines.append(f"outputs in {out_dir}: {summary['outputs']['csv']}, {SUMMARY_NAME}, "
                 f"{summary['outputs']['bdrate_csv']}" + "".join(", " + p for p in summary["outputs"]["plots"]))
    return "\n".join(lines)
