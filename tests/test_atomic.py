"""explorer.atomic: a reader sees the old file or the new one, never half of either."""

from __future__ import annotations

import stat
import threading

import numpy as np
import pytest
import torch

from explorer.atomic import (
    save_npz_atomically,
    save_torch_atomically,
    write_atomically,
    write_json_atomically,
    write_text_atomically,
)


def leftovers(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_writes_bytes_text_json_torch_and_npz_readable_by_all(tmp_path) -> None:
    write_atomically(tmp_path / "a" / "b.bin", b"\x00\x01")  # the folder is made
    write_text_atomically(tmp_path / "t.txt", "héllo")
    write_json_atomically(tmp_path / "j.json", {"x": 1})
    save_torch_atomically(tmp_path / "w.pt", {"w": torch.ones(2)})
    save_npz_atomically(tmp_path / "a.npz", {"m": np.arange(3)})
    assert (tmp_path / "a" / "b.bin").read_bytes() == b"\x00\x01"
    assert (tmp_path / "t.txt").read_text(encoding="utf-8") == "héllo"
    assert (tmp_path / "j.json").read_text() == '{\n  "x": 1\n}\n'
    assert torch.equal(torch.load(tmp_path / "w.pt", weights_only=True)["w"], torch.ones(2))
    assert np.load(tmp_path / "a.npz")["m"].tolist() == [0, 1, 2]
    assert stat.S_IMODE((tmp_path / "t.txt").stat().st_mode) == 0o644
    assert leftovers(tmp_path) == []


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path) -> None:
    target = tmp_path / "card.json"
    target.write_text("old")

    def half_then_fail(handle) -> None:
        handle.write(b"new but incomp")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        write_atomically(target, half_then_fail)
    assert target.read_text() == "old"
    assert leftovers(tmp_path) == []


def test_threads_writing_one_target_never_collide(tmp_path) -> None:
    target = tmp_path / "state.bin"
    payloads = [bytes([i]) * 200_000 for i in range(8)]
    errors: list[BaseException] = []

    def write(data: bytes) -> None:
        try:
            for _ in range(5):
                write_atomically(target, data)
        except BaseException as exc:  # collected: a collision would surface here
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(p,)) for p in payloads]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert target.read_bytes() in payloads  # whole, from one writer
    assert leftovers(tmp_path) == []
