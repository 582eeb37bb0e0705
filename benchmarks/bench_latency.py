"""Latency targets of issue 8 on this machine: YOLOv8-S (nc=3) at 640x640, batch 1, 2 threads.

Builds a randomly initialised YOLOv8-S from ``yolov8s.yaml`` (latency does not depend on the weights'
values, except through how many boxes pass the confidence threshold), exports it with the project's
export (:mod:`pipeline.export`), quantizes it with the project's facade (:mod:`pipeline.quant`) for ONNX
Runtime and OpenVINO, exports ultralytics' own FP32/INT8 peers of the same weights (:mod:`pipeline.peers`),
then times everything interleaved with the harness (:mod:`deploy.benchmark`) and prints the targets:

1. student INT8 inference p50 within 1.25x of its compute floor on its best backend;
2. student INT8 (best backend) >= 3x faster than student FP32 on ONNX Runtime;
3. preprocess + postprocess <= 10% of end to end;
4. edgekd INT8 no slower than ultralytics' INT8 export on either runtime;
5. the harness's p50 on the ONNX Runtime INT8 file alone, then a plain ``session.run`` loop right after: within 15%.

Run (a few minutes; the CPU is shared, so run it when the load average is low)::

    python benchmarks/bench_latency.py --work /tmp/edgekd-bench --runs 50
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np

NAMES = ("pedestrian", "cyclist", "car")
IMGSZ = 640


def build_student(work: Path, seed: int = 0) -> Path:
    """A random YOLOv8-S (3 classes) saved as an ultralytics checkpoint."""
    import torch
    from ultralytics.nn.tasks import DetectionModel

    pt = work / "student.pt"
    if pt.is_file():
        return pt
    torch.manual_seed(seed)
    model = DetectionModel("yolov8s.yaml", nc=len(NAMES), verbose=False).eval()
    model.names = dict(enumerate(NAMES))  # type: ignore[assignment]  # plain attributes on the nn.Module
    model.args = {"task": "detect", "imgsz": IMGSZ}  # type: ignore[assignment]
    torch.save({"model": model, "train_args": {"task": "detect", "imgsz": IMGSZ}, "epoch": -1}, pt)
    return pt


def calibration_frames(work: Path, n: int) -> list[Path]:
    """``n`` synthetic 1280x720 road scenes (JPEG q90) to calibrate INT8 on."""
    import cv2

    from pipeline.data.synth import render_frame

    folder = work / "calib"
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        path = folder / f"{i:04d}.jpg"
        if not path.is_file():
            cv2.imwrite(str(path), render_frame(1, "train", i, 1280, 720).image, [cv2.IMWRITE_JPEG_QUALITY, 90])
        paths.append(path)
    return paths


def export_and_quantize(pt: Path, work: Path, calib: list[Path]) -> dict[str, Path]:
    """edgekd's FP32 ONNX export and its INT8 ONNX Runtime / OpenVINO quantizations (head in float)."""
    from pipeline.export import ExportSpec, export_onnx, load_detection_model
    from pipeline.quant import CalibrationMethod, Recipe, Runtime, quantize

    onnx_path = work / "export/student.onnx"
    if not onnx_path.is_file():
        export_onnx(load_detection_model(pt), onnx_path, ExportSpec((IMGSZ, IMGSZ)))
    out = {"fp32": onnx_path}
    for runtime in (Runtime.ONNXRUNTIME, Runtime.OPENVINO):
        suffix = ".xml" if runtime is Runtime.OPENVINO else ".onnx"
        target = work / "quantize/student" / f"{runtime.value}_{Recipe.HEAD_FLOAT.value}{suffix}"
        if not target.is_file():
            t0 = time.perf_counter()
            result = quantize(onnx_path, runtime=runtime, calibration=calib, method=CalibrationMethod.MINMAX,
                              recipe=Recipe.HEAD_FLOAT, out=target.parent)  # fmt: skip
            target = Path(result.path)
            print(f"quantized {runtime.value} in {time.perf_counter() - t0:.0f} s -> {target}", file=sys.stderr)
        out[runtime.value] = target
    return out


