"""CAM Explorer's engine: how convolutional networks "see", without Streamlit.

    image -> backbone -> capture (one forward, one gradient) -> method (raw signed grid map)
          -> ReLU policy -> upsampler -> normaliser -> views and metrics
"""

from explorer.backbones import Backbone, BackboneError, backbone_names, load_backbone
from explorer.capture import Capture, CaptureError, capture
from explorer.checkpoints import CheckpointError
from explorer.erf import ErfError, ErfFitError, estimate_erf, fit_erf, gallery_batches, image_source, noise_batches
from explorer.errors import ExplorerError
from explorer.images import GALLERY, ImageError, gallery_image, gallery_names, load_image
from explorer.methods import (
    METHODS,
    RELU_POLICIES,
    MethodError,
    channel_sum,
    compute_cams,
    method_label,
)
from explorer.notebook import Explanation, explain
from explorer.pipeline import GridMaps, grid_maps, pixel_maps
from explorer.targets import (
    BoxScore,
    ClassLogit,
    ClassProbability,
    CosineSimilarity,
    RegressionOutput,
    SegmentationRegion,
    TargetError,
)
from explorer.upsample import FCAM, NORMALISERS, UPSAMPLERS, UpsampleError, gaussian_upsample, normalise, upsample
from explorer.user_models import module_backbone, torchvision_architectures, torchvision_backbone

__all__ = [
    "Backbone", "BackboneError", "backbone_names", "load_backbone",
    "Capture", "CaptureError", "capture", "CheckpointError",
    "ErfError", "ErfFitError", "estimate_erf", "fit_erf", "gallery_batches", "image_source", "noise_batches",
    "ExplorerError",
    "GALLERY", "ImageError", "gallery_image", "gallery_names", "load_image",
    "METHODS", "RELU_POLICIES", "MethodError", "channel_sum", "compute_cams", "method_label",
    "GridMaps", "grid_maps", "pixel_maps", "Explanation", "explain",
    "module_backbone", "torchvision_architectures", "torchvision_backbone",
    "BoxScore", "ClassLogit", "ClassProbability", "CosineSimilarity", "RegressionOutput", "SegmentationRegion",
    "TargetError",
    "FCAM", "NORMALISERS", "UPSAMPLERS", "UpsampleError", "gaussian_upsample", "normalise", "upsample",
]
