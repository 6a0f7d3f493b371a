"""Growing a trained model's transforms wider without changing what it computes.

The capacity lever of the quality campaign: a wider g_a / g_s (``enc_width``,
``enc_mid``, ``dec_width``, ``dec_mid``) started from trained weights rather than from
scratch. Every layer of the grown model holds the trained weights in its leading block;
the new channels are computed from the old ones by freshly initialised weights, and every
weight that *reads* a new channel starts at zero. So no original channel, and no output,
depends on a new channel: the grown model computes the same y and x_hat (up to float
summation order), and training can grow into the new channels, whose outgoing weights get
gradients as soon as the new channels are non-zero.

The entropy model (h_a, h_s, ChARM, the z prior) must keep its shapes: y, z and their
probability model are unchanged, so a weights file's integer entropy model carries over.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from ..config import ModelConfig

#: The configuration fields a growth may change (all only widen the transforms).
GROWABLE = ("enc_width", "enc_mid", "dec_width", "dec_mid")


def check_growth(old: ModelConfig, new: ModelConfig) -> None:
    """Raise ValueError unless ``new`` equals ``old`` but for wider transform fields."""
    for f in dataclasses.fields(ModelConfig):
        a, b = getattr(old, f.name), getattr(new, f.name)
        if f.name == "name":
            continue
        if f.name in GROWABLE:
            if b < a:
                raise ValueError(f"{f.name} can only grow: {a} -> {b}")
        elif a != b:
            raise ValueError(f"{f.name} must stay {a!r} (got {b!r}): only "
                             f"{', '.join(GROWABLE)} can change")


def _lead(shape: torch.Size) -> tuple[slice, ...]:
    """Index of the leading block of that shape (where the trained weights go)."""
    return tuple(slice(0, n) for n in shape)


@torch.no_grad()
def grow_into(old: nn.Module, new: nn.Module) -> None:
    """Load ``old``'s parameters into the wider ``new`` (same module tree), so that ``new``
    computes what ``old`` does; ``new`` keeps its fresh initialisation for the weights that
    produce new channels. Buffers must match in shape and are copied.

    Raises:
        ValueError: a module or parameter of ``old`` has no counterpart in ``new``, or is
            larger there.
    """
    new_mods = dict(new.named_modules())
    for name, m_old in old.named_modules():
        m_new = new_mods.get(name)
        if m_new is None or type(m_new) is not type(m_old):
            raise ValueError(f"module {name!r} has no counterpart in the grown model")
        for pname, p_old in m_old.named_parameters(recurse=False):
            p_new = getattr(m_new, pname)
            if any(a > b for a, b in zip(p_old.shape, p_new.shape)) or p_old.dim() != p_new.dim():
                raise ValueError(f"{name}.{pname}: {tuple(p_old.shape)} does not fit in "
                                 f"{tuple(p_new.shape)}")
            if pname == "weight" and isinstance(m_old, (nn.Conv2d, nn.Linear)):
                p_new[:, p_old.shape[1]:] = 0  # (out, in, ...): nothing reads a new input
            elif pname == "weight" and isinstance(m_old, nn.ConvTranspose2d):
                p_new[p_old.shape[0]:] = 0  # (in, out, ...)
            p_new[_lead(p_old.shape)] = p_old.to(p_new.dtype)
        for bname, b_old in m_old.named_buffers(recurse=False):
            b_new = getattr(m_new, bname)
            if b_new is None or b_new.shape != b_old.shape:
                raise ValueError(f"buffer {name}.{bname} changes shape in the grown model")
            b_new.copy_(b_old)


def grown_config(cfg: ModelConfig, name: str, **widths: int) -> ModelConfig:
    """``cfg`` with some of :data:`GROWABLE` widened (checked) and a new name."""
    unknown = set(widths) - set(GROWABLE)
    if unknown:
        raise ValueError(f"cannot grow {sorted(unknown)}; growable: {', '.join(GROWABLE)}")
    new = dataclasses.replace(cfg, name=name, **widths)
    check_growth(cfg, new)
    return new


def grow_weights(src, dst, cfg: ModelConfig) -> bytes:
    """Write weights file ``dst``: the model of ``src`` grown to ``cfg`` (see
    :func:`grow_into`). The integer entropy model, the probability tables and the
    training metadata (stage, step, the float z prior) carry over unchanged, and the file
    keeps the source's precision (fp16 if its float weights are fp16). Returns the new
    fingerprint.
    """
    from .model import CRDRModel
    from .weights import WeightsError, model_from_record, read_record, save_weights

    rec = read_record(src)
    old, fp = model_from_record(rec, str(src))
    if old.entropy_state is None:
        raise WeightsError(f"{src}: a version-1 file (no integer entropy model) cannot be grown")
    check_growth(old.cfg, cfg)
    half = any(v.dtype == torch.float16 for v in rec["state_dict"].values())
    new = CRDRModel(cfg)
    grow_into(old, new)
    new.set_z_tables(old.z_tables)
    new.set_entropy_state(old.entropy_state)
    new.eval()
    meta = {**rec.get("meta", {}), "grown_from": fp[:4].hex()}
    return save_weights(dst, new, half=half, meta=meta)