def ultralytics_peers(pt: Path, work: Path, calib: list[Path]) -> dict[str, tuple[Path, str, str]]:
    """ultralytics' own exports of the same weights: {variant: (path, runtime, precision)}."""
    from pipeline.peers import PEER_VARIANTS, export_peers, write_calibration_yaml

    root = work / "peers"
    listing = root / "peers.json"
    if not listing.is_file():
        root.mkdir(parents=True, exist_ok=True)
        data_yaml = write_calibration_yaml(calib, dict(enumerate(NAMES)), root)
        arts = export_peers("student", pt, data_yaml, root, imgsz=IMGSZ)
        rows = [{"variant": a.variant, "runtime": a.runtime, "precision": a.precision, "path": a.path.as_posix()}
                for a in arts]  # fmt: skip
        listing.write_text(json.dumps(rows, indent=1))
    rows = json.loads(listing.read_text())
    expected = {name for name, _ in PEER_VARIANTS}
    return {r["variant"]: (root / r["path"], r["runtime"], r["precision"]) for r in rows if r["variant"] in expected}


def variants(files: dict[str, Path], peers: dict[str, tuple[Path, str, str]]) -> list:
    from deploy.benchmark import Variant

    fp32 = files["fp32"]

    def v(model_path: Path, runtime: str, precision: str, recipe: str) -> Variant:
        meta = {"model": "student", "runtime": runtime, "precision": precision, "recipe": recipe}
        vid = f"student/{runtime}/{precision}/{recipe}"
        return Variant(vid, model_path, backend=runtime, precision=precision, macs_from=fp32, meta=meta,
                       options={"conf": 0.25})  # fmt: skip

    out = [
        v(fp32, "onnxruntime", "fp32", "float"),
        v(fp32, "openvino", "fp32", "float"),
        v(files["onnxruntime"], "onnxruntime", "int8", "head_float"),
        v(files["openvino"], "openvino", "int8", "head_float"),
    ]
    out += [v(path, runtime, precision, "ultralytics") for path, runtime, precision in peers.values()]
    return out


def plain_onnxruntime_p50(path: Path, threads: int, runs: int) -> float:
    """p50 (ms) of a bare ``session.run`` loop: the independent check of the harness's inference timing."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")  # as the harness's sessions
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).random((1, 3, IMGSZ, IMGSZ), dtype=np.float32)
    name = sess.get_inputs()[0].name
    for _ in range(3):
        sess.run(None, {name: x})
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        sess.run(None, {name: x})
        times.append((time.perf_counter() - t0) * 1e3)
    return float(np.median(times))


def harness_alone_p50(variant, jpeg: bytes, info: dict, threads: int, runs: int) -> float:
    """p50 (ms) of the harness's inference step on one variant alone (no interleaving), for the plain check."""
    from pipeline.bench import run_benchmark

    payload = run_benchmark([variant], jpeg, info, threads=threads, runs=runs, warmup=3, batch=1, floor=False)
    return float(payload["variants"][variant.id]["inference"]["p50_ms"])


