"""TensorRT engine builder (deploy side: numpy + TensorRT, no torch), written against the TensorRT 10 Python API.

* FP16: ``BuilderFlag.FP16`` on the FP32 ONNX export.
* INT8, explicit quantization (the way on TensorRT >= 10): the Q/DQ ONNX of the quantize stage
  (``quantize/<model>/tensorrt_head_float.onnx``) with ``BuilderFlag.INT8``; the scales come from its
  QuantizeLinear/DequantizeLinear nodes, no calibrator. Layers outside Q/DQ (the decode head) stay FP32.
* INT8, implicit calibration (TensorRT < 10 only, for a plain ONNX): an ``IInt8EntropyCalibrator2`` fed with
  letterboxed calibration images, with a calibration cache file (needs cuda-python for device buffers).

A timing cache (``--timing-cache``) is read before and written after the build, so rebuilding on the same
device is fast. Dynamic-batch ONNX models get an optimization profile (min 1, opt/max ``max_batch``). The
engine's metadata (names, imgsz, preprocessing) is written to the ``<engine stem>.edgekd.json`` sidecar that
``deploy.detector.Detector`` reads.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from deploy.backends.tensorrt import cuda_check, import_cudart, import_tensorrt, tensorrt_major
from deploy.errors import EdgeKDError, InputError

if TYPE_CHECKING:  # typed by tensorrt-stubs (scripts/mypy_trt.sh); imported lazily at run time
    import tensorrt as trt


class EngineBuildError(EdgeKDError):
    """TensorRT could not parse the ONNX model or build the engine."""


class EnginePrecision(str, Enum):
    FP16 = "fp16"
    INT8 = "int8"


@dataclass(frozen=True)
class EngineInfo:
    """What was built: the engine file, its precision, quantization mode and TensorRT version."""

    path: Path
    precision: EnginePrecision
    quantization: str  # "none" | "explicit (Q/DQ)" | "implicit (entropy calibrator)"
    tensorrt: str
    seconds: float
    timing_cache: Path | None
    sidecar: Path | None


def require_tensorrt() -> str:
    """TensorRT's version (any: TensorRT < 10 builds too, INT8 then by implicit calibration), or
    BackendUnavailableError explaining where TensorRT comes from."""
    trt = import_tensorrt(
        min_major=None,
        missing="TensorRT is not installed here",
        hint="build engines on the target device: JetPack ships TensorRT (python3-libnvinfer), on x86 GPUs "
        "`pip install tensorrt`. Use the docker/Dockerfile.jetson image.",
    )
    return str(trt.__version__)


def network_flags() -> int:
    """``create_network`` flags: EXPLICIT_BATCH on TensorRT < 10 (always explicit, flag deprecated, on 10)."""
    import tensorrt as trt

    if tensorrt_major(trt) >= 10:
        return 0
    return 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)


def parse_onnx(network: trt.INetworkDefinition, logger: trt.ILogger, onnx_path: Path) -> trt.OnnxParser:
    """Parse ``onnx_path`` into ``network``; EngineBuildError listing the parser's errors."""
    import tensorrt as trt

    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_path.read_bytes(), str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise EngineBuildError(f"TensorRT could not parse {onnx_path}: {errors or 'unknown error'}")
    return parser


def has_qdq(network: trt.INetworkDefinition) -> bool:
    """Does the parsed network hold Quantize/Dequantize layers (an explicitly quantized model)?"""
    import tensorrt as trt

    kinds = {trt.LayerType.QUANTIZE, trt.LayerType.DEQUANTIZE}
    return any(network.get_layer(i).type in kinds for i in range(network.num_layers))


