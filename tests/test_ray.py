"""``crdr encode/decode --ray`` and the Ray Data entry points, on a real local cluster.

One cluster for the module (``ray.cluster_utils.Cluster``): a head node with no CPUs (the
driver, this process) and a worker node with 2 CPUs (crdr's actors take 0.5 each, so the
dataset's read tasks always find a CPU); the node-loss test adds a second node and removes
it mid-run. Every output is compared byte for byte with what the
single-process batch writes. The faults are real: a SIGKILL of a process running crdr's
actor, ``cluster.remove_node`` of a node running crdr's actors, a KeyboardInterrupt of the
driver; they are triggered when the run's first output appears (waited for, not slept).
"""

from __future__ import annotations

import csv
import os
import signal
import threading
import time
from pathlib import Path

import pytest
from PIL import Image

from conftest import natural_image
from crdr_codec.cli import main

pytestmark = pytest.mark.slow

ray = pytest.importorskip("ray", reason="ray is not installed (pip install 'crdr[ray]')")
pytest.importorskip("ray.data", reason="ray[data] is not installed (pip install 'crdr[ray]')")

from ray.cluster_utils import Cluster  # noqa: E402

from crdr_codec.raybatch import MANIFEST, decode_dataset, encode_dataset  # noqa: E402

TIMEOUT = 120  # seconds: generous, for a loaded 2-core machine
ACTOR = "CrdrWorker"  # in the process title of crdr's actors (ray::MapWorker(...CrdrWorker))


@pytest.fixture(scope="module")
def cluster():
    # Ray installs its own SIGTERM/SIGINT handlers in this process; later test modules
    # (training's SIGTERM checkpoint) need the ones from before
    saved = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    c.add_node(num_cpus=2)
    c.wait_for_nodes()
    ray.init(address=c.address, logging_level="ERROR", log_to_driver=False)
    yield c
    ray.shutdown()
    c.shutdown()
    for s, handler in saved.items():
        signal.signal(s, handler)


def _run(*args):
    from click.testing import CliRunner

    return CliRunner().invoke(main, [str(a) for a in args])


def _images(folder: Path, n: int, h: int, w: int) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        p = folder / f"img{i:02d}.png"
        Image.fromarray(natural_image(h, w, seed=i)).save(p)
        paths.append(str(p))
    return paths


def _same_files(a: Path, b: Path, names) -> None:
    for name in names:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name


def _manifest(folder: Path) -> dict[str, dict]:
    with open(folder / MANIFEST, newline="") as f:
        return {Path(r["input"]).name: r for r in csv.DictReader(f)}


def _no_temporaries(folder: Path) -> None:
    assert not [p.name for p in folder.iterdir() if p.name.startswith(".")], "temporary files"


