"""Continuing and reusing earlier ``crdr eval`` results.

* :func:`check_run_meta`: an output folder is continued only by the model and patch size
  that started it (its ``run_meta.json``); anything else would mix results.
* :func:`import_anchor_rows` (``--anchors-from``): the conventional codecs' results do not
  depend on the crdr weights, so a run of a new checkpoint can take them from an earlier
  run, when that run used the same anchor library versions and images of the same sizes.
"""

from __future__ import annotations

import csv
import json
import shutil
import sys
from pathlib import Path
from typing import Sequence

from crdr_codec.errors import ResumeError
from crdr_codec.eval.anchors import anchor_versions
from crdr_codec.eval.store import CSV_NAME, META_NAME, SUMMARY_NAME, ResultStore, setting_slug
from crdr_codec.fileutil import atomic_write_bytes
from crdr_codec.image_io import read_image

__all__ = ["check_run_meta", "import_anchor_rows"]

_META_FORMAT = 1


def check_run_meta(out: Path, model_id: str, patch_size: int, refine: int = 0) -> None:
    """Record which model, patch size and refinement this folder is for, or check an
    earlier record (one without ``refine`` was made without refinement).

    Raises:
        ResumeError: the folder holds another model's results, or another patch size's
            features, or files made with other ``--refine`` steps, or an unreadable record.
    """
    meta_path = out / META_NAME
    meta = {"format": _META_FORMAT, "model_id": model_id, "patch_size": patch_size}
    if refine:
        meta["refine"] = refine
    if not meta_path.exists():
        atomic_write_bytes(meta_path, (json.dumps(meta, indent=2) + "\n").encode())
        return
    try:
        old = json.loads(meta_path.read_text())
    except (OSError, ValueError):
        raise ResumeError(f"{meta_path} is unreadable; use a new output folder") from None
    if old.get("model_id") != model_id:
        raise ResumeError(
            f"{out} holds results of model {old.get('model_id')}, not of the loaded "
            f"weights ({model_id}); use a new output folder"
        )
    if old.get("patch_size") != patch_size:
        raise ResumeError(
            f"{out} was made with --patch-size {old.get('patch_size')}; "
            "use the same value or a new output folder"
        )
    if old.get("refine", 0) != refine:
        raise ResumeError(
            f"{out} was made with --refine {old.get('refine', 0)}; "
            "use the same value or a new output folder"
        )


def import_anchor_rows(store: ResultStore, src: Path, anchors: Sequence[str], quiet: bool = False) -> int:
    """Copy the rows of ``anchors`` of the earlier run in ``src`` into ``store``.

    Rows ``store`` already has are kept. With their Inception features where ``src`` has
    them (others are computed later, as for any missing features). ``src`` is only read.
    Returns the number of rows copied.

    Raises:
        ResumeError: ``src`` has no readable summary and CSV, its anchor versions differ
            from this machine's, or one of the images has another size there.
    """
    if src.resolve() == store.out.resolve():
        return 0
    try:
        old = json.loads((src / SUMMARY_NAME).read_text())
        with open(src / CSV_NAME, newline="") as f:  # read-only: the source stays as it is
            old_rows = [r for r in csv.DictReader(f)
                        if r.get("image") and None not in r.values() and None not in r]
    except (OSError, ValueError, csv.Error):
        raise ResumeError(f"--anchors-from {src}: no readable {SUMMARY_NAME} and {CSV_NAME} there") from None
    names = list(anchors)
    now = anchor_versions(names)
    then = old.get("versions", {})
    differ = [f"{n} ({then.get(n)} there, {now[n]} here)" for n in names if then.get(n) != now[n]]
    if differ:
        raise ResumeError(f"--anchors-from {src}: other anchor versions: {'; '.join(differ)}")
    sizes = {}
    for p in store.images:  # as recorded: after EXIF orientation
        h, w = read_image(p).shape[:2]
        sizes[p.name] = (str(w), str(h))
    copied = 0
    for row in old_rows:
        image, codec, setting = row["image"], row["codec"], row["setting"]
        if codec not in names or image not in sizes or store.has(image, codec, setting):
            continue
        if (row["width"], row["height"]) != sizes[image]:
            raise ResumeError(f"--anchors-from {src}: {image} has another size there")
        feat = src / "features" / codec / setting_slug(setting) / f"{image}.npy"
        if feat.is_file():
            dst = store.feat_path(codec, setting, image)
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(feat, dst)
        store.add(row)
        copied += 1
    if not quiet:
        print(f"crdr eval: {copied} anchor results taken from {src / CSV_NAME}", file=sys.stderr)
    return copied
