"""The bounded memo behind the sigma slider: byte bound, recency, shared values read-only, and
a sigma move that redraws only the Gaussian column."""

from __future__ import annotations

import numpy as np
import pytest

from explorer.memo import BoundedMemo, digest


def test_the_memo_holds_at_most_its_bytes_and_drops_the_least_recent():
    memo: BoundedMemo[bytes] = BoundedMemo(max_bytes=300)
    for key in "abc":
        memo.put(key, bytes(100))
    assert memo.get("a") is not None  # a is now the most recent
    memo.put("d", bytes(100))
    assert memo.get("b") is None and {k for k in "acd" if memo.get(k) is not None} == set("acd")
    assert memo.bytes_held == 300
    memo.put("huge", bytes(301))  # larger than the whole memo: handed back, never kept
    assert memo.get("huge") is None and memo.bytes_held == 300


def test_a_kept_array_is_read_only_and_made_once():
    memo: BoundedMemo[np.ndarray] = BoundedMemo(max_bytes=10_000)
    calls = []
    make = lambda: calls.append(1) or np.ones(4)  # noqa: E731
    first = memo.get_or_make("k", make)
    assert memo.get_or_make("k", make) is first and len(calls) == 1
    with pytest.raises(ValueError):
        first[0] = 2.0


def test_digest_names_content_shape_and_dtype():
    a = np.arange(6, dtype=np.float32)
    assert digest(a) == digest(a.copy())
    assert digest(a) != digest(a.reshape(2, 3)) != digest(a.astype(np.float64))
    b = a.copy()
    b[3] += 1e-6
    assert digest(a) != digest(b)
    assert digest(a.reshape(2, 3).T) == digest(np.ascontiguousarray(a.reshape(2, 3).T))


def test_a_sigma_move_reuses_the_bilinear_column_and_redraws_the_gaussian_one():
    import torch

    from explorer.ui.maps import GridResult, pixel_table
    from explorer.upsample import gaussian_upsample, normalise

    rng = np.random.default_rng(0)
    maps = {m: rng.standard_normal((7, 7)).astype(np.float32) for m in ("cam", "gradcam")}
    result = GridResult(key="test", maps=maps, relu={m: "none" for m in maps}, seconds={})
    first = pixel_table(result, (56, 56), ["bilinear", "gaussian"], (8.0, 8.0), "minmax")
    moved = pixel_table(result, (56, 56), ["bilinear", "gaussian"], (8.5, 8.0), "minmax")
    for m in maps:
        assert moved[(m, "bilinear")] is first[(m, "bilinear")]
        assert not np.array_equal(moved[(m, "gaussian")], first[(m, "gaussian")])
        expected = normalise(gaussian_upsample(torch.from_numpy(maps[m])[None], (56, 56), (8.5, 8.0)))[0]
        np.testing.assert_allclose(moved[(m, "gaussian")], expected.numpy(), rtol=1e-6, atol=1e-6)
    # Other maps with the same settings are never handed another map's pixels.
    other = GridResult(key="other", maps={"cam": maps["gradcam"]}, relu={"cam": "none"}, seconds={})
    np.testing.assert_array_equal(pixel_table(other, (56, 56), ["bilinear"], (8.0, 8.0), "minmax")[("cam", "bilinear")],
                                  first[("gradcam", "bilinear")])
