"""Gather a run's stage outputs into metrics rows and tables (read by the ``report`` stage).

Expected inputs (each optional; a missing file only leaves its columns null and adds a note):

``evaluate/metrics_rows.json``
    A list of row dicts (or ``{"rows": [...]}``), one per evaluated model x runtime x precision (x recipe):
    ``{"model", "runtime", "precision", "recipe"?, "executed_precision"?, "device"?, "map50", "map50_95",
    "precision_at_op", "recall_at_op", "fppi_at_op", "lamr", "fa_per_hour", "dece", "op_threshold"?,
    "op_reached"?, "params"?, "gflops"?, "size_mb"?}``; accuracy as fractions in [0, 1].
``evaluate/tables.json``
    ``{"per_class": [...], "per_condition": [...], "robustness": [...], "distractors": [...],
    "curves": {variant id: {"mr_fppi": {"fppi", "miss_rate"}, "pr": {"recall", "precision"},
    "reliability": {"confidence", "precision", "count"}}}}``; entries exactly as in metrics.schema.json
    (each names its ``variant`` id ``model/runtime/precision[/recipe]``).
``bench/bench.json``
    ``{"reference"?: variant id, "variants": [result, ...] | {key: result}}`` (or the list / mapping alone),
    a result as written by :func:`deploy.benchmark.benchmark_variants` plus its variant's meta:
    ``{"id"?, "model", "runtime" | "backend", "precision", "recipe"?, "executed_precision"?, "size_mb"?,
    "end_to_end": {"p50_ms", "p90_ms", "p99_ms", "mean_ms", "std_ms", "n"}, "samples_ms"?: [..] |
    {"end_to_end": [..]}}``. Latency in the rows is the end-to-end step (JPEG bytes to boxes).
``quantize/sensitivity.json`` (and ``quantize/<model>/sensitivity.json``)
    ``{"models": {model: {"runtime", "recipe", "tensors": [{"tensor", "kind", "sqnr_db", "xmodel_sqnr_db",
    "nodes"}], "fallback": {"chosen": {"k", "layers", "map50_95", "drop_points"}, "trials": [...],
    "budget_points", "fp32_map50_95", "within_budget", "latency_ms"} | null}}}`` as written by the quantize
    stage; also a plain list of entries, ``{"layers" | "entries" | "tensors": [...]}`` or ``{model: [...]}``
    (``model`` defaults to the sub-folder name, ``runtime`` to ``onnxruntime``). The :data:`MAX_TENSORS`
    lowest-SQNR tensors per model are kept; a tensor is ``kept_float`` when the fallback chose it.
``<train stage>/summary.json`` (teacher, student, distill, ...)
    ``{"params", "gflops" | "gflops_imgsz" | "gflops_640", "epochs"?, "train_seconds"?, "map50"?,
    "map50_95"?}`` (also looked up under ``"final"`` / ``"metrics"``); fills params / GFLOPs of rows.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deploy.errors import StageError
from pipeline.report.metrics_file import variant_id
from pipeline.train import ARMS

_TABLES = ("per_class", "per_condition", "robustness", "distractors", "curves", "paired")


@dataclass
class Collected:
    rows: list[dict[str, Any]] = field(default_factory=list)
    tables: dict[str, Any] = field(default_factory=dict)
    reference: str | None = None
    notes: list[str] = field(default_factory=list)


def read_json(path: Path) -> Any:
    try:
        return json.loads(Path(path).read_text())
    except json.JSONDecodeError as exc:
        raise StageError(f"{path}: not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})") from None


def _list(obj: Any, keys: tuple[str, ...], path: Path, expected: str) -> list[Any]:
    if isinstance(obj, list):
        return obj
    if isinstance(obj, Mapping):
        for key in keys:
            if isinstance(obj.get(key), list):
                return obj[key]
    raise StageError(
        f"{path}: got a {type(obj).__name__} with keys {list(obj)[:8] if isinstance(obj, Mapping) else ''}, expected {expected}"
    )


# ---------------------------------------------------------------- evaluate
def read_evaluate(folder: Path, out: Collected) -> None:
    rows_path, tables_path = folder / "metrics_rows.json", folder / "tables.json"
    if rows_path.is_file():
        rows = _list(read_json(rows_path), ("rows",), rows_path, "a list of row dicts (or {'rows': [...]})")
        for i, row in enumerate(rows):
            if not isinstance(row, Mapping) or not all(row.get(k) for k in ("model", "runtime", "precision")):
                raise StageError(
                    f"{rows_path}: row {i} needs non-empty 'model', 'runtime' and 'precision'; got {row!r:.200}"
                )
            out.rows.append(dict(row))
    else:
        out.notes.append("evaluate/metrics_rows.json absent: accuracy columns are empty")
    if tables_path.is_file():
        tables = read_json(tables_path)
        if not isinstance(tables, Mapping):
            raise StageError(f"{tables_path}: expected an object with some of {list(_TABLES)}")
        for key in _TABLES:
            if tables.get(key):
                out.tables[key] = tables[key]


# ---------------------------------------------------------------- bench
def bench_results(obj: Any, path: Path) -> list[dict[str, Any]]:
    """The per-variant results of a bench.json in any of the accepted shapes."""
    variants = obj.get("variants", obj.get("results", obj)) if isinstance(obj, Mapping) else obj
    if isinstance(variants, Mapping):
        variants = [{"id": k, **v} for k, v in variants.items() if isinstance(v, Mapping) and "end_to_end" in v]
    if not isinstance(variants, list):
        raise StageError(f"{path}: expected {{'variants': [...]}} or a list of benchmark results")
    return [dict(v) for v in variants if isinstance(v, Mapping)]


def bench_variant_id(result: Mapping[str, Any]) -> str | None:
    runtime = result.get("runtime") or result.get("backend")
    if result.get("model") and runtime and result.get("precision"):
        return variant_id({**result, "runtime": runtime})
    vid = result.get("id")
    return vid if isinstance(vid, str) and vid.count("/") >= 2 else None


def latency_entry(result: Mapping[str, Any]) -> dict[str, Any] | None:
    step = result.get("end_to_end")
    if not isinstance(step, Mapping) or step.get("p50_ms") is None:
        return None
    entry = {"step": "end_to_end", **{k: step.get(k) for k in ("p50_ms", "p90_ms", "p99_ms", "mean_ms", "std_ms", "n")}}
    samples = result.get("samples_ms")
    if isinstance(samples, Mapping):
        samples = samples.get("end_to_end")
    if isinstance(samples, list) and samples:
        entry["samples_ms"] = [float(s) for s in samples]
    return {k: v for k, v in entry.items() if v is not None}


# Recipe names that mean the same artifact in different stages' outputs (bench says ``edgekd`` for
# what export/quantize call ``float`` / ``head_float``); rows and bench results are joined through them.
RECIPE_ALIASES = {"float": "edgekd", "head_float": "edgekd"}


def canonical(vid: str) -> str:
    parts = vid.split("/")
    if len(parts) == 4:
        parts[3] = RECIPE_ALIASES.get(parts[3], parts[3])
    return "/".join(parts)


def read_bench(folder: Path, out: Collected) -> None:
    path = folder / "bench.json"
    if not path.is_file():
        out.notes.append("bench/bench.json absent: latency columns are empty")
        return
    obj = read_json(path)
    by_id = {canonical(variant_id(r)): r for r in out.rows}
    latency: dict[str, Any] = {}
    for result in bench_results(obj, path):
        vid = bench_variant_id(result)
        if vid is None:
            out.notes.append(f"bench result {result.get('id', '?')!r} names no model/runtime/precision; left out")
            continue
        row = by_id.get(canonical(vid))
        if row is None:
            model, runtime, precision, *recipe = vid.split("/")
            row = {"model": model, "runtime": runtime, "precision": precision, "recipe": recipe[0] if recipe else None}
            out.rows.append(row)
            by_id[canonical(vid)] = row
        vid = variant_id(row)
        entry = latency_entry(result)
        if entry:
            latency[vid] = entry
            for pct in ("p50", "p90", "p99"):
                row[f"latency_{pct}_ms"] = entry.get(f"{pct}_ms")
        for key in ("size_mb", "executed_precision", "device"):
            if row.get(key) is None and result.get(key) is not None:
                row[key] = result[key]
    if latency:
        out.tables["latency"] = latency
    ref = obj.get("reference") if isinstance(obj, Mapping) else None
    if isinstance(ref, str):
        row = by_id.get(canonical(ref))
        out.reference = variant_id(row) if row is not None else ref


# ---------------------------------------------------------------- quantize / train
def read_sensitivity(folder: Path, out: Collected) -> None:
    entries: list[dict[str, Any]] = []
    fallback: dict[str, Any] = {}
    for path in sorted(folder.glob("sensitivity.json")) + sorted(folder.glob("*/sensitivity.json")):
        default_model = path.parent.name if path.parent != folder else None
        for model, group in _sensitivity_groups(read_json(path), default_model):
            items = _list(
                group, _ITEM_KEYS, path, "per-tensor entries ({'models': {model: {'tensors': [...]}}} or a list)"
            )
            meta = group if isinstance(group, Mapping) else {}
            fb = meta.get("fallback") if isinstance(meta.get("fallback"), Mapping) else None
            kept = set((fb or {}).get("chosen", {}).get("layers", [])) if fb else None
            got = []
            for x in items:
                entry = _sensitivity_entry(x, model, meta, kept)
                if entry is None:
                    raise StageError(f"{path}: entry {x!r:.160} needs 'model' and 'layer' (or 'tensor'/'name')")
                got.append(entry)
            got.sort(key=lambda e: (e.get("sqnr_db") is None, e.get("sqnr_db") or 0.0, e["layer"]))
            for rank, entry in enumerate(got[:MAX_TENSORS], 1):
                entry.setdefault("rank", rank)
                entries.append(entry)
            if fb and model:
                fallback[model] = _fallback_summary(fb)
    if entries:
        out.tables["sensitivity"] = entries
    if fallback:
        out.tables.setdefault("extra", {})["fallback"] = fallback


_ITEM_KEYS = ("tensors", "layers", "entries", "worst")
MAX_TENSORS = 50  # most sensitive tensors kept per model in metrics.json


def _sensitivity_groups(obj: Any, default_model: str | None) -> list[tuple[str | None, Any]]:
    """(model, group) pairs from ``{"models": {m: group}}``, ``{m: group}``, a group or a list."""
    if isinstance(obj, Mapping) and isinstance(obj.get("models"), Mapping):
        return list(obj["models"].items())
    if isinstance(obj, Mapping) and not any(isinstance(obj.get(k), list) for k in _ITEM_KEYS):
        return [(k, v) for k, v in obj.items() if isinstance(v, (list, Mapping))]
    return [(default_model, obj)]


def _sensitivity_entry(
    x: Any, model: str | None, meta: Mapping[str, Any], kept: set[str] | None
) -> dict[str, Any] | None:
    if not isinstance(x, Mapping):
        return None
    layer = x.get("layer") or x.get("tensor") or x.get("name")
    model = x.get("model") or model
    if not layer or not model:
        return None
    entry = {
        "model": model,
        "runtime": x.get("runtime") or meta.get("runtime") or "onnxruntime",
        "recipe": x.get("recipe") or meta.get("recipe"),
        "layer": str(layer),
    }
    for key in ("op_type", "kind", "sqnr_db", "xmodel_sqnr_db", "cosine", "rank", "kept_float"):
        if x.get(key) is not None:
            entry[key] = x[key]
    if isinstance(x.get("nodes"), list) and x["nodes"]:
        entry["nodes"] = ", ".join(map(str, x["nodes"][:3])) + (" ..." if len(x["nodes"]) > 3 else "")
    if kept is not None:
        entry["kept_float"] = str(layer) in kept
    return entry


def _fallback_summary(fb: Mapping[str, Any]) -> dict[str, Any]:
    """The fallback search of one model: budget, FP32 mAP, each trial (k layers in float -> mAP, drop)."""
    trial_keys = ("k", "map50_95", "drop_points")
    return {
        "budget_points": fb.get("budget_points"),
        "fp32_map50_95": fb.get("fp32_map50_95"),
        "within_budget": fb.get("within_budget"),
        "chosen": {k: (fb.get("chosen") or {}).get(k) for k in (*trial_keys, "layers")},
        "trials": [{k: t.get(k) for k in trial_keys} for t in fb.get("trials") or [] if isinstance(t, Mapping)],
        "latency_ms": dict(fb.get("latency_ms") or {}),
        "note": fb.get("note"),
    }


def _first(d: Mapping[str, Any], keys: tuple[str, ...]) -> Any:
    for scope in (d, d.get("final") or {}, d.get("metrics") or {}):
        if isinstance(scope, Mapping):
            for k in keys:
                if scope.get(k) is not None:
                    return scope[k]
    return None


def read_training(inputs: Mapping[str, Path], out: Collected) -> None:
    training = []
    for name in ARMS:
        path = inputs[name] / "summary.json" if name in inputs else None
        if path is None or not path.is_file():
            continue
        s = read_json(path)
        if not isinstance(s, Mapping):
            raise StageError(f"{path}: expected an object with params, gflops, ...")
        entry = {
            "model": name,
            "params": _first(s, ("params", "parameters")),
            "gflops": _first(s, ("gflops", "gflops_imgsz", "gflops_train", "gflops_640")),
            "epochs": _first(s, ("epochs",)),
            "train_seconds": _first(s, ("train_seconds", "seconds")),
            "map50": _first(s, ("map50", "metrics/mAP50(B)")),
            "map50_95": _first(s, ("map50_95", "metrics/mAP50-95(B)")),
        }
        training.append({k: v for k, v in entry.items() if v is not None})
        for row in out.rows:
            if row["model"] == name:
                for key in ("params", "gflops"):
                    if row.get(key) is None and entry[key] is not None:
                        row[key] = entry[key]
    if training:
        out.tables["training"] = training


def collect(inputs: Mapping[str, Path]) -> Collected:
    """Rows, tables, reference and notes from the upstream stage folders present in ``inputs``."""
    out = Collected()
    if "evaluate" in inputs:
        read_evaluate(inputs["evaluate"], out)
    else:
        out.notes.append("no evaluate stage in this run: accuracy columns are empty")
    if "bench" in inputs:
        read_bench(inputs["bench"], out)
    else:
        out.notes.append("no bench stage in this run: latency columns are empty")
    if "quantize" in inputs:
        read_sensitivity(inputs["quantize"], out)
    read_training(inputs, out)
    return out
