"""Building the integer probability tables of z and y from the float model.

They are stored in weights files and model packages; what they mean and how the range
coder uses them is described in :mod:`crdr_codec.runtime.coder`. Built once, at
quantisation time: the coder never evaluates erf or exp.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ...runtime.coder import PRECISION, TOTAL

MIN_LIMIT = 63  # smallest coded |residual| range of y
SIGMAS = 24.0  # coded range of y in table standard deviations


def integer_frequencies(pmf: np.ndarray) -> np.ndarray:
    """Frequencies (int64) >= 1 summing to 2^24, proportional to pmf (float64, >= 0)."""
    p = np.asarray(pmf, dtype=np.float64)
    p = p / p.sum()
    free = TOTAL - len(p)
    w = np.floor(p * free).astype(np.int64) + 1
    w[int(np.argmax(p))] += TOTAL - int(w.sum())
    assert int(w.sum()) == TOTAL and w.min() >= 1
    return w


def y_limit(sigma: float) -> int:
    return max(MIN_LIMIT, int(math.ceil(SIGMAS * sigma)))


def gaussian_frequencies(sigma: float, limit: int) -> np.ndarray:
    """A zero-mean Gaussian over the integers -limit..limit, tails folded into the ends."""
    r = torch.arange(-limit, limit + 2, dtype=torch.float64) - 0.5  # bin edges
    upper_tail = 0.5 * torch.special.erfc(r / (sigma * math.sqrt(2.0)))  # P(X > edge)
    pmf = (upper_tail[:-1] - upper_tail[1:]).numpy()
    pmf[0] += 1.0 - float(upper_tail[0])
    pmf[-1] += float(upper_tail[-1])
    return integer_frequencies(np.maximum(pmf, 0.0))


def y_frequency_tables(table: np.ndarray) -> dict[str, torch.Tensor]:
    """Integer tables of y for a scale table: flat frequencies, offsets and limits."""
    limits = [y_limit(float(s)) for s in table]
    freqs = [gaussian_frequencies(float(s), r) for s, r in zip(table, limits)]
    offsets = np.cumsum([0] + [len(f) for f in freqs])
    return {
        "y.freq": torch.from_numpy(np.concatenate(freqs).astype(np.int32)),
        "y.offset": torch.from_numpy(offsets.astype(np.int64)),
        "y.limit": torch.tensor(limits, dtype=torch.int64),
    }


def z_frequency_tables(pmf: np.ndarray, lengths: np.ndarray) -> torch.Tensor:
    """(C, Lmax) int32 frequencies from the float z tables (zero past each length)."""
    out = np.zeros(pmf.shape, dtype=np.int32)
    for c, n in enumerate(lengths):
        out[c, : int(n)] = integer_frequencies(np.maximum(pmf[c, : int(n)], 0.0))
    return torch.from_numpy(out)


