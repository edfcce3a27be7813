"""The backbone registry: real offline weights, local-file weights, honest errors."""

from __future__ import annotations

import os

import pytest
import torch

from explorer import backbones
from explorer.backbones import BackboneError, load_backbone
from explorer.images import gallery_image

CAT_CLASSES = {281, 282, 283, 284, 285, 286, 287}  # tabby ... lynx


@pytest.fixture(scope="module")
def lite0():
    return load_backbone("efficientnet_lite0")


def test_lite0_ranks_a_cat_first_on_chelsea(lite0):
    top5 = lite0.top_k(lite0.preprocess(gallery_image("chelsea")))[0]
    assert top5[0][0] in CAT_CLASSES and "cat" in top5[0][1]
    assert sum(p for i, _, p in top5 if i in CAT_CLASSES) > 0.9


def test_lite0_matches_the_pypi_architecture_exactly(lite0):
    """Our wrapper (separate stem/head activations) computes the same logits as the package."""
    from efficientnet_lite_pytorch import EfficientNet

    net = EfficientNet.from_name("efficientnet-lite0", image_size=224)
    net.load_state_dict(torch.load(backbones.lite_weight_file("efficientnet_lite0"), weights_only=True))
    net.eval()
    x = lite0.preprocess([gallery_image("coffee"), gallery_image("rocket")])
    with torch.no_grad():
        torch.testing.assert_close(lite0.model(x), net(x))


def _shipped(name: str) -> bool:
    try:
        backbones.REGISTRY[name].pretrained_file()
    except BackboneError:
        return False
    return True


def test_every_backbone_offers_one_layer_per_resolution():
    for name in backbones.backbone_names():
        b = load_backbone(name, "pretrained" if _shipped(name) else "random")
        assert not b.model.training
        shapes = {layer: b.layer_shape(layer) for layer in b.layers}
        resolutions = [s[1] for s in shapes.values()]
        assert len(set(resolutions)) >= 4, (name, shapes)
        assert b.default_layer in b.layers
        if name.startswith("efficientnet"):
            assert b.has_gap_linear_head and b.weights == "pretrained"
    vgg = load_backbone("vgg16", "random")
    assert vgg.default_layer == "conv5_3" and vgg.layer_shape() == (512, 14, 14)
    assert isinstance(vgg.module("conv5_3"), torch.nn.ReLU)  # after its ReLU, as in the paper
    assert not vgg.has_gap_linear_head and vgg.is_random and "RANDOM" in vgg.weights_label


def test_missing_torchvision_weights_say_which_file_and_where(tmp_path, monkeypatch):
    monkeypatch.setattr(backbones, "CHECKPOINT_DIR", tmp_path / "checkpoints")
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    with pytest.raises(BackboneError) as err:
        load_backbone("vgg16")
    message = str(err.value)
    assert "vgg16-397923af.pth" in message and str(tmp_path / "checkpoints") in message
    assert "never downloads" in message and "random" in message


def test_pretrained_torchvision_file_is_read_from_the_hub_cache(tmp_path, monkeypatch):
    """The pretrained path, tested with a state_dict this test saves from a random model."""
    monkeypatch.setattr(backbones, "CHECKPOINT_DIR", tmp_path / "checkpoints")
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    source = load_backbone("resnet50", "random")
    target = tmp_path / "hub" / "checkpoints" / "resnet50-0676ba61.pth"
    target.parent.mkdir(parents=True)
    torch.save(source.model.state_dict(), target)
    loaded = load_backbone("resnet50", "pretrained")
    assert loaded.weights == "pretrained"
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(x), source.model(x))


def test_state_dict_path_and_wrong_architecture(tmp_path, lite0):
    path = tmp_path / "lite0.pth"
    torch.save(lite0.model.state_dict(), path)
    again = load_backbone("efficientnet_lite0", path)
    assert again.weights == str(path) and "lite0.pth" in again.weights_label
    with pytest.raises(BackboneError, match="do not fit efficientnet_lite1"):
        load_backbone("efficientnet_lite1", path)  # same keys, other shapes
    with pytest.raises(BackboneError, match=r"missing key\(s\)"):
        load_backbone("resnet50", path)


def test_a_pickle_that_would_run_code_is_refused_and_not_run(tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    path = tmp_path / "evil.pth"
    torch.save({"weight": Evil()}, path)
    with pytest.raises(BackboneError, match="Refused"):
        load_backbone("efficientnet_lite0", path)
    assert not marker.exists()


def test_unknown_backbone_and_layer():
    with pytest.raises(BackboneError, match="efficientnet_lite0"):
        load_backbone("alexnet")
    b = load_backbone("efficientnet_lite0")
    with pytest.raises(BackboneError, match="Known layers"):
        b.resolve_layer("fc7")


def test_not_a_weight_file(tmp_path):
    path = tmp_path / "notes.pth"
    path.write_text("hello")
    with pytest.raises(BackboneError, match="could not be read"):
        load_backbone("efficientnet_lite0", path)
    with pytest.raises(BackboneError, match="does not exist"):
        load_backbone("efficientnet_lite0", tmp_path / "absent.pth")


def test_quantized_state_dicts_load_close_to_the_float_weights(tmp_path):
    """Shipped classifier files hold int8 weights with per-channel scales: loading restores float
    tensors within half a quantisation step, and the network's outputs barely move."""
    from explorer.checkpoints import SCALE_SUFFIX, load_state_dict, quantize_state

    torch.manual_seed(0)
    model = load_backbone("synthetic_cnn", "random", device="cpu").model
    state = {k: v.clone() for k, v in model.state_dict().items()}
    packed = quantize_state(state)
    assert packed["stage4.1.conv1.weight"].dtype == torch.int8 and "stage4.1.conv1.weight" + SCALE_SUFFIX in packed
    path = tmp_path / "packed.pt"
    torch.save(packed, path)
    restored = load_state_dict(path)
    assert restored.keys() == state.keys()
    for key, value in state.items():
        if value.is_floating_point():
            step = value.abs().amax() / 127 if packed[key].dtype == torch.int8 else value.abs().amax() * 1e-3 + 1e-6
            assert (restored[key] - value).abs().max() <= step, key
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        before = model(x)
        model.load_state_dict(restored)
        after = model(x)
    assert torch.allclose(before, after, atol=0.05 * before.abs().max().item())
