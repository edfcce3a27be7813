"""F-CAM's training losses in pure PyTorch (no compiled extension), on any device.

    L = alpha * H(seeds, S) + lambda * R(S, X) + beta * 0.5 * [psi_t(-|S_bg|) + psi_t(-|S_fg|)]

* H: partial cross-entropy on the seed pixels only (F-CAM eq. 3).
* R: the dense CRF loss of Tang et al. (F-CAM supplementary B), R = -(1/N) sum_n sum_k
  S_nk^T W_n S_nk with the Gaussian colour-position affinity
  W(i, j) = exp(-|p_i - p_j|^2 / (2 sigma_xy^2) - |I_i - I_j|^2 / (2 sigma_rgb^2)), I raw RGB in
  [0, 255]. (The supplementary's form sum_k S_k^T W (1 - S_k) differs from this by 1^T W 1, a
  constant of the image, since S_1 + S_2 = 1: same gradient.)
* psi_t: the extended log-barrier of Kervadec et al. on z = -area, the absolute size constraint
  that keeps both regions from collapsing.

How R is computed. The exact R sums over all N^2 pixel pairs (2.5e9 at 224 x 224), which the
authors approximate with a compiled permutohedral lattice. Here it is estimated by stratified
sampling: the image is cut into s x s blocks, one pixel a(I) is drawn uniformly in every block I
and a second, independent one b(I) as well, and

    R ~ -s^4 sum_k [ sum_{I != J} S_k(a(I)) W(a(I), a(J)) S_k(a(J)) + sum_I S_k(a(I)) W(a(I), b(I)) S_k(b(I)) ],

with W evaluated exactly at the drawn pixels' own positions and colours. Pixels drawn in different
blocks are independent and uniform in their blocks, so every term is an unbiased estimate of the
sum over the s^2 x s^2 pixel pairs of its pair of blocks (the independent b(I) does that for a
block with itself): the estimate is unbiased for R and for its gradient, and exact at s = 1.
Drawn anew at every step (from the step's generator), its noise averages out as SGD noise does.
Averaging blocks instead (block-mean colours and probabilities) is smoother but biased: it
overstates colour affinity inside textured blocks (0.4-15 % error on R at s = 4 on crops of the
sample photos). `crf_loss_dense` is the brute force; tests/test_fcam.py measures the estimator
against it (on 64 x 64 crops, 256 blocks: the mean of 32 draws within 0.3 %, a single draw within
10 % for 95 % of draws and 17 % at worst; at 224 x 224 there are 3136 blocks and less spread).

Cost: W between the drawn pixels is symmetric, so one product W P per step gives both the value
and the gradient (dR/dS_a = -s^4 [2 (W - I) S_a + w_ab S_b]); it is built for the whole batch
`chunk` rows at a time in reused buffers (|f_i - f_j|^2 as one matrix product of features
augmented with their squared norms), never held whole: O(B x chunk x n) memory.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from explorer.errors import ExplorerError
from explorer.fcam.seeds import IGNORE


class LossError(ExplorerError):
    """A loss setting the image cannot be cut by (the CRF block size)."""

CRF_SIGMA_RGB = 15.0
CRF_SIGMA_XY = 100.0
CRF_WEIGHT_PAPER = 2e-9  # F-CAM eq. 3 lambda; explorer.fcam_train.FcamConfig uses 2e-8 (see there)
CRF_CHUNK = 128  # rows of W per step for the whole batch: 16 x 128 x 3136 floats = 26 MB, kept below
# glibc's mmap threshold (explorer.runtime) so the block is reused, not page-faulted in anew


def partial_cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over the labelled (seed) pixels; 0 (with a gradient) when none is."""
    if (labels != IGNORE).any():
        return F.cross_entropy(logits, labels, ignore_index=IGNORE)
    return logits.sum() * 0.0


# ------------------------------------------------------------------------------ CRF

