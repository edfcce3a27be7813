"""Targets as functions: what the gradient of a capture is taken of, per image.

A target is any callable over ONE image's model output that returns a scalar tensor; the capture
differentiates sum_b target_b(output_b), so every image in a batch may have its own kind of
target and the batch still takes one forward and one gradient. A whole number stays what it
always was, the class logit y_c (the fast path, `ClassLogit`).

One image's output is the model's output with the batch index taken: a row of logits or an
embedding for a classifier or encoder, a mapping such as {"out": C x H x W} for torchvision's
segmentation models, a dict of boxes, labels and scores for its detectors (see `per_image`).

The built-ins follow pytorch-grad-cam's target objects where it has one
(`pytorch_grad_cam/utils/model_targets.py`), so their maps agree with its maps.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from explorer.errors import ExplorerError

Target = Callable[[object], torch.Tensor]
TASKS = ("classification", "segmentation", "detection", "embedding", "regression")


class TargetError(ExplorerError):
    """A target does not fit the model's output, or is not a target at all."""


def _vector(output: object, what: str) -> torch.Tensor:
    if isinstance(output, Mapping) or not isinstance(output, torch.Tensor):
        raise TargetError(f"A {what} target needs a model whose output is a vector per image (logits, an embedding, "
                          f"regression outputs), not {type(output).__name__}; pick the target that fits the task.")
    return output.reshape(-1)


def _index(value: object, size: int, what: str) -> int:
    try:
        index = operator.index(value)  # type: ignore[arg-type]
    except TypeError:
        raise TargetError(f"The {what} must be a whole number, not {str(value)[:40]}.") from None
    if not 0 <= index < size:
        raise TargetError(f"The {what} {index} does not exist: the output has {size} values, numbered 0 to {size - 1}.")
    return index


@dataclass(frozen=True)
class ClassLogit:
    """y_c, the class's logit (what a whole-number target means)."""

    category: int

    def __call__(self, output: object) -> torch.Tensor:
        vector = _vector(output, "class logit")
        return vector[_index(self.category, vector.numel(), "class")]


@dataclass(frozen=True)
class ClassProbability:
    """softmax(y)_c: the class's probability, so raising the other classes lowers it."""

    category: int

    def __call__(self, output: object) -> torch.Tensor:
        vector = _vector(output, "class probability")
        return torch.softmax(vector, dim=0)[_index(self.category, vector.numel(), "class")]


@dataclass(frozen=True)
class RegressionOutput:
    """One output value of a regression head, as it is (index 0 for a single-output model)."""

    index: int = 0

    def __call__(self, output: object) -> torch.Tensor:
        vector = _vector(output, "regression")
        return vector[_index(self.index, vector.numel(), "output index")]


@dataclass(frozen=True)
class CosineSimilarity:
    """cos(e, r) = e . r / (|e| |r|): how close the image's embedding e is to a reference
    embedding r (another image's, or a concept's mean embedding)."""

    reference: torch.Tensor = field(repr=False)

    def __call__(self, output: object) -> torch.Tensor:
        embedding = _vector(output, "cosine-similarity")
        reference = self.reference.detach().reshape(-1).to(embedding.device, embedding.dtype)
        if reference.numel() != embedding.numel():
            raise TargetError(f"The reference embedding has {reference.numel()} values but the model's embedding has "
                              f"{embedding.numel()}; embed the reference with the same model.")
        return F.cosine_similarity(embedding, reference, dim=0)


def class_planes(output: object) -> torch.Tensor:
    """A segmentation output for one image as C x H x W: torchvision's models return {"out": ...}."""
    planes = output.get("out") if isinstance(output, Mapping) else output
    if not isinstance(planes, torch.Tensor) or planes.dim() != 3:
        raise TargetError("A segmentation target needs a model whose output is C x H x W class scores per image "
                          f"(or {{'out': ...}} as torchvision's), not {type(planes).__name__}.")
    return planes


@dataclass(frozen=True)
class SegmentationRegion:
    """sum_{(i, j) in mask} S_c(i, j): a segmentation model's score planes of class c summed
    over a region (a drawn box, or the pixels it assigns to c); as pytorch-grad-cam's
    SemanticSegmentationTarget. The mask is H x W at the model's output resolution."""

    category: int
    mask: torch.Tensor = field(repr=False)

    def __call__(self, output: object) -> torch.Tensor:
        planes = class_planes(output)
        if tuple(self.mask.shape) != tuple(planes.shape[-2:]):
            raise TargetError(f"The region is {tuple(self.mask.shape)} but the model's output is "
                              f"{tuple(planes.shape[-2:])}; give the mask at the output's size.")
        plane = planes[_index(self.category, planes.shape[0], "class")]
        return (plane * self.mask.to(plane.device, plane.dtype)).sum()


def region_of_class(output: object, category: int) -> torch.Tensor:
    """The pixels a segmentation output assigns to `category` (its argmax), as an H x W float mask:
    the usual region for a SegmentationRegion target when none is drawn."""
    planes = class_planes(output)
    return (planes.argmax(dim=0) == _index(category, planes.shape[0], "class")).float()


def box_mask(box: Sequence[float], size: tuple[int, int]) -> torch.Tensor:
    """An H x W mask that is 1 inside the box (x1, y1, x2, y2) in pixels, for a region drawn as a box."""
    x1, y1, x2, y2 = (float(v) for v in box)
    h, w = size
    ys = torch.arange(h, dtype=torch.float32)[:, None] + 0.5
    xs = torch.arange(w, dtype=torch.float32)[None, :] + 0.5
    return ((xs >= x1) & (xs <= x2) & (ys >= y1) & (ys <= y2)).float()


