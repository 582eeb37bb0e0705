"""Stage ``quantize``: INT8 (and OpenVINO FP32/FP16) artifacts of every exported model, from the calibration set.

Per model of ``export/export.json`` and per runtime of ``quantization.runtimes``:

* ``onnxruntime``: ``onnxruntime_head_float.onnx`` (QDQ, head in float), ``onnxruntime_naive.onnx`` (with
  ``quantization.naive``), ``onnxruntime_fallback.onnx`` (with ``quantization.fallback``, when layers were kept
  in float);
* ``openvino``: ``openvino_fp32.xml``, ``openvino_fp16.xml``, ``openvino_head_float.xml`` (NNCF INT8; with
  ``quantization.accuracy_control`` through ``nncf.quantize_with_accuracy_control``);
* ``tensorrt``: ``tensorrt_head_float.onnx`` (Q/DQ for TensorRT explicit quantization; evaluated on a Jetson).

All under ``quantize/<model>/``, each with a ``.json`` sidecar (sha256, size, calibration manifest + sha256,
method, excluded nodes), listed in ``quantize/quantize.json`` (:mod:`pipeline.quant.artifacts`); the
sensitivity analysis and fallback search go to ``quantize/sensitivity.json`` (:mod:`pipeline.quant.sensitivity`,
:mod:`pipeline.quant.fallback`). Calibration ranges are computed once per model and reused (ONNX Runtime cache).
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

from deploy.errors import IntegrityError, StageError
from pipeline.runner import Stage, StageContext, sha256_file
from pipeline.stages.data import CALIBRATION


def _export_records(ctx: StageContext) -> list[dict[str, Any]]:
    """export.json's model records, each ONNX file checked against its recorded sha256."""
    folder = ctx.upstream("export")
    try:
        records = json.loads((folder / "export.json").read_text())["models"]
    except (OSError, ValueError, KeyError) as exc:
        raise StageError(f"{folder / 'export.json'}: unreadable export summary ({exc}); rerun --force export") from None
    for rec in records:
        path = folder / rec["onnx"]["path"]
        if not path.is_file() or sha256_file(path) != rec["onnx"]["sha256"]:
            raise IntegrityError(f"{path}: missing or its sha256 differs from export.json; rerun with --force export")
    return records


