"""Test-only helpers for the export/quantize tests: a tiny dataset, calibration manifest, model and run folder.

Everything is small (64 px inputs, a handful of frames) so the tests stay fast on two shared cores. The model is
``tests/_models.make_checkpoint``'s random ``yolov8n`` (3 classes, spread class logits).
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import Any

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _models import NAMES, make_checkpoint, synthetic_frames  # noqa: E402

IMGSZ = 64


def make_dataset(root: Path, n_train: int = 6, n_val: int = 6, shape: tuple[int, int] = (96, 160)) -> Path:
    """A dataset in the shared layout: data.yaml, images/{train,val}, labels, annotations/{split}_coco.json."""
    rng = np.random.default_rng(0)
    for split, n, seed in (("train", n_train, 1), ("val", n_val, 2)):
        (root / "images" / split).mkdir(parents=True, exist_ok=True)
        (root / "labels" / split).mkdir(parents=True, exist_ok=True)
        images, annotations = [], []
        for i, frame in enumerate(synthetic_frames(n, shape, seed=seed), start=1):
            name = f"{i:06d}.jpg"
            cv2.imwrite(str(root / "images" / split / name), frame)
            h, w = frame.shape[:2]
            images.append({"id": i, "file_name": f"images/{split}/{name}", "width": w, "height": h, "attributes": {}})
            lines = []
            for _ in range(2):
                bw, bh = float(rng.uniform(10, 40)), float(rng.uniform(10, 40))
                x, y = float(rng.uniform(0, w - bw)), float(rng.uniform(0, h - bh))
                cls = int(rng.integers(0, len(NAMES)))
                annotations.append(
                    {
                        "id": len(annotations) + 1,
                        "image_id": i,
                        "category_id": cls + 1,
                        "bbox": [x, y, bw, bh],
                        "area": bw * bh,
                        "iscrowd": 0,
                        "ignore": 0,
                        "attributes": {},
                    }
                )
                lines.append(f"{cls} {(x + bw / 2) / w:.6f} {(y + bh / 2) / h:.6f} {bw / w:.6f} {bh / h:.6f}")
            (root / "labels" / split / f"{i:06d}.txt").write_text("\n".join(lines) + "\n")
        coco = {
            "images": images,
            "annotations": annotations,
            "categories": [{"id": k + 1, "name": n} for k, n in enumerate(NAMES)],
        }
        (root / "annotations").mkdir(exist_ok=True)
        (root / "annotations" / f"{split}_coco.json").write_text(json.dumps(coco))
    names = "\n".join(f"  {k}: {n}" for k, n in enumerate(NAMES))
    (root / "data.yaml").write_text(f"train: images/train\nval: images/val\nnc: {len(NAMES)}\nnames:\n{names}\n")
    return root


def write_manifest(data_root: Path, out: Path, n: int = 4, split: str = "train") -> Path:
    """A calibration manifest (shared contract) over the first ``n`` images of ``split``."""
    images = sorted((data_root / "images" / split).glob("*.jpg"))[:n]
    manifest = {
        "schema": "edgekd.calibration/v1",
        "data": str(data_root / "data.yaml"),
        "n": len(images),
        "seed": 0,
        "rule": "first n training images (test fixture)",
        "strata": {},
        "images": [
            {"path": p.relative_to(data_root).as_posix(), "sha256": hashlib.sha256(p.read_bytes()).hexdigest()}
            for p in images
        ],
        "root": str(data_root.resolve()),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(manifest, indent=2))
    return out


def tiny_checkpoint(path: Path) -> Path:
    return make_checkpoint(path, cfg="yolov8n.yaml")


def tiny_onnx(folder: Path, **spec: Any) -> Path:
    """The tiny checkpoint exported by edgekd's exporter at 64 px (``folder/model.onnx``)."""
    from pipeline.export import ExportSpec, export_onnx, load_detection_model

    folder.mkdir(parents=True, exist_ok=True)
    model = load_detection_model(tiny_checkpoint(folder / "model.pt"))
    return export_onnx(model, folder / "model.onnx", ExportSpec(imgsz=(IMGSZ, IMGSZ), **spec))


# ---------------------------------------------------------------- a fake run: data, calib, student stages
def fake_upstream_stages() -> list[Any]:
    """Stages ``data``, ``calib`` and ``student`` standing in for the real ones (same output layout)."""
    from pipeline.runner import Stage

    def data(ctx: Any) -> None:
        make_dataset(ctx.out)

    def calib(ctx: Any) -> None:
        write_manifest(ctx.inputs["data"], ctx.out / "calibration.json", n=ctx.cfg.data.calib.n)

    def student(ctx: Any) -> None:
        (ctx.out / "weights").mkdir()
        tiny_checkpoint(ctx.out / "weights" / "best.pt")

    return [
        Stage("data", data),
        Stage("calib", calib, params=("data.calib.n",), upstream=("data",)),
        Stage("student", student, upstream=("data",)),
    ]


def run_config(runs_dir: Path, **sections: dict[str, Any]) -> Any:
    """A validated Config for a tiny run under ``runs_dir``."""
    from pipeline.config import build_config

    raw: dict[str, Any] = {
        "run": {"name": "t", "runs_dir": str(runs_dir)},
        "train": {"imgsz": IMGSZ},
        "data": {"calib": {"n": 4}},
        "export": {"parity_images": 2},
        "benchmark": {"threads": 1},
        "quantization": {"advanced": {"sensitivity_frames": 2, "latency_runs": 2, "holdout_max_images": 3}},
    }
    for key, value in sections.items():
        raw[key] = {**raw.get(key, {}), **value}
    return build_config(raw)