def targets(payload: dict, harness_p50: float, plain_p50: float) -> list[tuple[str, bool, str]]:
    """(target, met, numbers) rows."""
    res = payload["variants"]
    p50 = {vid: r["inference"]["p50_ms"] for vid, r in res.items()}
    int8 = {vid: p for vid, p in p50.items() if "/int8/head_float" in vid}
    best = min(int8, key=int8.__getitem__)
    floor = res[best]["floor"]
    fp32_ort = p50["student/onnxruntime/fp32/float"]
    share = res[best]["pre_post_share"]
    rows = [
        ("INT8 p50 <= 1.25x floor", floor["ratio_to_floor"] <= 1.25,
         f"{best}: {p50[best]:.1f} ms vs floor {floor['floor_ms']:.1f} ms ({floor['gmacs']:.2f} GMAC at "
         f"{floor['rate_gmacs_per_s']:.0f} GMAC/s) = {floor['ratio_to_floor']:.2f}x"),
        (">= 3x faster than FP32 ORT", fp32_ort / p50[best] >= 3,
         f"{fp32_ort:.1f} / {p50[best]:.1f} ms = {fp32_ort / p50[best]:.2f}x"),
        ("pre+post <= 10% of end to end", share <= 0.10,
         f"{best}: {100 * share:.1f}% (pre {res[best]['preprocess']['p50_ms']:.1f} ms, post "
         f"{res[best]['postprocess']['p50_ms']:.2f} ms, e2e {res[best]['end_to_end']['p50_ms']:.1f} ms)"),
    ]  # fmt: skip
    for runtime in ("onnxruntime", "openvino"):
        ours, theirs = f"student/{runtime}/int8/head_float", f"student/{runtime}/int8/ultralytics"
        if ours in p50 and theirs in p50:
            rows.append((f"no slower than ultralytics INT8 on {runtime}", p50[ours] <= p50[theirs],
                         f"{p50[ours]:.1f} vs {p50[theirs]:.1f} ms ({100 * (p50[ours] / p50[theirs] - 1):+.1f}%)"))
        else:
            rows.append((f"no slower than ultralytics INT8 on {runtime}", False, f"{theirs} missing"))
    harness = harness_p50
    rows.append(("harness p50 within 15% of plain onnxruntime", abs(harness / plain_p50 - 1) <= 0.15,
                 f"{harness:.1f} vs {plain_p50:.1f} ms ({100 * (harness / plain_p50 - 1):+.1f}%)"))  # fmt: skip
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=Path("/tmp/edgekd-bench-latency"), help="artifacts (reused)")
    ap.add_argument("--runs", type=int, default=50)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--calib", type=int, default=16, help="calibration frames")
    ap.add_argument("--image", type=Path, help="JPEG to time (default: a synthetic 1280x720 frame)")
    ap.add_argument("--build-only", action="store_true", help="build the artifacts, time nothing")
    ap.add_argument("--reuse", action="store_true",
                    help="reuse the exported/quantized/peer files already in --work (default: rebuild them, so "
                         "the timings are of what the current code makes)")  # fmt: skip
    args = ap.parse_args(argv)
    os.environ.setdefault("YOLO_OFFLINE", "1")
    os.environ.setdefault("YOLO_AUTOINSTALL", "false")
    from rich.console import Console

    from pipeline.bench import floor_lines, load_image, run_benchmark, table

    args.work.mkdir(parents=True, exist_ok=True)
    if not args.reuse:
        for stale in ("export", "quantize", "peers"):
            shutil.rmtree(args.work / stale, ignore_errors=True)
    pt = build_student(args.work)
    calib = calibration_frames(args.work, args.calib)
    files = export_and_quantize(pt, args.work, calib)
    peers = ultralytics_peers(pt, args.work, calib)
    if args.build_only:
        return 0
    jpeg, info = load_image(args.image)
    load_now = os.getloadavg()
    print(f"load average before timing: {load_now[0]:.2f} {load_now[1]:.2f} {load_now[2]:.2f}", file=sys.stderr)
    payload = run_benchmark(variants(files, peers), jpeg, info, threads=args.threads, runs=args.runs,
                            warmup=args.warmup, batch=4, reference="student/onnxruntime/fp32/float")  # fmt: skip
    ort_int8 = next(v for v in variants(files, peers) if v.id == "student/onnxruntime/int8/head_float")
    check_runs = max(20, args.runs // 2)
    harness = harness_alone_p50(ort_int8, jpeg, info, args.threads, check_runs)  # then, in the same minute:
    plain = plain_onnxruntime_p50(files["onnxruntime"], args.threads, runs=check_runs)
    (args.work / "bench.json").write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n")
    console = Console(width=200)
    console.print(table(payload))
    for line in [*floor_lines(payload), *payload["notes"]]:
        console.print(line)
    console.print(f"machine: {payload['machine']['cpu']}, load {payload['machine']['load_before']} -> "
                  f"{payload['machine']['load_after']}")  # fmt: skip
    met = 0
    rows = targets(payload, harness, plain)
    for name, ok, numbers in rows:
        met += ok
        console.print(f"[{'green' if ok else 'red'}]{'MET ' if ok else 'MISS'}[/] {name}: {numbers}")
    console.print(f"{met}/{len(rows)} targets met; JSON in {args.work / 'bench.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
