"""TensorRT engine timing: CUDA events around the engine (fake runtime) and trtexec's summary (recorded logs)."""

from __future__ import annotations

import subprocess

import numpy as np
import pytest
from test_detector_tensorrt import FAKE_ENGINE_MS, install_fakes, write_fake_engine

from deploy.detector import Detector
from deploy.errors import BackendUnavailableError, EdgeKDError, InputError
from deploy.trt_timing import (
    engine_timings,
    find_trtexec,
    parse_trtexec_summary,
    run_trtexec,
    time_gpu_compute,
    trtexec_command,
)

#: The tail of a TensorRT 10 trtexec run (Orin-style numbers; format as trtexec 10.x prints it).
TRT10_LOG = """\
&&&& RUNNING TensorRT.trtexec [TensorRT v100300] # /usr/src/tensorrt/bin/trtexec --loadEngine=s_int8.engine
[11/02/2026-10:47:59] [I] === Performance summary ===
[11/02/2026-10:47:59] [I] Throughput: 412.5 qps
[11/02/2026-10:47:59] [I] Latency: min = 2.43 ms, max = 3.91 ms, mean = 2.52 ms, median = 2.49 ms, percentile(90%) = 2.6 ms, percentile(95%) = 2.71 ms, percentile(99%) = 3.2 ms
[11/02/2026-10:47:59] [I] Enqueue Time: min = 0.41 ms, max = 1.2 ms, mean = 0.47 ms, median = 0.45 ms, percentile(90%) = 0.52 ms, percentile(95%) = 0.58 ms, percentile(99%) = 0.9 ms
[11/02/2026-10:47:59] [I] H2D Latency: min = 0.09 ms, max = 0.2 ms, mean = 0.1 ms, median = 0.1 ms, percentile(90%) = 0.11 ms, percentile(95%) = 0.12 ms, percentile(99%) = 0.18 ms
[11/02/2026-10:47:59] [I] GPU Compute Time: min = 2.3 ms, max = 3.7 ms, mean = 2.39 ms, median = 2.36 ms, percentile(90%) = 2.47 ms, percentile(95%) = 2.55 ms, percentile(99%) = 3.05 ms
[11/02/2026-10:47:59] [I] D2H Latency: min = 0.02 ms, max = 0.05 ms, mean = 0.03 ms, median = 0.03 ms, percentile(90%) = 0.03 ms, percentile(95%) = 0.04 ms, percentile(99%) = 0.05 ms
[11/02/2026-10:47:59] [I] Total Host Walltime: 3.0051 s
[11/02/2026-10:47:59] [I] Total GPU Compute Time: 2.9 s
&&&& PASSED TensorRT.trtexec [TensorRT v100300]
"""
#: An older trtexec prints some statistics without "=" and only the 99th percentile.
OLD_LOG = """\
Throughput: 169.352 qps
Latency: min = 5.38959 ms, max 6.19507 ms, mean 5.93288 ms, median 6.02185 ms, percentile(99%) 6.17407 ms
GPU Compute Time: min = 3.17834 ms, max = 3.88306 ms, mean = 3.63242 ms, median = 3.71753 ms, percentile(99%) 3.87793 ms
"""


def test_parse_trtexec_10_summary():
    got = parse_trtexec_summary(TRT10_LOG)
    assert got["throughput_qps"] == 412.5 and got["walltime_s"] == 3.0051 and got["tensorrt_version"] == "100300"
    assert got["gpu_compute"] == {
        "min_ms": 2.3, "max_ms": 3.7, "mean_ms": 2.39, "p50_ms": 2.36, "p90_ms": 2.47, "p95_ms": 2.55, "p99_ms": 3.05,
    }  # fmt: skip
    assert got["latency"]["p50_ms"] == 2.49 and got["enqueue"]["p99_ms"] == 0.9
    assert got["h2d"]["mean_ms"] == 0.1 and got["d2h"]["max_ms"] == 0.05
    # "Total GPU Compute Time: 2.9 s" is a total in seconds, not a statistics line: it must not overwrite the stats
    assert got["gpu_compute"]["mean_ms"] == 2.39


def test_parse_older_summary_without_equals_signs():
    got = parse_trtexec_summary(OLD_LOG)
    assert got["latency"] == {"min_ms": 5.38959, "max_ms": 6.19507, "mean_ms": 5.93288, "p50_ms": 6.02185,
                              "p99_ms": 6.17407}  # fmt: skip
    assert got["gpu_compute"]["p50_ms"] == 3.71753 and got["tensorrt_version"] is None


def test_parse_failure_names_the_tail():
    with pytest.raises(EdgeKDError, match="(?s)no 'GPU Compute Time'.*Error Code 1: Serialization"):
        parse_trtexec_summary("[I] Loading engine\n[E] Error[1]: [runtime.cpp] Error Code 1: Serialization failed")


def test_trtexec_command_and_finding(tmp_path, monkeypatch):
    cmd = trtexec_command(tmp_path / "trtexec", tmp_path / "a.engine", warmup_ms=200, iterations=50, duration_s=2)
    assert cmd[1:] == [f"--loadEngine={tmp_path / 'a.engine'}", "--warmUp=200", "--iterations=50", "--duration=2",
                       "--useSpinWait"]  # fmt: skip
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr("deploy.trt_timing.TRTEXEC_PLACES", (str(tmp_path / "nowhere" / "trtexec"),))
    assert find_trtexec() is None
    with pytest.raises(BackendUnavailableError, match="trtexec is not installed.*--trtexec"):
        run_trtexec(tmp_path / "a.engine")
    with pytest.raises(InputError, match="--trtexec.*does not exist"):
        find_trtexec(tmp_path / "missing")
    binary = tmp_path / "trtexec"
    binary.write_text("#!/bin/sh\n")
    binary.chmod(0o755)
    assert find_trtexec() == binary


