"""``edgekd bench``: the JSON contract, batch modes, the PyTorch backend, trust, bad inputs, and the
harness's timing agreeing with a plain ONNX Runtime loop on the same file."""

from __future__ import annotations

import json
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from _models import assert_same_detections, bdd_root, real_or_synthetic_frames, tiny_models

from deploy.benchmark import Variant, benchmark_variants
from deploy.hwfloor import measure_matmul
from deploy.latency import STEPS
from pipeline.cli import main

STATS = ("p50_ms", "p90_ms", "p99_ms", "mean_ms", "std_ms")
FAST = ["--runs", "3", "--warmup", "1", "--floor-seconds", "0.05", "--batch", "2"]


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    return tiny_models(tmp_path_factory.getbasetemp() / "bench_tiny_models")


def _bench(tmp_path: Path, *args: str) -> tuple[int, dict]:
    out = tmp_path / "bench.json"
    code = main(["bench", *args, *FAST, "--out", str(out)])
    return code, (json.loads(out.read_text()) if out.is_file() else {})


def test_cli_json_contract_and_batch_modes(models, tmp_path):
    code, data = _bench(tmp_path, "--model", str(models["onnx"]), "--model", str(models["onnx_dyn"]))
    assert code == 0
    assert list(data["variants"]) == ["tiny/onnxruntime", "tiny_dyn/onnxruntime"]
    assert {"int8", "fp32"} == set(data["floor"]) and data["floor"]["int8"]["gmacs_per_s"] > 0
    assert data["image"]["source"] == "synthetic" and (data["image"]["width"], data["image"]["height"]) == (1280, 720)
    for r in data["variants"].values():
        for step in STEPS:
            assert all(np.isfinite(r[step][k]) and r[step][k] >= 0 for k in STATS), (step, r[step])
            assert r[step]["n"] == 3
            assert r[step]["p50_ms"] <= r[step]["p99_ms"]
        assert r["end_to_end"]["mean_ms"] == pytest.approx(sum(r[s]["mean_ms"] for s in STEPS[:3]), rel=1e-6)
        assert len(r["samples_ms"]["end_to_end"]) == 3
        assert r["executed_precision"] == "fp32" and r["runtime"] == "onnxruntime" and r["threads"] == 2
        assert r["floor"]["macs"] > 0 and r["floor"]["rate_precision"] == "fp32"
        assert r["floor"]["floor_ms"] == pytest.approx(
            r["floor"]["macs"] / (r["floor"]["rate_gmacs_per_s"] * 1e6), rel=0.01
        )
        assert 0 < r["pre_post_share"] < 1 and r["size_mb"] > 0 and r["process_peak_rss_mb"] > 0
        assert r["throughput"]["batch_fps"] > 0 and r["conf"] == 0.25
    static, dynamic = data["variants"]["tiny/onnxruntime"], data["variants"]["tiny_dyn/onnxruntime"]
    assert static["throughput"]["batch_mode"] == "sequential" and "sequential" in static["throughput"]["batch_note"]
    assert dynamic["throughput"]["batch_mode"] == "batched" and "batch_note" not in dynamic["throughput"]


def test_cli_openvino_records_executed_precision_and_peer_export(models, tmp_path):
    code, data = _bench(
        tmp_path, "--model", str(models["onnx"]), "--model", str(models["onnx_ultralytics"]),
        "--backend", "openvino", "--backend", "onnxruntime",
    )  # fmt: skip
    assert code == 0
    ov, ul = data["variants"]["tiny/openvino"], data["variants"]["tiny/onnxruntime"]
    assert ov["executed_precision"] == "fp32"  # the f32 hint is always set (no silent bf16)
    assert ul["executed_precision"] == "fp32" and ul["end_to_end"]["n"] == 3  # ultralytics' output0 layout


def test_cli_bf16_hint_is_labelled(models, tmp_path):
    code, data = _bench(tmp_path, "--model", str(models["onnx"]), "--backend", "openvino", "--precision", "bf16")
    assert code == 0
    r = data["variants"]["tiny/openvino"]
    assert r["executed_precision"] in ("bf16", "fp32")  # bf16 where the CPU has it (this one has AVX-512 BF16)
    if r["executed_precision"] == "bf16":
        assert any("executed bf16" in n for n in data["notes"])


