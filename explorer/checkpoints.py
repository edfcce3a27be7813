"""Loading weight files safely.

Every checkpoint goes through `torch.load(..., weights_only=True)`: a file that would need to run
code while unpickling is refused, never executed.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import torch


class CheckpointError(ValueError):
    """A weight file cannot be used; the message says which file and why."""


def load_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a state_dict (name -> tensor) from `path` onto the CPU.

    Accepts a bare state_dict or the common wrapping {"state_dict": {...}}.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"The weight file {path} does not exist.")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise CheckpointError(
            f"Refused to load {path}: it is not a plain tensor checkpoint (it asks to run code "
            f"or to build arbitrary Python objects while loading, which CAM Explorer never does). "
            f"Save the weights with torch.save(model.state_dict(), path)."
        ) from exc
    except Exception as exc:  # truncated zip, not a torch file at all, ...
        raise CheckpointError(f"{path} could not be read as a PyTorch weight file ({exc.__class__.__name__}: "
                              f"{str(exc).splitlines()[0] if str(exc) else 'unreadable'}).") from exc
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"{path} does not hold a state_dict (a mapping of names to tensors).")
    return obj
