"""Encode-time latent refinement (`crdr encode --refine N`): a refined file is a plain
.crdr file that decodes like any other, windows cover the latent exactly once, and on the
shipped weights refinement lowers the real file's rate-distortion cost."""

from __future__ import annotations

import pytest

pytest.importorskip("torch", reason="needs torch (the train extra)")

import numpy as np
import pytest
import torch
from PIL import Image

from crdr_codec.nn import refine
from crdr_codec.config import PAD_MULTIPLE, check_refine
from crdr_codec.errors import ParameterError
from crdr_codec.image_io import pad_to_multiple, to_tensor

from conftest import natural_image

GOLDEN_SOURCE = "tests/golden/kodim13_q2_b0.png"  # a decoded photo, natural content


@pytest.mark.parametrize("n", [1, 5, 31, 32, 33, 48, 100])
@pytest.mark.parametrize("tile,halo", [(32, 4), (2, 1), (7, 3)])
def test_windows_cover_the_latent_once(n, tile, halo):
    spans = refine._spans(n, tile, halo)
    assert spans[0][2] == 0 and spans[-1][3] == n
    for (w0, w1, i0, i1), nxt in zip(spans, spans[1:] + [None]):
        assert 0 < i1 - i0 <= tile
        assert max(0, i0 - halo) == w0 and min(n, i1 + halo) == w1
        if nxt is not None:
            assert nxt[2] == i1  # interiors abut: every position is refined exactly once


def test_objective_is_the_shipped_models_training_objective():
    """The search's weights are those of the stage-3 preset that made the shipped weights
    (lite-cpu3, inheriting lite-more's rate weights): a retuned preset must update them."""
    from crdr_codec.train.config import load_config

    st = load_config("lite-cpu3").stages[3]
    assert tuple(st.rate_lambda_a) == refine.RATE_LAMBDA
    assert st.lambda_d == refine.LAMBDA_D


def test_given_z_codes_like_the_computed_one(codec):
    """compress_latent(y, h_a(y)) writes the file compress_latent(y) writes, and zero
    steps return the latent unchanged with that z."""
    m = codec.torch_model
    x = pad_to_multiple(to_tensor(natural_image(70, 90)), PAD_MULTIPLE)
    y = m.analyze(x, 1.5)
    y0, z = refine.refine_latent(m, x, y, 1.5, 0, 70, 90)
    assert torch.equal(y0, y)
    assert m.compress_latent(y, z).payload == m.compress_latent(y).payload


def test_refined_file_decodes_like_any_other(codec, monkeypatch):
    """Many small windows (odd size, padding at two edges): the file is new, decodes to its
    size, and its symbols match the header's check (decode verifies it)."""
    monkeypatch.setattr(refine, "TILE", 2)
    monkeypatch.setattr(refine, "HALO", 1)
    rgb = natural_image(70, 90, seed=3)
    plain = codec.encode(rgb, 2.0)
    refined = codec.encode(rgb, 2.0, refine=3)
    assert refined.q == plain.q
    assert refined.data != plain.data
    out = codec.decode(refined.data, beta=3.84)
    assert out.shape == (70, 90, 3) and out.dtype == np.uint8


def test_refinement_works_inside_inference_mode(codec):
    """A caller's inference_mode (as in an evaluation harness) must not break the search."""
    rgb = natural_image(64, 64, seed=5)
    plain = codec.encode(rgb, 1.0).data
    with torch.inference_mode():
        refined = codec.encode(rgb, 1.0, refine=2).data
    assert refined != plain
    assert codec.decode(refined).shape == (64, 64, 3)


def test_eval_folder_remembers_the_refinement(tmp_path):
    """`crdr eval --refine` results are not mixed with plain ones on resume."""
    from crdr_codec.errors import ResumeError
    from crdr_codec.eval.resume import check_run_meta

    check_run_meta(tmp_path, "ab" * 8, 256, refine=20)
    check_run_meta(tmp_path, "ab" * 8, 256, refine=20)
    with pytest.raises(ResumeError, match="--refine 20"):
        check_run_meta(tmp_path, "ab" * 8, 256)
    plain = tmp_path / "plain"
    plain.mkdir()
    check_run_meta(plain, "ab" * 8, 256)  # a plain run writes no refine entry
    with pytest.raises(ResumeError, match="--refine 0"):
        check_run_meta(plain, "ab" * 8, 256, refine=5)


@pytest.mark.parametrize("bad", [-1, 1001, 1.5, True, "3"])
def test_step_count_is_checked(bad):
    with pytest.raises((ParameterError, TypeError, ValueError)):
        check_refine(bad)


def test_bf16_search_only_on_cpus_with_bf16_instructions(monkeypatch):
    """bf16 autocast only where the CPU has the instructions (emulated bf16 is slow);
    never on CUDA, where the search was not measured."""
    assert not refine.bf16_search(torch.device("cuda"))
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False, raising=False)
    assert not refine.bf16_search(torch.device("cpu"))
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: True, raising=False)
    assert refine.bf16_search(torch.device("cpu"))


@pytest.mark.weights
@pytest.mark.slow
@pytest.mark.parametrize("bf16", [False, True])
@pytest.mark.parametrize("q", [0.5, 3.0])
def test_refinement_lowers_the_real_files_cost(q, bf16, monkeypatch):
    """The objective refinement searches, measured on real files: rate weight x bits per
    pixel + 150 x MSE of the beta-0 decode (a 192x256 crop of a photo, shipped weights),
    with the synthesis in float32 and under bf16 autocast (forced either way)."""
    from crdr_codec.codec import Codec

    monkeypatch.setattr(refine, "bf16_search", lambda device: bf16)
    codec = Codec(device="cpu")
    with Image.open(GOLDEN_SOURCE) as im:
        rgb = np.asarray(im.convert("RGB"))[:192, :256].copy()

    def cost(data: bytes) -> float:
        rec = codec.decode(data).astype(np.float64) / 255
        mse = float(np.mean((rec - rgb / 255) ** 2))
        return refine.file_cost(q, len(data) * 8 / rgb[..., 0].size, mse)

    before = cost(codec.encode(rgb, q).data)
    after = cost(codec.encode(rgb, q, refine=10).data)
    assert after < 0.99 * before, (before, after)
