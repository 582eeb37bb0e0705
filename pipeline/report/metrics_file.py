"""Assemble, validate, read and write ``metrics.json`` (schema: ``pipeline/schemas/metrics.schema.json``).

A metrics file holds one flat row per model x runtime x precision (x quantization recipe), the tables
beside the rows (per class, per image condition, robustness, distractors, quantization sensitivity),
curves and latency distributions keyed by variant id, and provenance with NO timestamps (the wall time
goes into the sidecar ``provenance.json``). Accuracy values are fractions in [0, 1]; deltas too.

A variant id is ``model/runtime/precision``, plus ``/recipe`` when the row names a quantization recipe,
e.g. ``student/onnxruntime/fp32`` or ``distill/openvino/int8/ptq``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

from deploy.errors import InputError
from deploy.provenance import machine_info
from pipeline.train import ARMS

SCHEMA_VERSION = "1.0"
ACCURACY_KEYS = (
    "map50",
    "map50_95",
    "precision_at_op",
    "recall_at_op",
    "fppi_at_op",
    "lamr",
    "fa_per_hour",
    "dece",
)
LATENCY_KEYS = ("latency_p50_ms", "latency_p90_ms", "latency_p99_ms")
ROW_KEYS = ("model", "runtime", "precision", "params", "gflops", "size_mb", *ACCURACY_KEYS, *LATENCY_KEYS)
OPTIONAL_ROW_KEYS = ("recipe", "executed_precision", "device", "delta_map50_95_vs_fp32", "delta_map50_95_vs_teacher")
TABLE_KEYS = (
    "per_class",
    "per_condition",
    "robustness",
    "distractors",
    "paired",
    "sensitivity",
    "curves",
    "latency",
    "training",
    "extra",
)
TEACHER = "teacher"
FLOAT_RECIPES = (None, "", "float", "edgekd")  # recipes naming the float export itself
MAX_CURVE_POINTS = 1000
PACKAGES = (
    "edgekd",
    "numpy",
    "opencv-python-headless",
    "onnx",
    "onnxruntime",
    "openvino",
    "nncf",
    "tensorrt",
    "torch",
    "ultralytics",
    "faster-coco-eval",
    "matplotlib",
)
# Display / sort order of the usual names; others follow alphabetically.
_RUNTIME_ORDER = ("pytorch", "onnxruntime", "openvino", "tensorrt")
_PRECISION_ORDER = ("fp32", "fp16", "bf16", "mixed", "int8")


# ---------------------------------------------------------------- ids and order
def variant_id(row: Mapping[str, Any]) -> str:
    """``model/runtime/precision[/recipe]`` of a row."""
    parts = [str(row["model"]), str(row["runtime"]), str(row["precision"])]
    if row.get("recipe"):
        parts.append(str(row["recipe"]))
    return "/".join(parts)


def _rank(value: Any, order: Sequence[str]) -> tuple[int, str]:
    text = "" if value is None else str(value)
    return (order.index(text) if text in order else len(order), text)


def row_sort_key(row: Mapping[str, Any]) -> tuple:
    """Teacher first, then student, distill...; runtimes and precisions in a fixed order."""
    return (
        _rank(row.get("model"), ARMS),
        _rank(row.get("runtime"), _RUNTIME_ORDER),
        _rank(row.get("precision"), _PRECISION_ORDER),
        str(row.get("recipe") or ""),
    )


# ---------------------------------------------------------------- building
def build_metrics(
    rows: Iterable[Mapping[str, Any]],
    tables: Mapping[str, Any] | None,
    provenance: Mapping[str, Any],
    *,
    reference: str | None = None,
    notes: Sequence[str] = (),
    source: str = "metrics (built)",
) -> dict[str, Any]:
    """Assemble a valid metrics.json object.

    ``rows``: dicts with at least ``model``, ``runtime``, ``precision``; missing metric keys become null,
    non-finite numbers (NaN, inf) become null. Deltas vs FP32 and vs the teacher are filled where null.
    ``tables``: optional keys of :data:`TABLE_KEYS`. ``reference``: latency reference variant id
    (default: :func:`choose_reference`). Raises :class:`InputError` (naming ``source``) when the result does not validate.
    """
    tables = dict(tables or {})
    unknown = sorted(set(tables) - set(TABLE_KEYS))
    if unknown:
        raise InputError(f"{source}: unknown table key(s) {unknown}; expected some of {list(TABLE_KEYS)}")
    latency = {k: _clean(v) for k, v in (tables.get("latency") or {}).items()}
    filled = [_fill_row(_clean(dict(r)), latency) for r in rows]
    filled.sort(key=row_sort_key)
    add_deltas(filled)
    obj: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "provenance": _clean(dict(provenance)),
        "reference": reference if reference is not None else choose_reference(filled),
        "rows": filled,
        "per_class": _clean(list(tables.get("per_class") or [])),
        "per_condition": _clean(list(tables.get("per_condition") or [])),
    }
    for key in ("robustness", "distractors", "paired", "sensitivity", "training"):
        if tables.get(key):
            obj[key] = _clean(list(tables[key]))
    if tables.get("curves"):
        obj["curves"] = {k: thin_curves(_clean(v)) for k, v in sorted(tables["curves"].items())}
    if latency:
        obj["latency"] = dict(sorted(latency.items()))
    if tables.get("extra"):
        obj["extra"] = _clean(dict(tables["extra"]))
    if notes:
        obj["notes"] = [str(n) for n in notes]
    validate_metrics(obj, source)
    return obj


def _fill_row(row: dict[str, Any], latency: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    for key in ROW_KEYS:
        row.setdefault(key, None)
    for key in OPTIONAL_ROW_KEYS:
        row.setdefault(key, None)
    if row["model"] is not None and row["runtime"] is not None and row["precision"] is not None:
        lat = latency.get(variant_id(row))
        if lat:
            for pct in ("p50", "p90", "p99"):
                if row[f"latency_{pct}_ms"] is None:
                    row[f"latency_{pct}_ms"] = lat.get(f"{pct}_ms")
    return row


def _fp32_row(rows: Sequence[Mapping[str, Any]], model: str) -> Mapping[str, Any] | None:
    """The model's FP32 row: ONNX Runtime with edgekd's own export first, then any FP32 row with an mAP."""
    fp32 = [r for r in rows if r["model"] == model and r["precision"] == "fp32" and r.get("map50_95") is not None]
    fp32.sort(key=lambda r: (r["runtime"] != "onnxruntime", r.get("recipe") not in FLOAT_RECIPES))
    return fp32[0] if fp32 else None


def add_deltas(rows: list[dict[str, Any]], teacher: str = TEACHER) -> None:
    """Fill null ``delta_map50_95_vs_fp32`` / ``_vs_teacher`` in place (fractions; negative = worse).

    vs FP32: against the same model's FP32 row (ONNX Runtime, edgekd's export, when present).
    vs teacher: against the teacher's row of the same runtime, precision and recipe (null when there is
    none), i.e. what distillation costs in the very same deployment. Both keys are set on every row (null
    when there is no reference). The evaluate stage fills its rows with this function too.
    """
    by_id = {variant_id(r): r for r in rows}
    for row in rows:
        row.setdefault("delta_map50_95_vs_fp32", None)
        row.setdefault("delta_map50_95_vs_teacher", None)
        value = row.get("map50_95")
        if value is None:
            continue
        refs = {
            "delta_map50_95_vs_fp32": _fp32_row(rows, row["model"]),
            "delta_map50_95_vs_teacher": by_id.get(variant_id({**row, "model": teacher})),
        }
        for key, ref in refs.items():
            if row.get(key) is None and ref is not None and ref.get("map50_95") is not None:
                row[key] = round(value - ref["map50_95"], 6)


def choose_reference(rows: Sequence[Mapping[str, Any]]) -> str | None:
    """The latency reference among the timed rows: the student's float ONNX Runtime export when timed,
    else the first timed row in that order of preference (student, ONNX Runtime, FP32, float recipe)."""
    timed = [r for r in rows if r.get("latency_p50_ms") is not None]
    if not timed:
        return None
    best = min(
        timed,
        key=lambda r: (
            r["model"] != "student",
            r["runtime"] != "onnxruntime",
            r["precision"] != "fp32",
            r.get("recipe") not in FLOAT_RECIPES,
        ),
    )
    return variant_id(best)


def thin_curves(curves: Mapping[str, Any], limit: int = MAX_CURVE_POINTS) -> dict[str, Any]:
    """Keep at most ``limit`` points per curve (evenly spaced indices, both ends kept)."""
    out: dict[str, Any] = {}
    for name, curve in sorted(curves.items()):
        arrays = {k: list(v) for k, v in curve.items()}
        n = min((len(v) for v in arrays.values()), default=0)
        if n > limit and name != "reliability":
            keep = sorted({round(i * (n - 1) / (limit - 1)) for i in range(limit)})
            arrays = {k: [v[i] for i in keep] for k, v in arrays.items()}
        out[name] = arrays
    return out


def _clean(value: Any) -> Any:
    """JSON-able copy: non-finite floats -> None, tuples -> lists, numpy scalars -> Python numbers."""
    if isinstance(value, Mapping):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float) or hasattr(value, "item"):
        number = value.item() if hasattr(value, "item") else value
        if isinstance(number, float) and not math.isfinite(number):
            return None
        return number
    return value


# ---------------------------------------------------------------- provenance
def package_versions(names: Sequence[str] = PACKAGES) -> dict[str, str]:
    from deploy.provenance import package_versions as versions

    return versions(names)


def make_provenance(cfg: Any) -> dict[str, Any]:
    """Provenance of a :class:`pipeline.config.Config` run: config hash + config, packages, machine."""
    versions = package_versions()
    return {
        "config_hash": cfg.digest(),
        "run": cfg.run.name,
        "profile": cfg.profile,
        "seed": cfg.run.seed,
        "edgekd_version": versions.get("edgekd", "unknown"),
        "config": cfg.as_dict(),
        "packages": versions,
        "machine": machine_info(),
    }


# ---------------------------------------------------------------- validation
@lru_cache(maxsize=1)
def load_schema() -> dict[str, Any]:
    text = (resources.files("pipeline") / "schemas" / "metrics.schema.json").read_text()
    return json.loads(text)


def _path(parts: Iterable[Any]) -> str:
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out or "<root>"


def schema_problems(obj: Any) -> list[str]:
    """Every JSON-Schema violation plus the checks a schema cannot express; [] when valid."""
    from jsonschema import Draft202012Validator

    validator = Draft202012Validator(load_schema())
    errors = sorted(validator.iter_errors(obj), key=lambda e: (list(map(str, e.absolute_path)), e.message))
    problems = [f"{_path(e.absolute_path)}: {_short(e.message)}" for e in errors]
    if not problems and isinstance(obj, dict):
        problems = _semantic_problems(obj)
    return problems


def _short(message: str) -> str:
    return message if len(message) <= 200 else message[:197] + "..."


def _nonfinite(value: Any, where: str) -> list[str]:
    if isinstance(value, float) and not math.isfinite(value):
        return [f"{where}: got {value}, expected a finite number or null (null = not measured)"]
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in _nonfinite(v, f"{where}.{k}")]
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in _nonfinite(v, f"{where}[{i}]")]
    return []


def _semantic_problems(obj: dict[str, Any]) -> list[str]:
    problems = _nonfinite(obj, "<root>")
    ids: list[str] = [variant_id(r) for r in obj["rows"]]
    seen: set[str] = set()
    for i, vid in enumerate(ids):
        if vid in seen:
            problems.append(f"rows[{i}]: duplicate variant {vid!r}; each model/runtime/precision/recipe appears once")
        seen.add(vid)
    ref = obj.get("reference")
    if ref is not None and ref not in seen:
        problems.append(f"reference: got {ref!r}, expected the id of one of the rows ({', '.join(ids) or 'none'})")
    for table in ("per_class", "per_condition", "robustness", "distractors"):
        for i, entry in enumerate(obj.get(table, [])):
            if entry["variant"] not in seen:
                problems.append(f"{table}[{i}].variant: got {entry['variant']!r}, which is not the id of any row")
    for i, entry in enumerate(obj.get("paired", [])):
        for side in ("a", "b"):
            if entry[side] not in seen:
                problems.append(f"paired[{i}].{side}: got {entry[side]!r}, which is not the id of any row")
    for table in ("curves", "latency"):
        for key in obj.get(table, {}):
            if key not in seen:
                problems.append(f"{table}.{key}: not the id of any row")
    return problems


def validate_metrics(obj: Any, source: str) -> None:
    """Raise :class:`InputError` naming ``source`` unless ``obj`` is a valid metrics.json (version 1.0)."""
    if not isinstance(obj, dict):
        raise InputError(f"{source}: got a JSON {type(obj).__name__}, expected an edgekd metrics.json object")
    version = obj.get("schema_version")
    if version != SCHEMA_VERSION:
        seen = "no schema_version" if version is None else f"schema_version {version!r}"
        raise InputError(
            f"{source}: {seen}, expected {SCHEMA_VERSION!r} (this edgekd reads metrics.json {SCHEMA_VERSION}); "
            "regenerate it with this edgekd (`edgekd report --run RUN_DIR` or `edgekd run`)"
        )
    problems = schema_problems(obj)
    if problems:
        shown = problems[:20]
        more = f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else ""
        lines = "\n".join(f"  - {p}" for p in shown)
        raise InputError(
            f"{source}: not a valid edgekd metrics.json {SCHEMA_VERSION} ({len(problems)} problem(s)):\n{lines}{more}\n"
            "  (schema: pipeline/schemas/metrics.schema.json)"
        )


def load_metrics(path: Path | str, what: str = "metrics file") -> dict[str, Any]:
    """Read and validate a metrics.json; every failure is an :class:`InputError` naming the file."""
    from deploy.textio import read_json

    path = Path(path)
    obj = read_json(path, what)
    validate_metrics(obj, f"{what} {str(path)!r}")
    return obj


def dumps_metrics(obj: Mapping[str, Any]) -> str:
    """Deterministic text of a metrics object (sorted keys, no NaN)."""
    return json.dumps(obj, indent=1, sort_keys=True, allow_nan=False) + "\n"


def write_metrics(obj: Mapping[str, Any], path: Path) -> Path:
    validate_metrics(obj, str(path))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(dumps_metrics(obj))
    return path
