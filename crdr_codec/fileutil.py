"""Atomic file output.

Every file crdr writes (``.crdr`` bitstreams, decoded images, weights) goes through
this module so a crash, a full disk or Ctrl-C never leaves a half-written file under
the final name: data is written to a hidden temporary file in the same directory,
flushed to disk, then renamed over the target in one step.

Callers that must not replace an existing file (``crdr encode``/``decode`` without
``--force``) pass ``replace=False``: the temporary file is then hard-linked to the final
name, which fails atomically if that name exists, so even a file created meanwhile is
never replaced (:class:`~crdr_codec.errors.OutputExistsError`).

Targets that exist but are not regular files (``/dev/null``, a named pipe) are
written to directly, since renaming over them would replace the device node itself.
Writing to ``-`` (stdout) is handled by the callers, not here.

It also has :func:`folder_lock`, which keeps two long-running writers (two ``crdr eval``
sweeps, two ``crdr train`` runs) out of the same folder.

Only the standard library is imported here.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from collections.abc import Iterator
from typing import Union

from .errors import OutputError, OutputExistsError

__all__ = ["OutputError", "OutputExistsError", "atomic_write_bytes", "atomic_writer",
           "check_writable", "folder_lock"]

PathLike = Union[str, "os.PathLike[str]"]

# Longest part of the target name copied into the temporary name (NAME_MAX is 255).
_MAX_PREFIX = 100


def _output_error(path: PathLike, exc: OSError) -> OutputError:
    reason = exc.strerror or str(exc) or type(exc).__name__
    return OutputError(f"cannot write '{os.fspath(path)}': {reason}")


def _current_umask() -> int:
    """The process umask, read without changing it where the OS allows."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)  # not thread-safe, only reached off Linux
    os.umask(mask)
    return mask


def _final_mode(target: str) -> int:
    """Permission bits the output should get: those of the file it replaces, else
    what ``open()`` would give a new file (mkstemp creates files as 0600)."""
    try:
        return stat.S_IMODE(os.stat(target).st_mode)
    except OSError:
        return 0o666 & ~_current_umask()


def _resolve(path: PathLike) -> tuple[str, bool]:
    """Return ``(target, special)``: the real file to write (symlinks followed, so a
    link is written through rather than replaced) and whether it exists but is not a
    regular file (then it must be written in place, not renamed over).

    Raises:
        OutputError: the target is a directory.
    """
    target = os.path.realpath(os.fspath(path))
    try:
        st = os.stat(target)
    except OSError:
        return target, False
    if stat.S_ISDIR(st.st_mode):
        raise OutputError(f"cannot write '{os.fspath(path)}': Is a directory")
    return target, not stat.S_ISREG(st.st_mode)


def _mkstemp_beside(path: PathLike, target: str, suffix: str) -> tuple[int, str]:
    directory = os.path.dirname(target) or "."
    name = os.path.basename(target)[:_MAX_PREFIX]
    try:
        return tempfile.mkstemp(prefix=f".{name}.", suffix=suffix, dir=directory)
    except OSError as exc:
        raise _output_error(path, exc) from exc


def _remove_quietly(path: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)


