"""The Receptive Field page's glue: ERF estimates as jobs kept in this session's state, the cached
fits, and the stored cards.

An estimate is an `explorer.jobs.ErfJob`: its running sum, count, per-image snapshots and batch
iterator live on one plain object that the loop updates after each batch. A click while the loop
runs (Stop, or anything else) makes Streamlit 1.67 start the next run at once on a new script
thread and ask the old one to stop at its next `st.*` call; the old thread may still be inside a
batch. Hence each job has a lock, held by a loop for one batch (take it from the iterator,
compute, commit), and an owner: the new run's callbacks and reads wait for that batch to be
committed, and a run that starts the loop takes ownership, so the old thread stops at its next
batch. Nothing accumulated is lost or counted twice, and the iterator is never used by two
threads. Stop marks the job stopped; any other click lets the next run carry on where the loop was.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import numpy as np
import streamlit as st

from explorer import views
from explorer.backbones import Backbone
from explorer.erf import (
    ErfEstimate,
    ErfFit,
    ErfFitError,
    convergence,
    estimate_erf,
    fit_erf,
    image_source,
    load_erf_card,
)
from explorer.errors import ExplorerError
from explorer.jobs import ErfJob, ErfSettings, JobStatus
from explorer.presets import ERF_DIR, CardError, erf_card_path
from explorer.server_files import ServerPathError
from explorer.ui.loading import NETWORK_LOCK, server_governor
from explorer.ui.uploads import typed_folder

logger = logging.getLogger(__name__)

ERF_BATCH = 8  # a power of two, so the snapshots at 1, 2, 4, 8, 16, ... images are exact
ERF_IMAGES = (4, 256, 32)  # slider: min, max, default
ERF_SOURCES = {"noise": "Gaussian noise", "gallery": "sample-gallery crops", "folder": "a folder the server shares"}
ERF_MODE_LABELS = {"abs": "abs |g| (Luo et al.)", "relu": "relu max(g, 0)", "square": "square g²",
                   "signed": "signed g"}
ERF_REDRAW_S = 1.5  # the running-mean picture is redrawn at most this often while estimating
_ERF_JOBS = "erf.jobs"
_ERF_MAX_JOBS = 6


def folder_problem(path: str) -> str | None:
    """Why a folder path typed by a visitor cannot be used (the same words for a folder that is
    missing and one outside the shared roots: explorer.server_files), or None when it can; the
    full check, that its files are images, runs when the estimate starts."""
    try:
        folder = typed_folder(path)
    except ServerPathError as exc:
        return str(exc)
    if not any(p.is_file() and not p.name.startswith(".") for p in folder.iterdir()):
        return f"The folder '{path.strip()}' holds no files: put some photos (PNG, JPEG, ...) in it."
    return None


def folder_source(path: str) -> str:
    """The ERF source of a shared folder (ServerPathError for any other)."""
    return "folder:" + str(typed_folder(path))


def _erf_jobs() -> dict[str, ErfJob]:
    return st.session_state.setdefault(_ERF_JOBS, {})


@st.cache_resource(show_spinner=False)
def _erf_store() -> tuple[threading.Lock, dict[str, ErfEstimate]]:
    """Finished estimates shared by every session, keyed on ErfSettings.key (strings only);
    entries are never modified after they are stored."""
    return threading.Lock(), {}


def _stored_estimate(key: str) -> ErfEstimate | None:
    lock, store = _erf_store()
    with lock:
        return store.get(key)


def _store_estimate(key: str, estimate: ErfEstimate, max_entries: int = 8) -> None:
    lock, store = _erf_store()
    with lock:
        store.pop(key, None)
        store[key] = estimate
        while len(store) > max_entries:
            store.pop(next(iter(store)))


def erf_job(backbone: Backbone, layer: str) -> ErfJob | None:
    """The latest estimate for this backbone, weights and layer; a running estimate of another
    layer is paused (marked stopped, its images kept), as only the shown layer runs."""
    jobs = _erf_jobs()
    here = "|".join((backbone.name, backbone.weights, layer))
    for key, job in jobs.items():
        if key != here:
            job.pause("paused when the sidebar's layer changed")
    return jobs.get(here)


def start_erf(settings: ErfSettings) -> None:
    """Callback of "Estimate": a fresh job (finished at once when another session or an earlier
    run already computed exactly these settings)."""
    jobs = _erf_jobs()
    job = ErfJob(settings)
    cached = _stored_estimate(settings.key)
    if cached is not None:
        job.status, job.result, job.done = JobStatus.DONE, cached, cached.n_images
        job.note = "reused: these settings were estimated before"
    jobs.pop(settings.layer_key, None)
    jobs[settings.layer_key] = job
    while len(jobs) > _ERF_MAX_JOBS:
        jobs.pop(next(iter(jobs)))


def _find_job(uid: str) -> ErfJob | None:
    return next((job for job in _erf_jobs().values() if job.uid == uid), None)


def stop_erf(uid: str) -> None:
    """Callback of "Stop": keep what was accumulated, mark the job stopped."""
    job = _find_job(uid)
    if job is None:
        return
    job.pause()  # after the batch in flight (if any) is committed


def continue_erf(uid: str) -> None:
    """Callback of "Continue": resume a stopped job where it stopped."""
    job = _find_job(uid)
    if job is None:
        return
    job.resume()


def _source(backbone: Backbone, settings: ErfSettings):
    return image_source(settings.source, backbone, settings.n, ERF_BATCH, settings.seed)


def run_erf_job(backbone: Backbone, job: ErfJob) -> None:
    """Run `job` to its end here, drawing a progress bar, a Stop button and the running mean.

    Each batch is taken, computed and committed under the job's lock with no `st.*` call in
    between (the only places Streamlit stops a script), so a Stop (or any other click) loses
    nothing (the module's docstring says which threads are involved). Errors end the job as
    failed, with what was accumulated kept."""
    s = job.settings
    token = object()
    with job.lock:  # waits for an older run's batch in flight, then this run owns the job
        job.owner = token
    box = st.empty()
    with box.container(border=True):
        st.markdown(f"**Estimating the ERF** of `{s.backbone}` / `{s.layer}` from {s.describe()}"
                    + (f" — continuing from {job.done} images" if job.done else ""))
        bar = st.progress(job.done / job.total, text=job.progress_text())
        st.button("Stop", key="erf.stop", icon=":material/stop_circle:", on_click=stop_erf, args=(job.uid,),
                  help="Stop after the batch in flight; the images averaged so far are kept and you can continue.")
        live = st.empty()

    def waiting(position: int) -> None:
        bar.progress(job.fraction, text=f"Waiting for a free slot: number {position} in the queue")

    with server_governor().slot(job, cancelled=lambda: job.owner is not token or not job.running,
                                on_wait=waiting, mark=False) as granted:
        if granted:
            _advance(backbone, job, token, bar, live)
    box.empty()  # finished, failed or stopped: what follows on the page says so


def _advance(backbone: Backbone, job: ErfJob, token: object, bar: Any, live: Any) -> None:
    """The batches of `run_erf_job`, while this run owns the job and it runs."""
    s = job.settings
    last_draw = 0.0
    try:
        while True:
            with job.lock:  # one batch: no st.* call in here, so Streamlit cannot stop it halfway
                if job.owner is not token or not job.running or job.done >= job.total:
                    break
                start = time.perf_counter()
                batch = next(job.batches(lambda settings: _source(backbone, settings), ERF_BATCH), None)
                if batch is None:
                    break
                with NETWORK_LOCK:
                    part = estimate_erf(backbone, s.layer, batch, mode=s.mode, batch_size=ERF_BATCH)
                job.commit(part, time.perf_counter() - start)
                done, mean = job.done, job.running_mean()
            # Streamlit may stop this run from here on (a click): the batch is already in the job.
            bar.progress(done / job.total, text=job.progress_text())
            if time.monotonic() - last_draw >= ERF_REDRAW_S or done >= job.total:
                last_draw = time.monotonic()
                live.image(views.erf_image(mean), width=300, output_format="PNG",
                           caption=f"running mean after {done} images")
    except ExplorerError as exc:
        with job.lock:
            job.status, job.error, job.iterator = JobStatus.FAILED, str(exc), None
    except Exception:
        logger.exception("Unexpected error while estimating the ERF")
        with job.lock:
            job.status, job.iterator = JobStatus.FAILED, None
            job.error = "Something went wrong while estimating the ERF; the details are in the server log."
    else:
        with job.lock:
            if job.owner is token and job.running:  # all images done (or the source ran out)
                job.status, job.iterator, job.owner, job.total = JobStatus.DONE, None, None, job.done
                estimate = job.current_estimate()
                if estimate is not None:
                    _store_estimate(s.key, estimate)


def erf_fit(job: ErfJob, offset: bool, rotation: bool) -> ErfFit:
    """The 2D Gaussian fit of what the job has accumulated (ErfFitError when it fails)."""
    return _erf_fit(job.key, offset, rotation, _map=job.require_estimate().map)


@st.cache_data(max_entries=32, show_spinner="Fitting a 2D Gaussian…")
def _erf_fit(key: str, offset: bool, rotation: bool, *, _map: np.ndarray) -> ErfFit:
    return fit_erf(_map, offset=offset, rotation=rotation)


def erf_convergence(job: ErfJob, offset: bool, rotation: bool) -> list[dict[str, Any]]:
    """R² and sigma after 1, 2, 4, ... images (explorer.erf.convergence), cached on the key."""
    return _erf_convergence(job.key, offset, rotation, _estimate=job.require_estimate())


@st.cache_data(max_entries=16, show_spinner="Fitting the running means…")
def _erf_convergence(key: str, offset: bool, rotation: bool, *, _estimate: ErfEstimate) -> list[dict[str, Any]]:
    return convergence(_estimate, offset=offset, rotation=rotation)


def erf_alternative_fit(job: ErfJob, offset: bool, rotation: bool) -> ErfFit | None:
    """The fit with the offset option flipped (to tell a peak on a floor apart); None if it fails."""
    try:
        return erf_fit(job, not offset, rotation)
    except ErfFitError:
        return None


def erf_card(backbone: str, layer: str) -> tuple[dict[str, Any] | None, Any]:
    """(card, png path or None) of the stored fit of this backbone/layer; a damaged card is
    reported with st.warning and treated as absent."""
    path = erf_card_path(backbone, layer)
    if not path.is_file():
        return None, None
    try:
        card = load_erf_card(path)
    except CardError as exc:
        st.warning(str(exc))
        return None, None
    png = path.with_suffix(".png")
    return card, png if png.is_file() else None


def stored_erf_cards() -> list[dict[str, Any]]:
    """Every stored card as a table row (damaged cards skipped), for comparison."""
    rows = []
    for path in sorted(ERF_DIR.glob("*.json")):
        try:
            card = load_erf_card(path)
        except CardError:
            continue
        rows.append({"backbone": card["backbone"], "layer": card["layer"], "weights": card["weights"],
                     "images": f"{card['n_images']} {card.get('source', '')}", "mode": card["mode"],
                     "R²": round(float(card["r2"]), 4), "σx": round(float(card["sigma_x"]), 2),
                     "σy": round(float(card["sigma_y"]), 2)})
    return rows


def erf_comparison_choices() -> dict[str, tuple[str, Any]]:
    """What the side-by-side view can show, by label: every stored card ("card", path) and every
    estimate of this session that has images ("job", job). Other sessions' estimates are not
    offered: they are theirs."""
    choices: dict[str, tuple[str, Any]] = {}
    for path in sorted(ERF_DIR.glob("*.json")):
        try:
            card = load_erf_card(path)
        except CardError:
            continue
        choices[f"{card['backbone']} / {card['layer']} (stored, {card['weights']})"] = ("card", path)
    for job in _erf_jobs().values():
        if job.estimate() is None:
            continue
        s = job.settings
        choices[f"{s.backbone} / {s.layer} (this session, {job.done} {s.source.split(':')[0]} images)"] = ("job", job)
    return choices


def erf_comparison(choice: tuple[str, Any], label: str) -> tuple[views.ErfOutline, Any] | None:
    """(outline, picture) of one choice: a card's outline and its PNG path, or a fresh estimate's
    plain fit and its map. None when a fresh estimate cannot be fitted."""
    kind, value = choice
    if kind == "card":
        card = load_erf_card(value)
        png = value.with_suffix(".png")
        return views.ErfOutline.from_card(card), png if png.is_file() else None
    estimate = value.require_estimate()
    try:
        fit = erf_fit(value, False, False)
    except ErfFitError:
        return None
    return views.ErfOutline.from_fit(label.split(" (")[0], fit, estimate.map.shape), (estimate, fit)
