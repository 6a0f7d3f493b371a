"""``crdr info``: the header of .crdr files (no model, no torch)."""

from __future__ import annotations

import json
import sys

import click

from ..errors import CrdrError
from .common import IN_PATHS, display_name, error_line, named, read_crdr


def _info_line(d: dict) -> str:
    """The one line ``crdr info`` prints for a file described by ``d``."""
    extra = "".join(
        f", {s['name']}" + (f"={s['value']:g}" if isinstance(s.get("value"), float) else
                            f"={s['value']}" if "value" in s else f" ({s['bytes']} bytes)")
        for s in d["sections"])
    return (f"{d['file']}: crdr v{d['format_version']}, {d['width']}x{d['height']}, "
            f"q={d['q']:g}, {d['file_bytes']} bytes ({d['bpp']:.4f} bpp; header "
            f"{d['header_bytes']}, payload {d['payload_bytes']}), model {d['model_id']}{extra}")


@click.command("info")
@click.argument("files", nargs=-1, required=True, type=IN_PATHS)
@click.option("--json", "as_json", is_flag=True, help="Print JSON (one object, or a list).")
def info(files, as_json) -> None:
    """Show the header of .crdr files (no model needed)."""
    from ..bitstream import file_info

    rows, failed = [], 0
    for f in files:
        try:
            d = {"file": display_name(f), **file_info(read_crdr(f))}
        except CrdrError as e:
            failed += 1
            click.echo(error_line(named(e, f)), err=True)
            continue
        rows.append(d)
        if not as_json:
            click.echo(_info_line(d))
    if as_json and rows:
        click.echo(json.dumps(rows[0] if len(files) == 1 else rows, indent=2))
    if failed:
        sys.exit(1)
