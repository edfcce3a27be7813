"""The user's own networks: torchvision architectures from a local file, any nn.Module, and the
notebook entry point, checked against the module itself and against pytorch-grad-cam."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision

import explorer
from explorer.backbones import BackboneError, load_backbone
from explorer.methods import MethodError, compute_cams

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def resnet18_file(tmp_path_factory):
    torch.manual_seed(1)
    model = torchvision.models.resnet18(weights=None).eval()
    folder = tmp_path_factory.mktemp("resnet18")
    torch.save(model.state_dict(), folder / "plain.pt")
    # the layout of a checkpoint saved from DataParallel / DDP: {"state_dict": {"module.<key>": ...}}
    torch.save({"epoch": 3, "state_dict": {f"module.{k}": v for k, v in model.state_dict().items()}},
               folder / "wrapped.pt")
    return model, folder


@pytest.mark.parametrize("layout", ["plain.pt", "wrapped.pt"])
def test_a_torchvision_file_loads_with_its_layers_head_and_preprocessing(resnet18_file, layout) -> None:
    model, folder = resnet18_file
    backbone = load_backbone("torchvision:resnet18", folder / layout)
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        assert torch.allclose(backbone.model(x.to(backbone.device)).cpu(), model(x), atol=1e-5)
    assert backbone.default_layer == "layer4" and backbone.layer_shape("layer4") == (512, 7, 7)
    assert backbone.has_gap_linear_head and backbone.head is backbone.model.fc and backbone.cam_layer == "layer4"
    assert {"conv1", "layer1", "layer2", "layer3"} <= set(backbone.layers)
    assert "maxpool" not in backbone.layers  # pooling is not a target layer
    assert backbone.input_size == (224, 224) and backbone.mean == pytest.approx((0.485, 0.456, 0.406))
    assert len(backbone.class_names) == 1000 and backbone.class_names[285] == "Egyptian cat"
    assert backbone.weights_label == f"your file {layout}"


def test_a_head_that_is_not_gap_linear_gets_no_plain_cam(tmp_path) -> None:
    backbone = load_backbone("torchvision:convnext_tiny", "random")
    assert backbone.default_layer == "features" and backbone.layer_shape() == (768, 7, 7)
    assert not backbone.has_gap_linear_head  # LayerNorm between the pooling and the linear layer
    assert backbone.is_random
    x = backbone.preprocess(explorer.load_image("gallery:chelsea"))
    with pytest.raises(MethodError, match="global-average-pooling"):
        compute_cams(backbone, x, [0], ["cam"])
    maps = compute_cams(backbone, x, [0], ["gradcam", "extendedcam"])
    assert maps["gradcam"].shape == (1, 7, 7)


def test_a_file_with_other_classes_builds_that_many_outputs(tmp_path) -> None:
    model = torchvision.models.resnet18(weights=None, num_classes=7)
    torch.save(model.state_dict(), tmp_path / "seven.pt")
    (tmp_path / "names.txt").write_text("\n".join(f"bird {i}" for i in range(7)))
    from explorer.user_models import torchvision_backbone

    backbone = torchvision_backbone("resnet18", tmp_path / "seven.pt", class_names=tmp_path / "names.txt")
    assert backbone.class_names[6] == "bird 6" and backbone.head.out_features == 7
    with pytest.raises(BackboneError, match="names 7 classes, but the network has 1000"):
        torchvision_backbone("resnet18", "random", class_names=tmp_path / "names.txt")
    with pytest.raises(BackboneError, match="torchvision has no classifier, segmentation model or detector 'resnet19'"):
        load_backbone("torchvision:resnet19", "random")
    torch.save(torchvision.models.resnet34(weights=None).state_dict(), tmp_path / "r34.pt")
    with pytest.raises(BackboneError, match="do not fit torchvision's resnet18"):
        load_backbone("torchvision:resnet18", tmp_path / "r34.pt")


def test_maps_equal_pytorch_grad_cams_on_the_same_module(resnet18_file) -> None:
    pytest.importorskip("pytorch_grad_cam")
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    model, folder = resnet18_file
    backbone = load_backbone("torchvision:resnet18", folder / "plain.pt", device="cpu")
    x = backbone.preprocess(explorer.load_image("gallery:chelsea"))
    ours = explorer.pixel_maps(compute_cams(backbone, x, [285], ["gradcam"], relu="published")["gradcam"],
                               (224, 224), "bilinear", None, "minmax")[0].numpy()
    with GradCAM(model=backbone.model, target_layers=[backbone.module("layer4")]) as cam:
        theirs = cam(input_tensor=x, targets=[ClassifierOutputTarget(285)])[0]
    assert np.corrcoef(ours.ravel(), theirs.ravel())[0, 1] > 0.999
    assert np.abs(ours - theirs).max() < 0.05  # they min-max the 7x7 map before resizing it, we after


def test_explain_takes_a_plain_module_and_shows_itself(resnet18_file) -> None:
    model, _ = resnet18_file
    result = explorer.explain(model, "gallery:chelsea", methods=["gradcam", "gradcampp", "extendedcam"],
                              upsampler="gaussian", sigma=30)
    assert result.layer == "layer4" and result.maps["gradcam"].shape == (7, 7)
    assert result.pixels["extendedcam"].shape == (224, 224) and result.sigma == (30.0, 30.0)
    assert result.seconds["capture"] > 0 and len(result.seconds) >= 1  # one capture for all three
    overlays = result.overlays()
    assert set(overlays) == {"gradcam", "gradcampp", "extendedcam"} and overlays["gradcam"].size == (224, 224)
    png = result._repr_png_()
    assert png.startswith(b"\x89PNG")
    # the same numbers as the engine's own calls
    backbone = explorer.module_backbone(model)
    x = backbone.preprocess(explorer.load_image("gallery:chelsea"))
    expected = compute_cams(backbone, x, [result.target], ["gradcam"], relu="published")["gradcam"][0].numpy()
    np.testing.assert_allclose(result.maps["gradcam"], expected, rtol=1e-5, atol=1e-7)
    with pytest.raises(explorer.UpsampleError, match="needs sigma"):
        explorer.explain(model, "gallery:chelsea", upsampler="gaussian")
    with pytest.raises(MethodError, match="Unknown method"):
        explorer.explain(model, "gallery:chelsea", methods=["nocam"])


def test_a_timm_model_from_a_file(tmp_path) -> None:
    timm = pytest.importorskip("timm")
    model = timm.create_model("resnet18", pretrained=False, num_classes=10).eval()
    torch.save(model.state_dict(), tmp_path / "timm.pt")
    backbone = load_backbone("timm:resnet18", tmp_path / "timm.pt")
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        assert torch.allclose(backbone.model(x.to(backbone.device)).cpu(), model(x), atol=1e-5)
    assert backbone.default_layer == "layer4" and backbone.has_gap_linear_head and len(backbone.class_names) == 10
    with pytest.raises(BackboneError, match="timm has no model"):
        load_backbone("timm:no_such_net", "random")


def model_card(folder: Path, weights_file: Path) -> Path:
    (folder / "names.txt").write_text("\n".join(f"bird {i}" for i in range(7)))
    card = folder / "my-birds.json"
    card.write_text(json.dumps({"architecture": "torchvision:resnet18", "weights": weights_file.name,
                                "class_names": "names.txt", "layer": "layer3", "name": "my birds"}))
    return card


def test_a_model_card_through_the_api_the_cli_and_the_app(tmp_path, monkeypatch) -> None:
    torch.manual_seed(2)
    model = torchvision.models.resnet18(weights=None, num_classes=7).eval()
    torch.save(model.state_dict(), tmp_path / "birds.pt")
    card = model_card(tmp_path, tmp_path / "birds.pt")
    backbone = load_backbone(f"card:{card}")
    assert backbone.name == "my birds" and backbone.default_layer == "layer3" and backbone.class_names[3] == "bird 3"
    assert not backbone.has_gap_linear_head  # layer3 does not feed the pooling: plain CAM is not offered there
    with torch.no_grad():
        x = torch.randn(1, 3, 224, 224)
        assert torch.allclose(backbone.model(x.to(backbone.device)).cpu(), model(x), atol=1e-5)
    random = load_backbone(f"card:{card}", "random")
    assert random.is_random
    result = subprocess.run([sys.executable, "-m", "explorer", "cam", "--image", "gallery:chelsea", "--backbone",
                             f"card:{card}", "--methods", "gradcam", "--upsampler", "bilinear",
                             "--out", str(tmp_path / "g.png")], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "bird" in result.stdout and (tmp_path / "g.png").is_file()
    # beside the card only: a card cannot name a file elsewhere
    card.write_text(json.dumps({"architecture": "torchvision:resnet18", "weights": "../../etc/passwd"}))
    with pytest.raises(BackboneError, match="must lie beside the card"):
        load_backbone(f"card:{card}")

    # the app lists the cards of data/models/ beside the registered backbones
    from streamlit.testing.v1 import AppTest

    from explorer.ui import sidebar

    models = tmp_path / "models"
    models.mkdir()
    torch.save(model.state_dict(), models / "birds.pt")
    listed = model_card(models, models / "birds.pt")
    monkeypatch.setattr(sidebar, "MODELS_DIR", models)
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=300)
    at.run()
    options = at.selectbox(key="cam.widget.backbone").options
    assert "your model: my-birds" in options
    at.selectbox(key="cam.widget.backbone").set_value(f"card:{listed}")
    at.run()
    assert not at.exception and not at.error
    assert "`my birds`" in "\n".join(m.value for m in at.markdown)


@pytest.mark.parametrize("arch,layer,grid", [("vgg16", "relu", 14), ("resnet50", "layer4", 14),
                                             ("resnet50-28x28", "layer4", 28), ("inception_v3", "SPG_A3_2b", 14),
                                             ("inception_v3-28x28", "SPG_A3_2b", 28)])
def test_the_wsol_protocols_networks_load_their_official_checkpoint_layout(arch, layer, grid, tmp_path) -> None:
    """Built with random weights, saved as the protocol's training code saves them ({"state_dict"}
    with DataParallel's `module.` prefix, 200 CUB classes), loaded back: the same logits."""
    from explorer.user_models import wsol_backbone

    original = wsol_backbone(arch, "random", num_classes=200, device="cpu")
    state = {f"module.{k}": v for k, v in original.model.state_dict().items()}
    if arch.startswith("inception_v3"):  # the protocol's SPG_A4 is a 1 x 1 convolution
        state["module.SPG_A4.weight"] = state["module.SPG_A4.weight"][:, :, None, None]
    torch.save({"epoch": 50, "architecture": arch, "state_dict": state}, tmp_path / "last_checkpoint.pth.tar")
    loaded = load_backbone(f"wsol:{arch}", tmp_path / "last_checkpoint.pth.tar", device="cpu")
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        assert torch.equal(loaded.model(x), original.model(x))
    assert loaded.default_layer == layer and loaded.layer_shape()[1:] == (grid, grid)
    assert loaded.has_gap_linear_head and len(loaded.class_names) == 200  # a CAM network: plain CAM applies
    if arch == "vgg16":
        assert loaded.layer_shape() == (1024, 14, 14) and "conv6" in loaded.layers
        assert set(original.model.state_dict()) >= {"features.28.weight", "conv6.weight", "fc.weight"}


def test_the_wsol_inception_cam_is_the_protocols_map_of_its_class():
    """The protocol's Inception CAM is channel c of SPG_A4 (a 1 x 1 conv) applied to SPG_A3_2b's
    output; ours is plain CAM at SPG_A3_2b with SPG_A4 as the GAP + linear head: the same map."""
    from explorer.methods import compute_cams
    from explorer.user_models import wsol_backbone

    backbone = wsol_backbone("inception_v3", "random", num_classes=7, device="cpu")
    x = torch.randn(1, 3, 224, 224)
    features = []
    handle = backbone.model.SPG_A3_2b.register_forward_hook(lambda _m, _i, out: features.append(out))
    with torch.no_grad():
        backbone.model(x)
    handle.remove()
    head = backbone.model.SPG_A4
    protocol = torch.nn.functional.conv2d(features[0], head.weight[:, :, None, None], head.bias)[0, 3]
    ours = compute_cams(backbone, x, torch.tensor([3]), ["cam"], "SPG_A3_2b")["cam"][0]
    # CAM leaves out the bias (a constant, gone after min-max normalisation)
    assert torch.allclose(ours, protocol - head.bias[3], atol=1e-4)
