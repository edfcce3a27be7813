"""`explorer.explain`: the notebook entry point. One call, any classifier, every gradient method
from one forward and one gradient, and a result that shows itself in Jupyter.

    import torchvision, explorer
    model = torchvision.models.resnet18()           # or your own nn.Module, or a Backbone
    result = explorer.explain(model, "gallery:chelsea", methods=["gradcam", "extendedcam"],
                              upsampler="gaussian", sigma=30)
    result                                          # a labelled sheet of overlays (_repr_png_)
    result.maps["gradcam"]                          # raw grid map (h x w), after the ReLU policy
    result.pixels["gradcam"]                        # upsampled and normalised (H x W)
    result.overlays()["gradcam"]                    # a PIL image
"""

from __future__ import annotations

import numbers
import os
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from PIL import Image
from torch import nn

from explorer import views
from explorer.backbones import IMAGENET_MEAN, IMAGENET_STD, Backbone, load_backbone
from explorer.images import load_image
from explorer.methods import METHODS, MethodError, method_label
from explorer.pipeline import grid_maps, pixel_maps
from explorer.targets import Target, describe_target
from explorer.upsample import UPSAMPLERS, UpsampleError, check_sigma
from explorer.user_models import module_backbone


@dataclass
class Explanation:
    """The maps of one image: raw grid maps, upsampled maps, and how they were made."""

    backbone: Backbone
    image: Image.Image  # as the network saw it (squashed to its input size)
    layer: str
    target: int  # the class index; -1 when the target is a function (then `objective` holds it)
    methods: list[str]
    upsampler: str
    sigma: tuple[float, float] | None
    normaliser: str
    relu: dict[str, str]
    maps: dict[str, np.ndarray]  # method -> h x w raw grid map (after the ReLU policy)
    pixels: dict[str, np.ndarray]  # method -> H x W upsampled and normalised
    seconds: dict[str, float] = field(default_factory=dict)
    objective: Target | None = None

    @property
    def target_name(self) -> str:
        if self.objective is not None:
            return describe_target(self.objective, self.backbone.class_names)
        return self.backbone.class_names[self.target]

    def label(self, method: str) -> str:
        return method_label(method, self.relu[method])

    def overlays(self) -> dict[str, Image.Image]:
        """method -> the map over the image (diverging colours when it is signed)."""
        base = np.asarray(self.image)
        return {m: Image.fromarray(views.overlay(base, values, views.colour_scale(values)))
                for m, values in self.pixels.items()}

    def sheet(self) -> Image.Image:
        """All methods side by side, labelled."""
        table = {(m, self.upsampler): values for m, values in self.pixels.items()}
        column = self.upsampler if self.sigma is None else f"{self.upsampler} σ=({self.sigma[0]:g}, {self.sigma[1]:g})"
        title = f"{self.backbone.name} · layer {self.layer} · target {self.target_name} ({self.target})"
        return views.comparison_sheet(self.image, table, {m: self.label(m) for m in self.pixels},
                                      {self.upsampler: column}, title=title)

    def _repr_png_(self) -> bytes:
        return views.png_bytes(self.sheet())

    def __repr__(self) -> str:
        shapes = ", ".join(f"{m} {v.shape[0]}x{v.shape[1]}" for m, v in self.maps.items())
        return f"Explanation({self.backbone.name}, layer {self.layer}, target {self.target_name}: {shapes})"


def explain(model: Backbone | nn.Module | str, image: Image.Image | str | os.PathLike[str] | bytes, *,
            layer: str | None = None, methods: Sequence[str] = ("gradcam", "extendedcam"),
            upsampler: str = "bilinear", sigma: float | Sequence[float] | None = None,
            target: int | Target | None = None,
            relu: str = "published", normaliser: str = "minmax", input_size: Sequence[int] = (224, 224),
            mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD,
            class_names: Sequence[str] | str | None = None) -> Explanation:
    """Explain `model`'s decision on `image` with `methods` at `layer` (default: the last
    feature map before the classifier).

    `model` is a Backbone, the name of one (`"efficientnet_lite0"`, `"torchvision:resnet18"`
    with random weights), or any classifier `nn.Module`, then preprocessed with `input_size`,
    `mean` and `std`. `image` is a PIL image, a path, bytes or `"gallery:<name>"`. `target`
    is a class index (default: the top-1 prediction) or a function of the model's output for the
    image (`explorer.targets`: a class probability, a regression output, the cosine similarity to
    a reference embedding, a segmentation region, a detected box). The gradient methods share one
    forward and one gradient.
    """
    if isinstance(model, Backbone):
        backbone = model
    elif isinstance(model, str):
        backbone = load_backbone(model, "random" if model.startswith("torchvision:") else "pretrained")
    elif isinstance(model, nn.Module):
        backbone = module_backbone(model, input_size=input_size, mean=mean, std=std, class_names=class_names,
                                   device=_device_of(model))
    else:
        raise MethodError(f"explain() needs a Backbone, a backbone name or an nn.Module, not {type(model).__name__}.")
    methods = list(methods)
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise MethodError(f"Unknown method(s) {', '.join(unknown)}; choose from {', '.join(METHODS)}.")
    if upsampler not in UPSAMPLERS:
        raise UpsampleError(f"Unknown upsampler '{upsampler}'; use one of {', '.join(UPSAMPLERS)}.")
    sigmas: tuple[float, float] | None = None
    if upsampler == "gaussian":
        sigmas = check_sigma(sigma)  # the one rule for sigma: "12" is refused, never read as (1, 2)
    picture = image if isinstance(image, Image.Image) else load_image(image)
    batch = backbone.preprocess(picture)
    chosen = backbone.resolve_layer(layer)
    objective = target if callable(target) else None
    if target is None:
        if backbone.task != "classification":
            raise MethodError(f"A {backbone.task} model has no top-1 class: give a target (explorer.targets).")
        target = backbone.top_k(batch, 1)[0][0][0]
    if objective is None and (isinstance(target, bool) or not isinstance(target, numbers.Integral)
                              or not 0 <= int(target) < len(backbone.class_names)):
        raise MethodError(f"target must be a class index from 0 to {len(backbone.class_names) - 1} or a function of "
                          f"the model's output, not {target!r:.40}.")
    result = grid_maps(backbone, batch, [objective if objective is not None else int(target)],
                       methods, chosen, relu=relu)
    pixels = {m: pixel_maps(result.maps[m], backbone.input_size, upsampler, sigmas, normaliser)[0].cpu().numpy()
              for m in methods}
    return Explanation(backbone=backbone, image=backbone.resize(picture), layer=chosen,
                       target=-1 if objective is not None else int(target),
                       methods=methods, upsampler=upsampler, sigma=sigmas, normaliser=normaliser,
                       relu=dict(result.relu), maps={m: result.maps[m][0].cpu().numpy() for m in methods},
                       pixels=pixels, seconds=dict(result.seconds), objective=objective)


def _device_of(model: nn.Module) -> torch.device | None:
    parameter = next(model.parameters(), None)
    return parameter.device if parameter is not None else None
