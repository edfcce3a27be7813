"""The methods that weigh channels by perturbing the network: the Score-CAM family (one masked
forward per channel of the input) and Ablation-CAM (one forward per channel of the tail of the
network, with that channel zeroed).

All of them work in chunks of a fixed size, so memory is bounded by the chunk and not by the number
of channels K, report progress after each chunk through ``progress(done, total)``, and stop with
`Stopped` as soon as ``should_stop()`` says so. Channels whose masks are identical (a constant
channel normalises to the zero mask; EfficientNet-Lite0 has 752 such channels of 1280 on chelsea)
are forwarded once: their scores are the same number.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from explorer.backbones import Backbone
from explorer.capture import Capture
from explorer.errors import ExplorerError
from explorer.upsample import normalise

Progress = Callable[[int, int], object]
ShouldStop = Callable[[], bool]


class Stopped(ExplorerError):
    """The user stopped a long computation; nothing partial is returned."""


@dataclass(frozen=True)
class Watch:
    """How a long method reports and is stopped: progress(done, total) after every chunk, and
    should_stop() polled before every chunk."""

    progress: Progress | None = None
    should_stop: ShouldStop | None = None

    def tick(self, done: int, total: int) -> None:
        if self.should_stop is not None and self.should_stop():
            raise Stopped(f"Stopped after {done} of {total} forward passes.")
        if self.progress is not None:
            self.progress(done, total)


NO_WATCH = Watch()


def channel_masks(acts: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Score-CAM's masks for one image: every channel A_k (K x h x w) bilinearly upsampled to
    `size` and min-max normalised to [0, 1] on its own, K x H x W."""
    upsampled = F.interpolate(acts[None].float(), size=size, mode="bilinear", align_corners=False)[0]
    return normalise(upsampled, "minmax")


