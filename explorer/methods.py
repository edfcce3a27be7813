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
from explorer.capture import Capture, capture, capture_layers, check_batch, recording
from explorer.errors import ExplorerError
from explorer.input_gradients import fullgrad_map, guided_backprop_map, guided_gradcam_map
from explorer.perturbation import (
    NO_WATCH,
    Watch,
    ablationcam_weights,
    iscam_weights,
    scorecam_weights,
    sscam_weights,
)
from explorer.targets import callable_targets

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


def _first_component(X: torch.Tensor) -> torch.Tensor:
    """The first right singular vector of each B x n x K matrix X (B x K), signed so that its
    entries sum to >= 0: the SVD's sign is arbitrary, and for non-negative X this makes the
    component (Perron-Frobenius) non-negative."""
    _, _, Vh = torch.linalg.svd(X.double(), full_matrices=False)
    v = Vh[:, 0, :]
    sign = torch.where(v.sum(dim=1, keepdim=True) < 0, -1.0, 1.0).to(v.dtype)
    return (v * sign).to(X.dtype)


def eigencam_weights(A: torch.Tensor, g: torch.Tensor | None = None) -> torch.Tensor:
    """Eigen-CAM (Muhammad & Yeasin 2020, eq. 4-5): with O = A reshaped to (h*w) x K and its SVD
    O = U S V^T, L = O v_1: W_k = (v_1)_k, the first principal direction, uncentred as in the
    paper (pytorch-grad-cam centres every channel first). Class-agnostic: no gradient, no c."""
    return _first_component(A.flatten(2).transpose(1, 2))[:, :, None, None]


