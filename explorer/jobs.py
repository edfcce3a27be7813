"""Job control without Streamlit: long work (an ERF estimate, a decoder or classifier fit) as one
`Job` with a status, progress, a stop and a server-wide limit on how many run at once.

Two kinds of job share that state:

* `ErfJob` is advanced by its owner, one batch at a time (the Receptive Field page's script
  thread), and keeps a running sum so that a stop loses nothing and a continue resumes exactly.
* `ThreadJob` runs a function in a background thread (`TrainingJob` adds the progress of the
  training commands); the function polls `job.should_stop`.

`Governor` is the hook for the server-wide limit: a job takes one of its slots before it starts
working (waiting as QUEUED, with its place in the queue, while none is free) and gives it back
when it ends, however it ends.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Self

import numpy as np
import torch

from explorer.erf import ErfError, ErfEstimate, merge_estimate


class JobStatus(StrEnum):
    """Where a job is; a `str`, so it compares equal to its value ("running", ...)."""

    QUEUED = "queued"
    RUNNING = "running"
    STOPPED = "stopped"
    DONE = "done"
    FAILED = "failed"


class Governor:
    """At most `limit` jobs hold a slot at once (None: no limit); the others wait in arrival order."""

    def __init__(self, limit: int | None = None) -> None:
        if limit is not None and limit < 1:
            raise ValueError(f"a governor needs at least one slot, not {limit}")
        self.limit = limit
        self._cond = threading.Condition()
        self._running: set[int] = set()
        self._queue: list[int] = []

    def position(self, job: Job) -> int | None:
        """1 for the next job to start, 2 for the one after it...; None when not waiting."""
        with self._cond:
            return self._queue.index(id(job)) + 1 if id(job) in self._queue else None

    @property
    def running(self) -> int:
        with self._cond:
            return len(self._running)

    @contextmanager
    def slot(self, job: Job, poll_s: float = 0.2, *, cancelled: Callable[[], bool] | None = None,
             on_wait: Callable[[int], object] | None = None, mark: bool = True) -> Iterator[bool]:
        """Hold a slot for `job` while the block runs; yields False (and holds nothing) when the
        job was cancelled (`cancelled()`, by default `job.should_stop()`) while it waited.

        `on_wait(position)` is called while it waits (1: next in line); with `mark` the job's
        status reads QUEUED meanwhile and RUNNING once the slot is its."""
        key = id(job)
        stop = cancelled or job.should_stop
        with self._cond:
            self._queue.append(key)
            try:
                while not (self._queue[0] == key and (self.limit is None or len(self._running) < self.limit)):
                    if stop():
                        break
                    if mark:
                        job.status = JobStatus.QUEUED
                    if on_wait is not None:
                        position = self._queue.index(key) + 1
                        self._cond.release()  # the callback may draw or sleep: never while holding the queue
                        try:
                            on_wait(position)
                        finally:
                            self._cond.acquire()
                    self._cond.wait(poll_s)
                granted = not stop()
            finally:
                self._queue.remove(key)
                self._cond.notify_all()
            if granted:
                self._running.add(key)
                if mark:
                    job.status = JobStatus.RUNNING
        try:
            yield granted
        finally:
            if granted:
                with self._cond:
                    self._running.discard(key)
                    self._cond.notify_all()


UNLIMITED = Governor(None)


class Job:
    """What every job has: status, progress (done of total), an error for a person, a note, the
    time it has worked, a stop request and a re-entrant lock guarding all of it."""

    def __init__(self, total: int = 0) -> None:
        self.status = JobStatus.RUNNING
        self.error: str | None = None
        self.note = ""
        self.done = 0
        self.total = total
        self.seconds = 0.0
        self.started = time.monotonic()
        self.lock = threading.RLock()
        self._stop = threading.Event()

    @property
    def running(self) -> bool:
        return self.status == JobStatus.RUNNING

    @property
    def finished(self) -> bool:
        return self.status in (JobStatus.DONE, JobStatus.FAILED)

    @property
    def fraction(self) -> float:
        return min(self.done / self.total, 1.0) if self.total else 0.0

    def request_stop(self) -> None:
        self._stop.set()

    def should_stop(self) -> bool:
        return self._stop.is_set()

    def clear_stop(self) -> None:
        self._stop.clear()

    def fail(self, message: str) -> None:
        with self.lock:
            self.status, self.error = JobStatus.FAILED, message


# --------------------------------------------------------------------------------- ERF

@dataclass(frozen=True)
class ErfSettings:
    """What one ERF estimate is made of; `key` (strings only) names it in every cache."""

    backbone: str
    weights: str
    layer: str
    mode: str
    source: str  # "noise", "gallery" or "folder:<absolute path>" (explorer.erf.image_source)
    n: int
    seed: int = 0

    @property
    def key(self) -> str:
        return "|".join(map(str, (self.backbone, self.weights, self.layer, self.mode, self.source, self.n, self.seed)))

    @property
    def layer_key(self) -> str:
        return "|".join((self.backbone, self.weights, self.layer))

    def describe(self) -> str:
        if self.source.startswith("folder:"):
            return f"{self.n} images from the folder {self.source[len('folder:'):]}, mode {self.mode}, seed {self.seed}"
        return f"{self.n} {self.source} images, mode {self.mode}, seed {self.seed}"


class ErfJob(Job):
    """One estimate in progress or done: a running float64 sum and count, exact running-mean
    snapshots at 1, 2, 4, ... images, and the iterator that continues where it stopped.

    `owner` names the run whose loop may advance the job: a new run that takes ownership makes an
    older loop stop at its next batch, so the iterator is never used by two threads."""

    def __init__(self, settings: ErfSettings) -> None:
        super().__init__(settings.n)
        self.settings = settings
        self.uid = f"{settings.key}@{time.monotonic_ns()}"
        self.sum: np.ndarray | None = None
        self.snapshots: list[tuple[int, np.ndarray]] = []
        self.stops = 0  # how often it was stopped and continued
        self.iterator: Iterator[torch.Tensor] | None = None
        self.meta: dict[str, Any] = {}
        self.result: ErfEstimate | None = None
        self.owner: object | None = None

    def commit(self, part: ErfEstimate, seconds: float) -> None:
        """Add one batch's estimate (its own mean and snapshots) to the running totals."""
        if not self.meta:
            self.meta = {"input_size": part.input_size, "grid": part.grid, "centre_cell": part.centre_cell,
                         "centre_px": part.centre_px, "layer": part.layer}
        total, done, snapshots = merge_estimate(self.sum, self.done, self.snapshots, part)
        # One batch, committed together: sum, count and snapshots never disagree.
        self.snapshots, self.sum, self.done, self.seconds = snapshots, total, done, self.seconds + seconds

    def pause(self, note: str = "") -> None:
        """Mark a running job stopped (what it accumulated is kept); waits for a batch in flight."""
        with self.lock:
            if self.running:
                self.status, self.owner, self.note = JobStatus.STOPPED, None, note

    def resume(self) -> None:
        """Let a stopped job with images left run again."""
        with self.lock:
            if self.status == JobStatus.STOPPED and self.done < self.total:
                self.status, self.note = JobStatus.RUNNING, ""
                self.stops += 1

    def batches(self, make_source: Callable[[ErfSettings], Any], batch_size: int) -> Iterator[torch.Tensor]:
        """The job's batch iterator; rebuilt (skipping the batches already used) when it was lost."""
        if self.iterator is None:
            source = make_source(self.settings)
            self.note = source.note
            self.iterator = itertools.islice(iter(source), self.done // batch_size, None)
        return self.iterator

    def estimate(self) -> ErfEstimate | None:
        """What has been accumulated so far (None before the first batch); waits for a batch in
        flight to be committed."""
        with self.lock:
            return self.current_estimate()

    def require_estimate(self) -> ErfEstimate:
        """`estimate`, for a caller that knows a batch was committed (ErfError otherwise)."""
        estimate = self.estimate()
        if estimate is None:
            raise ErfError("Nothing has been accumulated yet: estimate the ERF first.")
        return estimate

    def running_mean(self) -> np.ndarray:
        """The mean of the images accumulated so far (the caller holds the lock)."""
        if self.sum is None or not self.done:
            raise ErfError("Nothing has been accumulated yet: estimate the ERF first.")
        return self.sum / self.done

    def current_estimate(self) -> ErfEstimate | None:
        """`estimate` for a caller that already holds the lock."""
        if self.result is not None:
            return self.result
        if not self.done or self.sum is None:
            return None
        s = self.settings
        final = self.sum / self.done
        snapshots = list(self.snapshots)
        if not snapshots or snapshots[-1][0] != self.done:
            snapshots.append((self.done, final))
        estimate = ErfEstimate(
            map=final, n_images=self.done, mode=s.mode, layer=self.meta["layer"], backbone=s.backbone,
            weights=s.weights, input_size=self.meta["input_size"], grid=self.meta["grid"],
            centre_cell=self.meta["centre_cell"], centre_px=self.meta["centre_px"],
            interrupted=self.done < self.total, source=s.source, n_planned=self.total, seconds=self.seconds,
            snapshots=snapshots)
        if self.status == JobStatus.DONE:
            self.result = estimate
        return estimate

    @property
    def key(self) -> str:
        """Cache key of what has been accumulated: the settings and the image count."""
        return f"{self.settings.key}|{self.done}"

    def progress_text(self) -> str:
        rate = f" · {self.done / self.seconds:.1f} images/s" if self.seconds > 0 else ""
        return f"{self.done} / {self.total} images{rate}"


# ------------------------------------------------------------------------- thread jobs

class ThreadJob(Job):
    """`work(job)` in a daemon thread, under a slot of `governor`. `work` reports progress on the
    job and polls `job.should_stop()`; returning ends the job DONE. `classify(exc)` turns an
    exception into (status, message for a person)."""

    def __init__(self, work: Callable[[ThreadJob], None], *, name: str = "job",
                 governor: Governor = UNLIMITED,
                 classify: Callable[[BaseException], tuple[JobStatus, str | None]] | None = None,
                 owner: str | None = None, alive: Callable[[], bool] | None = None,
                 idle_timeout_s: float | None = None) -> None:
        super().__init__()
        self.governor = governor
        # The job belongs to whoever started it: it stops once `alive()` says they are gone, or
        # when nobody has looked at it (`touch`) for `idle_timeout_s`.
        self.owner = owner
        self._alive = alive
        self.idle_timeout_s = idle_timeout_s
        self.last_seen = time.monotonic()
        self._work = work
        self._classify = classify or (lambda exc: (JobStatus.FAILED, str(exc)))
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> Self:
        self.thread.start()
        return self

    def touch(self) -> None:
        """Its owner is still looking (the page that shows the job calls this as it redraws)."""
        self.last_seen = time.monotonic()

    def should_stop(self) -> bool:
        if super().should_stop():
            return True
        if self._alive is not None and not self._alive():
            self.note = "stopped: the session that started it has ended"
            return True
        if self.idle_timeout_s is not None and time.monotonic() - self.last_seen > self.idle_timeout_s:
            self.note = f"stopped: nobody looked at it for {self.idle_timeout_s / 60:.0f} min"
            return True
        return False

    def _run(self) -> None:
        with self.governor.slot(self) as granted:
            if not granted:
                self.status = JobStatus.STOPPED
                return
            self.started = time.monotonic()
            try:
                self._work(self)
            except BaseException as exc:  # a thread must not die silently: every outcome is a status
                status, message = self._classify(exc)
                with self.lock:
                    self.status, self.error = status, message
            else:
                with self.lock:
                    self.status = JobStatus.DONE
            finally:
                self.seconds = time.monotonic() - self.started

    def join(self, timeout: float | None = None) -> None:
        self.thread.join(timeout)

    def queue_position(self) -> int | None:
        return self.governor.position(self)


class TrainingJob(ThreadJob):
    """A `ThreadJob` that follows the training commands' `progress(phase, done, total, info)`:
    images decoded ("load"), steps ("train") and one history row per evaluation ("val")."""

    def __init__(self, work: Callable[[ThreadJob], None], settings: dict[str, Any], out: Any, **kwargs: Any) -> None:
        super().__init__(work, **kwargs)
        self.settings = settings
        self.out = out
        self.phase = "load"
        self.loaded = 0
        self.info: dict[str, Any] = {}
        self.history: list[dict[str, Any]] = []

    def progress(self, phase: str, done: int, total: int, info: dict) -> None:
        with self.lock:
            if phase == "load":
                self.loaded += done
            elif phase == "train":
                self.phase, self.done, self.total, self.info = "train", done, total, dict(info)
            else:
                self.history.append(dict(info))

    def describe(self) -> str:
        with self.lock:
            position = self.queue_position()
            if position is not None:
                return f"waiting for a free slot: number {position} in the queue"
            if self.phase == "load":
                return f"decoding images: {self.loaded}"
            loss = self.info.get("loss")
            return (f"step {self.done} / {self.total}, epoch {self.info.get('epoch', '?')}"
                    + (f", loss {loss:.4f}" if loss is not None else "")
                    + f" · {time.monotonic() - self.started:.0f} s")