class _ModelJob:
    """Everything quantized for one model (keeps the per-model state out of long argument lists)."""

    def __init__(self, ctx: StageContext, record: dict[str, Any], images: list[Path], prov: Any, tmp: Path) -> None:
        from pipeline.quant import AdvancedOptions, CalibrationMethod

        q = ctx.cfg.quantization
        self.ctx, self.name, self.images, self.prov, self.tmp = ctx, record["model"], images, prov, tmp
        self.onnx = ctx.upstream("export") / record["onnx"]["path"]
        self.out = ctx.out / self.name
        self.method = CalibrationMethod(q.calibration_method)
        self.base = AdvancedOptions(
            percentile=q.advanced.percentile,
            per_channel=q.advanced.per_channel,
            reduce_range=q.advanced.reduce_range,
        )
        self.rows: list[dict[str, Any]] = []
        self._evalset: Any = None

    # ---------------------------------------------------------------- helpers
    def evalset(self) -> Any:
        from pipeline.quant.accuracy import holdout

        if self._evalset is None:
            adv = self.ctx.cfg.quantization.advanced
            self._evalset = holdout(
                self.ctx.upstream("data"),
                fraction=adv.holdout_fraction,
                seed=self.ctx.cfg.run.seed,
                max_images=adv.holdout_max_images,
            )
        return self._evalset

    def quantize(self, runtime: str, recipe: str, out: Path | None = None, **advanced: Any) -> Any:
        """One artifact, with cached calibration ranges.

        ONNX Runtime's recipes calibrate every tensor, so once their cache exists the TensorRT Q/DQ model (which
        quantizes a subset of op types) reuses it too: same ranges, same model bytes, one calibration pass less.
        Before that, TensorRT keeps its own (subset) cache, which must never feed an ONNX Runtime recipe.
        """
        from pipeline.quant import quantize

        full = self.tmp / "ranges_onnxruntime.json"
        own = full if runtime == "onnxruntime" or full.is_file() else self.tmp / f"ranges_{runtime}.json"
        advanced.setdefault("calibration_cache", own)
        return quantize(
            self.onnx,
            runtime=runtime,
            calibration=self.images,
            method=self.method,
            recipe=recipe,
            out=out or self.out,
            advanced=replace(self.base, **advanced),
        )

    def add(self, result: Any) -> Any:
        from pipeline.quant.artifacts import record_result

        self.rows.append(record_result(self.ctx.out, self.name, result, self.prov))
        self.ctx.log(f"[quantize] {self.name}: {result.path.name} ({result.precision.value}, {result.recipe.value})")
        return result

    def map(self, path: Path) -> float:
        from pipeline.quant.accuracy import detector_map

        ev = self.ctx.cfg.evaluation
        return detector_map(
            path,
            self.evalset(),
            conf=ev.conf_threshold,
            iou=ev.nms_iou,
            max_det=ev.max_det,
            threads=self.ctx.cfg.benchmark.threads,
        )

    # ---------------------------------------------------------------- runtimes
    def openvino(self) -> None:
        from pipeline.quant import Precision
        from pipeline.quant.artifacts import record
        from pipeline.quant.openvino import export_float

        for precision in (Precision.FP32, Precision.FP16):
            files = export_float(self.onnx, self.out, precision)
            self.rows.append(
                record(
                    self.ctx.out,
                    self.name,
                    runtime="openvino",
                    precision=precision.value,
                    recipe="float",
                    method=None,
                    files=files,
                    provenance=self.prov,
                    calibrated=False,
                )
            )
        q = self.ctx.cfg.quantization
        extra: dict[str, Any] = {"calibration_cache": None}
        if q.accuracy_control:
            ev = self.ctx.cfg.evaluation
            extra.update(accuracy_control=True, max_drop=q.max_drop, validation=self.evalset(),
                         conf=ev.conf_threshold, iou=ev.nms_iou, max_det=ev.max_det)  # fmt: skip
        self.add(self.quantize("openvino", "head_float", **extra))

    def run(self) -> dict[str, Any] | None:
        q = self.ctx.cfg.quantization
        head_float = None
        for runtime in q.runtimes:
            if runtime == "openvino":
                self.openvino()
            else:
                result = self.add(self.quantize(runtime, "head_float"))
                head_float = result if runtime == "onnxruntime" else head_float
        if q.naive and "onnxruntime" in q.runtimes:
            self.add(self.quantize("onnxruntime", "naive"))
        elif q.naive or q.advanced.sensitivity:
            self.ctx.log(f"[quantize] {self.name}: no naive recipe or sensitivity analysis: both run on ONNX Runtime, "
                         f"which is not in quantization.runtimes {list(q.runtimes)}")  # fmt: skip
        if head_float is None or not (q.advanced.sensitivity or q.fallback):
            return None
        return self.sensitivity(head_float)

    # ---------------------------------------------------------------- sensitivity + fallback
    def sensitivity(self, head_float: Any) -> dict[str, Any]:
        from pipeline.quant.calib_reader import CalibrationReader
        from pipeline.quant.ort import preprocess_model
        from pipeline.quant.sensitivity import analyze, report

        adv = self.ctx.cfg.quantization.advanced
        pre = self.tmp / "preprocessed.onnx"
        preprocess_model(self.onnx, pre)
        reader = CalibrationReader.for_model(pre, self.images)
        frames = min(adv.sensitivity_frames, len(self.images))
        ranked = analyze(pre, head_float.path, reader, frames=frames, excluded=set(head_float.excluded))
        entry = report(ranked, frames=frames, top=adv.sensitivity_top)
        entry["fallback"] = self.fallback(ranked, head_float) if self.ctx.cfg.quantization.fallback else None
        return entry

    def fallback(self, ranked: list[Any], head_float: Any) -> dict[str, Any]:
        from pipeline.quant.fallback import search

        q = self.ctx.cfg.quantization
        fp32 = self.map(self.onnx)

        def evaluate(nodes: tuple[str, ...]) -> float:
            if not nodes:
                return self.map(head_float.path)
            trial = self.quantize("onnxruntime", "fallback", out=self.tmp / "trial", keep_float=nodes)
            return self.map(trial.path)

        result = search(
            ranked,
            evaluate,
            fp32_map=fp32,
            budget_points=q.fallback_budget,
            max_layers=q.advanced.fallback_max_layers,
            log=self.ctx.log,
        )
        models = {"fp32": self.onnx, "int8": head_float.path}
        if result.chosen.k > 0:
            models["fallback"] = self.add(self.quantize("onnxruntime", "fallback", keep_float=result.chosen.nodes)).path
        extra = {"holdout_images": len(self.evalset()), "latency_ms": self.latency(models)}
        if result.chosen.k == 0:
            extra["note"] = "the head_float INT8 model meets the budget: no layer kept in float, no fallback artifact"
        return replace(result, extra=extra).as_dict()

    def latency(self, models: dict[str, Path]) -> dict[str, float]:
        """Inference p50 (ms) of each model with ONNX Runtime, timed interleaved on one validation frame."""
        from deploy.detector import Detector
        from deploy.latency import run_interleaved

        threads = self.ctx.cfg.benchmark.threads
        dets = {k: Detector(p, threads=threads) for k, p in models.items()}
        jpeg = self.evalset().items()[0][1].read_bytes()
        samples = run_interleaved(dets, jpeg, runs=self.ctx.cfg.quantization.advanced.latency_runs, warmup=3)
        return {k: round(s.summary()["inference"]["p50_ms"], 3) for k, s in samples.items()}


