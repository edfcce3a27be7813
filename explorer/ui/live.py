"""Live Gaussian smoothing on Compare: the grid maps go to the browser once, and the component in
`live/index.html` repaints the Gaussian tiles there as the sigma slider moves (eq. 4 as two small
matrix products per map); the other upsamplers' tiles are the server's overlays, unchanged by
sigma. The chosen sigma comes back when the slider is released and becomes the page's sigma."""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path

import numpy as np
import streamlit as st
import streamlit.components.v1 as components
from PIL import Image

from explorer import views
from explorer.memo import BoundedMemo
from explorer.ui.maps import TILES_PER_LINE, GridResult, overlay_tile, scale_text
from explorer.ui.sigma import SIGMA_MAX, SIGMA_MIN, SIGMA_STEP, SigmaCurve, adopt_sigma
from explorer.ui.widgets import remember, remembered
from explorer.upsample import FCAM

LIVE_KEY = "cam.live_gaussian"
LAB_KEY = LIVE_KEY + ".lab"
_COMPONENT = components.declare_component("live_gaussian", path=str(Path(__file__).parent / "live"))


def _data_url(data: bytes, kind: str) -> str:
    return f"data:image/{kind};base64,{base64.b64encode(data).decode('ascii')}"


_IMAGES: BoundedMemo[str] = BoundedMemo(max_bytes=8 * 2**20)  # PNG data URLs of the images shown, by digest


def _image(seen: Image.Image) -> tuple[np.ndarray, str, str]:
    """(pixels, their digest, the PNG data URL): encoded once per image, not on every rerun."""
    base = np.asarray(seen)
    digest = hashlib.sha256(base.tobytes()).hexdigest()
    url = _IMAGES.get_or_make(digest, lambda: _data_url(views.png_bytes(seen), "png"), size=base.nbytes)
    return base, digest, url


def _colour_table(cmap: str) -> list[int]:
    return [int(v) for v in views.colour_table(cmap).reshape(-1)]


def adopt_released_sigma(key: str = LIVE_KEY) -> None:
    """Before the sigma controls draw: a sigma the browser sent on release (from the component
    under `key`) becomes the page's, once (a preset chosen afterwards is not overridden by the same
    release again)."""
    released = st.session_state.get(key)
    if released == remembered(f"live_adopted.{key}", None):
        return
    remember(f"live_adopted.{key}", released)
    sigma = released.get("sigma") if isinstance(released, dict) else None
    if isinstance(sigma, list) and len(sigma) == 2 and all(isinstance(v, (int, float)) for v in sigma):
        adopt_sigma((float(sigma[0]), float(sigma[1])))


def live_overlay_grid(seen: Image.Image, result: GridResult, table: dict[tuple[str, str], np.ndarray],
                      row_labels: dict[str, str], col_labels: dict[str, str], sigma: tuple[float, float],
                      normaliser: str, alpha: float, linked: bool) -> None:
    """The overlay grid with its Gaussian column drawn by the browser: per method a block of
    tiles, the server's JPEG overlays for the other upsamplers and a canvas for the Gaussian."""
    upsamplers = [u for u in col_labels if any(key[1] == u for key in table) or u == "gaussian"]
    base, base_digest, image_url = _image(seen)
    methods = []
    for method in dict.fromkeys(m for m, _ in table):
        tiles: list[dict[str, object]] = []
        for up in upsamplers:
            if up == "gaussian":
                tiles.append({"live": True})
            elif (method, up) in table:
                scale = views.colour_scale(table[(method, up)])
                jpeg = overlay_tile(base, base_digest, table[(method, up)], scale, alpha)
                tiles.append({"live": False, "src": _data_url(jpeg, "jpeg"),
                              "caption": f"{col_labels[up]} · {scale_text(scale)}"})
            elif up == FCAM:
                tiles.append({"live": False, "src": _data_url(views.jpeg_bytes((base * 0.25).astype(np.uint8)), "jpeg"),
                              "caption": f"{col_labels[up]}: no decoder trained from this method"})
        grid = result.maps[method].astype(np.float64)
        methods.append({"name": method, "label": row_labels[method], "tiles": tiles, "h": int(grid.shape[0]),
                        "w": int(grid.shape[1]), "grid": [float(v) for v in grid.reshape(-1)]})
    key = hashlib.sha256(repr((result.key, normaliser, float(alpha), base_digest, tuple(upsamplers),
                               tuple(row_labels.items()))).encode()).hexdigest()
    _COMPONENT(key=LIVE_KEY, default=None, mode="grid", methods=methods, image=image_url,
               width=int(base.shape[1]), height=int(base.shape[0]), sigma=[float(sigma[0]), float(sigma[1])],
               sigma_min=SIGMA_MIN, sigma_max=SIGMA_MAX, sigma_step=SIGMA_STEP, linked=bool(linked),
               normaliser=normaliser, alpha=float(alpha), blocks_per_line=max(1, TILES_PER_LINE // len(upsamplers)),
               sequential=_colour_table(views.SEQUENTIAL_CMAP), diverging=_colour_table(views.DIVERGING_CMAP),
               maps_key=key)
    signed = any(views.is_signed(values) for values in table.values())
    shown = views.ColourScale(-1.0, 1.0, True) if signed else views.ColourScale(0.0, 1.0, False)
    st.markdown(views.colourbar_html(shown, shared=False), unsafe_allow_html=True)


def live_lab(seen: Image.Image, result: GridResult, labels: dict[str, str], sigma: tuple[float, float], row: int,
             curve: SigmaCurve, linked: bool) -> None:
    """The Smoothing Lab drawn by the browser: Extended-CAM + Gaussian (repainted as σ moves)
    beside Grad-CAM + bilinear, their Pearson r, the profiles along `row` and r against σ with
    the current σx marked; the curve itself (upsampling only, over the slider's range) comes
    from the server once."""
    base, base_digest, image_url = _image(seen)
    explicit, implicit = result.maps["extendedcam"].astype(np.float64), result.maps["gradcam"].astype(np.float64)
    key = hashlib.sha256(repr((result.key, "lab", base_digest)).encode()).hexdigest()
    _COMPONENT(key=LAB_KEY, default=None, mode="lab", image=image_url,
               width=int(base.shape[1]), height=int(base.shape[0]), sigma=[float(sigma[0]), float(sigma[1])],
               sigma_min=SIGMA_MIN, sigma_max=SIGMA_MAX, sigma_step=SIGMA_STEP, linked=bool(linked), alpha=0.5,
               normaliser="minmax", row=int(row), maps_key=key,
               explicit={"label": labels["extendedcam"], "h": int(explicit.shape[0]), "w": int(explicit.shape[1]),
                         "grid": [float(v) for v in explicit.reshape(-1)]},
               implicit={"label": labels["gradcam"], "h": int(implicit.shape[0]), "w": int(implicit.shape[1]),
                         "grid": [float(v) for v in implicit.reshape(-1)]},
               curve={"sigma": [float(v) for v in curve.sigmas], "r": [float(v) for v in curve.correlations],
                      "best": curve.best, "best_r": curve.best_correlation},
               sequential=_colour_table(views.SEQUENTIAL_CMAP), diverging=_colour_table(views.DIVERGING_CMAP))
