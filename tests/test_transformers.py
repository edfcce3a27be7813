"""Token layers of vision transformers (random weights; nothing is downloaded): the grid is found
from the patch embedding, special tokens are dropped, channels-last maps are permuted, the default
layer is where the peers point ViT users, and the maps equal pytorch-grad-cam's with the
equivalent reshape_transform."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pytorch_grad_cam import GradCAM, GradCAMPlusPlus, LayerCAM, ScoreCAM, XGradCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

import explorer as ex
from explorer.capture import capture
from explorer.user_models import token_layout

PEERS = {"gradcam": GradCAM, "xgradcam": XGradCAM, "layercam": LayerCAM}
MODELS = {  # name -> (default layer, layout kind, special tokens, grid)
    "timm:vit_tiny_patch16_224": ("blocks.11.norm1", "tokens", 1, (14, 14)),
    "timm:deit_tiny_distilled_patch16_224": ("blocks.11.norm1", "tokens", 2, (14, 14)),
    "timm:swin_tiny_patch4_window7_224": ("layers.3.blocks.1.norm1", "nhwc", 0, (7, 7)),
    "timm:eva02_tiny_patch14_224": ("blocks.11.norm1", "tokens", 1, (16, 16)),
    "torchvision:swin_t": ("features.7.1.norm1", "nhwc", 0, (7, 7)),
}


def pixels(grid_map: torch.Tensor) -> np.ndarray:
    """As pytorch-grad-cam draws a map: ReLU, bilinear to the input, min-max."""
    return ex.normalise(ex.upsample(torch.relu(grid_map), 224, "bilinear"), "minmax")[0].numpy()


def peer_map(backbone, x, method: str, target: int = 3) -> np.ndarray:
    layout = backbone.token_layouts[backbone.default_layer]
    with PEERS[method](model=backbone.model, target_layers=[backbone.module()], reshape_transform=layout.to_grid) as cam:
        return cam(input_tensor=x, targets=[ClassifierOutputTarget(target)])[0]


@pytest.fixture(scope="module")
def photo():
    return ex.load_image("gallery:chelsea")


def test_layouts_from_shapes() -> None:
    assert token_layout((1, 197, 768), (14, 14)).special == 1
    assert token_layout((1, 198, 192), (14, 14)).special == 2  # CLS + distillation
    assert token_layout((1, 201, 192), (14, 14)).special == 5  # CLS + four registers
    assert token_layout((1, 49, 768), (56, 56)).grid == (7, 7)  # Swin after three patch mergings
    assert token_layout((1, 7, 7, 768), (56, 56)).kind == "nhwc"
    assert token_layout((1, 768, 14, 14), (14, 14)) is None  # channels first: a CNN-style map, as it is
    assert token_layout((1, 197, 768), None) is None  # no patch embedding: not a transformer
    assert token_layout((1, 300, 768), (14, 14)) is None  # 104 extra tokens: not a grid plus a few specials


@pytest.mark.parametrize("name", list(MODELS))
def test_token_layers_become_grid_maps_that_equal_the_peers(name: str, photo) -> None:
    layer, kind, special, grid = MODELS[name]
    backbone = ex.load_backbone(name, "random", device="cpu")
    assert backbone.default_layer == layer
    layout = backbone.token_layouts[layer]
    assert (layout.kind, layout.special, layout.grid) == (kind, special, grid)
    assert backbone.layer_shape(layer)[1:] == grid
    assert "first norm" in backbone.layer_notes[layer]
    x = backbone.preprocess([photo])
    maps = ex.compute_cams(backbone, x, [3], ["gradcam", "xgradcam", "layercam", "extendedcam"])
    assert all(m.shape == (1, *grid) for m in maps.values())
    for method in PEERS:
        r = np.corrcoef(pixels(maps[method]).ravel(), peer_map(backbone, x, method).ravel())[0, 1]
        assert r >= 0.999, (method, r)
    gaussian = ex.upsample(maps["extendedcam"], 224, "gaussian", sigma=(20.0, 20.0))
    assert gaussian.shape == (1, 224, 224) and torch.isfinite(gaussian).all()


def test_gradcampp_differs_from_the_peer_only_by_its_epsilon(photo) -> None:
    """pytorch-grad-cam adds 1e-6 to Grad-CAM++'s denominator 2 g^2 + sum A g^3. At a ViT's norm
    layer every denominator is below that, so its map is sum ReLU(g) g^2 / 1e-6, not eq. 19; ours
    keeps eq. 19. The same capture with the peer's epsilon gives the peer's map."""
    backbone = ex.load_backbone("timm:vit_tiny_patch16_224", "random", device="cpu")
    x = backbone.preprocess([photo])
    cap = capture(backbone, x, [3], backbone.default_layer)
    A, g = cap.activations.double(), cap.gradients.double()
    denominator = 2 * g**2 + A.sum(dim=(2, 3), keepdim=True) * g**3
    assert float(denominator.abs().max()) < 1e-6
    alpha = torch.where(g != 0, g**2 / (denominator + 1e-6), torch.zeros_like(g))
    with_epsilon = torch.relu(((torch.relu(g) * alpha).sum(dim=(2, 3), keepdim=True) * A).sum(1)).float()
    layout = backbone.token_layouts[backbone.default_layer]
    with GradCAMPlusPlus(model=backbone.model, target_layers=[backbone.module()], reshape_transform=layout.to_grid) as cam:
        peer = cam(input_tensor=x, targets=[ClassifierOutputTarget(3)])[0]
    assert np.corrcoef(pixels(with_epsilon).ravel(), peer.ravel())[0, 1] >= 0.995
    ours = ex.compute_cams(backbone, x, [3], ["gradcampp"])["gradcampp"]
    assert torch.isfinite(ours).all()


@pytest.mark.slow
def test_torchvision_vit_from_a_weight_file_and_score_cam(tmp_path, photo) -> None:
    """torchvision's ViT initialises its head to zeros (every gradient would be 0): the test
    saves random weights with a random head to a file, as a user would load theirs."""
    import torchvision

    torch.manual_seed(0)
    model = torchvision.models.vit_b_16(weights=None)
    torch.nn.init.normal_(model.heads.head.weight, std=0.02)
    torch.save(model.state_dict(), tmp_path / "vit_b_16.pt")
    backbone = ex.load_backbone("torchvision:vit_b_16", tmp_path / "vit_b_16.pt", device="cpu")
    assert backbone.default_layer == "encoder.layers.encoder_layer_11.ln_1"
    x = backbone.preprocess([photo])
    maps = ex.compute_cams(backbone, x, [3], ["gradcam"])
    r = np.corrcoef(pixels(maps["gradcam"]).ravel(), peer_map(backbone, x, "gradcam").ravel())[0, 1]
    assert r >= 0.999, r
    tiny = ex.load_backbone("timm:vit_tiny_patch16_224", "random", device="cpu")
    x = tiny.preprocess([photo])
    ours = ex.compute_cams(tiny, x, [3], ["scorecam"], scorecam_chunk=64)["scorecam"]
    layout = tiny.token_layouts[tiny.default_layer]
    with ScoreCAM(model=tiny.model, target_layers=[tiny.module()], reshape_transform=layout.to_grid) as cam:
        cam.batch_size = 64
        peer = cam(input_tensor=x, targets=[ClassifierOutputTarget(3)])[0]
    assert np.corrcoef(pixels(ours).ravel(), peer.ravel())[0, 1] >= 0.999


def test_beit_and_a_cnn_keep_their_layouts(photo) -> None:
    beit = ex.load_backbone("timm:beit_base_patch16_224", "random", device="cpu")
    assert beit.default_layer.endswith("norm1") and beit.token_layouts[beit.default_layer].special == 1
    resnet = ex.load_backbone("torchvision:resnet18", "random", device="cpu")
    assert not resnet.token_layouts and resnet.default_layer == "layer4"


def test_the_erf_of_a_patch_token(tmp_path) -> None:
    import json

    from explorer.cli import main

    out = tmp_path / "vit.json"
    assert main(["erf", "--backbone", "timm:vit_tiny_patch16_224", "--weights", "random", "--images", "4",
                 "--out", str(out)]) == 0
    card = json.loads(out.read_text())
    assert card["grid"] == [14, 14] and card["layer"] == "blocks.11.norm1" and card["sigma_x"] > 0
