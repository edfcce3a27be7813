"""Tiny hand-built networks whose CAMs have closed forms, wrapped as engine Backbones."""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from explorer.backbones import Backbone


class QuadraticHead(nn.Module):
    """y_c = 1/2 sum_kij V_ckij A_kij^2, so dy_c/dA = V_c * A: gradients that vary over (i, j)."""

    def __init__(self, V: torch.Tensor):
        super().__init__()
        self.V = nn.Parameter(V)

    def forward(self, A: torch.Tensor) -> torch.Tensor:
        return 0.5 * torch.einsum("ckij,bkij->bc", self.V, A * A)


def wrap(model: nn.Module, layers: dict[str, str], default: str, head: nn.Linear | None = None,
         cam_layer: str | None = None, input_size=(4, 4), classes: int = 3) -> Backbone:
    model.eval()
    return Backbone(
        name="tiny", model=model, weights="random", weights_label="tiny test net", input_size=input_size,
        mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), class_names=[f"class {i}" for i in range(classes)],
        layers=layers, default_layer=default, head=head, cam_layer=cam_layer,
    )


def gap_linear_net(K: int = 3, classes: int = 4, bias: bool = True, seed: int = 0) -> Backbone:
    """The input IS the feature map A (an identity 'feat' layer), then GAP + linear."""
    torch.manual_seed(seed)
    model = nn.Sequential(OrderedDict(
        feat=nn.Identity(), pool=nn.AdaptiveAvgPool2d(1), flat=nn.Flatten(), fc=nn.Linear(K, classes, bias=bias)))
    model = model.double()
    return wrap(model, {"feat": "feat"}, "feat", head=model.fc, cam_layer="feat", classes=classes)


def quadratic_net(K: int = 3, classes: int = 2, h: int = 3, w: int = 4, seed: int = 0) -> Backbone:
    torch.manual_seed(seed)
    model = nn.Sequential(OrderedDict(feat=nn.Identity(), head=QuadraticHead(torch.randn(classes, K, h, w))))
    return wrap(model.double(), {"feat": "feat"}, "feat", input_size=(h, w), classes=classes)


def piecewise_linear_net(seed: int = 0) -> Backbone:
    """conv -> ReLU (target) -> a bias-free piecewise-linear head with max-pooling: positively
    homogeneous of degree 1 in A, so y_c = sum_kij dy_c/dA_kij A_kij exactly (Euler)."""
    torch.manual_seed(seed)
    model = nn.Sequential(OrderedDict(
        conv=nn.Conv2d(3, 6, 3, padding=1), act=nn.ReLU(),
        head=nn.Sequential(nn.Conv2d(6, 8, 1, bias=False), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                           nn.Linear(8 * 4 * 4, 16, bias=False), nn.LeakyReLU(0.1), nn.Linear(16, 5, bias=False)),
    )).double()
    return wrap(model, {"act": "act", "conv": "conv"}, "act", input_size=(8, 8), classes=5)


def conv_net(seed: int = 0, inplace: bool = True) -> Backbone:
    """A small float32 CNN with an in-place ReLU right after the target conv."""
    torch.manual_seed(seed)
    model = nn.Sequential(OrderedDict(
        conv1=nn.Conv2d(3, 8, 3, stride=2, padding=1), relu1=nn.ReLU(inplace=inplace),
        conv2=nn.Conv2d(8, 16, 3, stride=2, padding=1), relu2=nn.ReLU(inplace=inplace),
        pool=nn.AdaptiveAvgPool2d(1), flat=nn.Flatten(), fc=nn.Linear(16, 10)))
    return wrap(model, {"conv2": "conv2", "relu2": "relu2", "conv1": "conv1"}, "relu2",
                head=model.fc, cam_layer="relu2", input_size=(32, 32), classes=10)
