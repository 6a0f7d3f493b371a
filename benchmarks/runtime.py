"""Whole-process speed and memory of the product path (the runtime: ONNX Runtime + numpy),
as shell scripts run crdr: one process per file.

Times (median of --repeats runs after one warm-up, 2 threads by default) and peak RSS (GNU
time) of whole processes: ``crdr --help``, ``crdr info``, ``crdr encode --q Q`` and
``crdr decode`` of one image, beside a bare ``python -c "import torch"`` (the start-up the
torch-based crdr paid before any work) and, with ``--baseline-checkout``, the same
commands of an earlier, torch-based crdr. Then the stages of one encode and one decode,
timed inside a fresh process: start-up imports, model load, image read, g_a, h_a + entropy
coding, entropy decoding, g_s, image write.

    .venv-runtime/bin/python benchmarks/runtime.py [IMAGE] [--q 2] [--beta 0] [--threads 2]
        [--repeats 5] [--device cpu|cuda] [--torch-python .venv/bin/python]
        [--baseline-checkout DIR] [--json OUT]

IMAGE defaults to docs/demo/kodim23.png. ``--baseline-checkout`` is a source folder of the
torch-based crdr (e.g. ``git worktree add ../crdr-torch d2ffcab``), run with
``--torch-python``. Only the standard library, numpy and the runtime are imported here,
so it runs in the runtime-only venv.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TIME = "/usr/bin/time"

_STAGES = textwrap.dedent("""
    import json, sys, time
    t0 = time.perf_counter()
    import numpy as np, onnxruntime, PIL.Image
    from crdr_codec.codec import Codec
    from crdr_codec import bitstream
    from crdr_codec.config import PAD_MULTIPLE
    from crdr_codec.image_io import pad_to_multiple, read_image, to_input, write_image, crop, to_uint8
    from crdr_codec.limits import padded
    from crdr_codec.runtime import latent as coding
    t = {"imports": time.perf_counter() - t0}
    src, work, q, beta, threads = sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5])
    device = sys.argv[6]

    def lap(name, t1):
        t[name] = time.perf_counter() - t1
        return time.perf_counter()

    t1 = time.perf_counter()
    codec = Codec(device=device, threads=threads)
    m = codec.model
    m.entropy, m.tables  # built on first use: part of loading
    t1 = lap("model load", t1)
    rgb = read_image(src)
    t1 = lap("image read", t1)
    x = pad_to_multiple(to_input(rgb), PAD_MULTIPLE)
    y = m.g_a(x, q)
    t1 = lap("g_a", t1)
    coded = coding.compress_latent(m.entropy, m.tables, m.config.num_slices, y, m.h_a(y))
    t1 = lap("h_a + entropy coding", t1)
    data = codec.encode(rgb, q).data  # the API end to end, for the equality check only
    t1 = time.perf_counter()
    header, payload, _ = bitstream.unpack(data)
    y_hat, check = coding.decode_latent(m.entropy, m.tables, m.config.num_slices, payload,
                                        padded(header.height), padded(header.width))
    assert check == header.check and np.array_equal(y_hat, coded.y_hat)
    t1 = lap("entropy decoding", t1)
    out = to_uint8(crop(m.g_s(y_hat, header.q, beta), header.height, header.width))
    t1 = lap("g_s", t1)
    write_image(work + "/out.png", out)
    t1 = lap("image write", t1)
    print(json.dumps(t))
