"""Sanity checks for saliency maps (Adebayo et al. 2018, section 3.1): cascading model-parameter
randomisation. On a copy of the network, the parameterised blocks are re-initialised one at a time
from the output down; after each step every chosen method's map is computed again and compared
with the map of the trained network by the Spearman rank correlation and SSIM (both on the
upsampled, min-max normalised maps, as the paper compares normalised maps).

A map that depends on what the network learned decays to noise as the learned weights go; a map
that stays similar after the top blocks are random is showing the image (edges, contrast), not the
network. The copy is made once per check and the caller's network is never touched.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field, replace

import numpy as np
import torch
from torch import nn

from explorer.backbones import Backbone
from explorer.errors import ExplorerError
from explorer.methods import compute_cams, resolve_relu, validate_methods
from explorer.upsample import normalise, upsample

SURVIVES = 0.5  # a final Spearman correlation above this: the map outlived the network's weights


class SanityError(ExplorerError):
    """The check cannot run as asked; the message says why."""


@dataclass
class SanityResult:
    """steps[0] is "trained"; steps[i] names the block re-initialised at step i (cumulative).
    maps[(method, upsampler)]: S x H x W normalised maps; spearman / ssim: (method, upsampler) -> S."""

    steps: list[str]
    maps: dict[tuple[str, str], np.ndarray] = field(default_factory=dict)
    spearman: dict[tuple[str, str], np.ndarray] = field(default_factory=dict)
    ssim: dict[tuple[str, str], np.ndarray] = field(default_factory=dict)

    def survivors(self, threshold: float = SURVIVES) -> list[tuple[str, str]]:
        """The (method, upsampler) pairs whose map still correlates above `threshold` with the
        trained network's after every block was re-initialised."""
        return [key for key, r in self.spearman.items() if r[-1] > threshold]


def randomisation_blocks(model: nn.Module, depth: int = 2) -> list[tuple[str, list[Callable[[], None]]]]:
    """The network's parameterised leaf modules grouped by their name's first `depth` parts
    (``_blocks.15``, ``layer4.1``, ``classifier``), in reverse registration order: the output end
    first, each with its modules' `reset_parameters`. Modules with nothing to re-initialise are
    left out."""
    groups: dict[str, list[Callable[[], None]]] = {}
    for name, module in model.named_modules():
        if not name or not any(True for _ in module.parameters(recurse=False)):
            continue
        reset = getattr(module, "reset_parameters", None)
        if not callable(reset):
            continue
        groups.setdefault(".".join(name.split(".")[:depth]), []).append(reset)
    return list(reversed(list(groups.items())))


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rank correlation of two maps (average ranks for ties); 0 when one is constant."""
    from scipy.stats import rankdata

    ra, rb = rankdata(a.ravel()), rankdata(b.ravel())
    if ra.std() == 0 or rb.std() == 0:
        return 0.0
    return float(np.corrcoef(ra, rb)[0, 1])


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """SSIM (Wang et al. 2004; scikit-image, 7 x 7 windows) of two [0, 1] maps."""
    from skimage.metrics import structural_similarity

    return float(structural_similarity(a.astype(np.float64), b.astype(np.float64), data_range=1.0))


def cascading_randomisation(backbone: Backbone, image: torch.Tensor, target: int, methods: Sequence[str],
                            layer: str | None = None, *, upsamplers: Sequence[str] = ("bilinear", "gaussian"),
                            sigma: tuple[float, float] | None = None, relu: str = "published", seed: int = 0,
                            progress: Callable[[int, int], object] | None = None,
                            lock: AbstractContextManager | None = None, **options) -> SanityResult:
    """Adebayo et al.'s cascading randomisation of `backbone` for one image (1 x C x H x W).
    Each step re-initialises one more block (`randomisation_blocks`) with PyTorch's default
    initialisation, seeded by `seed`; the target class stays the trained network's choice.
    `lock` is held while the network is copied (the app's network lock: no other session's hook
    is on the shared model then)."""
    methods = validate_methods(methods)
    if "gaussian" in upsamplers and sigma is None:
        raise SanityError("The Gaussian upsampler needs a sigma (x, y) in input pixels.")
    if image.ndim != 4 or image.shape[0] != 1:
        raise SanityError("Give one image as a 1 x C x H x W tensor.")
    with lock if lock is not None else nullcontext():
        model = copy.deepcopy(backbone.model).eval()
    blocks = randomisation_blocks(model)
    if not blocks:
        raise SanityError(f"{backbone.name} has no parameterised block to re-initialise.")
    copy_backbone = replace(backbone, model=model, head=_same_module(backbone, model, backbone.head))
    size = (int(image.shape[-2]), int(image.shape[-1]))
    result = SanityResult(steps=["trained"] + [name for name, _ in blocks])
    frames: dict[tuple[str, str], list[np.ndarray]] = {}
    generator_state = torch.random.get_rng_state()
    try:
        torch.manual_seed(seed)
        for step in range(len(blocks) + 1):
            if step:
                with torch.no_grad():
                    for reset in blocks[step - 1][1]:
                        reset()
            policies = {m: resolve_relu(m, relu) for m in methods}
            grids = compute_cams(copy_backbone, image, [target], methods, layer, relu=policies, **options)
            for method, grid in grids.items():
                for up in upsamplers:
                    pixel = normalise(upsample(grid, size, up, sigma).double(), "minmax")[0].cpu().numpy()
                    frames.setdefault((method, up), []).append(pixel)
            if progress is not None:
                progress(step + 1, len(blocks) + 1)
    finally:
        torch.random.set_rng_state(generator_state)
    for key, stack in frames.items():
        maps = np.stack(stack)
        result.maps[key] = maps.astype(np.float32)
        result.spearman[key] = np.array([spearman(maps[0], m) for m in maps])
        result.ssim[key] = np.array([ssim(maps[0], m) for m in maps])
    return result


def _same_module(backbone: Backbone, model: nn.Module, module: nn.Linear | None) -> nn.Linear | None:
    """The copy's counterpart of one of the original model's modules (the CAM head)."""
    if module is None:
        return None
    for (_, original), (_, mine) in zip(backbone.model.named_modules(), model.named_modules()):
        if original is module and isinstance(mine, nn.Linear):
            return mine
    return None
