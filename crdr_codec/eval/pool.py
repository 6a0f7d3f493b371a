"""The anchors' encode/decode work of ``crdr eval``, in this process or a pool of processes.

Each task encodes and decodes one image at one anchor setting and hands back the bytes
count, the seconds and the decoded image; the caller measures and records it. With more
than one job the tasks run in spawned worker processes (torch is loaded in the parent and
must not be forked), at most ``2 * jobs`` at a time so that decoded images do not pile up
in memory waiting to be measured.
"""

from __future__ import annotations

import os
import time
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from pathlib import Path
from typing import Callable, Dict, Iterator, Sequence, Tuple

import numpy as np

from crdr_codec.errors import CrdrError
from crdr_codec.eval.anchors import ANCHORS
from crdr_codec.image_io import read_image

__all__ = ["AnchorTask", "AnchorResult", "run_anchor_tasks"]

AnchorTask = Tuple[Path, str, int]  # (image, anchor name, quality)
AnchorResult = Tuple[int, float, float, np.ndarray]  # (bytes, encode s, decode s, decoded)

_WORKER_IMAGES: Dict[str, np.ndarray] = {}


def _anchor_task(path: str, name: str, quality: int) -> AnchorResult:
    """Encode + decode one image with one anchor setting (runs in a worker process).

    Returns ``(bytes, encode seconds, decode seconds, decoded image)``.
    """
    rgb = _WORKER_IMAGES.get(path)
    if rgb is None:
        _WORKER_IMAGES.clear()  # keep one image per worker
        rgb = _WORKER_IMAGES[path] = read_image(path)
    anchor = ANCHORS[name]
    t0 = time.perf_counter()
    data = anchor.encode(rgb, quality, threads=1)
    t1 = time.perf_counter()
    rec = anchor.decode(data)
    t2 = time.perf_counter()
    if rec.shape != rgb.shape:
        raise CrdrError(f"{name} decoded {rec.shape} from a {rgb.shape} image")
    return len(data), t1 - t0, t2 - t1, rec


def _worker_init() -> None:
    os.environ.setdefault("OMP_NUM_THREADS", "1")


def run_anchor_tasks(todo: Sequence[AnchorTask], jobs: int,
                     handle: Callable[[AnchorTask, AnchorResult], None]) -> None:
    """Run every task of ``todo`` and call ``handle(task, result)`` here, as each finishes.

    With ``jobs == 1`` in this process, in order; otherwise in ``jobs`` worker processes,
    in the order they finish. A task's error is raised here.
    """
    if not todo:
        return
    if jobs == 1:
        for task in todo:
            handle(task, _anchor_task(str(task[0]), task[1], task[2]))
        return
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")  # torch is loaded here; do not fork it
    window = 2 * jobs  # bounded: decoded images wait in memory until measured
    pending: Dict[Future, AnchorTask] = {}
    it: Iterator[AnchorTask] = iter(todo)
    with ProcessPoolExecutor(jobs, mp_context=ctx, initializer=_worker_init) as pool:
        while True:
            while len(pending) < window:
                task = next(it, None)
                if task is None:
                    break
                pending[pool.submit(_anchor_task, str(task[0]), task[1], task[2])] = task
            if not pending:
                break
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for fut in done:
                handle(pending.pop(fut), fut.result())
