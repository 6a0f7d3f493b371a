"""`crdr train` body: config loading, distributed setup, run/export/validate."""

from __future__ import annotations

import os
import sys
import time
import warnings
from pathlib import Path

import torch
import torch.distributed as dist

from ..errors import CrdrError
from .config import load_config
from .loop import Trainer

#: Exit status of `crdr train` when the stage stopped before its last step (EX_TEMPFAIL).
EXIT_UNFINISHED = 75


def _setup_distributed(device: str) -> str:
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return device
    use_cuda = device in ("auto", "cuda") and torch.cuda.is_available()
    dist.init_process_group("nccl" if use_cuda else "gloo")
    if use_cuda:
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        return f"cuda:{local}"
    return "cpu"


def resolve_device(device: str) -> str:
    """'auto' -> 'cuda' when a CUDA device is usable, else 'cpu'; 'cuda' / 'cuda:N' must
    be usable (a clear error instead of a failure deep inside the first step)."""
    d = (device or "auto").strip().lower()
    if d == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if d == "cpu":
        return d
    if d == "cuda" or (d.startswith("cuda:") and d[5:].isdigit()):
        if not torch.cuda.is_available():
            raise CrdrError(f"--device {device}: no CUDA device is available here "
                            f"(torch {torch.__version__}); use --device cpu or auto")
        if ":" in d and int(d[5:]) >= torch.cuda.device_count():
            raise CrdrError(f"--device {device}: only {torch.cuda.device_count()} CUDA device(s)")
        return d
    raise CrdrError(f"--device must be auto, cpu, cuda or cuda:N, not {device!r}")


def run_train(*, config_name, stage, run_dir, init_path, overrides, max_minutes, max_steps,
              device, threads, export_path, fp32, validate, quiet, budget_minutes=None,
              decay_share=0.2, warmup_steps=0, then_export=None, workers=None) -> None:
    t_entry = time.time()  # a time box (--budget-minutes) counts the set-up below too
    # compressai scripts a helper with torch.jit at import time, which warns on new torch.
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"torch\.jit")
    if workers is not None:
        overrides = [*overrides, f"train.workers={int(workers)}"]
    try:
        cfg = load_config(config_name, overrides)
    except (ValueError, OSError) as e:
        raise CrdrError(f"training config: {e}") from None
    if threads:
        torch.set_num_threads(threads)
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        device = resolve_device(device)
    device = _setup_distributed(device)
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if init_path is None and stage > 1:
        prev = Path(run_dir) / f"stage{stage - 1}.ckpt"
        init_path = prev if prev.exists() else None
        if init_path is None and not (Path(run_dir) / f"stage{stage}.ckpt").exists():
            print(f"crdr train: note: stage {stage} starts from random weights (no {prev} and "
                  "no --init)", file=sys.stderr)
    unfinished = False
    try:
        trainer = Trainer(cfg, stage, run_dir, init=init_path, device=device, quiet=quiet)
        if export_path:
            fp = trainer.export(export_path, half=not fp32)
            print(f"wrote {export_path} (stage {stage}, step {trainer.step}, model id {fp[:4].hex()})")
        elif validate:
            trainer.validate()
        else:
            trainer.set_warmup(warmup_steps)
            try:
                trainer.run(max_steps=max_steps, max_minutes=max_minutes,
                            budget_minutes=budget_minutes, decay_share=decay_share,
                            budget_start=t_entry)
            finally:
                # a time box or a signal may cut the run: its checkpoint is saved, and the
                # weights are written anyway (also after an error, from the last checkpoint)
                if then_export and trainer.rank == 0:
                    _export_last(trainer, then_export, half=not fp32)
            unfinished = trainer.step < trainer.st.steps
        if dist.is_initialized():
            dist.barrier()  # no rank tears the group down while another still uses it
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    if unfinished:
        # Not finished (a limit or a signal stopped it): a distinct status, so scripts
        # that chain stages (scripts/train_lite.sh) do not move on to the next one.
        raise SystemExit(EXIT_UNFINISHED)


def _export_last(trainer: Trainer, path, half: bool) -> None:
    fp = trainer.export(path, half=half)
    print(f"wrote {path} (stage {trainer.stage}, step {trainer.step}, model id {fp[:4].hex()})",
          flush=True)
