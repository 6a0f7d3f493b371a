"""``crdr decode``: .crdr files to images (torch is imported only when it runs)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from ..errors import ImageError, UsageError
from ..formats import DEFAULT_EXTENSION, FORMAT_NAMES
from ..process import set_threads, tune_malloc
from .common import (
    IN_PATHS,
    OutputGuard,
    check_overwrite_options,
    check_paths,
    check_ray_options,
    check_writable,
    device_option,
    display_name,
    force_option,
    max_pixels_option,
    plan,
    quiet_option,
    ray_option,
    ray_workers_option,
    read_crdr,
    refuse_terminal,
    run_batch,
    skip_existing_option,
    threads_option,
    write_output,
)


@click.command("decode")
@click.argument("inputs", nargs=-1, required=True, type=IN_PATHS)
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
@click.option("--jpeg-quality", type=click.IntRange(1, 100), default=None, metavar="1-100",
              help="Quality of JPEG output (default 95, with 4:4:4 chroma); only for JPEG "
                   "output.")
@click.option("--weights", type=click.Path(),
              help="Model file, or a folder of model files (*.crdrm, *.pt), searched first for "
                   "the model id in each file's header; then the folders in $CRDR_WEIGHTS_PATH, "
                   "then the shipped models.")
@device_option
@max_pixels_option
@click.option("--strip", is_flag=True,
              help="Write no metadata from the file (ICC profile, EXIF, XMP) into the image.")
@threads_option
@force_option
@skip_existing_option
@quiet_option
@ray_option
@ray_workers_option
def decode(inputs, output_dir, beta, fmt, jpeg_quality, weights, device, max_pixels, strip,
           threads, force, skip_existing, quiet, ray, ray_workers) -> None:
    """Decompress .crdr files into images; beta picks the distortion/realism balance.

    The weights are chosen by the model id in each file's header (see --weights).
    An existing output file is not replaced unless --force is given (--skip-existing
    skips its input instead). The -o folder is created if missing.

    \b
      crdr decode in.crdr out.png --beta 0
      crdr decode *.crdr -o decoded/ --beta 3.84
      crdr decode compressed/*.crdr -o decoded/ --ray --skip-existing
    """
    tune_malloc()
    set_threads(threads)
    from ..config import check_beta
    from ..image_io import _canonical_format, format_from_extension

    check_beta(beta)

    def output_format(name_or_path, of_name: bool = False) -> str:
        """The format a --format value or an output name means (else a usage error)."""
        try:
            return _canonical_format(name_or_path) if of_name else format_from_extension(
                name_or_path)
        except ImageError as e:
            raise UsageError(str(e)) from None

    fmt_name = output_format(fmt, of_name=True) if fmt is not None else "png"
    check_overwrite_options(force, skip_existing)
    check_ray_options(ray, ray_workers, output_dir)
    pairs = plan(inputs, output_dir, DEFAULT_EXTENSION[fmt_name])
    guard = OutputGuard([src for src, _ in pairs], force, skip_existing)
    formats = set()  # of the outputs
    for src, dst in pairs:
        check_paths(src, dst)
        if output_dir is None:
            guard.check_not_input(dst)  # a batch checks each file in turn
        refuse_terminal(dst)
        formats.add(fmt_name if dst == "-" or fmt is not None else None)
        if dst != "-" and output_dir is None:
            if fmt is None:
                formats.add(output_format(dst))  # an unknown extension fails before any work
            elif Path(dst).suffix:
                try:
                    implied = format_from_extension(dst)
                except ImageError:  # not an image extension: --format decides
                    implied = fmt_name
                if implied != fmt_name:
                    raise UsageError(f"output {dst} has the extension of {implied}, but --format "
                                    f"is {fmt_name}; make them agree")
            if not guard.skips(dst):
                guard.check(dst)
    if jpeg_quality is not None and "jpeg" not in formats:
        raise UsageError("--jpeg-quality is for JPEG output (.jpg or --format jpeg)")
    check_writable([(src, dst) for src, dst in pairs if not guard.skips(dst)])
    from ..batch import DecodeSettings, Decoder

    settings = DecodeSettings(beta=beta, jpeg_quality=jpeg_quality, strip=strip,
                              max_pixels=max_pixels, weights=weights, device=device,
                              threads=threads)
    if ray:
        from ..raybatch import run_cli

        run_cli("decode", pairs, guard, settings, output_dir, quiet, ray_workers,
                fmt=fmt_name)
        return
    decoder = Decoder(settings, note=None if quiet else lambda line: click.echo(line, err=True))

    def work(src: str, dst: str) -> str:
        if guard.skips(dst):
            return guard.skipped(src, dst)
        guard.check(dst)
        # the format of a file output follows --format, else its extension
        res = decoder.decode(read_crdr(src), fmt_name if dst == "-" or fmt is not None
                             else format_from_extension(dst))
        guard.write(dst, lambda replace: write_output(dst, res.data, replace))
        return res.line(display_name(src), "<stdout>" if dst == "-" else dst)

    if run_batch(pairs, work, quiet):
        sys.exit(1)
