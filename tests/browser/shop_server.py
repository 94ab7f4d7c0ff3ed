"""The demo shop of the Chromium tests, served on loopback like a site team would serve it.

Paths: the shop's pages (tests/browser/shop/), ``/config.js`` (the site's WEBHOUSE
configuration), ``/webhouse-snippet.js`` (taken verbatim from docs/instrumenting.md, so the
documented snippet is the tested one) and ``/analytics-next/bundles/`` (the unmodified UMD
build of @segment/analytics-next from node_modules, installed by ``make browser-deps``).
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any

import pytest
from playwright.sync_api import Browser, sync_playwright

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
SHOP_DIR = HERE / "shop"
SDK_DIR = HERE / "node_modules" / "@segment" / "analytics-next" / "dist" / "umd"
DOC = REPO / "docs" / "instrumenting.md"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def require_chromium() -> None:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: run `make browser-deps` (apt-get install chromium)")


@contextmanager
def chromium_browser() -> Iterator[Browser]:
    """Debian's Chromium driven by playwright (no browser download), closed on exit."""
    require_chromium()
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


def require_browser_deps() -> None:
    """Fail (never skip) with the fix when Chromium or the SDK is missing."""
    require_chromium()
    if not (SDK_DIR / "index.js").exists():
        pytest.fail(f"{SDK_DIR}/index.js is missing: run `make browser-deps` (npm ci in tests/browser)")


def documented_snippet() -> str:
    match = re.search(
        r"<!-- webhouse-snippet:start -->\s*```js\n(.*?)```\s*<!-- webhouse-snippet:end -->",
        DOC.read_text(),
        re.S,
    )
    assert match, f"no webhouse snippet block in {DOC}"
    return match.group(1)


class _Handler(SimpleHTTPRequestHandler):
    def __init__(self, *args: Any, config: dict[str, Any], **kwargs: Any) -> None:
        self.config = config
        super().__init__(*args, directory=str(SHOP_DIR), **kwargs)

    def _send(self, body: str, content_type: str) -> None:
        data = body.encode()
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        path = self.path.split("?")[0]
        if path == "/config.js":
            self._send(f"window.WEBHOUSE = {json.dumps(self.config)};\n", "text/javascript")
        elif path == "/webhouse-snippet.js":
            self._send(documented_snippet(), "text/javascript")
        else:
            super().do_GET()

    def translate_path(self, path: str) -> str:
        prefix = "/analytics-next/bundles/"
        clean = path.split("?")[0]
        if clean.startswith(prefix):
            name = Path(clean[len(prefix) :]).name
            return str(SDK_DIR / name)
        return super().translate_path(path)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class ShopServer:
    """``with ShopServer() as shop:``; ``shop.url`` is known before the config is set."""

    def __init__(self) -> None:
        self.config: dict[str, Any] = {}
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), partial(_Handler, config=self.config))
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="shop", daemon=True)

    def __enter__(self) -> ShopServer:
        self._thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self._thread.join(timeout=10)


def main() -> None:
    """Serve the demo shop by hand: ``python -m tests.browser.shop_server --collector URL``."""
    import argparse

    parser = argparse.ArgumentParser(description="serve the demo shop against a running collector")
    parser.add_argument("--collector", default="http://127.0.0.1:8088", help="the collector's URL")
    parser.add_argument("--write-key", default="dev-write-key", help="a key of collector.write_keys")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args()
    if not (SDK_DIR / "index.js").exists():
        raise SystemExit(f"{SDK_DIR}/index.js is missing: run `make browser-deps` first")
    config: dict[str, Any] = {}
    httpd = ThreadingHTTPServer(("127.0.0.1", args.port), partial(_Handler, config=config))
    url = f"http://127.0.0.1:{httpd.server_address[1]}"
    config.update(
        {
            "collector": args.collector,
            "writeKey": args.write_key,
            "sdkBase": url,
            "idCookie": True,
            "policyVersion": "demo",
        }
    )
    print(f"demo shop on {url}/index.html (Ctrl-C stops it)", flush=True)
    try:
        httpd.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        httpd.server_close()


if __name__ == "__main__":
    main()
