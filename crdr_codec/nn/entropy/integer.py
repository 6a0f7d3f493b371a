"""Exact integer entropy networks: h_s and the ChARM slice nets in fixed point.

Every number that decides a coded symbol (z_hat fed to h_s, the hyper features, each
slice's means and scale indices, the LRP refinement fed to later slices) is computed
here in integer arithmetic, so encoder and decoder agree bit for bit on any CPU, thread
count, BLAS/oneDNN setting, torch version or GPU.

One layer (a 'same' convolution, or a transposed convolution written as zero insertion
followed by a convolution) computes, for output channel ``o``::

    acc[o] = B[o] + sum_{i, a, b} W[o, i, a, b] * x[i, r + a - p, c + b - p]   (exact)
    out[o] = clamp(floor(acc[o] / 2^S[o]), lo, hi)

with integer weights ``W`` (|W| < 2^15, stored as int16), an integer bias ``B`` that
already includes the rounding offset 2^(S-1) (so the floor rounds half up) and a shift
``S[o]`` >= 0. The real-valued rescaling between layers is folded into the weights: the
output step of a channel is its weight step times 2^S. Hidden layers clamp to
[0, 2^16 - 1] (the ReLU), the hyper features to [-(2^16 - 1), 2^16 - 1]. The sum of the
absolute values of all terms of any output is checked when the layer is built to stay
below 2^52 (so float64 in any order would also be exact; the format promises that much).

The sum is evaluated with integer matrix products (im2col): inputs and weights are split
into signed base-256 digits, each pair of digit planes is multiplied with an
int8 x int8 -> int32 matrix product (``torch._int_mm``), and the partial sums are
recombined in int64. Integer arithmetic cannot round, so the result does not depend on
summation order, blocking, threading or the CPU's instruction set, and no Winograd or FFT
algorithm is involved. The division by 2^S is an arithmetic right shift.

Fixed-point conventions (``FRAC`` = 8 fractional bits):

* z_hat: ``(s + minsym[c]) * 2^8 + med[c]`` for the decoded symbol ``s`` of channel ``c``.
* means and latents: units of 2^-8; ``y_hat = sym * 2^8 + mean``, clamped to
  +-(2^17 - 1) before and after the LRP refinement (so |y_hat| < 512).
* scales: the scale net's output in units of 2^-12; the scale index is the number of
  thresholds ``T[j]`` (j = 0..62) strictly below it, so index = the first table entry
  that is >= the scale, as the float model's searchsorted.
* LRP: the LRP net's output ``l`` in units of 2^-8 is clamped to [-L, L] and refines the
  slice by ``lut[l + L]`` (0.5 * tanh, in units of 2^-8, tabulated in the weights file).

The parameters are built from the float model by :func:`quantize` (post-training, with
per-channel activation ranges measured on calibration latents) and stored as integer
tensors in the weights file; nothing here evaluates a transcendental function at run time.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

FRAC = 8  # fractional bits of z_hat, means, latents and the LRP output
SCALE_FRAC = 12  # fractional bits of the scale net output
ACT_BITS = 16  # hidden activations are in [0, 2^16)
WEIGHT_BITS = 16  # weights are in (-2^15, 2^15) (stored as int16)
Y_LIMIT = (1 << 17) - 1  # latents (units of 2^-8) are clamped to +-Y_LIMIT: |y| < 512
HEADROOM = 4.0  # activation range = HEADROOM x the largest value seen in calibration
MEAN_LIMIT = 1 << 18  # |mean| <= 1024 latent units
LRP_LIMIT = 6 << FRAC  # tanh(6) = 0.99999
EXACT_LIMIT = 1 << 52  # bound on the sum of |terms| of one output (float64 exactness)


@dataclass
class IntLayer:
    weight: Tensor  # int16, (cout, cin, k, k)
    bias: Tensor  # float64 holding integers, (cout, 1): b + 2^(S-1) (the rounding offset)
    shift: Tensor  # int64 (cout,): S
    lo: int
    hi: int
    kernel: int
    upsample: bool  # transposed conv, stride 2: zero insertion, then this conv

    def __post_init__(self) -> None:
        cout = self.weight.shape[0]
        if not -(1 << 31) <= self.lo <= self.hi < 1 << 31:
            raise ValueError("integer layer output range must fit 32 bits")
        # (cout, k*k*cin): columns in (a, b, channel) order, like the im2col rows below
        w = self.weight.to(torch.int64).permute(0, 2, 3, 1).reshape(cout, -1)
        if w.shape[1] * (1 << 14) >= (1 << 31):
            raise ValueError("integer layer too wide for 32-bit digit products")
        # the weights as base-256 digits in [-128, 127], all digits side by side:
        # (k*k*cin, digits*cout) int8, so one int8 product per input digit gives every
        # (input digit, weight digit) partial sum.
        # Weights span [-32767, 32767], a little more than two signed digits hold
        # ([-32896, 32639]). Rather than a third digit, such a layer uses w - 128 (which
        # fits) and adds back 128 x (the sum of the inputs under the kernel), computed by
        # one extra weight column of ones.
        self._offset = 0
        if _digit_count(w) > 2 and int(w.min()) >= -32767 and int(w.max()) <= 32767:
            self._offset = 128
            w = w - self._offset
        digits = _digits(w, _digit_count(w))
        self._wdigits = len(digits)
        if self._offset:
            digits.append(torch.ones(1, w.shape[1], dtype=torch.int8))
        self._wcat = torch.cat(digits, 0).t().contiguous()
        self._bias64 = self.bias.view(1, -1).to(torch.int64)
        self._wsum_max = int(self.weight.to(torch.int64).abs().flatten(1).sum(1).max())
        self._wf64: Tensor | None = None  # float64 weights, made on first use

    def state(self, prefix: str) -> dict[str, Tensor]:
        return {
            f"{prefix}.weight": self.weight.clone(),
            f"{prefix}.bias": self.bias.view(-1).to(torch.int64),
            f"{prefix}.shift": self.shift.clone(),
            f"{prefix}.range": torch.tensor([self.lo, self.hi, int(self.upsample)], dtype=torch.int64),
        }

    @classmethod
    def from_state(cls, s: dict[str, Tensor], prefix: str) -> "IntLayer":
        w = s[f"{prefix}.weight"]
        lo, hi, up = (int(v) for v in s[f"{prefix}.range"])
        return cls(
            weight=w,
            bias=s[f"{prefix}.bias"].to(torch.float64).view(-1, 1),
            shift=s[f"{prefix}.shift"].to(torch.int64),
            lo=lo, hi=hi, kernel=int(w.shape[-1]), upsample=bool(up),
        )

    def accumulate(self, x: Tensor) -> Tensor:
        """B + W * x for x (1, cin, H, W) (integers, |x| < 2^31): int64 (1, cout, H, W), exact.

        Integer matrix products (im2col): the input and the weights are split into signed
        base-256 digits (int8), every digit pair is multiplied with an int8 x int8 -> int32
        product (each output is a sum of at most cin*k*k < 2^17 terms of magnitude <= 2^14,
        so int32 cannot overflow), and the partial sums are recombined in int64 with their
        weights 2^(8(i+j)). Integer arithmetic throughout: no rounding, no dependence on
        summation order, threads or backend. Rows are processed in bands that bound the
        im2col buffers to about ``_BAND_BYTES``.
        """
        k = self.kernel
        x = x[0]
        if x.dtype != torch.int32:  # every layer input is far below 2^31 (|x| <= 2^18)
            x = x.to(torch.int64)
            if x.numel() and int(x.abs().max()) >= 1 << 31:
                raise ValueError("integer layer input out of the 32-bit range")
            x = x.to(torch.int32)
        if self.upsample:  # transposed conv 5x5 / 2, padding 2, output padding 1
            c, h, w = x.shape
            up = x.new_zeros(c, 2 * h, 2 * w)  # the last row/column stays zero
            up[:, ::2, ::2] = x
            x = up
        c, h, w = x.shape
        p = k // 2
        # channels last, zero-padded: (h + 2p, w + 2p, c)
        xp = F.pad(x, (p, p, p, p)).permute(1, 2, 0).contiguous()
        cout = self.weight.shape[0]
        kk = c * k * k
        if not _int8_products_fast():
            xmax = int(x.abs().max()) if x.numel() else 0
            if xmax * self._wsum_max < EXACT_LIMIT:
                return self._accumulate_float64(xp, h, w)
        xd = _digits(xp, _digit_count(x))
        rows = max(1, min(h, _BAND_BYTES // max(1, w * kk)))
        cols = torch.empty(rows, w, k, k, c, dtype=torch.int8)
        out = torch.empty(h * w, cout, dtype=torch.int64)
        for r0 in range(0, h, rows):
            r1 = min(h, r0 + rows)
            n = r1 - r0
            acc = torch.zeros(n * w, cout, dtype=torch.int64)
            for i, d in enumerate(xd):
                prod = torch._int_mm(_im2col(d, cols, r0, n), self._wcat)
                for j in range(self._wdigits):
                    part = prod[:, j * cout : (j + 1) * cout].to(torch.int64)
                    acc += part << (8 * (i + j)) if i + j else part
                if self._offset:  # + 128 x (sum of the inputs under the kernel)
                    acc += prod[:, -1:].to(torch.int64) << (8 * i + 7)
            out[r0 * w : r1 * w] = acc + self._bias64
        return out.t().reshape(1, cout, h, w)

    def _accumulate_float64(self, xp: Tensor, h: int, w: int) -> Tensor:
        """The same sums as float64 matrix products, for CPUs where torch has no fast int8
        product (its fallback is ~250x slower). Exact: every input and weight is an integer
        and |x|max x (the largest sum of |w| of an output) < 2^52 (checked by the caller),
        so every partial sum in any order is an integer below 2^53."""
        k, c = self.kernel, xp.shape[2]
        cout, kk = self.weight.shape[0], c * k * k
        if self._wf64 is None:
            wf = self.weight.to(torch.float64).permute(0, 2, 3, 1).reshape(cout, kk)
            self._wf64 = wf.t().contiguous()
        rows = max(1, min(h, _BAND_BYTES // max(1, 8 * w * kk)))
        cols = torch.empty(rows, w, k, k, c, dtype=torch.float64)
        out = torch.empty(h * w, cout, dtype=torch.int64)
        for r0 in range(0, h, rows):
            r1 = min(h, r0 + rows)
            n = r1 - r0
            acc = torch.mm(_im2col(xp, cols, r0, n), self._wf64)
            out[r0 * w : r1 * w] = acc.to(torch.int64) + self._bias64
        return out.t().reshape(1, cout, h, w)

    def requantize(self, acc: Tensor) -> Tensor:
        """floor(acc / 2^S) (an arithmetic shift), clamped; int32."""
        acc = acc.to(torch.int64)
        shifted = torch.bitwise_right_shift(acc, self.shift.view(1, -1, 1, 1))
        return shifted.clamp_(self.lo, self.hi).to(torch.int32)

    def __call__(self, x: Tensor) -> Tensor:
        return self.requantize(self.accumulate(x))


_BAND_BYTES = 16 << 20  # im2col buffer bound per layer call (int8)


def _im2col(src: Tensor, cols: Tensor, r0: int, n: int) -> Tensor:
    """Output rows r0 .. r0+n of the im2col matrix of a zero-padded channels-last input
    ``src`` (h + 2p, w + 2p, c), written into ``cols`` (rows, w, k, k, c), one strided copy
    per kernel offset: (n*w, k*k*c), columns in (a, b, channel) order like the weights."""
    _, w, k, _, c = cols.shape
    for a in range(k):
        for b in range(k):
            cols[:n, :, a, b, :] = src[r0 + a : r0 + n + a, b : b + w, :]
    return cols[:n].view(n * w, k * k * c)


def _int8_products_fast() -> bool:
    """Whether torch._int_mm runs on oneDNN here. Without it (oneDNN disabled or absent)
    torch falls back to a naive loop, ~250x slower than float64 BLAS (measured)."""
    return bool(torch.backends.mkldnn.is_available() and torch.backends.mkldnn.enabled)


def _digit_count(v: Tensor) -> int:
    """How many signed base-256 digits in [-128, 127] represent every value of v."""
    lo, hi = (int(t) for t in v.aminmax()) if v.numel() else (0, 0)
    n, cover_lo, cover_hi = 1, -128, 127
    while lo < cover_lo or hi > cover_hi:
        n += 1
        cover_lo, cover_hi = cover_lo * 256 - 128, cover_hi * 256 + 127
    return n


def _digits(v: Tensor, n: int) -> list[Tensor]:
    """v (int64) = sum_i d_i * 256^i with int8 digits d_i in [-128, 127] (exact)."""
    if n <= 3:  # |v| < 2^23: 32-bit arithmetic is exact and cheaper
        v = v.to(torch.int32)
    out = []
    for i in range(n):
        d = v.add(128).bitwise_and_(255).sub_(128)
        out.append(d.to(torch.int8))
        if i + 1 < n:
            v = v.sub(d).bitwise_right_shift_(8)
    return out


def run(layers: list[IntLayer], x: Tensor) -> Tensor:
    for layer in layers:
        x = layer(x)
    return x


_SLAB_BYTES = 96 << 20  # input slab bound of one band of a layer stack


def run_banded(layers: list[IntLayer], parts: list[Tensor], up: int = 1, margin: int | None = None,
               slab_bytes: int | None = None) -> Tensor:
    """``run(layers, cat(parts))`` computed in bands of output rows, to bound memory.

    Each band runs the whole stack on a slab of input rows that reaches ``margin`` rows
    beyond the band on each side (clipped to the image). Rows outside the image are zero,
    as in the unbanded computation; the slab's cut edges inside the image only affect
    output rows within the receptive field of the cut, which the margin keeps out of the
    band. The result is identical to the unbanded one (integer arithmetic; tested).

    Args:
        parts: (1, C_i, h, w) integer tensors, concatenated along channels.
        up: output rows per input row (4 for h_s: two transposed convolutions).
        margin: input rows of context (default: the sum of the kernels' half-widths).
    """
    h, w = parts[0].shape[-2:]
    cin = sum(p.shape[1] for p in parts)
    if margin is None:
        margin = sum(layer.kernel // 2 for layer in layers)
    budget = _SLAB_BYTES if slab_bytes is None else slab_bytes
    # int32 slab + its padded channels-last copy + two digit planes: ~10 bytes an element
    rows_in = max(1, budget // max(1, 10 * cin * w * up * up))
    if rows_in >= h:
        return run(layers, torch.cat(parts, 1) if len(parts) > 1 else parts[0])
    out: Tensor | None = None
    for a0 in range(0, h, rows_in):
        a1 = min(h, a0 + rows_in)
        s0, s1 = max(0, a0 - margin), min(h, a1 + margin)
        slab = torch.cat([p[:, :, s0:s1] for p in parts], 1)
        y = run(layers, slab)[:, :, (a0 - s0) * up : (a1 - s0) * up]
        if out is None:
            out = y.new_empty(1, y.shape[1], h * up, y.shape[3])
        out[:, :, a0 * up : a1 * up] = y
    assert out is not None
    return out


# --------------------------------------------------------------------------- building


def _float_kernel(mod: nn.Module) -> tuple[Tensor, Tensor, bool]:
    """(conv-equivalent weight (cout, cin, k, k), bias, upsample) in float64."""
    w = mod.weight.detach().double()
    b = mod.bias.detach().double()
    if isinstance(mod, nn.ConvTranspose2d):
        assert mod.stride == (2, 2) and mod.padding == (2, 2) and mod.kernel_size == (5, 5)
        return w.flip(-1, -2).transpose(0, 1).contiguous(), b, True
    assert mod.stride == (1, 1) and mod.padding[0] == mod.kernel_size[0] // 2
    return w, b, False


def build_layer(
    mod: nn.Module, in_step: Tensor, in_bound: Tensor, out_step: Tensor, lo: int, hi: int,
    fixed_out: bool = False,
) -> tuple[IntLayer, Tensor]:
    """Quantise one float conv layer; returns it and its actual per-channel output step.

    The output step of channel o is ``w_step[o] * 2^S[o]``. With ``fixed_out`` it is
    exactly ``out_step`` (the weight step is out_step / 2^S, the finest that fits the
    weight range); otherwise the weight step is the finest that fits and S is chosen
    so that the output step is within a factor sqrt(2) of ``out_step``.

    Args:
        in_step: per input channel, the real value of one integer unit of the input.
        in_bound: per input channel, the largest |integer| the input can hold.
        out_step: per output channel, the wanted real value of one unit of the output.
        lo, hi: the output clamp.
    """
    w, b, upsample = _float_kernel(mod)
    cout, cin, k, _ = w.shape
    w_eff = w * in_step.double().view(1, cin, 1, 1)
    wmax = (1 << (WEIGHT_BITS - 1)) - 1
    amax = w_eff.abs().flatten(1).amax(1)
    fine = torch.where(amax > 0, amax / wmax, b.abs().clamp(min=1e-12) / wmax)
    out_step = out_step.double().expand(cout)
    if fixed_out:
        shift = torch.floor(torch.log2(out_step / fine))
    else:
        shift = torch.round(torch.log2(out_step / fine))
    shift = shift.clamp(min=0).to(torch.int64)
    w_step = out_step / torch.pow(2.0, shift.double()) if fixed_out else fine
    actual_out = w_step * torch.pow(2.0, shift.double())
    w_int = torch.round(w_eff / w_step.view(-1, 1, 1, 1))
    if float(w_int.abs().max()) > wmax:
        raise ValueError("integer weights out of range")
    half = torch.where(shift > 0, torch.pow(2.0, (shift - 1).double()), torch.zeros(cout, dtype=torch.float64))
    b_int = torch.round(b / w_step) + half
    bound = (w_int.abs() * in_bound.double().view(1, cin, 1, 1)).flatten(1).sum(1) + b_int.abs()
    if float(bound.max()) >= EXACT_LIMIT:
        raise ValueError("integer layer would not be exact (accumulator bound >= 2^52)")
    layer = IntLayer(weight=w_int.to(torch.int16), bias=b_int.view(-1, 1), shift=shift,
                     lo=lo, hi=hi, kernel=k, upsample=upsample)
    return layer, actual_out


def _convs(seq: nn.Sequential) -> list[nn.Module]:
    return [m for m in seq if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]


class _RangeRecorder:
    """Per-channel max |output| of every conv in a set of modules (forward hooks)."""

    def __init__(self, modules: list[nn.Module]) -> None:
        self.amax: dict[nn.Module, Tensor] = {}
        self._handles = [m.register_forward_hook(self._hook) for m in modules]

    def _hook(self, mod, inputs, output) -> None:
        a = output.detach().abs().double().amax(dim=(0, 2, 3))
        self.amax[mod] = torch.maximum(self.amax[mod], a) if mod in self.amax else a

    def close(self) -> None:
        for h in self._handles:
            h.remove()


# --------------------------------------------------------------------------- the model


def _step_for(amax: Tensor, bound: int) -> Tensor:
    """Per-channel step so that HEADROOM x the calibrated range fits in +-bound."""
    return (amax.double() * HEADROOM).clamp(min=1e-6) / bound


class IntegerEntropy:
    """The integer h_s and ChARM nets, with the scale thresholds and the LRP table.

    Built from a state dict of integer tensors (see :func:`quantize`); every method
    takes and returns integer tensors (activations int32, means and indices int64).
    """

    def __init__(self, state: dict[str, Tensor], num_slices: int, max_support: int) -> None:
        self.max_support = max_support

        def stack(prefix: str) -> list[IntLayer]:
            return [IntLayer.from_state(state, f"{prefix}.{j}") for j in range(3)]

        self.hs_mean, self.hs_scale = stack("hs.mean"), stack("hs.scale")
        self.mean = [stack(f"ctx.mean.{k}") for k in range(num_slices)]
        self.scale = [stack(f"ctx.scale.{k}") for k in range(num_slices)]
        self.lrp = [stack(f"ctx.lrp.{k}") for k in range(num_slices)]
        self._thresholds = state["scale.thresholds"].to(torch.int64)
        self.lut = state["lrp.lut"].to(torch.int64)
        self.z_med = state["z.med"].to(torch.int64)
        self.z_minsym = state["z.minsym"].to(torch.int64)

    def z_hat(self, z_sym: Tensor) -> Tensor:
        """z_hat in units of 2^-8 (int64) from shifted symbols (1, C, h, w) (0 .. length-1)."""
        s = z_sym.to(torch.int64) + self.z_minsym.view(1, -1, 1, 1)
        return s * (1 << FRAC) + self.z_med.view(1, -1, 1, 1)

    def hyper(self, z_sym: Tensor) -> tuple[Tensor, Tensor]:
        """The hyper features (mean and scale branch), int32 (1, M, 4h, 4w)."""
        zf = self.z_hat(z_sym).to(torch.int32)
        # two stride-2 transposed convs and a 3x3: 3 rows of z cover their reach
        return run_banded(self.hs_mean, [zf], 4, 3), run_banded(self.hs_scale, [zf], 4, 3)

    def _support(self, k: int, decoded: list[Tensor]) -> list[Tensor]:
        return decoded[: min(k, self.max_support)]

    def params(self, k: int, hm: Tensor, hs: Tensor, decoded: list[Tensor]) -> tuple[Tensor, Tensor]:
        """(mean in units of 2^-8, scale index), both int64, for slice k."""
        sup = self._support(k, decoded)
        mu = run_banded(self.mean[k], [hm, *sup]).to(torch.int64)
        sc = run_banded(self.scale[k], [hs, *sup]).to(torch.int64)
        # the number of thresholds strictly below the scale (exact integer comparisons)
        idx = torch.searchsorted(self._thresholds, sc.contiguous(), right=False)
        return mu, idx

    def refine(self, k: int, hm: Tensor, decoded: list[Tensor], y_q: Tensor) -> Tensor:
        """The slice after LRP, in units of 2^-8 (int32); y_q = sym*2^8 + mean.

        y_q and the result are clamped to +-Y_LIMIT.
        """
        sup = self._support(k, decoded)
        y_q = y_q.to(torch.int64).clamp(-Y_LIMIT, Y_LIMIT)
        l_int = run_banded(self.lrp[k], [hm, *sup, y_q.to(torch.int32)])  # in [-L, L]
        out = y_q + self.lut[l_int.to(torch.int64) + LRP_LIMIT]
        return out.clamp_(-Y_LIMIT, Y_LIMIT).to(torch.int32)


def scale_thresholds(table: Tensor) -> Tensor:
    """T[j] = floor(table[j] * 2^12), j = 0..62 (int64)."""
    return torch.floor(table[:-1].double() * (1 << SCALE_FRAC)).to(torch.int64)


def lrp_table() -> Tensor:
    i = torch.arange(-LRP_LIMIT, LRP_LIMIT + 1, dtype=torch.float64)
    return torch.round(0.5 * torch.tanh(i / (1 << FRAC)) * (1 << FRAC)).to(torch.int64)


@torch.no_grad()
def quantize(model, calib: list[Tensor], z_med: Tensor, z_minsym: Tensor, z_lengths: Tensor,
             table: Tensor) -> dict[str, Tensor]:
    """Integer h_s / ChARM parameters from a float CRDRModel (post-training quantisation).

    Args:
        model: the float CRDRModel (its h_a, h_s and context are used).
        calib: latents y (1, M, h, w), float32, on which activation ranges are measured.
        z_med, z_minsym, z_lengths: the z coding tables (float medians, ints).
        table: the scale table (64 float values).
    """
    cfg = model.cfg
    ctx = model.context
    branches = [model.h_s.mean, model.h_s.scale]
    nets = [*ctx.mean_nets, *ctx.scale_nets, *ctx.lrp_nets]
    rec = _RangeRecorder([c for seq in branches + nets for c in _convs(seq)])
    med_fx = torch.round(z_med.double() * (1 << FRAC)).to(torch.int64)
    for y in calib:
        z = model.h_a(y.float())
        lo = z_minsym.view(1, -1, 1, 1).float()
        hi = lo + z_lengths.view(1, -1, 1, 1).float() - 1
        medf = (med_fx.double() / (1 << FRAC)).float().view(1, -1, 1, 1)
        z_hat = torch.round(z - medf).clamp(min=lo, max=hi) + medf
        hm, hs = model.h_s(z_hat)
        decoded: list[Tensor] = []
        for k, y_k in enumerate(y.float().chunk(cfg.num_slices, 1)):
            mu, _ = ctx.params(k, hm, hs, decoded)
            decoded.append(ctx.refine(k, hm, decoded, torch.round(y_k - mu) + mu))
    rec.close()

    a_max = (1 << ACT_BITS) - 1
    state: dict[str, Tensor] = {}

    def chain(prefix: str, convs: list[nn.Module], step: Tensor, bound: Tensor,
              last_step: Tensor | None, last_lo: int, last_hi: int) -> Tensor:
        """Quantise a 3-layer stack; returns the output step of its last layer."""
        for j, mod in enumerate(convs):
            cout = mod.out_channels
            fixed = False
            if j < len(convs) - 1:
                out_step, lo, hi = _step_for(rec.amax[mod], a_max), 0, a_max
            elif last_step is None:
                out_step, lo, hi = _step_for(rec.amax[mod], a_max), -a_max, a_max
            else:
                out_step, lo, hi, fixed = last_step.expand(cout), last_lo, last_hi, True
            layer, out_step = build_layer(mod, step, bound, out_step, lo, hi, fixed)
            state.update(layer.state(f"{prefix}.{j}"))
            step, bound = out_step, torch.full((cout,), float(max(abs(lo), abs(hi))), dtype=torch.float64)
        return step

    frac = torch.tensor(1.0 / (1 << FRAC), dtype=torch.float64)
    z_bound = ((z_minsym.abs().double().clamp(min=0) + z_lengths.double()) * (1 << FRAC)
               + med_fx.abs().double())
    z_step = frac.expand(cfg.hyper)
    hm_step = chain("hs.mean", _convs(model.h_s.mean), z_step, z_bound, None, 0, 0)
    hs_step = chain("hs.scale", _convs(model.h_s.scale), z_step, z_bound, None, 0, 0)
    h_bound = torch.full((cfg.latent,), float(a_max), dtype=torch.float64)
    y_bound = float(Y_LIMIT)
    s = cfg.slice_channels
    for k in range(cfg.num_slices):
        n = s * min(k, cfg.max_support)
        sup_step, sup_bound = frac.expand(n), torch.full((n,), y_bound, dtype=torch.float64)
        own_step, own_bound = frac.expand(s), torch.full((s,), y_bound, dtype=torch.float64)
        chain(f"ctx.mean.{k}", _convs(ctx.mean_nets[k]), torch.cat([hm_step, sup_step]),
              torch.cat([h_bound, sup_bound]), frac, -MEAN_LIMIT, MEAN_LIMIT)
        chain(f"ctx.scale.{k}", _convs(ctx.scale_nets[k]), torch.cat([hs_step, sup_step]),
              torch.cat([h_bound, sup_bound]), torch.tensor(1.0 / (1 << SCALE_FRAC), dtype=torch.float64),
              -(1 << ACT_BITS), 1 << ACT_BITS)
        chain(f"ctx.lrp.{k}", _convs(ctx.lrp_nets[k]), torch.cat([hm_step, sup_step, own_step]),
              torch.cat([h_bound, sup_bound, own_bound]), frac, -LRP_LIMIT, LRP_LIMIT)
    state["scale.thresholds"] = scale_thresholds(table)
    state["lrp.lut"] = lrp_table()
    state["z.med"] = med_fx
    state["z.minsym"] = z_minsym.to(torch.int64)
    return state


class ChannelsLast:
    """:class:`IntegerEntropy` behind the runtime's interface (channels-last numpy arrays),
    so :mod:`crdr_codec.runtime.latent` can run the torch reference (tests, benchmarks)."""

    def __init__(self, ie: IntegerEntropy) -> None:
        self.ie = ie
        self.z_minsym = ie.z_minsym.numpy()
        self.z_med = ie.z_med.numpy()

    @staticmethod
    def _t(a) -> Tensor:
        return torch.from_numpy(np.ascontiguousarray(np.asarray(a).transpose(2, 0, 1)))[None]

    @staticmethod
    def _n(t: Tensor):
        return t[0].permute(1, 2, 0).contiguous().numpy()

    def hyper(self, z_sym):
        hm, hs = self.ie.hyper(self._t(z_sym))
        return self._n(hm), self._n(hs)

    def params(self, k, hm, hs, decoded):
        mu, idx = self.ie.params(k, self._t(hm), self._t(hs), [self._t(d) for d in decoded])
        return self._n(mu), self._n(idx)

    def refine(self, k, hm, decoded, y_q):
        return self._n(self.ie.refine(k, self._t(hm), [self._t(d) for d in decoded], self._t(y_q)))
