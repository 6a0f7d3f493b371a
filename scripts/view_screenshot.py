"""Screenshot of `crdr view` for the README (docs/crdr-view.png).

Encodes a Kodak image at q 2 with the shipped weights, serves it in-process with the
original, and drives the system Chromium (Playwright, no browser download) to a
realistic beta, a zoomed region and a side-by-side comparison with the AVIF file of
the same size:

    .venv/bin/python scripts/view_screenshot.py [IMAGE] [-o docs/crdr-view.png]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("image", nargs="?", default=str(ROOT.parent / "shared/data/kodak/kodim23.png"))
    ap.add_argument("-o", "--output", default=str(ROOT / "docs/crdr-view.png"))
    ap.add_argument("--q", type=float, default=2.0)
    ap.add_argument("--beta", type=float, default=3.84)
    ap.add_argument("--reference", default="anchor:avif",
                    help="original, anchor:NAME or beta:B")
    ap.add_argument("--mode", choices=["side", "wipe"], default="side")
    ap.add_argument("--at", default="0.66,0.40", help="zoom centre as fractions of width,height")
    args = ap.parse_args()

    from playwright.sync_api import sync_playwright

    from crdr_codec.codec import Codec
    from crdr_codec.view.command import open_session
    from crdr_codec.view.server import make_server

    with tempfile.TemporaryDirectory() as tmp:
        crdr = Path(tmp) / (Path(args.image).stem + ".crdr")
        from PIL import Image

        crdr.write_bytes(Codec(device="cpu").encode(Image.open(args.image), q=args.q).data)
        session = open_session(str(crdr), args.image, device="cpu")
        session.initial_beta = args.beta
        server = make_server(session)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        try:
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
                page = browser.new_page(viewport={"width": 1440, "height": 720})
                page.goto(server.url)
                page.wait_for_function("document.body.dataset.anchors === 'ready'", timeout=120_000)
                page.select_option("#reference", args.reference)
                page.check(f'input[name="mode"][value="{args.mode}"]')
                fx, fy = (float(v) for v in args.at.split(","))
                box = page.locator("#decoded").bounding_box()
                page.mouse.click(box["x"] + fx * box["width"], box["y"] + fy * box["height"])
                page.wait_for_timeout(1500)  # the reference image and the metrics arrive
                page.screenshot(path=args.output, full_page=True)
                browser.close()
        finally:
            server.shutdown()
            server.server_close()
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
