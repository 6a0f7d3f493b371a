"""The progress bar of ``crdr eval`` (stderr)."""

from __future__ import annotations

import math
import sys
import time

__all__ = ["Progress"]


class Progress:
    """A one-line progress bar on stderr (a line every ~10 s when not a terminal)."""

    def __init__(self, total: int, label: str, enabled: bool = True) -> None:
        self.total, self.label, self.enabled = total, label, enabled and total > 0
        self.done = 0
        self.start = time.perf_counter()
        self.tty = sys.stderr.isatty()
        self._last_print = 0.0

    def update(self, n: int = 1, note: str = "") -> None:
        self.done += n
        if not self.enabled:
            return
        now = time.perf_counter()
        if not self.tty and now - self._last_print < 10.0 and self.done < self.total:
            return
        self._last_print = now
        elapsed = now - self.start
        frac = self.done / self.total
        eta = elapsed / frac - elapsed if frac > 0 else float("nan")
        width = 24
        bar = "#" * int(width * frac) + "." * (width - int(width * frac))
        line = (f"{self.label} [{bar}] {self.done}/{self.total} {100 * frac:3.0f}% "
                f"{_hms(elapsed)} elapsed, eta {_hms(eta)}  {note}")
        if self.tty:
            cols = 120
            sys.stderr.write("\r" + line[:cols].ljust(cols))
        else:
            sys.stderr.write(line + "\n")
        sys.stderr.flush()

    def close(self) -> None:
        if self.enabled and self.tty:
            sys.stderr.write("\n")
            sys.stderr.flush()


def _hms(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    s = int(round(seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"
