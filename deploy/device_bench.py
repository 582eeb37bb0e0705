"""The on-device benchmark of a deploy bundle (``edgekd device bench --bundle DIR``).

1. verify the bundle's checksums (:mod:`deploy.bundle`);
2. plan the variants: TensorRT FP16 (engine built from the FP32 ONNX) and INT8 (engine built from each TensorRT
   Q/DQ ONNX, explicit quantization) when TensorRT imports, ONNX Runtime FP32 and INT8 Q/DQ (its default
   providers: CUDA on a Jetson with onnxruntime-gpu, else CPU), OpenVINO IR when asked and installed;
3. per variant: accuracy and false alarms on the bundled evaluation set (:mod:`deploy.metrics`), at the variant's
   own operating point and at the bundle's per-class thresholds (what a deployed system would use); then latency
   (JPEG bytes to boxes, per step) over a timed window, with board power sampled (jtop / tegrastats) so that
   energy per frame = the integral of power over the window / frames;
4. return metrics rows + tables in the metrics.json schema (the CLI validates and writes them), plus device.json.

Off a Jetson it runs the ONNX Runtime CPU path, and says that TensorRT is absent and power was not measured.
Nothing here imports torch.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from deploy.bundle import BUNDLE_JSON, check_artifacts, dump_json, load_bundle
from deploy.bundle_eval import evaluate_variant
from deploy.device_info import device_info, device_label, machine_info, package_versions
from deploy.errors import InputError
from deploy.latency import Samples, file_size_mb, time_frame
from deploy.power import detect_throttling, energy_per_frame, open_sampler, summarize_trace

RUNTIMES = ("tensorrt", "onnxruntime", "openvino")


@dataclass(frozen=True)
class DeviceBenchOptions:
    runs: int = 100
    warmup: int = 10
    min_seconds: float = 2.0  # shortest timed window per variant while power is sampled
    runtimes: tuple[str, ...] = ("tensorrt", "onnxruntime")
    power: str = "auto"  # auto | jtop | tegrastats | none
    power_interval_ms: int = 50
    idle_seconds: float = 1.0
    threads: int | None = None
    workspace_mb: int = 1024
    temp_limit_c: float = 90.0
    trtexec: Path | None = None  # trtexec binary (default: PATH, then JetPack's /usr/src/tensorrt/bin)
    use_trtexec: bool = True

    def __post_init__(self) -> None:
        problems = []
        if self.runs < 1:
            problems.append(f"--runs: got {self.runs}, expected a positive number of timed frames")
        if self.warmup < 0:
            problems.append(f"--warmup: got {self.warmup}, expected 0 or more")
        unknown = sorted(set(self.runtimes) - set(RUNTIMES))
        if unknown or not self.runtimes:
            problems.append(f"--runtimes: got {list(self.runtimes)}, expected some of {', '.join(RUNTIMES)}")
        if self.power not in ("auto", "jtop", "tegrastats", "none"):
            problems.append(f"--power: got {self.power!r}, expected auto, jtop, tegrastats or none")
        if problems:
            raise InputError("; ".join(problems))


@dataclass(frozen=True)
class Plan:
    """One variant to benchmark: ``path`` relative to the bundle (or absolute, for built engines)."""

    model: str
    runtime: str
    precision: str
    recipe: str | None
    path: str
    build: str | None = None  # "fp16" | "int8": a TensorRT engine to build from ``path``

    @property
    def id(self) -> str:
        return "/".join([self.model, self.runtime, self.precision] + ([self.recipe] if self.recipe else []))


@dataclass
class DeviceBenchResult:
    rows: list[dict[str, Any]]
    tables: dict[str, Any]
    provenance: dict[str, Any]
    reference: str | None
    notes: list[str]
    device: dict[str, Any]
    details: dict[str, Any] = field(default_factory=dict)


def plan_variants(
    manifest: dict[str, Any], runtimes: tuple[str, ...], available: dict[str, bool]
) -> tuple[list[Plan], list[str]]:
    """The variants to run from the bundle's artifacts, and notes on what is skipped and why."""
    plans, notes = [], []
    check_artifacts(manifest.get("artifacts", []))  # load_bundle checked it already; direct callers too
    for art in manifest.get("artifacts", []):
        base = Plan(art["model"], art["runtime"], art["precision"], art.get("recipe"), art["path"])
        role = art.get("role")
        if role == "fp32" and "tensorrt" in runtimes and available.get("tensorrt"):
            plans.append(replace(base, runtime="tensorrt", precision="fp16", recipe=None, build="fp16"))
        if role == "trt_qdq" and "tensorrt" in runtimes and available.get("tensorrt"):
            plans.append(replace(base, precision="int8", build="int8"))
        if role in ("fp32", "int8_qdq") and art["runtime"] == "onnxruntime" and "onnxruntime" in runtimes:
            plans.append(base)
        if role == "openvino_ir" and "openvino" in runtimes:
            if available.get("openvino"):
                plans.append(base)
            else:
                notes.append(f"{art['id']}: OpenVINO is not installed here; skipped")
    if (
        "tensorrt" in runtimes
        and available.get("tensorrt")
        and not any(a.get("role") == "trt_qdq" for a in manifest.get("artifacts", []))
    ):
        notes.append(
            "the bundle has no TensorRT Q/DQ ONNX: no TensorRT INT8 engine (run the quantize stage with tensorrt)"
        )
    return plans, notes


