"""The ERF map: input gradients of the target layer's centre unit, averaged over images, resumable."""

from __future__ import annotations

import io
import json
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from explorer.atomic import write_atomically
from explorer.backbones import Backbone
from explorer.erf.common import MODES, ErfError
from explorer.erf.sources import ImageSource


class _StopForward(Exception):
    """Raised by the recording hook once the target layer has run: the rest of the forward is
    not needed for the layer's gradient, so it is skipped."""


@dataclass
class ErfEstimate:
    """The ERF map of one layer's centre unit, averaged over `n_images` images.

    map: H x W float64 at input resolution (see the module docstring for the formula).
    centre_cell: (row i*, col j*) of the unit on the layer's grid (h, w) = `grid`.
    centre_px: (x, y) of that cell's centre in input pixels, (j* + 0.5) W / w - 0.5 and
    (i* + 0.5) H / h - 0.5. snapshots: (n, running-mean map) after n = 1, 2, 4, 8, ... images,
    plus the final n, for `convergence`. interrupted: stopped early (should_stop, Ctrl-C).
    """

    map: np.ndarray
    n_images: int
    mode: str
    layer: str
    backbone: str
    weights: str
    input_size: tuple[int, int]
    grid: tuple[int, int]
    centre_cell: tuple[int, int]
    centre_px: tuple[float, float]
    interrupted: bool
    source: str
    n_planned: int | None
    seconds: float
    snapshots: list[tuple[int, np.ndarray]] = field(default_factory=list, repr=False)


def centre_cell(grid: tuple[int, int], input_size: tuple[int, int]) -> tuple[tuple[int, int], tuple[float, float]]:
    """((i*, j*), (c_x, c_y)): the centre cell (h // 2, w // 2) of an h x w grid (for an even
    side, the cell just below/right of the middle) and its centre in input pixels."""
    (h, w), (H, W) = grid, input_size
    i, j = h // 2, w // 2
    return (i, j), ((j + 0.5) * W / w - 0.5, (i + 0.5) * H / h - 0.5)


def _transform(grad: torch.Tensor, mode: str) -> torch.Tensor:
    if mode == "abs":
        return grad.abs()
    if mode == "relu":
        return grad.clamp_min(0)
    if mode == "square":
        return grad.square()
    return grad


def _layer_output(backbone: Backbone, module: nn.Module, inputs: torch.Tensor, layer: str) -> torch.Tensor:
    """Run the model on `inputs` just far enough to get `module`'s output (with its graph).

    The hook is this thread's only (other threads' forwards through a shared model pass
    untouched) and is removed in every case, including errors and Ctrl-C.
    """
    owner = threading.get_ident()
    recorded: list[Any] = []

    def hook(_module, _inputs, output):
        if threading.get_ident() != owner:
            return None
        recorded.append(output)
        raise _StopForward

    handle = module.register_forward_hook(hook)
    try:
        backbone.model(inputs)
    except _StopForward:
        pass
    finally:
        handle.remove()
    if not recorded:
        raise ErfError(f"Layer '{layer}' did not run in the forward pass of {backbone.name}; choose another layer.")
    out = recorded[0]
    layout = backbone.token_layouts.get(layer)
    if layout is not None and isinstance(out, torch.Tensor):
        out = layout.to_grid(out)  # a transformer's layer: the ERF of one patch token, on the patch grid
    if not isinstance(out, torch.Tensor) or out.dim() != 4:
        raise ErfError(f"Layer '{layer}' does not output one B x C x h x w tensor; choose another layer.")
    return out


