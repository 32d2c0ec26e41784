"""A real headless Chromium, driven through chromedriver's W3C WebDriver HTTP API (urllib only).

Debian's ``chromium`` and ``chromium-driver`` (``.ci/run`` installs them). :func:`open_page`
loads a local file, runs a script in it and takes screenshots of the page and of its elements.
"""
from __future__ import annotations

import base64
import json
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage"]


def executables() -> tuple[str | None, str | None]:
    """(chromium, chromedriver) on PATH, or None for what is missing."""
    return shutil.which("chromium"), shutil.which("chromedriver")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Page:
    """One WebDriver session on one page."""

    def __init__(self, base: str, session: str):
        self.url = f"{base}/session/{session}"

    def call(self, method: str, path: str, body: dict | None = None):
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url + path, data=data, method=method,
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=120) as response:
            return json.loads(response.read())["value"]

    def run(self, script: str):
        """Run JavaScript in the page (``return`` gives the value back)."""
        return self.call("POST", "/execute/sync", {"script": script, "args": []})

    def screenshot(self, width: int, height: int) -> bytes:
        """PNG of the whole page, the window resized to ``width`` x ``height`` first."""
        self.call("POST", "/window/rect", {"width": width, "height": height})
        return base64.b64decode(self.call("GET", "/screenshot"))

    def element_screenshots(self, css: str) -> list[bytes]:
        """PNG of every element matching ``css``."""
        elements = self.call("POST", "/elements", {"using": "css selector", "value": css})
        return [base64.b64decode(self.call("GET", f"/element/{next(iter(e.values()))}/screenshot"))
                for e in elements]


@contextmanager
def open_page(path: Path, width: int = 1300):
    """Open ``path`` in a fresh headless Chromium (fresh profile) and yield a :class:`Page`."""
    chromium, chromedriver = executables()
    port = _free_port()
    driver = subprocess.Popen([chromedriver, f"--port={port}"], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                with urllib.request.urlopen(f"{base}/status", timeout=2) as response:
                    if json.loads(response.read())["value"]["ready"]:
                        break
            except OSError:
                time.sleep(0.1)
        with tempfile.TemporaryDirectory(prefix="druwas-chromium-") as profile:
            options = {"binary": chromium, "args": FLAGS + [f"--user-data-dir={profile}", f"--window-size={width},900"]}
            body = json.dumps({"capabilities": {"alwaysMatch": {"browserName": "chrome",
                                                                "goog:chromeOptions": options}}}).encode()
            request = urllib.request.Request(f"{base}/session", data=body, method="POST",
                                             headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(request, timeout=120) as response:
                session = json.loads(response.read())["value"]["sessionId"]
            page = Page(base, session)
            try:
                page.call("POST", "/url", {"url": path.resolve().as_uri()})
                yield page
            finally:
                page.call("DELETE", "")
    finally:
        driver.terminate()
        driver.wait(timeout=30)
