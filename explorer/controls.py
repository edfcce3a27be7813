"""Maps that use no network: the controls every localisation number is read against.

A WSOL benchmark is only informative if a map that never looks at the class scores poorly on it;
otherwise a high MaxBoxAcc may be colour, not evidence. Each control takes the images themselves
(uint8, N x H x W x 3) and returns one map per image in [0, 1] (min-max normalised, float64):

* ``saturation``: HSV saturation, (max - min) / max over R, G, B: "anything colourful";
* ``median_distance``: the RGB distance of each pixel from the image's median colour: "anything
  unlike the ground";
* ``median_distance_filtered``: the same after a 5 x 5 median filter (texture removed first);
* ``frequency_tuned``: the frequency-tuned saliency of Achanta et al. (CVPR 2009),
  S(x) = || I_mean - I_blur(x) || in CIE Lab, with I_blur a 5 x 5 binomial blur: a classic
  colour-saliency map;
* ``centre``: the protocol's centre baseline (Choe et al. 2020), an isotropic Gaussian centred on
  the image. Its level sets are concentric discs whatever its sigma, so every box and pixel
  metric, which sweeps all thresholds, is independent of sigma (up to the uint8 step); sigma is
  a quarter of the image side.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from explorer.errors import ExplorerError

CONTROLS: dict[str, str] = {
    "saturation": "HSV saturation",
    "median_distance": "distance from the median colour",
    "median_distance_filtered": "distance from the median colour, 5x5 median-filtered",
    "frequency_tuned": "frequency-tuned colour saliency (Achanta et al. 2009)",
    "centre": "centre Gaussian (the protocol's baseline)",
}


class ControlError(ExplorerError):
    """A control map was asked for something it cannot do."""


def _minmax(maps: np.ndarray) -> np.ndarray:
    """Per-map min-max to [0, 1] in float64; a constant map becomes all zeros (as the protocol's)."""
    low = maps.min(axis=(1, 2), keepdims=True)
    span = maps.max(axis=(1, 2), keepdims=True) - low
    return np.where(span > 0, (maps - low) / np.where(span > 0, span, 1), 0.0)


def saturation(images: np.ndarray) -> np.ndarray:
    rgb = images.astype(np.float64)
    high, low = rgb.max(axis=3), rgb.min(axis=3)
    return np.where(high > 0, (high - low) / np.where(high > 0, high, 1), 0.0)


def median_distance(images: np.ndarray, filtered: bool = False) -> np.ndarray:
    rgb = images.astype(np.float64)
    if filtered:
        from scipy import ndimage  # here, not at import: the app loads this module on its first page

        rgb = ndimage.median_filter(rgb, size=(1, 5, 5, 1))
    median = np.median(rgb.reshape(len(rgb), -1, 3), axis=1)[:, None, None, :]
    return np.linalg.norm(rgb - median, axis=3)


def frequency_tuned(images: np.ndarray) -> np.ndarray:
    from scipy import ndimage
    from skimage.color import rgb2lab

    lab = np.stack([rgb2lab(image) for image in images])
    binomial = np.array([1, 4, 6, 4, 1], dtype=np.float64) / 16
    blurred = ndimage.convolve1d(ndimage.convolve1d(lab, binomial, axis=1, mode="reflect"), binomial, axis=2,
                                 mode="reflect")
    mean = lab.reshape(len(lab), -1, 3).mean(axis=1)[:, None, None, :]
    return np.linalg.norm(blurred - mean, axis=3)


def centre(count: int, height: int, width: int) -> np.ndarray:
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
    sigma = min(height, width) / 4
    gaussian = np.exp(-(((yy - (height - 1) / 2) ** 2 + (xx - (width - 1) / 2) ** 2) / (2 * sigma**2)))
    return np.repeat(gaussian[None], count, axis=0)


def control_maps(name: str, images: np.ndarray | Sequence[np.ndarray]) -> np.ndarray:
    """The control ``name`` for each image (N x H x W x 3 uint8): N x H x W float64 in [0, 1]."""
    batch = np.asarray(images)
    if batch.ndim != 4 or batch.shape[3] != 3:
        raise ControlError(f"control maps need N x H x W x 3 images, not an array of shape {batch.shape}")
    if name == "saturation":
        raw = saturation(batch)
    elif name == "median_distance":
        raw = median_distance(batch)
    elif name == "median_distance_filtered":
        raw = median_distance(batch, filtered=True)
    elif name == "frequency_tuned":
        raw = frequency_tuned(batch)
    elif name == "centre":
        raw = centre(len(batch), batch.shape[1], batch.shape[2])
    else:
        raise ControlError(f"unknown control map '{name}'; the controls are {', '.join(CONTROLS)}")
    return _minmax(raw)
