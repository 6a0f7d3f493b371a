"""What the `crdr` commands share: options, the batch runner, path and overwrite checks,
and the lines they print.

What encode and decode print on stderr (all of it one line per event):

* ``crdr: error: ...`` for a file that failed (the others still run; exit code 1);
* ``crdr: warning: ...`` for a ``--bpp`` target that could not be reached (exit code 3
  unless something failed);
* ``crdr: note: FILE: ...`` for what the user should know about an input (16-bit
  reduced to 8, only the first frame of an animation), hidden by ``--quiet``;
* one result line per file (``[k/N]`` in front in a batch), and with ``--bpp`` on a
  terminal one line per encode of the search; hidden by ``--quiet``.

There is no progress bar: the per-file lines are the progress, so nothing on the
terminal is ever overwritten.

Only light modules are imported here (no torch), so ``crdr --help`` starts fast.
"""

from __future__ import annotations

import os
import stat
import sys
import warnings
from pathlib import Path

import click

from ..errors import CrdrError, InputNotice, OutputExistsError, UsageError

#: Exit code of ``crdr encode --bpp`` when every file was written but at least one is
#: larger than the target (even q = 0 was over it); 1 is an error, 2 a usage error.
EXIT_BPP_NOT_REACHED = 3

# ------------------------------------------------------------------------ printing


def error_line(e: CrdrError) -> str:
    """The one stderr line for a user error (messages from other libraries, e.g. torch's
    unpickler, can span several lines)."""
    return "crdr: error: " + " ".join(str(e).split())


def plural(n: int, noun: str) -> str:
    """'1 image', '2 images': a count with its noun."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def display_name(path: str) -> str:
    """How an input is named in messages (``-`` is stdin)."""
    return "<stdin>" if path == "-" else path


def named(e: CrdrError, src: str) -> CrdrError:
    """The error with the input's name in front, unless its message names it already."""
    name, msg = display_name(src), str(e)
    if msg.startswith(name) or f"{name}:" in msg or f"'{name}'" in msg:
        return e
    return CrdrError(f"{name}: {msg}")


def note_line(w: warnings.WarningMessage, src: str) -> str:
    """A warning raised while working on ``src`` as one ``crdr: note:`` line naming it."""
    name = display_name(src)
    msg = " ".join(str(w.message).split())
    if not msg.startswith(f"{name}:"):
        msg = f"{name}: {msg}"
    return f"crdr: note: {msg}"


# ------------------------------------------------------------------------- options

#: Input file arguments: no checks here (crdr reports a missing or unreadable file as its
#: own one-line error, naming it); the type makes shell completion offer file names.
IN_PATHS = click.Path(readable=False)


def device_option(f):
    return click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto",
                        show_default=True, help="Where the transforms run (entropy coding is always CPU).")(f)


def threads_option(f):
    return click.option("--threads", type=click.IntRange(min=1), default=None,
                        help="CPU threads for the transforms (default: ONNX Runtime's choice).")(f)


def weights_option(f):
    return click.option("--weights", type=click.Path(dir_okay=False),
                        help="Model file: a package (.crdrm) or torch weights (.pt, exported on first "
                             "use; needs torch). Default: the shipped model.")(f)


def force_option(f):
    return click.option("-f", "--force", is_flag=True,
                        help="Replace output files that exist (never an input file).")(f)


def skip_existing_option(f):
    return click.option("--skip-existing", is_flag=True,
                        help="Skip inputs whose output file exists (named as skipped), so a "
                             "rerun of an interrupted batch resumes it; not with --force.")(f)


def check_overwrite_options(force: bool, skip_existing: bool) -> None:
    if force and skip_existing:
        raise UsageError("give either --force or --skip-existing, not both")


def quiet_option(f):
    return click.option("--quiet", is_flag=True,
                        help="Print nothing but errors and warnings (no notes, no per-file "
                             "lines).")(f)


def ray_option(f):
    return click.option("--ray", is_flag=True,
                        help="Run the batch on a Ray cluster (needs -o DIR and the ray extra): "
                             "$RAY_ADDRESS, else a local one started for the run. The same "
                             "files as without --ray, plus a manifest (crdr-manifest.csv) in "
                             "DIR and one summary line.")(f)


def ray_workers_option(f):
    return click.option("--ray-workers", type=click.IntRange(min=1), default=None, metavar="N",
                        help="With --ray: N workers (each holds one model); default one per "
                             "CPU of the cluster.")(f)


