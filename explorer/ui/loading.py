"""Cached work shared by the pages, keyed on short strings (image digests, backbone, layer and
method names), never on arrays or tensors: Streamlit hashes large arrays by sampling (two different
images can share a key) and cannot hash tensors. What the work needs travels in `_`-prefixed,
unhashed arguments.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable

import streamlit as st
from PIL import Image

from explorer.backbones import REGISTRY, Backbone, load_backbone
from explorer.images import load_image
from explorer.jobs import Governor

# Network work (forwards with hooks on a model shared by every session) runs one call at a time:
# hooks added by one session must never fire inside another session's forward pass.
NETWORK_LOCK = threading.Lock()

MAX_JOBS_ENV = "CAM_EXPLORER_MAX_JOBS"  # long jobs running at once, server-wide (default 1)
IDLE_ENV = "CAM_EXPLORER_JOB_IDLE_S"  # a background job nobody looks at stops after this (default 900 s)


@st.cache_resource(show_spinner=False)
def server_governor() -> Governor:
    """The one governor of the server's long work (ERF estimates, evaluations, decoder fits,
    extra-pass methods): at most `$CAM_EXPLORER_MAX_JOBS` at once, the rest queued in order."""
    text = os.environ.get(MAX_JOBS_ENV, "1").strip()
    if text.lower() in ("0", "none", "unlimited"):
        return Governor(None)
    try:
        return Governor(max(1, int(text)))
    except ValueError:
        return Governor(1)


def idle_timeout_s() -> float:
    try:
        return max(10.0, float(os.environ.get(IDLE_ENV, "900")))
    except ValueError:
        return 900.0


def session_owner() -> tuple[str | None, Callable[[], bool] | None]:
    """(this session's id, a check that it is still connected), for a job it starts; (None,
    None) outside a served app (AppTest, bare mode)."""
    from streamlit.runtime import Runtime
    from streamlit.runtime.scriptrunner import get_script_run_ctx

    ctx = get_script_run_ctx()
    if ctx is None or not Runtime.exists():
        return None, None
    runtime, session = Runtime.instance(), ctx.session_id
    return session, lambda: runtime.is_active_session(session)


def load_cached_backbone(name: str, weights: str) -> Backbone:
    """The shared, cached backbone. Missing pretrained weights are reported before the (slow)
    architecture is built, so an unavailable choice costs nothing on every rerun."""
    if weights == "pretrained" and name in REGISTRY:
        REGISTRY[name].pretrained_file()
    return _load_backbone(name, weights)


@st.cache_resource(max_entries=3, show_spinner="Loading the network…")
def _load_backbone(name: str, weights: str) -> Backbone:
    """Shared by all sessions and never modified: callers only run forwards through it."""
    return load_backbone(name, weights)


@st.cache_data(max_entries=8, show_spinner=False)
def decode_upload(digest: str, _data: bytes) -> Image.Image:
    """Uploaded bytes -> RGB image, keyed on the bytes' SHA-256 (ImageError is not cached)."""
    return load_image(_data)


@st.cache_data(max_entries=8, show_spinner=False)
def layer_shapes(backbone_name: str, weights: str, _backbone: Backbone) -> dict[str, tuple[int, int, int]]:
    with NETWORK_LOCK:
        return {layer: _backbone.layer_shape(layer) for layer in _backbone.layers}


@st.cache_data(max_entries=32, show_spinner="Classifying the image…")
def top5(image_key: str, backbone_name: str, weights: str, _backbone: Backbone,
          _image: Image.Image) -> list[tuple[int, str, float]]:
    with NETWORK_LOCK:
        return _backbone.top_k(_backbone.preprocess(_image), 5)[0]
