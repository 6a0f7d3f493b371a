"""The exact integer entropy model: arithmetic against a pure-integer reference,
independence from threads and oneDNN, and the integer coding tables."""

from __future__ import annotations

import pytest

pytest.importorskip("torch", reason="needs torch (the train extra)")

import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from torch import nn

from conftest import natural_image
from crdr_codec.nn.entropy import tables
from crdr_codec.runtime import coder
from crdr_codec.nn.entropy.integer import (
    EXACT_LIMIT, FRAC, LRP_LIMIT, WEIGHT_BITS, IntLayer, build_layer, lrp_table,
)
from crdr_codec.image_io import pad_to_multiple, to_tensor


def reference_layer(layer: IntLayer, x: np.ndarray) -> np.ndarray:
    """The documented arithmetic with Python integers (object arrays): no floats at all."""
    k = layer.kernel
    w = layer.weight.to(torch.int64).numpy().astype(object).reshape(layer.weight.shape[0], -1, k, k)
    x = x.astype(object)
    c, h, wd = x.shape
    if layer.upsample:  # zero insertion: x at even positions of a (2h, 2w) grid
        up = np.zeros((c, 2 * h, 2 * wd), dtype=object)
        up[:, ::2, ::2] = x
        x, h, wd = up, 2 * h, 2 * wd
    p = k // 2
    xp = np.zeros((c, h + 2 * p, wd + 2 * p), dtype=object)
    xp[:, p : p + h, p : p + wd] = x
    out = np.empty((w.shape[0], h, wd), dtype=object)
    bias = [int(v) for v in layer.bias.view(-1).to(torch.int64)]
    shift = [int(v) for v in layer.shift]
    for o in range(w.shape[0]):
        acc = np.full((h, wd), bias[o], dtype=object)
        for a in range(k):
            for b in range(k):
                acc = acc + np.tensordot(w[o, :, a, b], xp[:, a : a + h, b : b + wd], axes=(0, 0))
        out[o] = np.vectorize(lambda v: min(max(v >> shift[o], layer.lo), layer.hi))(acc)
    return out


def _random_layer(conv: nn.Module, cin: int, seed: int, lo: int, hi: int):
    torch.manual_seed(seed)
    with torch.no_grad():
        conv.weight.normal_(0, 0.2)
        conv.bias.normal_(0, 0.5)
    in_step = torch.full((cin,), 1 / 256, dtype=torch.float64)
    bound = torch.full((cin,), 4096.0, dtype=torch.float64)
    return build_layer(conv, in_step, bound, torch.tensor(0.01), lo, hi)


@pytest.mark.parametrize("kind", ["conv5", "conv3", "deconv"])
def test_integer_layer_matches_pure_integer_reference(kind):
    cin, cout = 6, 5
    conv = {
        "conv5": nn.Conv2d(cin, cout, 5, padding=2),
        "conv3": nn.Conv2d(cin, cout, 3, padding=1),
        "deconv": nn.ConvTranspose2d(cin, cout, 5, 2, 2, 1),
    }[kind]
    layer, out_step = _random_layer(conv, cin, seed=3, lo=-(1 << 16) + 1, hi=(1 << 16) - 1)
    rng = np.random.default_rng(0)
    x = rng.integers(-4096, 4097, size=(cin, 7, 9))
    got = layer(torch.from_numpy(x).double()[None])[0].to(torch.int64).numpy()
    want = reference_layer(layer, x).astype(np.int64)
    assert got.shape == want.shape
    np.testing.assert_array_equal(got, want)
    # and the layer is the float layer it was quantised from, up to rounding
    with torch.no_grad():
        ref = conv(torch.from_numpy(x).float()[None] / 256)[0].double() / out_step.view(-1, 1, 1)
    err = (torch.from_numpy(got).double() - ref).abs()
    assert float(err.max()) < 0.02 * float(ref.abs().max()) + 2


def test_layer_refuses_weights_whose_sums_could_be_inexact():
    conv = nn.Conv2d(4, 2, 3, padding=1)
    in_step = torch.ones(4, dtype=torch.float64)
    bound = torch.full((4,), 2.0**40, dtype=torch.float64)  # |x| up to 2^40: sums overflow 2^52
    with pytest.raises(ValueError, match="exact"):
        build_layer(conv, in_step, bound, torch.tensor(1.0), -1, 1)


def test_lrp_table_is_half_tanh_in_fixed_point():
    t = lrp_table()
    assert len(t) == 2 * LRP_LIMIT + 1 and int(t[LRP_LIMIT]) == 0
    assert int(t[-1]) == (1 << FRAC) // 2 and int(t[0]) == -((1 << FRAC) // 2)
    assert bool((t[1:] >= t[:-1]).all())


