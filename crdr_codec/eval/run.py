"""``crdr eval``: rate-distortion-realism sweep of crdr and conventional codecs.

For every image of a folder:

* **crdr**: each q is encoded to a real ``.crdr`` file (``OUT/crdr/<image>/q<q>.crdr``)
  and that file is decoded at every beta; the rate is the file size (header included).
* **anchors** (:mod:`crdr_codec.eval.anchors`): each quality of each codec is encoded in
  memory; the rate is the length of the complete file the library wrote.

Metrics per (image, codec, setting) are bpp, RGB PSNR, MS-SSIM (RGB, 5 scales when the
short side exceeds 160 px), LPIPS-Alex (genuine weights, :mod:`crdr_codec.metrics.lpips`)
and the encode/decode seconds. Over the whole set, FID and KID are computed on HiFiC
patches (:mod:`crdr_codec.metrics.fid`) of each setting against the originals' patches.

Outputs in ``OUT/``:

* ``per_image.csv``: one row per (image, codec, setting). The run is resumable: rows
  already there (and their Inception features under ``features/``) are skipped, so an
  interrupted sweep continues where it stopped. A folder made with other weights or
  another patch size is refused.
* ``summary.json``: set means per setting (the RD curves), FID/KID, BD-rates, the exact
  settings and library versions, and how far FID can be trusted for this set size.
* ``bdrate.csv``: BD-rate (PSNR-based and LPIPS-based) of crdr at each beta against each
  anchor.
* ``plots/``: ``rd_psnr.png``, ``rd_lpips.png``, ``rd_ms_ssim.png``, ``rd_fid.png`` (when
  FID is on), ``beta_sweep.png`` and ``crops.png`` (+ the individual crops as PNGs).

Set means are plain averages over images of the per-image values (bpp, PSNR in dB,
MS-SSIM, LPIPS), the usual convention for Kodak tables.

Timing columns are wall-clock seconds of this run (with ``--jobs`` > 1 they include
contention); use ``crdr bench`` for controlled timings.

This module runs the sweep; the parts live beside it: :mod:`~crdr_codec.eval.config`
(settings and their checks, the image set), :mod:`~crdr_codec.eval.store` (the output
folder), :mod:`~crdr_codec.eval.resume` (continuing a folder, ``--anchors-from``),
:mod:`~crdr_codec.eval.measure` (the metrics), :mod:`~crdr_codec.eval.pool` (the anchors'
worker processes), :mod:`~crdr_codec.eval.summary` (set means, FID/KID, BD-rates),
:mod:`~crdr_codec.eval.cropsheet` and :mod:`~crdr_codec.eval.report` (plots, printed report).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from crdr_codec.errors import ImageError
from crdr_codec.eval.anchors import Anchor, get_anchor
from crdr_codec.eval.config import IMAGE_EXTENSIONS, EvalConfig, list_images
from crdr_codec.eval.cropsheet import detail_window
from crdr_codec.eval.pool import AnchorResult, AnchorTask, run_anchor_tasks
from crdr_codec.eval.progress import Progress
from crdr_codec.eval.report import format_report, write_plots
from crdr_codec.eval.resume import check_run_meta, import_anchor_rows
from crdr_codec.eval.store import CSV_FIELDS, CSV_NAME, OURS, ResultStore, anchor_setting, ours_setting
from crdr_codec.eval.summary import build_summary, write_bdrate_csv, write_summary
from crdr_codec.fileutil import atomic_write_bytes, folder_lock
from crdr_codec.image_io import read_image

__all__ = [
    "EvalConfig", "run_eval", "format_report", "list_images", "detail_window",
    "IMAGE_EXTENSIONS", "CSV_FIELDS",
]


class _Run:
    def __init__(self, cfg: EvalConfig) -> None:
        cfg.check()
        self.cfg = cfg
        self.out = Path(cfg.out_dir)
        self.images = list_images(Path(cfg.data_dir), cfg.max_images)
        names = [p.name for p in self.images]
        if len(set(names)) != len(names):  # cannot happen in one folder; defensive
            raise ImageError("duplicate image names")
        self.anchors: List[Anchor] = [get_anchor(n) for n in cfg.anchors]
        if cfg.fid:
            from crdr_codec.metrics.fid import inception_weights_path

            inception_weights_path()  # DependencyError early, before any work

    # ----------------------------------------------------------------- setup
    def _setup(self) -> None:
        import torch

        from crdr_codec.codec import Codec
        from crdr_codec.eval.measure import Metrics

        if self.cfg.threads is not None:
            torch.set_num_threads(max(1, self.cfg.threads))
        self.codec = Codec(self.cfg.weights, device=self.cfg.device)
        self.out.mkdir(parents=True, exist_ok=True)
        check_run_meta(self.out, self.codec.model_id.hex(), self.cfg.patch_size, self.cfg.refine)
        self.store = ResultStore(self.out, self.images, self.cfg.fid)
        if self.cfg.anchors_from is not None:
            import_anchor_rows(self.store, Path(self.cfg.anchors_from), [a.name for a in self.anchors],
                               quiet=self.cfg.quiet)
        self.metrics = Metrics(str(self.codec.device), self.cfg.fid, self.cfg.patch_size)

    # ----------------------------------------------------------------- work
    def run(self) -> Dict[str, Any]:
        # one sweep per output folder at a time: two would interleave rows in the CSV
        with folder_lock(self.out, "crdr eval"):
            return self._run_locked()

    def _run_locked(self) -> Dict[str, Any]:
        t_start = time.perf_counter()
        self._setup()
        cfg, store = self.cfg, self.store
        ours_todo = [(p, q) for p in self.images for q in cfg.qs
                     if any(store.need(p.name, OURS, ours_setting(q, b)) for b in cfg.betas)]
        anchor_todo = [(p, a.name, int(qa)) for p in self.images for a in self.anchors
                       for qa in cfg.qualities(a.name)
                       if store.need(p.name, a.name, anchor_setting(int(qa)))]
        orig_todo = [p for p in self.images
                     if cfg.fid and not store.feat_path("original", None, p.name).exists()]
        total_units = (len(self.images) * (len(cfg.qs) * len(cfg.betas)
                       + sum(len(cfg.qualities(a.name)) for a in self.anchors)))
        todo_units = len(ours_todo) * len(cfg.betas) + len(anchor_todo) + len(orig_todo)
        done = total_units - len(ours_todo) * len(cfg.betas) - len(anchor_todo)
        if not cfg.quiet:
            if done > 0:
                print(f"crdr eval: resuming, {done} of {total_units} results already in "
                      f"{self.out / CSV_NAME}", file=sys.stderr)
        bar = Progress(todo_units, "eval", enabled=not cfg.quiet)
        try:
            for p in orig_todo:
                store.save_features("original", None, p.name, self.metrics.features(read_image(p)))
                bar.update(1, f"{p.name} original")
            self._run_ours(ours_todo, bar)
            self._run_anchors(anchor_todo, bar)
        finally:
            bar.close()
        return self._summarise(t_start, reused=done, total=total_units)

    def _run_ours(self, todo: Sequence[Tuple[Path, float]], bar: Progress) -> None:
        cfg = self.cfg
        ref_cache: Tuple[Optional[Path], Optional[np.ndarray]] = (None, None)
        for path, q in todo:
            if ref_cache[0] != path:
                ref_cache = (path, read_image(path))
            ref = ref_cache[1]
            assert ref is not None
            h, w = ref.shape[:2]
            t0 = time.perf_counter()
            res = self.codec.encode(ref, q, refine=cfg.refine)
            enc_s = time.perf_counter() - t0
            crdr_file = self.store.crdr_path(path.name, q)
            crdr_file.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(crdr_file, res.data)
            data = crdr_file.read_bytes()  # rate and decoding from the file on disk
            nbytes = crdr_file.stat().st_size
            for beta in cfg.betas:
                setting = ours_setting(q, beta)
                if not self.store.need(path.name, OURS, setting):
                    bar.update(1)
                    continue
                t1 = time.perf_counter()
                rec = self.codec.decode(data, beta)
                dec_s = time.perf_counter() - t1
                self._record(path.name, ref, rec, OURS, setting, nbytes, enc_s, dec_s,
                             q=res.q, beta=beta, file=str(crdr_file.relative_to(self.out)))
                bar.update(1, f"{path.name} {setting} {nbytes * 8 / (h * w):.3f} bpp")

    def _record(self, image: str, ref: np.ndarray, rec: np.ndarray, codec: str, setting: str,
                nbytes: int, enc_s: float, dec_s: float, q: Optional[float] = None,
                beta: Optional[float] = None, quality: Optional[int] = None, file: str = "") -> None:
        """Measure one decoded result and store what is missing of it (features, row)."""
        h, w = ref.shape[:2]
        if self.cfg.fid and not self.store.feat_path(codec, setting, image).exists():
            self.store.save_features(codec, setting, image, self.metrics.features(rec))
        if self.store.has(image, codec, setting):
            return
        m = self.metrics.quality(ref, rec, image)
        self.store.add({
            "image": image, "width": w, "height": h, "codec": codec, "setting": setting,
            "q": q, "beta": beta, "quality": quality, "bytes": nbytes,
            "bpp": nbytes * 8.0 / (h * w), **m, "enc_s": enc_s, "dec_s": dec_s, "file": file,
        })

    def _run_anchors(self, todo: Sequence[AnchorTask], bar: Progress) -> None:
        refs: Dict[Path, np.ndarray] = {}

        def ref_of(p: Path) -> np.ndarray:
            if p not in refs:
                if len(refs) >= 4:
                    refs.pop(next(iter(refs)))
                refs[p] = read_image(p)
            return refs[p]

        def handle(task: AnchorTask, result: AnchorResult) -> None:
            p, name, quality = task
            nbytes, enc_s, dec_s, rec = result
            ref = ref_of(p)
            self._record(p.name, ref, rec, name, anchor_setting(quality), nbytes, enc_s, dec_s,
                         quality=quality)
            bpp = nbytes * 8 / (ref.shape[0] * ref.shape[1])
            bar.update(1, f"{p.name} {name} q={quality} {bpp:.3f} bpp")

        run_anchor_tasks(todo, self.cfg.jobs, handle)

    # ----------------------------------------------------------------- outputs
    def _summarise(self, t_start: float, reused: int, total: int) -> Dict[str, Any]:
        summary = build_summary(self.cfg, self.store, self.anchors, self.codec, reused=reused, total=total)
        write_bdrate_csv(self.out, summary["bd_rate"])
        if self.cfg.plots:
            summary["outputs"]["plots"] = write_plots(self.cfg, summary, self.store, self.anchors, self.codec)
        summary["wall_s"] = time.perf_counter() - t_start
        write_summary(self.out, summary)
        return summary


def run_eval(cfg: EvalConfig) -> Dict[str, Any]:
    """Run (or resume) a sweep and write all outputs; returns the summary dict.

    Raises:
        CrdrError subclasses: no images, unknown anchor, missing plugin or weights
            package, an output folder of another model, bad parameters.
    """
    return _Run(cfg).run()
