"""Stage ``bench``: every exported, quantized and peer model of the run timed interleaved on one frame.

Reads (each optional, read defensively; paths in them are relative to their stage folder):

- ``export/export.json`` (else ``export/*.onnx``): the FP32 ONNX per model, timed on ONNX Runtime and on
  OpenVINO (which reads the ONNX directly, f32 hint) unless ``quantize`` holds an OpenVINO FP32/FP16 IR;
- ``quantize/quantize.json``: ``{"artifacts": [{model, runtime, precision, recipe, path, ...}]}``;
  TensorRT artifacts are timed only where TensorRT is installed and the artifact is an engine;
- ``peers/peers.json``: ``{"artifacts": [{model, variant, runtime, precision, path}]}``: ultralytics' exports.

Writes ``bench.json`` (see :mod:`pipeline.bench`) whose variant ids are
``<model>/<runtime>/<precision>/<recipe>``, recipe one of float | head_float (edgekd INT8) | naive | fallback | ultralytics (the names of
:mod:`pipeline.artifacts`), and whose
``reference`` is ``student/onnxruntime/fp32/float`` when the run has it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deploy.errors import StageError
from pipeline.config import Config
from pipeline.runner import Stage, StageContext

REFERENCE = "student/onnxruntime/fp32/float"
RECIPES = {"head_float": "head_float", "float": "float", "naive": "naive", "fallback": "fallback"}
RUNTIME_FILES = {"onnxruntime": (".onnx",), "openvino": (".xml", ".onnx"), "tensorrt": (".engine", ".plan")}


@dataclass(frozen=True)
class Artifact:
    """One model file of the run to time."""

    model: str
    runtime: str
    precision: str
    recipe: str
    path: Path  # absolute, in the final stage folder
    rel: str  # "<stage>/<path inside it>", what bench.json records

    @property
    def id(self) -> str:
        return f"{self.model}/{self.runtime}/{self.precision}/{self.recipe}"


def records(obj: Any) -> list[dict[str, Any]]:
    """The artifact records of an export/quantize/peers JSON in any reasonable shape.

    Accepts a list of records, ``{"artifacts" | "models" | "exports": [...] | {model: record}}``
    or ``{model: record}``; a record keyed by model gets ``model`` filled in.
    """
    if isinstance(obj, Mapping):
        for key in ("artifacts", "models", "exports"):
            if key in obj:
                return records(obj[key]) if not isinstance(obj[key], Mapping) else _keyed(obj[key])
        return _keyed(obj)
    if isinstance(obj, list):
        return [dict(r) for r in obj if isinstance(r, Mapping)]
    return []


def _keyed(obj: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [{"model": k, **v} for k, v in obj.items() if isinstance(v, Mapping) and _path_of(v)]


def _path_of(rec: Mapping[str, Any]) -> str | None:
    for key in ("path", "onnx", "file"):
        if isinstance(rec.get(key), str) and rec[key]:
            return str(rec[key])
    return None


def _read(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise StageError(f"{path}: cannot be read as JSON ({exc}); rerun its stage with --force") from None


def _artifact(folder: Path, stage: str, rec: Mapping[str, Any], recipe: str) -> Artifact | str:
    """An Artifact from a record, or a note saying why the record was left out."""
    rel = _path_of(rec)
    model = rec.get("model") or rec.get("name")
    if not rel or not isinstance(model, str):
        return f"{stage}: a record without model/path was left out: {dict(rec)!r:.160}"
    path = Path(rel) if Path(rel).is_absolute() else folder / rel
    if not path.is_file():
        return f"{stage}: {model}: file {rel!r} listed but missing; left out"
    inside = path.relative_to(folder).as_posix() if path.is_relative_to(folder) else path.name
    runtime = str(rec.get("runtime") or ("openvino" if path.suffix == ".xml" else "onnxruntime"))
    precision = str(rec.get("precision") or "fp32")
    return Artifact(model, runtime, precision, recipe, path, f"{stage}/{inside}")


def export_artifacts(folder: Path) -> tuple[list[Artifact], list[str]]:
    """The FP32 ONNX per model of the export stage (export.json, else every ``*.onnx`` in the folder)."""
    summary = folder / "export.json"
    recs = records(_read(summary)) if summary.is_file() else []
    recs = [r for r in recs if (_path_of(r) or "").endswith(".onnx")]
    if not recs:
        recs = [{"model": p.stem, "path": p.name} for p in sorted(folder.glob("*.onnx"))]
    fixed = [{**rec, "runtime": "onnxruntime", "precision": rec.get("precision", "fp32")} for rec in recs]
    return _split([_artifact(folder, "export", rec, "float") for rec in fixed])


def listed_artifacts(folder: Path, stage: str, name: str, recipe: str | None) -> tuple[list[Artifact], list[str]]:
    """quantize.json (recipe from each record) or peers.json (recipe ``ultralytics``)."""
    path = folder / name
    if not path.is_file():
        return [], [f"{stage}/{name} absent: no {stage} variants timed"]
    got = []
    for rec in records(_read(path)):
        rec_recipe = recipe or RECIPES.get(str(rec.get("recipe") or "head_float"), str(rec.get("recipe")))
        got.append(_artifact(folder, stage, rec, rec_recipe))
    return _split(got)


def _split(items: list[Artifact | str]) -> tuple[list[Artifact], list[str]]:
    """(artifacts, notes) from a list holding both."""
    return [a for a in items if isinstance(a, Artifact)], [n for n in items if isinstance(n, str)]


def collect(inputs: Mapping[str, Path]) -> tuple[list[Artifact], list[str]]:
    """Everything to time in the run, in a stable order, plus notes on what was left out and why."""
    from deploy.backends import is_available

    arts: list[Artifact] = []
    notes: list[str] = []
    exported: list[Artifact] = []
    if "export" in inputs:
        exported, n = export_artifacts(inputs["export"])
        notes += n
    for stage, name, recipe in (("quantize", "quantize.json", None), ("peers", "peers.json", "ultralytics")):
        if stage in inputs:
            got, n = listed_artifacts(inputs[stage], stage, name, recipe)
            arts += got
            notes += n
    has_ir = {(a.model, a.precision) for a in arts if a.runtime == "openvino" and a.recipe == "float"}
    openvino = [
        Artifact(a.model, "openvino", a.precision, a.recipe, a.path, a.rel)
        for a in exported
        if (a.model, a.precision) not in has_ir  # OpenVINO reads the FP32 ONNX itself
    ]
    arts = exported + openvino + arts
    kept, seen = [], set()
    for a in arts:
        why = _skip_reason(a, is_available)
        if why or a.id in seen:
            notes.append(f"{a.id} ({a.rel}): {why or 'listed twice; timed once'}")
            continue
        seen.add(a.id)
        kept.append(a)
    return kept, notes


def _skip_reason(a: Artifact, is_available: Any) -> str | None:
    if a.runtime not in RUNTIME_FILES:
        return f"unknown runtime {a.runtime!r}; not timed"
    if not is_available(a.runtime):
        return f"{a.runtime} is not installed on this machine; not timed (time it on the target device)"
    if a.path.suffix.lower() not in RUNTIME_FILES[a.runtime]:
        return (
            f"a {a.path.suffix} file for {a.runtime} needs an engine built on the device "
            f"(`edgekd deploy build-engine`, `edgekd device bench`); not timed here"
        )
    return None


def to_variants(arts: list[Artifact], conf: float) -> list[Any]:
    """Variants for the harness; each model's FP32 export is the MAC source of all its variants."""
    from deploy.benchmark import Variant

    fp32 = {a.model: a.path for a in arts if a.rel.startswith("export/")}
    variants = []
    for a in arts:
        macs = fp32.get(a.model) or (a.path if a.path.suffix == ".onnx" and a.precision == "fp32" else None)
        meta = {"model": a.model, "runtime": a.runtime, "precision": a.precision, "recipe": a.recipe, "artifact": a.rel}
        variants.append(Variant(a.id, a.path, backend=a.runtime, precision=a.precision, macs_from=macs, meta=meta,
                                options={"conf": conf}))  # fmt: skip
    return variants