def build_engines(
    plans: list[Plan], root: Path, out: Path, manifest: dict[str, Any], builder: Callable[..., Any], workspace_mb: int,
    log: Callable[[str], None],
) -> tuple[list[Plan], list[dict[str, Any]]]:  # fmt: skip
    """Build every plan with ``build`` into ``out/engines/`` (shared timing cache) and write each engine's sidecar."""
    from deploy.metadata import ModelMeta, write_sidecar
    from deploy.preprocess import PreprocessSpec

    meta = ModelMeta(
        tuple(manifest["classes"]), tuple(manifest["imgsz"]), int(manifest.get("stride", 32)),
        PreprocessSpec(**manifest.get("preprocess", {})), str(manifest.get("format", "split-v1")),
    )  # fmt: skip
    engines_dir = out / "engines"
    engines_dir.mkdir(parents=True, exist_ok=True)
    cache = engines_dir / "timing.cache"
    done, records = [], []
    for plan in plans:
        if plan.build is None:
            done.append(plan)
            continue
        engine = engines_dir / (plan.id.replace("/", "_") + ".engine")
        log(f"[{plan.id}] building TensorRT {plan.build} engine from {plan.path}")
        t0 = time.perf_counter()
        builder(root / plan.path, engine, precision=plan.build, timing_cache=cache, workspace_mb=workspace_mb)
        seconds = round(time.perf_counter() - t0, 2)
        write_sidecar(engine, meta, precision=plan.build, source=plan.path)
        records.append({"variant": plan.id, "engine": engine.name, "source": plan.path, "build_seconds": seconds})
        done.append(replace(plan, path=str(engine), build=None))
    return done, records


def time_variant(
    det: Any, jpegs: list[bytes], runs: int, warmup: int, min_seconds: float
) -> tuple[Samples, float, float, int]:
    """Warm up, then time whole frames (cycling through ``jpegs``) until ``runs`` frames and ``min_seconds`` passed.

    Returns (per-step samples, window start, window end (time.monotonic), frames timed).
    """
    for i in range(warmup):
        time_frame(det, jpegs[i % len(jpegs)])
    samples = Samples()
    t0 = time.monotonic()
    n = 0
    while n < runs or time.monotonic() - t0 < min_seconds:
        samples.add(*time_frame(det, jpegs[n % len(jpegs)]))
        n += 1
    return samples, t0, time.monotonic(), n


def run_device_bench(
    bundle: Path,
    out: Path,
    options: DeviceBenchOptions = DeviceBenchOptions(),
    *,
    log: Callable[[str], None] = print,
    warn: Callable[[str], None] = print,
    engine_builder: Callable[..., Any] | None = None,
) -> DeviceBenchResult:
    """Benchmark every variant of ``bundle``; write ``out/device.json`` and engines; return rows and tables."""
    root, out = Path(bundle), Path(out)
    manifest = load_bundle(root)
    out.mkdir(parents=True, exist_ok=True)
    info = device_info()
    bench = _Bench(root, out, manifest, options, log, warn, notes=[f"bundle: {n}" for n in manifest.get("notes", [])])
    plans, engines = bench.plan(info, engine_builder)
    sampler, power_how = bench.start_power(info)
    idle_end = time.monotonic()
    bench.label = device_label(info)
    rows: list[dict[str, Any]] = []
    tables: dict[str, Any] = {"per_class": [], "per_condition": [], "latency": {}}
    try:
        for plan in plans:
            row, tabs = bench.run(plan, tables["latency"], timed=sampler is not None)
            rows.append(row)
            tables["per_class"] += tabs["per_class"]
            tables["per_condition"] += tabs["per_condition"]
    finally:
        trace = sampler.stop() if sampler is not None else None
    power = bench.power_report(trace, power_how, rows, idle_end)
    device = {**info, "label": bench.label, "power": power, "engines": engines}
    dump_json({"device": device, "variants": bench.details, "notes": bench.notes}, out / "device.json")
    ref = f"{manifest['model']}/onnxruntime/fp32"
    tables["extra"] = {
        "device": device,
        "bundle": {"model": manifest["model"], "thresholds": manifest.get("thresholds", {}).get("source")},
    }
    return DeviceBenchResult(
        rows, tables, _provenance(root, manifest, bench.label), ref if any(_vid(r) == ref for r in rows) else None,
        bench.notes, device, bench.details,
    )  # fmt: skip


