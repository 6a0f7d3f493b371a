"""``crdr export``: a torch weights file -> the model package the runtime loads."""

from __future__ import annotations

from pathlib import Path

import click

from ..errors import CrdrError


@click.command("export")
@click.argument("weights", type=click.Path(dir_okay=False))
@click.argument("output", required=False, type=click.Path(dir_okay=False))
@click.option("--force", "-f", is_flag=True, help="Replace OUTPUT if it exists.")
def export(weights: str, output: str | None, force: bool) -> None:
    """Turn a weights file (.pt, training) into a model package (.crdrm, the runtime).

    The package holds the ONNX graphs of g_a, h_a and g_s and the integer entropy model,
    tagged with the weights' model id; encode, decode and view load it without torch.
    OUTPUT defaults to WEIGHTS with the suffix .crdrm. Needs the train extra (torch, onnx).

    \b
      crdr export runs/lite/stage3.pt
      crdr decode photo.crdr out.png --weights runs/lite/stage3.crdrm
    """
    from ..extras import require

    out = Path(output) if output else Path(weights).with_suffix(".crdrm")
    if not Path(weights).is_file():
        raise CrdrError(f"weights file not found: {weights}")
    if out.suffix != ".crdrm":
        raise CrdrError(f"output {out} does not end in .crdrm")
    if out.exists() and not force:
        raise CrdrError(f"{out} exists (use --force to replace it)")
    require("torch", "crdr export")
    require("onnx", "crdr export")
    from ..nn.export import export_package
    from ..nn.weights import load_weights

    model, fp = load_weights(weights)
    export_package(model, fp, out)
    click.echo(f"{weights} -> {out}: model {fp[:4].hex()}, {out.stat().st_size:,} bytes")
