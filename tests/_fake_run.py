"""Test-only: a small finished run folder in the layout of ``runs/<name>/`` for the bundle and device tests.

A random YOLOv8n (3 classes) exported in the ONNX contract at 64x64 (tests/_models.py), its ONNX Runtime INT8 Q/DQ
quantization, a stand-in TensorRT Q/DQ ONNX (the same Q/DQ file: TensorRT itself is not here), synthetic validation
images with COCO ground truth and distractors, a calibration manifest and a run manifest.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
from _models import NAMES, export_split_onnx, make_checkpoint, synthetic_frames

IMGSZ = (64, 64)
CONFIG_DIGEST = "ab" * 32


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _write(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=1, sort_keys=True))


def _dataset(data: Path, n_val: int, seed: int) -> list[Path]:
    import cv2

    rng = np.random.default_rng(seed)
    frames = synthetic_frames(n_val + 4, (96, 160), seed)
    images, annotations, distractors = [], [], []
    paths = []
    for split, start, count in (("train", n_val, 4), ("val", 0, n_val)):
        for k in range(count):
            rel = f"images/{split}/{k:06d}.jpg"
            (data / rel).parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(data / rel), frames[start + k], [cv2.IMWRITE_JPEG_QUALITY, 90])
            paths.append(data / rel)
            if split != "val":
                continue
            image_id = k + 1
            images.append({"id": image_id, "file_name": rel, "width": 160, "height": 96,
                           "attributes": {"timeofday": ["day", "night"][k % 2], "weather": "clear"}})  # fmt: skip
            for _ in range(3):
                x, y = float(rng.uniform(0, 120)), float(rng.uniform(0, 60))
                w, h = float(rng.uniform(10, 40)), float(rng.uniform(10, 36))
                annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": int(rng.integers(1, 4)),
                                    "bbox": [x, y, w, h], "area": w * h, "iscrowd": 0, "ignore": 0})  # fmt: skip
            distractors.append(
                {"id": len(distractors) + 1, "image_id": image_id, "bbox": [5.0, 5.0, 8.0, 30.0], "kind": "pole"}
            )
    cats = [{"id": i + 1, "name": n} for i, n in enumerate(NAMES)]
    _write(data / "annotations/val_coco.json", {"images": images, "annotations": annotations, "categories": cats})
    _write(data / "annotations/val_distractors.json", {"kinds": ["pole"], "distractors": distractors})
    (data / "data.yaml").write_text(
        "train: images/train\nval: images/val\nnc: 3\nnames: {0: pedestrian, 1: cyclist, 2: car}\n"
    )
    return [p for p in paths if "/train/" in p.as_posix()]


def _quantize(fp32: Path, out: Path, calib: list[Path]) -> None:
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    from deploy.preprocess import decode_jpeg, preprocess

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.items = iter([{"images": preprocess(decode_jpeg(p), IMGSZ)[0]} for p in calib])

        def get_next(self):
            return next(self.items, None)

    out.parent.mkdir(parents=True, exist_ok=True)
    quantize_static(str(fp32), str(out), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QInt8, weight_type=QuantType.QInt8)  # fmt: skip


def make_fake_run(root: Path, *, n_val: int = 6, seed: int = 0, quantize: bool = True) -> Path:
    """Write runs/<fake>/{export,quantize,calib,data,manifest.json} under ``root``; returns the run folder."""
    run = root / "fake"
    export = run / "export"
    export.mkdir(parents=True)
    pt = make_checkpoint(root / "distill.pt", seed=seed)
    export_split_onnx(pt, export / "distill.onnx", IMGSZ)
    calib_images = _dataset(run / "data", n_val, seed)
    _write(run / "calib/calibration.json", {
        "schema": "edgekd.calibration/v1", "data": "data.yaml", "n": len(calib_images), "seed": seed, "rule": "all",
        "strata": {}, "root": str(run / "data"),
        "images": [{"path": p.relative_to(run / "data").as_posix(), "sha256": _sha(p)} for p in calib_images],
    })  # fmt: skip
    stages = {"data": {"outputs_digest": "1" * 64}, "export": {"outputs_digest": "2" * 64}}
    if quantize:
        qdir = run / "quantize"
        _quantize(export / "distill.onnx", qdir / "distill/onnxruntime_qdq.onnx", calib_images)
        shutil.copyfile(qdir / "distill/onnxruntime_qdq.onnx", qdir / "distill/tensorrt_qdq.onnx")
        arts = []
        for runtime in ("onnxruntime", "tensorrt"):
            path = qdir / f"distill/{runtime}_qdq.onnx"
            arts.append({"model": "distill", "runtime": runtime, "precision": "int8", "recipe": "qdq",
                         "path": f"distill/{runtime}_qdq.onnx", "sha256": _sha(path), "size": path.stat().st_size})  # fmt: skip
        _write(qdir / "quantize.json", {"artifacts": arts})
        stages["quantize"] = {"outputs_digest": "3" * 64}
    _write(run / "manifest.json", {"config_digest": CONFIG_DIGEST, "stages": stages})
    return run


def cached_fake_run(config, tmp_factory) -> Path:
    """The fake run, built once and kept in pytest's cache (keyed by this module's and tests/_models.py's source)."""
    if getattr(config, "cache", None) is None:  # pytest -p no:cacheprovider
        return make_fake_run(tmp_factory.mktemp("fake-run"))
    key = hashlib.sha256(b"".join(Path(__file__).with_name(n).read_bytes() for n in ("_fake_run.py", "_models.py")))
    cache = Path(config.cache.mkdir(f"edgekd-fake-run-{key.hexdigest()[:12]}"))
    run = cache / "fake"
    if not (run / "manifest.json").is_file():
        build = tmp_factory.mktemp("fake-run-build")
        made = make_fake_run(build)
        partial = cache / "fake.partial"
        for old in (partial, run):
            if old.exists():
                shutil.rmtree(old)
        shutil.copytree(made, partial)
        partial.rename(run)  # complete or absent, never half-copied
    return run
