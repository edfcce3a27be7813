"""Classifiers of the synthetic WSOL benchmark, registered as backbones like any other.

Both end in global-average-pooling + a linear layer, so every CAM method (plain CAM included)
applies to them:

* ``synthetic_cnn``: a small VGG-style CNN trained from scratch (four stride-2 stages, the last
  at 14 x 14 for a 224 x 224 input, as VGG16's conv5_3 in the Extended-CAM paper);
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


def _conv(cin: int, cout: int, stride: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(cout),
            nn.ReLU(inplace=False)]


class SmallCNN(nn.Module):
    """Conv-BN-ReLU stages 32-64-128-256 channels, each opened by a stride-2 convolution.

    At 224 x 224 the stages output 112, 56, 28 and 14 pixels a side; ``stage4`` (14 x 14 x 256)
    feeds the GAP + linear head ``fc``. ReLUs are not in-place so that a forward hook sees each
    stage's output unchanged.
    """

    def __init__(self, num_classes: int = len(SYNTHETIC_CLASS_NAMES), width: int = 32):
        super().__init__()
        w = width
        self.stage1 = nn.Sequential(*_conv(3, w, 2), *_conv(w, w))
        self.stage2 = nn.Sequential(*_conv(w, 2 * w, 2), *_conv(2 * w, 2 * w))
        self.stage3 = nn.Sequential(*_conv(2 * w, 4 * w, 2), *_conv(4 * w, 4 * w), *_conv(4 * w, 4 * w))
        self.stage4 = nn.Sequential(*_conv(4 * w, 8 * w, 2), *_conv(8 * w, 8 * w), *_conv(8 * w, 8 * w))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(8 * w, num_classes)

    def forward(self, x):
        x = self.stage4(self.stage3(self.stage2(self.stage1(x))))
        return self.fc(self.pool(x).flatten(1))


SMALL_CNN_LAYERS = {"stage1": "stage1", "stage2": "stage2", "stage3": "stage3", "stage4": "stage4"}
SMALL_CNN_NOTES = {
    "stage1": "112 x 112 at 224", "stage2": "56 x 56 at 224", "stage3": "28 x 28 at 224",
    "stage4": "14 x 14 x 256 at 224: the map the GAP + linear classifier reads",
}
