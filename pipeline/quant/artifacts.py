"""Recording quantized artifacts: per-artifact JSON and the ``quantize.json`` listing (sha256, size, provenance).

Every path is relative to the quantize stage folder (the stage folder is renamed after it completes). A row of
``quantize.json``::

    {"model", "runtime", "precision", "recipe", "method", "path", "sha256", "size",
     "files": [{"path", "sha256", "size"}], "calibration": {"manifest", "sha256", "n"} | null}

``path``/``sha256`` are the model file's (the .xml of an IR); ``size`` counts every file (.xml + .bin).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.quant import QuantResult
from pipeline.runner import sha256_file

SCHEMA = "edgekd.quantize/v1"


@dataclass(frozen=True)
class Provenance:
    """Where an artifact came from: the calibration manifest and the FP32 source, as run-relative paths."""

    calibration_manifest: str
    calibration_sha256: str
    calibration_n: int
    source: str
    source_sha256: str

    def calibration(self) -> dict[str, Any]:
        return {"manifest": self.calibration_manifest, "sha256": self.calibration_sha256, "n": self.calibration_n}


def file_entry(path: Path, root: Path) -> dict[str, Any]:
    return {"path": path.relative_to(root).as_posix(), "sha256": sha256_file(path), "size": path.stat().st_size}


def record(
    root: Path,
    model: str,
    *,
    runtime: str,
    precision: str,
    recipe: str,
    method: str | None,
    files: tuple[Path, ...],
    provenance: Provenance,
    calibrated: bool,
    excluded: tuple[str, ...] = (),
    details: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Write ``<artifact stem>.json`` beside the artifact; return its ``quantize.json`` row."""
    entries = [file_entry(f, root) for f in files]
    primary = entries[0]
    row = {
        "model": model,
        "runtime": runtime,
        "precision": precision,
        "recipe": recipe,
        "method": method,
        "path": primary["path"],
        "sha256": primary["sha256"],
        "size": sum(e["size"] for e in entries),
        "files": entries,
        "calibration": provenance.calibration() if calibrated else None,
    }
    sidecar = {
        **row,
        "source": {"path": provenance.source, "sha256": provenance.source_sha256},
        "excluded_nodes": list(excluded),
        "details": details or {},
    }
    files[0].with_suffix(".json").write_text(json.dumps(sidecar, indent=2, sort_keys=True) + "\n")
    return row


def record_result(root: Path, model: str, result: QuantResult, provenance: Provenance) -> dict[str, Any]:
    """:func:`record` for a :class:`QuantResult` (an INT8 artifact)."""
    return record(
        root,
        model,
        runtime=result.runtime.value,
        precision=result.precision.value,
        recipe=result.recipe.value,
        method=result.method.value if result.method else None,
        files=result.files or (result.path,),
        provenance=provenance,
        calibrated=True,
        excluded=result.excluded,
        details=result.details,
    )


def write_listing(root: Path, rows: list[dict[str, Any]]) -> Path:
    """``quantize.json``: every artifact row, sorted by model, runtime, precision, recipe."""
    rows = sorted(rows, key=lambda r: (r["model"], r["runtime"], r["precision"], r["recipe"]))
    path = root / "quantize.json"
    path.write_text(json.dumps({"schema": SCHEMA, "artifacts": rows}, indent=2, sort_keys=True) + "\n")
    return path
