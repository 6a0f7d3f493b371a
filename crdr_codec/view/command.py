"""The ``crdr view`` command (registered in :mod:`crdr_codec.cli`)."""

from __future__ import annotations

import signal
import sys
from pathlib import Path

import click

from ..errors import CrdrError


def _named(e: CrdrError, name: str) -> CrdrError:
    """The error with the file's name in front, unless its message names it already."""
    msg = str(e)
    return e if name in msg else CrdrError(f"{name}: {msg}")


def _read_file(path: str) -> bytes:
    p = Path(path)
    if not p.exists():
        raise CrdrError(f"{path}: no such file")
    if not p.is_file():
        raise CrdrError(f"{path}: not a file")
    try:
        return p.read_bytes()
    except OSError as e:
        raise CrdrError(f"{path}: cannot read ({e.strerror or e})") from None


def open_session(file: str, original: str | None = None, weights: str | None = None,
                 device: str = "auto", anchors: str = "avif,webp,jpeg", lpips: bool = True,
                 threads: int | None = None):
    """Check the inputs, load the model and entropy-decode the file: every user error
    is raised here (naming the file), before any server starts.

    Returns:
        a :class:`~crdr_codec.view.session.ViewSession`.
    """
    from ..bitstream import unpack
    from ..eval.anchors import parse_anchor_names
    from ..limits import DEFAULT_MAX_PIXELS, check_pixels

    names = parse_anchor_names(anchors)
    data = _read_file(file)
    try:  # header checks first: a damaged or forged file costs no model work
        header, _, _ = unpack(data)
        check_pixels(header.width, header.height, DEFAULT_MAX_PIXELS)
    except CrdrError as e:
        raise _named(e, file) from None
    rgb = meta = None
    if original is not None:
        from ..image_io import read_image

        found: list = []
        rgb = read_image(original, alpha="drop", meta=found)  # its errors name the file
        meta = found[0] if found else None
        if rgb.shape[:2] != (header.height, header.width):
            raise CrdrError(
                f"{original}: the original is {rgb.shape[1]}x{rgb.shape[0]}, but {file} is "
                f"{header.width}x{header.height}; give the image it was encoded from")
    from ..codec import Codec
    from ..weights_search import WeightsSearch

    search = WeightsSearch(weights, device=device, threads=threads)
    try:
        model, fingerprint, _ = search.find(header.model_id)
    except CrdrError as e:
        raise _named(e, file) from None
    codec = Codec(model=model, fingerprint=fingerprint, device=device)
    from .session import ViewSession

    try:
        return ViewSession(codec, data, name=Path(file).name, original=rgb, original_meta=meta,
                           original_name=Path(original).name if original else None,
                           anchors=names, lpips=lpips)
    except CrdrError as e:
        raise _named(e, file) from None


@click.command("view")
@click.argument("file")
@click.argument("original", required=False)
@click.option("--port", type=click.IntRange(0, 65535), default=0, show_default=True,
              help="Port on 127.0.0.1 (0: a free one).")
@click.option("--no-browser", is_flag=True, help="Only print the URL; open no browser.")
@click.option("--beta", type=float, default=None,
              help="Beta shown first (default: the file's suggested beta, else 0).")
@click.option("--anchors", default="avif,webp,jpeg", show_default=True,
              help="Conventional codecs made at the file's size for comparison (needs "
                   "ORIGINAL; comma list, or 'none').")
@click.option("--no-lpips", is_flag=True, help="Measure PSNR only.")
@click.option("--weights", type=click.Path(),
              help="Weights file or folder, searched first for the file's model id "
                   "(as for crdr decode).")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto",
              show_default=True, help="Where the synthesis runs.")
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="CPU threads for the transforms (default: ONNX Runtime's choice).")
@click.option("--verbose", is_flag=True, help="Log every request on stderr.")
def view(file, original, port, no_browser, beta, anchors, no_lpips, weights, device, threads,
         verbose) -> None:
    """Explore a .crdr file in the browser: the realism slider (beta), a zoomed crop,
    and a comparison with ORIGINAL and with AVIF/WebP/JPEG files of the same size.

    \b
      crdr view photo.crdr
      crdr view photo.crdr photo.png --port 8765 --no-browser
    Serves http://127.0.0.1:PORT/ until Ctrl-C.
    """
    from ..config import check_beta
    from ..process import tune_malloc

    tune_malloc()
    if beta is not None:
        check_beta(beta)
    from .server import make_server

    # Bind first: a port in use fails at once, not after the model is loaded.
    server = make_server(None, port, verbose)
    try:
        session = open_session(file, original, weights, device, anchors, lpips=not no_lpips,
                               threads=threads)
    except BaseException:
        server.server_close()
        raise
    server.session = session
    first = session.suggested_beta if beta is None else beta
    session.initial_beta = round(first, 2)
    session.image_png(first)  # the first image is ready when the page asks for it
    url = server.url
    click.echo(f"crdr view: serving {session.name} at {url} (Ctrl-C to stop)")
    sys.stdout.flush()
    if not no_browser:
        import threading

        threading.Thread(target=_open_browser, args=(url,), daemon=True).start()
    old_term = signal.signal(signal.SIGTERM, _interrupt)  # `kill` stops as Ctrl-C does
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        click.echo("crdr view: stopped", err=True)
    finally:
        server.server_close()
        signal.signal(signal.SIGTERM, old_term)


def _open_browser(url: str) -> None:
    import webbrowser

    if not webbrowser.open(url):
        click.echo(f"crdr view: no browser found; open {url} yourself", err=True)


def _interrupt(signum, frame):
    raise KeyboardInterrupt
