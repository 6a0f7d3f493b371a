"""The README's Python API example runs as written, as a user pastes it."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from conftest import natural_image

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"


def _example() -> str:
    text = README.read_text()
    block = text[text.index("## Python API"):]
    return re.search(r"```python\n(.*?)```", block, re.S).group(1)


@pytest.mark.weights
@pytest.mark.slow
def test_readme_api_example_runs_as_written():
    """The README's code block, as a user pastes it, in the repository's folder: nothing is
    added to it (it defines its own image, the shipped demo image)."""
    code = _example()
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=300, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    q, bpp, unit = out.stdout.split()
    assert float(q) == 2.5 and float(bpp) > 0 and unit == "bpp"


def test_readme_api_example_defines_its_image():
    names = re.findall(r"^(\w+) = ", _example(), re.M)
    assert "IMAGE" in names
    image = re.search(r'^IMAGE = "([^"]+)"', _example(), re.M).group(1)
    assert (ROOT / image).is_file()


def test_package_exports_without_importing_torch():
    code = ("import sys, crdr_codec; assert 'torch' not in sys.modules; "
            "from crdr_codec import read_info; assert 'torch' not in sys.modules; "
            "from crdr_codec import Codec; print(Codec.__name__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "Codec", out.stderr


def test_python_m_crdr_codec_is_the_cli():
    out = subprocess.run([sys.executable, "-m", "crdr_codec", "--version"], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.startswith("crdr ")


def test_pil_in_pil_out_keeps_grayscale(codec):
    gray = Image.fromarray(natural_image(40, 48)[:, :, 0])
    im = codec.decode_image(codec.encode(gray, q=1.0).data)
    assert im.mode == "L" and im.size == (48, 40)
