"""The one validated, frozen configuration schema of edgekd.

Profiles (``pipeline/profiles/*.yaml``) and command-line overrides are plain
dicts by the time they reach this module: YAML and environment variables are
read only by the CLI (:mod:`pipeline.cli`).
"""

from __future__ import annotations

import hashlib
import json
from enum import Enum
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from deploy.errors import ConfigError


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DataSource(str, Enum):
    SYNTH = "synth"
    YOLO = "yolo"
    BDD100K = "bdd100k"


class SynthCfg(_Section):
    train: int = Field(800, ge=1, description="training frames")
    val: int = Field(200, ge=1, description="validation frames")
    width: int = Field(640, ge=64, le=4096)
    height: int = Field(384, ge=64, le=4096)
    reach: float = Field(
        1.0,
        gt=0,
        le=1,
        description="depth range of road users (1: VRUs out to 70 m, cars 100 m; 0.3: ~21/30 m, all large)",
    )


class Bdd100kCfg(_Section):
    images: Path | None = None
    labels: Path | None = None
    classes: Literal["vru", "all"] = "vru"
    val_fraction: float = Field(0.2, gt=0.0, lt=1.0)


class CalibCfg(_Section):
    n: int = Field(300, ge=1, description="calibration frames")


class DataCfg(_Section):
    source: DataSource = DataSource.SYNTH
    yaml: Path | None = Field(None, description="an ultralytics data.yaml, for source=yolo")
    synth: SynthCfg = SynthCfg()
    bdd100k: Bdd100kCfg = Bdd100kCfg()
    calib: CalibCfg = CalibCfg()


class TrainCfg(_Section):
    """The recipe shared by every trained arm (same data, recipe and budget)."""

    epochs: int = Field(30, ge=1)
    imgsz: int = Field(320, ge=32, multiple_of=32)
    batch: int = Field(16, ge=1)
    optimizer: str = "SGD"
    lr0: float = Field(0.01, gt=0)
    workers: int = Field(0, ge=0)
    device: str = "cpu"
    mosaic: float = Field(1.0, ge=0, le=1)
    close_mosaic: int = Field(5, ge=0)
    fraction: float = Field(1.0, gt=0, le=1)
    nbs: int = Field(
        64, ge=1, description="nominal batch size: gradients accumulate over nbs/batch batches per optimizer step "
        "(ultralytics' default 64); set it to train.batch on small datasets and short budgets"
    )  # fmt: skip
    warmup_epochs: float = Field(
        3.0, ge=0, description="learning-rate warm-up (ultralytics: at least 100 iterations when > 0; 0 disables it)"
    )


class TeacherCfg(_Section):
    weights: str = Field("yolov8l.yaml", description="a .yaml to train from scratch, or a .pt name/path")
    trust_weights: bool = False
    epochs: int | None = Field(None, ge=1, description="overrides train.epochs for the teacher")


class StudentCfg(_Section):
    model: str = "yolov8s.yaml"


class FeatureLoss(str, Enum):
    MSE = "mse"
    CWD = "cwd"


class DistillationCfg(_Section):
    task_weight: float = Field(1.0, ge=0)
    cls_weight: float = Field(1.0, ge=0, description="decision-level KD weight")
    cls_temperature: float = Field(2.0, gt=0)
    loc_weight: float = Field(1.0, ge=0, description="localization (DFL) KD weight")
    loc_temperature: float = Field(2.0, gt=0)
    feat_weight: float = Field(1.0, ge=0, description="feature-level KD weight")
    feat_loss: FeatureLoss = FeatureLoss.CWD
    conf_threshold: float = Field(0.25, ge=0, le=1, description="teacher confidence that marks an anchor")
    guard: bool = Field(True, description="no soft target where the teacher contradicts the ground truth")
    guard_iou: float = Field(0.5, ge=0, le=1, description="guard: teacher box IoU with the assigned GT below this")
    feat_temperature: float = Field(1.0, gt=0, description="CWD spatial-softmax temperature")
    ultralytics_weight: float = Field(6.0, ge=0, description="ultralytics' own `dis` weight (distill_ultralytics)")
    ultralytics_arm: bool = Field(True, description="also train ultralytics' own distill_model arm")
    ablation: bool = Field(False, description="also train one arm per KD term")


class ExportCfg(_Section):
    opset: int = Field(17, ge=17)
    dynamic_batch: bool = False
    simplify: bool = True
    parity_atol: float = Field(1e-3, gt=0, description="max |score error| and |box error| / imgsz vs PyTorch")
    parity_images: int = Field(8, ge=1, le=256, description="validation frames of the parity check")


