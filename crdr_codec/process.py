"""Process-wide tuning for the `crdr` command (not applied when crdr is used as a library).

glibc serves every allocation above its mmap threshold (at most 32 MB with the default
dynamic threshold) with a fresh ``mmap`` and gives it back with ``munmap`` when the tensor
is freed. The feature maps of a 768x512 image are larger than that, so each layer pays for
zero-filling new pages again. Raising the mmap and trim thresholds keeps freed memory in
the heap for the next layer. Measured on the 2-core build machine (kodim23, lite weights,
1 thread): decode 2.9 s -> 1.95 s; see benchmarks/speed.py.
"""

from __future__ import annotations

import os
import sys

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_THRESHOLD = 1 << 30  # bytes
_done = False


def tune_malloc() -> bool:
    """Raise glibc's mmap/trim thresholds once per process; True if applied.

    A no-op off Linux/glibc, when the user set ``MALLOC_MMAP_THRESHOLD_`` or
    ``GLIBC_TUNABLES`` themselves, or when ``CRDR_NO_MALLOC_TUNING`` is set.
    """
    global _done
    if _done:
        return True
    if not sys.platform.startswith("linux"):
        return False
    if any(k in os.environ for k in ("MALLOC_MMAP_THRESHOLD_", "GLIBC_TUNABLES", "CRDR_NO_MALLOC_TUNING")):
        return False
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl or another libc without mallopt
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    _done = bool(mallopt(_M_MMAP_THRESHOLD, _THRESHOLD)) and bool(mallopt(_M_TRIM_THRESHOLD, _THRESHOLD))
    return _done


def set_threads(threads: int | None) -> None:
    """Use ``threads`` CPU threads for torch (``--threads``); None leaves torch's choice.

    Works before torch is imported (the usual case: ``OMP_NUM_THREADS`` is read when it
    loads) and after (``torch.set_num_threads``), without importing torch itself.
    """
    if threads is None:
        return
    os.environ["OMP_NUM_THREADS"] = str(threads)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(threads)
