"""Command-line behaviour users rely on (issue 17): the overwrite policy, the --bpp
target that cannot be met, one-line notes, the per-file progress lines, --version,
shell completion, and the single definitions of image extensions and errors.
"""

from __future__ import annotations

import ast
import os
import pty
import re
import select
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from crdr_codec import __version__
from crdr_codec.cli import EXIT_BPP_NOT_REACHED, main

from conftest import HAVE_TORCH, natural_image

PACKAGE = Path(__file__).resolve().parent.parent / "crdr_codec"


# ----------------------------------------------------------------------- helpers
def crdr(runner, *args, input=None):
    return runner.invoke(main, [str(a) for a in args], input=input)


def save_png(path, h: int = 24, w: int = 40, seed: int = 0) -> Path:
    Image.fromarray(natural_image(h, w, seed)).save(path)
    return Path(path)


def stderr_lines(res) -> list[str]:
    return res.stderr.strip().splitlines()


def assert_refused(res, *words: str) -> None:
    """Exit 1 with one 'crdr: error:' line naming each of ``words``, no traceback."""
    assert res.exit_code == 1, (res.exit_code, res.stderr, res.exception)
    assert res.exception is None or isinstance(res.exception, SystemExit), res.exception
    lines = stderr_lines(res)
    assert len(lines) == 1 and lines[0].startswith("crdr: error:"), res.stderr
    for w in words:
        assert str(w) in lines[0], (w, lines[0])


def no_temp_files(folder: Path) -> None:
    left = [p.name for p in folder.iterdir() if p.name.startswith(".")]
    assert left == [], left


def entry_point() -> list[str]:
    """The installed `crdr` script, or `python -m crdr_codec` where it is not installed."""
    script = Path(sys.executable).with_name("crdr")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "crdr_codec"]


