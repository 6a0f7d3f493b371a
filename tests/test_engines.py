"""The two engines agree: the runtime (ONNX Runtime + numpy, the product path) and the torch
model (training, the reference).

* the numpy integer entropy model gives exactly the integers of the torch one;
* a file written by the torch path decodes in the runtime to the identical latent, and
  the other way round; pixels of the two synthesis engines stay within 2 levels;
* the packages of the tiny test models committed in tests/data are those their seeds make.

The larger sweep (all of Kodak, q 0..4, both betas) is benchmarks/engines.py.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="needs torch (the train extra)")

from conftest import DATA, TINY_SEEDS, make_tiny_model, natural_image  # noqa: E402
from crdr_codec import bitstream  # noqa: E402
from crdr_codec.codec import Codec  # noqa: E402
from crdr_codec.image_io import pad_to_multiple, to_input, to_tensor  # noqa: E402
from crdr_codec.limits import padded  # noqa: E402
from crdr_codec.runtime import latent as coding  # noqa: E402
from crdr_codec.runtime.model import RuntimeModel  # noqa: E402

#: decoded pixels of the two synthesis engines (float32 in both, different kernels)
MAX_PIXEL_LEVELS = 2


def _random_walk(ie_np, ie_torch, num_slices: int, lengths: np.ndarray, h: int, w: int, seed: int):
    """Both executors on the same random symbols; every intermediate must be equal."""
    rng = np.random.default_rng(seed)
    z_sym = (rng.random((h, w, len(lengths))) * lengths).astype(np.int64)
    hm, hs = ie_np.hyper(z_sym)
    hm_t, hs_t = ie_torch.hyper(z_sym)
    assert np.array_equal(hm, hm_t) and np.array_equal(hs, hs_t)
    dec: list = []
    for k in range(num_slices):
        mu, idx = ie_np.params(k, hm, hs, dec)
        mu_t, idx_t = ie_torch.params(k, hm, hs, dec)
        assert np.array_equal(mu, mu_t) and np.array_equal(idx, idx_t), k
        res = np.round(rng.standard_normal(mu.shape) * 3).astype(np.int64)
        out = ie_np.refine(k, hm, dec, res * 256 + mu)
        assert np.array_equal(out, ie_torch.refine(k, hm, dec, res * 256 + mu)), k
        dec.append(out)


def test_numpy_integer_model_equals_the_torch_one(codec):
    rt = codec.model
    ref = codec.torch_model._coder()[0]
    lengths = rt.tables.z_lengths
    for seed, (h, w) in enumerate([(1, 1), (3, 5), (6, 2)]):
        _random_walk(rt.entropy, ref, rt.config.num_slices, lengths, h, w, seed)


@pytest.mark.weights
@pytest.mark.slow
def test_shipped_numpy_integer_model_equals_the_torch_one():
    from crdr_codec.nn.weights import default_weights_path, load_weights

    rt = Codec(device="cpu").model
    m, fp = load_weights(default_weights_path())
    assert fp == rt.fingerprint
    _random_walk(rt.entropy, m._coder()[0], rt.config.num_slices, rt.tables.z_lengths, 4, 6, 7)


def test_banded_numpy_layers_equal_the_whole_computation(codec, monkeypatch):
    """Bands of rows (down to one input row per band) give exactly the unbanded result."""
    from crdr_codec.runtime import entropy

    ie = codec.model.entropy
    rng = np.random.default_rng(3)
    lengths = codec.model.tables.z_lengths
    zf = ie.z_hat((rng.random((7, 5, len(lengths))) * lengths).astype(np.int64))
    hm = entropy.run(ie.hs_mean, zf)
    y = rng.integers(-3000, 3000, (28, 20, codec.model.config.slice_channels)).astype(np.int32)
    whole = entropy.run(ie.mean[1], np.concatenate([hm, y], 2))
    for budget in (1, 4000, 20000):
        assert np.array_equal(entropy.run_banded(ie.hs_mean, [zf], 4, 3, slab_bytes=budget), hm)
        assert np.array_equal(entropy.run_banded(ie.mean[1], [hm, y], slab_bytes=budget), whole)
    monkeypatch.setattr(entropy, "BAND_BYTES", 1)  # one output row per product
    assert np.array_equal(entropy.run(ie.mean[1], np.concatenate([hm, y], 2)), whole)


def _torch_encode(m, rgb: np.ndarray, q: float, model_id: bytes) -> bytes:
    """A file written entirely by the torch path: torch g_a and h_a, torch integer model."""
    from crdr_codec.config import code_to_q, q_to_code

    code = q_to_code(q)
    x = pad_to_multiple(to_tensor(rgb), 64)
    coded = m.compress(x, code_to_q(code))
    h, w = rgb.shape[:2]
    header = bitstream.Header(model_id=model_id, q_code=code, height=h, width=w, check=coded.check)
    return bitstream.pack(header, coded.payload, ())


def _torch_decode(m, data: bytes, beta: float):
    """(latent, pixels) of the torch path: torch integer model, torch g_s."""
    from crdr_codec.image_io import crop, to_uint8

    header, payload, _ = bitstream.unpack(data)
    y_hat, check = m.decode_latent(payload, padded(header.height), padded(header.width))
    assert check == header.check
    x = m.synthesize(y_hat, header.q, beta)
    return y_hat.numpy(), to_uint8(crop(x, header.height, header.width))


def _cross_check(codec: Codec, m, rgb: np.ndarray, qs, betas) -> int:
    """Files of each engine decode in the other to the identical latent; returns the
    largest pixel difference between the engines' decodes."""
    worst = 0
    for q in qs:
        for data in (_torch_encode(m, rgb, q, codec.model_id), codec.encode(rgb, q).data):
            latent = codec.decode_latent(data)  # checks the header's check value
            for beta in betas:
                y_ref, px_ref = _torch_decode(m, data, beta)
                assert np.array_equal(latent.y_hat, y_ref), (q, beta)
                px = codec.synthesize(latent, beta)
                worst = max(worst, int(np.abs(px.astype(int) - px_ref.astype(int)).max()))
    return worst


