"""Targets as functions (`explorer.targets`): each built-in's gradient against its formula or
pytorch-grad-cam's target object, several kinds in one batch with one forward, and
segmentation and detection models loaded from cards with random weights saved to files."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from pytorch_grad_cam import GradCAM
from pytorch_grad_cam.utils.model_targets import (
    ClassifierOutputSoftmaxTarget,
    FasterRCNNBoxScoreTarget,
    SemanticSegmentationTarget,
)

import explorer as ex
from explorer.capture import CaptureError, capture
from explorer.cli import main
from explorer.methods import MethodError
from explorer.targets import box_mask, per_image, region_of_class
from tests.nets import conv_net, quadratic_net


def pixels(grid_map: torch.Tensor, size: int) -> np.ndarray:
    """As pytorch-grad-cam draws a map: ReLU, bilinear to the input, min-max."""
    return ex.normalise(ex.upsample(torch.relu(grid_map), size, "bilinear"), "minmax")[0].numpy()


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a.ravel(), b.ravel())[0, 1])


def test_a_class_index_and_its_logit_target_give_the_same_capture() -> None:
    backbone = conv_net()
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    by_index = capture(backbone, x, [3, 7])
    by_function = capture(backbone, x, [ex.ClassLogit(3), 7])
    assert torch.equal(by_index.gradients, by_function.gradients)
    assert by_function.targets.tolist() == [3, 7] and by_function.objectives is not None


@pytest.mark.parametrize("make", [
    lambda y: ex.ClassProbability(1),
    lambda y: ex.RegressionOutput(0),
    lambda y: ex.CosineSimilarity(torch.tensor([0.3, -1.0], dtype=torch.float64)),
])
def test_each_vector_target_differentiates_its_formula(make) -> None:
    """On y_c = 1/2 sum V_c A^2 the gradient of any scalar t(y) is sum_c dt/dy_c V_c A (chain rule)."""
    backbone = quadratic_net()
    A = torch.randn(1, 3, 3, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    target = make(None)
    cap = capture(backbone, A, [target])
    y = backbone.model(A)[0].detach().requires_grad_(True)
    (dt_dy,) = torch.autograd.grad(target(y), y)
    V = backbone.model.head.V.detach()
    expected = torch.einsum("c,ckij->kij", dt_dy, V) * A[0]
    assert torch.allclose(cap.gradients[0].double(), expected, atol=1e-6)


def test_probability_target_equals_the_peers_softmax_target() -> None:
    backbone = conv_net(inplace=False)  # the peer's hook keeps conv2's output, which an in-place ReLU overwrites
    x = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    ours = ex.compute_cams(backbone, x, [ex.ClassProbability(4)], ["gradcam"], "conv2")["gradcam"]
    with GradCAM(model=backbone.model, target_layers=[backbone.model.conv2]) as cam:
        peer = cam(input_tensor=x, targets=[ClassifierOutputSoftmaxTarget(4)])[0]
    assert correlation(pixels(ours, 32), peer) >= 0.999


def test_different_targets_per_image_in_one_forward() -> None:
    backbone = conv_net()
    x = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        reference = backbone.model(x[2:3])[0]
    targets = [5, ex.ClassProbability(2), ex.CosineSimilarity(reference)]
    calls = []
    handle = backbone.model.register_forward_hook(lambda *_: calls.append(1))
    try:
        batch = ex.compute_cams(backbone, x, targets, ["gradcam", "layercam"], "conv2")
    finally:
        handle.remove()
    assert len(calls) == 1  # one forward (and one gradient) for three kinds of target
    for b, target in enumerate(targets):
        alone = ex.compute_cams(backbone, x[b:b + 1], [target], ["gradcam", "layercam"], "conv2")
        for method in alone:
            assert torch.allclose(batch[method][b], alone[method][0], atol=1e-6)


def test_function_targets_are_refused_where_they_cannot_apply() -> None:
    backbone = conv_net()
    x = torch.randn(1, 3, 32, 32)
    with pytest.raises(MethodError, match="Score-CAM need"):
        ex.compute_cams(backbone, x, [ex.ClassProbability(1)], ["gradcam", "scorecam"])
    with pytest.raises(MethodError, match="aug-smooth"):
        ex.compute_cams(backbone, x, [ex.ClassProbability(1)], ["gradcam"], aug_smooth=True)
    with pytest.raises(ex.TargetError, match="segmentation target"):
        ex.compute_cams(backbone, x, [ex.SegmentationRegion(1, torch.ones(32, 32))], ["gradcam"])
    with pytest.raises(ex.TargetError, match="one real number"):
        ex.compute_cams(backbone, x, [lambda out: out], ["gradcam"])
    with pytest.raises(ex.TargetError, match="does not exist"):
        ex.compute_cams(backbone, x, [ex.ClassProbability(10)], ["gradcam"])
    with pytest.raises(CaptureError, match="2 targets"):
        ex.compute_cams(backbone, x, [ex.ClassProbability(1), 2], ["gradcam"])
    with pytest.raises(CaptureError, match="not a class"):
        ex.compute_cams(backbone, torch.randn(2, 3, 32, 32), [ex.ClassProbability(1), 12], ["gradcam"])
    with pytest.raises(ex.TargetError, match="same model"):
        ex.compute_cams(backbone, x, [ex.CosineSimilarity(torch.ones(3))], ["gradcam"])


def test_explain_takes_a_function_target() -> None:
    backbone = conv_net()
    result = ex.explain(backbone, ex.gallery_image("chelsea"), target=ex.ClassProbability(2), methods=["gradcam"])
    assert result.target == -1 and result.target_name == "class 2 (probability)"
    assert result.pixels["gradcam"].shape == (32, 32)


def saved_card(tmp_path, arch: str, size: int, **card) -> str:
    """torchvision's `arch` with random weights (seed 0) saved to a file, and a card naming it."""
    import torchvision

    torch.manual_seed(0)
    model = torchvision.models.get_model(arch, weights=None, weights_backbone=None)
    torch.save(model.state_dict(), tmp_path / f"{arch}.pt")
    path = tmp_path / f"{arch}.json"
    path.write_text(json.dumps({"architecture": f"torchvision:{arch}", "weights": f"{arch}.pt",
                                "input_size": [size, size], **card}))
    return f"card:{path}"


