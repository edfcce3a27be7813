"""Leaks and concurrency: a thousand computations per method leave no hook and bounded memory; eight
threads (the sessions of a class of students) share one cached model without cross-talk or
change; and eight real browser sessions hammer one server for a while (RELIABILITY_SOAK_SECONDS,
60 by default, 300 for the full run) without an error, with their own results, and with the
server's memory levelling off.
"""

from __future__ import annotations

import gc
import hashlib
import os
import random
import re
import threading
import time

import pytest
import torch

from explorer import compute_cams, grid_maps, load_backbone
from explorer.fcam import build_decoder
from tests.nets import conv_net
from tests.test_capture import hook_count, rss_bytes

METHODS = ["cam", "gradcam", "gradcampp", "smoothgradcampp", "xgradcam", "layercam", "scorecam", "extendedcam"]
MEMORY_BOUND = 16 * 2**20  # resident growth allowed over 1000 calls, after warm-up


def state_digest(model: torch.nn.Module) -> str:
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().numpy().tobytes())
    flags = [(n, p.requires_grad, p.grad is None) for n, p in model.named_parameters()]
    digest.update(repr((flags, model.training)).encode())
    return digest.hexdigest()


@pytest.mark.parametrize("method", METHODS)
def test_1000_computations_per_method_leave_no_hooks_and_bounded_memory(method):
    net = conv_net()
    x = torch.randn(2, 3, 32, 32)
    before_state = state_digest(net.model)
    for _ in range(30):  # warm-up: allocator pools, lazy initialisation
        compute_cams(net, x, [0, 1], [method], smooth_samples=2, scorecam_chunk=8)
    gc.collect()
    before = rss_bytes()
    for _ in range(1000):
        compute_cams(net, x, [0, 1], [method], smooth_samples=2, scorecam_chunk=8)
    gc.collect()
    growth = rss_bytes() - before
    assert hook_count(net.model) == 0
    assert state_digest(net.model) == before_state
    assert growth < MEMORY_BOUND, f"{method}: resident memory grew by {growth / 2**20:.1f} MiB over 1000 calls"


def test_1000_fcam_inferences_leave_no_hooks_and_bounded_memory():
    backbone = load_backbone("synthetic_cnn", "random")
    decoder = build_decoder(backbone, seed=0)
    decoder.net.eval()
    x = torch.randn(1, 3, 224, 224)
    for _ in range(10):
        grid_maps(backbone, x, [0], ["cam"], decoders={"cam": decoder})
    gc.collect()
    before = rss_bytes()
    for _ in range(1000):
        grid_maps(backbone, x, [0], ["cam"], decoders={"cam": decoder})
    gc.collect()
    assert hook_count(backbone.model) == 0
    assert rss_bytes() - before < MEMORY_BOUND


def test_eight_threads_share_one_model_without_cross_talk_or_change():
    backbone = load_backbone("synthetic_cnn", "random")
    decoder = build_decoder(backbone, seed=0)
    decoder.net.eval()
    before = state_digest(backbone.model)
    jobs = [(torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(i)), [i % 5, (i + 1) % 5],
             [METHODS[i % len(METHODS)] if METHODS[i % len(METHODS)] != "scorecam" else "layercam", "gradcam"])
            for i in range(8)]
    expected = [grid_maps(backbone, x, t, m, decoders={"cam": decoder}) for x, t, m in jobs]
    errors: list[BaseException] = []
    outputs: dict[int, list] = {i: [] for i in range(8)}

    def session(i: int) -> None:
        x, t, m = jobs[i]
        try:
            for _ in range(6):
                outputs[i].append(grid_maps(backbone, x, t, m, decoders={"cam": decoder}))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=session, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    for i in range(8):
        for result in outputs[i]:
            for method, value in expected[i].maps.items():
                torch.testing.assert_close(result.maps[method], value, rtol=1e-4, atol=1e-5)
            torch.testing.assert_close(result.fcam["cam"], expected[i].fcam["cam"], rtol=1e-4, atol=1e-5)
    assert hook_count(backbone.model) == 0
    assert state_digest(backbone.model) == before


# ------------------------------------------------------------------------------ the browser soak

# (backbone, weights, heatmap method): one session explores an untrained network.
SESSIONS = [("efficientnet_lite0", "pretrained", "Grad-CAM"), ("synthetic_lite0", "pretrained", "Extended-CAM"),
            ("synthetic_v1_cnn", "pretrained", "Grad-CAM++"), ("efficientnet_lite0", "pretrained", "CAM"),
            ("synthetic_lite0", "pretrained", "Grad-CAM++"), ("synthetic_cnn", "random", "CAM"),
            ("efficientnet_lite1", "pretrained", "Grad-CAM"), ("efficientnet_lite0", "pretrained", "Extended-CAM")]


# Compare's default methods, as the "Heatmap of" box labels them; typing one and pressing Enter picks
# it (the box lists them in this order, so "CAM" and "Grad-CAM" match themselves first).
HEATMAP_CHOICES = ("CAM", "Grad-CAM", "Grad-CAM++", "Extended-CAM")
GRIDS = {"efficientnet_lite0": "7×7", "synthetic_lite0": "7×7", "synthetic_cnn": "14×14", "synthetic_v1_cnn": "14×14",
         "efficientnet_lite1": "8×8"}


