"""Headless Chromium and a localhost file server, shared by the browser test modules.

Without chromium the browser tests are skipped on a developer machine but fail under CI
(CI=true), so a missing install step can never turn them into silent passes.
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import importlib.util
import os
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
LAUNCH_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
               "--disable-sync", "--no-first-run", "--disable-dev-shm-usage"]


def require_browser() -> None:
    """Skip the calling module where no browser is installed (fail instead under CI)."""
    if CHROMIUM is None or not importlib.util.find_spec("playwright"):
        if os.environ.get("CI") == "true":
            raise RuntimeError("browser tests need Debian's chromium and playwright (make browser installs them)")
        pytest.skip("chromium or playwright not installed (run `make browser`)", allow_module_level=True)


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


@contextlib.contextmanager
def serve_directory(folder: Path) -> Iterator[str]:
    """Serve ``folder`` on a free loopback port; yields the base URL."""
    handler = functools.partial(_QuietHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()