class PlanesOnly(torch.nn.Module):
    """What pytorch-grad-cam's tutorial wraps a torchvision segmentation model in."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)["out"]


@pytest.mark.slow
@pytest.mark.parametrize("arch, layer, region", [
    ("fcn_resnet50", "backbone.layer4", "predicted"),
    ("deeplabv3_mobilenet_v3_large", "backbone.16", "box"),
])
def test_segmentation_region_equals_the_peers_target(tmp_path, arch: str, layer: str, region: str) -> None:
    backbone = ex.load_backbone(saved_card(tmp_path, arch, 160), device="cpu")
    assert (backbone.task, backbone.default_layer, len(backbone.class_names)) == ("segmentation", layer, 21)
    assert backbone.class_names[15] == "person"  # VOC's names from torchvision's metadata
    x = backbone.preprocess([ex.gallery_image("chelsea")])
    with torch.no_grad():
        single = per_image(backbone.model(x), 1)[0]
    category = int(single["out"].mean(dim=(1, 2)).argmax())
    mask = region_of_class(single, category) if region == "predicted" else box_mask((30, 40, 120, 150), (160, 160))
    assert 0 < float(mask.sum()) < 160 * 160 or region == "predicted"
    ours = ex.compute_cams(backbone, x, [ex.SegmentationRegion(category, mask)], ["gradcam"])["gradcam"]
    with GradCAM(model=PlanesOnly(backbone.model), target_layers=[backbone.module(layer)]) as cam:
        peer = cam(input_tensor=x, targets=[SemanticSegmentationTarget(category, mask.numpy())])[0]
    assert correlation(pixels(ours, 160), peer) >= 0.999
    with pytest.raises(ex.TargetError, match="output's size"):
        ex.compute_cams(backbone, x, [ex.SegmentationRegion(category, torch.ones(10, 10))], ["gradcam"])


@pytest.mark.slow
def test_box_score_equals_the_peers_faster_rcnn_target(tmp_path) -> None:
    backbone = ex.load_backbone(saved_card(tmp_path, "fasterrcnn_mobilenet_v3_large_fpn", 320), device="cpu")
    assert backbone.task == "detection" and backbone.class_names[1] == "person"
    assert backbone.mean == (0.0, 0.0, 0.0)  # the detector normalises inside
    backbone.model.roi_heads.score_thresh = 0.0  # random weights score every class about 1/91
    backbone.model.transform.min_size, backbone.model.transform.max_size = (320,), 320
    x = backbone.preprocess([ex.gallery_image("chelsea")])
    with torch.no_grad():
        found = per_image(backbone.model(x), 1)[0]
    boxes, labels = found["boxes"][:2], tuple(int(v) for v in found["labels"][:2])
    layer = "backbone.body.16"
    ours = ex.compute_cams(backbone, x, [ex.BoxScore(labels, boxes)], ["gradcam"], layer)["gradcam"]
    with GradCAM(model=backbone.model, target_layers=[backbone.module(layer)]) as cam:
        peer = cam(input_tensor=x, targets=[FasterRCNNBoxScoreTarget(list(labels), boxes.numpy())])[0]
    assert correlation(pixels(ours, 320), peer) >= 0.999
    nowhere = ex.BoxScore((labels[0],), torch.tensor([[0.0, 0.0, 1.0, 1.0]]))
    cap = capture(backbone, x, [nowhere], layer)
    assert not cap.gradients.any()  # no detection matches: the target is constant, its gradient zero


def test_a_card_says_the_task(tmp_path) -> None:
    import torchvision

    torch.manual_seed(0)
    torch.save(torchvision.models.resnet18(num_classes=8).state_dict(), tmp_path / "r.pt")
    card = tmp_path / "embed.json"
    card.write_text(json.dumps({"architecture": "torchvision:resnet18", "weights": "r.pt", "task": "embedding"}))
    embedder = ex.load_backbone(f"card:{card}", device="cpu")
    assert embedder.task == "embedding" and embedder.head is None
    card.write_text(json.dumps({"architecture": "torchvision:resnet18", "weights": "r.pt", "task": "detection"}))
    with pytest.raises(ex.BackboneError, match="is a classification model"):
        ex.load_backbone(f"card:{card}", device="cpu")
    card.write_text(json.dumps({"architecture": "torchvision:resnet18", "task": "ranking"}))
    with pytest.raises(ex.BackboneError, match="must be one of classification"):
        ex.load_backbone(f"card:{card}", device="cpu")


def test_cli_cam_says_what_to_use_for_a_segmentation_model(tmp_path, capsys) -> None:
    code = main(["cam", "--image", "gallery:chelsea", "--backbone", "torchvision:lraspp_mobilenet_v3_large",
                 "--weights", "random", "--out", str(tmp_path / "x.png")])
    err = capsys.readouterr().err
    assert code == 2 and "is a segmentation model" in err and "Traceback" not in err
