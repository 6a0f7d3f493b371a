"""``crdr bench``: speed and memory against the alternatives (the work is in
:mod:`crdr_codec.eval.bench`)."""

from __future__ import annotations

import click

from ..process import tune_malloc


@click.command("bench")
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
    from ..extras import require

    require("torch", "crdr bench", "train,eval")
    tune_malloc()
    from ..eval.bench import BenchConfig, format_bench, run_bench, write_json

    cfg = BenchConfig.from_options(images, configs=configs, anchors=anchors, weights=weights, mbt=mbt,
                                   q=q, beta=beta, repeats=repeats, threads=threads, baseline=baseline)
    report = run_bench(cfg)  # checks the settings before timing anything
    click.echo(format_bench(report))
    if json_path:
        write_json(json_path, report)