def add_profile(
    builder: trt.Builder, network: trt.INetworkDefinition, config: trt.IBuilderConfig, max_batch: int
) -> bool:
    """An optimization profile when the input batch is dynamic (-1); returns whether one was added."""
    import tensorrt as trt

    tensor = network.get_input(0)
    shape = [int(tensor.shape[i]) for i in range(len(tensor.shape))]
    if len(shape) != 4 or shape[0] != -1:
        return False
    if any(d < 0 for d in shape[1:]):
        raise InputError(f"input {tensor.name!r} shape {shape}: only the batch may be dynamic, expected (-1, 3, H, W)")
    _, c, h, w = shape
    profile = builder.create_optimization_profile()
    smallest, largest = trt.Dims4(1, c, h, w), trt.Dims4(max_batch, c, h, w)
    profile.set_shape(tensor.name, smallest, largest, largest)
    config.add_optimization_profile(profile)
    return True


def load_timing_cache(config: trt.IBuilderConfig, path: Path | None) -> None:
    data = path.read_bytes() if path is not None and path.is_file() else b""
    cache = config.create_timing_cache(data)
    config.set_timing_cache(cache, False)


def save_timing_cache(config: trt.IBuilderConfig, path: Path | None) -> None:
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(bytes(memoryview(config.get_timing_cache().serialize())))


def build_engine(
    onnx_path: str | Path,
    out_path: str | Path,
    *,
    precision: EnginePrecision | str,
    timing_cache: str | Path | None = None,
    workspace_mb: int = 1024,
    max_batch: int = 1,
    calibration: Sequence[Path] = (),
    calibration_cache: str | Path | None = None,
) -> EngineInfo:
    """Build a serialized TensorRT engine from an ONNX model.

    Args:
        onnx_path: FP32 ONNX (for fp16) or the Q/DQ ONNX of the quantize stage (for int8).
        out_path: the ``.engine`` file to write.
        precision: ``fp16`` or ``int8``.
        timing_cache: timing cache file, read if present and written after the build.
        workspace_mb: the builder's workspace memory pool limit.
        max_batch: the largest batch of the optimization profile (dynamic-batch models only).
        calibration, calibration_cache: implicit INT8 calibration images and cache (TensorRT < 10, no Q/DQ).

    Raises:
        BackendUnavailableError: TensorRT is not installed. InputError: bad arguments or files.
        EngineBuildError: parsing or building failed.
    """
    onnx_path, out_path = Path(onnx_path), Path(out_path)
    try:
        precision = EnginePrecision(precision)
    except ValueError:
        raise InputError(f"precision {precision!r}: expected 'fp16' or 'int8'") from None
    if not onnx_path.is_file():
        raise InputError(f"ONNX model {str(onnx_path)!r} does not exist")
    if workspace_mb < 1 or max_batch < 1:
        raise InputError(f"workspace_mb={workspace_mb}, max_batch={max_batch}: expected positive integers")
    version = require_tensorrt()
    import tensorrt as trt

    t0 = time.perf_counter()
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(network_flags())
    parse_onnx(network, logger, onnx_path)
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_mb << 20)
    config.profiling_verbosity = trt.ProfilingVerbosity.DETAILED  # per-layer precisions for the engine inspector
    cache_path = Path(timing_cache) if timing_cache is not None else None
    load_timing_cache(config, cache_path)
    add_profile(builder, network, config, max_batch)
    mode = "none"
    if precision is EnginePrecision.FP16:
        config.set_flag(trt.BuilderFlag.FP16)
    else:
        config.set_flag(trt.BuilderFlag.INT8)
        mode = _int8_mode(network, config, onnx_path, calibration, calibration_cache)
    try:
        serialized = builder.build_serialized_network(network, config)
    finally:
        _free_calibrator(config)
    if serialized is None:
        raise EngineBuildError(f"TensorRT failed to build a {precision.value} engine from {onnx_path} (see its log)")
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_bytes(bytes(memoryview(serialized)))
    save_timing_cache(config, cache_path)
    seconds = time.perf_counter() - t0
    return EngineInfo(
        out_path, precision, mode, version, seconds, cache_path, write_metadata(onnx_path, out_path, precision.value)
    )