def eigengradcam_weights(A: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """Eigen-Grad-CAM (pytorch-grad-cam's variant of Eigen-CAM): the first principal direction of
    the gradient-weighted activations g * A, L = (g * A) v_1, so per-cell W_kij = (v_1)_k g_kij."""
    v = _first_component((g * A).flatten(2).transpose(1, 2))
    return v[:, :, None, None] * g


def fem_weights(A: torch.Tensor, g: torch.Tensor | None = None, k: float = 2.0) -> torch.Tensor:
    """FEM, the Feature Explanation Method (Fuad et al. 2020, eq. 1-3): a channel weighs the share
    of its cells that are k standard deviations above its mean,

        W_k = (1/Z) sum_ij [A_kij > mu_k + k sigma_k],   mu, sigma over the h x w cells (sigma with 1/Z).

    Class-agnostic."""
    mu = A.mean(dim=(2, 3), keepdim=True)
    sigma = A.std(dim=(2, 3), keepdim=True, correction=0)
    return (A > mu + k * sigma).float().mean(dim=(2, 3), keepdim=True)


def randomcam_weights(A: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Random-CAM, the sanity baseline: W_k ~ U(-1, 1), independent of the image, class and network
    output. A metric that ranks it level with a real method is not measuring the network."""
    w = torch.rand(A.shape[:2], generator=generator, device="cpu") * 2 - 1
    return w.to(A.device)[:, :, None, None]


KPCA_MAX_CELLS = 56 * 56  # its kernel is 80 MB and its eigendecomposition seconds here


def kpcacam_map(A: torch.Tensor, gamma: float | None = None, coef0: float = 1.0) -> torch.Tensor:
    """KPCA-CAM (Karmani et al. 2024): the first kernel principal component of the h*w cells, each
    a K-vector x (centred per channel), with the sigmoid kernel k(x, y) = tanh(gamma x.y + coef0),
    gamma = 1/K by default (scikit-learn's KernelPCA defaults):

        Kc = (I - 1/n) K (I - 1/n),   Kc a = lambda a,   L = Kc a / sqrt(lambda)   (n = h*w),

    signed to correlate positively with the channel-mean activation. Not a sum over channels, so
    it returns the grid map itself (B x h x w) and the ReLU policy acts on the map."""
    B, K, h, w = A.shape
    if h * w > KPCA_MAX_CELLS:
        raise MethodError(f"KPCA-CAM builds a (cells x cells) kernel; this layer has {h} x {w} = {h * w} cells, "
                          f"more than {KPCA_MAX_CELLS} (56 x 56). Choose a later layer.")
    X = A.flatten(2).transpose(1, 2).double()
    X = X - X.mean(dim=1, keepdim=True)
    kernel = torch.tanh(X @ X.transpose(1, 2) * (gamma if gamma is not None else 1.0 / K) + coef0)
    n = h * w
    centre = torch.eye(n, dtype=X.dtype, device=X.device) - 1.0 / n
    Kc = centre @ kernel @ centre
    values, vectors = torch.linalg.eigh(Kc)
    lam, a = values[:, -1], vectors[:, :, -1]
    projection = (Kc @ a[:, :, None])[:, :, 0] / lam.clamp(min=1e-300).sqrt()[:, None]
    mean_act = A.mean(dim=1).flatten(1).double()
    agree = ((projection - projection.mean(1, keepdim=True)) * (mean_act - mean_act.mean(1, keepdim=True))).sum(1)
    projection = projection * torch.where(agree < 0, -1.0, 1.0).to(projection.dtype)[:, None]
    return projection.reshape(B, h, w).float()


def eigen_smooth(terms: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """pytorch-grad-cam's eigen_smooth option: the grid map replaced by the first principal
    component of the per-channel terms W_k A_k (cells x channels, each channel centred), which
    keeps the dominant spatial pattern and drops the rest. The sign (arbitrary in an SVD) is
    chosen so that the result correlates positively with the unsmoothed `reference` map."""
    B, K, h, w = terms.shape
    X = terms.flatten(2).transpose(1, 2).double()
    X = X - X.mean(dim=1, keepdim=True)
    _, _, Vh = torch.linalg.svd(X, full_matrices=False)
    projection = (X @ Vh[:, 0, :, None])[:, :, 0]
    ref = reference.flatten(1).double()
    agree = ((projection - projection.mean(1, keepdim=True)) * (ref - ref.mean(1, keepdim=True))).sum(1)
    projection = projection * torch.where(agree < 0, -1.0, 1.0).to(projection.dtype)[:, None]
    return projection.reshape(B, h, w).to(terms.dtype)


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


# ------------------------------------------------------------------ test-time augmentation

AUG_FACTORS = (1.0, 0.9, 1.1)  # input scalings of pytorch-grad-cam's aug_smooth (ttach's Multiply)
AUG_COUNT = 2 * len(AUG_FACTORS)  # times a horizontal flip or not


def augment(images: torch.Tensor) -> torch.Tensor:
    """aug-smooth's test-time augmentations of a B x 3 x H x W batch, as one (AUG_COUNT * B) batch:
    the input multiplied by each of AUG_FACTORS, unflipped then flipped left-right. The first B
    rows are the images themselves."""
    flipped = torch.flip(images, dims=[-1])
    return torch.cat([x * f for x in (images, flipped) for f in AUG_FACTORS])


def average_augmented(maps: torch.Tensor) -> torch.Tensor:
    """aug-smooth's map: the mean over the augmentations of `augment` of each one's map, the
    flipped ones flipped back, L = (1/6) sum_t T_t^-1 L(T_t x). Maps may be grid- or
    input-sized: a left-right flip of the input mirrors the feature grid too."""
    per = maps.reshape(2, len(AUG_FACTORS), maps.shape[0] // AUG_COUNT, *maps.shape[1:])
    unflipped = torch.cat([per[:1], torch.flip(per[1:], dims=[-1])])
    return unflipped.mean(dim=(0, 1))


# ------------------------------------------------------------------ LayerCAM over several layers

LAYERCAM_GAMMA = 2.0  # LayerCAM's eq. 9 scale for the shallow layers' small values


def fuse_layer_maps(maps: Iterable[torch.Tensor], gamma: float = LAYERCAM_GAMMA) -> torch.Tensor:
    """LayerCAM's multi-layer fusion (Jiang et al. 2021, eq. 9 and section III-C): each layer's
    non-negative map M^l (B x h_l x w_l) is rescaled to tanh(gamma * M^l / max M^l) per image, so
    that a shallow layer's small values count as much as a deep one's, resized bilinearly to the
    finest grid among them, and the layers are combined by an element-wise maximum. Returns
    B x h x w on that finest grid (values in [0, tanh(gamma)])."""
    maps = [m.float() for m in maps]
    if not maps:
        raise MethodError("LayerCAM's fusion needs at least one layer.")
    size = max((tuple(m.shape[-2:]) for m in maps), key=lambda hw: hw[0] * hw[1])
    scaled = []
    for m in maps:
        peak = m.flatten(1).amax(dim=1).clamp_min(torch.finfo(m.dtype).tiny)[:, None, None]
        m = torch.tanh(gamma * m / peak)
        if tuple(m.shape[-2:]) != size:
            m = F.interpolate(m[:, None], size=size, mode="bilinear", align_corners=False)[:, 0]
        scaled.append(m)
    return torch.stack(scaled).amax(dim=0)


def fused_layercam(backbone: Backbone, images: torch.Tensor, targets: torch.Tensor | list[int],
                   layers: Iterable[str], gamma: float = LAYERCAM_GAMMA) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """LayerCAM at every one of `layers` from ONE forward and ONE gradient
    (`capture_layers`), each L^l = ReLU(sum_k ReLU(g^l_k) A^l_k), and their fusion
    (`fuse_layer_maps`). Returns (fused B x h x w on the finest grid, {layer: its own map})."""
    captures = capture_layers(backbone, images, targets, list(layers))
    per_layer = {name: channel_sum(layercam_weights(cap.activations, cap.grads), cap.activations, "after")
                 for name, cap in captures.items()}
    return fuse_layer_maps(per_layer.values(), gamma), per_layer


def policy_map(weights: torch.Tensor, A: torch.Tensor, relu: str, *, eigen: bool = False) -> torch.Tensor:
    """The grid map of channel weights under a ReLU policy (`channel_sum`), or with `eigen` the
    first principal component of the per-channel terms W_k A_k (`eigen_smooth`), then a ReLU
    unless the policy is "none"."""
    if not eigen:
        return channel_sum(weights, A, relu)
    terms = weights * A
    smoothed = eigen_smooth(terms, terms.sum(dim=1))
    return F.relu(smoothed) if relu != "none" else smoothed


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


def shapleycam_weights(backbone: Backbone, images: torch.Tensor, cap: Capture) -> torch.Tensor:
    """Shapley-CAM (Cai et al. 2025, eq. 11-12): a second-order Taylor estimate of each cell's
    Shapley value for the ReST score s = y_c - CE(y, c) = 2 y_c - logsumexp(y),

        W_k = (1/Z) sum_ij (g_kij - 1/2 (H A)_kij),   g = ds/dA,  H = d^2 s/dA^2.

    One forward, one gradient kept as a graph and one Hessian-vector product (a double
    backward). After a piecewise-linear head the Hessian comes from the softmax alone."""
    module = backbone.module(cap.layer)
    with recording(module, requires_grad=True) as recorded, torch.enable_grad():
        logits = backbone.model(images)
        if len(recorded) != 1:
            raise MethodError(f"Layer '{cap.layer}' ran {len(recorded)} times in one forward; Shapley-CAM needs "
                              f"a layer that runs once.")
        A = recorded[0]
        y = logits.float()
        score = 2 * y.gather(1, cap.targets[:, None])[:, 0] - torch.logsumexp(y, dim=1)
        (g,) = torch.autograd.grad(score.sum(), A, create_graph=True)
        hvp = torch.autograd.grad(g, A, grad_outputs=A.detach(), allow_unused=True)[0]
    g = g.detach().float()
    hvp = torch.zeros_like(g) if hvp is None else hvp.detach().float()
    return (g - 0.5 * hvp).mean(dim=(2, 3), keepdim=True)


def comparison_classes(logits: torch.Tensor, targets: torch.Tensor, count: int = 3) -> torch.Tensor:
    """Finer-CAM's comparison classes: for each image the `count` classes whose logits lie closest
    to the target's (the target itself excluded), B x count."""
    gap = (logits - logits.gather(1, targets[:, None])).abs()
    gap.scatter_(1, targets[:, None], float("inf"))
    return gap.topk(min(count, logits.shape[1] - 1), dim=1, largest=False).indices


def finercam_weights(backbone: Backbone, images: torch.Tensor, cap: Capture, alpha: float = 1.0,
                     comparisons: torch.Tensor | None = None) -> torch.Tensor:
    """Finer-CAM (Zhang et al. 2025, eq. 3-4): Grad-CAM of the difference between the target and
    the classes it is most easily confused with,

        s = y_c - alpha * (1/|D|) sum_{d in D} y_d,   W_k = (1/Z) sum_ij ds/dA_kij,

    D the 3 classes with the closest logits by default (`comparison_classes`). One more forward
    and gradient. (pytorch-grad-cam weighs each d by its softmax probability, inside the gradient.)"""
    D = comparison_classes(cap.logits, cap.targets) if comparisons is None else comparisons.to(cap.targets.device)

    def difference(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return logits.gather(1, targets[:, None])[:, 0] - alpha * logits.gather(1, D).mean(dim=1)

    finer = capture(backbone, images, cap.targets, cap.layer, score=difference)
    return gradcam_weights(finer.activations, finer.grads)


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
    pass_kind: str = "forward passes"
    map_only: bool = False  # the formula yields the grid map itself, not channel weights
    input_resolution: bool = False  # its map lies on the image's pixel grid, not the layer's
    any_target: bool = False  # reads only A and dt/dA, so a function target works (explorer.targets)

    def describe_cost(self, channels: int, options: Mapping | None = None) -> str:
        n = self.extra_passes(channels, options or {})
        if n == 0:
            return "shares the single forward + gradient"
        upto = "up to " if self.name in MASKING else ""
        return f"{upto}{n} extra {self.pass_kind} per image"


def _no_extra(_k: int, _opts: Mapping) -> int:
    return 0


METHODS: dict[str, MethodSpec] = {
    spec.name: spec
    for spec in [
        MethodSpec("cam", "CAM", "Zhou et al. 2016", "none", False, False, _no_extra),
        MethodSpec("gradcam", "Grad-CAM", "Selvaraju et al. 2017", "after", True, False, _no_extra,
                   any_target=True),
        MethodSpec("gradcampp", "Grad-CAM++", "Chattopadhay et al. 2018, eq. 19", "after", True, False, _no_extra,
                   any_target=True),
        MethodSpec("smoothgradcampp", "Smooth Grad-CAM++", "Omeiza et al. 2019", "after", False, False,
                   lambda _k, o: int(o.get("smooth_samples", 4)), pass_kind="forward + gradient passes"),
        MethodSpec("xgradcam", "XGrad-CAM", "Fu et al. 2020", "after", True, False, _no_extra,
                   any_target=True),
        MethodSpec("layercam", "LayerCAM", "Jiang et al. 2021", "after", True, True, _no_extra, any_target=True),
        MethodSpec("scorecam", "Score-CAM", "Wang et al. 2020", "after", False, False, lambda k, _o: k),
        MethodSpec("extendedcam", "Extended-CAM", "Extended-CAM eq. 8", "none", True, True, _no_extra,
                   any_target=True),
        MethodSpec("eigencam", "Eigen-CAM", "Muhammad & Yeasin 2020, eq. 4-5", "after", False, False, _no_extra,
                   any_target=True),
        MethodSpec("eigengradcam", "Eigen-Grad-CAM", "pytorch-grad-cam, after Eigen-CAM", "after", True, True,
                   _no_extra, any_target=True),
        MethodSpec("kpcacam", "KPCA-CAM", "Karmani et al. 2024", "after", False, False, _no_extra, map_only=True,
                   any_target=True),
        MethodSpec("fem", "FEM", "Fuad et al. 2020, eq. 1-3", "after", False, False, _no_extra,
                   any_target=True),
        MethodSpec("randomcam", "Random-CAM", "sanity baseline", "after", False, False, _no_extra,
                   any_target=True),
        MethodSpec("ablationcam", "Ablation-CAM", "Desai & Ramaswamy 2020, eq. 3", "after", False, False,
                   lambda k, _o: k, pass_kind="forward passes of the layers after the target"),
        MethodSpec("sscam", "SS-CAM", "Wang et al. 2020 (Smoothed Score-CAM)", "after", False, False,
                   lambda k, o: k * int(o.get("score_samples", 10))),
        MethodSpec("iscam", "IS-CAM", "Naidu et al. 2020", "after", False, False,
                   lambda k, o: k * int(o.get("score_samples", 10))),
        MethodSpec("shapleycam", "Shapley-CAM", "Cai et al. 2025, eq. 11-12", "after", False, False,
                   lambda _k, _o: 1, pass_kind="forward + gradient + Hessian-vector product"),
        MethodSpec("finercam", "Finer-CAM", "Zhang et al. 2025, eq. 3-4", "after", False, False,
                   lambda _k, _o: 1, pass_kind="forward + gradient pass"),
        MethodSpec("guidedbackprop", "Guided Backprop", "Springenberg et al. 2015", "after", False, True,
                   lambda _k, _o: 1, pass_kind="forward + gradient pass through a guided copy",
                   map_only=True, input_resolution=True),
        MethodSpec("guidedgradcam", "Guided Grad-CAM", "Selvaraju et al. 2017, section 3.1", "after", True, True,
                   lambda _k, _o: 1, pass_kind="forward + gradient pass through a guided copy",
                   map_only=True, input_resolution=True),
        MethodSpec("fullgrad", "FullGrad", "Srinivas & Fleuret 2019, eq. 6-7", "after", False, True,
                   lambda _k, _o: 1, pass_kind="forward + gradient to the input and every bias",
                   map_only=True, input_resolution=True),
    ]
}
MASKING = ("scorecam", "sscam", "iscam")  # identical masks are forwarded once, hence "up to"

GRADIENT_FORMULAS = {
    "gradcam": gradcam_weights,
    "gradcampp": gradcampp_weights,
    "xgradcam": xgradcam_weights,
    "layercam": layercam_weights,
    "extendedcam": extendedcam_weights,
    "eigengradcam": eigengradcam_weights,
}
ACTIVATION_FORMULAS = {"eigencam": eigencam_weights, "fem": fem_weights}


MAP_FORMULAS: dict[str, Callable[[Backbone, torch.Tensor, Capture], torch.Tensor]] = {
    "kpcacam": lambda _b, _x, cap: kpcacam_map(cap.activations),
    "guidedbackprop": lambda b, x, cap: guided_backprop_map(b, x, cap.targets),
    "guidedgradcam": lambda b, x, cap: guided_gradcam_map(b, x, cap.targets,
                                                          channel_sum(gradcam_weights(cap.activations, cap.grads),
                                                                      cap.activations)),
    "fullgrad": lambda b, x, cap: fullgrad_map(b, x, cap.targets),
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
    if relu == "before" and METHODS[method].map_only:
        return "after"  # no per-channel terms exist to rectify: the ReLU acts on the map
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
                         scorecam_chunk: int = 16, score_samples: int = 10,
                         generator: torch.Generator | None = None, batch_size: int = 16,
                         watch: Watch = NO_WATCH) -> torch.Tensor:
    """The channel weights W of `method` for the captured batch (per channel or per cell);
    `watch` reports the progress of the perturbation methods and stops them."""
    if method == "cam":
        return cam_weights(cap, backbone)
    if method in GRADIENT_FORMULAS:
        return GRADIENT_FORMULAS[method](cap.activations, cap.grads)
    if method in ACTIVATION_FORMULAS:
        return ACTIVATION_FORMULAS[method](cap.activations)
    if method == "randomcam":
        return randomcam_weights(cap.activations, generator)
    if method == "smoothgradcampp":
        return smoothgradcampp_weights(backbone, images, cap, smooth_samples, smooth_std, batch_size, generator)
    if method == "scorecam":
        return scorecam_weights(backbone, images, cap, scorecam_chunk, watch)
    if method == "sscam":
        return sscam_weights(backbone, images, cap, score_samples, chunk_size=scorecam_chunk, generator=generator,
                             watch=watch)
    if method == "iscam":
        return iscam_weights(backbone, images, cap, score_samples, scorecam_chunk, watch)
    if method == "ablationcam":
        return ablationcam_weights(backbone, images, cap, watch=watch)
    if method == "shapleycam":
        return shapleycam_weights(backbone, images, cap)
    if method == "finercam":
        return finercam_weights(backbone, images, cap)
    raise MethodError(f"Unknown method '{method}'.")


def check_any_target(methods: Iterable[str], aug_smooth: bool = False) -> None:
    """Function targets reach the methods that read only the capture (A and dt/dA); the others
    score masked or perturbed copies by a class logit, or differentiate their own class score."""
    if aug_smooth:
        raise MethodError("aug-smooth flips and rescales each image, so a region or box target would no longer match "
                          "it; turn aug-smooth off for function targets.")
    fixed = [METHODS[m].label for m in methods if not METHODS[m].any_target]
    if fixed:
        usable = ", ".join(spec.label for spec in METHODS.values() if spec.any_target)
        raise MethodError(f"{', '.join(fixed)} need(s) a whole-number class target; with a function target use "
                          f"{usable}.")


def check_method_options(**options: object) -> None:
    """The knobs of the methods with extra passes, bounded before any pass runs: whole counts
    from 1 (samples, chunk, batch; at most 4096, the batch at most 256), a seed from 0 to 2^32 - 1, and the noise of
    Smooth Grad-CAM++ a finite std from 0 to 10 (in normalised pixel units)."""
    for name in ("smooth_samples", "scorecam_chunk", "score_samples", "batch_size"):
        value = options[name]
        high = 256 if name == "batch_size" else 4096
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= high:
            raise MethodError(f"{name} must be a whole number from 1 to {high}, not {value!r:.40}")
    seed = options["seed"]
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**32:
        raise MethodError(f"seed must be a whole number from 0 to 2^32 - 1, not {seed!r:.40}")
    std = options["smooth_std"]
    if isinstance(std, bool) or not isinstance(std, (int, float)) or not 0 <= std <= 10:  # NaN fails too
        raise MethodError(f"smooth_std must be a finite number from 0 to 10, not {std!r:.40}")


def compute_cams(backbone: Backbone, images: torch.Tensor, targets: object,
                 methods: Iterable[str], layer: str | None = None, *,
                 relu: str | Mapping[str, str] = "none", cap: Capture | None = None,
                 smooth_samples: int = 4, smooth_std: float = 0.3, scorecam_chunk: int = 16,
                 score_samples: int = 10, seed: int = 0, batch_size: int = 16,
                 watch: Watch = NO_WATCH, eigen: bool = False, aug_smooth: bool = False) -> dict[str, torch.Tensor]:
    """Grid-level maps for every asked method: dict name -> B x h x w float32 on the model's device.

    Every method whose spec declares no extra pass comes from ONE forward and ONE autograd.grad
    (the capture), whatever subset is asked; pass `cap` to reuse a capture made earlier. The
    others add the passes their MethodSpec declares. With the default relu="none" the maps are
    raw and signed. Each random method draws from its own generator seeded with `seed`, so a map
    does not depend on which other methods were asked. `eigen` applies `eigen_smooth` to every
    method that is a sum over channels (then the ReLU policy "after" acts on the smoothed map).
    `aug_smooth` runs every method on the AUG_COUNT augmentations of `augment` in one batch and
    returns `average_augmented` of their maps (each after its ReLU policy), as pytorch-grad-cam's
    aug_smooth; a `cap` given with it must be the capture of `augment(images)`. `targets` are
    class indices or, per image, functions of the model's output (`explorer.targets`), for the
    methods whose spec says `any_target`.
    """
    methods = validate_methods(methods)
    if callable_targets(targets) is not None or (cap is not None and cap.objectives is not None):
        check_any_target(methods, aug_smooth)
    if aug_smooth:  # its targets are repeated before any capture checks them; otherwise the capture checks the batch
        images, targets = check_batch(backbone, images, targets)
    check_method_options(smooth_samples=smooth_samples, smooth_std=smooth_std, scorecam_chunk=scorecam_chunk,
                         score_samples=score_samples, seed=seed, batch_size=batch_size)
    if aug_smooth:
        batch = augment(images)
        if cap is not None and cap.activations.shape[0] != batch.shape[0]:
            raise MethodError(f"aug-smooth needs the capture of the {AUG_COUNT} augmented copies of each image "
                              f"({batch.shape[0]} rows); this capture has {cap.activations.shape[0]}.")
        targets = torch.as_tensor(targets, dtype=torch.long, device=images.device).reshape(-1).repeat(AUG_COUNT)
        maps = compute_cams(backbone, batch, targets, methods, layer, relu=relu, cap=cap,
                            smooth_samples=smooth_samples, smooth_std=smooth_std, scorecam_chunk=scorecam_chunk,
                            score_samples=score_samples, seed=seed, batch_size=batch_size, watch=watch, eigen=eigen)
        return {method: average_augmented(m) for method, m in maps.items()}
    if cap is None:
        need_grad = any(METHODS[m].needs_gradient for m in methods)
        cap = capture(backbone, images, targets, layer, gradient=need_grad)
    elif cap.gradients is None and any(METHODS[m].needs_gradient for m in methods):
        raise MethodError("The given capture has no gradient, which these methods need.")
    maps = {}
    for method in methods:
        policy = resolve_relu(method, relu)
        if METHODS[method].map_only:
            grid = MAP_FORMULAS[method](backbone, images, cap)
            maps[method] = (F.relu(grid) if policy == "after" else grid).float()
            continue
        weights = weights_from_capture(method, cap, backbone, images, smooth_samples=smooth_samples,
                                       smooth_std=smooth_std, scorecam_chunk=scorecam_chunk,
                                       score_samples=score_samples, generator=torch.Generator().manual_seed(seed),
                                       batch_size=batch_size, watch=watch)
        maps[method] = policy_map(weights, cap.activations, policy, eigen=eigen).float()
    return maps