def test_interleaved_a_b_a_b_on_real_detectors(models):
    from deploy.benchmark import default_loader

    order: list[str] = []

    def load(v: Variant, threads: int):
        det = default_loader(v, threads)
        infer = det.infer
        det.infer = lambda t, _n=v.id: (order.append(_n), infer(t))[1]  # type: ignore[method-assign]
        return det

    frame = real_or_synthetic_frames(1)[0][0]
    jpeg = cv2.imencode(".jpg", frame)[1].tobytes()
    vs = [Variant("A", models["onnx"]), Variant("B", models["onnx_dyn"])]
    loads: list[str] = []

    def load_and_count(v: Variant, threads: int):
        loads.append(v.id)
        return load(v, threads)

    res = benchmark_variants(vs, jpeg, threads=1, runs=3, warmup=1, batch=1, load=load_and_count, keep_samples=False)
    # loaded A, B: warm-up round, 2 timed rounds (the second starting at B); reloaded B, A: warm-up, 1 timed round;
    # then throughput
    assert loads == ["A", "B", "B", "A"]
    assert "".join(order[:10]) == "AB" + "AB" + "BA" + "BA" + "BA"
    assert res["A"]["inference"]["n"] == res["B"]["end_to_end"]["n"] == 3


def test_harness_sessions_do_not_spin(models):
    from deploy.benchmark import default_loader

    det = default_loader(Variant("A", models["onnx"]), 1)
    opts = det.backend.session.get_session_options()
    assert opts.get_session_config_entry("session.intra_op.allow_spinning") == "0"


def test_harness_p50_agrees_with_plain_onnxruntime(models):
    """The harness's inference p50 within 15% of a plain session.run loop on the same file, interleaved."""
    import onnxruntime as ort

    path = models["onnx"]
    opts = ort.SessionOptions()
    opts.intra_op_num_threads, opts.inter_op_num_threads = 1, 1
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")  # as the harness's sessions
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).random((1, 3, 96, 160), dtype=np.float32)
    plain: list[float] = []

    def plain_run() -> None:  # independent timing, run between the harness's timed runs
        t0 = time.perf_counter()
        sess.run(None, {"images": x})
        plain.append((time.perf_counter() - t0) * 1e3)

    jpeg = cv2.imencode(".jpg", real_or_synthetic_frames(1)[0][0])[1].tobytes()
    for _ in range(3):
        plain_run()  # warm-up
    plain.clear()
    ratios = []
    for _attempt in range(2):  # a shared CPU: one retry if another process hit one measurement
        res = benchmark_variants([Variant("m", path)], jpeg, threads=1, runs=60, warmup=5, batch=1, on_step=plain_run)
        harness_p50 = res["m"]["inference"]["p50_ms"]
        ratios.append(harness_p50 / float(np.median(plain)))
        if abs(ratios[-1] - 1) <= 0.15:
            break
        plain.clear()
    assert abs(ratios[-1] - 1) <= 0.15, f"harness/plain p50 ratios {ratios}"


def test_torch_backend_matches_onnx(models):
    from deploy.detector import Detector
    from pipeline.torch_backend import TorchDetector

    frames, _ = real_or_synthetic_frames(2)
    onnx = Detector(models["onnx"], conf=0.25)
    torch_det = TorchDetector(models["pt"], trust=True, imgsz=(96, 160), conf=0.25, threads=2)
    assert torch_det.backend_name == "torch" and torch_det.executed_precision == "fp32"
    assert torch_det.names == onnx.names and torch_det.imgsz == (96, 160)
    for frame in frames:
        assert_same_detections(onnx.predict(frame), torch_det.predict(frame), iou=0.98, score_tol=2e-3)
    batch = torch_det.infer(np.zeros((3, 3, 96, 160), np.float32))["output0"]
    assert batch.shape[0] == 3  # a real batch on PyTorch


def test_cli_torch_needs_trust(models, tmp_path, capsys):
    code, _ = _bench(tmp_path, "--model", str(models["pt"]), "--backend", "torch", "--imgsz", "96")
    assert code == 2
    err = capsys.readouterr().err
    assert "add --trust-weights to the command" in err and "Traceback" not in err
    assert "=true" not in err and "edgekd run" not in err and ".yaml" not in err  # not the config-key advice
    code, data = _bench(
        tmp_path, "--model", str(models["pt"]), "--backend", "torch", "--imgsz", "96", "--trust-weights"
    )
    assert code == 0
    r = data["variants"]["tiny/torch"]
    assert r["runtime"] == "torch" and r["imgsz"] == [96, 96] and r["throughput"]["batch_mode"] == "batched"
    assert r["floor"] is None  # no ONNX to count MACs on


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--model", "MISSING.onnx"], "does not exist"),
        (["--model", "ONNX", "--runs", "0"], "--runs 0"),
        (
            [
                "--model",
                "ONNX",
                "--model",
                "ONNX",
                "--backend",
                "onnxruntime",
                "--backend",
                "openvino",
                "--backend",
                "openvino",
            ],
            "--backend given 3 times",
        ),  # noqa: E501
        (["--model", "ONNX", "--backend", "tensorrt"], "tensorrt"),
        (["--model", "ONNX", "--image", "BAD"], "not a decodable"),
        (["--model", "ONNX", "--imgsz", "320"], "not --imgsz 320"),
        (["--model", "ONNX", "--conf", "1.5"], "--conf 1.5"),
    ],
)
def test_cli_bad_inputs_exit_2(models, tmp_path, capsys, args, needle):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not a jpeg")
    subst = {"ONNX": str(models["onnx"]), "MISSING.onnx": str(tmp_path / "missing.onnx"), "BAD": str(bad)}
    code = main(["bench", *FAST, *[subst.get(a, a) for a in args], "--no-floor"])  # the case's own flags win
    err = capsys.readouterr().err
    assert code == 2, err
    assert needle in err and "Traceback" not in err


