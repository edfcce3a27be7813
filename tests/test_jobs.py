"""explorer.jobs: status, progress, stop and the governor's limit, without Streamlit."""

from __future__ import annotations

import threading
import time

import pytest

from explorer.errors import ExplorerError
from explorer.jobs import Governor, JobStatus, ThreadJob, TrainingJob


def wait_for(condition, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def blocking_work(release: threading.Event, ran: list[str], name: str):
    def work(job: ThreadJob) -> None:
        ran.append(name)
        while not release.is_set() and not job.should_stop():
            time.sleep(0.01)
    return work


def test_status_compares_with_its_text() -> None:
    assert JobStatus.RUNNING == "running" and str(JobStatus.DONE) == "done"


def test_a_governor_of_one_runs_jobs_one_at_a_time_in_order() -> None:
    governor = Governor(1)
    release_first, release_second, ran = threading.Event(), threading.Event(), []
    first = ThreadJob(blocking_work(release_first, ran, "first"), governor=governor).start()
    wait_for(lambda: ran == ["first"])
    second = ThreadJob(blocking_work(release_second, ran, "second"), governor=governor).start()
    wait_for(lambda: second.status == JobStatus.QUEUED)
    assert second.queue_position() == 1 and governor.running == 1 and ran == ["first"]
    release_first.set()
    first.join(5)
    assert first.status == JobStatus.DONE
    wait_for(lambda: ran == ["first", "second"])
    assert second.status == JobStatus.RUNNING and second.queue_position() is None
    release_second.set()
    second.join(5)
    assert second.status == JobStatus.DONE and governor.running == 0


def test_a_job_stopped_while_queued_never_runs_and_frees_its_place() -> None:
    governor = Governor(1)
    release, ran = threading.Event(), []
    first = ThreadJob(blocking_work(release, ran, "first"), governor=governor).start()
    wait_for(lambda: ran == ["first"])
    queued = ThreadJob(blocking_work(release, ran, "queued"), governor=governor).start()
    wait_for(lambda: queued.status == JobStatus.QUEUED)
    queued.request_stop()
    queued.join(5)
    assert queued.status == JobStatus.STOPPED and ran == ["first"] and queued.queue_position() is None
    release.set()
    first.join(5)
    assert governor.running == 0


def test_without_a_limit_jobs_run_together() -> None:
    governor, release, ran = Governor(None), threading.Event(), []
    jobs = [ThreadJob(blocking_work(release, ran, str(i)), governor=governor).start() for i in range(3)]
    wait_for(lambda: len(ran) == 3)
    assert governor.running == 3
    release.set()
    for job in jobs:
        job.join(5)
    assert all(job.status == JobStatus.DONE for job in jobs)


def test_a_stop_reaches_the_work_and_every_failure_becomes_a_status() -> None:
    release, ran = threading.Event(), []
    job = ThreadJob(blocking_work(release, ran, "x")).start()
    wait_for(lambda: ran == ["x"])
    job.request_stop()
    job.join(5)
    assert job.status == JobStatus.DONE  # the work returned when asked to stop

    def user_mistake(_job: ThreadJob) -> None:
        raise ExplorerError("the folder holds no images")

    failed = ThreadJob(user_mistake).start()
    failed.join(5)
    assert failed.status == JobStatus.FAILED and failed.error == "the folder holds no images"

    def bug(_job: ThreadJob) -> None:
        raise RuntimeError("internal detail")

    hidden = ThreadJob(bug, classify=lambda exc: (JobStatus.FAILED, "Something went wrong")).start()
    hidden.join(5)
    assert hidden.status == JobStatus.FAILED and hidden.error == "Something went wrong"


def test_training_progress_is_followed() -> None:
    steps = threading.Event()

    def work(job: ThreadJob) -> None:
        fit.progress("load", 5, 0, {})
        fit.progress("train", 3, 10, {"epoch": 1, "loss": 0.5})
        fit.progress("val", 1, 1, {"epoch": 1, "val_max_box_acc": 50.0})
        steps.wait(5)

    fit = TrainingJob(work, {"spec": "synthetic"}, "out.pt")
    fit.start()
    wait_for(lambda: fit.history)
    assert fit.loaded == 5 and fit.fraction == pytest.approx(0.3)
    assert fit.describe().startswith("step 3 / 10, epoch 1, loss 0.5000")
    steps.set()
    fit.join(5)
    assert fit.status == JobStatus.DONE


def test_a_governor_needs_a_slot() -> None:
    with pytest.raises(ValueError):
        Governor(0)


def test_a_job_stops_when_its_session_ends_or_nobody_looks() -> None:
    connected = threading.Event()
    connected.set()
    ran: list[str] = []
    job = ThreadJob(blocking_work(threading.Event(), ran, "fit"), owner="session-1", alive=connected.is_set).start()
    wait_for(lambda: ran == ["fit"])
    connected.clear()  # the browser tab was closed
    job.join(5)
    assert job.status == JobStatus.DONE and "session that started it has ended" in job.note

    idle = ThreadJob(blocking_work(threading.Event(), ran, "idle"), idle_timeout_s=0.3).start()
    wait_for(lambda: "idle" in ran)
    for _ in range(3):  # looked at: keeps running
        time.sleep(0.1)
        idle.touch()
    assert idle.running
    idle.join(5)  # then nobody looks
    assert idle.status == JobStatus.DONE and "nobody looked at it" in idle.note


def test_a_queued_job_of_a_closed_session_never_starts() -> None:
    governor, release, ran = Governor(1), threading.Event(), []
    first = ThreadJob(blocking_work(release, ran, "first"), governor=governor).start()
    wait_for(lambda: ran == ["first"])
    gone = threading.Event()
    queued = ThreadJob(blocking_work(release, ran, "queued"), governor=governor, alive=lambda: not gone.is_set()).start()
    wait_for(lambda: queued.status == JobStatus.QUEUED)
    gone.set()
    queued.join(5)
    assert queued.status == JobStatus.STOPPED and ran == ["first"]
    release.set()
    first.join(5)


def test_waiting_callers_learn_their_place() -> None:
    governor, release, ran, positions = Governor(1), threading.Event(), [], []
    first = ThreadJob(blocking_work(release, ran, "first"), governor=governor).start()
    wait_for(lambda: ran == ["first"])

    def later() -> None:
        with governor.slot(ThreadJob(lambda job: None), on_wait=positions.append, mark=False) as granted:
            assert granted

    waiter = threading.Thread(target=later)
    waiter.start()
    wait_for(lambda: positions)
    release.set()
    waiter.join(5)
    first.join(5)
    assert set(positions) == {1}
