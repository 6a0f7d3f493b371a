"""``crdr encode``: images to .crdr files (torch is imported only when it runs)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from ..config import Q_MAX
from ..errors import ParameterError, UsageError
from ..process import set_threads, tune_malloc
from .common import (
    EXIT_BPP_NOT_REACHED,
    IN_PATHS,
    OutputGuard,
    check_overwrite_options,
    check_paths,
    check_weights_file,
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
    read_input,
    refuse_terminal,
    run_batch,
    skip_existing_option,
    threads_option,
    weights_option,
    write_output,
)


def _stderr_is_terminal() -> bool:
    return sys.stderr.isatty()


@click.command("encode")
@click.argument("inputs", nargs=-1, required=True, type=IN_PATHS)
@click.option("-o", "--output-dir", type=click.Path(file_okay=False),
              help="Write INPUT... to this folder as <name>.crdr.")
@click.option("-q", "--q", "q", type=float, default=None,
              help=f"Quality level in [0, {Q_MAX:g}] (default 2): 0 = smallest file, "
                   f"{Q_MAX:g} = best quality.")
@click.option("--bpp", "target_bpp", type=float,
              help="Instead of --q: find the q whose real file size is closest to this "
                   "many bits per pixel without exceeding it (in steps of 1/128; a few "
                   "encodes, counted in the result line). If even q=0 is larger, that "
                   f"file is written with a warning and the exit code is {EXIT_BPP_NOT_REACHED}.")
@click.option("--refine", type=int, default=0, show_default=True, metavar="STEPS",
              help="Search STEPS gradient steps for a better latent of each image: a slower "
                   "encode and a smaller file at the same PSNR, decoded like any other "
                   "(20 steps on Kodak: 7 % fewer bits, 11-15 s per 768x512 image on 2 CPU "
                   "cores instead of ~1 s).")
@click.option("--alpha", type=click.Choice(["refuse", "drop"]), default="refuse", show_default=True,
              help="What to do with an image that has transparency.")
@weights_option
@device_option
@max_pixels_option
@click.option("--strip", is_flag=True,
              help="Store no metadata (ICC profile, EXIF, XMP); by default they are carried.")
@threads_option
@force_option
@skip_existing_option
@quiet_option
@ray_option
@ray_workers_option
def encode(inputs, output_dir, q, target_bpp, refine, alpha, weights, device, max_pixels, strip,
           threads, force, skip_existing, quiet, ray, ray_workers) -> None:
    """Compress images into .crdr files.

    An existing output file is not replaced unless --force is given (--skip-existing
    skips its input instead). The -o folder is created if missing.

    \b
      crdr encode in.png out.crdr --q 2.5
      crdr encode *.png -o compressed/ --q 1
      crdr encode in.png out.crdr --q 2 --refine 20
      cat in.png | crdr encode - - --bpp 0.3 > out.crdr
      crdr encode photos/*.jpg -o compressed/ --ray --skip-existing
    """
    tune_malloc()
    set_threads(threads)
    from ..config import check_q, check_refine

    if q is not None and target_bpp is not None:
        raise UsageError("give either --q or --bpp, not both")
    q = check_q(2.0 if q is None else q)
    refine = check_refine(refine)
    if target_bpp is not None and not 0 < target_bpp < float("inf"):
        raise ParameterError(f"--bpp must be a positive number, got {target_bpp:g}")
    check_overwrite_options(force, skip_existing)
    check_ray_options(ray, ray_workers, output_dir)
    pairs = plan(inputs, output_dir, ".crdr")
    guard = OutputGuard([src for src, _ in pairs], force, skip_existing)
    for src, dst in pairs:
        check_paths(src, dst)
        if output_dir is None:
            guard.check_not_input(dst)  # a batch checks each file in turn
        if dst != "-" and Path(dst).suffix.lower() != ".crdr":
            # `crdr encode a.png b.png` (a forgotten -o) must not replace b.png with .crdr bytes
            raise UsageError(
                f"output {dst} does not end in .crdr; refusing to write compressed data there "
                "(to encode several images use -o DIR)"
            )
        refuse_terminal(dst)
        if output_dir is None and not guard.skips(dst):
            guard.check(dst)
    todo = [(src, dst) for src, dst in pairs if not guard.skips(dst)]
    check_writable(todo)  # an unwritable folder costs no encode
    if todo:
        check_weights_file(weights)  # before torch is imported; the error names the file
    from ..batch import EncodeSettings, Encoder

    settings = EncodeSettings(q=q, target_bpp=target_bpp, refine=refine, alpha=alpha,
                              strip=strip, max_pixels=max_pixels, weights=weights,
                              device=device, threads=threads)
    if ray:
        from ..raybatch import run_cli

        run_cli("encode", pairs, guard, settings, output_dir, quiet, ray_workers)
        return
    encoder = Encoder(settings)
    missed: list[str] = []  # files over the --bpp target
    search_lines = not quiet and _stderr_is_terminal()

    def work(src: str, dst: str) -> str:
        if guard.skips(dst):
            return guard.skipped(src, dst)
        guard.check(dst)
        name = display_name(src)

        def step(n: int, q_tried: float, bpp_tried: float) -> None:
            click.echo(f"crdr: {name}: --bpp {target_bpp:g}, try {n}: "
                       f"q={q_tried:.3f} gives {bpp_tried:.4f} bpp", err=True)

        res = encoder.encode(read_input(src), name, progress=step if search_lines else None)
        guard.write(dst, lambda replace: write_output(dst, res.data, replace))
        out = "<stdout>" if dst == "-" else dst
        if res.missed:
            missed.append(src)
            click.echo(res.warning(name, out), err=True)
        return res.line(name, out)

    if run_batch(pairs, work, quiet):
        sys.exit(1)
    if missed:
        sys.exit(EXIT_BPP_NOT_REACHED)
