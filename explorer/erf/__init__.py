"""Effective receptive field (ERF): estimate it, fit a 2D Gaussian to it, store the fit.

Extended-CAM's Gaussian upsampling (section 3.1, eq. 4) lets every grid cell spray a 2D Gaussian
whose standard deviations (sigma_x, sigma_y) are those of the layer's *effective* receptive field
(Luo et al., 2016, "Understanding the Effective Receptive Field in Deep Convolutional Neural
Networks"). Section 4.1 of Extended-CAM estimates it as the paper does here:

1. ERF map. For the unit at the centre cell (i*, j*) of the target layer's h x w grid, take the
   gradient of its channel sum with respect to the input image x (B x 3 x H x W), transform it
   per element by the mode m, combine the three input channels by summing, and average over
   N images:

       ERF(y, x) = 1/N sum_n sum_c m( d [sum_k A_k,i*,j*(x_n)] / d x_n[c, y, x] )

   with m = |g| ("abs", the default, as Luo et al.), max(g, 0) ("relu"), g^2 ("square") or g
   itself ("signed"). The centre cell of an even grid is (h // 2, w // 2); its centre in input
   pixels follows the project's convention (the same as bilinear interpolation with
   align_corners=False): c_y = (i* + 0.5) * H / h - 0.5, c_x = (j* + 0.5) * W / w - 0.5.

2. Fit. lmfit's Gaussian2dModel (Newville et al., the library the paper used):

       G(x, y) = A / (2 pi sx sy) * exp(-(x - cx)^2 / (2 sx^2) - (y - cy)^2 / (2 sy^2))

   optionally plus a constant offset and/or a rotation of the axes, on input-pixel coordinates
   (x = column index, y = row index), with R^2 = 1 - SS_res / SS_tot over the whole map. The
   paper reports R^2 0.9905, sx 31.78, sy 33.36 for pretrained VGG16 conv5_3 (Table 1). A fit
   that did not converge is never returned: it raises ErfFitError.

3. Card. `save_erf_card` writes the fit as the JSON card `explorer.presets` reads, atomically.

The gradient is taken with `torch.autograd.grad` w.r.t. a fresh input leaf only: no parameter
`.grad` is written, no requires_grad flag or train/eval state is changed, and it works when the
caller sits inside `torch.no_grad()`. The forward stops at the target layer (a private exception
raised by a scoped, thread-owned hook), so the layers above it cost nothing.

Parts: `common` (modes, errors), `sources` (noise, gallery and folder images), `estimate` (the map,
resumable), `fit` (lmfit's 2D Gaussian), `cards` (the stored fit and its figure).
"""

from explorer.erf.cards import (
    erf_card,
    erf_figure_png,
    load_erf_card,
    save_erf_card,
)
from explorer.erf.common import (
    CROP_SCALE,
    MIN_R2,
    MODES,
    ErfError,
    ErfFitError,
)
from explorer.erf.estimate import (
    ErfEstimate,
    centre_cell,
    estimate_erf,
    estimate_erf_resumable,
    merge_estimate,
)
from explorer.erf.fit import (
    PARAMS,
    ErfFit,
    convergence,
    fit_erf,
    rotated_gaussian2d,
)
from explorer.erf.sources import (
    SOURCES,
    ImageSource,
    folder_batches,
    gallery_batches,
    image_source,
    noise_batches,
    random_crop,
)

__all__ = [
    "MODES",
    "MIN_R2",
    "CROP_SCALE",
    "ErfError",
    "ErfFitError",
    "ImageSource",
    "noise_batches",
    "random_crop",
    "gallery_batches",
    "folder_batches",
    "SOURCES",
    "image_source",
    "ErfEstimate",
    "centre_cell",
    "estimate_erf",
    "merge_estimate",
    "estimate_erf_resumable",
    "PARAMS",
    "ErfFit",
    "rotated_gaussian2d",
    "fit_erf",
    "convergence",
    "erf_card",
    "save_erf_card",
    "load_erf_card",
    "erf_figure_png",
]
