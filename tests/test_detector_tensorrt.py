"""TensorRT backend: clear errors without TensorRT, engine-header/inspector parsing, and the I/O plumbing.

No GPU here: the plumbing test drives the real backend code against small in-memory fakes of the
``tensorrt`` and ``cuda.bindings.runtime`` modules (a fake engine whose outputs are a known function
of its input), so it checks our buffer/addressing/copy logic, not TensorRT itself.
"""

from __future__ import annotations

import ctypes
import importlib.util
import json
import sys
import types

import numpy as np
import pytest

from deploy.backends.tensorrt import (
    datatype_precision,
    inspector_precision_counts,
    precision_from_counts,
    split_engine_header,
)
from deploy.detector import Detector
from deploy.errors import BackendUnavailableError, InputError
from deploy.postprocess import postprocess
from deploy.preprocess import preprocess

NC, A, IMGSZ = 2, 6, (32, 64)
FAKE_ENGINE_MS = 2.5  # the fake engine's GPU time per execute_async_v3 (read by CUDA-event timing tests)


@pytest.mark.skipif(importlib.util.find_spec("tensorrt") is not None, reason="TensorRT is installed here")
def test_missing_tensorrt_is_a_clear_backend_unavailable_error(tmp_path):
    engine = tmp_path / "model.engine"
    engine.write_bytes(b"\x00" * 64)
    with pytest.raises(BackendUnavailableError, match="TensorRT") as info:
        Detector(engine)
    assert info.value.exit_code == 3 and "onnxruntime" in str(info.value)


def test_missing_cuda_python_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", _fake_tensorrt())
    for name in ("cuda", "cuda.bindings", "cuda.bindings.runtime", "cuda.cudart"):  # torch may have loaded them
        monkeypatch.setitem(sys.modules, name, None)
    engine = tmp_path / "model.engine"
    engine.write_bytes(b"ENGINE")
    with pytest.raises(BackendUnavailableError, match="cuda-python"):
        Detector(engine)


def test_no_gpu_is_a_clear_error(tmp_path, monkeypatch):
    cudart = _fake_cudart()
    cudart.cudaGetDeviceCount = lambda: (100, 0)
    cudart.cudaGetErrorString = lambda err: (0, b"no CUDA-capable device is detected")
    monkeypatch.setitem(sys.modules, "tensorrt", _fake_tensorrt())
    bindings = types.ModuleType("cuda.bindings")
    bindings.runtime = cudart
    monkeypatch.setitem(sys.modules, "cuda", types.ModuleType("cuda"))
    monkeypatch.setitem(sys.modules, "cuda.bindings", bindings)
    monkeypatch.setitem(sys.modules, "cuda.bindings.runtime", cudart)
    engine = tmp_path / "model.engine"
    engine.write_bytes(b"ENGINE")
    with pytest.raises(BackendUnavailableError, match="needs a CUDA GPU.*no CUDA-capable device"):
        Detector(engine)


def test_split_engine_header():
    meta = {"names": {"0": "a"}, "imgsz": [32, 64]}
    text = json.dumps(meta).encode()
    assert split_engine_header(len(text).to_bytes(4, "little") + text + b"PLAN") == (meta, b"PLAN")
    assert split_engine_header(b"\xff\xff\xff\x7fPLAN") == ({}, b"\xff\xff\xff\x7fPLAN")
    assert split_engine_header(b"\x02\x00\x00\x00{]PLAN") == ({}, b"\x02\x00\x00\x00{]PLAN")
    assert split_engine_header(b"") == ({}, b"")


def test_inspector_precision_parsing():
    assert datatype_precision("Thirty-two wide channel vectorized row major Int8 format.") == "int8"
    assert datatype_precision("Row major linear FP16 format") == "fp16"
    assert datatype_precision("Float") == "fp32" and datatype_precision("Row major linear BF16") == "bf16"
    assert datatype_precision("N/A due to dynamic shapes") is None
    info = json.dumps({"Layers": [_layer("CaskConvolution", "Int8")] * 3 + [_layer("Reformat", "Float")]})
    assert inspector_precision_counts(info) == {"int8": 3}
    assert inspector_precision_counts(json.dumps({"Layers": ["conv1", "conv2"]})) == {}  # LAYER_NAMES_ONLY
    assert inspector_precision_counts("not json") == {}


