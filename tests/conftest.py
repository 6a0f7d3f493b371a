"""Shared fixtures: a tiny model with a weights file, natural-looking test images."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from crdr_codec.config import get_config
from crdr_codec.model import CRDRModel
from crdr_codec.weights import load_weights, save_weights



def natural_image(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A smooth random image with edges (closer to a photo than white noise)."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, size=(max(h // 8, 2), max(w // 8, 2), 3), dtype=np.uint8)
    img = np.asarray(Image.fromarray(small).resize((w, h), Image.BICUBIC), dtype=np.int16)
    img = img + rng.integers(-6, 7, size=img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def make_tiny_model(seed: int = 0) -> CRDRModel:
    torch.manual_seed(seed)
    model = CRDRModel(get_config("tiny"))
    # Make ICA and beta conditioning do something, as in a trained model.
    with torch.no_grad():
        for name, p in model.named_parameters():
            if ".ica." in name or ".proj." in name:
                p.add_(torch.randn_like(p) * 0.3)
    return model.eval()


@pytest.fixture(scope="session")
def tiny_weights(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("weights") / "tiny.pt"
    save_weights(path, make_tiny_model(), half=False)
    return str(path)


@pytest.fixture(scope="session")
def other_weights(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("weights") / "other.pt"
    save_weights(path, make_tiny_model(seed=1), half=False)
    return str(path)


@pytest.fixture(scope="session")
def codec(tiny_weights):
    from crdr_codec.codec import Codec

    return Codec(tiny_weights, device="cpu")


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
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)
