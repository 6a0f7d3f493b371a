"""The viewer's HTTP server: standard library only, bound to 127.0.0.1.

Routes (GET; HEAD too):

=========================  ============================================================
``/``                      the page (``static/index.html``)
``/static/NAME``           the page's CSS and JavaScript (files of ``static/`` only)
``/api/info``              the file: name, size, q, bytes, bpp, beta range, original
``/api/image?beta=B``      the decoded image at B (PNG, as ``crdr decode --beta B``)
``/api/metrics?beta=B``    bpp, PSNR and LPIPS at B (null without an original)
``/api/original.png``      the original (404 without one)
``/api/anchors``           the conventional codecs at the same size (made on first call)
``/api/anchor/NAME.png``   one anchor's decoded image
``/api/stats``             entropy decodes (always 1), syntheses, cached betas
=========================  ============================================================

Errors are JSON ``{"error": "..."}`` with status 400 (bad beta) or 404. Requests whose
Host header is not this loopback address are refused (403), so a web page elsewhere
cannot reach the viewer through DNS rebinding.
"""

from __future__ import annotations

import json
import math
import re
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from urllib.parse import parse_qs, urlsplit

from ..errors import CrdrError

HOST = "127.0.0.1"

_TYPES = {".html": "text/html; charset=utf-8", ".css": "text/css; charset=utf-8",
          ".js": "text/javascript; charset=utf-8"}


def static_file(name: str) -> bytes | None:
    """A file of the package's ``static/`` folder by plain name, or None."""
    if not re.fullmatch(r"[A-Za-z0-9_-]+\.(html|css|js)", name):
        return None
    f = resources.files("crdr_codec.view").joinpath("static", name)
    return f.read_bytes() if f.is_file() else None


def _json_safe(v):
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, dict):
        return {k: _json_safe(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_json_safe(x) for x in v]
    return v


class _Handler(BaseHTTPRequestHandler):
    server_version = "crdr-view"
    protocol_version = "HTTP/1.1"

    @property
    def session(self):
        return self.server.session

    def log_message(self, format, *args):  # noqa: A002 - quiet unless asked
        if self.server.verbose:
            super().log_message(format, *args)

    # ----------------------------------------------------------------- replies
    def _send(self, status: int, body: bytes, ctype: str, cache: bool = False) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store" if not cache else "private, max-age=3600")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, obj, status: int = 200) -> None:
        self._send(status, json.dumps(_json_safe(obj)).encode(), "application/json")

    def _error(self, status: int, message: str) -> None:
        self._json({"error": message}, status)

    def _png(self, data: bytes | None, what: str) -> None:
        if data is None:
            self._error(404, f"no {what}")
        else:
            self._send(200, data, "image/png")

    # ----------------------------------------------------------------- routing
    def _host_ok(self) -> bool:
        port = self.server.server_address[1]
        host = (self.headers.get("Host") or "").lower()
        return host in (f"{HOST}:{port}", f"localhost:{port}")

    def do_HEAD(self) -> None:  # noqa: N802
        self.do_GET()

    def do_GET(self) -> None:  # noqa: N802
        if not self._host_ok():
            self._error(403, "wrong Host header")
            return
        url = urlsplit(self.path)
        path, query = url.path, parse_qs(url.query)
        try:
            self._route(path, query)
        except CrdrError as e:
            self._error(400, " ".join(str(e).split()))
        except (BrokenPipeError, ConnectionResetError):
            pass  # the browser went away (e.g. a newer request replaced this one)

    def _beta(self, query) -> float:
        raw = (query.get("beta") or ["0"])[0]
        try:
            beta = float(raw)
        except ValueError:
            raise CrdrError(f"beta must be a number, got {raw!r}") from None
        if not math.isfinite(beta):
            raise CrdrError(f"beta must be a number, got {raw!r}")
        return beta

    def _route(self, path: str, query) -> None:
        s = self.session
        if path in ("/", "/index.html"):
            self._send(200, static_file("index.html"), _TYPES[".html"])
        elif path.startswith("/static/"):
            name = path[len("/static/"):]
            body = static_file(name)
            if body is None:
                self._error(404, f"no such file: {path}")
            else:
                self._send(200, body, _TYPES["." + name.rsplit(".", 1)[1]])
        elif path == "/api/info":
            self._json(s.info())
        elif path == "/api/image":
            self._png(s.image_png(self._beta(query)), "image")
        elif path == "/api/metrics":
            self._json(s.metrics(self._beta(query)))
        elif path == "/api/original.png":
            self._png(s.original_png(), "original (give ORIGINAL on the command line)")
        elif path == "/api/anchors":
            self._json({"anchors": [a.to_json() for a in s.anchors()],
                        "note": "" if s.original is not None else
                        "give ORIGINAL to compare with conventional codecs"})
        elif (m := re.fullmatch(r"/api/anchor/([a-z0-9]+)\.png", path)) is not None:
            self._png(s.anchor_png(m.group(1)), f"anchor {m.group(1)}")
        elif path == "/api/stats":
            self._json(s.stats())
        elif path == "/favicon.ico":
            self._send(204, b"", "image/x-icon")
        else:
            self._error(404, f"no such page: {path}")


class ViewServer(ThreadingHTTPServer):
    """A threading HTTP server on 127.0.0.1 serving one :class:`ViewSession`."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, session, port: int = 0, verbose: bool = False) -> None:
        self.session = session
        self.verbose = verbose
        super().__init__((HOST, port), _Handler)

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.server_address[1]}/"


def make_server(session, port: int = 0, verbose: bool = False) -> ViewServer:
    """Bind the viewer to 127.0.0.1:``port`` (0: a free port). ``session`` may be None
    and set later (``crdr view`` binds before it loads anything, so a port in use fails
    fast); the server serves nothing until ``serve_forever``.

    Raises:
        CrdrError: the port cannot be used (taken, or not allowed).
    """
    try:
        return ViewServer(session, port, verbose)
    except OSError as e:
        raise CrdrError(f"cannot listen on {HOST}:{port}: {e.strerror or e}") from None
