"""Growing the transforms wider from trained weights (crdr_codec.nn.grow)."""

from __future__ import annotations

import pytest

pytest.importorskip("torch", reason="needs torch (the train extra)")

import pytest
import torch

from conftest import make_tiny_model, natural_image
from crdr_codec import bitstream
from crdr_codec.config import get_config
from crdr_codec.nn.grow import grow_into, grow_weights, grown_config
from crdr_codec.nn.model import CRDRModel

WIDE = dict(enc_width=24, enc_mid=12, dec_width=32, dec_mid=16)


def _grown(seed=0):
    old = make_tiny_model(seed)
    torch.manual_seed(seed + 100)
    new = CRDRModel(grown_config(old.cfg, "tiny-wide", **WIDE)).eval()
    grow_into(old, new)
    return old, new


def test_grown_transforms_compute_what_the_trained_ones_do():
    old, new = _grown()
    assert sum(p.numel() for p in new.parameters()) > 1.5 * sum(p.numel() for p in old.parameters())
    x = torch.rand(2, 3, 64, 96)
    with torch.no_grad():
        for q in (0.0, 1.7, 4.0):
            qq = torch.full((2,), q)
            y_old, y_new = old.g_a(x, qq), new.g_a(x, qq)
            assert (y_old - y_new).abs().max() < 1e-5
            for beta in (0.0, 3.84):
                bb = torch.full((2,), beta)
                d = old.g_s(y_old, qq, bb) - new.g_s(y_old, qq, bb)
                assert d.abs().max() < 1e-5, (q, beta)


def test_new_channels_are_live_and_get_gradients():
    """The new channels are computed (non-zero), and the zero weights that read them get
    gradients at once, so training can use them."""
    _, new = _grown()
    new.train()
    y = torch.randn(1, new.cfg.latent, 4, 4)
    out = new.g_s(y, torch.full((1,), 2.0), torch.full((1,), 1.0))
    out.square().mean().backward()
    last = new.g_s.blocks[-1]  # deconv(dec_width -> 3): (in, out, k, k)
    old_width = get_config("tiny").dec_width
    assert torch.all(last.weight[old_width:] == 0)
    assert last.weight.grad[old_width:].abs().sum() > 0
    unit = new.g_s.blocks[2].units[0]
    assert torch.all(unit.conv3.weight[:, get_config("tiny").dec_mid:] == 0)
    assert unit.conv3.weight.grad[:, get_config("tiny").dec_mid:].abs().sum() > 0


def test_grown_weights_file_decodes_like_the_original(tiny_weights, tmp_path):
    from crdr_codec.codec import Codec

    dst = tmp_path / "wide.pt"
    fp = grow_weights(tiny_weights, dst, grown_config(get_config("tiny"), "tiny-wide", **WIDE))
    a, b = Codec(tiny_weights, device="cpu"), Codec(str(dst), device="cpu")
    assert b.model_id == fp[:4] != a.model_id
    assert b.model.config.dec_width == 32
    for k, v in a.torch_model.entropy_state.items():  # the integer entropy model carries over
        assert torch.equal(v, b.torch_model.entropy_state[k]), k
    img = natural_image(64, 80)
    for q in (0.5, 3.0):
        pa, pb = a.encode(img, q).data, b.encode(img, q).data
        ha, payload_a, _ = bitstream.unpack(pa)
        hb, payload_b, _ = bitstream.unpack(pb)
        assert payload_a == payload_b  # same latent symbols, same integer entropy model
        assert (ha.model_id, hb.model_id) == (a.model_id, b.model_id)
        for beta in (0.0, 3.84):
            da = a.decode(pa, beta).astype(int)
            db = b.decode(pb, beta).astype(int)
            assert abs(da - db).max() <= 1, (q, beta)


@pytest.mark.parametrize("change", [dict(dec_width=8), dict(latent=32), dict(hyper=16)])
def test_growth_refuses_to_shrink_or_to_change_the_entropy_model(change):
    cfg = get_config("tiny")
    with pytest.raises(ValueError):
        grown_config(cfg, "x", **change)


def test_grown_file_trains_under_the_wide_preset(tiny_weights, tmp_path):
    """scripts/grow_model.py writes a file that `crdr train` starts from with the wide
    model preset; the trained export is a wide model."""
    import subprocess
    import sys
    from pathlib import Path

    from PIL import Image

    from crdr_codec.codec import Codec
    from crdr_codec.train.config import load_config
    from crdr_codec.train.loop import Trainer

    root = Path(__file__).resolve().parents[1]
    dst = tmp_path / "wide.pt"
    r = subprocess.run([sys.executable, str(root / "scripts/grow_model.py"), tiny_weights,
                        str(dst), "--config", "tiny-wide"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    bad = subprocess.run([sys.executable, str(root / "scripts/grow_model.py"), tiny_weights,
                          str(tmp_path / "x.pt"), "--config", "lite"], capture_output=True, text=True)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and not (tmp_path / "x.pt").exists()
    data = tmp_path / "data"
    data.mkdir()
    Image.fromarray(natural_image(80, 96)).save(data / "a.png")
    cfg = load_config("tiny", [f'train.data=["{data}"]', "train.model=tiny-wide",
                               "train.val_every=0", "stage3.steps=2"])
    tr = Trainer(cfg, 3, tmp_path / "run", quiet=True, init=dst)
    tr.run()
    out = tmp_path / "trained.pt"
    tr.export(out)
    assert Codec(str(out), device="cpu").model.config.dec_width == 24
