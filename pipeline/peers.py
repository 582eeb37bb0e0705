"""Ultralytics' own exports of the same weights, the peers edgekd is compared with.

``model.export(format="onnx")``, ``export(format="onnx", quantize=8, data=...)`` and
``export(format="openvino", quantize=8, data=...)``, calibrated on the same images as
edgekd's INT8 (the calibration manifest), so accuracy and latency compare like for like.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import yaml

from deploy.errors import StageError

PEER_VARIANTS: tuple[tuple[str, dict], ...] = (
    ("ultralytics_onnx_fp32", {"format": "onnx"}),
    ("ultralytics_onnx_int8", {"format": "onnx", "quantize": 8}),
    ("ultralytics_openvino_int8", {"format": "openvino", "quantize": 8}),
)


@dataclass(frozen=True)
class PeerArtifact:
    model: str
    variant: str
    runtime: str
    precision: str
    path: Path  # relative to the peers stage folder


def write_calibration_yaml(images: list[Path], names: dict[int, str], out_dir: Path) -> Path:
    """A data.yaml whose train and val splits are exactly the calibration images."""
    listing = out_dir / "calibration_images.txt"
    listing.write_text("".join(f"{p.resolve()}\n" for p in images))
    data_yaml = out_dir / "calibration_data.yaml"
    data_yaml.write_text(
        yaml.safe_dump({"train": listing.name, "val": listing.name, "nc": len(names), "names": names}, sort_keys=True)
    )
    return data_yaml


def export_peers(model_name: str, weights: Path, data_yaml: Path, out_dir: Path, *, imgsz: int) -> list[PeerArtifact]:
    """Export ``weights`` with ultralytics' own exporter, once per peer variant, into ``out_dir/<model>/``."""
    from ultralytics import YOLO

    work = out_dir / model_name
    artifacts = []
    for variant, kwargs in PEER_VARIANTS:
        vdir = work / variant
        vdir.mkdir(parents=True, exist_ok=True)
        local = vdir / "weights.pt"
        shutil.copyfile(weights, local)
        extra = {"data": str(data_yaml.resolve()), "fraction": 1.0, "batch": 1} if kwargs.get("quantize") == 8 else {}
        try:
            produced = YOLO(str(local)).export(imgsz=imgsz, simplify=True, dynamic=False, verbose=False, **kwargs, **extra)
        except Exception as exc:  # ultralytics raises bare Exceptions; keep the cause, name the variant
            raise StageError(f"ultralytics export {variant} of {model_name} failed: {exc}") from exc
        local.unlink()
        strip_export_dates(vdir)
        path = Path(produced)
        if path.is_dir():  # OpenVINO: a folder holding <stem>.xml
            xmls = sorted(path.glob("*.xml"))
            if not xmls:
                raise StageError(f"ultralytics export {variant} of {model_name}: no .xml in {path}")
            path = xmls[0]
        runtime = "openvino" if kwargs["format"] == "openvino" else "onnxruntime"
        precision = "int8" if kwargs.get("quantize") == 8 else "fp32"
        artifacts.append(PeerArtifact(model_name, variant, runtime, precision, path.relative_to(out_dir)))
    return artifacts


def strip_export_dates(folder: Path) -> list[Path]:
    """Remove the export time ultralytics writes into its files (``date`` in each ONNX model's metadata_props and in
    OpenVINO's ``metadata.yaml``): artifacts hold no timestamps. Returns the files rewritten."""
    import onnx

    changed = []
    for path in sorted(folder.rglob("*.onnx")):
        model = onnx.load(str(path), load_external_data=False)
        kept = [p for p in model.metadata_props if p.key != "date"]
        if len(kept) != len(model.metadata_props):
            del model.metadata_props[:]
            model.metadata_props.extend(kept)
            onnx.save(model, str(path))
            changed.append(path)
    for path in sorted(folder.rglob("metadata.yaml")):
        data = yaml.safe_load(path.read_text())
        if isinstance(data, dict) and "date" in data:
            del data["date"]
            path.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True))
            changed.append(path)
    return changed