@pytest.fixture(autouse=True)
def _hermetic_env(monkeypatch, tmp_path):
    monkeypatch.delenv("CRDR_WEIGHTS_PATH", raising=False)
    monkeypatch.delenv("CRDR_WEIGHTS", raising=False)
    monkeypatch.setenv("CRDR_CACHE_DIR", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def encoded(tiny_weights, tmp_path_factory) -> Path:
    """A .crdr file of a 24x40 image (treat as read-only)."""
    from click.testing import CliRunner

    d = tmp_path_factory.mktemp("enc")
    src = save_png(d / "img.png")
    dst = d / "img.crdr"
    res = crdr(CliRunner(), "encode", src, dst, "--weights", tiny_weights, "--quiet")
    assert res.exit_code == 0, res.stderr
    return dst


# -------------------------------------------------------------- overwrite policy
@pytest.mark.parametrize("force", ["--force", "-f"])
def test_encode_replaces_an_existing_file_only_with_force(runner, tiny_weights, tmp_path, force):
    src = save_png(tmp_path / "a.png")
    out = tmp_path / "a.crdr"
    out.write_bytes(b"precious")
    res = crdr(runner, "encode", src, out, "--weights", tiny_weights)
    assert_refused(res, str(out), "--force")
    assert out.read_bytes() == b"precious"
    no_temp_files(tmp_path)

    res = crdr(runner, "encode", src, out, "--weights", tiny_weights, force)
    assert res.exit_code == 0, res.stderr
    assert out.read_bytes()[:4] != b"prec" and out.stat().st_size > 8
    no_temp_files(tmp_path)


def test_decode_replaces_an_existing_file_only_with_force(runner, tiny_weights, encoded, tmp_path):
    out = tmp_path / "out.png"
    save_png(out, 8, 8)
    before = out.read_bytes()
    res = crdr(runner, "decode", encoded, out, "--weights", tiny_weights)
    assert_refused(res, str(out), "--force")
    assert out.read_bytes() == before
    no_temp_files(tmp_path)

    res = crdr(runner, "decode", encoded, out, "--weights", tiny_weights, "--force")
    assert res.exit_code == 0, res.stderr
    with Image.open(out) as im:
        assert im.size == (40, 24)


def test_a_refused_output_costs_no_model_load(runner, tmp_path, monkeypatch):
    import crdr_codec.codec

    def no_load(*a, **k):
        raise AssertionError("the model was loaded")

    monkeypatch.setattr(crdr_codec.codec, "Codec", no_load)
    src = save_png(tmp_path / "a.png")
    (tmp_path / "a.crdr").write_bytes(b"x")
    res = crdr(runner, "encode", src, tmp_path / "a.crdr")
    assert_refused(res, "a.crdr", "already exists")


@pytest.mark.parametrize("command", ["encode", "decode"])
def test_batch_reports_each_refused_file_and_does_the_others(runner, tiny_weights, encoded,
                                                             tmp_path, command):
    ins = tmp_path / "in"
    ins.mkdir()
    out = tmp_path / "out"
    out.mkdir()
    if command == "encode":
        names = [save_png(ins / f"{n}.png", seed=i) for i, n in enumerate("abc")]
        ext = ".crdr"
    else:
        names = []
        for n in "abc":
            (ins / f"{n}.crdr").write_bytes(encoded.read_bytes())
            names.append(ins / f"{n}.crdr")
        ext = ".png"
    (out / f"b{ext}").write_bytes(b"keep b")
    (out / f"c{ext}").write_bytes(b"keep c")
    res = crdr(runner, command, *names, "-o", out, "--weights", tiny_weights)
    assert res.exit_code == 1, res.stderr
    errors = [line for line in stderr_lines(res) if line.startswith("crdr: error:")]
    assert len(errors) == 2, res.stderr
    assert str(out / f"b{ext}") in errors[0] and str(out / f"c{ext}") in errors[1]
    assert all("--force" in e for e in errors)
    assert "crdr: 2 of 3 files failed" in res.stderr
    assert (out / f"b{ext}").read_bytes() == b"keep b"
    assert (out / f"c{ext}").read_bytes() == b"keep c"
    assert (out / f"a{ext}").stat().st_size > 10
    no_temp_files(out)


def test_decode_never_writes_over_its_input(runner, tiny_weights, encoded, tmp_path):
    a = tmp_path / "a.crdr"
    a.write_bytes(encoded.read_bytes())
    before = a.read_bytes()
    # `crdr decode a.crdr a.crdr` is refused, with --force and with --format too
    for extra in ([], ["--force"], ["--format", "png", "--force"]):
        res = crdr(runner, "decode", a, a, "--weights", tiny_weights, *extra)
        assert res.exit_code == 1, (extra, res.stderr)
        assert len(stderr_lines(res)) == 1 and "a.crdr" in res.stderr
        assert "is the input file" in res.stderr and "--force" in res.stderr
        assert a.read_bytes() == before


@pytest.mark.parametrize("command, link", [
    ("encode", "symlink"), ("encode", "hardlink"),
    ("decode", "symlink"), ("decode", "hardlink"),
    ("decode", "spelling"),  # encode refuses a non-.crdr output name before this check
])
def test_the_input_by_another_name_is_never_replaced(runner, tiny_weights, encoded, tmp_path,
                                                     link, command):
    d = tmp_path / "d"
    (d / "sub").mkdir(parents=True)
    if command == "encode":
        inp = save_png(d / "img.png")
        other = "alias.crdr"
    else:
        inp = d / "img.crdr"
        inp.write_bytes(encoded.read_bytes())
        other = "alias.png"
    before = inp.read_bytes()
    if link == "symlink":
        out = d / other
        out.symlink_to(inp.name)
    elif link == "hardlink":
        out = d / other
        os.link(inp, out)
    else:  # the same file, spelled differently
        out = d / "sub" / ".." / inp.name
    extra = ["--format", "png"] if link == "spelling" else []
    res = crdr(runner, command, inp, out, "--weights", tiny_weights, "--force", *extra)
    assert_refused(res, "input")
    assert inp.read_bytes() == before
    no_temp_files(d)


def test_no_clobber_write_is_atomic(tmp_path):
    """An output appearing while crdr works is not replaced either (hard-link commit)."""
    from crdr_codec.errors import OutputExistsError
    from crdr_codec.fileutil import atomic_write_bytes, atomic_writer

    p = tmp_path / "x.crdr"
    atomic_write_bytes(p, b"one", replace=False)
    assert p.read_bytes() == b"one"
    with pytest.raises(OutputExistsError, match="x.crdr"):
        atomic_write_bytes(p, b"two", replace=False)
    assert p.read_bytes() == b"one"

    q = tmp_path / "y.png"
    with pytest.raises(OutputExistsError):
        with atomic_writer(q, replace=False) as tmp:
            Path(tmp).write_bytes(b"new")
            q.write_bytes(b"someone else's")  # appears meanwhile
    assert q.read_bytes() == b"someone else's"
    assert sorted(f.name for f in tmp_path.iterdir()) == ["x.crdr", "y.png"]

    atomic_write_bytes(p, b"three")  # the default still replaces
    assert p.read_bytes() == b"three"


# --------------------------------------------------------------------- --bpp
def test_bpp_target_that_cannot_be_met(runner, tiny_weights, tmp_path):
    src = save_png(tmp_path / "img.png", 32, 48)
    out = tmp_path / "img.crdr"
    res = crdr(runner, "encode", src, out, "--bpp", "0.0001", "--weights", tiny_weights)
    assert res.exit_code == EXIT_BPP_NOT_REACHED == 3, res.stderr
    warn = [line for line in stderr_lines(res) if line.startswith("crdr: warning:")]
    assert len(warn) == 1, res.stderr
    reached = out.stat().st_size * 8 / (32 * 48)
    assert str(src) in warn[0] and "0.0001" in warn[0] and f"{reached:.4f} bpp" in warn[0]
    assert "q=0" in warn[0]

    # --quiet hides the result line, not the warning that explains the exit code
    out.unlink()
    res = crdr(runner, "encode", src, out, "--bpp", "0.0001", "--weights", tiny_weights,
               "--quiet")
    assert res.exit_code == 3 and len(stderr_lines(res)) == 1
    assert stderr_lines(res)[0].startswith("crdr: warning:")


def test_bpp_search_shows_each_step_on_a_terminal(runner, tiny_weights, tmp_path, monkeypatch):
    from crdr_codec.cli import encode as encode_command

    src = save_png(tmp_path / "img.png", 32, 48)
    monkeypatch.setattr(encode_command, "_stderr_is_terminal", lambda: True)
    res = crdr(runner, "encode", src, tmp_path / "a.crdr", "--bpp", "0.5",
               "--weights", tiny_weights)
    assert res.exit_code in (0, 3), res.stderr
    steps = [line for line in stderr_lines(res) if "try " in line]
    assert 2 <= len(steps) <= 11, res.stderr
    assert all(str(src) in s and re.search(r"q=\d\.\d{3} gives \d+\.\d{4} bpp", s) for s in steps)

    res = crdr(runner, "encode", src, tmp_path / "b.crdr", "--bpp", "0.5",
               "--weights", tiny_weights, "--quiet")
    assert not [line for line in stderr_lines(res) if "try " in line]

    monkeypatch.setattr(encode_command, "_stderr_is_terminal", lambda: False)  # a log file
    res = crdr(runner, "encode", src, tmp_path / "c.crdr", "--bpp", "0.5",
               "--weights", tiny_weights)
    assert not [line for line in stderr_lines(res) if "try " in line]


# --------------------------------------------------------------------- notes
def sixteen_bit_png(path: Path) -> Path:
    arr = (natural_image(16, 24).astype(np.uint16) * 257)
    Image.fromarray(np.ascontiguousarray(arr[..., 0])).save(path)
    return path


def animated_gif(path: Path) -> Path:
    frames = [Image.fromarray(natural_image(16, 24, seed=s)).convert("P") for s in range(3)]
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100, loop=0)
    return path