def check_ray_options(ray: bool, ray_workers: int | None, output_dir: str | None) -> None:
    """--ray needs -o DIR (its manifest goes there) and the ray extra; --ray-workers needs
    --ray."""
    if not ray:
        if ray_workers is not None:
            raise UsageError("--ray-workers is for --ray")
        return
    if output_dir is None:
        raise UsageError("--ray needs -o DIR (the outputs and the manifest go there)")
    from ..extras import require

    require("ray", "--ray", "ray")


def max_pixels_option(f):
    from ..limits import DEFAULT_MAX_PIXELS

    return click.option("--max-pixels", type=click.IntRange(min=1), default=DEFAULT_MAX_PIXELS,
                        show_default=True, metavar="N",
                        help="Refuse images with more pixels than N (counted after padding "
                             "to multiples of 64), checked from the header before any work.")(f)


# ----------------------------------------------------------------- inputs, outputs


def plan(inputs: tuple[str, ...], output_dir: str | None, suffix: str) -> list[tuple[str, str]]:
    """Pair inputs with outputs: `IN OUT`, or `IN... -o DIR` (DIR/<stem><suffix>; DIR and
    its parents are created if missing, once the arguments are known to be right)."""
    if output_dir is None:
        if len(inputs) != 2:
            raise UsageError("give INPUT and OUTPUT, or several inputs with -o DIR")
        return [(inputs[0], inputs[1])]
    if not inputs:
        raise UsageError("no input files given")
    out = Path(output_dir)
    if "-" in inputs:
        raise UsageError("'-' (stdin) cannot be combined with -o DIR")
    pairs = [(i, str(out / (Path(i).stem + suffix))) for i in inputs]
    seen: dict[str, str] = {}
    for i, o in pairs:
        if o in seen:
            raise UsageError(f"{i} and {seen[o]} would both be written to {o}")
        seen[o] = i
    make_output_dir(out)
    return pairs


