"""What every part of the ERF shares: the modes, the error family, the crop scale."""

from __future__ import annotations

from explorer.errors import ExplorerError

MODES = ("abs", "relu", "square", "signed")

#: A fit explaining less of the map than this is no Gaussian at all (pure noise gives ~0.00x).
#: EfficientNet-Lite0's head, a real but poorly Gaussian ERF, measures 0.54 here (256 gallery
#: crops), well above it.
MIN_R2 = 0.1

#: Gallery/folder crops: a square of this fraction of the photo's short side (uniform).
CROP_SCALE = (0.3, 1.0)


class ErfError(ExplorerError):
    """An ERF cannot be estimated as asked; the message says why and what to do."""


class ErfFitError(ErfError):
    """The 2D Gaussian fit did not converge (or found no Gaussian); never returned silently."""