class QuantAdvancedCfg(_Section):
    percentile: float = Field(99.999, gt=90, le=100)
    fallback_max_layers: int = Field(8, ge=0)
    per_channel: bool = Field(
        True,
        description="ONNX Runtime: per-output-channel weight scales (not for the naive recipe); TensorRT and "
        "OpenVINO (NNCF) always quantize weights per channel",
    )
    reduce_range: bool = Field(
        False, description="ONNX Runtime only: 7-bit weights, for CPUs without VNNI (TensorRT and NNCF: 8-bit)"
    )
    sensitivity: bool = Field(True, description="per-tensor INT8 error vs FP32 (sensitivity.json)")
    sensitivity_frames: int = Field(16, ge=1, le=1000, description="calibration frames of the sensitivity analysis")
    sensitivity_top: int = Field(20, ge=1, description="worst tensors listed per model")
    holdout_fraction: float = Field(0.5, gt=0, le=1, description="part of val used to judge fallback/accuracy control")
    holdout_max_images: int = Field(200, ge=1)
    latency_runs: int = Field(20, ge=1, description="timed runs of the fallback latency comparison")


class QuantizationCfg(_Section):
    runtimes: tuple[Literal["onnxruntime", "openvino", "tensorrt"], ...] = ("onnxruntime", "openvino", "tensorrt")
    calibration_method: Literal["minmax", "entropy", "percentile"] = "minmax"
    naive: bool = True
    fallback: bool = False
    fallback_budget: float = Field(0.5, ge=0, description="allowed mAP50-95 drop, points")
    accuracy_control: bool = False
    max_drop: float = Field(0.005, ge=0)
    advanced: QuantAdvancedCfg = QuantAdvancedCfg()


class EvaluationCfg(_Section):
    recall_target: float = Field(0.9, gt=0, le=1)
    fps: float = Field(30.0, gt=0)
    conf_threshold: float = Field(0.001, ge=0, le=1)
    nms_iou: float = Field(0.7, gt=0, le=1)
    max_det: int = Field(300, ge=1)
    corruptions: tuple[Literal["night", "fog", "rain", "blur", "noise", "jpeg"], ...] = (
        "night", "fog", "rain", "blur", "noise", "jpeg",
    )
    dece_bins: int = Field(10, ge=2)
    robustness_images: int = Field(48, ge=0, description="val images per corruption (0: no robustness)")
    robustness_recipes: tuple[Literal["float", "head_float", "naive", "fallback", "ultralytics"], ...] = Field(
        ("float", "head_float"), description="recipes whose ONNX Runtime variants are corrupt-tested"
    )
    robustness_severity: int = Field(3, ge=1, le=5)
    bootstrap_resamples: int = Field(
        500, ge=0, description="paired-bootstrap resamples for the mAP differences the report tests (0: none)"
    )
    bootstrap_confidence: float = Field(0.95, gt=0, lt=1, description="their confidence interval")


class BenchmarkCfg(_Section):
    runs: int = Field(50, ge=1)
    warmup: int = Field(5, ge=0)
    threads: int = Field(2, ge=1)
    batch: int = Field(4, ge=1, description="the larger batch for throughput")
    peers: bool = Field(True, description="time ultralytics' own exports side by side")
    peer_models: tuple[str, ...] = Field(("distill",), description="models whose weights ultralytics also exports")
    conf: float = Field(0.25, ge=0, le=1, description="detection threshold while timing (NMS work depends on it)")
    image: Path | None = Field(None, description="the JPEG to time; default a synthetic 1280x720 frame (JPEG q90)")


class ReportCfg(_Section):
    baseline: Path | None = None
    tolerances: Path | None = None


class RunCfg(_Section):
    name: str = Field("default", pattern=r"^[A-Za-z0-9_.-]+$")
    seed: int = Field(0, ge=0)
    runs_dir: Path = Path("runs")


class Config(_Section):
    profile: str = "default"
    run: RunCfg = RunCfg()
    data: DataCfg = DataCfg()
    train: TrainCfg = TrainCfg()
    teacher: TeacherCfg = TeacherCfg()
    student: StudentCfg = StudentCfg()
    distillation: DistillationCfg = DistillationCfg()
    export: ExportCfg = ExportCfg()
    quantization: QuantizationCfg = QuantizationCfg()
    evaluation: EvaluationCfg = EvaluationCfg()
    benchmark: BenchmarkCfg = BenchmarkCfg()
    report: ReportCfg = ReportCfg()

    # ---- access helpers -------------------------------------------------
    def get(self, dotted: str) -> Any:
        """Value at a dotted key, e.g. ``cfg.get("train.epochs")``."""
        node: Any = self
        for part in dotted.split("."):
            node = getattr(node, part)
        return node

    def as_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    def values(self, keys: tuple[str, ...]) -> dict[str, Any]:
        """{dotted key: JSON-able value} for the given keys."""
        return {k: _jsonable(self.get(k)) for k in keys}

    def digest(self, keys: tuple[str, ...] | None = None) -> str:
        """sha256 of the whole config, or of the given dotted keys only."""
        payload = self.as_dict() if keys is None else self.values(keys)
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()

    @property
    def run_dir(self) -> Path:
        return self.run.runs_dir / self.run.name


