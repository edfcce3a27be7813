"""The capture: ONE forward with the target layer recorded and ONE gradient of the target scores
with respect to it. Every gradient-based CAM method is a few tensor operations on this.

Hooks live for one call and are always removed. The captured activation is turned into a leaf
tensor inside the hook, so the gradient is taken with `torch.autograd.grad` w.r.t. that leaf only:
no parameter `.grad` is written, no requires_grad flag or train/eval state is touched, and it
works when the caller sits inside `torch.no_grad()`.
"""

from __future__ import annotations

import operator
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field

import torch
from torch import nn

from explorer.backbones import Backbone
from explorer.errors import ExplorerError
from explorer.targets import TargetList, callable_targets, target_scores


class CaptureError(ExplorerError, RuntimeError):
    """The target layer could not be captured as asked."""


@dataclass(frozen=True)
class Capture:
    """What one forward (+ one gradient) yields for a batch.

    activations: A, B x K x h x w; gradients: dy_c/dA (same shape) or None when no gradient was
    asked for; logits: B x classes (B x 0 when the output is not a vector per image); targets: B
    class indices (c per image; -1 where the target is a function, kept in `objectives`). All
    detached, on the model's device. `features` holds the extra layers asked as `taps` (an F-CAM decoder's
    inputs), recorded in the same forward, detached.
    """

    activations: torch.Tensor
    gradients: torch.Tensor | None
    logits: torch.Tensor
    targets: torch.Tensor
    layer: str
    features: dict[str, torch.Tensor] = field(default_factory=dict)
    objectives: TargetList | None = None  # the function targets, when the batch has any

    @property
    def grads(self) -> torch.Tensor:
        """dy_c/dA, for the methods that read it; CaptureError when the forward took no gradient."""
        if self.gradients is None:
            raise CaptureError(f"The capture of '{self.layer}' was taken without a gradient (gradient=False).")
        return self.gradients


@contextmanager
def recording(module: nn.Module, requires_grad: bool) -> Iterator[list[torch.Tensor]]:
    """Record `module`'s output during the block, as a leaf tensor, for this thread only.

    The hook hands a *clone* of the leaf downstream: later in-place ops (VGG's ReLU(inplace=True)
    after conv5_3, say) then act on the clone and leave the recorded A intact. Forwards run by
    other threads through the same shared model (several app sessions) pass through untouched,
    so concurrent captures never see each other's tensors.
    """
    owner = threading.get_ident()
    recorded: list[torch.Tensor] = []

    def hook(_module, _inputs, output):
        if threading.get_ident() != owner:
            return None
        if not isinstance(output, torch.Tensor):
            raise CaptureError("The target layer does not output a single tensor; choose another layer.")
        if not requires_grad:
            recorded.append(output.detach().clone())
            return None
        leaf = output.detach().requires_grad_(True)
        recorded.append(leaf)
        return leaf.clone()

    handle = module.register_forward_hook(hook)
    try:
        yield recorded
    finally:
        handle.remove()


def _single(recorded: list[torch.Tensor], layer: str) -> torch.Tensor:
    if len(recorded) != 1:
        raise CaptureError(
            f"Layer '{layer}' ran {len(recorded)} times in one forward pass; a CAM needs a layer "
            f"that runs exactly once. Choose another target layer."
        )
    return recorded[0]


def as_grid(backbone: Backbone, layer: str, tensor: torch.Tensor) -> torch.Tensor:
    """A layer's output (or its gradient) as B x C x h x w: a transformer layer's tokens or
    channels-last map through its TokenLayout; a CNN's feature map as it is."""
    layout = backbone.token_layouts.get(layer)
    return tensor if layout is None else layout.to_grid(tensor).contiguous()


