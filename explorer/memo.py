"""A bounded, thread-safe memo for derived arrays and bytes that a slider move recomputes.

The app serves several sessions from threads of one process. Keys name the content they derive
from (a digest of the input array, and every setting), so one session can only ever be handed
what its own inputs produce; the bound is in bytes, so memory stays fixed however many sessions
move sliders.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

import numpy as np

T = TypeVar("T")


def digest(array: np.ndarray) -> str:
    """The content of an array (shape, dtype and bytes) as a short hex string."""
    array = np.ascontiguousarray(array)
    h = hashlib.blake2b(digest_size=16)
    h.update(f"{array.shape}{array.dtype}".encode())
    h.update(array.data.cast("B"))
    return h.hexdigest()


def _size(value: object) -> int:
    if isinstance(value, np.ndarray):
        return int(value.nbytes)
    if isinstance(value, (bytes, bytearray)):
        return len(value)
    return 1024


class BoundedMemo(Generic[T]):
    """Least recently used first out, once the values held pass `max_bytes`."""

    def __init__(self, max_bytes: int):
        self.max_bytes = max_bytes
        self._values: OrderedDict[Hashable, tuple[T, int]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, key: Hashable) -> T | None:
        with self._lock:
            found = self._values.get(key)
            if found is None:
                return None
            self._values.move_to_end(key)
            return found[0]

    def put(self, key: Hashable, value: T, size: int | None = None) -> T:
        """Keep `value` (an array becomes read-only: it is shared by every caller that asks next);
        `size` in bytes where it is neither an array nor bytes."""
        if isinstance(value, np.ndarray):
            value.setflags(write=False)
        size = _size(value) if size is None else int(size)
        with self._lock:
            if key in self._values:
                self._bytes -= self._values.pop(key)[1]
            if size <= self.max_bytes:
                self._values[key] = (value, size)
                self._bytes += size
            while self._bytes > self.max_bytes:
                self._bytes -= self._values.popitem(last=False)[1][1]
        return value

    def get_or_make(self, key: Hashable, make: Callable[[], T], size: int | None = None) -> T:
        found = self.get(key)
        return found if found is not None else self.put(key, make(), size)

    def __len__(self) -> int:
        return len(self._values)

    @property
    def bytes_held(self) -> int:
        return self._bytes