def _int8_mode(
    network: trt.INetworkDefinition,
    config: trt.IBuilderConfig,
    onnx_path: Path,
    calibration: Sequence[Path],
    cache: str | Path | None,
) -> str:
    import tensorrt as trt

    if has_qdq(network):
        return "explicit (Q/DQ)"
    if tensorrt_major(trt) >= 10:
        raise InputError(
            f"{onnx_path.name} has no Q/DQ nodes: TensorRT >= 10 builds INT8 from an explicitly quantized model; use "
            "quantize/<model>/tensorrt_head_float.onnx from `edgekd run` (the quantize stage)"
        )
    if not calibration:
        raise InputError(f"{onnx_path.name} has no Q/DQ nodes: implicit INT8 on TensorRT < 10 needs calibration images")
    tensor = network.get_input(0)
    hw = (int(tensor.shape[2]), int(tensor.shape[3]))
    config.int8_calibrator = entropy_calibrator(list(calibration), hw, Path(cache) if cache else None)
    return "implicit (entropy calibrator)"


def write_metadata(onnx_path: Path, engine_path: Path, precision: str) -> Path | None:
    """The ``<engine stem>.edgekd.json`` sidecar from the ONNX model's metadata and the built ``precision`` (None if
    the ONNX model has no metadata)."""
    import onnx

    from deploy.metadata import resolve_metadata, write_sidecar

    props = {p.key: p.value for p in onnx.load(str(onnx_path), load_external_data=False).metadata_props}
    if "names" not in props:
        return None
    meta = resolve_metadata(onnx_path, props)
    return write_sidecar(engine_path, meta, source_onnx=onnx_path.name, precision=precision)


def calibration_batches(images: Sequence[Path], imgsz: tuple[int, int]) -> list[np.ndarray]:
    """Letterboxed (1, 3, H, W) float32 tensors of the calibration images (contiguous, for device copies)."""
    from deploy.preprocess import decode_jpeg, preprocess

    return [np.ascontiguousarray(preprocess(decode_jpeg(p), imgsz)[0]) for p in images]


def _free_calibrator(config: trt.IBuilderConfig) -> None:
    """Release the implicit-calibration calibrator's device buffer once the build is over (it is read only then)."""
    calibrator = getattr(config, "int8_calibrator", None)
    free = getattr(calibrator, "free", None)
    if callable(free):
        free()


def entropy_calibrator(images: list[Path], imgsz: tuple[int, int], cache: Path | None) -> trt.IInt8EntropyCalibrator2:
    """An ``IInt8EntropyCalibrator2`` over letterboxed ``images`` (batch 1), reading/writing ``cache``."""
    import tensorrt as trt

    cudart = import_cudart(
        "implicit INT8 calibration needs cuda-python (`pip install cuda-python`) for device buffers; "
        "or build from the Q/DQ ONNX (explicit quantization), which needs no calibrator"
    )

    def check(result: Any) -> tuple[Any, ...]:
        return cuda_check(cudart, result, "during INT8 calibration", EngineBuildError)

    class EntropyCalibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self) -> None:
            trt.IInt8EntropyCalibrator2.__init__(self)
            self.batches = iter(calibration_batches(images, imgsz))
            self.nbytes = 3 * imgsz[0] * imgsz[1] * 4
            self.device = check(cudart.cudaMalloc(self.nbytes))[0]

        def get_batch_size(self) -> int:
            return 1

        def free(self) -> None:
            """Release the device buffer (after the build; calling it again does nothing)."""
            if self.device:
                check(cudart.cudaFree(self.device))
                self.device = 0

        def get_batch(self, names: list[str]) -> list[int]:
            batch = next(self.batches, None)
            if batch is None:
                return []  # no more batches
            kind = cudart.cudaMemcpyKind.cudaMemcpyHostToDevice
            check(cudart.cudaMemcpy(self.device, batch.ctypes.data, self.nbytes, kind))
            return [int(self.device)]

        def read_calibration_cache(self) -> bytes | None:
            return cache.read_bytes() if cache is not None and cache.is_file() else None

        def write_calibration_cache(self, data: Any) -> None:
            if cache is not None:
                cache.parent.mkdir(parents=True, exist_ok=True)
                cache.write_bytes(bytes(memoryview(data)))

    return EntropyCalibrator()