@pytest.mark.parametrize("kind, words", [("16bit", ["16-bit", "8 bits"]),
                                         ("animated", ["3 frames", "first"])])
def test_input_notes_are_one_line_and_quiet_hides_them(runner, tiny_weights, tmp_path, kind,
                                                       words):
    src = (sixteen_bit_png(tmp_path / "deep.png") if kind == "16bit"
           else animated_gif(tmp_path / "anim.gif"))
    res = crdr(runner, "encode", src, tmp_path / "x.crdr", "--weights", tiny_weights)
    assert res.exit_code == 0, res.stderr
    notes = [line for line in stderr_lines(res) if line.startswith("crdr: note:")]
    assert len(notes) == 1, res.stderr
    assert notes[0].startswith(f"crdr: note: {src}: ")
    assert all(w in notes[0] for w in words), notes[0]
    assert len(stderr_lines(res)) == 2  # the note and the result line, nothing else
    assert "warn" not in res.stderr.lower()

    res = crdr(runner, "encode", src, tmp_path / "y.crdr", "--weights", tiny_weights, "--quiet")
    assert res.exit_code == 0 and res.stderr == ""


def test_python_api_still_gets_warnings(tmp_path):
    from crdr_codec.image_io import FramesWarning, PrecisionWarning, read_image

    with pytest.warns(PrecisionWarning):
        read_image(sixteen_bit_png(tmp_path / "deep.png"))
    with pytest.warns(FramesWarning, match="3 frames"):
        read_image(animated_gif(tmp_path / "anim.gif"))


