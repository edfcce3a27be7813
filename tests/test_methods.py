"""Every CAM method against its formula, on networks where A and dy_c/dA are known in closed form."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from explorer import compute_cams, method_label
from explorer.capture import capture
from explorer.methods import METHODS, MethodError, channel_sum, scorecam_weights
from tests.nets import conv_net, gap_linear_net, piecewise_linear_net, quadratic_net

GRADIENT_METHODS = ["cam", "gradcam", "gradcampp", "xgradcam", "layercam", "extendedcam"]


def relu(x):
    return np.maximum(x, 0)


def reference_maps(A: np.ndarray, g: np.ndarray) -> dict[str, np.ndarray]:
    """The published formulas, written independently of the engine (A, g: B x K x h x w)."""
    Z = A.shape[2] * A.shape[3]
    out = {}
    w = g.sum(axis=(2, 3)) / Z
    out["gradcam"] = np.einsum("bk,bkij->bij", w, A)
    S = A.sum(axis=(2, 3))[:, :, None, None]
    num = g ** 2
    den = 2 * g ** 2 + S * g ** 3
    alpha = np.divide(num, den, out=np.zeros_like(num), where=den != 0)
    w = (alpha * relu(g)).sum(axis=(2, 3))
    out["gradcampp"] = np.einsum("bk,bkij->bij", w, A)
    w = (g * A).sum(axis=(2, 3)) / (A.sum(axis=(2, 3)) + 1e-7)
    out["xgradcam"] = np.einsum("bk,bkij->bij", w, A)
    out["layercam"] = (relu(g) * A).sum(axis=1)
    out["extendedcam"] = (g * A).sum(axis=1)
    return out


def test_gap_linear_head_closed_form():
    """With A -> GAP -> linear, dy_c/dA_kij = w_ck / Z exactly, so every map has a closed form."""
    net = gap_linear_net(K=3, classes=4)
    torch.manual_seed(1)
    A = torch.randn(2, 3, 4, 4, dtype=torch.float64)
    targets = [1, 3]
    maps = compute_cams(net, A, targets, GRADIENT_METHODS)
    Wfc = net.head.weight.detach().numpy()
    An = A.numpy()
    g = np.stack([np.broadcast_to(Wfc[t][:, None, None] / 16.0, (3, 4, 4)) for t in targets])
    expected = reference_maps(An, g)
    expected["cam"] = np.stack([np.einsum("k,kij->ij", Wfc[t], An[b]) for b, t in enumerate(targets)])
    for method in GRADIENT_METHODS:
        assert maps[method].shape == (2, 4, 4)
        assert maps[method].dtype == torch.float32
        np.testing.assert_allclose(maps[method].numpy(), expected[method], rtol=1e-5, atol=1e-6, err_msg=method)
    # For a linear head Grad-CAM and Extended-CAM coincide: w_k does not depend on (i, j).
    np.testing.assert_allclose(maps["gradcam"].numpy(), maps["extendedcam"].numpy(), rtol=1e-5, atol=1e-6)


def test_spatially_varying_gradients_closed_form():
    """y_c = 1/2 sum V_c A^2 gives g = V_c * A, so per-cell and per-channel methods differ."""
    net = quadratic_net(K=3, classes=2, h=3, w=4)
    torch.manual_seed(2)
    A = torch.randn(2, 3, 3, 4, dtype=torch.float64)
    targets = [0, 1]
    maps = compute_cams(net, A, targets, ["gradcam", "gradcampp", "xgradcam", "layercam", "extendedcam"])
    V = net.model.head.V.detach().numpy()
    g = np.stack([V[t] * A[b].numpy() for b, t in enumerate(targets)])
    expected = reference_maps(A.numpy(), g)
    for method, value in maps.items():
        np.testing.assert_allclose(value.numpy(), expected[method], rtol=1e-5, atol=1e-6, err_msg=method)
    assert not np.allclose(maps["gradcam"].numpy(), maps["extendedcam"].numpy())


def test_gradcampp_denominator_by_hand():
    """One channel, two cells, numbers small enough to check on paper.

    A = [1, 3] (sum 4), g = [2, -1]:
      cell 1: alpha = 4 / (2*4 + 4*8) = 4/40 = 0.1, ReLU(g) = 2  -> 0.2
      cell 2: alpha = 1 / (2*1 + 4*(-1)) = -0.5,    ReLU(g) = 0  -> 0
      w = 0.2, map = w * A = [0.2, 0.6].
    """
    from explorer.methods import gradcampp_weights

    A = torch.tensor([[[[1.0, 3.0]]]], dtype=torch.float64)
    g = torch.tensor([[[[2.0, -1.0]]]], dtype=torch.float64)
    w = gradcampp_weights(A, g)
    assert w.item() == pytest.approx(0.2)
    np.testing.assert_allclose(channel_sum(w, A).numpy(), [[[0.2, 0.6]]])
    # Where g == 0 the ratio is 0/0: alpha is defined as 0 there, never NaN.
    w0 = gradcampp_weights(A, torch.zeros_like(g))
    assert torch.isfinite(w0).all() and w0.item() == 0


def test_extendedcam_completeness():
    """Eq. 7-8: for a piecewise-linear head without biases, sum_ij L_ij = y_c exactly."""
    net = piecewise_linear_net()
    torch.manual_seed(3)
    x = torch.randn(4, 3, 8, 8, dtype=torch.float64)
    targets = [0, 2, 4, 1]
    maps = compute_cams(net, x, targets, ["extendedcam"], layer="act")
    with torch.no_grad():
        scores = net.model(x)[torch.arange(4), torch.tensor(targets)]
    # float32 output: exact up to float32 rounding of the map
    np.testing.assert_allclose(maps["extendedcam"].double().sum(dim=(1, 2)).numpy(), scores.numpy(), rtol=1e-5, atol=1e-6)
    # ... and the ReLU variants break it, which is why Extended-CAM keeps the sign: "before" is
    # sum_k ReLU(w_kij A_kij), and the cells' negative contributions are exactly what it drops.
    hires = compute_cams(net, x, targets, ["extendedcam"], layer="act", relu="before")["extendedcam"]
    cap = capture(net, x, targets, "act")
    contributions = (cap.grads * cap.activations).double()
    np.testing.assert_allclose(hires.double().numpy(), contributions.clamp(min=0).sum(dim=1).numpy(), rtol=1e-5, atol=1e-6)
    gap = hires.double().sum(dim=(1, 2)) - scores
    np.testing.assert_allclose(gap.numpy(), (-contributions).clamp(min=0).sum(dim=(1, 2, 3)).numpy(), rtol=1e-5, atol=1e-6)
    assert (gap > 1e-3).all()  # every image here has negative contributions: completeness fails


def test_relu_policies():
    A = torch.tensor([[[[1.0]], [[2.0]]]])  # B=1, K=2, 1x1
    W = torch.tensor([[[[3.0]], [[-2.0]]]])  # terms 3 and -4
    assert channel_sum(W, A, "none").item() == -1
    assert channel_sum(W, A, "after").item() == 0
    assert channel_sum(W, A, "before").item() == 3
    with pytest.raises(MethodError):
        channel_sum(W, A, "sideways")


def test_published_policy_and_labels():
    net = quadratic_net()
    A = torch.randn(1, 3, 3, 4, dtype=torch.float64)
    raw = compute_cams(net, A, [0], ["gradcam", "extendedcam"])
    pub = compute_cams(net, A, [0], ["gradcam", "extendedcam"], relu="published")
    torch.testing.assert_close(pub["gradcam"], torch.relu(raw["gradcam"]))
    torch.testing.assert_close(pub["extendedcam"], raw["extendedcam"])  # signed by definition
    assert method_label("extendedcam", "after").startswith("HiResCAM")
    assert "element-wise" in method_label("extendedcam", "before")
    assert method_label("gradcam", "after") == "Grad-CAM"
    assert "signed" in method_label("gradcam", "none")


def test_cam_needs_gap_linear_head_and_its_layer():
    net = quadratic_net()
    with pytest.raises(MethodError, match="global-average-pooling"):
        compute_cams(net, torch.randn(1, 3, 3, 4, dtype=torch.float64), [0], ["cam"])
    cnn = conv_net()
    with pytest.raises(MethodError, match="only applies to layer"):
        compute_cams(cnn, torch.randn(1, 3, 32, 32), [0], ["cam"], layer="conv1")


def test_unknown_method_is_a_clear_error():
    with pytest.raises(MethodError, match="Known"):
        compute_cams(conv_net(), torch.randn(1, 3, 32, 32), [0], ["gradcam", "magic"])


def test_scorecam_against_a_plain_loop_and_chunk_invariance():
    """W_k = softmax_k(y_c(x * M_k)), M_k = min-max(bilinear(A_k)); chunking must not matter."""
    net = conv_net()
    torch.manual_seed(4)
    x = torch.randn(2, 3, 32, 32)
    targets = [3, 7]
    cap = capture(net, x, targets, gradient=False)
    expected = []
    for b, t in enumerate(targets):
        scores = []
        for k in range(cap.activations.shape[1]):
            m = torch.nn.functional.interpolate(cap.activations[b:b + 1, k:k + 1], size=(32, 32),
                                                mode="bilinear", align_corners=False)[0, 0]
            m = (m - m.min()) / (m.max() - m.min()) if m.max() > m.min() else torch.zeros_like(m)
            with torch.no_grad():
                scores.append(net.model(x[b:b + 1] * m)[0, t])
        expected.append(torch.softmax(torch.stack(scores), 0))
    expected = torch.stack(expected)
    for chunk in (1, 5, 64):
        w = scorecam_weights(net, x, cap, chunk_size=chunk)[:, :, 0, 0]
        torch.testing.assert_close(w, expected, rtol=1e-5, atol=1e-6)
    maps = compute_cams(net, x, targets, ["scorecam"], scorecam_chunk=4)["scorecam"]
    torch.testing.assert_close(maps, (expected[:, :, None, None] * cap.activations).sum(1), rtol=1e-5, atol=1e-5)


def test_smoothgradcampp_reduces_to_gradcampp_without_noise_and_is_seeded():
    # conv2 sits before a ReLU, so its gradient depends on the input (at the GAP + linear
    # layer it would not, and noise could not change anything).
    net = conv_net()
    x = torch.randn(3, 3, 32, 32)
    targets = [0, 1, 2]
    kw = dict(layer="conv2")
    plain = compute_cams(net, x, targets, ["gradcampp"], **kw)["gradcampp"]
    smooth0 = compute_cams(net, x, targets, ["smoothgradcampp"], smooth_std=0.0, smooth_samples=3, batch_size=4, **kw)
    torch.testing.assert_close(smooth0["smoothgradcampp"], plain, rtol=1e-4, atol=1e-6)
    a = compute_cams(net, x, targets, ["smoothgradcampp"], seed=7, **kw)["smoothgradcampp"]
    b = compute_cams(net, x, targets, ["smoothgradcampp"], seed=7, **kw)["smoothgradcampp"]
    c = compute_cams(net, x, targets, ["smoothgradcampp"], seed=8, **kw)["smoothgradcampp"]
    torch.testing.assert_close(a, b)
    assert not torch.allclose(a, c)


def test_smoothgradcampp_is_gradcampp_at_a_layer_that_feeds_gap_and_a_linear_head():
    # There dy_c/dA = w_c / (h w) for every input, so noise changes nothing: the reason
    # synthetic_lite0's Smooth Grad-CAM++ decoder is its Grad-CAM++ decoder bit for bit.
    net = conv_net()
    x = torch.randn(3, 3, 32, 32)
    targets = [0, 1, 2]
    plain = compute_cams(net, x, targets, ["gradcampp"], layer="relu2")["gradcampp"]
    noisy = compute_cams(net, x, targets, ["smoothgradcampp"], layer="relu2", smooth_std=1.0,
                         smooth_samples=4, seed=3)["smoothgradcampp"]
    torch.testing.assert_close(noisy, plain, rtol=1e-5, atol=1e-7)


def test_methods_declare_their_extra_passes():
    assert METHODS["scorecam"].extra_passes(1280, {}) == 1280
    assert METHODS["smoothgradcampp"].extra_passes(1280, {"smooth_samples": 8}) == 8
    for m in GRADIENT_METHODS:
        assert METHODS[m].extra_passes(1280, {}) == 0
        assert "shares" in METHODS[m].describe_cost(1280)
    assert "up to 1280 extra forward passes" in METHODS["scorecam"].describe_cost(1280)
