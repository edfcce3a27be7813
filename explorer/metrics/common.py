"""What every metric shares: the error type, the threshold grid and input validation.

The evaluation protocol is the one of Choe et al., "Evaluating Weakly Supervised Object
Localization Methods Right" (CVPR 2020), as the F-CAM paper uses it; the facts it rests on are
collected in shared/reference/wsol-protocol.md. Score maps are float arrays in [0, 1], usually
224 x 224; they are converted to float64 (the reference's dtype) before anything else, so a
float32 map is evaluated exactly as its float64 copy would be.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from explorer.errors import ExplorerError

ArrayLike = np.ndarray | Sequence


class MetricError(ExplorerError):
    """Bad metric input (NaN or out-of-range map, reversed box, mask without a positive pixel...).
    The message says what was wrong and where."""


MIN_THRESHOLD_INTERVAL = 1e-4  # 10,000 thresholds; the protocol uses 1,000


def thresholds(interval: float = 0.001) -> np.ndarray:
    """The protocol's threshold grid tau = arange(0, 1, interval), float64.

    interval 0.001 (1000 thresholds) is the protocol value; the reference command line defaults to
    0.01 and the F-CAM authors validate with 0.004.
    """
    interval = float(interval)
    if not (MIN_THRESHOLD_INTERVAL <= interval <= 1.0):  # also rejects NaN
        raise MetricError(f"The threshold interval must lie in [{MIN_THRESHOLD_INTERVAL:g}, 1] (the protocol uses "
                          f"0.001); got {interval:g}. A finer grid only costs memory: 1e-9 would be 10^9 thresholds.")
    return np.arange(0, 1, interval)


def check_thresholds(taus: ArrayLike, increasing: bool = False) -> np.ndarray:
    """Thresholds as a 1-D float64 array in [0, 1); with `increasing`, strictly increasing (PxAP's
    histogram edges need it)."""
    taus = np.asarray(taus, dtype=np.float64)
    if taus.ndim != 1 or taus.size == 0:
        raise MetricError(f"Thresholds must be a non-empty 1-D list; got shape {taus.shape}.")
    if not np.all((taus >= 0.0) & (taus < 1.0)):
        raise MetricError("Thresholds must lie in [0, 1) (the protocol's arange(0, 1, interval)).")
    if increasing and np.any(np.diff(taus) <= 0):
        raise MetricError("Thresholds must be strictly increasing.")
    return taus


def as_numpy(x) -> np.ndarray:
    """An array from numpy input or a torch tensor (on any device, detached)."""
    if hasattr(x, "detach") and hasattr(x, "cpu"):  # torch.Tensor, without importing torch here
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def check_map(score_map: ArrayLike, where: str = "score map") -> np.ndarray:
    """One 2-D score map as float64, finite and in [0, 1] (the reference rejects anything else)."""
    arr = as_numpy(score_map)
    if arr.ndim != 2:
        raise MetricError(f"{where}: expected a 2-D map (H x W); got shape {arr.shape}.")
    if arr.size == 0:
        raise MetricError(f"{where}: the map is empty.")
    if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)
            or arr.dtype == np.bool_):
        raise MetricError(f"{where}: expected real numbers; got dtype {arr.dtype}.")
    arr = arr.astype(np.float64, copy=False)
    if np.isnan(arr).any():
        raise MetricError(f"{where}: contains NaN; normalise it first (the protocol maps a NaN CAM "
                          "to all zeros) rather than evaluating it.")
    lo, hi = arr.min(), arr.max()
    if lo < 0.0 or hi > 1.0:
        raise MetricError(f"{where}: values must lie in [0, 1]; got [{lo:g}, {hi:g}].")
    return arr


def iter_maps(score_maps: ArrayLike, where: str = "score_maps") -> list[np.ndarray]:
    """N x H x W array or tensor, one H x W map, or a sequence of 2-D maps -> list of checked
    float64 maps."""
    if not isinstance(score_maps, (list, tuple)):
        arr = as_numpy(score_maps)
        if arr.ndim == 2:
            arr = arr[None]
        if arr.ndim != 3:
            raise MetricError(f"{where}: expected N x H x W maps; got shape {arr.shape}.")
        return [check_map(m, f"{where}[{i}]") for i, m in enumerate(arr)]
    return [check_map(m, f"{where}[{i}]") for i, m in enumerate(score_maps)]
