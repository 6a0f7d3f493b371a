"""Training configuration: TOML files validated into frozen dataclasses.

A config file has a ``[train]`` table (model preset, data, checkpoints, validation)
and one table per stage ``[stage1]``, ``[stage2]``, ``[stage3]``, or starts from another
preset with ``base = "name"`` and changes some of its keys. Presets live in
``crdr_codec/train/presets/<name>.toml``; ``--set stage2.steps=500`` style overrides are
applied on top. Unknown keys are errors, so a typo never silently keeps a default.
"""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PRESET_DIR = Path(__file__).parent / "presets"


@dataclass(frozen=True)
class StageConfig:
    steps: int
    lr: float = 1e-4
    lr_decay_at: float = 0.8  # fraction of the stage's steps after which lr *= lr_decay
    lr_decay: float = 0.1
    # The rate-control (ICA) scales and biases get lr * ica_lr_scale. Adam moves a raw
    # parameter by about lr per step and each level trains on 1/5 of the batches, so at
    # the reference lr a short schedule leaves every level near the identity (measured:
    # per-level scales 0.94-1.04 after 3,100 steps at 3e-4, rate flat above q = 3).
    ica_lr_scale: float = 1.0
    # The same for the beta conditioning (Fourier-feature MLP and per-unit projections),
    # which stage 3 starts at the identity (zero projections). The lite preset uses 2x;
    # see its comment for what 10x cost.
    cond_lr_scale: float = 1.0
    warmup_steps: int = 0
    # (start_step, crop, batch) triples: small crops early, larger later.
    crops: tuple[tuple[int, int, int], ...] = ((0, 256, 8),)
    lambda_d: float = 150.0  # MSE weight ([0, 1] images)
    lambda_p: float = 1.0  # LPIPS weight (stage 3: multiplied by beta)
    lambda_adv: float = 0.0  # GAN weight (stage 3: multiplied by beta)
    rate_lambda_a: tuple[float, ...] = (0.05,)  # per level (one value: single rate)
    rate_targets: tuple[float, ...] = (1.5,)
    rate_lambda_b: float = 2.0**-6
    beta_max: float = 0.0  # stage 3 samples beta from {i/100 * beta_max}
    # Stage 3: this fraction of the batches uses beta = 0 exactly (the rest the grid, which
    # alone gives beta = 0, the pure rate + MSE objective, 1 % of the batches).
    beta_zero_prob: float = 0.0
    # Train only parameters whose names start with one of these prefixes (e.g.
    # "codec.g_s." fine-tunes the decoder, and the rates stay exactly as they are).
    train_only: tuple[str, ...] = ()
    disc_kind: str = "hybrid"
    disc_width: int = 64
    disc_lr: float = 1e-4
    clip_grad: float = 1.0

    def __post_init__(self) -> None:
        if self.steps < 0:
            raise ValueError("steps must be >= 0")
        if self.ica_lr_scale <= 0 or self.cond_lr_scale <= 0:
            raise ValueError("ica_lr_scale and cond_lr_scale must be > 0")
        if len(self.rate_lambda_a) != len(self.rate_targets):
            raise ValueError("rate_lambda_a and rate_targets must have the same length")
        if self.disc_kind not in ("hybrid", "separate"):
            raise ValueError("disc_kind must be 'hybrid' or 'separate'")
        if not 0 <= self.beta_zero_prob <= 1:
            raise ValueError("beta_zero_prob must lie in [0, 1]")
        if not self.crops or self.crops[0][0] != 0:
            raise ValueError("crops must start at step 0")
        for _, c, b in self.crops:
            if c % 64 or c <= 0 or b <= 0:
                raise ValueError(f"crop sizes must be positive multiples of 64, got {c}")

    def crop_at(self, step: int) -> tuple[int, int]:
        crop, batch = self.crops[0][1:]
        for start, c, b in self.crops:
            if step >= start:
                crop, batch = c, b
        return crop, batch

    def lr_at(self, step: int) -> float:
        lr = self.lr
        if self.warmup_steps and step < self.warmup_steps:
            lr *= (step + 1) / self.warmup_steps
        if step >= self.lr_decay_at * self.steps:
            lr *= self.lr_decay
        return lr


@dataclass(frozen=True)
class TrainConfig:
    model: str = "lite"
    data: tuple[str, ...] = ()
    data_exclude: tuple[str, ...] = ()  # file-name globs left out of `data` (held out)
    val_data: str = ""
    val_images: int = 4
    val_every: int = 2000  # steps; 0 disables
    seed: int = 0
    workers: int = 0
    cache_images: bool = True  # decode the training set once into RAM
    bf16: bool = True  # autocast the transforms (CPU AMX / GPU); likelihoods stay float32
    channels_last: bool = True
    compile: bool = False
    ckpt_every_steps: int = 500
    ckpt_every_minutes: float = 10.0
    log_every: int = 10
    lpips_net: str = "alex"
    stages: dict[int, StageConfig] = field(default_factory=dict)


def _tuplify(v: Any) -> Any:
    if isinstance(v, list):
        return tuple(_tuplify(x) for x in v)
    return v


def _build(cls, table: dict, where: str):
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(table) - names
    if unknown:
        raise ValueError(f"{where}: unknown keys {sorted(unknown)}; valid: {sorted(names)}")
    return cls(**{k: _tuplify(v) for k, v in table.items()})


def _set_path(doc: dict, dotted: str, value: Any) -> None:
    *parents, leaf = dotted.split(".")
    node = doc
    for p in parents:
        node = node.setdefault(p, {})
    node[leaf] = value


def parse_override(text: str) -> tuple[str, Any]:
    """'stage2.steps=500' -> ('stage2.steps', 500) (value parsed as TOML)."""
    if "=" not in text:
        raise ValueError(f"override {text!r} is not KEY=VALUE")
    key, raw = text.split("=", 1)
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw  # bare strings
    return key.strip(), value


def _read(name_or_path: str, chain: tuple[Path, ...] = ()) -> tuple[dict, Path]:
    """The TOML document of a preset name or file. ``base = "other"`` at the top of a file
    starts from that preset (or file) and replaces the keys this file sets, table by table."""
    path = Path(name_or_path)
    if not path.suffix:
        path = PRESET_DIR / f"{name_or_path}.toml"
        if not path.is_file():
            names = sorted(p.stem for p in PRESET_DIR.glob("*.toml"))
            raise ValueError(f"unknown training preset {name_or_path!r}; choose one of {names}")
    if path.resolve() in chain:
        raise ValueError(f"{path}: circular 'base'")
    doc = tomllib.loads(path.read_text())
    base = doc.pop("base", None)
    if base is None:
        return doc, path
    merged, _ = _read(str(base), (*chain, path.resolve()))
    for key, value in doc.items():
        if isinstance(value, dict):
            merged.setdefault(key, {}).update(value)
        else:
            merged[key] = value
    return merged, path


def load_config(name_or_path: str, overrides: list[str] = ()) -> TrainConfig:
    """Load a preset name (lite, paper, tiny) or a TOML file path, then apply overrides."""
    doc, path = _read(name_or_path)
    for o in overrides:
        _set_path(doc, *parse_override(o))
    train = dict(doc.pop("train", {}))
    stages = {}
    for key in list(doc):
        if not key.startswith("stage") or not key[5:].isdigit():
            raise ValueError(f"{path}: unknown table [{key}]")
        stages[int(key[5:])] = _build(StageConfig, doc[key], f"[{key}]")
    cfg = _build(TrainConfig, train, "[train]")
    return dataclasses.replace(cfg, stages=stages)
