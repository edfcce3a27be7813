"""Sigma presets for the Gaussian upsampler.

A fitted ERF lives in `checkpoints/erf/<backbone>__<layer>.json` (written by
`python -m explorer erf`), with at least: backbone, layer, weights, sigma_x, sigma_y, r2 and the
command that made it. The presets offered to a user are: that fit when it exists (the default),
the Extended-CAM paper's VGG16 values, and manual.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from explorer.errors import ExplorerError
from explorer.safe_files import read_json

ERF_DIR = Path(__file__).resolve().parent.parent / "checkpoints" / "erf"
PAPER_SIGMA = (31.78, 33.36)  # Extended-CAM Table 1, pretrained VGG16 conv5_3
PAPER_LABEL = "Extended-CAM paper, VGG16 (31.78, 33.36)"
MANUAL_LABEL = "manual"


class CardError(ExplorerError):
    """A stored fit (card) is damaged; reported, never silently ignored."""


@dataclass(frozen=True)
class FittedSigma:
    sigma_x: float
    sigma_y: float
    r2: float
    weights: str
    path: Path

    @property
    def label(self) -> str:
        return (f"fitted ERF of this backbone/layer ({self.sigma_x:.1f}, {self.sigma_y:.1f}; "
                f"R² {self.r2:.3f}, {self.weights} weights)")


def erf_card_path(backbone: str, layer: str, directory: Path = ERF_DIR) -> Path:
    return directory / f"{backbone}__{layer}.json"


def fitted_sigma(backbone: str, layer: str, directory: Path = ERF_DIR) -> FittedSigma | None:
    """The stored fit for this backbone/layer, None when there is none, CardError when damaged."""
    path = erf_card_path(backbone, layer, directory)
    if not path.is_file():
        return None
    try:
        card = read_json(path)  # a pipe or a device in its place is refused, not read
        if not isinstance(card, dict):
            raise TypeError("not a JSON object")
        sx, sy, r2 = float(card["sigma_x"]), float(card["sigma_y"]), float(card["r2"])
        weights = str(card.get("weights", "unknown"))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CardError(f"The ERF card {path} is damaged ({exc.__class__.__name__}: {exc}); "
                        f"re-create it with the command recorded in it or delete it.") from exc
    if not all(math.isfinite(v) for v in (sx, sy, r2)) or sx <= 0 or sy <= 0:
        raise CardError(f"The ERF card {path} holds impossible values (sigma {sx}, {sy}, R² {r2}).")
    return FittedSigma(sx, sy, r2, weights, path)


def sigma_presets(backbone: str, layer: str, directory: Path = ERF_DIR,
                  weights: str | None = None, fit: FittedSigma | None | bool = False
                  ) -> dict[str, tuple[float, float] | None]:
    """label -> (sigma_x, sigma_y); the first entry is the default; "manual" maps to None.

    A stored fit is the default only for the weights it was measured on: an ERF fitted on a
    randomly initialised VGG16 is still offered for the pretrained one (its label says so), but
    the paper's measurement on pretrained weights comes first there. `weights` None skips the check.
    """
    presets: dict[str, tuple[float, float] | None] = {}
    if fit is False:  # not read by the caller yet (a caller that has read the card passes it, or None)
        fit = fitted_sigma(backbone, layer, directory)
    assert fit is None or isinstance(fit, FittedSigma)
    matches = fit is not None and (weights is None or fit.weights == weights)
    if fit is not None and matches:
        presets[fit.label] = (fit.sigma_x, fit.sigma_y)
    presets[PAPER_LABEL] = PAPER_SIGMA
    if fit is not None and not matches:
        presets[fit.label] = (fit.sigma_x, fit.sigma_y)
    presets[MANUAL_LABEL] = None
    return presets
