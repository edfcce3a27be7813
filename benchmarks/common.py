"""Shared helpers for the benchmark scripts: robust timing, fair interleaving of contestants,
plain-text tables and a description of the machine the numbers came from.

Timings are wall-clock (time.perf_counter) around one call, with the device synchronised before
and after so that asynchronous CUDA work is counted. Report medians (robust to the noise of a
shared machine) and the 95th percentile (how bad the slow calls get).
"""

from __future__ import annotations

import json
import os
import platform
import random
import statistics
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def add_repo_to_path() -> None:
    """Make `import explorer` work when a script is run as `python benchmarks/<script>.py`."""
    root = str(REPO_ROOT)
    if root not in sys.path:
        sys.path.insert(0, root)


# ------------------------------------------------------------------------------------- timing

@dataclass
class Timing:
    """Seconds per call: the median and 95th percentile of `samples` (warm-up calls excluded)."""

    median: float
    p95: float
    samples: list[float] = field(default_factory=list)

    @property
    def median_ms(self) -> float:
        return self.median * 1e3

    @property
    def p95_ms(self) -> float:
        return self.p95 * 1e3

    def scaled(self, factor: float) -> Timing:
        """The same timing per unit of work, e.g. per map when one call did `1 / factor` maps."""
        return Timing(self.median * factor, self.p95 * factor, [s * factor for s in self.samples])

    def to_dict(self) -> dict:
        return {"median_s": self.median, "p95_s": self.p95, "samples_s": list(self.samples)}


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) with linear interpolation between order statistics."""
    if not values:
        raise ValueError("percentile of no values")
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    pos = (len(ordered) - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def summarise(samples: Sequence[float]) -> Timing:
    return Timing(statistics.median(samples), percentile(samples, 95), list(samples))


def no_sync() -> None:
    return None


def device_sync(device) -> Callable[[], None]:
    """A function that waits for all queued work on `device` (a no-op on the CPU)."""
    import torch

    device = torch.device(device)
    if device.type == "cuda":
        return lambda: torch.cuda.synchronize(device)
    if device.type == "mps":
        return torch.mps.synchronize
    return no_sync


def time_once(fn: Callable[[], object], sync: Callable[[], None] = no_sync) -> float:
    sync()
    start = time.perf_counter()
    fn()
    sync()
    return time.perf_counter() - start


def timeit(fn: Callable[[], object], repeats: int = 5, warmup: int = 1,
           sync: Callable[[], None] = no_sync) -> Timing:
    """Call `fn` `warmup` times untimed, then `repeats` times timed; median and p95 seconds."""
    if repeats < 1:
        raise ValueError("repeats must be at least 1")
    for _ in range(warmup):
        fn()
    sync()
    return summarise([time_once(fn, sync) for _ in range(repeats)])


def timeit_interleaved(contestants: Mapping[str, Callable[[], object]], repeats: int = 5, warmup: int = 1,
                       sync: Callable[[], None] = no_sync, shuffle: bool = True, seed: int = 0,
                       between: Callable[[str], None] | None = None) -> dict[str, Timing]:
    """Time several contestants fairly on a noisy machine: after `warmup` untimed rounds, each of
    `repeats` rounds calls every contestant once, in a fresh random order per round (seeded), so a
    burst of load from elsewhere hits all of them alike rather than one contestant's whole series.

    `between(name)` runs untimed after every call (e.g. to check that no hooks were left behind).
    """
    names = list(contestants)
    rng = random.Random(seed)
    after = between or (lambda _name: None)
    for _ in range(warmup):
        for name in names:
            contestants[name]()
            after(name)
    samples: dict[str, list[float]] = {name: [] for name in names}
    for _ in range(repeats):
        order = names[:]
        if shuffle:
            rng.shuffle(order)
        for name in order:
            samples[name].append(time_once(contestants[name], sync))
            after(name)
    return {name: summarise(samples[name]) for name in names}


# ------------------------------------------------------------------------------------ threads

def choose_threads(setting: str | int | None = "auto") -> str:
    """Set torch's intra-op threads and say what was chosen and why.

    setting: a number; "torch" or None (leave torch's default); "auto": torch's default unless the
    machine is already busy (1-minute load average >= usable cores), then 1 thread. On an
    oversubscribed machine OpenMP threads spend their time waiting for each other at barriers
    while one of them is descheduled, which makes small ops 10-100x slower and timings erratic.
    """
    import torch

    default = torch.get_num_threads()
    if setting is None:
        setting = "torch"
    if setting == "torch":
        return f"{default} (torch's default)"
    if setting == "auto":
        load = load_average()
        cores = usable_cores()
        if load is not None and default > 1 and load[0] >= cores:
            torch.set_num_threads(1)
            return (f"1 (auto: 1-min load average {load[0]:.2f} >= {cores} usable cores, so the machine is "
                    f"busy and {default} OpenMP threads would mostly wait for each other; "
                    f"--threads torch to override)")
        return f"{default} (auto: torch's default; the machine is not oversubscribed)"
    n = int(setting)
    if n < 1:
        raise ValueError("threads must be at least 1")
    torch.set_num_threads(n)
    return f"{n} (as asked)"


# -------------------------------------------------------------------------------------- tables

def format_table(headers: Sequence[str], rows: Iterable[Sequence[object]], title: str | None = None) -> str:
    """A plain-text table: first column left-aligned, the others right-aligned; floats as given
    (format them before) and None as an empty cell."""
    rows = [["" if v is None else str(v) for v in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in rows:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))

    def line(cells: Sequence[str]) -> str:
        out = [cells[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(cells[1:], widths[1:])]
        return "  ".join(out).rstrip()

    parts = []
    if title:
        parts.append(title)
    parts.append(line(list(headers)))
    parts.append("  ".join("-" * w for w in widths))
    parts.extend(line(row) for row in rows)
    return "\n".join(parts)


def print_table(headers: Sequence[str], rows: Iterable[Sequence[object]], title: str | None = None) -> None:
    print(format_table(headers, rows, title))
    print()


def fmt_ms(seconds: float | None, digits: int = 2) -> str:
    return "" if seconds is None else f"{seconds * 1e3:.{digits}f}"


def fmt_ratio(value: float | None) -> str:
    return "" if value is None else f"{value:.3f}"


def verdict(ratio: float, target: float) -> str:
    """PASS when the measured ratio is at or under its target, else MISS."""
    return "PASS" if ratio <= target else "MISS"


# ------------------------------------------------------------------------------------ machine

def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def load_average() -> tuple[float, float, float] | None:
    try:
        return os.getloadavg()
    except (AttributeError, OSError):
        return None


def cpu_busy_fraction(seconds: float = 2.0) -> float | None:
    """The share of all cores' time spent busy over the next `seconds` (Linux /proc/stat), or None.
    Unlike the load average it does not remember a job that ended a minute ago."""
    def sample() -> tuple[int, int]:
        with open("/proc/stat") as stat:
            fields = [int(x) for x in stat.readline().split()[1:]]
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
        return sum(fields), idle
    try:
        total0, idle0 = sample()
        time.sleep(seconds)
        total1, idle1 = sample()
    except (OSError, ValueError, IndexError):
        return None
    elapsed = total1 - total0
    return None if elapsed <= 0 else 1.0 - (idle1 - idle0) / elapsed


def usable_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def machine_info(device=None) -> dict:
    """What the numbers were measured on: CPU model, cores, threads torch uses, versions, device."""
    import torch

    info = {
        "cpu_model": cpu_model(),
        "logical_cores": os.cpu_count(),
        "usable_cores": usable_cores(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "platform": platform.platform(),
        "load_average": load_average(),
    }
    if device is not None:
        device = torch.device(device)
        info["device"] = str(device)
        if device.type == "cuda":
            info["device_name"] = torch.cuda.get_device_name(device)
            info["cuda"] = torch.version.cuda
        else:
            info["device_name"] = info["cpu_model"]
    return info


def describe_machine(info: Mapping) -> str:
    load = info.get("load_average")
    load_text = "n/a" if load is None else " ".join(f"{x:.2f}" for x in load)
    lines = [
        f"CPU: {info['cpu_model']} ({info['logical_cores']} logical cores, {info['usable_cores']} usable, "
        f"torch threads {info['torch_threads']})",
        f"Python {info['python']}, torch {info['torch']}, {info['platform']}",
        f"Load average (1/5/15 min) at start: {load_text}",
    ]
    if "device" in info:
        lines.append(f"Device: {info['device']} ({info['device_name']})")
    return "\n".join(lines)


def write_json(path: str | os.PathLike, payload: Mapping) -> None:
    path = Path(path)
    if path.parent and not path.parent.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(payload, f, indent=2, default=_json_default)
        f.write("\n")


def _json_default(obj):
    if isinstance(obj, Timing):
        return obj.to_dict()
    if hasattr(obj, "__dataclass_fields__"):
        return asdict(obj)
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"Object of type {type(obj).__name__} is not JSON serialisable")
