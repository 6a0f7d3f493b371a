"""The GPU training path, on the CPU: device choice, time-boxed schedules, a start from
weights alone, weights split into parts and joined, and a whole training bundle
(scripts/make_gpu_bundle.py -> run.sh -> scripts/join_weights.py) with a tiny model."""

from __future__ import annotations

import pytest

pytest.importorskip("torch", reason="needs torch (the train extra)")

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import make_tiny_model, natural_image
from crdr_codec.errors import CrdrError
from crdr_codec.train.parts import PartsError, join_parts, read_manifest, split_file

ROOT = Path(__file__).resolve().parents[1]


def test_parts_join_back_exactly_and_refuse_damaged_parts(tmp_path):
    src = tmp_path / "w.pt"
    src.write_bytes(np.random.default_rng(0).integers(0, 256, 10_000, dtype=np.uint8).tobytes())
    man = split_file(src, tmp_path / "out", part_bytes=4096)
    info = read_manifest(man)
    assert [p["size"] for p in info["parts"]] == [4096, 4096, 1808]
    join_parts(man, tmp_path / "j.pt")
    assert (tmp_path / "j.pt").read_bytes() == src.read_bytes()
    # an exact multiple of the part size, and an empty file
    src.write_bytes(b"x" * 8192)
    assert len(read_manifest(split_file(src, tmp_path / "even", 4096))["parts"]) == 2
    src.write_bytes(b"")
    join_parts(split_file(src, tmp_path / "empty", 4096), tmp_path / "e.pt")
    assert (tmp_path / "e.pt").read_bytes() == b""

    part1 = tmp_path / "out" / "w.pt.part1"
    good = part1.read_bytes()
    part1.write_bytes(good[:-1] + bytes([good[-1] ^ 1]))  # one flipped bit
    with pytest.raises(PartsError, match="SHA-256"):
        join_parts(man, tmp_path / "bad.pt")
    part1.unlink()
    with pytest.raises(PartsError, match="missing part"):
        join_parts(man, tmp_path / "bad.pt")
    assert not (tmp_path / "bad.pt").exists()
    assert not list(tmp_path.glob("bad.pt*"))  # no partial file left behind