def _crdr_actor_pids() -> list[int]:
    """Processes running crdr's actor (Ray titles them ray::MapWorker(...CrdrWorker)...)."""
    pids = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            cmd = Path(f"/proc/{d}/cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if cmd.startswith("ray::") and ACTOR in cmd:
            pids.append(int(d))
    return pids


def _parent(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("PPid:"):
            return int(line.split()[1])
    return 0


def _when_first_output(folder: Path, suffix: str, action, stop: threading.Event) -> dict:
    """Run ``action()`` in a thread once the first output is in ``folder`` (the run is then
    surely under way); the returned dict gets the number of outputs there at that moment."""
    seen: dict = {}

    def watch():
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline and not stop.is_set():
            done = [p for p in folder.glob(f"*{suffix}")]
            if done:
                seen["outputs"] = len(done)
                seen["result"] = action()
                return
            stop.wait(0.02)

    t = threading.Thread(target=watch, daemon=True)
    t.start()
    seen["thread"] = t
    return seen


@pytest.fixture(scope="module")
def small(tmp_path_factory, tiny_package):
    """Small images, and what the single-process batch writes for them."""
    root = tmp_path_factory.mktemp("small")
    images = _images(root / "in", 6, 96, 128)
    assert _run("encode", *images, "-o", root / "ref", "--weights", tiny_package,
                "--quiet").exit_code == 0
    crdrs = sorted(str(p) for p in (root / "ref").glob("*.crdr"))
    assert _run("decode", *crdrs, "-o", root / "ref-dec", "--weights", tiny_package,
                "--quiet").exit_code == 0
    return root, images, crdrs


@pytest.fixture(scope="module")
def large(tmp_path_factory, tiny_package):
    """Images that take a while (seconds in all), for the fault tests; with their outputs
    from the single-process batch."""
    root = tmp_path_factory.mktemp("large")
    images = _images(root / "in", 8, 384, 512)
    assert _run("encode", *images, "-o", root / "ref", "--weights", tiny_package,
                "--quiet").exit_code == 0
    return root, images


def test_encode_decode_same_bytes_as_single_process(cluster, small, tiny_package, tmp_path):
    root, images, crdrs = small
    res = _run("encode", *images, "-o", tmp_path / "enc", "--weights", tiny_package, "--ray")
    assert res.exit_code == 0, res.output
    names = [Path(p).stem + ".crdr" for p in images]
    _same_files(root / "ref", tmp_path / "enc", names)
    assert sorted(p.name for p in (tmp_path / "enc").iterdir()) == sorted(names + [MANIFEST])
    summary = res.output.strip().splitlines()[-1]
    assert summary.startswith("crdr: 6 files (6 done, 0 failed), ") and " out, " in summary
    rows = _manifest(tmp_path / "enc")
    for p in images:
        r = rows[Path(p).name]
        out = tmp_path / "enc" / (Path(p).stem + ".crdr")
        assert (r["status"], r["output"], int(r["bytes"])) == ("ok", str(out),
                                                               out.stat().st_size)
        assert float(r["q"]) == 2 and float(r["bpp"]) > 0 and len(r["model_id"]) == 8

    res = _run("decode", *crdrs, "-o", tmp_path / "dec", "--weights", tiny_package, "--ray")
    assert res.exit_code == 0, res.output
    _same_files(root / "ref-dec", tmp_path / "dec", [Path(p).stem + ".png" for p in images])


def test_python_entry_points(cluster, small, tiny_package):
    """The README's pipeline: read_binary_files -> encode_dataset -> decode_dataset."""
    root, images, _ = small
    ds = ray.data.read_binary_files(str(root / "in"), include_paths=True)
    encoded = encode_dataset(ds, q=2, weights=tiny_package).materialize()
    rows = encoded.take_all()
    assert len(rows) == len(images)
    for r in rows:
        assert r["status"] == "ok", r["error"]
        assert r["crdr"] == (root / "ref" / (Path(r["path"]).stem + ".crdr")).read_bytes()
    decoded = decode_dataset(encoded, column="crdr", weights=tiny_package, format="png")
    for r in decoded.iter_rows():
        assert r["status"] == "ok", r["error"]
        assert r["image"] == (root / "ref-dec" / (Path(r["path"]).stem + ".png")).read_bytes()


def test_bad_inputs_reported_by_name(cluster, small, tiny_package, tmp_path):
    root, images, crdrs = small
    bad_png = tmp_path / "corrupt.png"
    bad_png.write_bytes(Path(images[0]).read_bytes()[:200] + b"\0garbage" * 50)
    res = _run("encode", *images[:3], bad_png, "-o", tmp_path / "enc", "--weights",
               tiny_package, "--ray")
    assert res.exit_code == 1
    errors = [line for line in res.output.splitlines() if line.startswith("crdr: error:")]
    assert len(errors) == 1 and str(bad_png) in errors[0], res.output
    _same_files(root / "ref", tmp_path / "enc", [Path(p).stem + ".crdr" for p in images[:3]])
    assert not (tmp_path / "enc" / "corrupt.crdr").exists()
    row = _manifest(tmp_path / "enc")["corrupt.png"]
    assert row["status"] == "failed" and str(bad_png) in row["error"]
    assert "(3 done, 1 failed)" in res.output

    # a hostile .crdr: a valid header that claims a huge image, then a forged payload
    good = Path(crdrs[0]).read_bytes()
    hostile = tmp_path / "hostile.crdr"
    hostile.write_bytes(good[:12] + b"\xff" * 8 + good[20:])
    res = _run("decode", *crdrs[:2], hostile, "-o", tmp_path / "dec", "--weights",
               tiny_package, "--ray")
    assert res.exit_code == 1
    errors = [line for line in res.output.splitlines() if line.startswith("crdr: error:")]
    assert len(errors) == 1 and str(hostile) in errors[0], res.output
    _same_files(root / "ref-dec", tmp_path / "dec", [Path(p).stem + ".png" for p in crdrs[:2]])
    assert _manifest(tmp_path / "dec")["hostile.crdr"]["status"] == "failed"
    _no_temporaries(tmp_path / "dec")


def test_existing_output_refused(cluster, small, tiny_package, tmp_path):
    root, images, _ = small
    out = tmp_path / "enc"
    out.mkdir()
    (out / "img00.crdr").write_bytes(b"mine")
    res = _run("encode", *images[:2], "-o", out, "--weights", tiny_package, "--ray")
    assert res.exit_code == 1 and "img00.crdr already exists" in res.output
    assert (out / "img00.crdr").read_bytes() == b"mine"
    _same_files(root / "ref", out, ["img01.crdr"])


def test_worker_killed_mid_run(cluster, large, tiny_package, tmp_path):
    root, images = large
    out = tmp_path / "enc"
    out.mkdir()
    stop = threading.Event()

    def kill():
        pids = _crdr_actor_pids()
        assert pids, "no crdr actor process found"
        os.kill(pids[0], signal.SIGKILL)
        return pids[0]

    seen = _when_first_output(out, ".crdr", kill, stop)
    res = _run("encode", *images, "-o", out, "--weights", tiny_package, "--ray")
    stop.set()
    seen["thread"].join()
    assert "result" in seen, "the run ended before the worker could be killed"
    assert seen["outputs"] < len(images)  # killed mid-run
    assert res.exit_code == 0, res.output
    _same_files(root / "ref", out, [Path(p).stem + ".crdr" for p in images])
    assert {r["status"] for r in _manifest(out).values()} == {"ok"}
    _no_temporaries(out)


def test_node_removed_mid_run(cluster, large, tiny_package, tmp_path):
    """A second node joins, the pool spans both nodes (6 workers at 0.5 CPU: more than one
    node's 2 CPUs hold), and
    the node is removed, with its actors, once the first output is written."""
    root, images = large
    node = cluster.add_node(num_cpus=2)
    cluster.wait_for_nodes()
    raylet = node.all_processes["raylet"][0].process.pid
    out = tmp_path / "enc"
    out.mkdir()
    stop = threading.Event()

    def remove():
        on_node = [p for p in _crdr_actor_pids() if _parent(p) == raylet]
        cluster.remove_node(node, allow_graceful=False)
        return on_node

    seen = _when_first_output(out, ".crdr", remove, stop)
    res = _run("encode", *images, "-o", out, "--weights", tiny_package, "--ray",
               "--ray-workers", 6)
    stop.set()
    seen["thread"].join()
    assert "result" in seen, "the run ended before the node could be removed"
    assert seen["result"], "no crdr actor ran on the removed node"
    assert seen["outputs"] < len(images)
    names = [Path(p).stem + ".crdr" for p in images]
    rows = _manifest(out)
    missing = [n for n in names if not (out / n).exists()]
    if res.exit_code == 0:
        assert not missing
    else:  # Ray gave up: exactly the missing files are reported, by name
        assert missing, res.output
        for n in missing:
            src = str(root / "in" / n.replace(".crdr", ".png"))
            assert f"crdr: error: {src}: not done" in res.output
            assert rows[Path(src).name]["status"] == "missing"
    _same_files(root / "ref", out, [n for n in names if n not in missing])
    _no_temporaries(out)
    assert res.exit_code == 0, res.output  # Ray redid the lost work (the outcome we expect)


def test_resume_after_interruption(cluster, large, tiny_package, tmp_path):
    import _thread

    root, images = large
    out = tmp_path / "enc"
    out.mkdir()
    stop = threading.Event()
    seen = _when_first_output(out, ".crdr", _thread.interrupt_main, stop)
    res = _run("encode", *images, "-o", out, "--weights", tiny_package, "--ray")
    stop.set()
    seen["thread"].join()
    assert "outputs" in seen and res.exit_code == 130, res.output
    done = sorted(p.name for p in out.glob("*.crdr"))
    assert 0 < len(done) < len(images)
    rows = _manifest(out)
    assert sum(r["status"] == "ok" for r in rows.values()) == len(done)
    assert {r["status"] for r in rows.values()} == {"ok", "missing"}
    _no_temporaries(out)

    res = _run("encode", *images, "-o", out, "--weights", tiny_package, "--ray",
               "--skip-existing")
    assert res.exit_code == 0, res.output
    rows = _manifest(out)
    assert sorted(Path(r["output"]).name for r in rows.values()
                  if r["status"] == "skipped") == done
    assert sum(r["status"] == "ok" for r in rows.values()) == len(images) - len(done)
    _same_files(root / "ref", out, [Path(p).stem + ".crdr" for p in images])


@pytest.mark.weights
def test_readme_pipeline_example_runs_as_written(cluster, monkeypatch, capsys):
    """The README's Ray pipeline example, in the repository's folder (the shipped model,
    the demo image), on this module's cluster."""
    import re

    root = Path(__file__).resolve().parents[1]
    text = (root / "README.md").read_text()
    code = re.search(r"```python\n(.*?)```", text[text.index("## Batches on a Ray cluster"):],
                     re.S).group(1)
    monkeypatch.chdir(root)
    exec(compile(code, "README.md", "exec"), {})
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and all(" ok " in line for line in lines), lines
    assert lines[0].endswith(" bpp") and lines[1].endswith(" bytes of PNG")


def test_workers_run_the_runtime_not_torch(cluster, small, tiny_package):
    """A worker holds the light runtime: doing crdr's work in a Ray worker process imports
    neither torch nor onnx (also where they are installed)."""
    _, images, _ = small

    @ray.remote(num_cpus=0.5)
    def work(weights: str, path: str) -> list[str]:
        import sys

        from crdr_codec.batch import EncodeSettings, Encoder

        enc = Encoder(EncodeSettings(q=2.0, weights=weights))
        enc.encode(path, Path(path).name)
        return sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "onnx", "compressai"))

    assert ray.get(work.remote(tiny_package, images[0]), timeout=TIMEOUT) == []