def test_cli_tensorrt_engine_without_tensorrt_exit_3(tmp_path, capsys):
    pytest.importorskip("numpy")
    from deploy.backends import is_available

    if is_available("tensorrt"):
        pytest.skip("TensorRT is installed here; this checks the message where it is not")
    engine = tmp_path / "m.engine"
    engine.write_bytes(b"\0" * 64)
    code = main(["bench", "--model", str(engine), *FAST, "--no-floor"])
    assert code == 3
    assert "TensorRT" in capsys.readouterr().err


def test_default_image_is_a_deterministic_synthetic_frame():
    from pipeline.bench import load_image

    a, info = load_image(None)
    b, _ = load_image(None)
    assert a == b and a[:2] == b"\xff\xd8"  # JPEG
    assert (info["width"], info["height"], info["quality"]) == (1280, 720, 90)


def test_real_bdd100k_frame_as_image():
    from pipeline.bench import load_image

    frames = sorted((bdd_root() / "images").glob("*.jpg"))[:1]
    if not frames:
        pytest.skip(f"BDD100K-mini not found at {bdd_root()}")
    data, info = load_image(frames[0])
    assert info["source"] == frames[0].name and (info["width"], info["height"]) == (1280, 720)
    assert len(data) == frames[0].stat().st_size


def test_matmul_rate_int8_faster_than_fp32_per_mac():
    """Sanity of the floor's two rates on a CPU with int8 dot products (VNNI): int8 >= fp32."""
    int8 = measure_matmul("int8", size=512, threads=1, seconds=0.2)
    fp32 = measure_matmul("fp32", size=512, threads=1, seconds=0.2)
    assert int8.gmacs_per_s > 0 and fp32.gmacs_per_s > 0
    for rate in (int8, fp32):  # the best of the windows is at least the whole run's average
        assert rate.mean_gmacs_per_s is not None and rate.gmacs_per_s >= rate.mean_gmacs_per_s
    assert int8.gmacs_per_s > 0.8 * fp32.gmacs_per_s


def test_rate_for_and_shares_against_references():
    from deploy.benchmark import pre_post_share, rate_for

    assert [rate_for(e, p) for e, p in [("mixed", "int8"), ("int8", None), ("fp32", "int8"), ("bf16", "fp32")]] == [
        "int8",
        "int8",
        "fp32",
        "fp32",
    ]
    assert rate_for("unknown", "int8") == "int8" and rate_for(None, None) == "fp32"
    steps = {"preprocess": [1.0, 3.0], "inference": [10.0, 10.0], "postprocess": [1.0, 1.0]}
    steps["end_to_end"] = [sum(x) for x in zip(*steps.values(), strict=True)]
    assert pre_post_share(steps) == pytest.approx(6 / 26, abs=1e-4)
    assert pre_post_share({k: [] for k in STEPS}) is None


def test_batch_mode_reference():
    from types import SimpleNamespace

    from deploy.latency import batch_mode

    def det(fixed):
        return SimpleNamespace(backend=SimpleNamespace(fixed_batch=fixed))

    assert batch_mode(det(None), 4) == ("batched", None)
    assert batch_mode(det(4), 4) == ("batched", None)
    mode, note = batch_mode(det(1), 4)
    assert mode == "sequential" and "4 sequential call(s)" in note
    assert batch_mode(det(3), 4)[1].startswith("the model is built for batch 3: 4 images ran as 2")
    assert batch_mode(object(), 4)[0] == "unknown"


def test_precision_notes_and_unique_ids(tmp_path):
    from pipeline.bench import precision_notes
    from pipeline.commands.bench import _unique_id

    notes = precision_notes(
        {
            "a": {"precision": "fp32", "executed_precision": "bf16"},
            "b": {"precision": "int8", "executed_precision": "mixed"},
            "c": {"precision": "fp32", "executed_precision": "fp32"},
        }
    )
    assert len(notes) == 1 and notes[0].startswith("a: the file is fp32 but the runtime executed bf16")
    taken: list[Variant] = []
    for folder in ("x", "y", "y"):
        path = tmp_path / folder / "m.onnx"
        taken.append(Variant(_unique_id(path, "onnxruntime", taken), path))
    assert [v.id for v in taken] == ["m/onnxruntime", "y/m/onnxruntime", "m/onnxruntime#2"]
