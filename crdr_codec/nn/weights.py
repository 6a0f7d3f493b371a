"""Weights files: config + state dict + z coding tables, and the model id.

A weights file is a ``torch.save`` dict (loaded with ``weights_only=True``)::

    {"format": "crdr-weights", "version": 2, "config": {...ModelConfig...},
     "state_dict": {...}, "z_tables": {medians, pmf, lengths, minsym},
     "entropy": {...integer tensors of the exact entropy model...}, "meta": {...}}

"state_dict" and "z_tables" are the float networks and z prior (training, g_a, g_s);
"entropy" is what coding uses: the integer h_s / ChARM layers, scale thresholds, LRP
table and the integer frequency tables of z and y (see crdr_codec/entropy/integer.py).
Version-1 files have no "entropy"; they still load (e.g. to start training from them)
but cannot code until converted (scripts/quantize_entropy.py).

The model id written into every .crdr header is the first 4 bytes of a SHA-256 over
the config and every stored tensor (name, dtype, shape, bytes), so a file is never
decoded with a different model.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import torch

from ..config import ModelConfig
from ..errors import WeightsError
from ..fileutil import atomic_writer
from ..weights_id import hash_record
from .model import CRDRModel
from ..paths import ENV_DEFAULT, checkout_weights_dir

FORMAT = "crdr-weights"
VERSION = 2
READABLE_VERSIONS = (1, 2)
DEFAULT_NAME = "crdr-lite.pt"


def default_weights_path() -> Path:
    """The torch weights of the default model: ``$CRDR_WEIGHTS`` if it names a ``.pt``
    file, else ``weights/crdr-lite.pt`` of the source checkout."""
    named = os.environ.get(ENV_DEFAULT)
    if named and named.endswith(".pt"):
        return Path(named)
    return checkout_weights_dir() / DEFAULT_NAME


def fingerprint(
    config: dict,
    state: dict[str, torch.Tensor],
    z_tables: dict[str, torch.Tensor],
    entropy: dict[str, torch.Tensor] | None = None,
) -> bytes:
    def described(group: dict[str, torch.Tensor]) -> dict:
        out = {}
        for name, t in group.items():
            t = t.detach().cpu().contiguous()
            # the array itself (a buffer), not a bytes copy of it: hashlib reads it in place
            out[name] = (str(t.dtype), tuple(t.shape),
                         t.view(torch.uint8).numpy() if t.numel() else b"")
        return out

    return hash_record(config, [described(g) for g in (state, z_tables, entropy or {})])


def record_fingerprint(rec: dict) -> bytes:
    return fingerprint(rec["config"], rec["state_dict"], rec["z_tables"], rec.get("entropy"))


def model_to_record(model: CRDRModel, half: bool = True, meta: dict | None = None) -> dict:
    """The weights record of a model; builds its integer entropy model if it has none."""
    if model.entropy_state is None:
        model.quantize_entropy()
    state = {}
    for k, v in model.state_dict().items():
        v = v.detach().cpu()
        state[k] = v.half() if (half and v.is_floating_point()) else v.clone()
    return {
        "format": FORMAT,
        "version": VERSION,
        "config": model.cfg.to_dict(),
        "state_dict": state,
        "z_tables": {k: v.clone() for k, v in model.z_tables.items()},
        "entropy": {k: v.clone() for k, v in model.entropy_state.items()},
        "meta": meta or {},
    }


def save_weights(
    path: str | os.PathLike,
    model: CRDRModel,
    half: bool = True,
    meta: dict | None = None,
    calib: list[torch.Tensor] | None = None,
) -> bytes:
    """Write an inference weights file atomically; returns the model fingerprint.

    With ``calib`` (latents y), the integer entropy model is rebuilt on them first;
    without it, a model that has none gets one calibrated on synthetic images.
    """
    if calib is not None:
        model.quantize_entropy(calib)
    rec = model_to_record(model, half=half, meta=meta)
    with atomic_writer(path) as tmp:
        torch.save(rec, tmp)
    return record_fingerprint(rec)


@contextlib.contextmanager
def _no_random_init():
    """Skip the random initialisation of conv and linear layers (every parameter is then
    overwritten by a strict state-dict load): saves ~0.1 s per model load."""
    kinds = (torch.nn.Conv2d, torch.nn.ConvTranspose2d, torch.nn.Linear)
    saved = [k.reset_parameters for k in kinds]
    try:
        for k in kinds:
            k.reset_parameters = lambda self: None
        yield
    finally:
        for k, f in zip(kinds, saved):
            k.reset_parameters = f


def model_from_record(rec: dict, source: str = "weights") -> tuple[CRDRModel, bytes]:
    if not isinstance(rec, dict) or rec.get("format") != FORMAT:
        raise WeightsError(f"{source}: not a crdr weights file")
    if rec.get("version") not in READABLE_VERSIONS:
        raise WeightsError(f"{source}: unsupported weights version {rec.get('version')}")
    try:
        cfg = ModelConfig.from_dict(rec["config"])
        with _no_random_init():
            model = CRDRModel(cfg)
        state = {k: v.float() if v.is_floating_point() else v for k, v in rec["state_dict"].items()}
        # assign: the converted tensors become the parameters, instead of being copied into
        # freshly allocated ones (measured: load_weights of lite 0.20 -> 0.14 s). Tensors
        # that float() leaves as they are (integer buffers) stay mapped from the file
        # copy-on-write (torch.load mmap=True maps it privately): writing to them never
        # reaches the file.
        model.load_state_dict(state, strict=True, assign=True)
        model.set_z_tables(rec["z_tables"])
        if "entropy" in rec:
            model.set_entropy_state(rec["entropy"])
        else:
            model.from_v1_weights = True
    except (KeyError, ValueError, RuntimeError, TypeError) as e:
        raise WeightsError(f"{source}: weights do not match the model ({e})") from None
    model.eval()
    # Plain facts about how the weights were made (stage, step, ...); tensors stay out.
    model.meta = {k: v for k, v in rec.get("meta", {}).items() if not isinstance(v, (dict, torch.Tensor))}
    return model, record_fingerprint(rec)


def load_weights(path: str | os.PathLike | None = None) -> tuple[CRDRModel, bytes]:
    """Load a weights file into a CPU model in eval mode. Returns (model, fingerprint)."""
    p = Path(path) if path is not None else default_weights_path()
    if not p.is_file():
        raise WeightsError(f"weights file not found: {p}")
    return model_from_record(read_record(p), str(p))


def read_record(path: str | os.PathLike) -> dict:
    """The raw record of a weights file (tensors on the CPU, mapped from the file)."""
    try:
        # mmap: the tensors are read from the page cache instead of copied (faster start)
        return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # unpickling errors come in many types; their advice is unsafe
        raise WeightsError(f"{path}: not a crdr weights file (cannot be read)") from None
