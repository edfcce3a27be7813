"""The one error family for everything a user can cause.

Every error a person can trigger (a broken image, an unknown layer, missing weights, a malformed
dataset line, an impossible setting) derives from `ExplorerError` and carries a message meant for
that person: what is wrong and what to do about it. The CLI catches `ExplorerError` in one place
(one `error:` line, exit status 2) and so does the UI (one `st.error`); anything else is a bug,
logged with its traceback.

`ExplorerError` is a `ValueError`, so code written against the older per-module classes (each a
`ValueError`) keeps working.
"""

from __future__ import annotations


class ExplorerError(ValueError):
    """A problem the user can fix; ``str(error)`` (also ``error.message``) is written for them."""

    @property
    def message(self) -> str:
        return str(self)
