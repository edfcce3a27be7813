"""The F-CAM paper's Table 1 for its VGG16 column (Belharbi et al., WACV 2022), to set beside ours.

CUB-200-2011 is scored by MaxBoxAcc, OpenImages by PxAP; each pair is (the baseline CAM with its
usual upsampling, the same CAM's seeds through the F-CAM decoder). The centre baseline is the
protocol's map that uses no network.
"""

from __future__ import annotations

#: method -> {"cub_max_box_acc": (CAM alone, + F-CAM), "openimages_pxap": (CAM alone, + F-CAM)}, VGG16.
TABLE1_VGG = {
    "cam": {"cub_max_box_acc": (61.6, 87.3), "openimages_pxap": (53.0, 67.8)},
    "gradcam": {"cub_max_box_acc": (69.3, 87.5), "openimages_pxap": (59.6, 68.6)},
    "gradcampp": {"cub_max_box_acc": (84.1, 91.5), "openimages_pxap": (60.5, 64.8)},
    "smoothgradcampp": {"cub_max_box_acc": (69.7, 89.1), "openimages_pxap": (52.2, 60.3)},
    "xgradcam": {"cub_max_box_acc": (69.3, 86.8), "openimages_pxap": (59.0, 68.7)},
    "layercam": {"cub_max_box_acc": (84.3, 91.0), "openimages_pxap": (59.5, 64.3)},
}
#: The centre-Gaussian baseline of the same table: CUB MaxBoxAcc, OpenImages PxAP.
TABLE1_CENTRE = {"cub_max_box_acc": 59.7, "openimages_pxap": 45.8}
