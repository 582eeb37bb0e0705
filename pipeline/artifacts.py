"""Every model artifact of a run, one uniform list: what the evaluate and bench stages iterate over.

Sources (stage folders of the run): ``export/export.json`` (FP32 ONNX, recipe ``float``),
``quantize/quantize.json`` (OpenVINO FP32/FP16 IR, INT8 recipes ``head_float`` (edgekd), ``naive``,
``fallback``), ``peers/peers.json`` (ultralytics' own exports, recipe ``ultralytics``). A variant id is
``model/runtime/precision/recipe``; files are checked against their recorded sha256 before use.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deploy.errors import IntegrityError, StageError
from pipeline.runner import sha256_file

EDGEKD_INT8 = "head_float"


@dataclass(frozen=True)
class Artifact:
    model: str
    runtime: str  # onnxruntime | openvino | tensorrt
    precision: str  # fp32 | fp16 | int8
    recipe: str  # float | head_float | naive | fallback | ultralytics
    path: Path  # absolute path of the model file (.onnx or .xml)
    float_onnx: Path  # the FP32 ONNX of the same model (MAC counting, parity)
    sha256: str | None = None
    rel: str = ""  # "<stage>/<path inside the stage folder>": how reports and bench.json name the file

    @property
    def id(self) -> str:
        return f"{self.model}/{self.runtime}/{self.precision}/{self.recipe}"

    def row_key(self) -> dict[str, str]:
        return {"model": self.model, "runtime": self.runtime, "precision": self.precision, "recipe": self.recipe}


def _read(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise StageError(f"{path}: unreadable ({exc}); rerun the stage that writes it with --force") from None


def _listing(path: Path, key: str) -> list[dict[str, Any]]:
    """The ``key`` list of records of a stage listing; StageError naming the file when it has another shape."""
    recs = _read(path)
    recs = recs.get(key) if isinstance(recs, dict) else None
    if not isinstance(recs, list) or not all(isinstance(r, dict) for r in recs):
        raise StageError(f"{path}: expected {{{key!r}: [records]}}; rerun the stage that writes it with --force")
    return recs


def _checked(path: Path, sha256: str | None) -> Path:
    if not path.is_file():
        raise IntegrityError(f"{path}: listed artifact is missing; rerun with --force on the stage that made it")
    if sha256 is not None and sha256_file(path) != sha256:
        raise IntegrityError(f"{path}: sha256 differs from the recorded one (altered file); rerun with --force")
    return path


def list_artifacts_in(
    folders: Mapping[str, Path], *, include_tensorrt: bool = False, verify: bool = True
) -> list[Artifact]:
    """All artifacts of a run, FP32 first per model, from the stage folders ``{"export": ..., "quantize": ...,
    "peers": ...}`` (a stage's ``ctx.inputs``: only the enabled upstream stages). TensorRT Q/DQ ONNX only with
    ``include_tensorrt``.

    ``export`` is required; ``quantize`` and ``peers`` count when given and their folder holds its listing.
    """
    export_dir = folders["export"]
    exported = _listing(export_dir / "export.json", "models")
    floats: dict[str, Path] = {}
    out: list[Artifact] = []
    for rec in exported:
        path = export_dir / rec["onnx"]["path"]
        sha = rec["onnx"].get("sha256")
        floats[rec["model"]] = _checked(path, sha if verify else None)
        out.append(Artifact(rec["model"], "onnxruntime", "fp32", "float", path, path, sha, f"export/{rec['onnx']['path']}"))
    quant_listing = folders["quantize"] / "quantize.json" if "quantize" in folders else None
    if quant_listing is not None and quant_listing.is_file():
        for rec in _listing(quant_listing, "artifacts"):
            if rec["runtime"] == "tensorrt" and not include_tensorrt:
                continue
            path = quant_listing.parent / rec["path"]
            _checked(path, rec.get("sha256") if verify else None)
            out.append(Artifact(rec["model"], rec["runtime"], rec["precision"], rec["recipe"], path,
                                floats[rec["model"]], rec.get("sha256"), f"quantize/{rec['path']}"))  # fmt: skip
    peers_listing = folders["peers"] / "peers.json" if "peers" in folders else None
    if peers_listing is not None and peers_listing.is_file():
        for rec in _listing(peers_listing, "artifacts"):
            path = _checked(peers_listing.parent / rec["path"], None)
            out.append(Artifact(rec["model"], rec["runtime"], rec["precision"], "ultralytics", path,
                                floats[rec["model"]], None, f"peers/{rec['path']}"))  # fmt: skip
    return out
