"""Datasets for weakly-supervised localisation: protocol-format loaders and the synthetic benchmark.

    from explorer.datasets import open_dataset
    test = open_dataset("cub:/data/wsol", "test")      # or synthetic, openimages:..., voc:..., folder:...
    image, boxes = test.load_image(0), test.gt_boxes(0)  # boxes at 224 x 224, as the protocol scores them

The names below are imported on first use (PEP 562): the command line imports
``explorer.datasets.errors`` for every command, and should not pay for SciPy and scikit-image
unless a dataset is actually touched.
"""

from __future__ import annotations

import importlib
from typing import Any

# public name -> (module, attribute)
_EXPORTS: dict[str, tuple[str, str]] = {
    "DatasetError": ("explorer.datasets.errors", "DatasetError"),
    **{name: ("explorer.datasets.loaders", name) for name in (
        "IMAGE_EXTENSIONS", "VOC_CLASSES", "Sample", "WsolDataset", "load_folder", "load_gallery", "load_protocol",
        "load_synthetic", "load_voc2007", "open_dataset", "read_mask", "rescale_boxes")},
    **{name: ("explorer.datasets.synthetic", name) for name in (
        "ensure_synthetic", "make_synthetic", "read_manifest")},
    "SYNTHETIC_CLASSES": ("explorer.datasets.synthetic", "CLASSES"),
    "preview_sheet": ("explorer.datasets.preview", "preview_sheet"),
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'explorer.datasets' has no attribute '{name}'")
    module, attribute = _EXPORTS[name]
    value = getattr(importlib.import_module(module), attribute)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