def test_batch_lines_carry_a_counter(runner, tiny_weights, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    srcs = [save_png(tmp_path / f"{n}.png", seed=i) for i, n in enumerate("ab")]
    res = crdr(runner, "encode", *srcs, "-o", out, "--weights", tiny_weights)
    assert res.exit_code == 0, res.stderr
    lines = stderr_lines(res)
    assert [line[:6] for line in lines] == ["[1/2] ", "[2/2] "], lines
    assert str(srcs[0]) in lines[0] and str(srcs[1]) in lines[1]


def _run_on_a_terminal(args: list[str], timeout: float = 120) -> tuple[int, str]:
    """Run a command with stderr on a pseudo-terminal; return (exit code, what it showed)."""
    master, slave = pty.openpty()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "80"}
    proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=slave, env=env)
    os.close(slave)
    chunks, deadline = [], time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.5)
            if ready:
                try:
                    data = os.read(master, 65536)
                except OSError:  # the child closed the terminal
                    break
                if not data:
                    break
                chunks.append(data)
            elif proc.poll() is not None:
                break
        rc = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()
    return rc, b"".join(chunks).decode("utf-8", "replace")


def test_terminal_output_is_lines_that_never_overwrite_each_other(tiny_weights, tmp_path):
    """A real process with stderr on a terminal: batch lines, --bpp steps and notes are
    whole lines; no progress bar redraws over them (no carriage returns)."""
    out = tmp_path / "out"
    out.mkdir()
    srcs = [save_png(tmp_path / "a.png", 32, 48), sixteen_bit_png(tmp_path / "deep.png")]
    rc, shown = _run_on_a_terminal(entry_point() + [
        "encode", *map(str, srcs), "-o", str(out), "--bpp", "0.5", "--weights", tiny_weights])
    assert rc in (0, 3), shown
    assert "\r" not in shown.replace("\r\n", "\n"), repr(shown)
    assert "\x1b" not in shown, repr(shown)
    lines = shown.strip().splitlines()
    assert lines and all(line.startswith(("crdr: ", "[1/2] ", "[2/2] ")) for line in lines), lines
    assert any(line.startswith("[1/2] ") for line in lines)
    assert any(line.startswith("[2/2] ") for line in lines)
    assert sum("try 1:" in line for line in lines) == 2  # each file's search shows its steps
    notes = [line for line in lines if line.startswith("crdr: note:")]
    assert len(notes) == 1 and "deep.png" in notes[0] and "16-bit" in notes[0]
    assert "Traceback" not in shown and "warnings.warn" not in shown


