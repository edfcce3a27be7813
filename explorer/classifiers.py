"""Classifiers of the synthetic WSOL benchmark, registered as backbones like any other.

Both end in global-average-pooling + a linear layer, so every CAM method (plain CAM included)
applies to them:

* ``synthetic_cnn``: a small residual CNN trained from scratch (four stages, the last at 14 x 14
  for a 224 x 224 input, as VGG16's conv5_3 in the Extended-CAM paper);
* ``synthetic_lite0``: ImageNet EfficientNet-Lite0 with a new 5-way head, fine-tuned on the
  benchmark (a pretrained backbone, as in the papers).

Their weights ship in ``checkpoints/<name>.pt`` with a card ``checkpoints/<name>.json`` that
records the exact ``python -m explorer train-classifier`` command that made them.
"""

from __future__ import annotations

from torch import nn

#: The benchmark's classes, in label order (explorer.datasets.synthetic.CLASSES, without SciPy).
SYNTHETIC_CLASS_NAMES = ("disc", "spike", "hammer", "star", "fork")

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
