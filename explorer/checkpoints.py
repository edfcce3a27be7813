"""Loading weight files safely.

Every checkpoint goes through `torch.load(..., weights_only=True)`: a file that would need to run
code while unpickling is refused, never executed.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import torch

from explorer.errors import ExplorerError


class CheckpointError(ExplorerError):
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
    return dequantize_state(obj, path)


# ------------------------------------------------------------------ compact shipped weights

SCALE_SUFFIX = ".__int8_scale__"
QUANTIZE_MIN_ELEMENTS = 4096


def quantize_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A state_dict made compact for shipping: every float weight of at least 4096 elements
    (convolutions, linear layers) becomes int8 with one float16 scale per output channel,

        q = round(w / s), s = max|w_c| / 127 per output channel c,   w ~ q * s,

    and the remaining floats (biases, BatchNorm) become float16. A quarter of the float32 bytes;
    `load_state_dict` restores float tensors. Cards measure accuracy on the file as shipped."""
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        value = value.detach().cpu()
        if value.is_floating_point() and value.dim() >= 2 and value.numel() >= QUANTIZE_MIN_ELEMENTS:
            w = value.float()
            scale = w.abs().amax(dim=tuple(range(1, w.dim())), keepdim=True).clamp_min(1e-12) / 127.0
            scale = scale.half().float()  # the scale as stored, so q is rounded against it
            out[key] = torch.round(w / scale).clamp_(-127, 127).to(torch.int8)
            out[key + SCALE_SUFFIX] = scale.half()
        elif value.is_floating_point():
            out[key] = value.half()
        else:
            out[key] = value.clone()
    return out


def dequantize_state(state: dict[str, torch.Tensor], path: Path | str = "the checkpoint") -> dict[str, torch.Tensor]:
    """The float state_dict of a `quantize_state` file (a plain state_dict passes unchanged)."""
    scales = [k for k in state if k.endswith(SCALE_SUFFIX)]
    if not scales:
        return state
    out = {k: v for k, v in state.items() if not k.endswith(SCALE_SUFFIX)}
    for key in scales:
        base = key[: -len(SCALE_SUFFIX)]
        if base not in out or out[base].dtype != torch.int8:
            raise CheckpointError(f"{path}: the scale {key} has no int8 weight {base}; the file is damaged.")
        out[base] = out[base].float() * state[key].float()
    return {k: (v.float() if v.is_floating_point() else v) for k, v in out.items()}
