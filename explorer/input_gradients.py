"""The methods that explain at input resolution through gradients with respect to the image:
Guided Backpropagation, Guided Grad-CAM and FullGrad. Each returns a B x H x W map (the "grid"
is the image's own pixel grid), so the rest of the pipeline treats it like any other map;
bilinear "upsampling" to the input size leaves it as it is.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from explorer.backbones import Backbone
from explorer.capture import recording_with_graph, target_logits
from explorer.errors import ExplorerError

GUIDED_ACTIVATIONS = (nn.ReLU, nn.ReLU6)


class InputGradientError(ExplorerError):
    """A gradient-to-input method cannot run on this network; the message says why."""


class _GuidedRectifier(torch.autograd.Function):
    """Forward as the rectifier; backward passes only positive gradients where the unit was
    active (Springenberg et al. 2015, eq. for "guided backpropagation")."""

    @staticmethod
    def forward(ctx, x, active):
        ctx.save_for_backward(active)
        return x * active

    @staticmethod
    def backward(ctx, grad):
        (active,) = ctx.saved_tensors
        return grad.clamp(min=0) * active, None


class GuidedActivation(nn.Module):
    """ReLU or ReLU6 with a guided backward pass."""

    def __init__(self, original: nn.Module):
        super().__init__()
        self.upper = 6.0 if isinstance(original, nn.ReLU6) else float("inf")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        active = ((x > 0) & (x < self.upper)).to(x.dtype)
        out = _GuidedRectifier.apply(x, active)
        if self.upper < float("inf"):  # ReLU6's flat top: a constant, no gradient
            out = out + self.upper * (x >= self.upper).to(x.dtype)
        return out


def guided_model(model: nn.Module) -> nn.Module:
    """A copy of `model` with every ReLU / ReLU6 module replaced by its guided version."""
    guided = copy.deepcopy(model).eval()
    found = 0
    for module in list(guided.modules()):
        for child_name, child in list(module.named_children()):
            if isinstance(child, GUIDED_ACTIVATIONS):
                setattr(module, child_name, GuidedActivation(child))
                found += 1
    if not found:
        raise InputGradientError("Guided Backpropagation needs ReLU or ReLU6 modules; this network has none "
                                 "(its activations are functions or another kind).")
    return guided


def guided_backprop(backbone: Backbone, images: torch.Tensor, targets: torch.Tensor,
                    model: nn.Module | None = None) -> torch.Tensor:
    """The guided gradient d y_c / d x (B x C x H x W) through a guided copy of the network."""
    model = model if model is not None else guided_model(backbone.model)
    x = images.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        logits = model(x)
        (grad,) = torch.autograd.grad(target_logits(logits, targets).sum(), x)
    return grad.detach().float()


def guided_backprop_map(backbone: Backbone, images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Guided Backpropagation as a map: L = max_c |guided d y_c / d x_c| (B x H x W), the
    channel maximum of Simonyan et al.'s saliency maps."""
    return guided_backprop(backbone, images, targets).abs().amax(dim=1)


def guided_gradcam_map(backbone: Backbone, images: torch.Tensor, targets: torch.Tensor,
                       gradcam_grid: torch.Tensor) -> torch.Tensor:
    """Guided Grad-CAM (Selvaraju et al. 2017, section 3.1): the guided gradient times Grad-CAM
    (ReLU after the sum) upsampled bilinearly to the input, max over colour channels of the
    absolute product: L = ReLU(Grad-CAM)^ * max_c |G_c|."""
    size = images.shape[-2:]
    cam = F.interpolate(F.relu(gradcam_grid)[:, None].float(), size=size, mode="bilinear", align_corners=False)[:, 0]
    return cam * guided_backprop_map(backbone, images, targets)


def bias_of(module: nn.Module) -> torch.Tensor | None:
    """A layer's bias as it acts on its output: a convolution's bias, or a BatchNorm's effective
    bias beta - mu * gamma / sqrt(var + eps) (FullGrad's code)."""
    if isinstance(module, nn.BatchNorm2d):
        if module.running_mean is None or module.running_var is None:
            return None
        weight = module.weight if module.weight is not None else torch.ones_like(module.running_mean)
        beta = module.bias if module.bias is not None else torch.zeros_like(module.running_mean)
        return (beta - module.running_mean * weight / torch.sqrt(module.running_var + module.eps)).detach()
    if isinstance(module, nn.Conv2d) and module.bias is not None:
        return module.bias.detach()
    return None


def _post_process(values: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """FullGrad's psi, as its authors' code applies it: absolute value, min-max over each image's
    whole layer map (all channels together) at the layer's own resolution, then bilinear to the
    input. Summing the channels before the resize is exact (the resize is linear) and keeps the
    cost at one H x W map per layer. B x C x h x w -> B x H x W."""
    flat = values.abs().flatten(1)
    lo, hi = flat.min(dim=1, keepdim=True).values, flat.max(dim=1, keepdim=True).values
    scaled = ((flat - lo) / (hi - lo).clamp(min=1e-12)).reshape(values.shape).sum(dim=1, keepdim=True)
    if tuple(scaled.shape[-2:]) != size:
        scaled = F.interpolate(scaled, size=size, mode="bilinear", align_corners=False)
    return scaled[:, 0]


def fullgrad_terms(backbone: Backbone, images: torch.Tensor,
                   targets: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """FullGrad's raw terms from ONE backward: grad_x y_c * x (B x C x H x W) and, for every
    convolution and BatchNorm with a bias, grad_{z_l} y_c * b_l (B x C_l x h_l x w_l); the outputs
    z_l are recorded in the same forward (the graph through them is kept, so the input gradient
    flows too). For a piecewise-linear network they add up to
    y_c minus the biases of its linear layers (completeness, eq. 3)."""
    layers = [(m, b) for m in backbone.model.modules() if (b := bias_of(m)) is not None]
    x = images.detach().clone().requires_grad_(True)
    with recording_with_graph([m for m, _ in layers]) as recorded, torch.enable_grad():
        logits = backbone.model(x)
        if any(len(r) != 1 for r in recorded):
            raise InputGradientError("FullGrad needs every bias layer to run once per forward; one of this "
                                     "network's runs several times.")
        grads = torch.autograd.grad(target_logits(logits, targets).sum(), [x, *(r[0] for r in recorded)],
                                    allow_unused=True)
    bias_terms = [g.detach() * b.to(g.dtype)[None, :, None, None] for (_, b), g in zip(layers, grads[1:])
                  if g is not None]
    assert grads[0] is not None  # the logits depend on the input
    return (grads[0] * x).detach(), bias_terms


def fullgrad_map(backbone: Backbone, images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """FullGrad (Srinivas & Fleuret 2019, eq. 6-7): S = psi(|grad_x y_c * x|) + sum_l psi(|grad_{z_l} y_c * b_l|),
    psi as `_post_process` (its authors' code: min-max over each layer's whole map, then resize;
    pytorch-grad-cam resizes and min-max normalises every channel on its own)."""
    size = (int(images.shape[-2]), int(images.shape[-1]))
    input_term, bias_terms = fullgrad_terms(backbone, images, targets)
    total = _post_process(input_term, size)
    for term in bias_terms:
        total = total + _post_process(term, size)
    return total.float()