@dataclass
class _Bench:
    """One ``run_device_bench`` call's state: the bundle, options, log sinks, and what the variants leave behind."""

    root: Path
    out: Path
    manifest: dict[str, Any]
    options: DeviceBenchOptions
    log: Callable[[str], None]
    warn: Callable[[str], None]
    notes: list[str]
    label: str = ""
    details: dict[str, Any] = field(default_factory=dict)  # per variant: step timings, providers, TensorRT timing
    windows: dict[str, tuple[float, float, int]] = field(default_factory=dict)  # per variant: timed window, frames
    jpegs: list[bytes] = field(default_factory=list)

    def note(self, msg: str) -> None:
        self.warn(msg)
        self.notes.append(msg)

    def plan(self, info: dict[str, Any], engine_builder: Callable[..., Any] | None) -> tuple[list[Plan], list[Any]]:
        """The variants this machine can run (TensorRT engines built first), and the engine build records."""
        from deploy.backends import is_available

        options = self.options
        available = {
            "onnxruntime": is_available("onnxruntime"),
            "openvino": is_available("openvino"),
            "tensorrt": info["tensorrt"] is not None,
        }
        if "tensorrt" in options.runtimes and not available["tensorrt"]:
            self.note(
                f"TensorRT is absent on this machine ({info['tensorrt_note']}): no TensorRT FP16/INT8 rows; "
                "ran ONNX Runtime only"
            )
        plans, plan_notes = plan_variants(self.manifest, options.runtimes, available)
        self.notes += plan_notes
        engines: list[dict[str, Any]] = []
        if any(p.build for p in plans):
            if engine_builder is None:
                from deploy.trt_build import build_engine as engine_builder
            plans, engines = build_engines(
                plans, self.root, self.out, self.manifest, engine_builder, options.workspace_mb, self.log
            )
        if not plans:
            raise InputError(
                f"{self.root / BUNDLE_JSON}: nothing to benchmark with runtimes {list(options.runtimes)} on this machine"
            )
        self.jpegs = [p.read_bytes() for p in sorted((self.root / "eval" / "images").glob("*")) if p.is_file()]
        return plans, engines

    def start_power(self, info: dict[str, Any]) -> tuple[Any, str]:
        """The board power sampler (or None) and how power is measured; sleeps the idle window when sampling."""
        sampler, power_how = open_sampler(self.options.power_interval_ms, self.options.power)
        if sampler is None:
            self.note(f"power not measured: {power_how}")
            return None, power_how
        self.log(f"power: {power_how}")
        jtop_mode = getattr(sampler, "nvpmodel", None)
        if info["nvpmodel"] is None and jtop_mode:
            info["nvpmodel"] = {"name": jtop_mode, "id": None, "source": "jtop"}
        time.sleep(self.options.idle_seconds)
        return sampler, power_how

    def run(self, plan: Plan, latency: dict[str, Any], *, timed: bool) -> tuple[dict[str, Any], dict[str, Any]]:
        """Evaluate, then time one variant; its metrics row and per-class / per-condition tables.

        ``timed``: power is sampled, so the timed window lasts at least ``options.min_seconds``.
        """
        from deploy.detector import Detector

        options, root = self.options, self.root
        self.log(f"[{plan.id}] evaluating on {self.manifest['eval']['images']} bundled images")
        path = Path(plan.path) if Path(plan.path).is_absolute() else root / plan.path
        det = Detector(path, threads=options.threads)
        metrics, tabs, results = evaluate_variant(det, plan.id, root, self.manifest)
        dump_json(results, self.out / "detections" / (plan.id.replace("/", "_") + ".json"))
        self.log(f"[{plan.id}] timing {options.runs} frames (+{options.warmup} warm-up)")
        samples, t0, t1, frames = time_variant(
            det, self.jpegs, options.runs, options.warmup, options.min_seconds if timed else 0.0
        )
        self.windows[plan.id] = (t0, t1, frames)
        summary = samples.summary()
        e2e = summary["end_to_end"]
        latency[plan.id] = {
            "step": "end_to_end",
            **{k: e2e[k] for k in ("p50_ms", "p90_ms", "p99_ms", "mean_ms", "std_ms", "n")},
        }
        providers = getattr(det.backend, "providers", None)
        self.details[plan.id] = {"steps": summary, "providers": providers}
        engine_rows = _engine_timing(det, plan, self.jpegs, options, self.details, self.notes, self.log)
        fp32: dict[str, Any] = next((a for a in self.manifest["artifacts"] if a.get("role") == "fp32"), {})
        row = {
            "model": plan.model, "runtime": plan.runtime, "precision": plan.precision, "recipe": plan.recipe,
            "executed_precision": det.executed_precision, "device": self.label,
            "params": fp32.get("params"), "gflops": fp32.get("gflops"), "size_mb": file_size_mb(path),
            **metrics,
            "latency_p50_ms": e2e["p50_ms"], "latency_p90_ms": e2e["p90_ms"], "latency_p99_ms": e2e["p99_ms"],
            "inference_p50_ms": summary["inference"]["p50_ms"], "fps_end_to_end": round(1e3 / e2e["mean_ms"], 2),
            "providers": ",".join(providers) if providers else None,
            "energy_mj_per_frame": None, "power_w": None, **engine_rows,
        }  # fmt: skip
        return row, tabs

    def power_report(self, trace: Any, power_how: str, rows: list[dict[str, Any]], idle_end: float) -> dict[str, Any]:
        """device.json's ``power``; fills each row's energy per frame and mean power from the trace's windows."""
        sampled = trace is not None
        power: dict[str, Any] = {"source": power_how if sampled else None, "note": None if sampled else power_how}
        if trace is None:
            return power
        idle_s = self.options.idle_seconds
        power.update(summarize_trace(trace))
        idle = energy_per_frame(trace, idle_end - idle_s, idle_end, 1)
        power["idle_w"] = round(idle.mean_power_w, 3) if idle else None
        for row in rows:
            e = energy_per_frame(trace, *self.windows[_vid(row)])
            if e is not None:
                row["energy_mj_per_frame"], row["power_w"] = round(e.energy_mj_per_frame, 3), round(e.mean_power_w, 3)
        if trace.samples:
            throttle = detect_throttling(trace.samples, temp_limit_c=self.options.temp_limit_c)
            power["throttle"] = throttle.as_dict()
            if throttle.throttled:
                self.note("thermal throttling during the benchmark: " + "; ".join(throttle.reasons))
        return power


