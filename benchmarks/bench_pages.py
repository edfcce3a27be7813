"""How long each page takes to answer when a person opens it, in a real browser.

    python benchmarks/bench_pages.py [--rounds 3] [--json PATH]

Starts `streamlit run app.py` headless on a free port and drives Debian's Chromium with Playwright
at 1280x720. One untimed round opens every page through the sidebar's navigation (the cold start:
torch imported, models loaded, the first maps computed and cached); then `--rounds` timed rounds
open each page in turn by the same link, and each time is measured from the click until the
page's title is shown and the app reports no run in progress. What is cached is what a person's
second visit finds cached: the models (`st.cache_resource`), the grid maps and figures
(`st.cache_data`); no page's button is pressed, so the heavy work that waits for a button (Table 4,
the sanity cascade, ERF estimates, F-CAM fits) is not counted, only what each page does on opening.

Median per page, milliseconds; target (issue 33): every page <= 3 s median on an idle machine.
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks.bench_app_latency import ARGS, CHROMIUM, IDLE_BUSY, READY, start_server  # noqa: E402
from benchmarks.common import cpu_busy_fraction, describe_machine, machine_info, verdict, write_json  # noqa: E402

TARGET_S = 3.0
ROUTER = (REPO / "app.py").read_text()
TITLES = re.findall(r'st\.Page\("[^"]+", title="([^"]+)"', ROUTER)  # every page the router serves, by its nav label


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--json", dest="json_path", default=None)
    return p.parse_args(argv)


def open_by_link(page, title: str) -> float:
    """Seconds from clicking the page's navigation link until a new title shows (every page has its
    own) and the app reports no run in progress."""
    before = page.locator("h1").first.inner_text()
    link = page.locator('[data-testid="stSidebarNavLink"]', has_text=title).first
    start = time.perf_counter()
    link.click()
    page.wait_for_function(
        """before => {
            const app = document.querySelector('[data-testid="stApp"]');
            const heading = document.querySelector('h1');
            return heading && heading.innerText !== before
                && app.getAttribute('data-test-script-state') === 'notRunning';
        }""", arg=before, polling=20)
    return time.perf_counter() - start


def main(argv=None) -> int:
    args = parse_args(argv)
    info = machine_info("cpu")
    print(describe_machine(info))
    busy = cpu_busy_fraction()
    info["cpu_busy_before"], info["idle"] = busy, busy is None or busy <= IDLE_BUSY
    if not info["idle"]:
        print(f"warning: the machine is not idle ({100 * busy:.0f} % busy before the run): every time runs high")
    if not CHROMIUM.exists():
        print(f"skipped: {CHROMIUM} is missing (apt-get install chromium); `make test` installs it")
        return 0
    from playwright.sync_api import sync_playwright

    samples: dict[str, list[float]] = {title: [] for title in TITLES}
    with tempfile.TemporaryDirectory() as tmp, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        server, url, _ = start_server(Path(tmp) / "server.log")
        try:
            page = browser.new_context(viewport={"width": 1280, "height": 720}).new_page()
            page.set_default_timeout(300_000)
            page.goto(url)
            page.wait_for_selector("h1")
            page.wait_for_selector(READY, state="attached")
            order = TITLES[1:] + TITLES[:1]  # from Home: every link leads to a page with another title
            cold = {title: open_by_link(page, title) for title in order}  # the first visit: not counted
            for _ in range(args.rounds):
                for title in order:
                    samples[title].append(open_by_link(page, title))
        finally:
            browser.close()
            server.terminate()
            server.wait(timeout=20)
    result = {"pages": {}, "cold_s": cold, "target_s": TARGET_S}
    for title, times in samples.items():
        median = statistics.median(times)
        result["pages"][title] = {"median_s": median, "max_s": max(times), "n": len(times),
                                  "verdict": verdict(median, TARGET_S)}
        print(f"{title:<28} median {median:5.2f} s, slowest {max(times):5.2f} s over {len(times)} "
              f"(first visit {cold[title]:5.2f} s) {result['pages'][title]['verdict']}")
    if args.json_path:
        write_json(args.json_path, {"machine": info, **result})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