def distinct_channels(acts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(representatives, inverse): the channels of one image's K x h x w activation whose min-max
    normalised grid is distinct, and for every channel the index of its representative. Upsampling
    and min-max normalisation are deterministic and commute with an affine change of a channel,
    so channels with the same normalised grid have the same mask and the same score."""
    grids = normalise(acts.float(), "minmax").flatten(1)
    unique, inverse = torch.unique(grids, dim=0, return_inverse=True)
    first = torch.full((unique.shape[0],), acts.shape[0], dtype=torch.long, device=acts.device)
    first.scatter_reduce_(0, inverse, torch.arange(acts.shape[0], device=acts.device), reduce="amin")
    return first, inverse


@torch.no_grad()
def masked_scores(backbone: Backbone, image: torch.Tensor, target: int, grids: torch.Tensor,
                  scales: tuple[float, ...] = (1.0,), noise_std: float = 0.0, samples: int = 1,
                  chunk_size: int = 16, generator: torch.Generator | None = None,
                  watch: Watch = NO_WATCH, done: int = 0, total: int = 0) -> torch.Tensor:
    """y_c(x * (s * M_k + delta)) averaged over the scales s and the noise draws delta, for the
    masks M_k = `channel_masks` of the n activation grids (n x h x w) of one image x (C x H x W):
    n scores. Masks are made chunk by chunk from the small grids and the masked images go through
    one reusable buffer, so memory is bounded by the chunk, not by n."""
    n = grids.shape[0]
    size = (int(image.shape[-2]), int(image.shape[-1]))
    buffer = torch.empty((min(chunk_size, n),) + tuple(image.shape), device=image.device, dtype=image.dtype)
    sums = torch.zeros(n, device=image.device)
    draws = [(s, d) for s in scales for d in range(samples)]
    for k0 in range(0, n, chunk_size):
        part = channel_masks(grids[k0:k0 + chunk_size], size)
        m = part.shape[0]
        for scale, _ in draws:
            watch.tick(done, total)
            mask = scale * part
            if noise_std > 0:
                noise = torch.randn(mask.shape, generator=generator, device="cpu").to(mask.device)
                mask = mask + noise_std * noise
            torch.mul(image[None], mask[:, None].to(image.dtype), out=buffer[:m])
            sums[k0:k0 + m] += backbone.model(buffer[:m])[:, target].float()
            done += m
    return sums / len(draws)


def _score_family(backbone: Backbone, images: torch.Tensor, cap: Capture, *, scales: tuple[float, ...],
                  noise_std: float, samples: int, chunk_size: int, generator: torch.Generator | None,
                  watch: Watch) -> torch.Tensor:
    B, K = cap.activations.shape[:2]
    per_image = [distinct_channels(cap.activations[b]) for b in range(B)]
    passes = len(scales) * samples
    total = sum(int(rep.numel()) for rep, _ in per_image) * passes
    weights = torch.empty((B, K), device=images.device)
    done = 0
    for b, (representatives, inverse) in enumerate(per_image):
        scores = masked_scores(backbone, images[b], int(cap.targets[b]), cap.activations[b, representatives], scales,
                               noise_std, samples, chunk_size, generator, watch, done, total)
        done += int(representatives.numel()) * passes
        weights[b] = scores[inverse]
    watch.tick(done, total)
    # The papers subtract the score of a baseline image; softmax over k is shift-invariant, so
    # that constant changes nothing.
    return torch.softmax(weights, dim=1)[:, :, None, None]


def scorecam_weights(backbone: Backbone, images: torch.Tensor, cap: Capture, chunk_size: int = 16,
                     watch: Watch = NO_WATCH) -> torch.Tensor:
    """Score-CAM (Wang et al. 2020, eq. 8): W_k = softmax_k(y_c(x * M_k)), with M_k channel k's
    upsampled, min-max normalised activation. One forward per distinct mask.

    Chunks of 16 rather than 32: EfficientNet-Lite0's forward on this project's CPU costs 72 ms an
    image at batch 16 and 92 ms at batch 32 (its activations outgrow the caches), and the peak halves.
    """
    return _score_family(backbone, images, cap, scales=(1.0,), noise_std=0.0, samples=1,
                         chunk_size=chunk_size, generator=None, watch=watch)


def sscam_weights(backbone: Backbone, images: torch.Tensor, cap: Capture, samples: int = 10,
                  noise_std: float = 0.2, chunk_size: int = 16, generator: torch.Generator | None = None,
                  watch: Watch = NO_WATCH) -> torch.Tensor:
    """SS-CAM (Wang et al. 2020, "SS-CAM: Smoothed Score-CAM", eq. 3-4): the score of each mask
    averaged over `samples` noisy copies of the mask,

        W_k = softmax_k( (1/N) sum_n y_c(x * (M_k + delta_n)) ),   delta_n ~ N(0, noise_std^2),

    noise on the normalised mask as in the paper (torchcam adds it to the activation before its
    masks, with std 2). N forwards per distinct mask."""
    return _score_family(backbone, images, cap, scales=(1.0,), noise_std=noise_std, samples=samples,
                         chunk_size=chunk_size, generator=generator, watch=watch)


def iscam_weights(backbone: Backbone, images: torch.Tensor, cap: Capture, samples: int = 10,
                  chunk_size: int = 16, watch: Watch = NO_WATCH) -> torch.Tensor:
    """IS-CAM (Naidu et al. 2020, "IS-CAM: Integrated Score-CAM", eq. 5): the score integrated
    along the path from the black image to the masked one, by N equal steps,

        W_k = softmax_k( (1/N) sum_{i=1..N} y_c(x * (i/N) M_k) ).

    (torchcam scales step i by the running sum sum_{j<=i} j/N, up to 5.5 for N = 10.)
    N forwards per distinct mask."""
    scales = tuple((i + 1) / samples for i in range(samples))
    return _score_family(backbone, images, cap, scales=scales, noise_std=0.0, samples=1,
                         chunk_size=chunk_size, generator=None, watch=watch)


@torch.no_grad()
def tail_scores(backbone: Backbone, image: torch.Tensor, layer: str, target: int,
                activations: torch.Tensor) -> torch.Tensor:
    """y_c when `layer`'s output is replaced by each of the n given activations (n x K x h x w):
    the image runs once through the layers before, and the rest of the network runs on the batch
    of n. A network whose later layers also read an earlier output (a skip around `layer`) gets
    the image repeated n times instead."""
    n = activations.shape[0]
    owner = threading.get_ident()

    def swap(_module, _inputs, output):
        # Another session's forward through the same shared model passes through untouched.
        return activations if threading.get_ident() == owner else output

    handle = backbone.module(layer).register_forward_hook(swap)
    try:
        try:  # a residual add around the layer broadcasts the one earlier tensor: still exact
            logits = backbone.model(image[None])
        except RuntimeError:
            logits = None
        if logits is None or logits.shape[0] != n:
            logits = backbone.model(image[None].expand(n, *image.shape))
    finally:
        handle.remove()
    return logits[:, target].float()


def ablationcam_weights(backbone: Backbone, images: torch.Tensor, cap: Capture, chunk_size: int = 64,
                        watch: Watch = NO_WATCH) -> torch.Tensor:
    """Ablation-CAM (Desai & Ramaswamy 2020, eq. 3): the relative drop of the score when channel k
    is set to zero,

        W_k = (y_c - y_c^{A_k = 0}) / y_c.

    The K ablated copies of A run through the layers after the target layer only, `chunk_size` at a
    time. Identical channels are NOT merged here: zeroing different channels changes different
    inputs of the next layer."""
    B, K = cap.activations.shape[:2]
    weights = torch.empty((B, K), device=images.device)
    total = B * K
    for b in range(B):
        target = int(cap.targets[b])
        base = cap.logits[b, target]
        for k0 in range(0, K, chunk_size):
            watch.tick(b * K + k0, total)
            n = min(chunk_size, K - k0)
            copies = cap.activations[b:b + 1].to(images.dtype).repeat(n, 1, 1, 1)
            copies[torch.arange(n), torch.arange(k0, k0 + n)] = 0
            weights[b, k0:k0 + n] = (base - tail_scores(backbone, images[b], cap.layer, target, copies)) / base
    watch.tick(total, total)
    return weights[:, :, None, None]

