"""Codec behaviour: round trips, determinism, tiling, rate control, model identity."""

import numpy as np
import pytest

from conftest import make_tiny_model, natural_image
from crdr_codec import bitstream
from crdr_codec.codec import Codec
from crdr_codec.config import get_config
from crdr_codec.errors import BitstreamError, ModelMismatchError, ParameterError
from crdr_codec.metrics.basic import psnr


def _torch():
    return pytest.importorskip("torch", reason="needs torch (the train extra)")


@pytest.mark.parametrize("q", [0.0, 1.37, 2.0, 4.0])
@pytest.mark.parametrize("beta", [0.0, 3.84])
def test_round_trip_shapes_and_header(codec, q, beta):
    rgb = natural_image(70, 90)
    res = codec.encode(rgb, q)
    header, _, sections = bitstream.unpack(res.data)
    assert header.version == 2 and [s.name for s in sections] == ["payload-length"]
    assert (header.height, header.width) == (70, 90)
    assert header.q == res.q and abs(res.q - q) < 1e-4
    out = codec.decode(res.data, beta)
    assert out.shape == rgb.shape and out.dtype == np.uint8


def test_decoder_sees_what_encoder_quantised(codec):
    """Entropy decoding reproduces the encoder's quantised latent exactly."""
    from crdr_codec.image_io import pad_to_multiple, to_input
    from crdr_codec.runtime import latent as coding

    m = codec.model
    y = m.g_a(pad_to_multiple(to_input(natural_image(64, 128))), 1.5)
    coded = coding.compress_latent(m.entropy, m.tables, m.config.num_slices, y, m.h_a(y))
    y_hat, check = coding.decode_latent(m.entropy, m.tables, m.config.num_slices, coded.payload, 64, 128)
    assert np.array_equal(y_hat, coded.y_hat) and check == coded.check


@pytest.mark.parametrize("h,w", [(1, 1), (17, 33), (65, 7), (1000, 3)])
def test_odd_sizes(codec, h, w):
    rgb = natural_image(h, w, seed=h)
    out = codec.decode(codec.encode(rgb, 2.0).data)
    assert out.shape == (h, w, 3)


def test_beta_changes_pixels_not_file(codec):
    rgb = natural_image(64, 64)
    data = codec.encode(rgb, 2.0).data
    a, b = codec.decode(data, 0.0), codec.decode(data, 5.12)
    assert not np.array_equal(a, b)
    assert codec.encode(rgb, 2.0).data == data  # encoding is deterministic and beta-free


def test_thread_count_does_not_change_decoding(tiny_weights):
    rgb = natural_image(128, 192)
    one = Codec(tiny_weights, device="cpu", threads=1)
    three = Codec(tiny_weights, device="cpu", threads=3)
    data1 = one.encode(rgb, 2.6).data
    assert three.encode(rgb, 2.6).data == data1
    lat1, lat3 = one.decode_latent(data1), three.decode_latent(data1)
    assert np.array_equal(lat1.y_hat, lat3.y_hat)
    assert np.abs(one.decode(data1, 2.0).astype(int) - three.decode(data1, 2.0).astype(int)).max() <= 1


def test_wrong_model_is_refused(codec, other_weights):
    data = codec.encode(natural_image(32, 32), 1.0).data
    other = Codec(other_weights, device="cpu")
    with pytest.raises(ModelMismatchError, match="model"):
        other.decode(data)


def test_corrupt_payload_is_refused(codec):
    data = bytearray(codec.encode(natural_image(32, 32), 1.0).data)
    data[-1] ^= 1
    with pytest.raises(BitstreamError):
        codec.decode(bytes(data))


def test_parameters_out_of_range(codec):
    rgb = natural_image(8, 8)
    for q in (-0.1, 4.01, float("nan")):
        with pytest.raises(ParameterError):
            codec.encode(rgb, q)
    data = codec.encode(rgb, 1.0).data
    with pytest.raises(ParameterError):
        codec.decode(data, 5.2)


