"""The exact integer entropy networks (h_s and the ChARM slice nets) in numpy.

This is the product path's implementation of the integer model that
:mod:`crdr_codec.nn.entropy.integer` builds from the float networks; the two agree bit
for bit (tests/test_engines.py). What one layer computes is specified there and in
docs/FORMAT.md: for output channel ``o``::

    acc[o] = B[o] + sum_{i, a, b} W[o, i, a, b] * x[i, r + a - p, c + b - p]
    out[o] = clamp(floor(acc[o] / 2^S[o]), lo, hi)

Here the sum is evaluated with float64 matrix products over whole padded rows of the
input. It is exact: every input and weight
is an integer, and the format guarantees (checked when a layer is built, and again when
it is loaded here) that the sum of the absolute values of all terms of any output is
below 2^52, so every partial sum, in any order, with or without fused multiply-add, is an
integer that float64 represents exactly. The result therefore does not depend on the
BLAS library, its threads, blocking or the CPU's instruction set.

Activations are kept channels-last, (H, W, C) int32 (int64 for means and indices).
"""

from __future__ import annotations

import numpy as np

FRAC = 8  # fractional bits of z_hat, means, latents and the LRP output
Y_LIMIT = (1 << 17) - 1  # latents (units of 2^-8) are clamped to +-Y_LIMIT
LRP_LIMIT = 6 << FRAC
EXACT_LIMIT = 1 << 52

#: bound of one layer call's product buffer, in bytes (float64)
BAND_BYTES = 64 << 20
#: input slab bound of one band of a layer stack (see :func:`run_banded`)
SLAB_BYTES = 96 << 20


