"""Which layer? Evidence for choosing a target layer, on the image at hand.

For each candidate layer (the last layer at each grid size, i.e. each stage's output, plus the
backbone's default) the advisor reports:

* the grid (h x w) and channels: a finer grid can show smaller parts, a coarser one is closer
  to the decision;
* the deletion and insertion AUCs of Grad-CAM's map there (RISE, Petsiuk et al. 2018: the class
  probability while the map's pixels are removed from the image, or inserted into a blurred
  copy, most relevant first, averaged over the fraction changed): a low deletion AUC means the
  map found pixels the decision needs, a high insertion AUC pixels that suffice for it. Deletion
  alone favours scattered high-frequency maps (removing edges breaks any image); their
  difference, insertion - deletion, does not;
* the sanity sensitivity: Spearman's rank correlation between the map of the trained network and
  the map after the head (the last parameterised block) is re-initialised (Adebayo et al. 2018):
  a map that stays the same (rho > 0.5) at that layer shows the image, not what was learned;
* whether the layer is the peers' conventional choice (the default layer, where pytorch-grad-cam
  and torchcam point users: the last feature map, or a ViT's last block's first norm).

The suggested layer is the one with the highest insertion - deletion among those that pass the
sanity check (all layers when none passes).
"""

from __future__ import annotations

import copy
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, replace

import torch

from explorer.backbones import Backbone
from explorer.errors import ExplorerError
from explorer.methods import compute_cams
from explorer.metrics.faithfulness import deletion_insertion
from explorer.sanity import SURVIVES, randomisation_blocks, spearman
from explorer.upsample import normalise, upsample

MAX_CANDIDATES = 6


class AdvisorError(ExplorerError):
    """The advisor cannot run as asked."""


@dataclass(frozen=True)
class LayerAdvice:
    """One candidate layer's evidence; see the module docstring for each number's meaning."""

    layer: str
    channels: int
    grid: tuple[int, int]
    deletion_auc: float
    insertion_auc: float
    head_spearman: float
    conventional: bool

    @property
    def faithfulness(self) -> float:
        """insertion AUC - deletion AUC: high when the map's top pixels both suffice and are needed."""
        return self.insertion_auc - self.deletion_auc

    @property
    def passes_sanity(self) -> bool:
        return self.head_spearman <= SURVIVES


def candidate_layers(backbone: Backbone, count: int = MAX_CANDIDATES) -> list[str]:
    """The last layer at each grid size (a stage's output), the deepest `count` of them, and the
    default layer; in network order."""
    last_at_size: dict[tuple[int, int], str] = {}
    for name in backbone.layers:
        _, h, w = backbone.layer_shape(name)
        if h * w > 1:
            last_at_size.pop((h, w), None)  # re-inserted: dict order follows each size's last layer
            last_at_size[(h, w)] = name
    chosen = list(last_at_size.values())[-count:]
    if backbone.default_layer not in chosen:
        chosen.append(backbone.default_layer)
    order = list(backbone.layers)
    return sorted(chosen, key=order.index)


def _head_randomised(backbone: Backbone, seed: int, lock: AbstractContextManager | None = None) -> Backbone:
    """A copy of `backbone` with its last parameterised block re-initialised (seeded); `lock` is
    held while the shared network is copied (the app's network lock)."""
    with lock if lock is not None else nullcontext():
        model = copy.deepcopy(backbone.model).eval()
    blocks = randomisation_blocks(model)
    if not blocks:
        raise AdvisorError(f"{backbone.name} has no parameterised block to re-initialise.")
    state = torch.random.get_rng_state()
    try:
        torch.manual_seed(seed)
        with torch.no_grad():
            for reset in blocks[0][1]:
                reset()
    finally:
        torch.random.set_rng_state(state)
    return replace(backbone, model=model, head=None, cam_layer=None)


def advise_layers(backbone: Backbone, image: torch.Tensor, target: int, layers: list[str] | None = None, *,
                  steps: int = 16, seed: int = 0, lock: AbstractContextManager | None = None) -> list[LayerAdvice]:
    """The evidence for each candidate layer (`candidate_layers` unless `layers` are named) for
    one preprocessed image (1 x C x H x W) and its class `target`. Cost per layer: one capture on
    the trained network, one on the head-randomised copy, and 2 (steps + 1) forwards for the curves."""
    if backbone.task != "classification":
        raise AdvisorError("The layer advisor scores layers by a class's probability (deletion AUC): it needs a "
                           f"classifier, and {backbone.name} is a {backbone.task} model.")
    if image.dim() != 4 or image.shape[0] != 1:
        raise AdvisorError("Give the advisor one image as a 1 x C x H x W tensor.")
    names = [backbone.resolve_layer(name) for name in (layers or candidate_layers(backbone))]
    randomised = _head_randomised(backbone, seed, lock)
    size = (int(image.shape[-2]), int(image.shape[-1]))
    rows = []
    for name in names:
        trained = compute_cams(backbone, image, [target], ["gradcam"], name, relu="after")["gradcam"]
        reset = compute_cams(randomised, image, [target], ["gradcam"], name, relu="after")["gradcam"]
        pixels = normalise(upsample(trained, size, "bilinear"), "minmax")
        reset_pixels = normalise(upsample(reset, size, "bilinear"), "minmax")
        auc = {mode: float(deletion_insertion(backbone.model, image, pixels, [target], mode=mode, steps=steps,
                                              mean=backbone.mean, std=backbone.std).auc[0])
               for mode in ("deletion", "insertion")}
        channels, h, w = backbone.layer_shape(name)
        rows.append(LayerAdvice(layer=name, channels=channels, grid=(h, w), deletion_auc=auc["deletion"],
                                insertion_auc=auc["insertion"],
                                head_spearman=spearman(pixels[0].cpu().numpy(), reset_pixels[0].cpu().numpy()),
                                conventional=name == backbone.default_layer))
    return rows


def suggested(rows: list[LayerAdvice]) -> LayerAdvice:
    """The highest insertion - deletion among the layers that pass the sanity check (all, if none does)."""
    if not rows:
        raise AdvisorError("No layer was scored.")
    passing = [row for row in rows if row.passes_sanity] or rows
    return max(passing, key=lambda row: row.faithfulness)


def advice_table(rows: list[LayerAdvice]) -> str:
    """The evidence as a plain-text table for the terminal, the suggested layer marked."""
    best = suggested(rows).layer
    width = max(len("layer"), *(len(row.layer) for row in rows))
    lines = [f"{'layer':<{width}}  channels  grid       deletion  insertion  ins-del  sanity rho  peers",
             f"{'':<{width}}                       (lower)   (higher)   (higher)  (<= 0.5)"]
    for row in rows:
        grid = f"{row.grid[0]} x {row.grid[1]}"
        lines.append(f"{row.layer:<{width}}  {row.channels:>8}  {grid:<9}  {row.deletion_auc:>8.3f}  "
                     f"{row.insertion_auc:>9.3f}  {row.faithfulness:>+7.3f}  {row.head_spearman:>10.2f}  "
                     f"{'yes' if row.conventional else '-':>5}{'  <- suggested' if row.layer == best else ''}")
    lines.append("deletion / insertion: Grad-CAM's AUCs (RISE); sanity rho: Spearman of the map before and after "
                 "the head is re-initialised (a map that survives it shows the image, not the learning); "
                 "peers: pytorch-grad-cam's and torchcam's usual layer.")
    return "\n".join(lines)
