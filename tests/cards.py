"""Model cards of networks the app cannot download, built here with random weights (seed 0) and
saved to files as a user's would be: a ViT, a segmentation model and a detector."""

from __future__ import annotations

import json
from pathlib import Path

import torch


def _card(folder: Path, name: str, model: torch.nn.Module, **card) -> Path:
    torch.save(model.state_dict(), folder / f"{name}.pt")
    path = folder / f"{name}.json"
    path.write_text(json.dumps({"weights": f"{name}.pt", "name": name, **card}))
    return path


def vit_card(folder: Path) -> Path:
    import timm

    torch.manual_seed(0)
    return _card(folder, "vit-tiny", timm.create_model("vit_tiny_patch16_224", pretrained=False),
                 architecture="timm:vit_tiny_patch16_224")


def segmentation_card(folder: Path) -> Path:
    import torchvision

    torch.manual_seed(0)
    model = torchvision.models.get_model("deeplabv3_mobilenet_v3_large", weights=None, weights_backbone=None)
    return _card(folder, "deeplab-mbv3", model, architecture="torchvision:deeplabv3_mobilenet_v3_large",
                 input_size=[224, 224])


def detection_card(folder: Path) -> Path:
    """Random weights would score every class about 1/91, below the detector's 0.05 threshold: the
    'person' logit is raised by 6 so that the untrained detector reports boxes to pick from."""
    import torchvision

    torch.manual_seed(0)
    model = torchvision.models.get_model("fasterrcnn_mobilenet_v3_large_320_fpn", weights=None, weights_backbone=None)
    with torch.no_grad():
        model.roi_heads.box_predictor.cls_score.bias[1] += 6.0
    return _card(folder, "frcnn-mbv3-320", model, architecture="torchvision:fasterrcnn_mobilenet_v3_large_320_fpn")


def vector_card(folder: Path, task: str) -> Path:
    """A small torchvision ResNet-18 whose 8 outputs are an embedding or regression outputs."""
    import torchvision

    torch.manual_seed(0)
    return _card(folder, f"resnet18-{task}", torchvision.models.resnet18(num_classes=8),
                 architecture="torchvision:resnet18", task=task, input_size=[128, 128])
