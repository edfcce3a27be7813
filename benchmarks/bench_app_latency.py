"""App latency in a real browser: from a sigma slider move to the repainted grid, and from a method
switch to the redrawn heatmap.

    python benchmarks/bench_app_latency.py [--moves 30] [--json PATH]

Starts `streamlit run app.py` headless on a free port, drives Debian's Chromium with Playwright
(never a downloaded browser) at a projector's 1280x720, opens Compare with the default image and backbone, picks the manual
sigma preset, then:

* live sigma: Compare's default, the Gaussian tiles repainted in the browser (explorer/ui/live):
  presses ArrowRight on the component's sigma_x slider `--moves` times and reads, from the page,
  the time from each input event to the first animation frame after the repaint (Chromium's own
  clock: input to repainted pixels), and beside it the time Playwright sees from the key press
  until the repaint count moves (its round trip to the browser included);
* sigma (server round trip): with live sigma off, presses ArrowRight on the server's sigma_x
  slider `--moves` times (one 0.5 px step each) and times each press until every Gaussian tile's
  caption shows the new sigma and the app reports no run in progress (the slider lives in a
  fragment: only the upsampling and the tiles rerun);
* method: switches the "Heatmap of" selectbox between two methods `--moves` times and times each
  switch until the heatmap's title names the new method (the heatmap's own fragment reruns on
  cached maps and figures);
* cold start: from launching the server process to the first overlay tile of Compare opened
  straight from its URL (torch and the app imported, the model loaded, the first forward and
  gradient, the page drawn), with nothing cached: a fresh server.

* floor: the sigma-move timing on benchmarks/floor_app.py, a fragment with one slider and eight
  captions that computes nothing: what Streamlit and Chromium alone take on this machine.

Median and 95th percentile, milliseconds. Targets: live sigma median <= 50 ms (issue 33), server
sigma move median <= 250 ms, method switch median <= 400 ms, cold start <= 10 s (issue 16).
BENCH_LOG=<file> keeps the server's log there (by default it goes to a temporary folder).
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks.common import cpu_busy_fraction, describe_machine, machine_info, percentile, verdict, write_json  # noqa: E402

CHROMIUM = Path("/usr/bin/chromium")
READY = '[data-testid="stApp"][data-test-script-state="notRunning"]'
TARGET_LIVE_MS = 50.0
TARGET_SIGMA_MS = 250.0
TARGET_METHOD_MS = 400.0
TARGET_COLD_S = 10.0
IDLE_BUSY = 0.15  # share of the cores busy before the run above which it is flagged as not idle
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--moves", type=int, default=30)
    p.add_argument("--json", dest="json_path", default=None)
    return p.parse_args(argv)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(log: Path, script: str = "app.py") -> tuple[subprocess.Popen, str, float]:
    """(server, url, the perf_counter time at which its process was launched)."""
    port = free_port()
    command = [sys.executable, "-m", "streamlit", "run", script, "--server.headless", "true",
               "--server.address", "127.0.0.1", "--server.port", str(port), "--server.fileWatcherType", "none",
               "--browser.gatherUsageStats", "false"]
    sink = log.open("w")
    launched = time.perf_counter()
    server = subprocess.Popen(command, cwd=REPO, stdout=sink, stderr=subprocess.STDOUT,
                              env={**os.environ, "CAM_EXPLORER_RUNS": str(log.parent / "runs")})
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"streamlit exited: {log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                if response.read().decode().strip() == "ok":
                    return server, url, launched
        except OSError:
            time.sleep(0.5)
    raise RuntimeError("streamlit did not become healthy in 90 s")


def settle(page, marker: str) -> None:
    page.wait_for_selector(marker)
    page.wait_for_selector(READY, state="attached")
    page.wait_for_timeout(300)
    page.wait_for_selector(READY, state="attached")


def slider_value(page, label: str) -> float:
    slider = page.locator('[data-testid="stSlider"]', has_text=label)
    return float(slider.locator('[data-testid="stSliderThumbValue"]').inner_text().strip())


def time_slider_moves(page, caption: str, prefix: str, moves: int) -> list[float]:
    """Milliseconds from each ArrowRight on the sigma_x slider until every caption matching
    `caption` and starting with `prefix` shows a text it did not before, and no run is left."""
    slider = page.locator('input[type="range"][aria-label="σx (pixels)"]')
    samples = []
    for _ in range(moves):
        before = page.evaluate("""([sel, prefix]) => [...document.querySelectorAll(sel)]
            .map(c => c.innerText).filter(t => t.startsWith(prefix))""", [caption, prefix])
        slider.focus()
        start = time.perf_counter()
        page.keyboard.press("ArrowRight")
        page.wait_for_function(
            """([sel, prefix, before]) => {
                const caps = [...document.querySelectorAll(sel)].map(c => c.innerText)
                    .filter(t => t.startsWith(prefix));
                const app = document.querySelector('[data-testid="stApp"]');
                return caps.length === before.length && caps.every((t, i) => t !== before[i])
                    && app.getAttribute('data-test-script-state') === 'notRunning';
            }""", arg=[caption, prefix, before], polling=5)
        samples.append(1000 * (time.perf_counter() - start))
    return samples


def measure_live(page, moves: int) -> dict:
    """Live sigma on Compare: (in-browser input-to-frame ms, Playwright-observed ms) per move."""
    page.wait_for_selector('iframe[title*="live_gaussian"]')
    frame = next(f for f in page.frames if "live_gaussian" in f.url)
    frame.wait_for_function("window.liveGaussian && window.liveGaussian.painted > 0")
    slider = frame.locator('input[aria-label="live σx (pixels)"]')
    observed = []
    for _ in range(moves):
        painted = frame.evaluate("window.liveGaussian.painted")
        slider.focus()
        start = time.perf_counter()
        page.keyboard.press("ArrowRight")
        frame.wait_for_function(f"window.liveGaussian.painted > {painted}", polling="raf")
        observed.append(1000 * (time.perf_counter() - start))
        settle(page, 'iframe[title*="live_gaussian"]')  # the release's server rerun, so moves do not overlap
    frame.wait_for_function(f"window.liveGaussian.latencies.length >= {moves}")
    return {"live_ms": frame.evaluate(f"window.liveGaussian.latencies.slice(-{moves})"), "live_observed_ms": observed}


def live_off(page) -> None:
    box = page.locator('[data-testid="stCheckbox"]', has_text="Live σ")
    if box.locator("input").is_checked():
        box.locator("label").click()
    settle(page, '[data-testid="stImage"] img')


def measure(page, moves: int) -> dict:
    page.locator('[data-testid="stSidebarNavLink"]', has_text="Compare").click()
    live = measure_live(page, moves)
    live_off(page)
    page.locator('input[aria-label="Gaussian σ preset"]').click()
    page.locator('[role="option"]', has_text="manual").first.click()
    settle(page, '[data-testid="stImage"] img')
    sigma_ms = time_slider_moves(page, '[data-testid="stImageCaption"]', "gaussian", moves)
    box = page.locator('input[aria-label="Heatmap of"]')
    names = ("Grad-CAM", "Extended-CAM")
    method_ms = []
    for i in range(moves):
        option = names[i % 2]
        settle(page, '.js-plotly-plot')
        box.scroll_into_view_if_needed()
        box.click()
        box.fill(option)  # typing filters the options; Enter picks the first, the exact name
        start = time.perf_counter()
        page.keyboard.press("Enter")
        page.wait_for_function(
            """name => {
                const titles = [...document.querySelectorAll('.js-plotly-plot .gtitle')].map(t => t.textContent);
                const app = document.querySelector('[data-testid="stApp"]');
                // The heatmap's own title ("<method>: raw grid (h×w)"), not a histogram panel's.
                return titles.some(t => t.startsWith(name + ': raw grid ('))
                    && app.getAttribute('data-test-script-state') === 'notRunning';
            }""", arg=option, polling=5)
        method_ms.append(1000 * (time.perf_counter() - start))
    return {"sigma_ms": sigma_ms, "method_ms": method_ms, **live}


def measure_floor(page, moves: int) -> list[float]:
    """The same sigma-move timing on benchmarks/floor_app.py (a slider and eight captions)."""
    page.wait_for_selector('[data-testid="stCaptionContainer"]')
    page.wait_for_selector(READY, state="attached")
    page.wait_for_timeout(500)
    return time_slider_moves(page, '[data-testid="stCaptionContainer"]', "gaussian", moves)


def summary(samples: list[float]) -> dict:
    return {"median_ms": statistics.median(samples), "p95_ms": percentile(samples, 95), "n": len(samples)}


def main(argv=None) -> int:
    args = parse_args(argv)
    info = machine_info("cpu")
    print(describe_machine(info))
    busy = cpu_busy_fraction()
    info["cpu_busy_before"] = busy
    info["idle"] = busy is None or busy <= IDLE_BUSY
    print(f"CPU busy in the 2 s before the run: {'n/a' if busy is None else f'{100 * busy:.0f} %'}")
    if busy is not None and not info["idle"]:
        print(f"warning: the machine is not idle ({100 * busy:.0f} % of the cores busy before the run, more than "
              f"{100 * IDLE_BUSY:.0f} %); every figure below runs high, so do not compare it with the targets")
    if not CHROMIUM.exists():
        print(f"skipped: {CHROMIUM} is missing (apt-get install chromium); `make test` installs it")
        return 0
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as tmp, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        log = Path(os.environ.get("BENCH_LOG", Path(tmp) / "server.log"))
        server, url, launched = start_server(log)
        try:  # the cold start first, on the fresh server
            healthy = time.perf_counter() - launched
            page = browser.new_context(viewport={"width": 1280, "height": 720}).new_page()  # a projector's
            page.set_default_timeout(120_000)
            page.goto(f"{url}/Compare")
            page.wait_for_selector('iframe[title*="live_gaussian"]')
            frame = next(f for f in page.frames if "live_gaussian" in f.url)
            frame.wait_for_function("window.liveGaussian && window.liveGaussian.painted > 0")
            cold = {"seconds": time.perf_counter() - launched, "server_ready_s": healthy}
            page.goto(url)
            settle(page, '[data-testid="stDataFrame"]')
            samples = measure(page, args.moves)
        finally:
            server.terminate()
            server.wait(timeout=20)
        floor_server, floor_url, _ = start_server(log.with_name("floor.log"), "benchmarks/floor_app.py")
        try:
            page = browser.new_context(viewport={"width": 1600, "height": 1400}).new_page()
            page.set_default_timeout(120_000)
            page.goto(floor_url)
            samples["floor_ms"] = measure_floor(page, args.moves)
        finally:
            browser.close()
            floor_server.terminate()
            floor_server.wait(timeout=20)
    result = {"live": summary(samples["live_ms"]), "live_observed": summary(samples["live_observed_ms"]),
              "sigma": summary(samples["sigma_ms"]), "method": summary(samples["method_ms"]),
              "floor": summary(samples["floor_ms"]), "cold_start": cold,
              "samples": samples}
    result["sigma"]["verdict"] = verdict(result["sigma"]["median_ms"], TARGET_SIGMA_MS)
    result["live"]["verdict"] = verdict(result["live"]["median_ms"], TARGET_LIVE_MS)
    print(f"live sigma (in the browser) -> repainted tiles: median {result['live']['median_ms']:.0f} ms, p95 "
          f"{result['live']['p95_ms']:.0f} ms over {args.moves} moves (target median <= {TARGET_LIVE_MS:.0f} ms) "
          f"{result['live']['verdict']}; as Playwright sees it: median {result['live_observed']['median_ms']:.0f} ms")
    result["method"]["verdict"] = verdict(result["method"]["median_ms"], TARGET_METHOD_MS)
    cold["verdict"] = verdict(cold["seconds"], TARGET_COLD_S)
    print(f"sigma slider move -> repainted grid: median {result['sigma']['median_ms']:.0f} ms, "
          f"p95 {result['sigma']['p95_ms']:.0f} ms over {args.moves} moves (target median <= {TARGET_SIGMA_MS:.0f} ms) "
          f"{result['sigma']['verdict']}")
    print(f"floor (benchmarks/floor_app.py: a slider and eight captions, nothing computed): median "
          f"{result['floor']['median_ms']:.0f} ms, p95 {result['floor']['p95_ms']:.0f} ms over {args.moves} moves")
    print(f"method switch -> redrawn heatmap: median {result['method']['median_ms']:.0f} ms, "
          f"p95 {result['method']['p95_ms']:.0f} ms over {args.moves} switches (target median <= "
          f"{TARGET_METHOD_MS:.0f} ms) {result['method']['verdict']}")
    print(f"cold start -> first map on Compare: {cold['seconds']:.1f} s (server healthy after "
          f"{cold['server_ready_s']:.1f} s; target <= {TARGET_COLD_S:.0f} s) {cold['verdict']}")
    if args.json_path:
        write_json(args.json_path, {"machine": info, **result})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
