"""Guided Backpropagation, Guided Grad-CAM and FullGrad against closed forms."""

from __future__ import annotations

from collections import OrderedDict

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from explorer import compute_cams
from explorer.input_gradients import (
    GuidedActivation,
    InputGradientError,
    fullgrad_terms,
    guided_backprop,
    guided_gradcam_map,
)
from tests.nets import conv_net, wrap


def mlp(activation: type[nn.Module] = nn.ReLU):
    torch.manual_seed(0)
    model = nn.Sequential(OrderedDict(flat=nn.Flatten(), fc1=nn.Linear(12, 7), act=activation(),
                                      fc2=nn.Linear(7, 3))).double()
    return wrap(model, {"act": "act"}, "act", input_size=(2, 2), classes=3)


@pytest.mark.parametrize("activation", [nn.ReLU, nn.ReLU6])
def test_guided_backprop_keeps_only_positive_gradients_through_active_units(activation):
    net = mlp(activation)
    x = 4 * torch.randn(2, 3, 2, 2, dtype=torch.float64)
    W1, b1, W2 = net.model.fc1.weight, net.model.fc1.bias, net.model.fc2.weight
    upper = 6.0 if activation is nn.ReLU6 else float("inf")
    got = guided_backprop(net, x, torch.tensor([0, 2]))
    for i, c in enumerate([0, 2]):
        pre = W1 @ x[i].flatten() + b1
        active = ((pre > 0) & (pre < upper)).double()
        g_hidden = W2[c].clamp(min=0) * active
        torch.testing.assert_close(got[i].double().flatten(), (W1.T @ g_hidden).detach(), rtol=1e-5, atol=1e-6)
    assert not any(isinstance(m, GuidedActivation) for m in net.model.modules())  # the copy was guided


def test_guided_gradcam_is_the_upsampled_gradcam_times_the_guided_map():
    net = conv_net()
    x = torch.randn(2, 3, 32, 32)
    maps = compute_cams(net, x, [1, 4], ["gradcam", "guidedbackprop", "guidedgradcam"], relu="none")
    cam = F.interpolate(F.relu(maps["gradcam"])[:, None], size=(32, 32), mode="bilinear", align_corners=False)[:, 0]
    torch.testing.assert_close(maps["guidedgradcam"], cam * maps["guidedbackprop"], rtol=1e-5, atol=1e-7)
    assert maps["guidedbackprop"].shape == (2, 32, 32)
    direct = guided_gradcam_map(net, x, torch.tensor([1, 4]), maps["gradcam"])
    torch.testing.assert_close(direct, maps["guidedgradcam"])


def test_fullgrad_terms_are_complete_for_a_piecewise_linear_network():
    """y_c = sum grad_x y * x + sum_l sum grad_z y * b_l + b_fc,c (the fc bias is not a 2D bias)."""
    torch.manual_seed(3)
    model = nn.Sequential(OrderedDict(
        conv1=nn.Conv2d(3, 6, 3, padding=1), bn1=nn.BatchNorm2d(6), relu1=nn.ReLU(),
        conv2=nn.Conv2d(6, 8, 3, padding=1), relu2=nn.ReLU(), pool=nn.AdaptiveAvgPool2d(1), flat=nn.Flatten(),
        fc=nn.Linear(8, 4))).double()
    model.bn1.running_mean.uniform_(-0.5, 0.5)
    model.bn1.running_var.uniform_(0.5, 2.0)
    net = wrap(model, {"relu2": "relu2"}, "relu2", head=model.fc, cam_layer="relu2", input_size=(8, 8), classes=4)
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    targets = torch.tensor([1, 3])
    input_term, bias_terms = fullgrad_terms(net, x, targets)
    assert len(bias_terms) == 3  # conv1, bn1 (its effective bias), conv2
    with torch.no_grad():
        y = model(x).gather(1, targets[:, None])[:, 0]
    total = input_term.sum(dim=(1, 2, 3)) + sum(t.sum(dim=(1, 2, 3)) for t in bias_terms) + model.fc.bias[targets]
    torch.testing.assert_close(total, y.detach(), rtol=1e-9, atol=1e-9)
    full = compute_cams(net, x, targets, ["fullgrad"])["fullgrad"]
    assert full.shape == (2, 8, 8) and (full >= 0).all()


def test_guided_backprop_needs_rectifier_modules():
    torch.manual_seed(0)
    model = nn.Sequential(OrderedDict(flat=nn.Flatten(), fc1=nn.Linear(12, 7), act=nn.Tanh(), fc2=nn.Linear(7, 3)))
    net = wrap(model, {"act": "act"}, "act", input_size=(2, 2), classes=3)
    with pytest.raises(InputGradientError, match="ReLU"):
        compute_cams(net, torch.randn(1, 3, 2, 2), [0], ["guidedbackprop"])