def _jsonable(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, tuple):
        return [_jsonable(v) for v in value]
    return value


def _describe(value: Any) -> str:
    text = json.dumps(value, default=str) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def build_config(raw: dict[str, Any], source: str = "config") -> Config:
    """Validate a nested dict into a :class:`Config`, listing every problem at once."""
    try:
        cfg = Config.model_validate(raw)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            key = ".".join(str(p) for p in err["loc"]) or "<root>"
            if err["type"] == "extra_forbidden":
                problems.append(f"{key}: unknown key (value {_describe(err['input'])}); remove it or check the spelling")
            else:
                problems.append(f"{key}: got {_describe(err.get('input'))}, expected {err['msg'].lower()}")
        raise ConfigError(problems, source) from None
    problems = _check_files(cfg) + _check_combinations(cfg)
    if problems:
        raise ConfigError(problems, source)
    return cfg


def _check_files(cfg: Config) -> list[str]:
    problems: list[str] = []
    data = cfg.data
    if data.source is DataSource.YOLO:
        if data.yaml is None:
            problems.append("data.yaml: got null, expected a path to a data.yaml when data.source is 'yolo'")
        elif not data.yaml.is_file():
            problems.append(f"data.yaml: file {str(data.yaml)!r} does not exist; expected an ultralytics data.yaml")
    if data.source is DataSource.BDD100K:
        for key in ("images", "labels"):
            value = getattr(data.bdd100k, key)
            if value is None:
                problems.append(f"data.bdd100k.{key}: got null, expected a path when data.source is 'bdd100k'")
            elif not value.exists():
                problems.append(f"data.bdd100k.{key}: {str(value)!r} does not exist; point it at your BDD100K {key}")
    for key in ("baseline", "tolerances"):
        value = getattr(cfg.report, key)
        if value is not None and not value.is_file():
            problems.append(f"report.{key}: file {str(value)!r} does not exist")
    if cfg.benchmark.image is not None and not cfg.benchmark.image.is_file():
        problems.append(f"benchmark.image: file {str(cfg.benchmark.image)!r} does not exist; expected a JPEG frame")
    weights = cfg.teacher.weights
    if not weights.endswith((".pt", ".yaml", ".yml")):
        problems.append(f"teacher.weights: got {weights!r}, expected a .pt (name or path) or a model .yaml")
    return problems


def _check_combinations(cfg: Config) -> list[str]:
    """Options that would otherwise be dropped without a word: unknown peer models, runtime-specific options."""
    from pipeline.train import ARMS

    problems = []
    unknown = [m for m in cfg.benchmark.peer_models if m not in ARMS]
    if unknown:
        problems.append(f"benchmark.peer_models: got {unknown}, expected trained arms among {list(ARMS)}")
    runtimes = cfg.quantization.runtimes
    for key, runtime in (("fallback", "onnxruntime"), ("accuracy_control", "openvino")):
        if getattr(cfg.quantization, key) and runtime not in runtimes:
            problems.append(
                f"quantization.{key}: true needs {runtime!r} in quantization.runtimes (got {list(runtimes)}); "
                f"add it or set quantization.{key}=false"
            )
    return problems


def parse_override(item: str) -> tuple[list[str], Any]:
    """Parse ``a.b.c=value`` into (["a","b","c"], value); the value is YAML-typed by the caller."""
    if "=" not in item:
        raise ConfigError([f"override {item!r}: expected KEY=VALUE, e.g. train.epochs=2"], "command line")
    key, value = item.split("=", 1)
    parts = [p for p in key.strip().split(".") if p]
    if not parts:
        raise ConfigError([f"override {item!r}: empty key; expected KEY=VALUE"], "command line")
    return parts, value


def apply_overrides(raw: dict[str, Any], overrides: list[tuple[list[str], Any]]) -> dict[str, Any]:
    """Return a deep copy of ``raw`` with the (already typed) overrides applied."""
    out = json.loads(json.dumps(raw, default=str))
    for parts, value in overrides:
        node = out
        for part in parts[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                child = {}
                node[part] = child
            node = child
        node[parts[-1]] = value
    return out
