"""Classifiers of the synthetic WSOL benchmark (version 2, 20 classes), registered as backbones.

* ``synthetic_cnn``: a small residual CNN trained from scratch (four stages, the last at 14 x 14
  for a 224 x 224 input, as VGG16's conv5_3 in the Extended-CAM paper); GAP + linear head;
* ``synthetic_lite0``: ImageNet EfficientNet-Lite0 with a new 20-way head, fine-tuned on the
  benchmark (a pretrained backbone, as in the papers); GAP + linear head;
* ``synthetic_vgg``: VGG-style. Lite0's ImageNet blocks up to stride 16, one 3 x 3 conv layer
  ``conv5`` (14 x 14, the target layer, as VGG16's conv5_3), then VGG16's kind of classifier:
  max-pool, FC-ReLU-dropout (fc1 applied at every cell, as VGG's fc6 in fully convolutional
  form), mean over cells, FC. After a GAP + linear head dy_c/dA_kij = w_k / Z at every
  cell, so Grad-CAM, Extended-CAM and CAM coincide; after this head the gradient differs from cell
  to cell, so Grad-CAM's pooled weights w_k and Extended-CAM's per-cell w_kij differ, and plain CAM
  does not apply.

Their weights ship in ``checkpoints/<name>.pt`` with a card ``checkpoints/<name>.json`` that
records the exact ``python -m explorer train-classifier`` command that made them.
"""

from __future__ import annotations

from typing import Any

from torch import nn

#: The benchmark's classes (version 2), in label order: explorer.datasets.synthetic.class_names(2),
#: written out so that naming them needs no SciPy (a test checks that the two agree).
SYNTHETIC_CLASS_NAMES = tuple(f"{shape}-{marking}" for shape in ("disc", "spike", "hammer", "star", "fork")
                              for marking in ("plain", "eye", "band", "halves"))

#: Version 1's classes (5; the synthetic_v1_* classifiers).
SYNTHETIC_V1_CLASS_NAMES = ("disc", "spike", "hammer", "star", "fork")