def test_files_cross_engines_tiny(codec):
    m = codec.torch_model
    assert _cross_check(codec, m, natural_image(70, 150, seed=9), (0.0, 2.5, 4.0), (0.0, 3.84)) \
        <= MAX_PIXEL_LEVELS


@pytest.mark.weights
@pytest.mark.slow
def test_files_cross_engines_shipped_model():
    """The shipped model on a crop of the demo photo, q 0..4, beta 0 and 3.84."""
    from pathlib import Path

    from crdr_codec.image_io import read_image
    from crdr_codec.nn.weights import default_weights_path, load_weights

    codec = Codec(device="cpu")
    m, _ = load_weights(default_weights_path())
    photo = Path(__file__).resolve().parent.parent / "docs" / "demo" / "kodim23.png"
    rgb = np.ascontiguousarray(read_image(photo)[100:292, 200:456])
    worst = _cross_check(codec, m, rgb, (0, 1, 2, 3, 4), (0.0, 3.84))
    assert worst <= MAX_PIXEL_LEVELS, worst


def test_graphs_compute_what_torch_computes(codec):
    """The exported transforms (weights stored as float16 where exact) against torch."""
    m, rt = codec.torch_model, codec.model
    x = to_input(natural_image(64, 128, seed=2))
    qt = torch.tensor([1.7])
    with torch.no_grad():
        y_t = m.g_a(torch.from_numpy(x), qt).numpy()
        x_t = m.g_s(torch.from_numpy(y_t), qt, torch.tensor([2.0])).numpy()
        z_t = m.h_a(torch.from_numpy(y_t)).numpy()
    np.testing.assert_allclose(rt.g_a(x, 1.7), y_t, atol=1e-4, rtol=1e-4)
    np.testing.assert_allclose(rt.h_a(y_t), z_t, atol=1e-4, rtol=1e-4)
    np.testing.assert_allclose(rt.g_s(y_t, 1.7, 2.0), x_t, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("name", sorted(TINY_SEEDS))
def test_committed_tiny_packages_are_up_to_date(name):
    """tests/data/<name>.crdrm (used where torch is missing) is what its seed makes."""
    from crdr_codec.nn.export import runtime_model
    from crdr_codec.nn.weights import model_to_record, record_fingerprint

    model = make_tiny_model(seed=TINY_SEEDS[name])
    fp = record_fingerprint(model_to_record(model, half=False))
    shipped = RuntimeModel(DATA / f"{name}.crdrm")
    assert shipped.fingerprint == fp, f"run: python scripts/make_test_models.py"
    fresh = runtime_model(model, fp)
    for key, value in shipped._entropy_state().items():
        assert np.array_equal(value, fresh._entropy_state()[key]), key
    y = fresh.g_a(to_input(natural_image(64, 64)), 2.0)
    assert np.array_equal(shipped.g_a(to_input(natural_image(64, 64)), 2.0), y)


@pytest.mark.weights
def test_shipped_package_is_the_shipped_weights():
    """weights/crdr-lite.crdrm was exported from weights/crdr-lite.pt."""
    from crdr_codec.nn.weights import default_weights_path
    from crdr_codec.weights_id import read_fingerprint

    assert Codec(device="cpu").fingerprint == read_fingerprint(default_weights_path())
