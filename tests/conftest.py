"""Shared fixtures: a tiny model with a weights file, natural-looking test images.

The suite also runs where torch is not installed (the runtime-only install, see the
Makefile): there the tiny models are the packages exported from them, committed in
tests/data/ (tests/test_engines.py checks they are up to date), and the modules and tests
that need torch skip.
"""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

HAVE_TORCH = importlib.util.find_spec("torch") is not None
DATA = Path(__file__).parent / "data"
#: seeds of the tiny test models and the packages exported from them
TINY_SEEDS = {"tiny": 0, "other": 1}



def natural_image(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A smooth random image with edges (closer to a photo than white noise)."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, size=(max(h // 8, 2), max(w // 8, 2), 3), dtype=np.uint8)
    img = np.asarray(Image.fromarray(small).resize((w, h), Image.BICUBIC), dtype=np.int16)
    img = img + rng.integers(-6, 7, size=img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def make_tiny_model(seed: int = 0):
    """The tiny test model (a CRDRModel; needs torch)."""
    import torch

    from crdr_codec.config import get_config
    from crdr_codec.nn.model import CRDRModel

    torch.manual_seed(seed)
    model = CRDRModel(get_config("tiny"))
    # Make ICA and beta conditioning do something, as in a trained model.
    with torch.no_grad():
        for name, p in model.named_parameters():
            if ".ica." in name or ".proj." in name:
                p.add_(torch.randn_like(p) * 0.3)
    return model.eval()


def _tiny_file(tmp_path_factory, name: str) -> str:
    """The tiny model ``name`` as a torch weights file (with torch) or as its package."""
    folder = tmp_path_factory.mktemp("weights")
    if not HAVE_TORCH:
        return str(shutil.copy(DATA / f"{name}.crdrm", folder / f"{name}.crdrm"))
    from crdr_codec.nn.weights import save_weights

    path = folder / f"{name}.pt"
    save_weights(path, make_tiny_model(seed=TINY_SEEDS[name]), half=False)
    return str(path)


@pytest.fixture(scope="session")
def tiny_weights(tmp_path_factory) -> str:
    return _tiny_file(tmp_path_factory, "tiny")


@pytest.fixture(scope="session")
def other_weights(tmp_path_factory) -> str:
    return _tiny_file(tmp_path_factory, "other")


@pytest.fixture(scope="session")
def tiny_package(tmp_path_factory) -> str:
    """The tiny model's package (what the product path loads; no torch needed)."""
    return str(shutil.copy(DATA / "tiny.crdrm", tmp_path_factory.mktemp("models") / "tiny.crdrm"))


@pytest.fixture(scope="session")
def codec(tiny_weights):
    from crdr_codec.codec import Codec

    return Codec(tiny_weights, device="cpu")


@pytest.fixture
def hermetic_models(monkeypatch, tmp_path):
    """Nothing from the user's environment: no $CRDR_WEIGHTS(_PATH), the shipped models'
    folders are an empty folder (searches are fast and deterministic), caches in tmp_path."""
    from crdr_codec import weights_search

    monkeypatch.delenv("CRDR_WEIGHTS_PATH", raising=False)
    monkeypatch.delenv("CRDR_WEIGHTS", raising=False)
    monkeypatch.setenv("CRDR_CACHE_DIR", str(tmp_path / "cache"))
    empty = tmp_path / "package-weights"
    empty.mkdir()
    monkeypatch.setattr(weights_search, "package_models_dir", lambda: empty)
    monkeypatch.setattr(weights_search, "checkout_weights_dir", lambda: empty)


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture
def png(tmp_path) -> str:
    p = tmp_path / "img.png"
    Image.fromarray(natural_image(40, 56)).save(p)
    return str(p)


@pytest.fixture(autouse=True, scope="session")
def _one_thread():
    """Tiny models run fastest single-threaded (and do not fight other jobs for cores)."""
    if not HAVE_TORCH:
        yield
        return
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)