def _fsync_dir(directory: str) -> None:
    """Best effort: make the rename itself durable (not possible on every OS)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _exists_error(path: PathLike) -> OutputExistsError:
    return OutputExistsError(f"'{os.fspath(path)}' already exists")


def _check_absent(path: PathLike, target: str) -> None:
    """Raise OutputExistsError if ``target`` exists (a dangling symlink does not count)."""
    if os.path.exists(target):
        raise _exists_error(path)


def _place_new(path: PathLike, tmp: str, target: str) -> None:
    """Move ``tmp`` to ``target`` only if nothing is there: a hard link fails atomically
    when the name exists, so a file appearing meanwhile is never replaced. Where the file
    system has no hard links, a last check before the rename stands in for it."""
    try:
        os.link(tmp, target)
    except FileExistsError:
        raise _exists_error(path) from None
    except OSError:
        _check_absent(path, target)
        os.replace(tmp, target)
        return
    _remove_quietly(tmp)  # the data is in place under its final name


def _commit(path: PathLike, tmp: str, target: str, replace: bool = True) -> None:
    """fsync ``tmp``, give it its final permissions and rename it onto ``target``
    (with ``replace=False``: only if ``target`` does not exist)."""
    try:
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.chmod(tmp, _final_mode(target))
        if replace:
            os.replace(tmp, target)
        else:
            _place_new(path, tmp, target)
    except OutputExistsError:
        raise
    except OSError as exc:
        raise _output_error(path, exc) from exc
    _fsync_dir(os.path.dirname(target) or ".")


def _write_in_place(path: PathLike, target: str, data: bytes) -> None:
    try:
        with open(target, "wb") as f:
            f.write(data)
    except OSError as exc:
        raise _output_error(path, exc) from exc


def check_writable(path: PathLike) -> None:
    """Check, before any work, that ``path`` could be written: a temporary file is created
    (and removed at once) where :func:`atomic_write_bytes` would create it. This asks the
    file system itself, so it also holds for root, read-only mounts and ``/proc``, where
    permission bits tell nothing. A target that is not a regular file (``/dev/null``, a
    pipe, which must not be opened before its time) is not checked: it is written in place.

    Raises:
        OutputError: the folder does not exist, is not writable or cannot hold files;
            the target is a directory. The message names the folder (or ``path``).
    """
    target, special = _resolve(path)
    if special:
        return
    directory = os.path.dirname(target) or "."
    try:
        fd, tmp = tempfile.mkstemp(prefix=".crdr-check.", dir=directory)
    except OSError as exc:
        reason = exc.strerror or str(exc) or type(exc).__name__
        raise OutputError(f"cannot write to folder '{directory}': {reason}") from exc
    os.close(fd)
    _remove_quietly(tmp)


def atomic_write_bytes(path: PathLike, data: bytes, replace: bool = True) -> None:
    """Write ``data`` to ``path`` atomically: readers see the old file or the whole new one.

    Args:
        path: destination file. Its directory must exist. An existing file is replaced
            and keeps its permission bits; a new file gets the usual umask permissions.
        data: the complete file contents.
        replace: if False, an existing file at ``path`` is never replaced, not even one
            created while the data is written (:class:`OutputExistsError`). Targets that
            are not regular files (``/dev/null``, a pipe) are written either way.

    Raises:
        OutputExistsError: ``replace`` is False and ``path`` exists.
        OutputError: the directory does not exist or is not writable, the target is a
            directory, the disk is full, etc. The message names ``path``. No temporary
            file is left behind and an existing file at ``path`` is left untouched.
    """
    target, special = _resolve(path)
    if special:
        _write_in_place(path, target, data)
        return
    if not replace:
        _check_absent(path, target)
    fd, tmp = _mkstemp_beside(path, target, ".tmp")
    try:
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
        except OSError as exc:
            raise _output_error(path, exc) from exc
        _commit(path, tmp, target, replace)
    except BaseException:
        _remove_quietly(tmp)
        raise


@contextlib.contextmanager
def atomic_writer(path: PathLike, replace: bool = True) -> Iterator[str]:
    """Context manager giving a temporary path to write instead of ``path``.

    The temporary file lives in the same directory (hidden, same extension as
    ``path``), already exists and is empty. When the block ends normally it is
    renamed onto ``path``; when the block raises it is removed and the exception
    propagates, leaving any existing file at ``path`` untouched.

    Example::

        with atomic_writer("out/x.png") as tmp:
            image.save(tmp, format="PNG")

    Args:
        path: the final destination.
        replace: if False, an existing file at ``path`` is never replaced (checked
            before the block runs, and again atomically when the file is moved into
            place); see :func:`atomic_write_bytes`.

    Yields:
        The temporary path (str) to write to.

    Raises:
        OutputExistsError: ``replace`` is False and ``path`` exists.
        OutputError: the temporary file cannot be created (missing or read-only
            directory) or cannot be moved into place. Errors raised by the caller's
            own writes inside the block propagate unchanged.
    """
    target, special = _resolve(path)
    if not replace and not special:
        _check_absent(path, target)
    suffix = os.path.splitext(target)[1]
    if special:
        # Write to a scratch file elsewhere, then copy it into the device or pipe.
        try:
            fd, tmp = tempfile.mkstemp(prefix=".crdr-", suffix=suffix)
        except OSError as exc:
            raise _output_error(path, exc) from exc
        os.close(fd)
        try:
            yield tmp
            try:
                with open(tmp, "rb") as f:
                    data = f.read()
            except OSError as exc:
                raise _output_error(path, exc) from exc
            _write_in_place(path, target, data)
        finally:
            _remove_quietly(tmp)
        return

    fd, tmp = _mkstemp_beside(path, target, suffix)
    os.close(fd)
    try:
        yield tmp
        _commit(path, tmp, target, replace)
    except BaseException:
        _remove_quietly(tmp)
        raise


@contextlib.contextmanager
def folder_lock(folder: PathLike, what: str) -> Iterator[None]:
    """Hold an exclusive lock on ``folder`` (created if missing) for the block.

    A second process asking for the same folder's lock gets an :class:`OutputError` at
    once instead of writing beside the first. The lock is an advisory ``flock`` on a
    hidden file in the folder, so it goes away with the process even after a crash;
    there is never a stale lock to remove. Where ``fcntl`` does not exist (Windows),
    the block runs unlocked.
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield
        return
    try:
        os.makedirs(folder, exist_ok=True)
        fd = os.open(os.path.join(folder, ".lock"), os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
        raise _output_error(folder, e) from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise OutputError(
                f"{folder} is in use by another {what}; wait for it or use another folder"
            ) from None
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock
