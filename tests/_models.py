"""Test-only helpers: a tiny deterministic YOLOv8 checkpoint and its ONNX export in the edgekd contract.

The real export stage lives in pipeline/; this module only exists so deploy/ tests have models.
The checkpoint is a randomly initialised ``yolov8n`` with a rescaled classification head, so
class scores spread over (0, 1) and ranking/NMS decisions are not dominated by ties.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from deploy.metadata import contract_props

NAMES = ("pedestrian", "cyclist", "car")


def make_checkpoint(
    path: Path, nc: int = len(NAMES), cfg: str = "yolov8n.yaml", seed: int = 0, cls_gain: float = 1.0
) -> Path:
    """Write an ultralytics-loadable .pt of a random ``cfg`` model with ``nc`` classes."""
    import torch
    from ultralytics.nn.tasks import DetectionModel

    torch.manual_seed(seed)
    model = DetectionModel(cfg, nc=nc, verbose=False)
    _calibrate_batchnorm(model, seed)
    head = model.model[-1]
    with torch.no_grad():
        for branch in head.cv3:  # spread class logits: random scores over (0, 1), few near-ties
            branch[-1].weight.mul_(cls_gain)
            branch[-1].bias.normal_(-1.0, 1.0)
        bins = torch.arange(head.reg_max, dtype=torch.float32).repeat(4)
        for branch in head.cv2:  # DFL mass on the first bins: boxes a few strides wide, not image-sized
            branch[-1].weight.mul_(0.5)
            branch[-1].bias.copy_(-0.6 * bins)
    model.names = {i: n for i, n in enumerate(NAMES[:nc])} if nc <= len(NAMES) else {i: f"c{i}" for i in range(nc)}
    model.args = {"task": "detect", "imgsz": 64}
    torch.save({"model": model.eval(), "train_args": {"task": "detect"}, "epoch": -1}, path)
    return path


def _calibrate_batchnorm(model, seed: int) -> None:
    """Set BatchNorm statistics from a few frames so activations do not fade to constants through the random net."""
    import torch

    frames = synthetic_frames(4, (96, 160), seed)
    batch = torch.from_numpy(np.stack(frames)[..., ::-1].copy()).permute(0, 3, 1, 2).float() / 255
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None  # cumulative average over the calibration passes
    model.train()
    with torch.no_grad():
        model(batch)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.momentum = 0.03
    model.eval()


class _SplitOutputs:  # built lazily so importing this module does not import torch
    @staticmethod
    def wrap(model):
        import torch

        class SplitOutputs(torch.nn.Module):
            def __init__(self, inner: torch.nn.Module) -> None:
                super().__init__()
                self.inner = inner

            def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
                y = self.inner(x)  # (B, 4 + nc, A) in export mode
                return y[:, :4], y[:, 4:]

        return SplitOutputs(model)


def export_split_onnx(
    weights: Path, out: Path, imgsz: tuple[int, int], dynamic_batch: bool = False, batch: int = 1
) -> Path:
    """Export ``weights`` (.pt) to ONNX with outputs ``boxes`` (B,4,A) + ``scores`` (B,nc,A) and contract metadata."""
    import onnx
    import torch
    from ultralytics import YOLO
    from ultralytics.nn.modules.head import Detect

    model = YOLO(str(weights)).model.float().eval().fuse()
    for m in model.modules():
        if isinstance(m, Detect):
            m.export, m.format, m.dynamic = True, "onnx", False
    wrapper = _SplitOutputs.wrap(model).eval()
    dummy = torch.zeros(batch, 3, *imgsz)
    with torch.no_grad():
        wrapper(dummy)  # build anchors
    axes = {k: {0: "batch"} for k in ("images", "boxes", "scores")} if dynamic_batch else None
    kwargs = {"dynamo": False} if "dynamo" in torch.onnx.export.__code__.co_varnames else {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the legacy exporter is what ultralytics uses too
        torch.onnx.export(
            wrapper, dummy, str(out), opset_version=17, input_names=["images"], output_names=["boxes", "scores"],
            dynamic_axes=axes, do_constant_folding=True, **kwargs,
        )  # fmt: skip
    proto = onnx.load(str(out))
    names = [model.names[i] for i in range(len(model.names))]
    for key, value in contract_props(names, imgsz).items():
        prop = proto.metadata_props.add()
        prop.key, prop.value = key, value
    onnx.save(proto, str(out))
    return out


def synthetic_frames(n: int, shape: tuple[int, int] = (120, 200), seed: int = 0) -> list[np.ndarray]:
    """``n`` BGR uint8 frames with coloured rectangles on noise (stand-ins when BDD100K is absent)."""
    import cv2

    rng = np.random.default_rng(seed)
    frames = []
    for _ in range(n):
        img = rng.integers(0, 255, (*shape, 3), dtype=np.uint8)
        for _ in range(4):
            x, y = int(rng.integers(0, shape[1] - 20)), int(rng.integers(0, shape[0] - 20))
            w, h = int(rng.integers(8, 40)), int(rng.integers(8, 40))
            cv2.rectangle(img, (x, y), (x + w, y + h), tuple(int(c) for c in rng.integers(0, 255, 3)), -1)
        frames.append(img)
    return frames


def bdd_root() -> Path:
    return Path(__file__).resolve().parents[1].parent / "shared/datasets/bdd100k-mini"


def real_or_synthetic_frames(n: int) -> tuple[list[np.ndarray], str]:
    """``n`` BDD100K-mini frames when present (sorted by name), else synthetic ones; and which it used."""
    import cv2

    images = sorted((bdd_root() / "images").glob("*.jpg"))[:n]
    if len(images) == n:
        return [cv2.imread(str(p)) for p in images], "bdd100k-mini"
    return synthetic_frames(n), "synthetic"


IMGSZ = (96, 160)


def tiny_models(root: Path) -> dict[str, Path]:
    """Build (once per ``root``) a checkpoint and its exports at IMGSZ.

    Keys: ``pt``; ``onnx`` (contract, batch 1); ``onnx_dyn`` (dynamic batch); ``onnx_b2`` (fixed batch 2);
    ``onnx_ultralytics`` (ultralytics' own ``output0`` export).
    """
    root.mkdir(parents=True, exist_ok=True)
    paths = {
        "pt": root / "tiny.pt",
        "onnx": root / "tiny.onnx",
        "onnx_dyn": root / "tiny_dyn.onnx",
        "onnx_b2": root / "tiny_b2.onnx",
        "onnx_ultralytics": root / "ultralytics" / "tiny.onnx",
    }
    if all(p.is_file() for p in paths.values()):
        return paths
    import shutil

    from ultralytics import YOLO

    make_checkpoint(paths["pt"])
    export_split_onnx(paths["pt"], paths["onnx"], IMGSZ)
    export_split_onnx(paths["pt"], paths["onnx_dyn"], IMGSZ, dynamic_batch=True)
    export_split_onnx(paths["pt"], paths["onnx_b2"], IMGSZ, batch=2)
    paths["onnx_ultralytics"].parent.mkdir(exist_ok=True)
    shutil.copy(paths["pt"], paths["onnx_ultralytics"].with_suffix(".pt"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        exported = YOLO(str(paths["onnx_ultralytics"].with_suffix(".pt"))).export(
            format="onnx", imgsz=IMGSZ, simplify=False, verbose=False
        )
    assert Path(exported) == paths["onnx_ultralytics"], exported
    return paths


def match_detections(ref, got, iou: float = 0.99, score_tol: float = 1e-3) -> np.ndarray:
    """For each ``ref`` detection, whether ``got`` has one of the same class with IoU > ``iou`` (or corners within
    0.5 px, for boxes clipped to zero area) and |score difference| < ``score_tol``. Returns (len(ref),) bool.
    """
    a, b = ref.xyxy.astype(np.float64), got.xyxy.astype(np.float64)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(-1)
    area_a, area_b = (a[:, 2:] - a[:, :2]).prod(-1), (b[:, 2:] - b[:, :2]).prod(-1)
    union = area_a[:, None] + area_b[None] - inter
    ious = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
    same = (ious > iou) | (np.abs(a[:, None] - b[None]).max(-1) < 0.5)
    same &= ref.class_id[:, None] == got.class_id[None]
    diff = np.abs(ref.confidence[:, None].astype(np.float64) - got.confidence[None])
    return (same & (diff < score_tol)).any(1)


def assert_same_detections(ref, got, iou: float = 0.99, score_tol: float = 1e-3) -> None:
    """Same number of detections and every one matched both ways (see :func:`match_detections`)."""
    assert len(ref) == len(got), f"{len(ref)} vs {len(got)} detections"
    for x, y in ((ref, got), (got, ref)):
        ok = match_detections(x, y, iou, score_tol)
        assert ok.all(), f"{int((~ok).sum())} of {len(x)} unmatched; scores {x.confidence[~ok][:10]}"
