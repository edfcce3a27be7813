"""Reading files a user named, without being led astray by them.

* Only regular files are read. A named pipe would block `open` forever and a device file
  (`/dev/zero`) never ends: both are refused from their `stat`, before anything is opened, and
  the file is opened non-blocking and checked again (`fstat`) so a swap in between changes nothing.
* A path inside a dataset is resolved (symbolic links followed) and must stay inside the
  dataset's folder: a link to `/etc/passwd` is refused like a `..`.
* The reason says what the thing is: "file not found", "a folder", "a named pipe", "a device".
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

from explorer.errors import ExplorerError


class UnsafeFileError(ExplorerError):
    """A named file cannot be read safely; the message says what it is instead."""


def _kind(mode: int) -> str | None:
    """What a non-regular file is, in words; None for a regular file."""
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISDIR(mode):
        return "a folder, not a file"
    if stat.S_ISFIFO(mode):
        return "a named pipe, not a file"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device, not a file"
    if stat.S_ISSOCK(mode):
        return "a socket, not a file"
    return "not a regular file"


def file_problem(path: str | os.PathLike[str]) -> str | None:
    """Why `path` cannot be read as a regular file ("file not found", "a named pipe, not a
    file", ...), or None when it can. Never opens anything, so it never blocks."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        return "file not found"
    except PermissionError:
        return "permission denied"
    except (OSError, ValueError):  # ValueError: a NUL byte in the path
        return "cannot be read"
    return _kind(info.st_mode)


def read_regular(path: str | os.PathLike[str], max_bytes: int) -> bytes:
    """The bytes of the regular file `path` (at most `max_bytes`, else UnsafeFileError)."""
    problem = file_problem(path)
    if problem is not None:
        raise UnsafeFileError(f"{path}: {problem}")
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise UnsafeFileError(f"{path}: cannot be opened ({exc.strerror or exc})") from exc
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(handle.fileno())
        problem = _kind(info.st_mode)  # the file opened is the one checked
        if problem is not None:
            raise UnsafeFileError(f"{path}: {problem}")
        if info.st_size > max_bytes:
            raise UnsafeFileError(f"{path}: {info.st_size / 2**20:.1f} MB, more than the {max_bytes / 2**20:.0f} MB "
                                  "allowed")
        data = handle.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise UnsafeFileError(f"{path}: more than the {max_bytes / 2**20:.0f} MB allowed")
    return data


MAX_CARD_BYTES = 16 * 2**20  # a card, a class-name list, a metadata file: text, never this large


def read_json(path: str | os.PathLike[str], max_bytes: int = MAX_CARD_BYTES) -> Any:
    """The JSON in the regular file `path` (size-checked before reading, as `read_regular`);
    UnsafeFileError saying why when it is missing, not a file, too large, or not JSON."""
    data = read_regular(path, max_bytes)
    try:
        return json.loads(data.decode("utf-8-sig"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise UnsafeFileError(f"{path}: not valid JSON ({str(exc)[:120]})") from exc


def read_json_object(path: str | os.PathLike[str], error: type[ExplorerError], advice: str,
                     max_bytes: int = MAX_CARD_BYTES) -> dict:
    """The JSON object in `path`, or `error` with why it cannot be read and `advice` (what to do)."""
    try:
        value = read_json(path, max_bytes)
    except UnsafeFileError as exc:
        raise error(f"{exc}; {advice}") from exc
    if not isinstance(value, dict):
        raise error(f"{path}: not a JSON object; {advice}")
    return value


def is_inside(root: str | os.PathLike[str], path: str | os.PathLike[str]) -> bool:
    """True when `path`, with every symbolic link resolved, lies inside `root` (resolved too)."""
    try:
        Path(path).resolve().relative_to(Path(root).resolve())
    except (ValueError, OSError, RuntimeError):  # RuntimeError: a symlink loop
        return False
    return True


def contained_problem(root: str | os.PathLike[str], path: str | os.PathLike[str]) -> str | None:
    """Why the dataset file `path` must not be read: it resolves outside `root` (through a link),
    or it is not a regular file; None when it is fine."""
    if not is_inside(root, path):
        return "leaves the dataset folder (through a symbolic link)"
    return file_problem(path)
