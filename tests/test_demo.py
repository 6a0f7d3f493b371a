"""`make demo` works in any clone: its image ships with the repository (issue 25)."""

from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = ROOT / "docs" / "demo" / "kodim23.png"


def _demo_module():
    spec = importlib.util.spec_from_file_location("crdr_demo", ROOT / "scripts" / "demo.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_the_demo_image_ships_with_the_repository():
    assert SHIPPED.is_file()
    assert SHIPPED.stat().st_size < 1_000_000
    with Image.open(SHIPPED) as im:
        assert im.format == "PNG" and im.size == (768, 512) and im.mode == "RGB"
    note = (SHIPPED.parent / "README.md").read_text()
    assert "kodim23.png" in note and "unrestricted usage" in note  # its licence, beside it
    tracked = subprocess.run(["git", "ls-files", "--error-unmatch", str(SHIPPED)], cwd=ROOT,
                             capture_output=True)
    if tracked.returncode == 128 and b"not a git repository" in tracked.stderr:
        pytest.skip("not a git checkout")
    assert tracked.returncode == 0, "docs/demo/kodim23.png is not in the repository"


def test_make_demo_and_the_script_default_to_it():
    makefile = (ROOT / "Makefile").read_text()
    default = re.search(r"^IMAGE\s*\?=\s*(\S+)", makefile, re.M).group(1)
    assert (ROOT / default).resolve() == SHIPPED
    assert "shared" not in default
    assert _demo_module().DEFAULT_IMAGE == SHIPPED
    if shutil.which("make"):  # IMAGE= still overrides it
        for args, image in (([], "docs/demo/kodim23.png"), (["IMAGE=other.png"], "other.png")):
            out = subprocess.run(["make", "-n", "-o", ".venv/.crdr-installed", "demo", *args],
                                 cwd=ROOT, capture_output=True, text=True)
            assert out.returncode == 0, out.stderr
            assert f"scripts/demo.py {image}" in out.stdout, out.stdout


@pytest.mark.weights
@pytest.mark.slow
def test_demo_runs_on_the_shipped_image(tmp_path):
    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "demo.py"), "--out",
                          str(tmp_path)], capture_output=True, text=True, timeout=600,
                         cwd=tmp_path)  # from another folder: nothing outside the clone
    assert out.returncode == 0, out.stderr
    assert "kodim23.png: 768x512" in out.stdout
    rows = [line for line in out.stdout.splitlines() if re.match(r"\s+(0\.5|3) ", line)]
    assert len(rows) == 4, out.stdout
    assert sorted(p.name for p in tmp_path.glob("*.crdr")) == ["kodim23_q0.5.crdr",
                                                              "kodim23_q3.crdr"]