def estimate_erf(
    backbone: Backbone,
    layer: str | None,
    images: ImageSource | torch.Tensor | Iterable[torch.Tensor],
    mode: str = "abs",
    batch_size: int = 8,
    progress: Callable[[int, int | None, np.ndarray], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    interruptible: bool = False,
) -> ErfEstimate:
    """The ERF map of `layer`'s centre unit, averaged over `images` (Luo et al. 2016; Extended-CAM
    section 4.1).

    Per image n, per pixel: the three input channels are combined by summing the mode-transformed
    gradient over them, sum_c m(g_n[c, y, x]), with g_n = d(sum_k A_k,i*,j*) / d x_n (see the
    module docstring; "abs" is |g| summed over RGB, not |sum over RGB|). The map is the mean of
    that over images, accumulated as a float64 running sum and count.

    images: an `ImageSource`, one tensor N x 3 x H x W, or any iterable of such batches; a batch
    larger than `batch_size` is processed in chunks of `batch_size` (bounded memory). Batches are
    moved to the model's device. The model should be in eval mode (batch-norm in train mode would
    mix the images of a batch); this function leaves its state as it is.
    progress(done, total, running_mean_map) is called after each chunk (total None when unknown).
    should_stop() is checked between chunks: True ends the estimate early with what was
    accumulated, marked `interrupted`. interruptible=True makes Ctrl-C (KeyboardInterrupt) do the
    same: the chunk in flight is dropped (re-raised when nothing was accumulated yet).
    """
    if mode not in MODES:
        raise ErfError(f"Unknown ERF mode '{mode}'; use one of {', '.join(MODES)}.")
    if batch_size < 1:
        raise ErfError(f"The batch size must be at least 1; got {batch_size}.")
    layer = backbone.resolve_layer(layer)
    module = backbone.module(layer)
    device = backbone.device
    total: int | None
    if isinstance(images, ImageSource):
        total, source = images.total, images.name
    elif isinstance(images, torch.Tensor):
        total, source, images = int(images.shape[0]), "tensor", [images]
    else:
        # A list of batches has a known image count; a generator does not.
        total = (sum(int(b.shape[0]) for b in images if isinstance(b, torch.Tensor))
                 if isinstance(images, (list, tuple)) else None)
        source = "batches"

    start = time.perf_counter()
    acc: np.ndarray | None = None
    done = 0
    interrupted = False
    grid: tuple[int, int] | None = None
    centre: tuple[int, int] = (0, 0)
    centre_px: tuple[float, float] = (0.0, 0.0)
    input_size: tuple[int, int] | None = None
    snapshots: list[tuple[int, np.ndarray]] = []
    next_snapshot = 1

    def chunks() -> Iterator[torch.Tensor]:
        for batch in images:
            if not isinstance(batch, torch.Tensor) or batch.dim() != 4 or batch.shape[1] != 3:
                raise ErfError("ERF images must be batches of shape B x 3 x H x W.")
            yield from batch.split(batch_size)

    iterator = chunks()
    try:
        while True:
            if done and should_stop is not None and (total is None or done < total) and should_stop():
                interrupted = True
                break
            try:
                chunk = next(iterator)
            except StopIteration:
                break
            size = (int(chunk.shape[-2]), int(chunk.shape[-1]))
            if input_size is None:
                input_size = size
            elif size != input_size:
                raise ErfError(f"All ERF images must have one size; got {size} after {input_size}.")
            with torch.enable_grad():
                inputs = chunk.detach().to(device=device, dtype=torch.float32)
                if device.type == "cpu":
                    # oneDNN's CPU convolutions run faster on NHWC input (~17 % on VGG16 here, no
                    # slower on Lite0); only the input's layout changes, the model is left as it is.
                    inputs = inputs.contiguous(memory_format=torch.channels_last)
                inputs.requires_grad_(True)
                out = _layer_output(backbone, module, inputs, layer)
                if grid is None:
                    grid = (int(out.shape[-2]), int(out.shape[-1]))
                    if grid == (1, 1):
                        raise ErfError(
                            f"Layer '{layer}' outputs a 1x1 map at {size[0]}x{size[1]}: it has no "
                            f"spatial grid, so there is no centre cell to take the ERF of and nothing for "
                            f"Gaussian upsampling to spray. Choose an earlier layer.")
                    centre, centre_px = centre_cell(grid, size)
                if not out.requires_grad:
                    raise ErfError(f"Layer '{layer}' is not differentiable with respect to the input.")
                # Summing over the batch gives each image its own input gradient in one backward:
                # images of an eval-mode batch do not interact.
                target = out[:, :, centre[0], centre[1]].sum()
                (grad,) = torch.autograd.grad(target, inputs)
            per_image = _transform(grad.detach(), mode).sum(dim=1).double().cpu().numpy()  # B x H x W
            # Running sums after each image of the chunk, so snapshots land exactly at 1, 2, 4, ...
            running = np.cumsum(per_image, axis=0)
            if acc is not None:
                running += acc
            n_chunk = per_image.shape[0]
            new_snapshots = []
            while next_snapshot <= done + n_chunk:
                new_snapshots.append((next_snapshot, running[next_snapshot - done - 1] / next_snapshot))
                next_snapshot *= 2
            # Commit the chunk in one step, so a Ctrl-C never leaves sum, count and snapshots apart.
            snapshots, acc, done = snapshots + new_snapshots, running[-1].copy(), done + n_chunk
            if progress is not None:
                progress(done, total, acc / done)
    except KeyboardInterrupt:
        if not interruptible or done == 0:
            raise
        interrupted = True
    if done == 0 or acc is None or input_size is None or grid is None:
        raise ErfError("No image was given to the ERF estimate.")
    final = acc / done
    if not snapshots or snapshots[-1][0] != done:
        snapshots.append((done, final.copy()))
    return ErfEstimate(
        map=final, n_images=done, mode=mode, layer=layer, backbone=backbone.name, weights=backbone.weights,
        input_size=input_size, grid=grid, centre_cell=centre, centre_px=centre_px,
        interrupted=interrupted, source=source, n_planned=total,
        seconds=time.perf_counter() - start, snapshots=snapshots,
    )


def merge_estimate(total: np.ndarray | None, done: int, snapshots: list[tuple[int, np.ndarray]],
                   part: ErfEstimate) -> tuple[np.ndarray, int, list[tuple[int, np.ndarray]]]:
    """Running totals after one more batch: (sum, count, snapshots) with sum += part.map * k and
    the running mean at every power of two the batch crosses (exact: `part.snapshots` hold the
    batch's own running means after 1, 2, 4, ... images, and the batch size is a power of two
    wherever snapshots are read)."""
    k = part.n_images
    base = 0.0 if total is None else total
    new = [(done + j, (base + mean * j) / (done + j)) for j, mean in part.snapshots
           if (done + j) & (done + j - 1) == 0]
    return base + part.map * k, done + k, snapshots + new


def estimate_erf_resumable(backbone: Backbone, layer: str | None, source: ImageSource, state_path: str | os.PathLike[str],
                           *, mode: str = "abs", key: str = "",
                           progress: Callable[[int, int | None, np.ndarray], None] | None = None) -> ErfEstimate:
    """`estimate_erf` over `source`, batch by batch, with the running sum written atomically to
    `state_path` after every batch. Started again with the same `key` (the settings), it skips the
    batches already summed: a killed run resumes and ends with exactly the map of an uninterrupted
    one (the same float64 sums in the same order). A state of other settings is an error; the
    caller deletes the state once the result is safe. Ctrl-C keeps the state and returns what was
    accumulated, marked interrupted."""
    import itertools

    state_path = Path(state_path)
    layer = backbone.resolve_layer(layer)
    total, done, snapshots, seconds, meta = None, 0, [], 0.0, None
    if state_path.is_file():
        try:
            with np.load(state_path, allow_pickle=False) as saved:
                if str(saved["key"]) != key:
                    raise ErfError(f"{state_path} holds a partial ERF estimate with other settings; delete it or "
                                   f"give the same settings to resume")
                total, done, seconds = saved["sum"].copy(), int(saved["done"]), float(saved["seconds"])
                snapshots = [(int(n), m.copy()) for n, m in zip(saved["snapshot_n"], saved["snapshot_maps"])]
                meta = json.loads(str(saved["meta"]))
        except (OSError, ValueError, KeyError) as exc:
            raise ErfError(f"{state_path}: the partial ERF estimate cannot be read ({exc}); delete it to start over") from exc
    interrupted = False
    start = time.perf_counter()
    try:
        for batch in itertools.islice(iter(source), done // source.batch_size, None):
            part = estimate_erf(backbone, layer, batch, mode=mode, batch_size=source.batch_size)
            total, done, snapshots = merge_estimate(total, done, snapshots, part)
            if meta is None:
                meta = {"input_size": list(part.input_size), "grid": list(part.grid),
                        "centre_cell": list(part.centre_cell), "centre_px": list(part.centre_px)}
            buffer = io.BytesIO()
            np.savez(buffer, key=np.array(key), sum=total, done=np.array(done),
                     seconds=np.array(seconds + time.perf_counter() - start),
                     snapshot_n=np.array([n for n, _ in snapshots]),
                     snapshot_maps=np.stack([m for _, m in snapshots]), meta=np.array(json.dumps(meta)))
            write_atomically(state_path, buffer.getvalue())
            if progress is not None:
                progress(done, source.total, total / done)
    except KeyboardInterrupt:
        if done == 0:
            raise
        interrupted = True
    if done == 0 or total is None or meta is None:
        raise ErfError("No image was given to the ERF estimate.")
    final = total / done
    if not snapshots or snapshots[-1][0] != done:
        snapshots = snapshots + [(done, final.copy())]
    return ErfEstimate(
        map=final, n_images=done, mode=mode, layer=layer, backbone=backbone.name, weights=backbone.weights,
        input_size=tuple(meta["input_size"]), grid=tuple(meta["grid"]), centre_cell=tuple(meta["centre_cell"]),
        centre_px=tuple(meta["centre_px"]), interrupted=interrupted or done < source.total, source=source.name,
        n_planned=source.total, seconds=seconds + time.perf_counter() - start, snapshots=snapshots)
