"""Fixtures for the real-browser tests (tests/browser and the reliability soak): Debian's Chromium,
a live `streamlit run app.py` server and a Playwright page.

They live at the top of the suite so that one session-scoped Chromium serves every directory: two
sync Playwright instances in one thread refuse to start.

Chromium comes from apt (never `playwright install`, which downloads from the internet); when it is
missing the session installs it once and fails loudly if it cannot, because a silently skipped
browser test would hide exactly the regressions (page switches, fragments) it exists to catch.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOT_DIR = REPO_ROOT / "test-artifacts" / "screenshots"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SERVER_START_TIMEOUT_S = 90.0


def _install_chromium() -> None:
    """apt-get install chromium (as root); pytest.fail with the reason when that is impossible."""
    if shutil.which("apt-get") is None:
        pytest.fail(f"{CHROMIUM} is missing and apt-get is not available to install it; "
                    "install Debian's 'chromium' package to run the browser tests.")
    if os.geteuid() != 0:
        pytest.fail(f"{CHROMIUM} is missing; run `apt-get install -y chromium` as root "
                    "(the browser tests need Debian's Chromium).")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "update"], ["apt-get", "install", "-y", "--no-install-recommends", "chromium"]):
        result = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
        if result.returncode != 0:
            pytest.fail(f"`{' '.join(command)}` failed (exit {result.returncode}); the browser tests need "
                        f"Debian's chromium at {CHROMIUM}.\n{result.stderr[-2000:]}")
    if not CHROMIUM.exists():
        pytest.fail(f"apt-get installed 'chromium' but {CHROMIUM} still does not exist.")


@pytest.fixture(scope="session")
def chromium_path() -> Path:
    """Debian's Chromium, installed on first use."""
    if not CHROMIUM.exists():
        _install_chromium()
    return CHROMIUM


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_healthy(url: str, server: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + SERVER_START_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"streamlit exited with status {server.returncode} before serving:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                if response.read().decode().strip() == "ok":
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.5)
    pytest.fail(f"streamlit did not report healthy within {SERVER_START_TIMEOUT_S:.0f} s:\n{log.read_text()[-3000:]}")


@pytest.fixture(scope="session")
def server_runs_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The server's runs folder ($CAM_EXPLORER_RUNS): tests put evaluations there for the metrics pages."""
    return tmp_path_factory.mktemp("server-runs")


@pytest.fixture(scope="session")
def server_models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The server's model cards folder ($CAM_EXPLORER_MODELS): tests put their cards there."""
    return tmp_path_factory.mktemp("server-models")


@pytest.fixture(scope="session")
def app_url(app_server) -> str:
    return app_server[0]


@pytest.fixture(scope="session")
def app_server_pid(app_server) -> int:
    return app_server[1].pid


@pytest.fixture(scope="session")
def app_server(tmp_path_factory: pytest.TempPathFactory, server_runs_dir: Path,
               server_models_dir: Path) -> Iterator[tuple[str, subprocess.Popen]]:
    """`streamlit run app.py` from the repository root with this interpreter, stopped at teardown:
    (its URL, its process)."""
    port = _free_port()
    log = tmp_path_factory.mktemp("streamlit") / "server.log"
    command = [
        sys.executable, "-m", "streamlit", "run", "app.py",
        "--server.headless", "true", "--server.address", "127.0.0.1", "--server.port", str(port),
        "--server.fileWatcherType", "none", "--browser.gatherUsageStats", "false",
    ]
    with log.open("w") as sink:
        # The folders the app may read: the tests' own (datasets they make) and the default cache.
        from explorer.datasets.synthetic import default_cache_root

        roots = os.pathsep.join(map(str, (tmp_path_factory.getbasetemp(), server_runs_dir, default_cache_root())))
        server = subprocess.Popen(command, cwd=REPO_ROOT, stdout=sink, stderr=subprocess.STDOUT,
                                  env={**os.environ, "CAM_EXPLORER_RUNS": str(server_runs_dir),
                                       "CAM_EXPLORER_ROOTS": roots, "CAM_EXPLORER_MODELS": str(server_models_dir)})
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(url, server, log)
        yield url, server
    finally:
        server.terminate()
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


@pytest.fixture(scope="session")
def browser(chromium_path: Path):
    """One headless Chromium for the session, driven by Playwright's sync API."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=str(chromium_path), args=CHROMIUM_ARGS)
        try:
            yield instance
        finally:
            instance.close()


@contextmanager
def fresh_page(browser, width: int, height: int):
    """A page of its own (a new Streamlit session) at width x height, closed afterwards."""
    context = browser.new_context(viewport={"width": width, "height": height})
    tab = context.new_page()
    tab.set_default_timeout(120_000)
    try:
        yield tab
    finally:
        context.close()


@pytest.fixture
def page(browser, app_url: str):
    """A fresh 1600x2000 page (tall, so a screenshot shows a whole page) (a new Streamlit session) per test."""
    with fresh_page(browser, 1600, 2000) as tab:
        yield tab


@pytest.fixture
def projector(browser, app_url: str):
    """A fresh page at a projector's 1280x720 (a new Streamlit session) per test."""
    with fresh_page(browser, 1280, 720) as tab:
        yield tab


@pytest.fixture(scope="session")
def screenshot_dir() -> Path:
    SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
    return SCREENSHOT_DIR
