"""The benchmarks' idle check: the CPU share measured from /proc/stat, not the load average."""

import sys
import threading
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.common import cpu_busy_fraction, usable_cores  # noqa: E402

pytestmark = pytest.mark.skipif(not Path("/proc/stat").exists(), reason="needs Linux /proc/stat")


def test_busy_fraction_is_a_share_of_all_cores():
    busy = cpu_busy_fraction(0.2)
    assert busy is not None and 0.0 <= busy <= 1.0


def test_a_spinning_thread_shows_up_as_busy():
    stop = threading.Event()

    def spin() -> None:
        while not stop.is_set():
            pass

    worker = threading.Thread(target=spin, daemon=True)
    worker.start()
    try:
        time.sleep(0.05)
        busy = cpu_busy_fraction(0.5)
    finally:
        stop.set()
        worker.join()
    # One core of `usable_cores()` spins for the whole window (less a little scheduling).
    assert busy is not None and busy >= 0.8 / max(usable_cores(), 1) - 0.1
