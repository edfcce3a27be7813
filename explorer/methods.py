"""CAM methods as formulas over one shared capture.

Notation: A = activations (B x K x h x w), g = dy_c/dA (same shape), c the target class.
Every method returns channel weights W, either per channel (B x K x 1 x 1) or per cell
(B x K x h x w); the grid map is then L = sum_k W_k * A_k, with the ReLU placed by an explicit,
separate policy (see `channel_sum`). Raw maps are signed: no method applies a ReLU itself.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from explorer.backbones import Backbone
from explorer.capture import Capture, capture
from explorer.errors import ExplorerError
from explorer.upsample import normalise

RELU_POLICIES = ("none", "after", "before")


class MethodError(ExplorerError):
    """A method cannot be applied as asked (for example plain CAM on a network without a
    GAP + linear head); the message says why."""


# ------------------------------------------------------------------------------------ formulas

def cam_weights(cap: Capture, backbone: Backbone) -> torch.Tensor:
    """CAM (Zhou et al. 2016; Extended-CAM eq. 1): W_k = w^c_k, the final linear layer's row for c.

    Only defined where A feeds global average pooling and one linear layer.
    """
    if not backbone.has_gap_linear_head:
        raise MethodError(f"Plain CAM needs a global-average-pooling + linear head; {backbone.name} has none. "
                          f"Use Grad-CAM or Extended-CAM instead.")
    if cap.layer != backbone.cam_layer:
        raise MethodError(f"Plain CAM reads the final linear layer, so it only applies to layer "
                          f"'{backbone.cam_layer}' of {backbone.name}, not '{cap.layer}'.")
    assert backbone.head is not None  # has_gap_linear_head
    return backbone.head.weight.detach().float()[cap.targets][:, :, None, None]


def gradcam_weights(A: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """Grad-CAM (Extended-CAM eq. 2): W_k = (1/Z) sum_ij g_kij, Z = h * w."""
    return g.mean(dim=(2, 3), keepdim=True)


def gradcampp_from_derivatives(A: torch.Tensor, d1: torch.Tensor, d2: torch.Tensor,
                               d3: torch.Tensor) -> torch.Tensor:
    """Grad-CAM++ weights from the first three derivatives of the score (Chattopadhay et al.
    2018, eq. 19; Extended-CAM eq. 3):

        alpha_kij = d2_kij / (2 d2_kij + sum_ab A_kab * d3_kij),   alpha = 0 where that is 0/0,
        W_k = sum_ij alpha_kij * ReLU(d1_kij).

    With the exponential score Y = exp(y_c) the derivatives are powers of g (d2 = g^2, d3 = g^3)
    up to a common factor exp(y_c), which cancels in alpha and only scales W.
    """
    denominator = 2 * d2 + A.sum(dim=(2, 3), keepdim=True) * d3
    alpha = torch.where(denominator != 0, d2 / torch.where(denominator != 0, denominator, 1), 0)
    return (alpha * F.relu(d1)).sum(dim=(2, 3), keepdim=True)


def gradcampp_weights(A: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """Grad-CAM++ (eq. 19): alpha = g^2 / (2 g^2 + sum_ab A_kab g^3), W_k = sum_ij alpha ReLU(g)."""
    g2 = g * g
    return gradcampp_from_derivatives(A, g, g2, g2 * g)


def xgradcam_weights(A: torch.Tensor, g: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """XGrad-CAM (Fu et al. 2020): W_k = sum_ij g_kij A_kij / (sum_ij A_kij + eps)."""
    return (g * A).sum(dim=(2, 3), keepdim=True) / (A.sum(dim=(2, 3), keepdim=True) + eps)


def layercam_weights(A: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """LayerCAM (Jiang et al. 2021): per-cell weights W_kij = ReLU(g_kij)."""
    return F.relu(g)


def extendedcam_weights(A: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """Extended-CAM (eq. 8): per-cell weights W_kij = g_kij, so L_ij = sum_k g_kij A_kij, signed.

    For a head that is piecewise linear without biases, sum_ij L_ij = y_c exactly (eq. 7).
    """
    return g


def channel_sum(weights: torch.Tensor, A: torch.Tensor, relu: str = "none") -> torch.Tensor:
    """The ReLU policy stage: L = sum_k W_k A_k with the ReLU where asked.

    "none": sum_k W_k A_k (signed); "after": ReLU(sum_k W_k A_k) (Grad-CAM's, HiResCAM's);
    "before": sum_k ReLU(W_k A_k) (pytorch-grad-cam's element-wise variant).
    """
    if relu not in RELU_POLICIES:
        raise MethodError(f"Unknown ReLU policy '{relu}'; use one of {', '.join(RELU_POLICIES)}.")
    terms = weights * A
    if relu == "before":
        return F.relu(terms).sum(dim=1)
    grid = terms.sum(dim=1)
    return F.relu(grid) if relu == "after" else grid


# -------------------------------------------------------------------------- extra-pass methods

def smoothgradcampp_weights(backbone: Backbone, images: torch.Tensor, cap: Capture, samples: int = 4,
                            noise_std: float = 0.3, batch_size: int = 16,
                            generator: torch.Generator | None = None) -> torch.Tensor:
    """Smooth Grad-CAM++ (Omeiza et al. 2019): the derivatives of Grad-CAM++ averaged over
    `samples` noisy copies x + N(0, noise_std^2) of the (normalised) input,

        d_p = (1/n) sum_s g_s^p  (p = 1, 2, 3),   W = Grad-CAM++(A, d_1, d_2, d_3),

    with A the clean image's activations. The noisy copies go through the network in batches
    of `batch_size` (n extra forwards and gradients per image). Defaults follow torchcam.
    """
    B = images.shape[0]
    noisy_images = images.repeat_interleave(samples, dim=0)
    noise = torch.randn(noisy_images.shape, generator=generator, dtype=images.dtype, device="cpu")
    noisy_images = noisy_images + noise_std * noise.to(images.device)
    noisy_targets = cap.targets.repeat_interleave(samples)
    sums: torch.Tensor | None = None
    for start in range(0, noisy_images.shape[0], batch_size):
        part = capture(backbone, noisy_images[start:start + batch_size],
                       noisy_targets[start:start + batch_size], cap.layer)
        g = part.grads
        powers = torch.stack([g, g * g, g * g * g])  # 3 x b x K x h x w
        idx = torch.arange(start, start + g.shape[0], device=g.device) // samples
        if sums is None:
            sums = torch.zeros((3, B) + g.shape[1:], device=g.device)
        sums.index_add_(1, idx, powers)
    assert sums is not None  # samples >= 1: at least one noisy batch
    d1, d2, d3 = sums / samples
    return gradcampp_from_derivatives(cap.activations, d1, d2, d3)


@torch.no_grad()
def scorecam_weights(backbone: Backbone, images: torch.Tensor, cap: Capture,
                     chunk_size: int = 16) -> torch.Tensor:
    """Score-CAM (Wang et al. 2020): mask the input with each channel's upsampled, min-max
    normalised activation M_k, and weight channels by W_k = softmax_k(y_c(x * M_k)).

    One extra forward per channel, run `chunk_size` at a time through one reusable buffer, so
    peak memory is bounded by the chunk (not by K). 16 rather than 32: EfficientNet-Lite0's forward
    on this project's CPU costs 72 ms an image at batch 16 and 92 ms at batch 32 (its activations
    outgrow the caches), and the peak halves. Subtracting the baseline score y_c(0), as
    the paper does, would not change W: softmax is shift-invariant.
    """
    B, K = cap.activations.shape[:2]
    H, W = images.shape[-2:]
    buffer = torch.empty((min(chunk_size, K), images.shape[1], H, W), device=images.device, dtype=images.dtype)
    weights = torch.empty((B, K), device=images.device)
    for b in range(B):
        target = int(cap.targets[b])
        for k0 in range(0, K, chunk_size):
            acts = cap.activations[b:b + 1, k0:k0 + chunk_size]
            masks = F.interpolate(acts, size=(H, W), mode="bilinear", align_corners=False)[0]
            masks = normalise(masks, "minmax")
            n = masks.shape[0]
            torch.mul(images[b:b + 1], masks[:, None].to(images.dtype), out=buffer[:n])
            weights[b, k0:k0 + n] = backbone.model(buffer[:n])[:, target].float()
    return torch.softmax(weights, dim=1)[:, :, None, None]


# --------------------------------------------------------------------------------- the registry

@dataclass(frozen=True)
class MethodSpec:
    name: str
    label: str
    reference: str
    published_relu: str
    needs_gradient: bool
    per_cell: bool  # weights vary over (i, j) rather than per channel only
    extra_passes: Callable[[int, Mapping], int]  # (channels K, options) -> extra passes per image

    def describe_cost(self, channels: int, options: Mapping | None = None) -> str:
        n = self.extra_passes(channels, options or {})
        if n == 0:
            return "shares the single forward + gradient"
        kind = "forward + gradient passes" if self.name == "smoothgradcampp" else "forward passes"
        return f"{n} extra {kind} per image"


def _no_extra(_k: int, _opts: Mapping) -> int:
    return 0


METHODS: dict[str, MethodSpec] = {
    spec.name: spec
    for spec in [
        MethodSpec("cam", "CAM", "Zhou et al. 2016", "none", False, False, _no_extra),
        MethodSpec("gradcam", "Grad-CAM", "Selvaraju et al. 2017", "after", True, False, _no_extra),
        MethodSpec("gradcampp", "Grad-CAM++", "Chattopadhay et al. 2018, eq. 19", "after", True, False, _no_extra),
        MethodSpec("smoothgradcampp", "Smooth Grad-CAM++", "Omeiza et al. 2019", "after", False, False,
                   lambda _k, o: int(o.get("smooth_samples", 4))),
        MethodSpec("xgradcam", "XGrad-CAM", "Fu et al. 2020", "after", True, False, _no_extra),
        MethodSpec("layercam", "LayerCAM", "Jiang et al. 2021", "after", True, True, _no_extra),
        MethodSpec("scorecam", "Score-CAM", "Wang et al. 2020", "after", False, False, lambda k, _o: k),
        MethodSpec("extendedcam", "Extended-CAM", "Extended-CAM eq. 8", "none", True, True, _no_extra),
    ]
}

GRADIENT_FORMULAS = {
    "gradcam": gradcam_weights,
    "gradcampp": gradcampp_weights,
    "xgradcam": xgradcam_weights,
    "layercam": layercam_weights,
    "extendedcam": extendedcam_weights,
}


def method_label(method: str, relu: str) -> str:
    """A name that says what was computed, including the variants the ReLU policy creates."""
    if method == "extendedcam" and relu == "after":
        return "HiResCAM (eq. 8, ReLU after sum)"
    if method == "extendedcam" and relu == "before":
        return "Grad-CAM element-wise (eq. 8, ReLU before sum)"
    label = METHODS[method].label
    if relu == METHODS[method].published_relu:
        return label
    return f"{label} ({'signed' if relu == 'none' else 'ReLU ' + relu + ' sum'})"


def resolve_relu(method: str, relu: str | Mapping[str, str]) -> str:
    """`relu` may be one policy for all, "published" (each method's own), or a per-method map."""
    if isinstance(relu, Mapping):
        relu = relu.get(method, "none")
    if relu == "published":
        return METHODS[method].published_relu
    if relu not in RELU_POLICIES:
        raise MethodError(f"Unknown ReLU policy '{relu}'; use one of {', '.join(RELU_POLICIES)} or 'published'.")
    return relu


def validate_methods(methods: Iterable[str]) -> list[str]:
    methods = list(dict.fromkeys(methods))
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise MethodError(f"Unknown method(s) {', '.join(unknown)}. Known: {', '.join(METHODS)}.")
    if not methods:
        raise MethodError("Choose at least one method.")
    return methods


def weights_from_capture(method: str, cap: Capture, backbone: Backbone, images: torch.Tensor,
                         *, smooth_samples: int = 4, smooth_std: float = 0.3,
                         scorecam_chunk: int = 16, generator: torch.Generator | None = None,
                         batch_size: int = 16) -> torch.Tensor:
    """The channel weights W of `method` for the captured batch."""
    if method == "cam":
        return cam_weights(cap, backbone)
    if method in GRADIENT_FORMULAS:
        return GRADIENT_FORMULAS[method](cap.activations, cap.grads)
    if method == "smoothgradcampp":
        return smoothgradcampp_weights(backbone, images, cap, smooth_samples, smooth_std, batch_size, generator)
    if method == "scorecam":
        return scorecam_weights(backbone, images, cap, scorecam_chunk)
    raise MethodError(f"Unknown method '{method}'.")


def compute_cams(backbone: Backbone, images: torch.Tensor, targets: torch.Tensor | list[int],
                 methods: Iterable[str], layer: str | None = None, *,
                 relu: str | Mapping[str, str] = "none", cap: Capture | None = None,
                 smooth_samples: int = 4, smooth_std: float = 0.3, scorecam_chunk: int = 16,
                 seed: int = 0, batch_size: int = 16) -> dict[str, torch.Tensor]:
    """Grid-level maps for every asked method: dict name -> B x h x w float32 on the model's device.

    All of cam, gradcam, gradcampp, xgradcam, layercam and extendedcam come from ONE forward and
    ONE autograd.grad (the capture), whatever subset is asked; pass `cap` to reuse a capture made
    earlier. smoothgradcampp and scorecam add the passes their MethodSpec declares. With the
    default relu="none" the maps are raw and signed.
    """
    methods = validate_methods(methods)
    if cap is None:
        need_grad = any(METHODS[m].needs_gradient for m in methods)
        cap = capture(backbone, images, targets, layer, gradient=need_grad)
    elif cap.gradients is None and any(METHODS[m].needs_gradient for m in methods):
        raise MethodError("The given capture has no gradient, which these methods need.")
    generator = torch.Generator().manual_seed(seed)
    maps = {}
    for method in methods:
        weights = weights_from_capture(method, cap, backbone, images, smooth_samples=smooth_samples,
                                       smooth_std=smooth_std, scorecam_chunk=scorecam_chunk,
                                       generator=generator, batch_size=batch_size)
        maps[method] = channel_sum(weights, cap.activations, resolve_relu(method, relu)).float()
    return maps
