"""The one error type of the datasets package."""

from __future__ import annotations

from explorer.errors import ExplorerError

__all__ = ["DatasetError"]


class DatasetError(ExplorerError):
    """A dataset cannot be read or written as asked; ``str(error)`` is meant for the user.

    Problems in a metadata file name the file and the line (``.../localization.txt line 17:
    expected 5 comma-separated fields, got 4``) so the user can open the file and fix it.
    """
