"""The reliability suite reuses the browser tests' fixtures (Chromium, a live server) for its soak."""

from tests.browser.conftest import (  # noqa: F401
    app_server,
    app_server_pid,
    app_url,
    browser,
    chromium_path,
    screenshot_dir,
    server_runs_dir,
)