def test_tiled_decode_matches_untiled(tiny_weights):
    rgb = natural_image(300, 420, seed=3)
    whole = Codec(tiny_weights, device="cpu")
    tiled = Codec(tiny_weights, device="cpu", tile=128)
    data = whole.encode(rgb, 2.0).data
    a = whole.decode(data, 1.0).astype(np.float64)
    b = tiled.decode(data, 1.0).astype(np.float64)
    assert np.abs(a - b).mean() < 0.5
    assert psnr(a, b) > 40
    # tiled encoding gives a valid file of about the same size
    data_t = tiled.encode(rgb, 2.0).data
    assert abs(len(data_t) - len(data)) < 0.1 * len(data) + 64
    assert whole.decode(data_t).shape == rgb.shape


def test_higher_q_gives_larger_file_on_natural_image():
    """With ICA scales that grow with q (as training makes them), rate rises with q."""
    torch = _torch()
    from crdr_codec.nn.model import CRDRModel

    torch.manual_seed(0)
    model = CRDRModel(get_config("tiny")).eval()
    with torch.no_grad():  # level l scales y by softplus(w_l): larger at higher levels
        for ica in model.g_a.ica[-1:]:
            for lvl in range(ica.weight.shape[0]):
                ica.weight[lvl].fill_(float(np.log(np.expm1(0.5 * 2.0**lvl))))
    codec = Codec(model=model, fingerprint=b"\x01" * 32, device="cpu")
    rgb = natural_image(128, 192, seed=5)
    sizes = [len(codec.encode(rgb, q).data) for q in (0, 1, 2, 3, 4)]
    assert sizes == sorted(sizes) and sizes[-1] > 2 * sizes[0]


def test_paper_config_round_trips_small_image():
    torch = _torch()
    from crdr_codec.nn.model import CRDRModel

    torch.manual_seed(0)
    model = CRDRModel(get_config("paper")).eval()
    codec = Codec(model=model, fingerprint=b"\x02" * 32, device="cpu")
    rgb = natural_image(64, 64)
    res = codec.encode(rgb, 3.3)
    assert codec.decode(res.data, 2.56).shape == (64, 64, 3)


def test_fp16_weights_file_round_trip(tmp_path):
    _torch()
    from crdr_codec.nn.weights import load_weights, save_weights

    model = make_tiny_model()
    fp = save_weights(tmp_path / "w.pt", model, half=True)
    loaded, fp2 = load_weights(tmp_path / "w.pt")
    assert fp == fp2
    c = Codec(tmp_path / "w.pt", device="cpu")
    rgb = natural_image(48, 48)
    assert c.decode(c.encode(rgb, 2).data).shape == rgb.shape


def _reference_tiled(fn, x, tile, overlap, scale, out_channels):
    """The whole-image tiling crdr used before streaming (kept here as the reference):
    every tile blended into one full-size accumulator, divided once at the end."""
    from crdr_codec.tiling import _ramp, _starts

    _, _, h, w = x.shape
    oh, ow = round(h * scale), round(w * scale)
    out = np.zeros((1, out_channels, oh, ow), np.float32)
    norm = np.zeros((1, 1, oh, ow), np.float32)
    ramp = round(overlap * scale)
    for y0 in _starts(h, tile, overlap):
        for x0 in _starts(w, tile, overlap):
            th, tw = min(tile, h - y0), min(tile, w - x0)
            part = np.asarray(fn(x[:, :, y0 : y0 + th, x0 : x0 + tw]), np.float32)
            py, px = round(y0 * scale), round(x0 * scale)
            ph, pw = part.shape[-2:]
            wy = _ramp(ph, ramp, y0 > 0, y0 + th < h)
            wx = _ramp(pw, ramp, x0 > 0, x0 + tw < w)
            wgt = (wy[:, None] * wx[None, :])[None, None]
            out[:, :, py : py + ph, px : px + pw] += part * wgt
            norm[:, :, py : py + ph, px : px + pw] += wgt
    return out / norm