def test_precision_from_counts():
    assert precision_from_counts({"int8": 3}, None) == "int8"
    assert precision_from_counts({"int8": 3, "fp16": 1}, None) == "mixed"
    assert precision_from_counts({"fp16": 5, "fp32": 1}, None) == "fp16"
    assert precision_from_counts({}, "fp16") == "fp16"
    assert precision_from_counts({}, None) == "unknown"
    assert precision_from_counts({}, "garbage") == "unknown"


def test_engine_plumbing_with_fake_runtime(tmp_path, monkeypatch):
    _, cudart = install_fakes(monkeypatch)
    engine = write_fake_engine(tmp_path / "model.engine")

    det = Detector(engine, conf=0.0, iou=0.5)
    assert det.backend_name == "tensorrt" and det.names == ["pedestrian", "car"] and det.imgsz == IMGSZ
    assert det.executed_precision == "mixed" and det.backend.precision_detail == {"int8": 2, "fp16": 1}
    assert det.backend.input_shape == (None, 3, *IMGSZ)
    assert Detector(engine, precision="int8").executed_precision == "mixed"  # Q/DQ engine: head in float
    with pytest.raises(InputError, match="executes mixed, not 'fp16'"):
        Detector(engine, precision="fp16")
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 255, (40, 90, 3), dtype=np.uint8) for _ in range(3)]
    got = det.predict_batch(images)
    for image, dets in zip(images, got, strict=True):
        tensor, meta = preprocess(image, IMGSZ)
        want = postprocess(_fake_outputs(tensor), [meta], NC, det.params)[0]
        assert len(want) > 0
        np.testing.assert_array_equal(dets.xyxy, want.xyxy)
        np.testing.assert_array_equal(dets.confidence, want.confidence)
    assert len(cudart.memory) == 3  # input + two outputs, reused across calls
    del det
    assert cudart.memory == {}


# ---------------------------------------------------------------- fakes
def _layer(kind: str, dtype: str) -> dict:
    return {"LayerType": kind, "Inputs": [{"Format/Datatype": dtype}], "Outputs": [{"Format/Datatype": dtype}]}


def _fake_outputs(tensor: np.ndarray) -> dict[str, np.ndarray]:
    """The fake engine's function: per-anchor boxes and scores derived from the input's channel means."""
    b = tensor.shape[0]
    mean = tensor.reshape(b, 3, -1).mean(-1)  # (B, 3)
    anchors = np.arange(A, dtype=np.float32)
    boxes = np.stack(
        [
            np.broadcast_to(8 + 9 * anchors, (b, A)),
            np.full((b, A), 16.0),
            6 + mean[:, :1] * anchors,
            10 + mean[:, 1:2] * 0 + anchors,
        ]
    )
    scores = np.stack([(mean[:, c : c + 1] * (anchors + 1) / A) % 1 for c in range(NC)])
    return {
        "boxes": boxes.transpose(1, 0, 2).astype(np.float32),
        "scores": scores.transpose(1, 0, 2).astype(np.float32),
    }


