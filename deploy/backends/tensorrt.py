"""TensorRT 10 backend (.engine / .plan) with device memory from cuda-python.

Uses the name-based I/O API of TensorRT 10 (``num_io_tensors``, ``get_tensor_name``,
``set_input_shape``, ``set_tensor_address``, ``execute_async_v3``). Device buffers come from
``cuda-python`` (``cuda.bindings.runtime``, or ``cuda.cudart`` on older releases), so neither
torch nor pycuda is needed. Engines exported by ultralytics start with a JSON metadata header
(4-byte little-endian length + JSON); it is read and stripped.

The precision reported comes from the engine inspector (per compute layer) when the engine was
built with ``ProfilingVerbosity.DETAILED`` (edgekd's builder sets it); otherwise from the sidecar's ``precision``
key, else "unknown". An INT8 Q/DQ engine keeps its decode head in float, so it reports "mixed"; asking for
``precision="int8"`` accepts it, as the ONNX Runtime backend does for Q/DQ models.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from deploy.backends import Backend, Precision, summarize_precision
from deploy.errors import BackendUnavailableError, EdgeKDError, InputError

COMPUTE_LAYER_KEYS = ("Convolution", "MatrixMultiply", "Gemm", "Deconvolution")


RUNTIME_MIN_MAJOR = 10  # the runtime uses TensorRT 10's name-based I/O API (the builder also accepts older ones)


def tensorrt_major(trt: Any) -> int:
    """Major version of an imported ``tensorrt`` module; 0 when its ``__version__`` cannot be read."""
    try:
        return int(str(trt.__version__).split(".")[0])
    except (AttributeError, ValueError):
        return 0


def import_tensorrt(
    min_major: int | None = RUNTIME_MIN_MAJOR,
    *,
    who: str = "backend 'tensorrt'",
    missing: str = "backend 'tensorrt' needs the TensorRT Python package, which cannot be imported here",
    hint: str = (
        "run on a machine with TensorRT 10 (JetPack 6 on Jetson, or `pip install tensorrt` with a CUDA GPU), "
        "or use the onnxruntime/openvino backends with the .onnx model"
    ),
) -> Any:
    """The ``tensorrt`` module, or BackendUnavailableError.

    Args:
        min_major: the oldest TensorRT major version accepted (None: any; the engine builder, which falls back to
            implicit INT8 calibration on TensorRT < 10, passes None).
        who: what needs TensorRT, for the version error.
        missing, hint: the error when ``tensorrt`` cannot be imported: ``"{missing} ({ImportError}); {hint}"``.
    """
    try:
        import tensorrt as trt
    except ImportError as exc:
        raise BackendUnavailableError(f"{missing} ({exc}); {hint}") from None
    if min_major is not None and tensorrt_major(trt) < min_major:
        raise BackendUnavailableError(f"{who} needs TensorRT >= {min_major}, found {trt.__version__}")
    return trt


def import_cudart(
    missing: str = (
        "backend 'tensorrt' needs cuda-python for device memory (`pip install cuda-python` matching the "
        "CUDA version of TensorRT)"
    ),
) -> Any:
    """cuda-python's CUDA runtime bindings, or BackendUnavailableError(``missing``)."""
    try:
        from cuda.bindings import runtime as cudart  # cuda-python >= 12.6
    except ImportError:
        try:
            from cuda import cudart  # older cuda-python
        except ImportError:
            raise BackendUnavailableError(missing) from None
    return cudart


def cuda_check(cudart: Any, result: Any, where: str, error: type[EdgeKDError] = EdgeKDError) -> tuple[Any, ...]:
    """cuda-python calls return (error, *values): raise ``error`` naming ``where`` on a CUDA error, else the values."""
    err, *values = result if isinstance(result, tuple) else (result,)
    if int(err) != 0:
        raise error(f"CUDA call failed {where}: {cudart.cudaGetErrorString(err)[1]!r} (error {int(err)})")
    return tuple(values)


def split_engine_header(data: bytes) -> tuple[dict[str, Any], bytes]:
    """Strip ultralytics' metadata header: ``<uint32 LE length><JSON>`` + engine. No header -> ({}, data)."""
    if len(data) > 4:
        n = int.from_bytes(data[:4], "little")
        if 0 < n <= len(data) - 4:
            try:
                meta = json.loads(data[4 : 4 + n].decode("utf-8"))
            except (UnicodeDecodeError, ValueError):
                meta = None
            if isinstance(meta, dict):
                return meta, data[4 + n :]
    return {}, data


