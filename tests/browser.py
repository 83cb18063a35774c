"""A headless Chromium driven through ChromeDriver's W3C WebDriver protocol (JSON over HTTP on
loopback; no client package needed). Chromium and ChromeDriver come from Debian's packages
(tests/install_browser.sh), or CHROME and CHROMEDRIVER name them.

The flags: headless, no sandbox (CI runs as root), and nothing that reaches for the network
(background networking, component updates, sync, QUIC), in a fresh profile."""
from __future__ import annotations

import base64
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.request

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--window-size=1280,2000"]


def executables() -> tuple[str, str]:
    chrome = os.environ.get("CHROME") or shutil.which("chromium") or shutil.which("google-chrome")
    driver = os.environ.get("CHROMEDRIVER") or shutil.which("chromedriver")
    if not chrome or not driver:
        raise RuntimeError("Chromium and ChromeDriver are not installed: run tests/install_browser.sh "
                           "(the README's test command does), or set CHROME and CHROMEDRIVER")
    return chrome, driver


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Browser:
    def __enter__(self):
        chrome, driver = executables()
        self.port = _free_port()
        self.profile = tempfile.mkdtemp(prefix="ane_chromium_")
        self.driver = subprocess.Popen([driver, f"--port={self.port}"], stdout=subprocess.DEVNULL,
                                       stderr=subprocess.DEVNULL)
        deadline = time.time() + 30
        while True:
            try:
                self._call("GET", "/status")
                break
            except OSError:
                if time.time() > deadline:
                    raise
                time.sleep(0.2)
        caps = {"capabilities": {"alwaysMatch": {"browserName": "chrome", "goog:chromeOptions": {
            "binary": chrome, "args": FLAGS + [f"--user-data-dir={self.profile}"]}}}}
        self.session = self._call("POST", "/session", caps)["sessionId"]
        return self

    def __exit__(self, *exc):
        try:
            self._call("DELETE", f"/session/{self.session}")
        finally:
            self.driver.terminate()
            self.driver.wait(timeout=30)
            shutil.rmtree(self.profile, ignore_errors=True)

    def _call(self, method: str, path: str, body: dict | None = None):
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", data=data, method=method,
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=120) as response:
            value = json.loads(response.read())["value"]
        return value

    def open(self, url: str) -> None:
        self._call("POST", f"/session/{self.session}/url", {"url": url})

    def run(self, script: str, *args):
        """The value of ``script`` (a function body: ``return …``) run in the page."""
        return self._call("POST", f"/session/{self.session}/execute/sync", {"script": script, "args": list(args)})

    def screenshot(self) -> bytes:
        return base64.b64decode(self._call("GET", f"/session/{self.session}/screenshot"))