# ------------------------------------------------------------------- --version
def test_version_names_the_model_and_the_libraries(runner, tiny_weights, monkeypatch):
    from importlib.metadata import version

    from crdr_codec.codec import Codec

    monkeypatch.setenv("CRDR_WEIGHTS", tiny_weights)
    res = crdr(runner, "--version")
    assert res.exit_code == 0, res.stderr
    lines = res.stdout.strip().splitlines()
    assert lines[0] == f"crdr {__version__}"
    model_id = Codec(tiny_weights).model_id.hex()
    assert lines[1].startswith(f"default model {model_id} (") and tiny_weights in lines[1]
    assert f"onnxruntime {version('onnxruntime')}" in lines[2]
    assert f"constriction {version('constriction')}" in lines[2]
    assert (f"torch {version('torch')}" if HAVE_TORCH else "torch not installed") in lines[2]

    monkeypatch.setenv("CRDR_WEIGHTS", "/no/such/weights.pt")
    res = crdr(runner, "--version")
    assert res.exit_code == 0 and "default model: none" in res.stdout


def test_version_reads_the_model_id_without_torch(tiny_weights, tmp_path):
    code = ("import sys, time\n"
            "t = time.perf_counter()\n"
            "from crdr_codec.cli import version_text\n"
            "print(version_text())\n"
            "print('SECONDS', time.perf_counter() - t)\n"
            "print('TORCH', 'torch' in sys.modules)\n")
    env = {**os.environ, "CRDR_WEIGHTS": tiny_weights, "CRDR_CACHE_DIR": str(tmp_path / "c")}
    for _ in range(2):  # the first run fills the id cache, the second reads it
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              env=env, timeout=60)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.strip().splitlines()[-1] == "TORCH False", proc.stdout
        assert "default model " in proc.stdout
    assert (tmp_path / "c" / "weights-ids.json").is_file()


def test_fingerprint_without_torch_equals_the_torch_one(tiny_weights, tmp_path):
    torch = pytest.importorskip("torch")

    from crdr_codec.nn.weights import fingerprint, record_fingerprint
    from crdr_codec.weights_id import UnsupportedWeights, read_fingerprint

    rec = torch.load(tiny_weights, map_location="cpu", weights_only=True)
    assert read_fingerprint(tiny_weights) == record_fingerprint(rec)

    # views, non-contiguous and empty tensors, several dtypes
    odd = {"format": "crdr-weights", "version": 2, "config": {"x": [1, 2]},
           "state_dict": {"t": torch.arange(12, dtype=torch.float32).reshape(3, 4).t(),
                          "s": torch.arange(10, dtype=torch.int16)[2:7],
                          "e": torch.zeros(0, 3), "b": torch.tensor([True, False]),
                          "h": torch.randn(4, 5).half()[:, 1::2]},
           "z_tables": {"m": torch.arange(6, dtype=torch.int64).reshape(2, 3)[:, 1]},
           "entropy": {"w": torch.arange(8, dtype=torch.int32)}, "meta": {"stage": 3}}
    p = tmp_path / "odd.pt"
    torch.save(odd, p)
    assert read_fingerprint(p) == fingerprint(odd["config"], odd["state_dict"],
                                              odd["z_tables"], odd["entropy"])

    torch.save({"format": "crdr-weights", "config": {}, "state_dict": {"p": torch.nn.Parameter(
        torch.ones(2))}}, tmp_path / "param.pt")
    with pytest.raises(UnsupportedWeights):  # a class outside the list: torch is used instead
        read_fingerprint(tmp_path / "param.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a zip")
    with pytest.raises(UnsupportedWeights):
        read_fingerprint(tmp_path / "junk.pt")


@pytest.mark.weights
def test_shipped_weights_id_without_torch():
    torch = pytest.importorskip("torch")

    from crdr_codec.nn.weights import default_weights_path, record_fingerprint
    from crdr_codec.weights_id import read_fingerprint

    path = default_weights_path()
    if not path.is_file():
        pytest.skip(f"no shipped weights at {path}")
    rec = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    assert read_fingerprint(path) == record_fingerprint(rec)


