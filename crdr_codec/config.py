"""Model configurations and the rate/realism control values.

A :class:`ModelConfig` fully describes the network shapes; it is stored inside every
weights file, so a file always rebuilds the model it was trained as. Named presets:

* ``paper``: the reference sizes of CRDR (N=192, M=320, decoder width 256, 10 slices).
* ``lite``: the configuration we train and ship; sized for CPU speed.
* ``tiny``: a few channels, for tests only.

Only the standard library is imported here.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from .errors import ParameterError

#: Number of discrete quality levels of the interpolated channel attention.
NUM_LEVELS = 5
#: Most steps of encode-time latent refinement (crdr encode --refine; refine.py).
REFINE_MAX_STEPS = 1000
Q_MIN, Q_MAX = 0.0, float(NUM_LEVELS - 1)
#: Realism range; beta is normalised to [-1, 1] by 2 * beta / BETA_MAX - 1.
BETA_MIN, BETA_MAX = 0.0, 5.12
#: Both H and W are padded to a multiple of this (16 from g_a, 4 from h_a).
PAD_MULTIPLE = 64
#: q is carried in the header as an integer code q * Q_CODE_SCALE (uint16), and the
#: encoder uses exactly the decoded value, so encoder and decoder agree bit for bit.
Q_CODE_SCALE = 16000


@dataclass(frozen=True)
class ModelConfig:
    """Shapes of a CRDR model (see docs/ARCHITECTURE in the README)."""

    name: str
    enc_width: int  # main width of g_a
    enc_mid: int  # bottleneck width inside g_a's residual units
    latent: int  # channels of y (M)
    dec_width: int  # main width of g_s
    dec_mid: int  # bottleneck width inside g_s's residual units
    hyper: int  # channels of z
    hyper_mid: int  # middle width of h_a / h_s
    num_slices: int  # ChARM slices of y
    max_support: int  # at most this many earlier slices condition a slice
    charm_hidden: tuple[int, int]  # widths of the slice transforms
    cond_dim: int  # width of the beta embedding
    fourier_bands: int = 10  # L, Fourier frequencies 2^0 .. 2^(L-1)
    attention: bool = True  # simplified attention blocks in g_a / g_s
    res_units: int = 3  # residual bottleneck units per stage

    def __post_init__(self) -> None:
        if self.latent % self.num_slices:
            raise ValueError(
                f"latent={self.latent} is not divisible by num_slices={self.num_slices}"
            )

    @property
    def slice_channels(self) -> int:
        return self.latent // self.num_slices

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["charm_hidden"] = list(self.charm_hidden)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"unknown model config keys: {sorted(unknown)}")
        d = dict(d)
        d["charm_hidden"] = tuple(d["charm_hidden"])
        return cls(**d)


PRESETS: dict[str, ModelConfig] = {
    "paper": ModelConfig(
        name="paper", enc_width=192, enc_mid=96, latent=320, dec_width=256, dec_mid=128,
        hyper=192, hyper_mid=256, num_slices=10, max_support=5, charm_hidden=(224, 128),
        cond_dim=512,
    ),
    "lite": ModelConfig(
        name="lite", enc_width=96, enc_mid=48, latent=160, dec_width=96, dec_mid=48,
        hyper=96, hyper_mid=128, num_slices=5, max_support=4, charm_hidden=(96, 64),
        # 4 bands (highest frequency 8): training samples beta from a grid of 101 values,
        # spaced 0.02 in the normalised b, and a short schedule sees each only ~1 % of the
        # time. With the reference's 10 bands (up to 512, 10 rad per grid step) the
        # embeddings of neighbouring grid values are unrelated. Measured 452 stage-3
        # steps in (10 bands, conditioning at 10x lr), beta = 0 had lost 1.6-2.6 dB PSNR
        # on Kodak val and beta = 3.84 0.3-1.0 dB; with 4 bands at 2x lr, neither lost
        # any. Smooth features let all betas train each other.
        cond_dim=128, fourier_bands=4,
    ),
    "tiny": ModelConfig(
        name="tiny", enc_width=16, enc_mid=8, latent=16, dec_width=16, dec_mid=8,
        hyper=8, hyper_mid=16, num_slices=2, max_support=1, charm_hidden=(16, 16),
        cond_dim=16, res_units=1,
    ),
}
# Wider synthesis transforms, grown from the trained ones without changing their function
# (crdr_codec/grow.py, scripts/grow_model.py): the capacity lever for GPU training. Same
# y, z and entropy model as their base, so files keep their rates; lite-wide's g_s has
# 3.01 M parameters against lite's 2.09 M. Not trained yet.
PRESETS["lite-wide"] = dataclasses.replace(PRESETS["lite"], name="lite-wide", dec_width=128,
                                           dec_mid=64)
PRESETS["tiny-wide"] = dataclasses.replace(PRESETS["tiny"], name="tiny-wide", dec_width=24,
                                           dec_mid=12)


def get_config(name: str) -> ModelConfig:
    """Return the named preset; the error lists the valid names."""
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(
            f"unknown model config {name!r}; choose one of {', '.join(sorted(PRESETS))}"
        ) from None


def check_q(q: float) -> float:
    q = float(q)
    if not (Q_MIN <= q <= Q_MAX):  # also rejects NaN
        raise ParameterError(f"q must be in [{Q_MIN:g}, {Q_MAX:g}], got {q:g}")
    return q


def check_refine(steps: int) -> int:
    """Steps of encode-time latent refinement: an integer in [0, REFINE_MAX_STEPS]."""
    if isinstance(steps, bool) or int(steps) != steps or not 0 <= steps <= REFINE_MAX_STEPS:
        raise ParameterError(f"refine steps must be an integer in [0, {REFINE_MAX_STEPS}], got {steps}")
    return int(steps)


def check_beta(beta: float) -> float:
    beta = float(beta)
    if not (BETA_MIN <= beta <= BETA_MAX):
        raise ParameterError(f"beta must be in [{BETA_MIN:g}, {BETA_MAX:g}], got {beta:g}")
    return beta


def q_to_code(q: float) -> int:
    """The header's integer code for q (nearest representable value)."""
    return int(round(check_q(q) * Q_CODE_SCALE))


def code_to_q(code: int) -> float:
    return code / Q_CODE_SCALE