def choose_reference(ids: list[str]) -> str | None:
    if REFERENCE in ids:
        return REFERENCE
    return next((i for i in ids if i.endswith("/onnxruntime/fp32/float")), None)


def _bench(ctx: StageContext) -> None:
    from pipeline.bench import BENCH_SCHEMA, load_image, run_benchmark

    cfg = ctx.cfg.benchmark
    arts, notes = collect(ctx.inputs)
    if not arts and "export" in ctx.inputs:
        raise StageError(f"bench: no model file found in {ctx.inputs['export']} (export.json or *.onnx); rerun export")
    if not arts:
        payload: dict[str, Any] = {"schema": BENCH_SCHEMA, "floor": None, "reference": None, "variants": {},
                                   "notes": [*notes, "no export stage in this run: nothing to time"]}  # fmt: skip
    else:
        variants = to_variants(arts, cfg.conf)
        jpeg, info = load_image(cfg.image, seed=ctx.cfg.run.seed)
        ctx.log(f"[bench] {len(variants)} variant(s) x {cfg.runs} runs, interleaved, {cfg.threads} thread(s)")
        payload = run_benchmark(
            variants, jpeg, info, threads=cfg.threads, runs=cfg.runs, warmup=cfg.warmup, batch=cfg.batch,
            reference=choose_reference([v.id for v in variants]), notes=notes,
        )  # fmt: skip
    (ctx.out / "bench.json").write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n")
    for note in payload["notes"]:
        ctx.log(f"[bench] note: {note}")


def _external(cfg: Config) -> list[Path]:
    return [cfg.benchmark.image] if cfg.benchmark.image is not None else []


STAGES = [
    Stage(
        "bench",
        _bench,
        version="1",
        params=(
            "benchmark.runs",
            "benchmark.warmup",
            "benchmark.threads",
            "benchmark.batch",
            "benchmark.conf",
            "benchmark.image",
            "run.seed",
        ),  # fmt: skip
        upstream=("export", "quantize", "peers"),
        tools=("onnxruntime", "openvino", "tensorrt", "opencv-python-headless", "numpy"),
        external=_external,
        description="latency p50/p90/p99 per step, throughput, hardware floor, peers interleaved",
    )
]