def _fake_tensorrt() -> types.ModuleType:
    trt = types.ModuleType("tensorrt")
    trt.__version__ = "10.3.0"
    trt.Logger = type("Logger", (), {"WARNING": 2, "__init__": lambda self, level: None})
    trt.TensorIOMode = types.SimpleNamespace(INPUT="input", OUTPUT="output")
    trt.LayerInformationFormat = types.SimpleNamespace(JSON="json")
    trt.nptype = lambda dtype: np.float32

    class Engine:
        num_io_tensors = 3
        names = ["images", "boxes", "scores"]

        def get_tensor_name(self, i):
            return self.names[i]

        def get_tensor_mode(self, name):
            return "input" if name == "images" else "output"

        def get_tensor_dtype(self, name):
            return "float"

        def get_tensor_shape(self, name):
            return {"images": (-1, 3, *IMGSZ), "boxes": (-1, 4, A), "scores": (-1, NC, A)}[name]

        def create_execution_context(self):
            return Context()

        def create_engine_inspector(self):
            layers = [
                _layer("CaskConvolution", "Int8"),
                _layer("CaskConvolution", "Int8"),
                _layer("CaskGemmConvolution", "Half"),
            ]
            return types.SimpleNamespace(get_engine_information=lambda fmt: json.dumps({"Layers": layers}))

    class Context:
        def __init__(self):
            self.shape, self.addresses = None, {}

        def set_input_shape(self, name, shape):
            self.shape = shape
            return name == "images"

        def get_tensor_shape(self, name):
            return {"boxes": (self.shape[0], 4, A), "scores": (self.shape[0], NC, A)}[name]

        def set_tensor_address(self, name, ptr):
            self.addresses[name] = ptr

        def execute_async_v3(self, stream):
            memory = sys.modules["cuda.bindings.runtime"].memory
            n = int(np.prod(self.shape))
            tensor = np.frombuffer(bytes(memory[self.addresses["images"]][: n * 4]), np.float32).reshape(self.shape)
            for name, value in _fake_outputs(tensor).items():
                memory[self.addresses[name]][: value.nbytes] = value.tobytes()
            sys.modules["cuda.bindings.runtime"].gpu_clock_ms += FAKE_ENGINE_MS
            return True

    class Runtime:
        def __init__(self, logger):
            pass

        def deserialize_cuda_engine(self, blob):
            return Engine() if blob == b"ENGINE" else None

    trt.Runtime = Runtime
    return trt


def _fake_cudart() -> types.ModuleType:
    rt = types.ModuleType("cuda.bindings.runtime")
    rt.memory = {}
    rt.cudaMemcpyKind = types.SimpleNamespace(cudaMemcpyHostToDevice="h2d", cudaMemcpyDeviceToHost="d2h")
    counter = iter(range(0x1000, 1 << 40, 0x1000))

    def malloc(n):
        ptr = next(counter)
        rt.memory[ptr] = bytearray(n)
        return 0, ptr

    def memcpy(dst, src, n, kind, stream):
        if kind == "h2d":
            rt.memory[dst][:n] = ctypes.string_at(src, n)
        else:
            ctypes.memmove(dst, bytes(rt.memory[src][:n]), n)
        return (0,)

    rt.cudaMalloc = malloc
    rt.cudaGetDeviceCount = lambda: (0, 1)
    rt.cudaMemcpyAsync = memcpy
    rt.cudaFree = lambda ptr: (rt.memory.pop(ptr), 0)[1:]
    rt.cudaStreamCreate = lambda: (0, 7)
    rt.cudaStreamSynchronize = lambda stream: (0,)
    rt.cudaStreamDestroy = lambda stream: (0,)
    rt.cudaGetErrorString = lambda err: (0, b"fake error")
    rt.gpu_clock_ms, rt.events = 0.0, {}
    event_ids = iter(range(1, 1 << 20))

    def event_create():
        event = next(event_ids)
        rt.events[event] = None
        return 0, event

    def event_record(event, stream):
        rt.events[event] = rt.gpu_clock_ms
        return (0,)

    rt.cudaEventCreate = event_create
    rt.cudaEventRecord = event_record
    rt.cudaEventSynchronize = lambda event: (0,)
    rt.cudaEventElapsedTime = lambda start, end: (0, rt.events[end] - rt.events[start])
    rt.cudaEventDestroy = lambda event: (rt.events.pop(event), 0)[1:]
    return rt


def install_fakes(monkeypatch) -> tuple[types.ModuleType, types.ModuleType]:
    """Put the fake ``tensorrt`` and ``cuda.bindings.runtime`` modules in place; return them."""
    trt, cudart = _fake_tensorrt(), _fake_cudart()
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    cuda_pkg, bindings = types.ModuleType("cuda"), types.ModuleType("cuda.bindings")
    bindings.runtime = cudart
    monkeypatch.setitem(sys.modules, "cuda", cuda_pkg)
    monkeypatch.setitem(sys.modules, "cuda.bindings", bindings)
    monkeypatch.setitem(sys.modules, "cuda.bindings.runtime", cudart)
    return trt, cudart


def write_fake_engine(path):
    """An engine file the fake runtime deserializes, with ultralytics' metadata header."""
    header = json.dumps({"names": {"0": "pedestrian", "1": "car"}, "imgsz": list(IMGSZ), "stride": 32}).encode()
    path.write_bytes(len(header).to_bytes(4, "little") + header + b"ENGINE")
    return path