def test_run_trtexec_parses_and_reports_failures(tmp_path):
    binary = tmp_path / "trtexec"
    binary.write_text("")
    seen = []

    def ok(cmd, **kw):
        seen.append(cmd)
        return subprocess.CompletedProcess(cmd, 0, TRT10_LOG, "")

    got = run_trtexec(tmp_path / "m.engine", trtexec=binary, runner=ok)
    assert got["gpu_compute"]["p50_ms"] == 2.36 and got["command"].startswith(str(binary))
    assert seen[0][1] == f"--loadEngine={tmp_path / 'm.engine'}"

    def fails(cmd, **kw):
        return subprocess.CompletedProcess(cmd, 1, "", "[E] Error Code 6: API Usage Error (engine plan mismatch)")

    with pytest.raises(EdgeKDError, match="(?s)trtexec exited 1 timing m.engine.*plan mismatch"):
        run_trtexec(tmp_path / "m.engine", trtexec=binary, runner=fails)

    def hangs(cmd, **kw):
        raise subprocess.TimeoutExpired(cmd, kw["timeout"])

    with pytest.raises(EdgeKDError, match="trtexec could not time m.engine"):
        run_trtexec(tmp_path / "m.engine", trtexec=binary, runner=hangs, timeout_s=1)


def test_cuda_events_bracket_the_engine_only(tmp_path, monkeypatch):
    _, cudart = install_fakes(monkeypatch)
    det = Detector(write_fake_engine(tmp_path / "model.engine"))
    tensor = np.zeros((1, 3, *det.imgsz), np.float32)
    recorded = []
    record = cudart.cudaEventRecord
    cudart.cudaEventRecord = lambda event, stream: (recorded.append(stream), record(event, stream))[1]
    times = time_gpu_compute(det.backend, tensor, runs=5, warmup=2)
    assert times == [FAKE_ENGINE_MS] * 5  # each pair of events holds exactly one execute_async_v3
    assert len(recorded) == 2 * 7 and set(recorded) == {det.backend._stream}
    assert cudart.events == {}  # both events destroyed
    with pytest.raises(InputError, match="at least one run"):
        time_gpu_compute(det.backend, tensor, runs=0)


def test_engine_timings_without_trtexec_is_a_note(tmp_path, monkeypatch):
    install_fakes(monkeypatch)
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr("deploy.trt_timing.TRTEXEC_PLACES", ())
    det = Detector(write_fake_engine(tmp_path / "model.engine"))
    import cv2

    jpeg = cv2.imencode(".jpg", np.full((48, 80, 3), 90, np.uint8))[1].tobytes()
    timing, notes = engine_timings(det, jpeg, runs=4, warmup=1)
    assert timing["gpu_compute"]["p50_ms"] == FAKE_ENGINE_MS and timing["gpu_compute"]["n"] == 4
    assert timing["trtexec"] is None and len(notes) == 1 and "trtexec is not installed" in notes[0]
    timing, notes = engine_timings(det, jpeg, runs=2, warmup=0, use_trtexec=False)
    assert notes == [] and timing["trtexec"] is None


def test_failing_trtexec_does_not_lose_the_event_timing(tmp_path, monkeypatch):
    install_fakes(monkeypatch)
    det = Detector(write_fake_engine(tmp_path / "model.engine"))
    binary = tmp_path / "trtexec"
    binary.write_text("#!/bin/sh\necho '[E] cannot load engine' >&2\nexit 1\n")
    binary.chmod(0o755)
    import cv2

    jpeg = cv2.imencode(".jpg", np.full((48, 80, 3), 90, np.uint8))[1].tobytes()
    timing, notes = engine_timings(det, jpeg, runs=3, warmup=0, trtexec=binary)
    assert timing["gpu_compute"]["n"] == 3 and timing["trtexec"] is None
    assert "trtexec exited 1" in notes[0] and "cannot load engine" in notes[0]


def test_device_bench_adds_engine_columns_to_tensorrt_rows_only(tmp_path, monkeypatch):
    from deploy.device_bench import DeviceBenchOptions, Plan, _engine_timing

    install_fakes(monkeypatch)
    binary = tmp_path / "trtexec"
    binary.write_text(f"#!/bin/sh\ncat <<'LOG'\n{TRT10_LOG}LOG\n")
    binary.chmod(0o755)
    det = Detector(write_fake_engine(tmp_path / "model.engine"))
    import cv2

    jpegs = [cv2.imencode(".jpg", np.full((48, 80, 3), 90, np.uint8))[1].tobytes()]
    options = DeviceBenchOptions(runs=3, warmup=1, trtexec=binary)
    plan = Plan("distill", "tensorrt", "int8", None, "model.engine")
    details, notes = {plan.id: {}}, []
    row = _engine_timing(det, plan, jpegs, options, details, notes, log=lambda m: None)
    assert row == {"gpu_compute_p50_ms": FAKE_ENGINE_MS, "trtexec_gpu_compute_p50_ms": 2.36,
                   "trtexec_throughput_qps": 412.5}  # fmt: skip
    assert details[plan.id]["tensorrt"]["trtexec"]["latency"]["p99_ms"] == 3.2 and notes == []
    ort = Plan("distill", "onnxruntime", "fp32", None, "model.onnx")
    assert _engine_timing(det, ort, jpegs, options, {ort.id: {}}, notes, log=lambda m: None) == {}