class IntLayer:
    """One integer layer ('same' conv, or a stride-2 transposed conv as zero insertion
    followed by a conv), from its stored integer tensors."""

    def __init__(self, weight: np.ndarray, bias: np.ndarray, shift: np.ndarray,
                 lo: int, hi: int, upsample: bool, in_bound: int | None = None) -> None:
        if weight.ndim != 4 or weight.shape[2] != weight.shape[3] or weight.shape[2] % 2 == 0:
            raise ValueError(f"integer layer weight has shape {weight.shape}")
        cout, cin, k, _ = weight.shape
        if bias.shape != (cout,) or shift.shape != (cout,):
            raise ValueError("integer layer bias/shift do not match its weight")
        if not -(1 << 31) <= lo <= hi < 1 << 31:
            raise ValueError("integer layer output range must fit 32 bits")
        if shift.min(initial=0) < 0 or shift.max(initial=0) > 62:
            raise ValueError("integer layer shift out of range")
        w = weight.astype(np.int64)
        self.cin, self.cout, self.kernel = cin, cout, k
        self.lo, self.hi, self.upsample = int(lo), int(hi), bool(upsample)
        # (k*cin, k*cout): row a*cin + i, column b*cout + o holds W[o, i, a, b]
        self.wmat = np.ascontiguousarray(w.transpose(2, 1, 3, 0).reshape(k * cin, k * cout),
                                         dtype=np.float64)
        self.bias = bias.astype(np.int64)
        self.shift = shift.astype(np.int64)
        self.wsum_max = int(np.abs(w).reshape(cout, -1).sum(1).max(initial=0))
        self.bias_max = int(np.abs(self.bias).max(initial=0))
        if in_bound is not None and in_bound * self.wsum_max + self.bias_max >= EXACT_LIMIT:
            raise ValueError("integer layer would not be exact (accumulator bound >= 2^52)")

    @classmethod
    def from_state(cls, state, prefix: str, in_bound: int | None = None) -> "IntLayer":
        lo, hi, up = (int(v) for v in np.asarray(state[f"{prefix}.range"]).ravel()[:3])
        return cls(np.asarray(state[f"{prefix}.weight"]), np.asarray(state[f"{prefix}.bias"]).ravel(),
                   np.asarray(state[f"{prefix}.shift"]).ravel(), lo, hi, bool(up), in_bound)

    @property
    def out_bound(self) -> int:
        return max(abs(self.lo), abs(self.hi))

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """x (H, W, cin) integers -> (H', W', cout) int32 (H' = 2H for an upsampling layer)."""
        if x.shape[-1] != self.cin:
            raise ValueError(f"integer layer expects {self.cin} channels, got {x.shape[-1]}")
        if x.size and int(np.abs(x).max()) * self.wsum_max + self.bias_max >= EXACT_LIMIT:
            raise ValueError("integer layer input out of its exact range")
        k, p = self.kernel, self.kernel // 2
        h, w, c = x.shape
        if self.upsample:  # transposed conv 5x5 / 2, padding 2, output padding 1
            h, w = 2 * h, 2 * w
            xp = np.zeros((h + 2 * p, w + 2 * p, c), np.float64)
            xp[p : p + h : 2, p : p + w : 2] = x
        else:
            xp = np.zeros((h + 2 * p, w + 2 * p, c), np.float64)
            xp[p : p + h, p : p + w] = x
        wp = w + 2 * p
        out = np.empty((h, w, self.cout), np.int32)
        # One product over whole padded rows, the k rows of the kernel side by side (a
        # copy of k input rows, not the k*k of a full im2col):
        # P[r, x, b, o] = sum_{a, i} xp[r + a, x, i] * W[o, i, a, b]; the output at (r, x)
        # is the sum over b of P[r, x + b, b, o].
        rows = max(1, min(h, BAND_BYTES // max(1, 8 * wp * k * max(c, self.cout))))
        for r0 in range(0, h, rows):
            n = min(h, r0 + rows) - r0
            stacked = np.concatenate([xp[r0 + a : r0 + a + n] for a in range(k)], axis=2)
            prod = (stacked.reshape(n * wp, k * c) @ self.wmat).reshape(n, wp, k, self.cout)
            acc = prod[:, 0:w, 0, :].copy()
            for b in range(1, k):
                acc += prod[:, b : b + w, b, :]
            res = acc.astype(np.int64)
            res += self.bias
            res >>= self.shift  # arithmetic shift: floor division by 2^S
            np.clip(res, self.lo, self.hi, out=res)
            out[r0 : r0 + n] = res
        return out


def run(layers: list[IntLayer], x: np.ndarray) -> np.ndarray:
    for layer in layers:
        x = layer(x)
    return x


def run_banded(layers: list[IntLayer], parts: list[np.ndarray], up: int = 1,
               margin: int | None = None, slab_bytes: int = SLAB_BYTES) -> np.ndarray:
    """``run(layers, concat(parts))`` in bands of output rows, to bound memory.

    Each band runs the whole stack on a slab of input rows reaching ``margin`` rows
    beyond it on each side (clipped to the image); rows outside the image are zero as in
    the unbanded computation, and the margin keeps the slab's cut edges out of the band,
    so the result is identical (integer arithmetic; tested).

    Args:
        parts: (h, w, C_i) integer arrays, concatenated along channels.
        up: output rows per input row (4 for h_s: two transposed convolutions).
        margin: input rows of context (default: the sum of the kernels' half-widths).
    """
    h, w = parts[0].shape[:2]
    cin = sum(p.shape[2] for p in parts)
    if margin is None:
        margin = sum(layer.kernel // 2 for layer in layers)
    rows_in = max(1, slab_bytes // max(1, 10 * cin * w * up * up))
    whole = parts[0] if len(parts) == 1 else np.concatenate(parts, axis=2)
    if rows_in >= h:
        return run(layers, whole)
    out = None
    for a0 in range(0, h, rows_in):
        a1 = min(h, a0 + rows_in)
        s0, s1 = max(0, a0 - margin), min(h, a1 + margin)
        y = run(layers, whole[s0:s1])[(a0 - s0) * up : (a1 - s0) * up]
        if out is None:
            out = np.empty((h * up,) + y.shape[1:], y.dtype)
        out[a0 * up : a1 * up] = y
    return out


class IntegerEntropy:
    """The integer h_s and ChARM nets, the scale thresholds and the LRP table.

    ``state``: a mapping of the stored integer arrays (names as in a weights file's
    "entropy" record). Every method takes and returns channels-last integer arrays.
    """

    def __init__(self, state, num_slices: int, max_support: int, slice_channels: int) -> None:
        self.num_slices, self.max_support, self.slice_channels = num_slices, max_support, slice_channels
        self.z_med = np.asarray(state["z.med"]).astype(np.int64)
        self.z_minsym = np.asarray(state["z.minsym"]).astype(np.int64)
        z_lengths = np.asarray(state["z.lengths"]).astype(np.int64)
        z_bound = int(((np.abs(self.z_minsym) + z_lengths) * (1 << FRAC) + np.abs(self.z_med)).max())

        def stack(prefix: str, bound: int) -> list[IntLayer]:
            out = []
            for j in range(3):
                layer = IntLayer.from_state(state, f"{prefix}.{j}", bound)
                out.append(layer)
                bound = layer.out_bound
            return out

        self.hs_mean, self.hs_scale = stack("hs.mean", z_bound), stack("hs.scale", z_bound)
        h_bound = max(self.hs_mean[-1].out_bound, self.hs_scale[-1].out_bound, Y_LIMIT)
        self.mean = [stack(f"ctx.mean.{k}", h_bound) for k in range(num_slices)]
        self.scale = [stack(f"ctx.scale.{k}", h_bound) for k in range(num_slices)]
        self.lrp = [stack(f"ctx.lrp.{k}", h_bound) for k in range(num_slices)]
        self.thresholds = np.asarray(state["scale.thresholds"]).astype(np.int64)
        self.lut = np.asarray(state["lrp.lut"]).astype(np.int64)
        if self.lut.shape != (2 * LRP_LIMIT + 1,):
            raise ValueError("LRP table has the wrong length")
        for k, net in enumerate(self.lrp):
            if net[-1].lo < -LRP_LIMIT or net[-1].hi > LRP_LIMIT:
                raise ValueError(f"LRP net {k} output range exceeds its table")

    def z_hat(self, z_sym: np.ndarray) -> np.ndarray:
        """z_hat in units of 2^-8 from shifted symbols (h, w, C) (0 .. length-1), int64."""
        return (z_sym.astype(np.int64) + self.z_minsym) * (1 << FRAC) + self.z_med

    def hyper(self, z_sym: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The hyper features of both branches, int32 (4h, 4w, M)."""
        zf = self.z_hat(z_sym)
        # two stride-2 transposed convs and a 3x3: 3 rows of z cover their reach
        return run_banded(self.hs_mean, [zf], 4, 3), run_banded(self.hs_scale, [zf], 4, 3)

    def _support(self, k: int, decoded: list[np.ndarray]) -> list[np.ndarray]:
        return decoded[: min(k, self.max_support)]

    def params(self, k: int, hm: np.ndarray, hs: np.ndarray,
               decoded: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """(mean in units of 2^-8, scale index), both int64 (h, w, s), for slice k."""
        sup = self._support(k, decoded)
        mu = run_banded(self.mean[k], [hm, *sup]).astype(np.int64)
        sc = run_banded(self.scale[k], [hs, *sup]).astype(np.int64)
        # the number of thresholds strictly below the scale (exact integer comparisons)
        idx = np.searchsorted(self.thresholds, sc, side="left")
        return mu, idx

    def refine(self, k: int, hm: np.ndarray, decoded: list[np.ndarray], y_q: np.ndarray) -> np.ndarray:
        """The slice after LRP in units of 2^-8 (int32); y_q = sym * 2^8 + mean.

        y_q and the result are clamped to +-Y_LIMIT.
        """
        sup = self._support(k, decoded)
        y_q = np.clip(y_q.astype(np.int64), -Y_LIMIT, Y_LIMIT)
        l_int = run_banded(self.lrp[k], [hm, *sup, y_q.astype(np.int32)])
        out = y_q + self.lut[l_int.astype(np.int64) + LRP_LIMIT]
        return np.clip(out, -Y_LIMIT, Y_LIMIT).astype(np.int32)
