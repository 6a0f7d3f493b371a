"""The result store of ``crdr eval``: what its output folder holds and how it is read and written.

``OUT/`` holds

* ``per_image.csv``: one row per (image, codec, setting), appended and fsynced as each
  result is measured, so an interrupted sweep keeps everything up to its last full row;
* ``features/<codec>/<setting>/<image>.npy`` and ``features/original/<image>.npy``: the
  Inception features of the HiFiC patches (for FID/KID);
* ``crdr/<image>/q<q>.crdr``: the real files whose sizes are crdr's rates;
* ``run_meta.json`` (model id, patch size; see :mod:`crdr_codec.eval.resume`),
  ``summary.json`` and ``bdrate.csv`` (:mod:`crdr_codec.eval.summary`), ``plots/``.

A result is identified by ``(image, codec, setting)``, where the setting is
``q=<q> beta=<beta>`` for crdr and ``quality=<n>`` for an anchor.
"""

from __future__ import annotations

import csv
import io
import math
import os
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from crdr_codec.errors import ResumeError
from crdr_codec.fileutil import atomic_write_bytes

__all__ = [
    "CSV_FIELDS", "CSV_NAME", "META_NAME", "SUMMARY_NAME", "BDRATE_NAME", "OURS",
    "ResultsCSV", "ResultStore", "ours_setting", "anchor_setting", "setting_slug", "num",
]

CSV_FIELDS = [
    "image", "width", "height", "codec", "setting", "q", "beta", "quality",
    "bytes", "bpp", "psnr", "ms_ssim", "lpips", "enc_s", "dec_s", "file",
]
CSV_NAME = "per_image.csv"
META_NAME = "run_meta.json"
SUMMARY_NAME = "summary.json"
BDRATE_NAME = "bdrate.csv"
OURS = "crdr"

Key = Tuple[str, str, str]  # (image, codec, setting)


def ours_setting(q: float, beta: float) -> str:
    return f"q={q:g} beta={beta:g}"


def anchor_setting(quality: int) -> str:
    return f"quality={quality}"


def setting_slug(setting: str) -> str:
    """The setting as a folder name (``q=1 beta=0`` -> ``q1_beta0``)."""
    return setting.replace("=", "").replace(" ", "_")


def _fmt(v: Optional[float]) -> str:
    if v is None:
        return ""
    if isinstance(v, float) and math.isnan(v):
        return "nan"
    return f"{v:.8g}" if isinstance(v, float) else str(v)


def num(text: Optional[str]) -> float:
    """A CSV cell as a float (empty: nan)."""
    if text is None or text == "":
        return float("nan")
    return float(text)


class ResultsCSV:
    """The per-image CSV: loads existing rows for resuming, appends new ones durably."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.rows: Dict[Key, Dict[str, str]] = {}
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

    def has(self, key: Key) -> bool:
        return key in self.rows

    def add(self, row: Dict[str, Any]) -> None:
        text = {k: _fmt(row.get(k)) if not isinstance(row.get(k), str) else row[k] for k in CSV_FIELDS}
        with open(self.path, "a", newline="") as f:
            csv.writer(f).writerow([text[k] for k in CSV_FIELDS])
            f.flush()
            os.fsync(f.fileno())
        self.rows[(text["image"], text["codec"], text["setting"])] = text


class ResultStore:
    """An output folder's results for a set of images: CSV rows, features, .crdr files.

    Args:
        out: the output folder (it exists; its ``run_meta.json`` has been checked).
        images: the evaluated images, in order.
        fid: whether a result also needs its Inception features to count as done.
    """

    def __init__(self, out: Path, images: Sequence[Path], fid: bool) -> None:
        self.out = out
        self.images = list(images)
        self.fid = fid
        self.csv = ResultsCSV(out / CSV_NAME)

    def has(self, image: str, codec: str, setting: str) -> bool:
        return self.csv.has((image, codec, setting))

    def row(self, image: str, codec: str, setting: str) -> Optional[Dict[str, str]]:
        return self.csv.rows.get((image, codec, setting))

    def add(self, row: Dict[str, Any]) -> None:
        self.csv.add(row)

    def rows(self, codec: str, setting: str) -> List[Dict[str, str]]:
        """The rows of one setting, one per image that has it, in image order."""
        return [r for p in self.images if (r := self.row(p.name, codec, setting))]

    def need(self, image: str, codec: str, setting: str) -> bool:
        """Whether this result is still to be measured (its row, or its features)."""
        if not self.has(image, codec, setting):
            return True
        return self.fid and not self.feat_path(codec, setting, image).exists()

    def crdr_path(self, image: str, q: float) -> Path:
        return self.out / "crdr" / image / f"q{q:g}.crdr"

    def feat_path(self, codec: str, setting: Optional[str], image: str) -> Path:
        sub = Path("original") if codec == "original" else Path(codec) / setting_slug(setting or "")
        return self.out / "features" / sub / f"{image}.npy"

    def save_features(self, codec: str, setting: Optional[str], image: str, feats: np.ndarray) -> None:
        path = self.feat_path(codec, setting, image)
        path.parent.mkdir(parents=True, exist_ok=True)
        buf = io.BytesIO()
        np.save(buf, feats.astype(np.float32))
        atomic_write_bytes(path, buf.getvalue())

    def load_features(self, codec: str, setting: Optional[str]) -> np.ndarray:
        """The features of one setting over all images that have them, ``(N, 2048)``."""
        parts = []
        for p in self.images:
            fp = self.feat_path(codec, setting, p.name)
            if fp.exists():
                parts.append(np.load(fp))
        if not parts:
            return np.zeros((0, 2048), np.float32)
        return np.concatenate(parts, axis=0)