""")


def run_timed(cmd: list[str], env: dict, cwd: str | None = None) -> tuple[float, float]:
    """Wall seconds and peak RSS (MiB, GNU time) of one process; a failure stops the run."""
    fd, stats = tempfile.mkstemp(prefix="crdr-bench-")
    os.close(fd)
    try:
        t0 = time.perf_counter()
        proc = subprocess.run([TIME, "-o", stats, "-f", "%M", *cmd], stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, env=env, cwd=cwd)
        wall = time.perf_counter() - t0
        if proc.returncode != 0:
            sys.exit(f"{' '.join(cmd)} failed:\n{proc.stderr.decode(errors='replace')}")
        rss = float(Path(stats).read_text().split()[-1]) / 1024
    finally:
        os.unlink(stats)
    return wall, rss


def median_of(cmd, env, repeats, cwd=None) -> dict:
    run_timed(cmd, env, cwd)  # warm-up: page cache, id caches
    runs = [run_timed(cmd, env, cwd) for _ in range(repeats)]
    return {"seconds": statistics.median(r[0] for r in runs), "peak_mib": max(r[1] for r in runs)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("image", nargs="?", default=str(ROOT / "docs" / "demo" / "kodim23.png"))
    ap.add_argument("--q", type=float, default=2.0)
    ap.add_argument("--beta", type=float, default=0.0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu", help="cpu or cuda (the transforms)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--torch-python", default=str(ROOT / ".venv" / "bin" / "python"),
                    help="a Python that has torch, for the import baseline")
    ap.add_argument("--baseline-checkout", help="source folder of a torch-based crdr to time too")
    ap.add_argument("--json", help="write the numbers here")
    a = ap.parse_args()
    if not os.access(TIME, os.X_OK):
        sys.exit(f"needs GNU time at {TIME} (apt install time)")
    py = sys.executable
    th = ["--threads", str(a.threads), "--device", a.device]
    env = {**os.environ, "OMP_NUM_THREADS": str(a.threads), "OPENBLAS_NUM_THREADS": str(a.threads)}
    res: dict = {"image": a.image, "q": a.q, "beta": a.beta, "threads": a.threads, "device": a.device,
                 "repeats": a.repeats, "processes": {}, "stages": {}}
    with tempfile.TemporaryDirectory(prefix="crdr-bench-") as tmp:
        enc, dec = f"{tmp}/a.crdr", f"{tmp}/a.png"
        crdr = [py, "-m", "crdr_codec"]
        commands = {
            "crdr --help": [*crdr, "--help"],
            "crdr encode": [*crdr, "encode", a.image, enc, "--q", str(a.q), "--force", "--quiet", *th],
            "crdr info": [*crdr, "info", enc],
            "crdr decode": [*crdr, "decode", enc, dec, "--beta", str(a.beta), "--force", "--quiet", *th],
        }
        for name, cmd in commands.items():
            res["processes"][name] = median_of(cmd, env, a.repeats, cwd=tmp)
        if Path(a.torch_python).exists():
            res["processes"]["python -c 'import torch'"] = median_of(
                [a.torch_python, "-c", "import torch"], env, a.repeats)
        if a.baseline_checkout:
            old = [a.torch_python, "-m", "crdr_codec"]
            for name, cmd in (("encode", [*old, "encode", a.image, enc, "--q", str(a.q), "--force",
                                          "--quiet", *th]),
                              ("decode", [*old, "decode", enc, dec, "--beta", str(a.beta), "--force",
                                          "--quiet", *th])):
                res["processes"][f"torch-based crdr {name}"] = median_of(cmd, env, a.repeats,
                                                                       cwd=a.baseline_checkout)
        stage_runs = []
        for _ in range(max(1, a.repeats)):
            out = subprocess.run([py, "-c", _STAGES, a.image, tmp, str(a.q), str(a.beta), str(a.threads),
                                  a.device],
                                 capture_output=True, text=True, env=env, cwd=tmp)
            if out.returncode != 0:
                sys.exit(out.stderr)
            stage_runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
        res["stages"] = {k: statistics.median(r[k] for r in stage_runs) for k in stage_runs[0]}
    procs = res["processes"]
    base = procs.get("python -c 'import torch'", {}).get("seconds")
    print(f"{Path(a.image).name}, q={a.q:g}, beta={a.beta:g}, {a.threads} threads, {a.device}, "
          f"median of {a.repeats} (after a warm-up)")
    print(f"{'process':<32} {'seconds':>8} {'peak MiB':>9} {'x import torch':>15}")
    for name, r in procs.items():
        ratio = f"{r['seconds'] / base:.2f}" if base else ""
        print(f"{name:<32} {r['seconds']:>8.3f} {r['peak_mib']:>9.0f} {ratio:>15}")
    print("stages inside one process (seconds):")
    for name, s in res["stages"].items():
        print(f"  {name:<24} {s:.3f}")
    if a.json:
        Path(a.json).write_text(json.dumps(res, indent=1) + "\n")


if __name__ == "__main__":
    main()
