"""One atomic writer: a reader sees the old file or the new one, never half of either.

Every artefact the engine writes (cards, run states, chunks, summaries, decoders, classifiers)
goes through `write_atomically`: the bytes go to a temporary file that `tempfile.mkstemp` creates
in the target's own folder (so the rename stays on one file system, and two threads or processes
never share a temporary name), are flushed and fsync'ed, and the file is renamed over the target;
on any failure the temporary file is removed and the target is left as it was.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import numpy as np

# mkstemp makes files private (0600); artefacts are shared, readable by everyone like any other file.
FILE_MODE = 0o644


def write_atomically(path: str | os.PathLike[str], data: bytes | Callable[[IO[bytes]], Any]) -> Path:
    """Write `data` (bytes, or a function that writes into a binary file) to `path` atomically.

    Creates the parent folder when it is missing; returns the path written.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        os.chmod(tmp, FILE_MODE)
        with os.fdopen(fd, "wb") as handle:
            if callable(data):
                data(handle)
            else:
                handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def write_text_atomically(path: str | os.PathLike[str], text: str) -> Path:
    return write_atomically(path, text.encode("utf-8"))


def write_json_atomically(path: str | os.PathLike[str], value: Any, **dumps: Any) -> Path:
    """JSON with a trailing newline (indent 2 unless told otherwise)."""
    dumps.setdefault("indent", 2)
    return write_text_atomically(path, json.dumps(value, **dumps) + "\n")


def save_torch_atomically(path: str | os.PathLike[str], obj: object) -> Path:
    """`torch.save(obj)` through the atomic writer (a state_dict or a run state, never a module)."""
    import torch

    return write_atomically(path, lambda handle: torch.save(obj, handle))


def save_npz_atomically(path: str | os.PathLike[str], arrays: dict[str, np.ndarray], compressed: bool = True) -> Path:
    buffer = io.BytesIO()
    save: Any = np.savez_compressed if compressed else np.savez  # numpy's stubs type **arrays as its flags
    save(buffer, **arrays)
    return write_atomically(path, buffer.getvalue())
