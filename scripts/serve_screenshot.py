"""Screenshot the `tessera serve` page after one text-to-video request: docs/images/serve.png.

    python scripts/serve_screenshot.py [--model DIR] [--frames 17] [--steps 25] [--out docs/images/serve.png]

Starts `tessera serve` on 127.0.0.1 (outputs in a temporary folder), types the prompt into the page in
headless Chromium (Debian's `chromium`, driven by Playwright), waits for the video, shows its middle
frame and writes the screenshot. Look at it before committing it.
"""

from __future__ import annotations

import argparse
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.request import urlopen

FLAGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run",
]  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, default=None, help="Model folder (default: the shipped model).")
    ap.add_argument("--prompt", default="a red ball bouncing on grass")
    ap.add_argument("--frames", type=int, default=17)
    ap.add_argument("--steps", type=int, default=25)
    ap.add_argument("--chromium", default="/usr/bin/chromium")
    ap.add_argument("--out", type=Path, default=Path("docs/images/serve.png"))
    args = ap.parse_args()
    from playwright.sync_api import sync_playwright

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "tessera.cli", "serve", "--out", tmp, "--port", str(port)]
        cmd += ["--model", str(args.model)] if args.model else []
        server = subprocess.Popen(cmd, cwd=tmp)
        try:
            url = f"http://127.0.0.1:{port}"
            for _ in range(300):
                try:
                    urlopen(url + "/config", timeout=2)
                    break
                except OSError:
                    time.sleep(0.3)
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=args.chromium, headless=True, args=FLAGS)
                page = browser.new_page(viewport={"width": 1280, "height": 860})
                page.goto(url)
                page.locator("#generate-prompt textarea").fill(args.prompt)
                page.locator("#generate-frames input").fill(str(args.frames))
                page.locator("#tab-generate").get_by_text("Sampling").click()
                page.locator("#generate-steps input").fill(str(args.steps))
                page.locator("#generate-go").click()
                page.wait_for_function(
                    "() => { const v = document.querySelector('#generate-result video');"
                    " return v && v.duration > 0; }",
                    timeout=900_000,
                )
                page.evaluate(
                    "() => new Promise(done => { const v = document.querySelector('#generate-result video');"
                    " v.pause(); v.addEventListener('seeked', done, {once: true});"
                    " v.currentTime = v.duration / 2; })"
                )
                args.out.parent.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(args.out), full_page=True)
                browser.close()
        finally:
            server.terminate()
            server.wait(timeout=30)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