def test_streamed_tiles_equal_the_whole_tensor_computation():
    """Encode reads tiles from the uint8 image and decode writes finished bands of rows
    straight to uint8; both give exactly what the whole-tensor tiling gives."""
    from crdr_codec.codec import _PaddedTiles
    from crdr_codec.image_io import pad_to_multiple, to_input
    from crdr_codec.tiling import tiled, tiled_rows

    torch = _torch()
    rgb = natural_image(150, 230, seed=4)
    src = _PaddedTiles(rgb, 64)
    x = pad_to_multiple(to_input(rgb), 64)
    assert src.shape == tuple(x.shape)
    for rows, cols in [(slice(10, 100), slice(64, 192)), (slice(128, 192), slice(192, 256)),
                       (slice(0, 192), slice(0, 256))]:  # inside, the padded corner, all
        assert np.array_equal(src[:, :, rows, cols], x[:, :, rows, cols])

    g = torch.Generator().manual_seed(0)
    up = torch.nn.ConvTranspose2d(5, 3, 4, stride=4)  # scale 4, any fully convolutional map
    y = torch.randn(1, 5, 23, 37, generator=g).numpy()

    def numpy_fn(net):
        return lambda a: net(torch.from_numpy(np.ascontiguousarray(a))).numpy()

    conv = numpy_fn(up)
    with torch.no_grad():
        for tile, overlap in [(8, 4), (10, 2), (23, 6), (64, 8)]:
            whole = _reference_tiled(conv, y, tile, overlap, 4, 3)
            assert np.array_equal(tiled(conv, y, tile, overlap, 4, 3), whole)
            got = np.full_like(whole, np.nan)
            seen = []

            def emit(r0, r1, rows):
                seen.append((r0, r1))
                got[:, :, r0:r1] = rows

            tiled_rows(conv, y, tile, overlap, 4, 3, emit)
            assert np.array_equal(got, whole)
            assert seen[0][0] == 0 and seen[-1][1] == whole.shape[2]
        down = numpy_fn(torch.nn.Conv2d(3, 5, 4, stride=4))  # scale 1/4, like g_a's 1/16
        img = torch.randn(1, 3, 96, 136, generator=g).numpy()
        for tile, overlap in [(32, 16), (40, 8)]:
            assert np.array_equal(tiled(down, img, tile, overlap, 1 / 4, 5),
                               _reference_tiled(down, img, tile, overlap, 1 / 4, 5))
            assert all(a[1] == b[0] for a, b in zip(seen, seen[1:]))


def test_tiled_decode_is_the_same_image_as_before_streaming(tiny_weights):
    """The uint8 bands of a tiled decode equal the old whole-image tiled decode."""
    from crdr_codec.image_io import crop, to_uint8

    rgb = natural_image(200, 330, seed=8)
    codec = Codec(tiny_weights, device="cpu", tile=128)
    data = codec.encode(rgb, 2.0).data
    lat = codec.decode_latent(data)
    m, h = codec.model, lat.header
    old = np.clip(_reference_tiled(lambda p: m.g_s(p, h.q, 2.0), lat.y_hat, 8, 4, 16, 3), -1, 1)
    assert np.array_equal(codec.decode(data, 2.0), to_uint8(crop(old, h.height, h.width)))


def test_cuda_transforms_decode_like_the_cpu(tiny_package):
    """--device cuda: the transforms on ONNX Runtime's CUDA provider (TF32 off), the entropy
    model on the CPU: the same latent, pixels within 2 levels, files that decode on the CPU."""
    import onnxruntime

    if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
        pytest.skip("ONNX Runtime's CUDA provider is not installed (the gpu extra) or no GPU")
    cpu, gpu = Codec(tiny_package, device="cpu"), Codec(tiny_package, device="cuda")
    assert gpu.device == "cuda"
    rgb = natural_image(96, 160, seed=4)
    for data in (cpu.encode(rgb, 2.0).data, gpu.encode(rgb, 2.0).data):
        a, b = cpu.decode_latent(data), gpu.decode_latent(data)
        assert np.array_equal(a.y_hat, b.y_hat)
        diff = np.abs(cpu.synthesize(a, 3.84).astype(int) - gpu.synthesize(b, 3.84).astype(int))
        assert diff.max() <= 2
