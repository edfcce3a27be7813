"""Cascading model-parameter randomisation (Adebayo et al. 2018) on a network whose structure says
which maps must change at which step."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from explorer.sanity import SanityError, cascading_randomisation, randomisation_blocks, spearman, ssim
from tests.nets import conv_net


def test_blocks_run_from_the_output_down():
    net = conv_net()
    assert [name for name, _ in randomisation_blocks(net.model)] == ["fc", "conv2", "conv1"]


def test_maps_change_exactly_when_a_block_they_read_is_reset_and_the_network_is_untouched():
    net = conv_net()
    before = {k: v.clone() for k, v in net.model.state_dict().items()}
    x = torch.randn(1, 3, 32, 32)
    result = cascading_randomisation(net, x, 3, ["gradcam", "eigencam"], "relu2", upsamplers=("bilinear",),
                                     relu="none")
    assert result.steps == ["trained", "fc", "conv2", "conv1"]
    grad, eigen = result.spearman[("gradcam", "bilinear")], result.spearman[("eigencam", "bilinear")]
    assert grad[0] == pytest.approx(1.0) and result.ssim[("gradcam", "bilinear")][0] == pytest.approx(1.0)
    # Eigen-CAM reads only relu2's activations: resetting fc leaves it exactly as it was.
    assert eigen[1] == pytest.approx(1.0)
    np.testing.assert_array_equal(result.maps[("eigencam", "bilinear")][1], result.maps[("eigencam", "bilinear")][0])
    # Grad-CAM's weights come from fc: the first reset already changes its map.
    assert not np.allclose(result.maps[("gradcam", "bilinear")][1], result.maps[("gradcam", "bilinear")][0])
    assert eigen[2] < 0.99  # conv2's reset changes the activations themselves
    for k, v in net.model.state_dict().items():
        torch.testing.assert_close(v, before[k])


def test_the_check_is_seeded_and_refuses_bad_input():
    net = conv_net()
    x = torch.randn(1, 3, 32, 32)
    a = cascading_randomisation(net, x, 1, ["gradcam"], upsamplers=("bilinear",), seed=4)
    b = cascading_randomisation(net, x, 1, ["gradcam"], upsamplers=("bilinear",), seed=4)
    np.testing.assert_array_equal(a.maps[("gradcam", "bilinear")], b.maps[("gradcam", "bilinear")])
    with pytest.raises(SanityError, match="sigma"):
        cascading_randomisation(net, x, 1, ["gradcam"], upsamplers=("gaussian",))
    with pytest.raises(SanityError, match="one image"):
        cascading_randomisation(net, torch.randn(2, 3, 32, 32), 1, ["gradcam"], upsamplers=("bilinear",))


def test_rank_correlation_and_ssim_by_hand():
    a = np.array([[0.0, 0.2], [0.4, 1.0]])
    assert spearman(a, a ** 2) == pytest.approx(1.0)  # monotone: the same ranks
    assert spearman(a, 1 - a) == pytest.approx(-1.0)
    assert spearman(a, np.zeros_like(a)) == 0.0
    img = np.random.default_rng(0).random((16, 16))
    assert ssim(img, img) == pytest.approx(1.0)
    assert ssim(img, 1 - img) < 0