def run_quantize(ctx: StageContext) -> None:
    from pipeline.quant.artifacts import Provenance, write_listing
    from pipeline.quant.calib_reader import load_calibration
    from pipeline.quant.sensitivity import SCHEMA

    manifest = ctx.upstream("calib") / CALIBRATION
    images = load_calibration(manifest)
    if not images:
        raise StageError(f"{manifest}: the calibration set is empty; rerun the calib stage with data.calib.n >= 1")
    rows: list[dict[str, Any]] = []
    models: dict[str, Any] = {}
    records = _export_records(ctx)
    for record in ctx.track(records, "[quantize] models", len(records)):
        prov = Provenance(
            calibration_manifest=f"calib/{CALIBRATION}",
            calibration_sha256=sha256_file(manifest),
            calibration_n=len(images),
            source=f"export/{record['onnx']['path']}",
            source_sha256=record["onnx"]["sha256"],
        )
        with tempfile.TemporaryDirectory(prefix="edgekd-quantize-") as tmp:
            job = _ModelJob(ctx, record, images, prov, Path(tmp))
            entry = job.run()
        rows.extend(job.rows)
        if entry is not None:
            models[record["model"]] = entry
    write_listing(ctx.out, rows)
    sensitivity = {"schema": SCHEMA, "metric": "sqnr_db", "models": models}
    (ctx.out / "sensitivity.json").write_text(json.dumps(sensitivity, indent=2, sort_keys=True) + "\n")


STAGES = [
    Stage(
        "quantize",
        run_quantize,
        version="2",
        params=(
            "quantization",
            "evaluation.conf_threshold",
            "evaluation.nms_iou",
            "evaluation.max_det",
            "benchmark.threads",
            "run.seed",
        ),
        upstream=("data", "calib", "export"),
        tools=("onnx", "onnxruntime", "openvino", "nncf"),
        enabled=lambda cfg: bool(cfg.quantization.runtimes),
        description="INT8: ONNX Runtime QDQ, OpenVINO/NNCF, TensorRT Q/DQ; naive baseline; sensitivity, fallback",
    )
]