def datatype_precision(text: str) -> str | None:
    """An inspector ``Format/Datatype`` string -> a Precision value (None when it does not say)."""
    low = text.lower()
    if "int8" in low:
        return Precision.INT8.value
    if "bf16" in low or "bfloat" in low:
        return Precision.BF16.value
    if "fp16" in low or "half" in low:
        return Precision.FP16.value
    if "fp32" in low or "float" in low:
        return Precision.FP32.value
    return None


def inspector_precision_counts(info_json: str) -> dict[str, int]:
    """Engine-inspector JSON -> compute-layer counts per precision ({} without DETAILED layer information)."""
    try:
        layers = json.loads(info_json).get("Layers", [])
    except (ValueError, AttributeError):
        return {}
    counts: Counter[str] = Counter()
    for layer in layers:
        if not isinstance(layer, dict) or not any(k in str(layer.get("LayerType", "")) for k in COMPUTE_LAYER_KEYS):
            continue
        inputs = layer.get("Inputs") or [{}]
        prec = datatype_precision(str(inputs[0].get("Format/Datatype", ""))) if isinstance(inputs[0], dict) else None
        if prec:
            counts[prec] += 1
    return dict(counts)


def precision_from_counts(counts: dict[str, int], fallback: str | None) -> str:
    """Layer counts -> one Precision value: int8, mixed (int8 + float layers), else the most common float type.

    Without layer counts (engine built without DETAILED profiling verbosity): ``fallback`` (e.g. the
    sidecar's ``precision``) when it is a Precision value, else "unknown".
    """
    valid = {p.value for p in Precision}
    floats = {k: v for k, v in counts.items() if k != Precision.INT8.value and v > 0}
    if floats:
        float_precision = max(sorted(floats), key=lambda k: floats[k])
    else:
        float_precision = fallback if fallback in valid else Precision.UNKNOWN.value
    if not any(v > 0 for v in counts.values()):
        return float_precision
    return summarize_precision(counts, float_precision)


