"""Images per second of ``crdr encode`` on a folder: the single-process batch, and
``--ray`` with 1 and 2 workers on a local cluster started for the run; and Ray's start-up
overhead. Whole processes, as a user runs them (wall time, one run each: a batch of 24
Kodak images takes long enough that one run is stable to a few per cent).

    python benchmarks/ray_batch.py [FOLDER] [--q 2] [--threads N] [--weights FILE]

FOLDER defaults to ../shared/data/kodak (its *.png). The --ray outputs are checked to be
byte-identical to the single-process ones. Start-up overhead: a ``--ray`` run of one image
minus the single-process run of that image (starting a local cluster, the actor and its
model, stopping the cluster), and a bare ``ray.init(); ray.shutdown()`` for comparison.
"""

from __future__ import annotations

import argparse
import filecmp
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def crdr(*args: str) -> float:
    t = time.perf_counter()
    subprocess.run([sys.executable, "-m", "crdr_codec", *args], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("folder", nargs="?", default="../shared/data/kodak")
    ap.add_argument("--q", default="2")
    ap.add_argument("--threads", default=None)
    ap.add_argument("--weights", default=None)
    a = ap.parse_args()
    images = sorted(str(p) for p in Path(a.folder).glob("*.png"))
    if not images:
        sys.exit(f"no *.png in {a.folder}")
    common = ["--q", a.q, "--quiet"] + (["--threads", a.threads] if a.threads else []) + (
        ["--weights", a.weights] if a.weights else [])
    n = len(images)
    with tempfile.TemporaryDirectory() as tmp:
        rows = []
        t = crdr("encode", *images, "-o", f"{tmp}/single", *common)
        rows.append(("single process", t))
        for w in (1, 2):
            t = crdr("encode", *images, "-o", f"{tmp}/ray{w}", *common, "--ray",
                     "--ray-workers", str(w))
            rows.append((f"--ray, {w} worker{'s' if w > 1 else ''}", t))
            names = [Path(i).stem + ".crdr" for i in images]
            same, diff, err = filecmp.cmpfiles(f"{tmp}/single", f"{tmp}/ray{w}", names,
                                               shallow=False)
            assert not diff and not err, (diff, err)
        one = crdr("encode", images[0], "-o", f"{tmp}/one", *common)
        one_ray = crdr("encode", images[0], "-o", f"{tmp}/one-ray", *common, "--ray",
                       "--ray-workers", "1")
        t = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import ray; ray.init(address='local', "
                        "include_dashboard=False, logging_level='ERROR'); ray.shutdown()"],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        bare = time.perf_counter() - t
    print(f"{n} images from {a.folder}, crdr encode --q {a.q}"
          f"{' --threads ' + a.threads if a.threads else ''}; {os.cpu_count()} CPUs")
    print(f"{'':24s} {'seconds':>8s} {'images/s':>9s}")
    for name, t in rows:
        print(f"{name:24s} {t:8.1f} {n / t:9.2f}")
    print(f"start-up overhead of --ray (1 image: {one_ray:.1f} s with --ray, {one:.1f} s "
          f"without): {one_ray - one:.1f} s; bare ray.init() + shutdown: {bare:.1f} s")
    print("--ray outputs byte-identical to the single-process ones: yes")


if __name__ == "__main__":
    main()