def make_output_dir(out: Path) -> None:
    """Create the ``-o`` folder and its parents if missing (as ``crdr eval -o`` does)."""
    if out.is_dir():
        return
    if out.exists() or out.is_symlink():
        raise CrdrError(f"output folder {out} is not a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise CrdrError(f"cannot create output folder {out}: {e.strerror or e}") from None


def check_paths(src: str, dst: str) -> None:
    if dst != "-":
        parent = Path(dst).parent
        if not parent.is_dir():
            raise CrdrError(f"cannot write {dst}: folder {parent} does not exist")


def check_writable(pairs) -> None:
    """Check that every output can be written, before any model work: each folder once
    (a temporary file is created and removed there, see
    :func:`crdr_codec.fileutil.check_writable`). Raises a one-line error naming it."""
    from ..fileutil import check_writable as check

    folders: set[str] = set()
    for _, dst in pairs:
        if dst == "-":
            continue
        if os.path.exists(dst) and not os.path.isfile(dst):  # a device, a pipe, a folder
            check(dst)  # (a folder is refused; a device or pipe is written in place)
            continue
        folder = os.path.dirname(os.path.realpath(dst))  # where the temporary file goes
        if folder not in folders:
            folders.add(folder)
            check(dst)


def output_exists(dst: str) -> bool:
    """Whether ``--skip-existing`` skips the output ``dst``: a file is there already
    (stdout and devices such as /dev/null never are). The one test of "already done"
    that every batch command uses, so a rerun of an interrupted batch resumes it."""
    return dst != "-" and os.path.isfile(dst)


class OutputRefused(CrdrError):
    """An output that is not written (exists, or is an input); the message names it."""


class OutputGuard:
    """The overwrite policy of encode and decode.

    An output is never one of the inputs (by any spelling, symlink or hard link; not even
    with --force), and an existing output file is replaced only with --force; with
    --skip-existing its input is skipped instead. Targets that are not regular files
    (/dev/null, a pipe) are written, not replaced.
    """

    def __init__(self, inputs, force: bool, skip_existing: bool = False) -> None:
        self.force = force
        self.skip_existing = skip_existing
        self.inputs: dict[tuple[int, int], str] = {}
        for i in inputs:
            if i == "-":
                continue
            try:
                st = os.stat(i)
            except OSError:
                continue  # reported when it is read
            self.inputs[(st.st_dev, st.st_ino)] = i

    def _stat(self, dst: str):
        if dst == "-":
            return None
        try:
            return os.stat(dst)
        except OSError:
            return None  # nothing there (or a dangling link): a new file

    def skips(self, dst: str) -> bool:
        """With ``--skip-existing``: whether ``dst`` is already there (see
        :func:`output_exists`), so its input is skipped."""
        return self.skip_existing and output_exists(dst)

    @staticmethod
    def skipped(src: str, dst: str) -> str:
        """The per-file line of a skipped input."""
        return f"{display_name(src)} -> {dst}: skipped (exists)"

    def check_not_input(self, dst: str) -> None:
        """Refuse ``dst`` if it is one of the inputs."""
        st = self._stat(dst)
        same = None if st is None else self.inputs.get((st.st_dev, st.st_ino))
        if same is not None:
            what = "the input file" if same == dst else f"the input file {same}"
            raise OutputRefused(f"output {dst} is {what}; refusing to overwrite it "
                                "(not even with --force)")

    def check(self, dst: str) -> None:
        """Refuse ``dst`` before any work on it (checked again, atomically, when written)."""
        self.check_not_input(dst)
        st = self._stat(dst)
        if st is not None and stat.S_ISREG(st.st_mode) and not self.force:
            raise self.exists(dst)

    @staticmethod
    def exists(dst: str) -> CrdrError:
        return OutputRefused(f"{dst} already exists; use --force (-f) to replace it")

    def write(self, dst: str, writer) -> None:
        """Run ``writer(replace)``; an output created meanwhile is still not replaced."""
        try:
            writer(self.force)
        except OutputExistsError:
            raise self.exists(dst) from None


def refuse_terminal(dst: str) -> None:
    """Binary output to a terminal is never what the user meant."""
    if dst == "-" and sys.stdout.isatty():
        raise CrdrError("refusing to write binary data to a terminal; redirect it (> file) "
                        "or give an output file")


def check_weights_file(weights: str | None) -> None:
    """The model file ``crdr encode`` will load (``--weights``, else ``$CRDR_WEIGHTS`` or the
    shipped one) exists: checked before any model work, the error names the file."""
    from ..errors import WeightsError
    from ..weights_search import ENV_DEFAULT, default_weights_file

    p = Path(weights).expanduser() if weights is not None else default_weights_file()
    source = "--weights" if weights is not None else (
        f"${ENV_DEFAULT}" if os.environ.get(ENV_DEFAULT) else "the shipped weights")
    if p.is_dir():
        raise WeightsError(f"weights file {p} ({source}) is a folder; give a .crdrm or .pt file")
    if not p.is_file():
        raise WeightsError(f"weights file not found: {p} ({source})")


def read_input(src: str) -> bytes | str:
    """An input for :func:`~crdr_codec.image_io.read_image`: stdin's bytes, or the path."""
    return sys.stdin.buffer.read() if src == "-" else src


def read_crdr(src: str) -> bytes:
    """The bytes of a .crdr input (``-`` is stdin); a missing or unreadable file is a
    one-line error naming it."""
    if src == "-":
        return sys.stdin.buffer.read()
    p = Path(src)
    if not p.exists():
        raise CrdrError(f"{src}: no such file")
    if not p.is_file():
        raise CrdrError(f"{src}: not a file")
    try:
        return p.read_bytes()
    except OSError as e:
        raise CrdrError(f"{src}: cannot read ({e.strerror or e})") from None


def write_output(dst: str, data: bytes, replace: bool = True) -> None:
    """Write ``data`` to stdout (``-``) or atomically to the file ``dst``."""
    from ..fileutil import atomic_write_bytes

    if dst == "-":
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
    else:
        atomic_write_bytes(dst, data, replace=replace)


# --------------------------------------------------------------------------- batch


def run_batch(pairs, work, quiet: bool) -> int:
    """Run work(src, dst) -> message for each pair; report failures and keep going.

    Input notices raised by the work (an input reduced to 8 bits, an animation's first
    frame) become one ``crdr: note:`` line each, unless ``quiet``; other warnings are
    shown as Python shows them. In a batch each result line
    starts with ``[k/N]``: that is the progress display (no bar to collide with).

    Returns:
        The number of files that failed (each reported by name; with several files a
        summary line follows).
    """
    failed = 0
    n = len(pairs)
    for k, (src, dst) in enumerate(pairs, 1):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                msg = work(src, dst)
            except CrdrError as e:
                failed += 1
                msg = None
                err = e if isinstance(e, OutputRefused) else named(e, src)
                click.echo(error_line(err), err=True)
        for w in caught:
            if not issubclass(w.category, InputNotice):  # not ours: as Python shows it
                warnings.showwarning(w.message, w.category, w.filename, w.lineno)
            elif not quiet:
                click.echo(note_line(w, src), err=True)
        if not quiet:
            if msg:
                click.echo(f"[{k}/{n}] {msg}" if n > 1 else msg, err=True)
    if failed and n > 1:
        click.echo(f"crdr: {failed} of {plural(n, 'file')} failed", err=True)
    return failed