# ------------------------------------------------------------------ whole entropy model

_SCRIPT = textwrap.dedent("""
    import hashlib, sys, torch
    torch.backends.mkldnn.enabled = {onednn}
    torch.set_num_threads({threads})
    from crdr_codec.nn.weights import load_weights
    m, _ = load_weights(sys.argv[1])
    ie = m._coder()[0].ie
    g = torch.Generator().manual_seed(5)
    lengths = m.entropy_state["z.lengths"]
    z = (torch.rand(1, len(lengths), 3, 5, generator=g) * lengths.view(1, -1, 1, 1)).long()
    hm, hs = ie.hyper(z)
    h = hashlib.sha256()
    dec = []
    for k in range(m.cfg.num_slices):
        mu, idx = ie.params(k, hm, hs, dec)
        res = (torch.randn(mu.shape, generator=g) * 3).round().long()
        dec.append(ie.refine(k, hm, dec, res * 256 + mu))
        for t in (mu, idx, dec[-1]):
            h.update(t.to(torch.int64).numpy().tobytes())
    print(h.hexdigest())
""")


def _digest(weights: str, threads: int, onednn: bool) -> str:
    code = _SCRIPT.format(threads=threads, onednn=onednn)
    env_threads = {"OMP_NUM_THREADS": str(threads)}
    import os

    out = subprocess.run([sys.executable, "-c", code, weights], capture_output=True, text=True,
                         env={**os.environ, **env_threads}, timeout=300)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


@pytest.mark.slow
def test_entropy_parameters_identical_across_threads_and_onednn(tiny_weights):
    """Means, scale indices and refined latents are bit-identical in every float setting."""
    digests = {
        (t, o): _digest(tiny_weights, t, o) for t, o in [(1, True), (2, True), (3, True), (1, False), (3, False)]
    }
    assert len(set(digests.values())) == 1, digests


def test_coded_symbols_survive_perturbed_float_settings(codec):
    """Encode with one float setting, entropy-decode with others: the latent is exact."""
    x = pad_to_multiple(to_tensor(natural_image(128, 192, seed=4)))
    m = codec.torch_model
    coded = m.compress(x, 2.3)
    old_threads, old_onednn = torch.get_num_threads(), torch.backends.mkldnn.enabled
    try:
        for threads, onednn in [(1, False), (2, True), (3, False)]:
            torch.set_num_threads(threads)
            torch.backends.mkldnn.enabled = onednn
            y_hat, check = m.decode_latent(coded.payload, 128, 192)
            assert torch.equal(y_hat, coded.y_hat) and check == coded.check
    finally:
        torch.set_num_threads(old_threads)
        torch.backends.mkldnn.enabled = old_onednn


# ------------------------------------------------------------------ integer tables


def test_integer_frequencies_are_valid():
    for sigma in (0.11, 0.5, 3.0, 40.0, 256.0):
        r = tables.y_limit(sigma)
        f = tables.gaussian_frequencies(sigma, r)
        assert len(f) == 2 * r + 1 and f.min() >= 1 and int(f.sum()) == coder.TOTAL
        assert int(np.argmax(f)) == r  # the mode is the zero residual
    f = tables.integer_frequencies(np.array([0.0, 1e-12, 0.3, 0.7]))
    assert f.min() >= 1 and int(f.sum()) == coder.TOTAL


def test_constriction_codes_with_our_exact_frequencies():
    """constriction's quantisation of (freq - 1) reproduces our integer table exactly:
    coding n copies of a symbol costs n * log2(2^24 / freq) bits (up to the flush)."""
    import constriction

    freq = np.array([1, 2, 3, 7, coder.TOTAL - 13], dtype=np.int64)
    model = coder._model(freq)
    for s, n in [(0, 3000), (1, 3000), (3, 3000)]:
        enc = constriction.stream.queue.RangeEncoder()
        enc.encode(np.full(n, s, dtype=np.int32), model)
        ideal = n * np.log2(coder.TOTAL / freq[s])
        assert abs(enc.num_bits() - ideal) <= 64, (s, enc.num_bits(), ideal)


def test_weight_bits_fit_storage():
    assert WEIGHT_BITS <= 16 and EXACT_LIMIT <= 2**53


# ------------------------------------------------------------ int8 digit arithmetic


def test_base256_digits_reconstruct_every_value():
    from crdr_codec.nn.entropy.integer import _digit_count, _digits

    v = torch.tensor([0, 1, -1, 127, -128, 128, -129, 32639, -32896, 32640, -32897,
                      32767, -32767, 65535, -65535, (1 << 17) - 1, -(1 << 17) + 1,
                      (1 << 40) + 12345, -(1 << 40) - 777], dtype=torch.int64)
    for lo, hi in [(0, 5), (5, 7), (7, 11), (11, 17), (17, 19)]:
        part = v[lo:hi] if hi <= len(v) else v[lo:]
        n = _digit_count(part)
        d = _digits(part, n)
        assert all(t.dtype == torch.int8 for t in d)
        back = sum(t.to(torch.int64) * (256 ** i) for i, t in enumerate(d))
        assert torch.equal(back, part)
    assert _digit_count(torch.tensor([127, -128])) == 1
    assert _digit_count(torch.tensor([32639, -32896])) == 2
    assert _digit_count(torch.tensor([32640])) == 3


@pytest.mark.parametrize("k,upsample", [(5, False), (3, False), (5, True)])
def test_extreme_weights_and_inputs_match_the_reference(k, upsample):
    """Weights at both ends of the int16 range in one channel (the w - 128 offset path),
    inputs that need one, two and three digits, and a band split of the rows."""
    from crdr_codec.nn.entropy import integer

    cin, cout = 7, 4
    g = torch.Generator().manual_seed(11)
    w = torch.randint(-32767, 32768, (cout, cin, k, k), generator=g)
    w[0, 0, 0, 0], w[0, 1, 0, 0], w[1, 2, 1, 1], w[2, 3, 0, 1] = 32767, -32767, 32767, -32767
    layer = IntLayer(weight=w.to(torch.int16), bias=torch.randint(-1000, 1000, (cout, 1)).double(),
                     shift=torch.tensor([0, 3, 17, 30]), lo=-(1 << 30), hi=1 << 30,
                     kernel=k, upsample=upsample)
    assert layer._offset == 128
    for bound in (100, 30000, (1 << 17) - 1):
        x = torch.randint(-bound, bound + 1, (cin, 6, 9), generator=g)
        x[0, 0, 0], x[1, 2, 3] = bound, -bound
        want = reference_layer(layer, x.numpy()).astype(np.int64)
        got = layer(x.double()[None])[0].to(torch.int64).numpy()
        np.testing.assert_array_equal(got, want)
        old = integer._BAND_BYTES
        try:
            integer._BAND_BYTES = 1  # one output row per band
            banded = layer(x.double()[None])[0].to(torch.int64).numpy()
        finally:
            integer._BAND_BYTES = old
        np.testing.assert_array_equal(banded, want)


def test_banded_stacks_equal_the_whole_computation(tiny_weights):
    """h_s (with its transposed convolutions) and a slice net computed in bands of a few
    rows, down to one input row per band, give exactly the unbanded result."""
    from crdr_codec.nn.entropy import integer
    from crdr_codec.nn.weights import load_weights

    m, _ = load_weights(tiny_weights)
    ie = m._coder()[0].ie
    g = torch.Generator().manual_seed(3)
    lengths = m.entropy_state["z.lengths"]
    z = (torch.rand(1, len(lengths), 7, 5, generator=g) * lengths.view(1, -1, 1, 1)).long()
    zf = ie.z_hat(z).to(torch.int32)
    hm = integer.run(ie.hs_mean, zf)
    y = torch.randint(-3000, 3000, (1, m.cfg.slice_channels, 28, 20), generator=g, dtype=torch.int32)
    whole = integer.run(ie.mean[1], torch.cat([hm, y], 1))
    for budget in (1, 4000, 20000):
        assert torch.equal(integer.run_banded(ie.hs_mean, [zf], 4, 3, slab_bytes=budget), hm)
        assert torch.equal(integer.run_banded(ie.mean[1], [hm, y], slab_bytes=budget), whole)


def test_float64_fallback_gives_the_same_integers(monkeypatch):
    """Where torch has no fast int8 product (oneDNN off or absent) the layer sums in
    float64 instead; both paths give the pure-integer reference exactly."""
    from crdr_codec.nn.entropy import integer

    conv = nn.Conv2d(9, 6, 5, padding=2)
    layer, _ = _random_layer(conv, 9, seed=7, lo=-(1 << 16) + 1, hi=(1 << 16) - 1)
    x = np.random.default_rng(2).integers(-4096, 4097, size=(9, 11, 13))
    want = reference_layer(layer, x).astype(np.int64)
    for fast in (True, False):
        monkeypatch.setattr(integer, "_int8_products_fast", lambda fast=fast: fast)
        got = layer(torch.from_numpy(x)[None])[0].to(torch.int64).numpy()
        np.testing.assert_array_equal(got, want)
    assert layer._wf64 is not None  # the float64 path did run