class TensorRtBackend(Backend):
    """A deserialized TensorRT engine with one execution context and one CUDA stream."""

    name = "tensorrt"

    def __init__(self, path: Path, threads: int | None = None, precision: str | None = None) -> None:
        trt = import_tensorrt()
        self._cudart = import_cudart()
        self.path = Path(path)
        err, count = self._cudart.cudaGetDeviceCount()
        if int(err) != 0 or count < 1:
            reason = self._cudart.cudaGetErrorString(err)[1].decode(errors="replace") if int(err) else "no CUDA device"
            raise BackendUnavailableError(f"backend 'tensorrt' needs a CUDA GPU, but CUDA reports: {reason}")
        header, blob = split_engine_header(self.path.read_bytes())
        self.metadata = dict(header)
        self._trt_logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._trt_logger)
        self.engine = self._runtime.deserialize_cuda_engine(blob)
        if self.engine is None:
            raise InputError(
                f"TensorRT cannot deserialize {str(self.path)!r}: engines only load with the TensorRT version and "
                "GPU they were built with; rebuild it on this device (`edgekd device build`)"
            )
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        inputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        if len(inputs) != 1:
            raise InputError(
                f"TensorRT engine {str(self.path)!r} has inputs {inputs}, expected exactly one image input"
            )
        self.input_name = inputs[0]
        self.output_names = [n for n in names if n not in inputs]
        self._dtypes = {n: np.dtype(trt.nptype(self.engine.get_tensor_dtype(n))) for n in names}
        self.input_dtype = self._dtypes[self.input_name]
        self.input_shape = tuple(d if d > 0 else None for d in self.engine.get_tensor_shape(self.input_name))
        self._buffers: dict[str, tuple[int, int]] = {}  # name -> (device pointer, bytes)
        self._stream = self._check(self._cudart.cudaStreamCreate())[0]
        inspector = self.engine.create_engine_inspector()
        self.precision_detail = inspector_precision_counts(
            inspector.get_engine_information(trt.LayerInformationFormat.JSON)
        )
        sidecar_precision = self._sidecar_precision()
        self.executed_precision = precision_from_counts(self.precision_detail, sidecar_precision)
        int8_engine = precision == Precision.INT8.value and self.executed_precision in ("int8", "mixed")
        if precision is not None and precision != self.executed_precision and not int8_engine:
            raise InputError(
                f"TensorRT engine {self.path.name} executes {self.executed_precision}, not {precision!r}: an engine's "
                f"precision is fixed when it is built; build a {precision} engine instead"
            )

    def _sidecar_precision(self) -> str | None:
        from deploy.metadata import read_sidecar

        value = read_sidecar(self.path).get("precision", self.metadata.get("precision"))
        return value if isinstance(value, str) else None

    def _check(self, result: Any) -> tuple[Any, ...]:
        return cuda_check(self._cudart, result, f"on {self.path.name}")

    def _device_buffer(self, name: str, nbytes: int) -> int:
        ptr, size = self._buffers.get(name, (0, 0))
        if size < nbytes:
            if ptr:
                self._check(self._cudart.cudaFree(ptr))
            ptr = int(self._check(self._cudart.cudaMalloc(nbytes))[0])
            self._buffers[name] = (ptr, nbytes)
        return ptr

    def run(self, tensor: np.ndarray) -> dict[str, np.ndarray]:
        cudart = self._cudart
        host_in = self._cast_input(tensor)
        if not self.context.set_input_shape(self.input_name, tuple(host_in.shape)):
            raise InputError(f"TensorRT engine {self.path.name}: input shape {host_in.shape} is outside its profile")
        ptr = self._device_buffer(self.input_name, host_in.nbytes)
        h2d, d2h = cudart.cudaMemcpyKind.cudaMemcpyHostToDevice, cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
        self._check(cudart.cudaMemcpyAsync(ptr, host_in.ctypes.data, host_in.nbytes, h2d, self._stream))
        self.context.set_tensor_address(self.input_name, ptr)
        outputs = {}
        for name in self.output_names:
            shape = tuple(self.context.get_tensor_shape(name))
            outputs[name] = np.empty(shape, self._dtypes[name])
            self.context.set_tensor_address(name, self._device_buffer(name, outputs[name].nbytes))
        if not self.context.execute_async_v3(int(self._stream)):
            raise EdgeKDError(f"TensorRT execution of {self.path.name} failed (see the TensorRT log above)")
        for name, host in outputs.items():
            self._check(
                cudart.cudaMemcpyAsync(host.ctypes.data, self._buffers[name][0], host.nbytes, d2h, self._stream)
            )
        self._check(cudart.cudaStreamSynchronize(self._stream))
        return {k: v.astype(np.float32, copy=False) for k, v in outputs.items()}

    def time_gpu(self, tensor: np.ndarray, runs: int, warmup: int) -> list[float]:
        """Milliseconds between two CUDA events recorded on this engine's stream around ``execute_async_v3``.

        ``tensor`` (N, 3, H, W) is bound and copied once by :meth:`run`; no host-device copy is inside the timed
        span, so each of the ``runs`` numbers (after ``warmup`` untimed ones) is one inference's GPU compute time.
        """
        self.run(tensor)
        cudart, stream = self._cudart, self._stream
        start = self._check(cudart.cudaEventCreate())[0]
        end = self._check(cudart.cudaEventCreate())[0]
        times: list[float] = []
        try:
            for i in range(warmup + runs):
                self._check(cudart.cudaEventRecord(start, stream))
                if not self.context.execute_async_v3(int(stream)):
                    raise EdgeKDError(f"TensorRT execution of {self.path.name} failed while timing with CUDA events")
                self._check(cudart.cudaEventRecord(end, stream))
                self._check(cudart.cudaEventSynchronize(end))
                if i >= warmup:
                    times.append(float(self._check(cudart.cudaEventElapsedTime(start, end))[0]))
        finally:
            cudart.cudaEventDestroy(start)
            cudart.cudaEventDestroy(end)
        return times

    def __del__(self) -> None:
        cudart = getattr(self, "_cudart", None)
        if cudart is None:
            return
        for ptr, _ in getattr(self, "_buffers", {}).values():
            cudart.cudaFree(ptr)
        if getattr(self, "_stream", None) is not None:
            cudart.cudaStreamDestroy(self._stream)


def load(path: Path, threads: int | None = None, precision: str | None = None) -> TensorRtBackend:
    """Deserialize a TensorRT engine (``threads`` is ignored: TensorRT runs on the GPU/DLA)."""
    return TensorRtBackend(path, threads=threads, precision=precision)