def show_heatmap_of(page, label: str) -> None:
    """Pick the Compare heatmap's method as a person does with the keyboard and mouse: type into the
    box (which opens the list, filtered) and click the option with exactly that name. (Enter would
    take the highlighted option, which stays on the current one when it matches the typed text too:
    "CAM" matches "Grad-CAM".)"""
    box = page.locator('input[aria-label="Heatmap of"]')
    box.scroll_into_view_if_needed()
    box.click()
    box.fill(label)
    page.get_by_role("option", name=label, exact=True).click()


def server_rss(pid: int) -> int:
    with open(f"/proc/{pid}/status", encoding="ascii") as fh:
        return next(int(line.split()[1]) * 1024 for line in fh if line.startswith("VmRSS:"))


@pytest.mark.browser
@pytest.mark.slow
def test_eight_browser_sessions_against_one_server(browser, app_url, app_server_pid, screenshot_dir):
    """Eight sessions, each its own backbone and method, clicking for the soak duration."""
    from playwright.sync_api import expect

    from tests.browser.test_receptive_field_browser import settle

    duration = float(os.environ.get("RELIABILITY_SOAK_SECONDS", "60"))
    contexts, pages = [], []
    for _session in SESSIONS:
        context = browser.new_context(viewport={"width": 1400, "height": 1200})
        page = context.new_page()
        page.set_default_timeout(300_000)
        contexts.append(context)
        pages.append(page)
    memory: list[tuple[float, int]] = []
    try:
        for page, (backbone, weights, method) in zip(pages, SESSIONS):
            page.goto(app_url)
            settle(page, '[data-testid="stDataFrame"]')
            page.locator('input[aria-label="Backbone"]').click()
            page.locator('[role="option"]', has_text=backbone).first.click()
            settle(page, '[data-testid="stDataFrame"]')
            if weights == "random":
                page.locator('[data-testid="stSidebar"] label', has_text="RANDOM (untrained)").click()
                settle(page, '[data-testid="stDataFrame"]')
            page.locator('[data-testid="stSidebarNavLink"]', has_text="Compare").click()
            settle(page, '.js-plotly-plot')
            if method != HEATMAP_CHOICES[0]:  # the box starts on Compare's first method
                show_heatmap_of(page, method)
                settle(page, '.js-plotly-plot')
        shown = [method for _, _, method in SESSIONS]
        # The soak's duration is the clicking, not the eight sessions' first loads (on two cores those
        # alone can take most of a minute, which left a 60 s soak a single round).
        start = time.monotonic()
        rng = random.Random(0)
        rounds = 0
        while time.monotonic() - start < duration:
            for session, (page, (backbone, _weights, _method)) in enumerate(zip(pages, SESSIONS)):
                # Each session moves its own sigma slider or re-picks its heatmap method, then checks
                # that what it sees is its own: its backbone in the banner, no error anywhere.
                if rng.random() < 0.5:
                    page.locator('input[type="range"]').first.focus()
                    page.keyboard.press("ArrowRight" if rng.random() < 0.5 else "ArrowLeft")
                else:
                    # Another method than the one shown: typing the shown one lists every option.
                    shown[session] = rng.choice([m for m in HEATMAP_CHOICES if m != shown[session]])
                    show_heatmap_of(page, shown[session])
                settle(page, '.js-plotly-plot')
                expect(page.locator('[data-testid="stException"]')).to_have_count(0)
                banner = page.locator('[data-testid="stMain"] [data-testid="stMarkdownContainer"]', has_text="target")
                expect(banner.first).to_contain_text(f"{backbone} (weights:")
                # The session's own maps: the heatmap it picked, at its backbone's grid size.
                title = f"{shown[session]}: raw grid ({GRIDS[backbone]})"
                # Anchored: "CAM: raw grid" is also the tail of "Grad-CAM: raw grid".
                # The check is also the wait: under eight sessions on two cores a rerun can start more
                # than settle()'s 300 ms after the key press; a wrong map would stay and fail here.
                expect(page.locator(".js-plotly-plot .gtitle", has_text=re.compile("^" + re.escape(title)))).to_have_count(
                    1, timeout=120_000)
            memory.append((time.monotonic() - start, server_rss(app_server_pid)))
            rounds += 1
        pages[0].screenshot(path=str(screenshot_dir / "reliability-soak-session0.png"))
    except Exception:
        for i, page in enumerate(pages):
            page.screenshot(path=str(screenshot_dir / f"reliability-soak-failed-session{i}.png"), full_page=True)
        raise
    finally:
        for context in contexts:
            context.close()
    assert rounds >= 2
    third = max(1, len(memory) // 3)
    early = max(m for _, m in memory[:third])
    late = max(m for _, m in memory[-third:])
    report = (f"{len(SESSIONS)} sessions, {rounds} rounds in {time.monotonic() - start:.0f} s; server RSS "
              f"{memory[0][1] / 2**20:.0f} MiB at the first round, max {early / 2**20:.0f} MiB in the first third, "
              f"{late / 2**20:.0f} MiB in the last")
    print(report)
    (screenshot_dir / "reliability-soak.txt").write_text(report + "\n")
    assert late <= early * 1.25 + 300 * 2**20, report
