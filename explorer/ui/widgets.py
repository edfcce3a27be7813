"""Widgets whose choices persist across pages, and the one place the UI turns an error into a message.

Streamlit forgets a widget's value as soon as a page stops rendering that widget, so every choice
is also kept in a plain (non-widget) `st.session_state` entry and each widget is re-seeded from it:
choices survive page switches, and an invalid choice falls back to the last valid one.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import streamlit as st

from explorer.errors import ExplorerError

T = TypeVar("T")

logger = logging.getLogger(__name__)

STATE_PREFIX = "cam."
WIDGET_PREFIX = "cam.widget."


def attempt(doing: str, action: Callable[[], T]) -> T | None:
    """Run `action`; on failure show a friendly `st.error` and return None.

    `doing` completes "Something went wrong while ..." for errors nobody anticipated; those are
    logged with their traceback (never shown on screen).
    """
    try:
        return action()
    except ExplorerError as exc:  # the one place the UI shows a user's mistake
        st.error(str(exc))
    except Exception:
        logger.exception("Unexpected error while %s", doing)
        st.error(f"Something went wrong while {doing}; the details are in the server log. "
                 f"Try another choice.")
    return None


def requested(name: str, settings: object, label: str, help: str = "") -> bool:
    """Heavy work runs only when asked for: True once the button was pressed for exactly these
    `settings` (remembered, so later reruns keep showing the result); otherwise the button is drawn
    and False returned. A change of settings asks again."""
    digest = hashlib.sha256(repr(settings).encode()).hexdigest()
    if remembered(f"requested.{name}", None) == digest:
        return True
    if st.button(label, key=WIDGET_PREFIX + f"{name}.go", type="primary", help=help or None):
        remember(f"requested.{name}", digest)
        return True
    return False


def remembered(name: str, default: T) -> T:
    """The last valid value of choice `name` (kept across pages), or `default`."""
    return st.session_state.setdefault(STATE_PREFIX + name, default)


def remember(name: str, value: Any) -> None:
    st.session_state[STATE_PREFIX + name] = value


def persistent(widget: Callable[..., T], label: str, name: str, default: T, *args: Any,
               coerce: Callable[[Any], T] = lambda value: value,
               on_change: Callable[[], None] | None = None, **kwargs: Any) -> T:
    """Render `widget(label, *args, **kwargs)` with its value remembered under `name`.

    Streamlit ties a widget's value to the page that rendered it (element ids include the page),
    so on another page a widget with the same key starts afresh. Hence the remembered value is the
    source of truth: it seeds the widget's key before every render (repaired by `coerce` when it
    is no longer valid, e.g. the options changed) and a change callback stores the user's new
    value before the rerun that follows. Seeding through session state instead of
    `value=`/`index=` means Streamlit never sees two competing defaults.
    """
    key = WIDGET_PREFIX + name
    st.session_state[key] = coerce(remembered(name, default))
    value = widget(label, *args, key=key, on_change=_keep, args=(name, on_change), **kwargs)
    remember(name, value)
    return value


def _keep(name: str, then: Callable[[], None] | None) -> None:
    """Change callback: remember the widget's new value, then run the caller's own callback."""
    remember(name, st.session_state[WIDGET_PREFIX + name])
    if then is not None:
        then()


def _one_of(options: Sequence[T], default: T | None) -> tuple[list[T], T]:
    choices = list(options)
    return choices, default if default in choices else choices[0]


def selectbox(label: str, name: str, options: Sequence[T], default: T | None = None, **kwargs: Any) -> T:
    """A persistent `st.selectbox`; a remembered value that is no longer offered becomes `default`."""
    choices, fallback = _one_of(options, default)
    return persistent(st.selectbox, label, name, fallback, choices,
                      coerce=lambda v: v if v in choices else fallback, **kwargs)


def radio(label: str, name: str, options: Sequence[T], default: T | None = None, **kwargs: Any) -> T:
    """A persistent `st.radio`."""
    choices, fallback = _one_of(options, default)
    return persistent(st.radio, label, name, fallback, choices,
                      coerce=lambda v: v if v in choices else fallback, **kwargs)


def multiselect(label: str, name: str, options: Sequence[T], default: Sequence[T], **kwargs: Any) -> list[T]:
    """A persistent `st.multiselect`; remembered values no longer offered are dropped."""
    choices = list(options)
    return persistent(st.multiselect, label, name, [d for d in default if d in choices], choices,
                      coerce=lambda v: [x for x in v if x in choices], **kwargs)


def toggle(label: str, name: str, default: bool, **kwargs: Any) -> bool:
    """A persistent `st.toggle`."""
    return persistent(st.toggle, label, name, default, coerce=bool, **kwargs)


def slider(label: str, name: str, low: T, high: T, default: T, **kwargs: Any) -> T:
    """A persistent `st.slider` whose remembered value is clamped into [low, high]."""
    kind: Callable[[Any], T] = type(default)
    return persistent(st.slider, label, name, default, low, high,
                      coerce=lambda v: kind(min(max(v, low), high)), **kwargs)


def range_slider(label: str, name: str, low: int, high: int, default: tuple[int, int], **kwargs: Any
                 ) -> tuple[int, int]:
    """A persistent two-handle `st.slider` (low, high), each end clamped into [low, high] and ordered."""
    def coerce(value: Any) -> tuple[int, int]:
        ends = sorted(int(min(max(v, low), high)) for v in value)
        return (ends[0], ends[-1])

    return persistent(st.slider, label, name, default, low, high, coerce=coerce, **kwargs)


def set_widget(name: str, value: Any) -> None:
    """Set a persistent widget's value (before it renders in this run, or from a callback)."""
    remember(name, value)
    st.session_state[WIDGET_PREFIX + name] = value


def checkbox(label: str, name: str, default: bool, **kwargs: Any) -> bool:
    """A persistent `st.checkbox`."""
    return persistent(st.checkbox, label, name, default, coerce=bool, **kwargs)


def text_input(label: str, name: str, default: str = "", **kwargs: Any) -> str:
    """A persistent `st.text_input`."""
    return persistent(st.text_input, label, name, default, coerce=lambda v: "" if v is None else str(v), **kwargs)


def number_input(label: str, name: str, low: int, high: int, default: int, **kwargs: Any) -> int:
    """A persistent integer `st.number_input`, clamped into [low, high]."""
    return persistent(st.number_input, label, name, default, low, high, step=1,
                      coerce=lambda v: int(min(max(int(v if v is not None else default), low), high)), **kwargs)


COMPACT_TOP = "<style>[data-testid='stMainBlockContainer'] { padding-top: 1rem; }</style>"


def compact_top() -> None:
    """Streamlit leaves 6 rem above a page's title; at a projector's 720 px that pushes the first
    maps below the fold, so the app keeps 1 rem (the header bar stays clear)."""
    st.markdown(COMPACT_TOP, unsafe_allow_html=True)
