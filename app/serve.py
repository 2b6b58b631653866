"""Start the lab's Streamlit server and a real browser: for the tests and app_latency.

    with LabServer(home=tmp) as url, chromium() as browser:
        page = browser.new_page(); page.goto(url)

The browser is Debian's chromium (``/usr/bin/chromium``) driven by
Playwright's Python package; nothing is downloaded.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LabServer:
    """``streamlit run app/main.py`` in a subprocess; the context gives its URL."""

    def __init__(
        self,
        home: str | Path | None = None,
        log: str | Path | None = None,
        omp_threads: str | None = "1",
        **env,
    ):
        """``omp_threads``: OMP_NUM_THREADS for the server (tests: 1, beside their browser
        and pytest; None: as the environment has it, as ``./lab`` runs the server)."""
        self.port = free_port()
        self.env = {
            **os.environ,
            "PYTHONPATH": str(REPO),
            **({"LAB_HOME": str(home)} if home else {}),
            **{k: str(v) for k, v in env.items()},
        }
        if omp_threads is not None:
            self.env["OMP_NUM_THREADS"] = os.environ.get("OMP_NUM_THREADS", omp_threads)
        self.log = Path(log) if log else None
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> str:
        out = self._log = open(self.log, "w") if self.log else subprocess.DEVNULL
        cmd = [
            sys.executable,
            "-m",
            "streamlit",
            "run",
            str(REPO / "app" / "main.py"),
            "--server.port",
            str(self.port),
            "--server.address",
            "127.0.0.1",
            "--server.fileWatcherType",
            "none",
        ]  # the rest from .streamlit/config.toml, as ./lab runs it (cwd=REPO)
        self.proc = subprocess.Popen(cmd, env=self.env, cwd=REPO, stdout=out, stderr=out)
        end = time.monotonic() + 60
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise RuntimeError(f"streamlit exited with {self.proc.returncode}; see {self.log}")
            with (
                contextlib.suppress(OSError),
                urllib.request.urlopen(self.url + "/_stcore/health", timeout=2) as r,
            ):
                if r.read() == b"ok":
                    return self.url
            time.sleep(0.3)
        self.__exit__()
        raise RuntimeError("streamlit did not answer its health check within 60 s")

    def __exit__(self, *exc) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        if self.log:
            self._log.close()


@contextlib.contextmanager
def chromium():
    """A headless chromium browser (Playwright), closed on exit."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def wait_idle(page, timeout: float = 60_000) -> None:
    """Connected, and the script is not running (Streamlit's own e2e tests wait so)."""
    page.wait_for_selector(
        "[data-testid='stApp'][data-test-connection-state='CONNECTED']", timeout=timeout
    )
    page.wait_for_selector(
        "[data-testid='stApp'][data-test-script-state='notRunning']", timeout=timeout
    )