def detections_of(output: object) -> Mapping[str, torch.Tensor]:
    """One image's detections, {"boxes": N x 4, "labels": N, "scores": N}, as torchvision's detectors give them."""
    if not isinstance(output, Mapping) or not all(isinstance(output.get(k), torch.Tensor)
                                                  for k in ("boxes", "labels", "scores")):
        raise TargetError("A box target needs a detector whose output per image holds 'boxes', 'labels' and 'scores' "
                          "(as torchvision's detectors).")
    return output


@dataclass(frozen=True)
class BoxScore:
    """For each chosen box b with label l: IoU(b, d) + score(d) of the detection d that overlaps b
    most, when that IoU exceeds `iou_threshold` and d's label is l; 0 otherwise; summed over the
    chosen boxes. As pytorch-grad-cam's FasterRCNNBoxScoreTarget. Boxes are (x1, y1, x2, y2) in
    the pixels of the image given to the detector."""

    labels: tuple[int, ...]
    boxes: torch.Tensor = field(repr=False)  # N x 4
    iou_threshold: float = 0.5

    def __call__(self, output: object) -> torch.Tensor:
        from torchvision.ops import box_iou

        found = detections_of(output)
        total = found["scores"].new_zeros(())
        if found["boxes"].shape[0] == 0:
            return total
        boxes = self.boxes.reshape(-1, 4).to(found["boxes"].device, found["boxes"].dtype)
        for box, label in zip(boxes, self.labels):
            ious = box_iou(box[None], found["boxes"])[0]
            best = int(ious.argmax())
            if float(ious[best].detach()) > self.iou_threshold and int(found["labels"][best]) == int(label):
                total = total + ious[best] + found["scores"][best]
        return total


def describe_target(objective: Target, class_names: Sequence[str] = ()) -> str:
    """A short name for a target, for titles: the class where it has one."""
    category = getattr(objective, "category", None)
    kinds = {ClassLogit: "logit", ClassProbability: "probability", SegmentationRegion: "region score"}
    if isinstance(category, int) and 0 <= category < len(class_names):
        return f"{class_names[category]} ({kinds.get(type(objective), 'score')})"
    if isinstance(objective, BoxScore):
        return f"{len(objective.labels)} box(es), IoU + score"
    if isinstance(objective, RegressionOutput):
        return f"output {objective.index}"
    if isinstance(objective, CosineSimilarity):
        return "cosine similarity to the reference"
    return getattr(objective, "__name__", type(objective).__name__)


def per_image(output: object, count: int) -> list[object]:
    """The model's batch output split into `count` per-image outputs: a tensor by its first
    index, a mapping of tensors key by key, a list (a detector's) item by item."""
    if isinstance(output, torch.Tensor) and output.dim() >= 1 and output.shape[0] == count:
        return list(output)
    if isinstance(output, Mapping) and all(isinstance(v, torch.Tensor) and v.dim() >= 1 and v.shape[0] == count
                                           for v in output.values()):
        return [{k: v[b] for k, v in output.items()} for b in range(count)]
    if isinstance(output, (list, tuple)) and len(output) == count:
        return list(output)
    raise TargetError(f"The model's output ({type(output).__name__}) cannot be split into {count} images' outputs; "
                      "a target needs a batch tensor, a mapping of batch tensors, or one item per image.")


def target_scores(objectives: Sequence[Target], output: object) -> torch.Tensor:
    """B target values t_b(output_b), each checked to be one real scalar."""
    scores = []
    for objective, single in zip(objectives, per_image(output, len(objectives))):
        try:
            value = objective(single)
        except TargetError:
            raise
        except (IndexError, RuntimeError, TypeError, ValueError, KeyError) as exc:
            raise TargetError(f"The target {objective!r:.80} failed on the model's output "
                              f"({exc.__class__.__name__}: {str(exc)[:160]}).") from exc
        if not isinstance(value, torch.Tensor) or value.numel() != 1 or value.is_complex():
            raise TargetError(f"A target must return one real number as a tensor; {objective!r:.80} returned "
                              f"{type(value).__name__}{tuple(value.shape) if isinstance(value, torch.Tensor) else ''}.")
        scores.append(value.reshape(()).float())
    return torch.stack(scores)


@dataclass(frozen=True)
class TargetList:
    """Per-image targets where at least one is a function: whole numbers became ClassLogit.
    `classes` holds each image's class index, or -1 where its target is not a class logit."""

    objectives: tuple[Target, ...]

    @property
    def classes(self) -> list[int]:
        return [t.category if isinstance(t, ClassLogit) else -1 for t in self.objectives]


def callable_targets(targets: object) -> TargetList | None:
    """A TargetList when `targets` (a sequence, or one callable for a single image) holds a
    callable, else None (whole numbers only, or something the class checks will refuse)."""
    if callable(targets) and not isinstance(targets, torch.Tensor):
        return TargetList((targets,))
    if isinstance(targets, (str, bytes, torch.Tensor, Mapping)) or not isinstance(targets, Sequence):
        return None
    if not any(callable(t) for t in targets):
        return None
    objectives: list[Target] = []
    for item in targets:
        if callable(item):
            objectives.append(item)
            continue
        try:
            objectives.append(ClassLogit(operator.index(item)))
        except TypeError:
            raise TargetError(f"Each target must be a class index or a function of the model's output, not "
                              f"{str(item)[:40]}.") from None
    return TargetList(tuple(objectives))
