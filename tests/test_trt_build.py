"""deploy/trt_build.py: a clear error without TensorRT, and the TensorRT 10 API calls (on a recording fake)."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import pytest
from _quant_fixtures import tiny_onnx

from deploy.errors import BackendUnavailableError, InputError


@pytest.fixture(scope="module")
def onnx_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_onnx(tmp_path_factory.mktemp("trt"))


@pytest.fixture()
def no_tensorrt(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # `import tensorrt` raises ImportError


def test_missing_tensorrt_is_a_clear_backend_error(onnx_model: Path, tmp_path: Path, no_tensorrt: None) -> None:
    from deploy.trt_build import build_engine

    with pytest.raises(BackendUnavailableError, match="TensorRT is not installed") as err:
        build_engine(onnx_model, tmp_path / "m.engine", precision="fp16")
    assert err.value.exit_code == 3 and "JetPack" in str(err.value)


def test_cli_exit_codes(onnx_model: Path, tmp_path: Path, no_tensorrt: None, capsys: pytest.CaptureFixture) -> None:
    from pipeline.cli import main

    assert main(["deploy", "build-engine", "--onnx", str(tmp_path / "nope.onnx")]) == 2
    assert "nope.onnx" in capsys.readouterr().err
    assert main(["deploy", "build-engine", "--onnx", str(onnx_model), "--int8", "--out", str(tmp_path / "e")]) == 3
    assert "TensorRT is not installed" in capsys.readouterr().err
    assert main(["deploy", "build-engine", "--onnx", str(onnx_model), "--workspace-mb", "0"]) == 2
    with pytest.raises(SystemExit):
        main(["deploy", "build-engine", "--onnx", str(onnx_model), "--fp16", "--int8"])


def test_bad_arguments(onnx_model: Path, tmp_path: Path) -> None:
    from deploy.trt_build import build_engine

    with pytest.raises(InputError, match="expected 'fp16' or 'int8'"):
        build_engine(onnx_model, tmp_path / "e", precision="int4")
    with pytest.raises(InputError, match="does not exist"):
        build_engine(tmp_path / "missing.onnx", tmp_path / "e", precision="fp16")


# ---------------------------------------------------------------- a recording fake of the TensorRT API
class _Enum:
    def __init__(self, **members: int) -> None:
        for k, v in members.items():
            setattr(self, k, v)


def fake_tensorrt(version: str, *, qdq: bool, dynamic: bool, calls: list) -> types.ModuleType:
    trt = types.ModuleType("tensorrt")
    trt.__version__ = version
    trt.NetworkDefinitionCreationFlag = _Enum(EXPLICIT_BATCH=0)
    trt.MemoryPoolType = _Enum(WORKSPACE="workspace")
    trt.BuilderFlag = _Enum(FP16="FP16", INT8="INT8")
    trt.ProfilingVerbosity = _Enum(DETAILED="detailed")

    class IInt8EntropyCalibrator2:
        def __init__(self) -> None:
            pass

    trt.IInt8EntropyCalibrator2 = IInt8EntropyCalibrator2
    trt.LayerType = _Enum(QUANTIZE="Q", DEQUANTIZE="DQ", CONVOLUTION="CONV")
    trt.Dims4 = lambda *d: tuple(d)

    class Logger:
        WARNING = "warning"

        def __init__(self, level: str) -> None:
            calls.append(("logger", level))

    class Tensor:
        name = "images"
        shape = (-1 if dynamic else 1, 3, 64, 64)

    class Layer:
        def __init__(self, kind: str) -> None:
            self.type = kind

    class Network:
        layers = [Layer("CONV"), *([Layer("Q"), Layer("DQ")] if qdq else [])]
        num_layers = len(layers)

        def get_layer(self, i: int) -> Layer:
            return self.layers[i]

        def get_input(self, i: int) -> Tensor:
            return Tensor()

    class Cache:
        def serialize(self) -> bytes:
            return b"timing-cache"

    class Config:
        @property
        def profiling_verbosity(self) -> str:
            return next(c[1] for c in reversed(calls) if c[0] == "verbosity")

        @profiling_verbosity.setter
        def profiling_verbosity(self, value: str) -> None:
            calls.append(("verbosity", value))

        def set_memory_pool_limit(self, pool: str, size: int) -> None:
            calls.append(("pool", pool, size))

        def set_flag(self, flag: str) -> None:
            calls.append(("flag", flag))

        def create_timing_cache(self, data: bytes) -> Cache:
            calls.append(("timing_cache_in", bytes(data)))
            return Cache()

        def set_timing_cache(self, cache: Cache, ignore_mismatch: bool) -> bool:
            return True

        def get_timing_cache(self) -> Cache:
            return Cache()

        def add_optimization_profile(self, profile: object) -> int:
            calls.append(("profile", profile.shapes))  # type: ignore[attr-defined]
            return 0

    class Profile:
        def set_shape(self, name: str, lo: tuple, opt: tuple, hi: tuple) -> None:
            self.shapes = (name, lo, opt, hi)

    class Builder:
        def __init__(self, logger: Logger) -> None:
            pass

        def create_network(self, flags: int) -> Network:
            calls.append(("network_flags", flags))
            return Network()

        def create_builder_config(self) -> Config:
            return Config()

        def create_optimization_profile(self) -> Profile:
            return Profile()

        def build_serialized_network(self, network: Network, config: Config) -> bytes:
            calibrator = getattr(config, "int8_calibrator", None)
            while calibrator is not None and calibrator.get_batch(["images"]):  # implicit calibration reads batches
                calls.append(("calibration_batch",))
            return b"ENGINE"

    class OnnxParser:
        num_errors = 0

        def __init__(self, network: Network, logger: Logger) -> None:
            pass

        def parse(self, data: bytes, path: str) -> bool:
            calls.append(("parse", len(data) > 1000, Path(path).name))
            return True

    trt.Logger, trt.Builder, trt.OnnxParser = Logger, Builder, OnnxParser
    return trt


def _build(
    monkeypatch,
    onnx_model: Path,
    tmp_path: Path,
    version: str,
    precision: str,
    qdq: bool = False,
    dynamic: bool = False,
    **kwargs,
):
    from deploy.trt_build import build_engine

    calls: list = []
    monkeypatch.setitem(sys.modules, "tensorrt", fake_tensorrt(version, qdq=qdq, dynamic=dynamic, calls=calls))
    info = build_engine(onnx_model, tmp_path / "m.engine", precision=precision, **kwargs)
    return info, calls


def test_fp16_engine_on_tensorrt_10(monkeypatch, onnx_model: Path, tmp_path: Path) -> None:
    cache = tmp_path / "timing.cache"
    cache.write_bytes(b"old")
    info, calls = _build(monkeypatch, onnx_model, tmp_path, "10.3.0", "fp16", timing_cache=cache, workspace_mb=256)
    assert ("network_flags", 0) in calls  # explicit batch is implicit on TensorRT 10
    assert ("parse", True, onnx_model.name) in calls
    assert ("pool", "workspace", 256 << 20) in calls and ("flag", "FP16") in calls and ("flag", "INT8") not in calls
    assert ("timing_cache_in", b"old") in calls and cache.read_bytes() == b"timing-cache"
    assert info.path.read_bytes() == b"ENGINE" and info.quantization == "none" and info.tensorrt == "10.3.0"
    sidecar = json.loads(info.sidecar.read_text())
    assert sidecar["names"] == ["pedestrian", "cyclist", "car"] and sidecar["imgsz"] == [64, 64]
    assert info.sidecar.name == "m.edgekd.json" and sidecar["precision"] == "fp16"
    assert ("verbosity", "detailed") in calls  # the engine inspector then reports each layer's precision


def test_int8_from_qdq_is_explicit(monkeypatch, onnx_model: Path, tmp_path: Path) -> None:
    info, calls = _build(monkeypatch, onnx_model, tmp_path, "10.3.0", "int8", qdq=True)
    assert ("flag", "INT8") in calls and info.quantization == "explicit (Q/DQ)"
    assert json.loads(info.sidecar.read_text())["precision"] == "int8"


def test_int8_without_qdq_on_tensorrt_10_is_refused(monkeypatch, onnx_model: Path, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no Q/DQ nodes.*tensorrt_head_float.onnx"):
        _build(monkeypatch, onnx_model, tmp_path, "10.3.0", "int8", qdq=False)


def test_tensorrt_8_uses_explicit_batch_flag(monkeypatch, onnx_model: Path, tmp_path: Path) -> None:
    _, calls = _build(monkeypatch, onnx_model, tmp_path, "8.6.1", "fp16")
    assert ("network_flags", 1 << 0) in calls
    with pytest.raises(InputError, match="needs calibration images"):
        _build(monkeypatch, onnx_model, tmp_path, "8.6.1", "int8")


def test_dynamic_batch_gets_an_optimization_profile(monkeypatch, onnx_model: Path, tmp_path: Path) -> None:
    _, calls = _build(monkeypatch, onnx_model, tmp_path, "10.3.0", "fp16", dynamic=True, max_batch=4)
    assert ("profile", ("images", (1, 3, 64, 64), (4, 3, 64, 64), (4, 3, 64, 64))) in calls
    _, static = _build(monkeypatch, onnx_model, tmp_path, "10.3.0", "fp16", dynamic=False)
    assert not [c for c in static if c[0] == "profile"]


def test_implicit_calibration_on_tensorrt_8_frees_its_device_buffer(monkeypatch, onnx_model: Path, tmp_path: Path):
    """TensorRT < 10 without Q/DQ: an entropy calibrator feeds the frames from one device buffer, freed after the build."""
    import cv2
    import numpy as np

    import deploy.trt_build as trt_build

    cuda: list = []

    class Cudart:
        cudaMemcpyKind = _Enum(cudaMemcpyHostToDevice=1)

        def cudaMalloc(self, n: int):
            cuda.append(("malloc", n))
            return 0, 4096

        def cudaMemcpy(self, dst: int, src: int, n: int, kind: int):
            cuda.append(("copy", dst, n))
            return (0,)

        def cudaFree(self, ptr: int):
            cuda.append(("free", ptr))
            return (0,)

    monkeypatch.setattr(trt_build, "import_cudart", lambda *a, **k: Cudart())
    frames = []
    for i in range(3):
        frames.append(tmp_path / f"{i}.jpg")
        cv2.imwrite(str(frames[-1]), np.full((48, 80, 3), 40 * i, np.uint8))
    info, calls = _build(monkeypatch, onnx_model, tmp_path, "8.6.1", "int8", calibration=frames)
    assert info.quantization == "implicit (entropy calibrator)"
    assert calls.count(("calibration_batch",)) == 3
    assert cuda == [("malloc", 3 * 64 * 64 * 4), *[("copy", 4096, 3 * 64 * 64 * 4)] * 3, ("free", 4096)]