def target_logits(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """y_c per image: the score every gradient method differentiates unless told otherwise."""
    return logits.gather(1, targets[:, None])[:, 0]


MAX_TARGET = 2**31  # far beyond any head; keeps a target within torch.long before it is compared


def check_images(backbone: Backbone, images: object) -> torch.Tensor:
    """The image batch as the network needs it, or one CaptureError a notebook user can act on:
    B x C x H x W real floats (C the first convolution's input channels, 3 for RGB) on the
    network's device, finite."""
    if not isinstance(images, torch.Tensor):
        raise CaptureError(f"images must be a tensor B x 3 x H x W (backbone.preprocess([image]) makes one), "
                           f"not {type(images).__name__}.")
    channels = next((m.in_channels for m in backbone.model.modules() if isinstance(m, nn.Conv2d)), None)
    if images.dim() != 4 or images.shape[0] < 1 or min(images.shape[2:]) < 1 or (
            channels is not None and images.shape[1] != channels):
        raise CaptureError(f"images must be B x {channels or 'C'} x H x W (at least one image), not "
                           f"{tuple(images.shape)}; backbone.preprocess([image]) makes one.")
    if images.is_complex() or not images.is_floating_point():
        raise CaptureError(f"images must hold real floats (normalised pixels), not {images.dtype}; use "
                           "backbone.preprocess, or images.float() after normalising.")
    device = next(iter(backbone.model.parameters()), images).device
    if images.device != device:
        raise CaptureError(f"the images are on {images.device} but the network is on {device}; "
                           f"move them with images.to('{device}').")
    if not bool(torch.isfinite(images).all()):
        raise CaptureError("the images hold NaN or infinite values; no map can be computed from them.")
    return images


def check_classes(backbone: Backbone, targets: object, count: int, device: torch.device) -> torch.Tensor:
    """One class index per image within the network's classes, as a long tensor."""
    if isinstance(targets, torch.Tensor):
        if targets.is_complex() or targets.is_floating_point() or targets.dtype == torch.bool:
            raise CaptureError(f"targets must be whole class indices, not {targets.dtype} values.")
        values = [int(v) for v in targets.reshape(-1).tolist()]
    else:
        items = [targets] if isinstance(targets, int) else targets
        try:
            values = [operator.index(v) for v in items]  # type: ignore[attr-defined]
        except TypeError:
            raise CaptureError(f"targets must be one class index per image (whole numbers) or a function of the "
                               f"model's output, not {str(targets)[:60]}.") from None
    classes = len(backbone.class_names)
    wrong = [v for v in values if not 0 <= v < min(classes, MAX_TARGET)]
    if wrong:
        raise CaptureError(f"target {wrong[0]} is not a class of {backbone.name}: it has {classes} classes, "
                           f"numbered 0 to {classes - 1}.")
    if len(values) != count:
        raise CaptureError(f"Got {count} images but {len(values)} targets; give one class per image.")
    return torch.tensor(values, dtype=torch.long, device=device)


def check_batch(backbone: Backbone, images: object, targets: object) -> tuple[torch.Tensor, torch.Tensor]:
    """The image batch and one class index per image (`check_images`, `check_classes`); a
    function target is refused here with a message, for the paths that read class indices."""
    images = check_images(backbone, images)
    if callable_targets(targets) is not None:
        raise CaptureError("This step scores images by a class index; give whole-number class targets here (function "
                           "targets work with the capture-based methods: compute_cams, grid_maps, explain).")
    return images, check_classes(backbone, targets, images.shape[0], images.device)


def check_targets(backbone: Backbone, images: object, targets: object
                  ) -> tuple[torch.Tensor, torch.Tensor, TargetList | None]:
    """(images, class indices, function targets or None): whole numbers take the class path
    unchanged; a batch with any function target keeps its functions (whole numbers among them
    become ClassLogit, checked against the classes) and marks those images' class as -1."""
    images = check_images(backbone, images)
    functions = callable_targets(targets)
    if functions is None:
        return images, check_classes(backbone, targets, images.shape[0], images.device), None
    if len(functions.objectives) != images.shape[0]:
        raise CaptureError(f"Got {images.shape[0]} images but {len(functions.objectives)} targets; give one target "
                           "per image.")
    numbered = [c for c in functions.classes if c >= 0]
    check_classes(backbone, numbered, len(numbered), images.device)
    return images, torch.tensor(functions.classes, dtype=torch.long, device=images.device), functions


def capture(backbone: Backbone, images: torch.Tensor, targets: object,
            layer: str | None = None, gradient: bool = True, taps: Sequence[str] = (),
            score: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = target_logits) -> Capture:
    """One forward of `images` recording `layer` (and the layers named in `taps`), and (if
    `gradient`) one torch.autograd.grad of sum_b t_b(output_b) w.r.t. the recorded A.

    Summing the per-image target scores gives each image its own dy_c/dA in a single backward,
    because images in an eval-mode batch do not interact. `targets` are class indices (then
    `score` maps the B x classes logits and the B targets to B scores: y_c by default, Finer-CAM
    differentiates a difference of logits) or, per image, a function of that image's output
    (`explorer.targets`). A target that does not depend on the image (a box no detection
    matches) has a zero gradient.
    """
    layer = backbone.resolve_layer(layer)
    module = backbone.module(layer)
    tap_names = [backbone.resolve_layer(t) for t in dict.fromkeys(taps)]
    images, classes, functions = check_targets(backbone, images, targets)
    if functions is not None and score is not target_logits:
        raise CaptureError("This method differentiates its own score of the class logits; it needs whole-number class "
                           "targets, not function targets.")
    with ExitStack() as stack:
        recorded = stack.enter_context(recording(module, requires_grad=gradient))
        tapped = {t: stack.enter_context(recording(backbone.module(t), requires_grad=False)) for t in tap_names}
        stack.enter_context(torch.enable_grad() if gradient else torch.no_grad())
        output = backbone.model(images)
        activations = _single(recorded, layer)
        features = {t: as_grid(backbone, t, _single(found, t)) for t, found in tapped.items()}
        grads = None
        if gradient:
            scores = score(output, classes) if functions is None else target_scores(functions.objectives, output)
            grads = _gradient(scores.sum(), activations)
    return Capture(
        activations=as_grid(backbone, layer, activations.detach()).float(),
        gradients=None if grads is None else as_grid(backbone, layer, grads.detach()).float(),
        logits=_logits(output, images.shape[0]),
        targets=classes,
        layer=layer,
        features=features,
        objectives=functions,
    )


def _gradient(total: torch.Tensor, activations: torch.Tensor) -> torch.Tensor:
    """d total / d A; zero where the total does not depend on A (no path, or a constant target)."""
    if not total.requires_grad:
        return torch.zeros_like(activations)
    (grads,) = torch.autograd.grad(total, activations, allow_unused=True)
    return torch.zeros_like(activations) if grads is None else grads


def _logits(output: object, count: int) -> torch.Tensor:
    """The B x classes logits of a classifier (or B x D of an encoder or regressor); B x 0 for a
    model whose output is not one vector per image (a segmentation map, a detector's boxes)."""
    if isinstance(output, torch.Tensor) and output.dim() == 2:
        return output.detach().float()
    return torch.zeros(count, 0)


@contextmanager
def recording_with_graph(modules: Sequence[nn.Module]) -> Iterator[list[list[torch.Tensor]]]:
    """Record each module's outputs during the block, for this thread only, WITH the graph kept
    (unlike `recording`, whose leaf cuts it): gradients then reach every recorded output and the
    input in one backward. A clone goes downstream, so later in-place ops leave the record intact."""
    owner = threading.get_ident()
    recorded: list[list[torch.Tensor]] = [[] for _ in modules]

    def hook_for(store: list[torch.Tensor]):
        def hook(_module, _inputs, output):
            if threading.get_ident() != owner:
                return None
            if not isinstance(output, torch.Tensor):
                raise CaptureError("A chosen layer does not output a single tensor; choose another layer.")
            store.append(output)
            return output.clone()
        return hook

    handles = [m.register_forward_hook(hook_for(store)) for m, store in zip(modules, recorded)]
    try:
        yield recorded
    finally:
        for handle in handles:
            handle.remove()


def capture_layers(backbone: Backbone, images: torch.Tensor, targets: object,
                   layers: Sequence[str]) -> dict[str, Capture]:
    """One forward and ONE gradient for several layers at once: each layer's output is recorded
    with the graph kept (a clone goes downstream, so later in-place ops leave it intact), and
    dt/dA of every layer comes from a single torch.autograd.grad. A layer that runs more than
    once per forward raises CaptureError, as in `capture`. Targets as in `capture`."""
    names = [backbone.resolve_layer(layer) for layer in dict.fromkeys(layers)]
    images, classes, functions = check_targets(backbone, images, targets)
    with recording_with_graph([backbone.module(name) for name in names]) as recorded, torch.enable_grad():
        output = backbone.model(images)
        outputs = [_single(found, name) for found, name in zip(recorded, names)]
        scores = target_logits(output, classes) if functions is None else target_scores(functions.objectives, output)
        total = scores.sum()
        grads = torch.autograd.grad(total, outputs, allow_unused=True) if total.requires_grad else [None] * len(outputs)
    logits = _logits(output, images.shape[0])
    return {name: Capture(activations=as_grid(backbone, name, out.detach()).float(),
                          gradients=as_grid(backbone, name, torch.zeros_like(out) if g is None else g.detach()).float(),
                          logits=logits, targets=classes, layer=name, objectives=functions)
            for name, out, g in zip(names, outputs, grads)}