SYNTHETIC_MEAN = (0.5, 0.5, 0.5)
SYNTHETIC_STD = (0.5, 0.5, 0.5)


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers with an identity (or 1x1 projection) shortcut, as in ResNet: the
    shortcut is what lets a network this size learn from scratch in a few thousand steps."""

    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.relu1 = nn.ReLU()
        self.relu2 = nn.ReLU()
        self.shortcut = nn.Identity() if stride == 1 and cin == cout else nn.Sequential(
            nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        y = self.relu1(self.bn1(self.conv1(x)))
        return self.relu2(self.bn2(self.conv2(y)) + self.shortcut(x))


class SmallCNN(nn.Module):
    """A small residual CNN: stages of 16-32-64-128 channels at 112, 56, 28 and 14 pixels a side
    for a 224 x 224 input (0.6 M parameters, 0.2 GFLOPs per image; width 16: a step costs a quarter
    of width 32's, and from scratch this task needs thousands of steps before it leaves chance).

    ``stage1`` is a stride-2 stem convolution, ``stage2`` a max-pool and a residual block,
    ``stage3`` one stride-2 residual block, ``stage4`` a stride-2 and a plain residual block; its
    14 x 14 x 128 output (the resolution of VGG16's conv5_3 in the Extended-CAM paper) feeds the
    GAP + linear head ``fc``. No activation is in-place, so a forward hook sees each stage's
    output unchanged.
    """

    def __init__(self, num_classes: int = len(SYNTHETIC_CLASS_NAMES), width: int = 16):
        super().__init__()
        w = width
        self.stage1 = nn.Sequential(nn.Conv2d(3, w, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(w), nn.ReLU())
        self.stage2 = nn.Sequential(nn.MaxPool2d(2), BasicBlock(w, 2 * w))
        self.stage3 = BasicBlock(2 * w, 4 * w, stride=2)
        self.stage4 = nn.Sequential(BasicBlock(4 * w, 8 * w, stride=2), BasicBlock(8 * w, 8 * w))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(8 * w, num_classes)

    def features(self, x):
        """The 8w x 14 x 14 map (at 224) that the GAP + linear head reads: CAM's A."""
        return self.stage4(self.stage3(self.stage2(self.stage1(x))))

    def forward(self, x):
        return self.fc(self.pool(self.features(x)).flatten(1))


SMALL_CNN_LAYERS = {"stage1": "stage1", "stage2": "stage2", "stage3": "stage3", "stage4": "stage4"}
SMALL_CNN_NOTES = {
    "stage1": "stem, 112 x 112 at 224", "stage2": "56 x 56 at 224", "stage3": "28 x 28 at 224",
    "stage4": "14 x 14 x 128 at 224: the map the GAP + linear classifier reads",
}


class LiteVgg(nn.Module):
    """EfficientNet-Lite0's stem and blocks up to stride 16 (ImageNet weights when fine-tuned),
    then ``conv5`` (3 x 3 conv, BN, ReLU: 128 x 14 x 14 at 224, the target layer) and a VGG16-style
    head: 2 x 2 max-pool to 7 x 7, ``fc1`` (128 -> 256) applied at every cell, ReLU, dropout, a mean
    over the cells, ``fc2``. fc1 is VGG's fc6 in its fully convolutional form (FCN, Long et al.
    2015): a flattened 6272 -> 256 layer cannot learn a 10-40 px head that may sit at any cell in
    any of 8 orientations from 3000 images (its loss stayed at ln 20 for two epochs at lr 2e-3 and
    5e-4), while weights shared over cells can. dy_c/dA_kij still varies over cells (the max-pool
    routes it to one cell in four, the ReLU after fc1 gates it per cell), so Grad-CAM's w_k and
    Extended-CAM's w_kij differ, as after VGG16's conv5_3. No activation is in-place, so hooks see
    each output unchanged."""

    LAST_BLOCK = 10  # Lite0's last MBConv block at stride 16 (112 channels)

    def __init__(self, num_classes: int = len(SYNTHETIC_CLASS_NAMES), lite: Any = None):
        super().__init__()
        if lite is None:
            from explorer.backbones import build_lite

            lite = build_lite("efficientnet_lite0", num_classes=1)
        self._conv_stem = lite._conv_stem
        self._bn0 = lite._bn0
        self.stem_act = nn.ReLU6()
        self._blocks = nn.ModuleList(list(lite._blocks)[:self.LAST_BLOCK + 1])
        self.conv5 = nn.Sequential(nn.Conv2d(112, 128, 3, padding=1, bias=False), nn.BatchNorm2d(128), nn.ReLU())
        self.pool = nn.MaxPool2d(2)
        self.fc1 = nn.Conv2d(128, 256, 1)
        self.relu = nn.ReLU()
        self.dropout = nn.Dropout(0.5)
        self.fc2 = nn.Linear(256, num_classes)

    def features(self, x):
        x = self.stem_act(self._bn0(self._conv_stem(x)))
        for block in self._blocks:
            x = block(x)
        return self.conv5(x)

    def forward(self, x):
        x = self.dropout(self.relu(self.fc1(self.pool(self.features(x)))))
        return self.fc2(x.mean(dim=(2, 3)))


LITE_VGG_LAYERS = {"stem": "stem_act", "blocks.2": "_blocks.2", "blocks.4": "_blocks.4", "blocks.10": "_blocks.10",
                   "conv5": "conv5"}
LITE_VGG_NOTES = {
    "stem": "stem (ReLU6), stride 2", "blocks.2": "last MBConv block at stride 4",
    "blocks.4": "last MBConv block at stride 8", "blocks.10": "last MBConv block at stride 16",
    "conv5": "128 x 14 x 14 at 224, after its ReLU: the map the max-pool + FC-ReLU-FC head reads (not GAP + linear)",
}
