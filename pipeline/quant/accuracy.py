"""mAP50-95 of a model on a held-out part of the validation split (for the fallback search and NNCF's
accuracy control): ``deploy.detector.Detector`` (or an OpenVINO compiled model) + ``deploy.metrics.coco``.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from deploy.detections import Detections
from deploy.errors import DataError
from deploy.preprocess import decode_jpeg


@dataclass(frozen=True)
class EvalSet:
    """A COCO ground truth restricted to some images, with the dataset folder their ``file_name`` is relative to.

    Attributes:
        gt: COCO dict (images, annotations, categories) holding only the chosen images.
        root: the dataset folder.
    """

    gt: dict[str, Any]
    root: Path

    @property
    def image_ids(self) -> list[int]:
        return [int(im["id"]) for im in self.gt["images"]]

    @property
    def category_ids(self) -> list[int]:
        """COCO category id of each class index (categories sorted by id: index i -> id of the i-th)."""
        return sorted(int(c["id"]) for c in self.gt["categories"])

    def items(self) -> list[tuple[int, Path]]:
        """(image id, image path) of every image, in ground-truth order."""
        return [(int(im["id"]), self.root / im["file_name"]) for im in self.gt["images"]]

    def __len__(self) -> int:
        return len(self.gt["images"])


def holdout(
    data_dir: Path, *, fraction: float, seed: int, max_images: int | None = None, split: str = "val"
) -> EvalSet:
    """A seeded random ``fraction`` of a split's images (at least one), at most ``max_images``.

    Reads ``<data_dir>/annotations/<split>_coco.json`` (the dataset layout of the shared contract).
    """
    path = data_dir / "annotations" / f"{split}_coco.json"
    from deploy.textio import read_json

    gt = read_json(path, "COCO ground truth", "the held-out evaluation needs the dataset's annotations", DataError)
    images = sorted(gt.get("images", []), key=lambda im: int(im["id"]))
    if not images:
        raise DataError(f"{path}: no images in the {split} split")
    n = max(1, round(len(images) * fraction))
    if max_images is not None:
        n = min(n, max_images)
    rng = np.random.default_rng(seed)
    chosen = sorted(rng.permutation(len(images))[:n].tolist())
    return subset(gt, [int(images[i]["id"]) for i in chosen], data_dir)


def subset(gt: dict[str, Any], image_ids: Sequence[int], root: Path) -> EvalSet:
    """The COCO ``gt`` restricted to ``image_ids`` (annotations included; categories kept whole)."""
    keep = set(int(i) for i in image_ids)
    out = {k: copy.deepcopy(v) for k, v in gt.items() if k not in ("images", "annotations")}
    out["images"] = [copy.deepcopy(im) for im in gt["images"] if int(im["id"]) in keep]
    out["annotations"] = [copy.deepcopy(a) for a in gt.get("annotations", []) if int(a["image_id"]) in keep]
    return EvalSet(out, Path(root))


def map50_95(predict: Callable[[np.ndarray], Detections], evalset: EvalSet) -> float:
    """mAP50-95 (a fraction in [0, 1]) of ``predict`` (BGR image -> Detections) on ``evalset``."""
    from deploy.metrics.coco import coco_map

    cats = evalset.category_ids
    results: list[dict[str, Any]] = []
    for image_id, path in evalset.items():
        results.extend(predict(decode_jpeg(path)).to_coco(image_id, cats))
    if not results:
        return 0.0
    value = coco_map(evalset.gt, results)["map50_95"]
    return float(value) if value is not None else 0.0


def detector_map(model_path: Path, evalset: EvalSet, *, conf: float, iou: float, max_det: int, **kwargs: Any) -> float:
    """mAP50-95 of an exported model file through ``deploy.detector.Detector``."""
    from deploy.detector import Detector

    det = Detector(model_path, conf=conf, iou=iou, max_det=max_det, **kwargs)
    return map50_95(det.predict, evalset)


def openvino_validation_fn(
    evalset: EvalSet, *, nc: int, imgsz: tuple[int, int], conf: float, iou: float, max_det: int
) -> Callable[[Any, Any], tuple[float, None]]:
    """NNCF's ``validation_fn(compiled_model, items) -> (mAP50-95, None)`` with edgekd's decode and NMS.

    ``items`` are (image id, path) pairs of ``evalset`` (an ``nncf.Dataset`` over :meth:`EvalSet.items`).
    """
    from deploy.postprocess import NmsParams, postprocess
    from deploy.preprocess import preprocess

    params = NmsParams(conf=conf, iou=iou, max_det=max_det)

    def validate(compiled: Any, items: Any) -> tuple[float, None]:
        names = [o.get_any_name() for o in compiled.outputs]

        def predict(image: np.ndarray) -> Detections:
            tensor, meta = preprocess(image, imgsz)
            raw = compiled(tensor)
            outputs = {name: np.asarray(raw[i]) for i, name in enumerate(names)}
            return postprocess(outputs, [meta], nc, params)[0]

        chosen = subset(evalset.gt, [int(i) for i, _ in items], evalset.root)
        return map50_95(predict, chosen), None

    return validate