def _draw_pixels(B: int, H: int, W: int, scale: int, generator: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor]:
    """(ys, xs), each B x n: one pixel drawn uniformly in every scale x scale block."""
    h, w = H // scale, W // scale
    offsets = torch.randint(0, scale, (2, B, h, w), generator=generator)
    ys = torch.arange(h)[None, :, None] * scale + offsets[0]
    xs = torch.arange(w)[None, None, :] * scale + offsets[1]
    return ys.flatten(1), xs.flatten(1)


def _gather(images255: torch.Tensor, probs: torch.Tensor, ys: torch.Tensor, xs: torch.Tensor,
            sigma_rgb: float, sigma_xy: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Features (x/sigma_xy, y/sigma_xy, rgb/sigma_rgb), B x n x 5, and probabilities B x n x K
    of the drawn pixels."""
    B, K, H, W = probs.shape
    index = (ys * W + xs).to(probs.device)
    colour = images255.float().flatten(2).gather(2, index[:, None].expand(B, 3, -1))
    chosen = probs.flatten(2).gather(2, index[:, None].expand(B, K, -1))
    position = torch.stack([xs, ys], 1).to(probs.device, torch.float32) / sigma_xy
    features = torch.cat([position, colour / sigma_rgb], 1).transpose(1, 2)
    return features.contiguous(), chosen.transpose(1, 2)


def _affinity(fa: torch.Tensor, fb: torch.Tensor) -> torch.Tensor:
    """exp(-|fa_i - fb_i|^2 / 2) for matching rows: B x n."""
    return torch.exp(-0.5 * ((fa - fb) ** 2).sum(-1))


def affinity_times(features: torch.Tensor, probs: torch.Tensor, chunk: int = 256) -> torch.Tensor:
    """W P for a batch, W_b[i, j] = exp(-|f_bi - f_bj|^2 / 2) (features B x n x 5, probabilities
    B x n x K), W built `chunk` rows at a time for the whole batch in two reused buffers."""
    # Centring keeps |f|^2 small, so |f_i|^2 + |f_j|^2 - 2 f_i.f_j loses little to cancellation.
    f = features - features.mean(1, keepdim=True)
    sq = (f * f).sum(2, keepdim=True)
    ones = torch.ones_like(sq)
    left = torch.cat([f, sq, ones], 2)                            # B x n x 7
    right = torch.cat([-2.0 * f, ones, sq], 2).transpose(1, 2).contiguous()  # B x 7 x n: left @ right = d2
    B, n, _ = f.shape
    out = torch.empty_like(probs)
    buffers: dict[int, torch.Tensor] = {}
    for start in range(0, n, chunk):
        rows = min(chunk, n - start)
        buffer = buffers.get(rows)
        if buffer is None:  # fresh 50 MB blocks cost more (page faults) than the products in them
            buffer = buffers[rows] = torch.empty((B, rows, n), dtype=f.dtype, device=f.device)
        torch.bmm(left[:, start:start + rows], right, out=buffer)
        # exp(-80) = 1.8e-35 is still a normal float: beyond it exp would produce denormals, which
        # CPUs compute ten times slower; an affinity below 1.8e-35 is zero for every purpose here.
        buffer.clamp_(max=160.0).mul_(-0.5).exp_()
        torch.bmm(buffer, probs, out=out[:, start:start + rows])
    return out


class _StratifiedQuadratic(torch.autograd.Function):
    """s^-4-free core of the estimate: sum [P_a (W - I) P_a + w_ab P_a P_b] and its gradients."""

    @staticmethod
    def forward(ctx, pa: torch.Tensor, pb: torch.Tensor, fa: torch.Tensor, w_ab: torch.Tensor, chunk: int):
        off_diagonal = affinity_times(fa, pa, chunk) - pa  # W has ones on its diagonal
        ctx.save_for_backward(pa, pb, off_diagonal, w_ab)
        return (pa * off_diagonal).sum() + (w_ab[..., None] * pa * pb).sum()

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        pa, pb, off_diagonal, w_ab = ctx.saved_tensors
        w = w_ab[..., None]
        return grad * (2.0 * off_diagonal + w * pb), grad * w * pa, None, None, None


def crf_loss(probs: torch.Tensor, images255: torch.Tensor, *, sigma_rgb: float = CRF_SIGMA_RGB,
             sigma_xy: float = CRF_SIGMA_XY, scale: int = 4, chunk: int = CRF_CHUNK,
             generator: torch.Generator | None = None) -> torch.Tensor:
    """R = -(1/N) sum_n sum_k S_nk^T W_n S_nk, estimated by stratified sampling over s x s blocks
    (unbiased; exact at scale 1; see the module doc).

    probs: B x K x H x W softmax; images255: B x 3 x H x W raw RGB in [0, 255] (the same augmented
    image the network saw). H and W must be multiples of `scale`.
    """
    B, K, H, W = probs.shape
    if H % scale or W % scale:
        raise LossError(f"the CRF block size {scale} must divide the image size {H}x{W}")
    images255 = images255.to(probs.device)
    if scale == 1:  # every pixel is its own block: the exact sum, the diagonal from the same pixel
        ys, xs = torch.meshgrid(torch.arange(H), torch.arange(W), indexing="ij")
        ya = yb = ys.flatten().expand(B, -1)
        xa = xb = xs.flatten().expand(B, -1)
    else:
        ya, xa = _draw_pixels(B, H, W, scale, generator)
        yb, xb = _draw_pixels(B, H, W, scale, generator)
    fa, pa = _gather(images255, probs.float(), ya, xa, sigma_rgb, sigma_xy)
    fb, pb = _gather(images255, probs.float(), yb, xb, sigma_rgb, sigma_xy)
    total = _StratifiedQuadratic.apply(pa, pb, fa, _affinity(fa, fb), chunk)
    return -(scale ** 4) * total / B


def crf_loss_dense(probs: torch.Tensor, images255: torch.Tensor, *, sigma_rgb: float = CRF_SIGMA_RGB,
                   sigma_xy: float = CRF_SIGMA_XY) -> torch.Tensor:
    """The brute force: the full N x N affinity matrix of every image (small images only)."""
    B, K, H, W = probs.shape
    ys, xs = torch.meshgrid(torch.arange(H, dtype=torch.float64), torch.arange(W, dtype=torch.float64), indexing="ij")
    pos = torch.stack([xs.flatten(), ys.flatten()], 1).to(probs.device)
    total = probs.new_zeros((), dtype=torch.float64)
    for b in range(B):
        rgb = images255[b].double().flatten(1).T
        d_pos = torch.cdist(pos, pos) ** 2
        d_rgb = torch.cdist(rgb, rgb) ** 2
        affinity = torch.exp(-d_pos / (2 * sigma_xy ** 2) - d_rgb / (2 * sigma_rgb ** 2))
        s = probs[b].double().flatten(1)  # K x N
        total = total + (s @ affinity * s).sum()
    return -total / B


# ------------------------------------------------------------------------------ size

def log_barrier(z: torch.Tensor, t: float) -> torch.Tensor:
    """The extended log-barrier psi_t(z) of Kervadec et al. for the constraint z <= 0:

        psi_t(z) = -(1/t) log(-z)                      if z <= -1/t^2,
                   t z - (1/t) log(1/t^2) + 1/t        otherwise,

    continuous and differentiable at z = -1/t^2, and finite (linear) where the constraint fails.
    """
    t = float(t)
    edge = -1.0 / (t * t)
    inside = -torch.log(-torch.clamp(z, max=edge)) / t
    outside = t * z - math.log(1.0 / (t * t)) / t + 1.0 / t
    return torch.where(z <= edge, inside, outside)


def size_loss(probs: torch.Tensor, t: float) -> torch.Tensor:
    """0.5 [psi_t(-area_bg) + psi_t(-area_fg)], area_k = sum over pixels of S_k (absolute mass),
    averaged over the batch: both regions are pushed to be large, so neither collapses."""
    areas = probs.float().flatten(2).sum(2)  # B x 2
    return 0.5 * log_barrier(-areas, t).sum(1).mean()


def barrier_t(epoch: int, start: float = 1.0, factor: float = 1.01, cap: float = 10.0) -> float:
    """t of the log-barrier at `epoch` (0-based): start * factor^epoch, capped."""
    return float(min(cap, start * factor ** epoch))
