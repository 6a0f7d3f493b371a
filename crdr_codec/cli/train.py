"""``crdr train``: one training stage (the work is in :mod:`crdr_codec.train.cli`)."""

from __future__ import annotations

import click

from ..errors import CrdrError
from ..process import tune_malloc


@click.command("train")
@click.option("--config", "config_name", default="lite", show_default=True,
              help="Training preset (lite, paper, tiny) or a TOML file.")
@click.option("--stage", type=click.IntRange(1, 3), help="Stage to train (1, 2 or 3).")
@click.option("--run-dir", type=click.Path(file_okay=False), default="runs/lite", show_default=True,
              help="Folder for checkpoints and logs; an existing stage checkpoint is resumed.")
@click.option("--init", "init_path", type=click.Path(dir_okay=False),
              help="Start the stage from this checkpoint or weights file "
                   "(default: RUN_DIR/stage{N-1}.ckpt when it exists).")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a config value, e.g. --set stage2.steps=500 (repeatable).")
@click.option("--max-minutes", type=float, help="Stop (with a checkpoint) after this long.")
@click.option("--max-steps", type=int, help="Stop (with a checkpoint) after this many steps.")
@click.option("--device", default="auto", show_default=True,
              help="auto, cpu, cuda or cuda:N (bf16 autocast on either when the config says bf16).")
@click.option("--threads", type=int, help="torch CPU threads (default: torch's choice).")
@click.option("--workers", type=click.IntRange(0), help="Data-loading processes (sets train.workers).")
@click.option("--budget-minutes", type=click.FloatRange(min=0, min_open=True),
              help="Time-boxed run: fit the stage's last step to this many minutes from the "
                   "measured step time, with the lr drop over the last --decay-share of it.")
@click.option("--decay-share", type=click.FloatRange(0, 1, max_open=True), default=0.2,
              show_default=True, help="With --budget-minutes: share of the steps at the decayed lr.")
@click.option("--warmup-steps", type=click.IntRange(0), default=0, show_default=True,
              help="Ramp the lr up over this run's first N steps (for a start from weights "
                   "alone, whose optimiser state restarts).")
@click.option("--then-export", "then_export", type=click.Path(dir_okay=False),
              help="After training (finished, time box or signal), write inference weights here.")
@click.option("--export", "export_path", type=click.Path(dir_okay=False),
              help="Write the inference weights of the stage's checkpoint to this file and exit.")
@click.option("--fp32", is_flag=True, help="With --export: keep float32 weights (default fp16).")
@click.option("--validate", is_flag=True, help="Run one validation pass and exit.")
@click.option("--quiet", is_flag=True)
def train(config_name, stage, run_dir, init_path, overrides, max_minutes, max_steps, device,
          threads, workers, budget_minutes, decay_share, warmup_steps, then_export, export_path,
          fp32, validate, quiet) -> None:
    """Train a stage of a crdr model (resumable; torchrun for several processes).

    Exits 0 when the stage is complete, 75 when it stopped earlier (--max-minutes,
    --max-steps, SIGTERM/Ctrl-C; a checkpoint is saved): re-run the same command to resume.
    """
    from ..extras import require

    require("torch", "crdr train", "train")
    tune_malloc()
    from ..train.cli import run_train

    if stage is None:
        raise CrdrError("--stage is required (1, 2 or 3)")
    run_train(config_name=config_name, stage=stage, run_dir=run_dir, init_path=init_path,
              overrides=list(overrides), max_minutes=max_minutes, max_steps=max_steps,
              device=device, threads=threads, export_path=export_path, fp32=fp32,
              validate=validate, quiet=quiet, budget_minutes=budget_minutes,
              decay_share=decay_share, warmup_steps=warmup_steps, then_export=then_export,
              workers=workers)
