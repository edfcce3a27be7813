"""The Sanity Checks page's glue: one cached cascading randomisation per (image, network, layer,
class, methods, sigma), computed on a copy of the network."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import streamlit as st
from PIL import Image

from explorer import views
from explorer.backbones import Backbone
from explorer.sanity import SURVIVES, SanityResult, cascading_randomisation
from explorer.ui.loading import NETWORK_LOCK
from explorer.ui.maps import method_name
from explorer.ui.sidebar import Selection

SANITY_METHODS = ("gradcam", "gradcampp", "extendedcam", "layercam", "eigencam", "fem", "guidedbackprop", "guidedgradcam",
                  "randomcam")
SANITY_UPSAMPLERS = ("bilinear", "gaussian")
SHOWN_STEPS = 7  # tiles per row: the trained map, the last step and evenly spaced steps between


@st.cache_data(max_entries=8, show_spinner=False)
def _randomise(image_key: str, backbone_name: str, weights: str, layer: str, target: int, methods: tuple[str, ...],
               sigma: tuple[float, float], *, _backbone: Backbone, _image: Image.Image) -> SanityResult:
    bar = st.progress(0.0, text="Re-initialising the network one block at a time…")

    def progress(done: int, total: int) -> None:
        bar.progress(done / total, text=f"Step {done} of {total}: maps of the network with its top {done - 1} "
                                        f"block(s) re-initialised")

    image = _backbone.preprocess(_image)
    result = cascading_randomisation(_backbone, image, target, methods, layer, upsamplers=SANITY_UPSAMPLERS,
                                     sigma=sigma, progress=progress, lock=NETWORK_LOCK)
    bar.empty()
    return result


def sanity_result(state: Selection, methods: Sequence[str], sigma: tuple[float, float]) -> SanityResult:
    return _randomise(state.image_choice.key, state.backbone.name, state.backbone.weights, state.layer, state.target,
                      tuple(methods), (float(sigma[0]), float(sigma[1])), _backbone=state.backbone, _image=state.image)


def shown_steps(result: SanityResult) -> list[int]:
    n = len(result.steps)
    return sorted(set(np.linspace(0, n - 1, min(SHOWN_STEPS, n)).round().astype(int).tolist()))


def sanity_strip(state: Selection, result: SanityResult, method: str, upsampler: str) -> tuple[list, list[str]]:
    """Overlay tiles of the chosen steps and their captions (block, Spearman, SSIM)."""
    steps = shown_steps(result)
    maps = result.maps[(method, upsampler)]
    tiles = [views.jpeg_bytes(views.overlay(state.seen, maps[i])) for i in steps]
    captions = [f"{'trained' if i == 0 else 'after ' + result.steps[i]} · ρ={result.spearman[(method, upsampler)][i]:.2f}"
                f" · SSIM={result.ssim[(method, upsampler)][i]:.2f}" for i in steps]
    return tiles, captions


def sanity_verdicts(result: SanityResult) -> list[tuple[str, str]]:
    """(level, text) per method and upsampler: "warning" when the map outlives the network."""
    out = []
    for (method, up), rho in result.spearman.items():
        name = f"{method_name(method)} ({up})"
        if rho[-1] > SURVIVES:
            out.append(("warning", f"{name}: its map still has Spearman ρ = {rho[-1]:.2f} with the trained network's "
                                   f"after every block was re-initialised. It is telling you about the image, not "
                                   f"about the network."))
        else:
            out.append(("success", f"{name}: ρ falls to {rho[-1]:.2f} once the weights are random: the map depends "
                                   f"on what the network learned."))
    for up in dict.fromkeys(u for _, u in result.spearman):
        baseline = result.spearman.get(("randomcam", up))
        if baseline is not None and baseline[-1] > SURVIVES:
            out.append(("info", f"Random-CAM, whose weights know nothing about the image or the class, also keeps "
                                f"ρ = {baseline[-1]:.2f} with {up} upsampling: at these settings the upsampler, not "
                                f"the method, shapes the map (a wide Gaussian paints one blob wherever the grid puts "
                                f"any mass). Try a smaller σ."))
    return out


def sanity_curves(result: SanityResult, measure: str):
    values = result.spearman if measure == "spearman" else result.ssim
    curves = {f"{method_name(m)} · {u}": v for (m, u), v in values.items()}
    title = "Spearman rank correlation with the trained map" if measure == "spearman" else "SSIM with the trained map"
    return views.curve_figure(np.arange(len(result.steps)), curves, title,
                              "blocks re-initialised, from the output down", "ρ" if measure == "spearman" else "SSIM")