def test_train_device_choice():
    from crdr_codec.train.cli import resolve_device

    assert resolve_device("cpu") == "cpu"
    assert resolve_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(CrdrError, match="auto, cpu, cuda"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(CrdrError, match="no CUDA device"):
            resolve_device("cuda")


class _FakeTrainer:
    world = 1

    def __init__(self, step: int) -> None:
        self.step = step
        self.schedule = None

    def set_schedule(self, steps, decay_step):
        self.schedule = (steps, decay_step)

    def _log(self, msg):
        pass


def test_time_box_fits_the_last_step_and_the_lr_drop_to_the_budget():
    from crdr_codec.train.loop import TimeBox

    tr = _FakeTrainer(step=1000)
    box = TimeBox(tr, seconds=100.0, decay_share=0.2, t0=0.0, warmup=3)
    assert tr.schedule[0] > 10**8  # open-ended at the full lr until measured
    now = 0.0
    while tr.step < tr.schedule[0]:
        # warm-up steps are slow (kernel selection), then 0.5 s per step
        now += 2.0 if tr.step - 1000 < 3 else 0.5
        tr.step += 1
        box.update(now)
        assert now <= 100.0
    end, decay = tr.schedule
    assert now > 90.0  # most of the budget used
    steps = end - 1000
    assert abs((end - decay) - 0.2 * steps) <= 1.5  # the last 20 % at the decayed lr


def test_a_time_boxed_run_from_weights_alone_ends_in_its_budget(tmp_path, monkeypatch):
    """A stage-3 run started from an exported weights file (no checkpoint, no optimiser
    state) continues at the file's step, ramps its lr up, fits its end to the budget, and
    decays the lr before the end."""
    from crdr_codec.train.config import load_config
    from crdr_codec.train.data import CropSampler, list_images
    from crdr_codec.train.loop import Trainer
    from crdr_codec.nn.weights import save_weights

    data = tmp_path / "data"
    data.mkdir()
    for i in range(3):
        Image.fromarray(natural_image(80, 96, seed=i)).save(data / f"{i}.png")
    w = tmp_path / "start.pt"
    save_weights(w, make_tiny_model(), half=True, meta={"stage": 3, "step": 40})
    cfg = load_config("tiny", [f'train.data=["{data}"]', "train.ckpt_every_steps=1000"])
    tr = Trainer(cfg, 3, tmp_path / "run", init=w, quiet=True,
                 sampler=CropSampler(list_images([str(data)])))
    assert tr.step == 40
    tr.set_warmup(4)
    lrs = []
    step = tr.train_step

    def logged(batch=None):
        logs = step(batch)
        lrs.append(logs.get("lr"))
        return logs

    tr.train_step = logged
    import itertools
    import time
    import types

    from crdr_codec.train import loop

    # The loop's clock advances 0.02 s at every reading: step times are steady, as the fit
    # assumes, whatever else this machine is doing (a real clock made this test flaky).
    ticks = itertools.count()
    start = time.time()
    monkeypatch.setattr(loop, "time", types.SimpleNamespace(time=lambda: start + 0.02 * next(ticks)))
    t0 = time.time()
    tr.run(budget_minutes=0.15, decay_share=0.25)
    assert time.time() - t0 < 120
    assert 0.02 * next(ticks) <= 0.15 * 60  # ended within its budget on the loop's clock
    assert tr.step == tr.st.steps > 44  # ended where the fitted schedule ends
    assert lrs[0] == pytest.approx(cfg.stages[3].lr * 0.25)  # the ramp's first step
    assert lrs[-1] == pytest.approx(cfg.stages[3].lr * cfg.stages[3].lr_decay)
    ck = torch.load(tmp_path / "run" / "stage3.ckpt", weights_only=True)
    assert ck["step"] == tr.step
    assert ck["train_config"]["stages"]["3"]["steps"] == tr.step  # the fitted schedule


@pytest.mark.slow
def test_gpu_bundle_trains_on_cpu_and_its_parts_join_into_working_weights(tmp_path):
    data, val = tmp_path / "data", tmp_path / "val"
    data.mkdir()
    val.mkdir()
    for i in range(6):
        Image.fromarray(natural_image(96, 112, seed=i)).save(data / f"img{i}.png")
    for i in range(2):
        Image.fromarray(natural_image(64, 80, seed=20 + i)).save(val / f"v{i}.png")
    start = tmp_path / "start.pt"
    from crdr_codec.nn.weights import save_weights

    save_weights(start, make_tiny_model(), half=True, meta={"stage": 3, "step": 4})
    bundle = tmp_path / "bundle"
    py = sys.executable
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    r = subprocess.run(
        [py, str(ROOT / "scripts" / "make_gpu_bundle.py"), str(bundle), "--init", str(start),
         "--config", "tiny", "--data", str(data), "--val", str(val), "--crop", "64",
         "--max-crops", "5", "--no-wheels", "--part-mib", "0.25", "--workers", "1",
         "--warmup-steps", "2"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    info = json.loads((bundle / "bundle.json").read_text())
    assert info["train_crops"]["count"] == 5 and info["start"]["step"] == 4
    assert len(read_manifest(bundle / "weights" / "start.pt.parts.json")["parts"]) >= 2
    for f in val.iterdir():  # calibration images byte for byte
        assert (bundle / "data" / "val" / f.name).read_bytes() == f.read_bytes()
    assert (bundle / "lpips").is_dir()  # stage 3 uses LPIPS

    out = tmp_path / "out"
    env_run = {**env, "OUT": str(out), "CRDR_BUNDLE_WORK": str(tmp_path / "work")}
    r = subprocess.run(
        ["bash", str(bundle / "run.sh"), "--minutes", "0.75", "--reserve-minutes", "0.35",
         "--device", "cpu", "--python", py, "--", "--threads", "1", "--quiet"],
        cwd=ROOT, env=env_run, capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    log = (out / "run.log").read_text()
    # 0: the fitted schedule ended it; 75: the hard stop at the budget came first (a
    # 20-second box on a busy machine can overrun its 3 % margin). Both export.
    assert "crdr train exited 0 " in log or "crdr train exited 75 " in log, log[-2000:]
    names = sorted(p.name for p in out.iterdir())
    assert "crdr-gpu.pt.parts.json" in names and "train_log.csv" in names
    parts = [p for p in out.iterdir() if ".part" in p.name and not p.name.endswith(".json")]
    assert len(parts) >= 2 and all(p.stat().st_size <= 0.25 * 2**20 for p in parts)
    assert len(names) <= 8  # what the device machine hands back

    joined = tmp_path / "trained.pt"
    r = subprocess.run([py, str(ROOT / "scripts" / "join_weights.py"),
                        str(out / "crdr-gpu.pt.parts.json"), str(joined), "--q", "0,4"],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "q 4 beta 3.84" in r.stdout

    from crdr_codec.codec import Codec
    from crdr_codec.nn.weights import load_weights

    model, _ = load_weights(joined)
    assert model.entropy_state is not None and model.meta["stage"] == 3
    assert model.meta["step"] > 4  # trained beyond the starting step
    codec = Codec(str(joined), device="cpu")
    rgb = natural_image(48, 72, seed=5)
    assert codec.decode(codec.encode(rgb, 2.0).data, 0.0).shape == rgb.shape


def test_gpu_travel_hides_every_weights_file_and_restores_the_checkout(tmp_path):
    """`gpu_travel.py hide` keeps every committed weights/*.pt out of what the device tool
    carries, without touching the files; `restore` leaves git status as it was."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
    import gpu_travel

    def git(*a):
        return subprocess.run(["git", *a], cwd=tmp_path, check=True, capture_output=True,
                              text=True).stdout

    git("init", "-q")
    git("config", "user.email", "t@example.com")
    git("config", "user.name", "t")
    (tmp_path / "weights").mkdir()
    blobs = {"weights/new.pt": b"n" * 3000, "weights/old.pt": b"o" * 2000, "code.py": b"x" * 10}
    for p, b in blobs.items():
        (tmp_path / p).write_bytes(b)
    (tmp_path / "weights" / "MODEL_CARD.md").write_text("card")
    git("add", ".")
    git("commit", "-q", "-m", "c")
    before = (tmp_path / ".git/info/exclude").read_text()

    assert gpu_travel.hide(root=tmp_path) == ["weights/new.pt", "weights/old.pt"]
    total, sizes = gpu_travel.travelling_bytes(root=tmp_path)
    assert sorted(sizes) == ["code.py", "weights/MODEL_CARD.md"] and total == 14
    assert sorted(git("status", "--porcelain").splitlines()) == ["D  weights/new.pt",
                                                                  "D  weights/old.pt"]
    assert all((tmp_path / p).read_bytes() == b for p, b in blobs.items())

    assert gpu_travel.restore(root=tmp_path) == ["weights/new.pt", "weights/old.pt"]
    assert git("status", "--porcelain") == ""
    assert (tmp_path / ".git/info/exclude").read_text() == before