# -------------------------------------------------------------- shell completion
def _complete(env_extra: dict) -> subprocess.CompletedProcess:
    env = {**os.environ, **env_extra}
    return subprocess.run(entry_point(), capture_output=True, text=True, env=env, timeout=60)


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completion_script_is_produced(shell):
    proc = _complete({"_CRDR_COMPLETE": f"{shell}_source"})
    assert proc.returncode == 0, proc.stderr
    assert "_CRDR_COMPLETE" in proc.stdout and "crdr" in proc.stdout


def test_completion_offers_commands_and_formats():
    proc = _complete({"_CRDR_COMPLETE": "bash_complete", "COMP_WORDS": "crdr enc",
                      "COMP_CWORD": "1"})
    assert proc.returncode == 0, proc.stderr
    assert "encode" in proc.stdout.split(",") or "plain,encode" in proc.stdout, proc.stdout
    proc = _complete({"_CRDR_COMPLETE": "bash_complete",
                      "COMP_WORDS": "crdr decode x.crdr --format j", "COMP_CWORD": "4"})
    assert "jpeg" in proc.stdout, proc.stdout
    proc = _complete({"_CRDR_COMPLETE": "bash_complete", "COMP_WORDS": "crdr encode ph",
                      "COMP_CWORD": "2"})
    assert proc.stdout.startswith("file,"), proc.stdout  # input names complete as files


# ------------------------------------------------------------------ structure
# Modules another change is still moving to crdr_codec.formats (remove when done).
_EXTENSION_LISTS_PENDING: set[str] = set()


def test_one_list_of_image_extensions():
    from crdr_codec import formats, image_io

    assert image_io._EXTENSIONS is formats.EXTENSION_FORMATS
    assert image_io.IMAGE_EXTENSIONS == formats.IMAGE_EXTENSIONS
    assert set(formats.FORMAT_NAMES) == set(image_io._PIL_FORMATS) == set(image_io._SAVE_OPTIONS)
    assert formats.is_image_file_name("A.TIFF") and not formats.is_image_file_name("a.crdr")
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE).as_posix()
        if rel == "formats.py" or rel in _EXTENSION_LISTS_PENDING:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.Set, ast.Tuple, ast.List, ast.Dict)):
                items = node.keys if isinstance(node, ast.Dict) else node.elts
                exts = {i.value.lower() for i in items
                        if isinstance(i, ast.Constant) and isinstance(i.value, str)
                        and i.value.lower() in (".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff")}
                if len(exts) >= 2:
                    offenders.append(f"{rel}:{node.lineno}")
    assert offenders == [], f"image extensions listed outside crdr_codec/formats.py: {offenders}"


def test_errors_live_in_errors_py_and_old_names_still_work():
    from crdr_codec import errors, eval as ev, fileutil

    assert fileutil.OutputError is errors.OutputError
    assert ev.ResumeError is errors.ResumeError
    assert issubclass(errors.OutputError, (errors.CrdrError, OSError))
    assert issubclass(errors.OutputExistsError, (errors.OutputError, FileExistsError))
    assert issubclass(errors.ResumeError, (errors.CrdrError, ValueError))
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.name == "errors.py":
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        classes = [n.name for n in ast.walk(tree) if isinstance(n, ast.ClassDef)
                   and n.name in ("OutputError", "OutputExistsError", "ResumeError")]
        assert classes == [], f"{path.relative_to(PACKAGE)} defines {classes}; see errors.py"


def test_only_input_notices_become_notes(capsys):
    """A warning from elsewhere (a library) is not relabelled as a note about the file."""
    import warnings

    from crdr_codec.cli.common import run_batch
    from crdr_codec.errors import PrecisionWarning

    def work(src, dst):
        warnings.warn(f"{src}: 16-bit image reduced to 8 bits", PrecisionWarning)
        warnings.warn("some library changed its defaults", FutureWarning)
        return "done"

    with pytest.warns(FutureWarning, match="some library changed its defaults"):
        assert run_batch([("a.png", "a.crdr")], work, quiet=False) == 0
    err = capsys.readouterr().err
    assert "crdr: note: a.png: 16-bit image reduced to 8 bits" in err
    assert "some library" not in err  # passed on as a warning, not turned into a note
