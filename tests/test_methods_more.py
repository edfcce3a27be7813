"""The methods issue 13 added, each against its formula on a network where it has a closed form."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from explorer import compute_cams
from explorer.capture import capture
from explorer.errors import ExplorerError
from explorer.methods import METHODS, comparison_classes, kpcacam_map, method_label, resolve_relu
from explorer.perturbation import Stopped, Watch, distinct_channels, scorecam_weights, tail_scores
from tests.nets import conv_net, gap_linear_net, piecewise_linear_net, quadratic_net

NEW = ["eigencam", "eigengradcam", "kpcacam", "fem", "randomcam", "ablationcam", "sscam", "iscam",
       "shapleycam", "finercam"]


def test_every_new_method_runs_on_a_conv_net_and_keeps_shapes():
    net = conv_net()
    x = torch.randn(2, 3, 32, 32)
    maps = compute_cams(net, x, [1, 2], NEW, score_samples=2)
    for method in NEW:
        assert maps[method].shape == (2, 8, 8), method
        assert torch.isfinite(maps[method]).all(), method
        assert METHODS[method].label in method_label(method, METHODS[method].published_relu)


def test_eigencam_of_a_rank_one_activation_is_its_spatial_factor():
    """A_kij = v_k u_ij: O = u v^T, so v_1 = v / |v| and L = O v_1 = |v| u, signed so that sum v_1 > 0."""
    net = gap_linear_net(K=4, classes=3)
    v = torch.tensor([0.5, -0.2, 1.0, 0.3], dtype=torch.float64)
    u = torch.rand(4, 4, dtype=torch.float64)
    A = (v[:, None, None] * u)[None]
    maps = compute_cams(net, A, [0], ["eigencam"])
    torch.testing.assert_close(maps["eigencam"][0].double(), v.norm() * u, rtol=1e-5, atol=1e-6)
    # The sign follows the component, not the map: -A gives the same v_1 and the negated map.
    flipped = compute_cams(net, -A, [0], ["eigencam"])["eigencam"][0].double()
    torch.testing.assert_close(flipped, -v.norm() * u, rtol=1e-5, atol=1e-6)


def test_eigengradcam_projects_gradient_times_activation():
    net = quadratic_net(K=3, classes=2, h=3, w=4)
    torch.manual_seed(3)
    A = torch.randn(2, 3, 3, 4, dtype=torch.float64)
    maps = compute_cams(net, A, [0, 1], ["eigengradcam"])["eigengradcam"]
    V = net.model.head.V.detach()
    for b, t in enumerate([0, 1]):
        M = (V[t] * A[b] * A[b]).reshape(3, -1).T.numpy()  # (g * A) as cells x channels, g = V_c * A
        _, _, vt = np.linalg.svd(M, full_matrices=False)
        v1 = vt[0] * (1 if vt[0].sum() >= 0 else -1)
        np.testing.assert_allclose(maps[b].numpy().ravel(), M @ v1, rtol=1e-5, atol=1e-6)


def test_fem_by_hand():
    """One channel of 9 cells: eight zeros and one 9. mu = 1, sigma = sqrt(8) (1/Z), so only the 9
    passes mu + 2 sigma = 6.66: W = 1/9 and L = A / 9. A second channel is constant: nothing passes."""
    net = gap_linear_net(K=2, classes=2)
    net = type(net)(**{**net.__dict__, "input_size": (3, 3)})
    A = torch.zeros(1, 2, 3, 3, dtype=torch.float64)
    A[0, 0, 1, 1] = 9.0
    A[0, 1] = 5.0
    L = compute_cams(net, A, [0], ["fem"], relu="none")["fem"][0].double()
    torch.testing.assert_close(L, A[0, 0] / 9, rtol=1e-6, atol=1e-9)


def test_randomcam_is_seeded_uniform_and_blind_to_the_class():
    net = gap_linear_net(K=64, classes=3)
    A = torch.rand(1, 64, 4, 4, dtype=torch.float64)
    a = compute_cams(net, A, [0], ["randomcam"], seed=3)["randomcam"]
    b = compute_cams(net, A, [2], ["randomcam"], seed=3)["randomcam"]
    c = compute_cams(net, A, [0], ["randomcam"], seed=4)["randomcam"]
    torch.testing.assert_close(a, b)
    assert not torch.allclose(a, c)
    w = torch.rand((1, 64), generator=torch.Generator().manual_seed(3)) * 2 - 1
    torch.testing.assert_close(a[0], (w[0, :, None, None].double() * A[0]).sum(0).float(), rtol=1e-5, atol=1e-6)


def test_kpcacam_matches_scikit_learn_kernel_pca():
    from sklearn.decomposition import KernelPCA

    torch.manual_seed(5)
    A = torch.rand(2, 16, 5, 6, dtype=torch.float64)
    ours = kpcacam_map(A).double()
    for b in range(2):
        X = A[b].reshape(16, -1).T.numpy()
        X = X - X.mean(axis=0)
        theirs = KernelPCA(n_components=1, kernel="sigmoid").fit_transform(X)[:, 0]
        r = np.corrcoef(ours[b].numpy().ravel(), theirs)[0, 1]
        assert abs(r) > 0.9999
        np.testing.assert_allclose(np.abs(ours[b].numpy().ravel()), np.abs(theirs), rtol=1e-4, atol=1e-8)
    assert resolve_relu("kpcacam", "before") == "after"  # no per-channel terms: the ReLU acts on the map


def test_ablationcam_on_a_linear_head():
    """y_c = sum_k w_ck mean(A_k) + b_c, so zeroing A_k drops y_c by w_ck mean(A_k): W_k = that / y_c."""
    net = gap_linear_net(K=5, classes=3)
    torch.manual_seed(6)
    A = torch.rand(2, 5, 4, 4, dtype=torch.float64) + 0.5
    targets = [0, 2]
    maps = compute_cams(net, A, targets, ["ablationcam"], relu="none")["ablationcam"]
    W, bias = net.head.weight.detach(), net.head.bias.detach()
    for b, t in enumerate(targets):
        means = A[b].mean(dim=(1, 2))
        y = W[t] @ means + bias[t]
        weights = W[t] * means / y
        torch.testing.assert_close(maps[b].double(), (weights[:, None, None] * A[b]).sum(0), rtol=1e-5, atol=1e-6)


def test_tail_scores_equal_full_forwards_with_the_layer_replaced():
    net = piecewise_linear_net()
    x = torch.randn(1, 3, 8, 8, dtype=torch.float64)
    cap = capture(net, x, [2], "act", gradient=False)
    copies = cap.activations.repeat(4, 1, 1, 1).double() * torch.rand(4, 6, 1, 1, dtype=torch.float64)
    head = net.model.head
    torch.testing.assert_close(tail_scores(net, x[0], "act", 2, copies), head(copies)[:, 2].float())


def test_scorecam_merges_identical_masks_and_reports_and_stops():
    """Constant channels and scaled copies share one mask: fewer forwards, same weights."""
    net = conv_net()
    x = torch.randn(1, 3, 32, 32)
    cap = capture(net, x, [3], gradient=False)
    A = cap.activations.clone()
    A[0, 1] = 2.0                 # constant
    A[0, 2] = 7.0                 # another constant: the same (zero) mask
    A[0, 3] = 2 * A[0, 0]         # a scaled copy of channel 0 (exact in floating point)
    cap = type(cap)(activations=A, gradients=None, logits=cap.logits, targets=cap.targets, layer=cap.layer)
    reps, inverse = distinct_channels(A[0])
    assert inverse[1] == inverse[2] and inverse[0] == inverse[3]
    assert reps.numel() <= A.shape[1] - 2
    calls = []
    merged = scorecam_weights(net, x, cap, chunk_size=3, watch=Watch(progress=lambda d, t: calls.append((d, t))))
    scores = []
    for k in range(A.shape[1]):
        m = torch.nn.functional.interpolate(A[:, k:k + 1], size=(32, 32), mode="bilinear", align_corners=False)[0, 0]
        m = (m - m.min()) / (m.max() - m.min()) if m.max() > m.min() else torch.zeros_like(m)
        with torch.no_grad():
            scores.append(net.model(x * m)[0, 3])
    torch.testing.assert_close(merged[0, :, 0, 0], torch.softmax(torch.stack(scores), 0), rtol=1e-4, atol=1e-6)
    assert calls[-1] == (reps.numel(), reps.numel()) and all(d <= t for d, t in calls)
    with pytest.raises(Stopped, match="Stopped after"):
        scorecam_weights(net, x, cap, chunk_size=3, watch=Watch(should_stop=lambda: len(calls) > 2))


def test_sscam_and_iscam_reduce_to_scorecam():
    net = conv_net()
    x = torch.randn(2, 3, 32, 32)
    base = compute_cams(net, x, [0, 1], ["scorecam"])["scorecam"]
    ss = compute_cams(net, x, [0, 1], ["sscam"], score_samples=1)  # noise 0.2 by default
    assert not torch.allclose(ss["sscam"], base)
    from explorer.perturbation import iscam_weights, sscam_weights

    cap = capture(net, x, [0, 1], gradient=False)
    torch.testing.assert_close(sscam_weights(net, x, cap, samples=3, noise_std=0.0),
                               scorecam_weights(net, x, cap), rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(iscam_weights(net, x, cap, samples=1), scorecam_weights(net, x, cap),
                               rtol=1e-5, atol=1e-7)


def test_iscam_integrates_the_score_along_the_mask_scale():
    """The input IS the activation here (identity layer, 4 x 4, so upsampling is the identity) and the
    head is linear: y_c(x * s M_k) = s sum_j w_cj mean(x_j M_k) + b_c, so the mean over s = i/N is
    the score at the mean scale (N + 1) / 2N."""
    net = gap_linear_net(K=3, classes=2)
    torch.manual_seed(7)
    A = torch.rand(1, 3, 4, 4, dtype=torch.float64)
    from explorer.perturbation import channel_masks, iscam_weights

    cap = capture(net, A, [1], gradient=False)
    W, bias = net.head.weight.detach(), net.head.bias.detach()
    masks = channel_masks(A[0], (4, 4)).double()
    scale = (4 + 1) / (2 * 4)
    scores = torch.stack([scale * W[1] @ (A[0] * masks[k]).mean(dim=(1, 2)) + bias[1] for k in range(3)])
    torch.testing.assert_close(iscam_weights(net, A, cap, samples=4)[0, :, 0, 0].double(), torch.softmax(scores, 0),
                               rtol=1e-5, atol=1e-7)


def test_shapleycam_on_a_linear_head():
    """a = mean_ij A (K), y = W a + b, p = softmax(y), s = 2 y_c - logsumexp(y):
    ds/da = 2 w_c - W^T p, d2s/da2 = -(W^T diag(p) W - W^T p p^T W); per cell both carry 1/Z
    (gradient) and 1/Z^2 summed over Z cells (HVP), so W_k = (1/Z)[(2 w_c - W^T p) - 1/2 H a]_k."""
    net = gap_linear_net(K=3, classes=4)
    torch.manual_seed(8)
    A = torch.rand(1, 3, 4, 4, dtype=torch.float64)
    maps = compute_cams(net, A, [2], ["shapleycam"], relu="none")["shapleycam"]
    W, bias = net.head.weight.detach(), net.head.bias.detach()
    a = A[0].mean(dim=(1, 2))
    p = torch.softmax(W @ a + bias, 0)
    grad = 2 * W[2] - W.T @ p
    H = -(W.T @ torch.diag(p) @ W - torch.outer(W.T @ p, W.T @ p))
    weights = (grad - 0.5 * H @ a) / 16
    torch.testing.assert_close(maps[0].double(), (weights[:, None, None] * A[0]).sum(0), rtol=1e-5, atol=1e-6)


def test_finercam_on_a_linear_head():
    """s = y_c - alpha mean_{d in D} y_d gives ds/dA_kij = (w_ck - mean_d w_dk) / Z."""
    net = gap_linear_net(K=3, classes=6)
    torch.manual_seed(9)
    A = torch.rand(1, 3, 4, 4, dtype=torch.float64)
    cap = capture(net, A, [4])
    D = comparison_classes(cap.logits, cap.targets)
    y = cap.logits[0]
    closest = sorted((c for c in range(6) if c != 4), key=lambda c: abs(float(y[c] - y[4])))[:3]
    assert sorted(D[0].tolist()) == sorted(closest)
    W = net.head.weight.detach()
    weights = (W[4] - W[D[0]].mean(0)) / 16
    maps = compute_cams(net, A, [4], ["finercam"], relu="none")["finercam"]
    torch.testing.assert_close(maps[0].double(), (weights[:, None, None] * A[0]).sum(0), rtol=1e-5, atol=1e-6)


def test_new_methods_declare_their_costs():
    assert METHODS["ablationcam"].extra_passes(1280, {}) == 1280
    assert METHODS["sscam"].extra_passes(1280, {"score_samples": 5}) == 6400
    assert "up to 1280 extra forward passes" in METHODS["scorecam"].describe_cost(1280)
    for m in ("eigencam", "eigengradcam", "kpcacam", "fem", "randomcam"):
        assert "shares" in METHODS[m].describe_cost(1280)
    assert "Hessian" in METHODS["shapleycam"].describe_cost(1280)


def test_kpcacam_refuses_a_layer_whose_kernel_would_not_fit():
    from explorer.methods import MethodError

    with pytest.raises(MethodError, match="Choose a later layer"):
        kpcacam_map(torch.zeros(1, 2, 57, 57))


def test_eigen_smooth_is_pytorch_grad_cams_projection_signed_by_the_map():
    from pytorch_grad_cam.utils.svd_on_activations import get_2d_projection

    net = conv_net()
    x = torch.randn(2, 3, 32, 32)
    cap = capture(net, x, [1, 5])
    smoothed = compute_cams(net, x, [1, 5], ["gradcam"], cap=cap, relu="none", eigen=True)["gradcam"]
    weighted = (cap.grads.mean(dim=(2, 3), keepdim=True) * cap.activations).numpy()
    theirs = get_2d_projection(weighted)
    for b in range(2):
        ours = smoothed[b].numpy()
        sign = 1 if np.dot(ours.ravel(), theirs[b].ravel()) >= 0 else -1
        np.testing.assert_allclose(ours, sign * theirs[b], rtol=1e-4, atol=1e-5)
        plain = compute_cams(net, x, [1, 5], ["gradcam"], cap=cap, relu="none")["gradcam"][b].numpy()
        assert np.corrcoef(ours.ravel(), plain.ravel())[0, 1] > 0  # signed like the map it smooths


def test_aug_smooth_is_the_mean_of_the_six_augmented_maps_flipped_back():
    """L = (1/6) sum over {x, flip(x)} x {1.0, 0.9, 1.1} of the map of the scaled input, flipped
    maps flipped back; every augmentation in one batch."""
    net = conv_net()
    x = torch.randn(2, 3, 32, 32)
    smoothed = compute_cams(net, x, [1, 5], ["gradcam", "eigencam"], relu="after", aug_smooth=True)
    for method in ("gradcam", "eigencam"):
        by_hand = torch.zeros(2, 8, 8)
        for flip in (False, True):
            for factor in (1.0, 0.9, 1.1):
                inp = (torch.flip(x, dims=[-1]) if flip else x) * factor
                m = compute_cams(net, inp, [1, 5], [method], relu="after")[method]
                by_hand += (torch.flip(m, dims=[-1]) if flip else m) / 6
        torch.testing.assert_close(smoothed[method], by_hand, rtol=1e-4, atol=1e-6)
    with pytest.raises(ExplorerError, match="aug-smooth"):
        compute_cams(net, x, [1, 5], ["gradcam"], cap=capture(net, x, [1, 5]), aug_smooth=True)


def test_aug_smooth_matches_pytorch_grad_cam_at_grid_level():
    import pytorch_grad_cam
    import pytorch_grad_cam.base_cam as base
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    net = conv_net(inplace=False)
    x = torch.randn(2, 3, 32, 32)
    ours = compute_cams(net, x, [1, 5], ["gradcam"], relu="after", aug_smooth=True)["gradcam"].numpy()
    original = base.scale_cam_image
    base.scale_cam_image = lambda cam, target_size=None: np.asarray(cam, dtype=np.float32)
    try:
        with pytorch_grad_cam.GradCAM(model=net.model, target_layers=[net.module(net.default_layer)]) as cam:
            theirs = cam(input_tensor=x, targets=[ClassifierOutputTarget(1), ClassifierOutputTarget(5)],
                         aug_smooth=True)
    finally:
        base.scale_cam_image = original
    np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-6)


def test_layercam_fusion_scales_each_layer_by_tanh_and_keeps_the_maximum():
    """eq. 9: M^ = tanh(gamma M / max M); then bilinear to the finest grid and element-wise max."""
    from explorer.methods import fuse_layer_maps

    fine = torch.zeros(1, 4, 4)
    fine[0, 0, 0] = 0.01  # a shallow layer's tiny values count as much as a deep one's after eq. 9
    coarse = torch.full((1, 2, 2), 5.0)
    coarse[0, 1, 1] = 0.0
    fused = fuse_layer_maps([coarse, fine], gamma=2.0)
    assert fused.shape == (1, 4, 4)
    up = torch.nn.functional.interpolate(torch.tanh(2.0 * coarse / 5.0)[:, None], size=(4, 4), mode="bilinear",
                                         align_corners=False)[:, 0]
    expected = torch.maximum(up, torch.tanh(2.0 * fine / 0.01))
    torch.testing.assert_close(fused, expected)
    assert fused[0, 0, 0] == pytest.approx(np.tanh(2.0))


def test_fused_layercam_matches_torchcams_fusion_of_the_same_maps():
    import torchcam.methods

    from explorer.methods import fused_layercam

    net = conv_net(inplace=False)
    x = torch.randn(2, 3, 32, 32)
    layers = list(net.layers)
    fused, per_layer = fused_layercam(net, x, [1, 5], layers)
    for layer, m in per_layer.items():  # each layer's map is plain LayerCAM there
        torch.testing.assert_close(m, compute_cams(net, x, [1, 5], ["layercam"], layer, relu="after")["layercam"])
    # torchcam scales with tanh(gamma * cam) of its normalised cams; fed cams divided by their maximum,
    # its fusion is eq. 9 as ours.
    peaks = [m / m.flatten(1).amax(dim=1)[:, None, None] for m in per_layer.values()]
    theirs = torchcam.methods.LayerCAM.fuse_cams(peaks, tuple(fused.shape[-2:]))
    torch.testing.assert_close(fused, theirs, rtol=1e-5, atol=1e-6)
