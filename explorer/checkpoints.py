"""Loading weight files safely.

Every checkpoint goes through `torch.load(..., weights_only=True)`: a file that would need to run
code while unpickling is refused, never executed.
"""

from __future__ import annotations

import pickle
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch

from explorer.errors import ExplorerError
from explorer.safe_files import file_problem


class CheckpointError(ExplorerError):
    """A weight file cannot be used; the message says which file and why."""


MAX_CHECKPOINT_BYTES = 2 * 2**30  # VGG16's ImageNet file is 528 MB


def load_state_dict(path: str | Path, expected: Mapping[str, Sequence[int]] | None = None,
                    max_bytes: int = MAX_CHECKPOINT_BYTES, fits: str = "") -> dict[str, torch.Tensor]:
    """Read a state_dict (name -> tensor) from `path` onto the CPU, never trusting its contents.

    Accepts a bare state_dict or the common wrapping {"state_dict": {...}}. Everything the file
    decides is checked before memory follows it: the file must be a regular file of at most
    `max_bytes`; a zip checkpoint's entries must be stored, not compressed (torch.save never
    compresses; a deflated entry can inflate a 2 MB file to gigabytes) and add up to the file's
    size; tensors are mapped, not read, until their names and shapes match `expected` (the
    model's own `state_dict` shapes, when given); an int8 weight's scale must have one value per
    output channel; and no float may be NaN or infinite.
    """
    path = Path(path)
    problem = file_problem(path)
    if problem == "file not found":
        raise CheckpointError(f"The weight file {path} does not exist.")
    if problem is not None:
        raise CheckpointError(f"The weight file {path} is {problem}.")
    size = path.stat().st_size
    if size > max_bytes:
        raise CheckpointError(f"{path} is {size / 2**20:.0f} MB, more than the {max_bytes / 2**20:.0f} MB a weight "
                              "file may have here.")
    zipped = zipfile.is_zipfile(path)
    if zipped:
        _check_zip_entries(path, size)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True, mmap=zipped)
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
    if not isinstance(obj, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()):
        raise CheckpointError(f"{path} does not hold a state_dict (a mapping of names to tensors).")
    _check_views(obj, path)
    if expected is not None:
        check_shapes(obj, expected, path, fits)
    state = dequantize_state(obj, path)
    for key, value in state.items():
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            raise CheckpointError(f"{path}: the tensor {key} holds NaN or infinite values; the weights are "
                                  "damaged (a diverged training run?) and would give meaningless maps.")
    return state


def _check_views(state: Mapping[str, torch.Tensor], path: Path) -> None:
    """Each tensor must address no more bytes than its storage holds: a view with zero or
    overlapping strides can declare a shape of terabytes over a few bytes, and any check that
    reads it (NaN, dequantising) would materialise all of it."""
    for key, value in state.items():
        declared = value.numel() * value.element_size()
        if declared > value.untyped_storage().nbytes():
            raise CheckpointError(f"{path}: the tensor {key} declares {tuple(value.shape)} ({declared / 2**20:,.0f} MB) "
                                  f"over {value.untyped_storage().nbytes():,} bytes of data (a repeating view); "
                                  "torch.save of a real state_dict writes none. Refused.")


def _check_zip_entries(path: Path, size: int) -> None:
    try:
        with zipfile.ZipFile(path) as archive:
            entries = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise CheckpointError(f"{path} could not be read as a PyTorch weight file ({exc}).") from exc
    packed = [e.filename for e in entries if e.compress_type != zipfile.ZIP_STORED]
    if packed:
        raise CheckpointError(f"{path} holds compressed entries ({packed[0]}, ...); torch.save writes none. Refused: "
                              "a compressed entry could unpack to far more memory than the file's size.")
    declared = sum(e.file_size for e in entries)
    if declared > size:
        raise CheckpointError(f"{path} declares {declared / 2**20:.0f} MB of contents in a {size / 2**20:.0f} MB file; "
                              "the file is damaged or crafted.")


def check_shapes(state: Mapping[str, torch.Tensor], expected: Mapping[str, Sequence[int]],
                 path: Path | str = "the checkpoint", fits: str = "") -> None:
    """CheckpointError unless `state` (quantized or not) has exactly the `expected` names and
    shapes; reads no tensor data, so a file that declares huge tensors costs nothing here."""
    given = {k for k in state if not k.endswith(SCALE_SUFFIX)}
    missing, unexpected = sorted(set(expected) - given), sorted(given - set(expected))
    if missing or unexpected:
        raise CheckpointError(f"The weights in {path} do not fit{' ' + fits if fits else ''}: "
                              f"{len(missing)} missing key(s) {_few(missing)}, "
                              f"{len(unexpected)} unexpected key(s) {_few(unexpected)}.")
    wrong = [f"{k} is {tuple(state[k].shape)}, expected {tuple(expected[k])}" for k in expected
             if tuple(state[k].shape) != tuple(expected[k])]
    if wrong:
        raise CheckpointError(f"The weights in {path} do not fit{' ' + fits if fits else ''}: {'; '.join(wrong[:3])}"
                              + (f" (and {len(wrong) - 3} more)" if len(wrong) > 3 else ""))


def _few(keys: list[str], n: int = 4) -> str:
    if not keys:
        return ""
    return "(" + ", ".join(keys[:n]) + (", ..." if len(keys) > n else "") + ")"


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
        weight, scale = out[base], state[key]
        per_channel = (weight.shape[0],) + (1,) * (weight.dim() - 1)
        if tuple(scale.shape) != per_channel:  # a (1, n) scale on an (n, 1) weight would broadcast to n x n
            raise CheckpointError(f"{path}: the scale of {base} is {tuple(scale.shape)}, not one value per output "
                                  f"channel {per_channel}; the file is damaged.")
        out[base] = weight.float() * scale.float()
    return {k: (v.float() if v.is_floating_point() else v) for k, v in out.items()}
