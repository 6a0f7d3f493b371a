"""What the device tool would carry, and keeping the shipped weights out of it for a run.

The device tool copies the checkout's tracked files and its untracked files that git does
not ignore, plus the ignored paths named in ``carry``: 64 MiB in all. The shipped
``weights/crdr-lite.pt`` alone is about 58 MiB (and ``weights/`` also keeps earlier
models, so that their files still decode), so a GPU training bundle (which holds its own,
slimmer copy of the starting weights) only fits while every ``weights/*.pt`` file stays
behind:

    .venv/bin/python scripts/gpu_travel.py size [--carry gpu_bundle]
    .venv/bin/python scripts/gpu_travel.py hide     # before the run call
    .venv/bin/python scripts/gpu_travel.py restore  # right after it

``hide`` takes the files (by default every ``weights/*.pt`` committed in HEAD; ``--path``
names one) out of git's index (``git rm --cached``; the files themselves stay where they
are, unchanged) and ignores them through ``.git/info/exclude``, so they are neither
tracked nor untracked-and-unignored. ``restore`` puts the index entries back from HEAD
(``git reset``) and removes the exclude lines; ``git status`` is then as before. While
hidden, ``git status`` shows the files as deleted from the index: do not commit then.
``hide`` refuses when a file has staged changes (they would be lost by ``restore``).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WEIGHTS_GLOB = "weights/*.pt"
MARK = "# gpu_travel.py hide (remove with: scripts/gpu_travel.py restore)"
LIMIT = 64 * 2**20


def git(*args: str, root: Path = ROOT, check: bool = True) -> subprocess.CompletedProcess:
    r = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True)
    if check and r.returncode != 0:
        raise SystemExit(f"git {' '.join(args)} failed: {r.stderr.strip()}")
    return r


def _exclude_file(root: Path) -> Path:
    p = Path(git("rev-parse", "--git-path", "info/exclude", root=root).stdout.strip())
    return p if p.is_absolute() else root / p


def travelling_bytes(root: Path = ROOT, carry: list[str] = ()) -> tuple[int, dict[str, int]]:
    out = git("ls-files", "-z", "--cached", "--others", "--exclude-standard", root=root).stdout
    sizes = {}
    for p in filter(None, out.split("\0")):
        f = root / p
        if f.is_file():
            sizes[p] = f.stat().st_size
    for c in carry:
        f = root / c
        files = [f] if f.is_file() else [x for x in f.rglob("*") if x.is_file()]
        for x in files:
            sizes[str(x.relative_to(root))] = x.stat().st_size
    return sum(sizes.values()), sizes


def committed_weights(root: Path = ROOT) -> list[str]:
    """The ``weights/*.pt`` files of HEAD (hidden or not)."""
    out = git("ls-tree", "--name-only", "HEAD", "weights/", root=root).stdout.split("\n")
    return [p for p in out if p.endswith(".pt")]


def hide(root: Path = ROOT, path: str | None = None) -> list[str]:
    """Hide ``path``, or every committed weights file; returns what was hidden."""
    paths = [path] if path else committed_weights(root)
    for p in paths:
        _hide_one(root, p)
    return paths


def restore(root: Path = ROOT, path: str | None = None) -> list[str]:
    """Undo :func:`hide` for ``path``, or for every committed weights file."""
    paths = [path] if path else committed_weights(root)
    for p in paths:
        _restore_one(root, p)
    return paths


def _hide_one(root: Path, path: str) -> None:
    if not git("ls-files", "--error-unmatch", path, root=root, check=False).returncode == 0:
        raise SystemExit(f"{path} is not tracked (already hidden?)")
    if git("diff", "--cached", "--quiet", "--", path, root=root, check=False).returncode != 0:
        raise SystemExit(f"{path} has staged changes; commit or unstage them first")
    git("rm", "--cached", "-q", "--", path, root=root)
    ex = _exclude_file(root)
    ex.parent.mkdir(parents=True, exist_ok=True)
    with open(ex, "a") as f:
        f.write(f"{MARK}\n/{path}\n")


def _restore_one(root: Path, path: str) -> None:
    ex = _exclude_file(root)
    if ex.is_file():
        lines = ex.read_text().splitlines(keepends=True)
        keep, i = [], 0
        while i < len(lines):  # drop each (MARK, /path) pair of this path, nothing else
            pair = [x.rstrip("\n") for x in lines[i:i + 2]]
            if pair == [MARK, f"/{path}"]:
                i += 2
                continue
            keep.append(lines[i])
            i += 1
        ex.write_text("".join(keep))
    git("reset", "-q", "--", path, root=root)
    if git("ls-files", "--error-unmatch", path, root=root, check=False).returncode != 0:
        raise SystemExit(f"{path} is still not tracked after restore")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("cmd", choices=["size", "hide", "restore"])
    ap.add_argument("--carry", nargs="*", default=[], help="ignored paths the run will carry")
    ap.add_argument("--path", help=f"the tracked file to hide or restore (default: every "
                    f"{WEIGHTS_GLOB} of HEAD)")
    a = ap.parse_args(argv)
    if a.cmd == "hide":
        for p in hide(path=a.path):
            print(f"{p}: out of the index and ignored (file untouched)")
        print("run `scripts/gpu_travel.py restore` after the run call")
    elif a.cmd == "restore":
        for p in restore(path=a.path):
            print(f"{p}: tracked again")
    total, sizes = travelling_bytes(carry=a.carry)
    big = sorted(sizes.items(), key=lambda kv: -kv[1])[:3]
    print(f"travelling tree{' with ' + ', '.join(a.carry) if a.carry else ''}: "
          f"{total / 2**20:.1f} MiB (limit 64); largest: "
          + ", ".join(f"{p} {s / 2**20:.1f} MiB" for p, s in big))
    return 0 if total <= LIMIT else 1


if __name__ == "__main__":
    sys.exit(main())