def _provenance(root: Path, manifest: dict[str, Any], label: str) -> dict[str, Any]:
    """The metrics file's provenance: the bundle's config hash (else the bundle manifest's sha256), versions, machine."""
    source = manifest.get("source", {})
    config_hash = source.get("config_hash") or hashlib.sha256((root / BUNDLE_JSON).read_bytes()).hexdigest()
    return {
        "config_hash": config_hash,
        "run": str(source.get("run") or root.name),
        "edgekd_version": package_versions(("edgekd",))["edgekd"],
        "packages": package_versions(),
        "machine": {**machine_info(), "device": label},
    }


def _engine_timing(
    det: Any, plan: Plan, jpegs: list[bytes], options: DeviceBenchOptions, details: dict[str, Any],
    notes: list[str], log: Callable[[str], None],
) -> dict[str, Any]:  # fmt: skip
    """TensorRT rows only: GPU compute time by CUDA events and trtexec (into ``details``); the row's columns."""
    if plan.runtime != "tensorrt":
        return {}
    from deploy.trt_timing import engine_timings

    log(f"[{plan.id}] timing the engine alone (CUDA events{', trtexec' if options.use_trtexec else ''})")
    timing, timing_notes = engine_timings(
        det, jpegs[0], runs=options.runs, warmup=options.warmup, trtexec=options.trtexec,
        use_trtexec=options.use_trtexec,
    )  # fmt: skip
    notes += [f"{plan.id}: {n}" for n in timing_notes]
    details[plan.id]["tensorrt"] = timing
    trtexec = timing["trtexec"] or {}
    return {
        "gpu_compute_p50_ms": round(timing["gpu_compute"]["p50_ms"], 4),
        "trtexec_gpu_compute_p50_ms": trtexec.get("gpu_compute", {}).get("p50_ms"),
        "trtexec_throughput_qps": trtexec.get("throughput_qps"),
    }


def _vid(row: dict[str, Any]) -> str:
    return "/".join([row["model"], row["runtime"], row["precision"]] + ([row["recipe"]] if row.get("recipe") else []))
