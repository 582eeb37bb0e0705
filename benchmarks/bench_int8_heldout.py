"""edgekd INT8 against ultralytics' INT8 export of the same weights, and against FP32, on a held-out set.

For each run directory (``edgekd run`` with ``benchmark.peer_models`` listing the models) and model, runs
``edgekd eval`` on ``--data``'s ``--split`` for the FP32 export, edgekd's head_float INT8 (OpenVINO, ONNX Runtime) and
ultralytics' INT8 exports from the peers stage, then prints the paired-bootstrap difference of mAP50-95 (points, with
its interval over the images) for edgekd - ultralytics and INT8 - FP32 per runtime. A run's own validation split is
small; a large held-out split (same generator, another seed) narrows the intervals. Prints numbers; asserts nothing.

    python benchmarks/bench_int8_heldout.py --runs runs/smoke-seed0 runs/smoke-seed1 --models distill teacher \\
        --data /tmp/heldout/data.yaml --out /tmp/heldout-evals

Detections are cached in ``--out`` (delete a folder to redo it).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

PAIRS = (("openvino", "ours_ov", "ul_ov"), ("onnxruntime", "ours_ort", "ul_ort"),
         ("openvino", "ours_ov", "fp32"), ("onnxruntime", "ours_ort", "fp32"))  # fmt: skip


def artifacts(run: Path, model: str) -> dict[str, Path]:
    """The five models to compare in one run; raises SystemExit naming a missing one."""
    peers = run / "peers" / model
    ul_ov = sorted((peers / "ultralytics_openvino_int8").glob("*/weights.xml"))
    found = {
        "fp32": run / "export" / f"{model}.onnx",
        "ours_ov": run / "quantize" / model / "openvino_head_float.xml",
        "ours_ort": run / "quantize" / model / "onnxruntime_head_float.onnx",
        "ul_ov": ul_ov[0] if ul_ov else peers / "ultralytics_openvino_int8" / "*" / "weights.xml",
        "ul_ort": peers / "ultralytics_onnx_int8" / "weights_int8.onnx",
    }
    missing = [f"{k}: {p}" for k, p in found.items() if not p.is_file()]
    if missing:
        raise SystemExit(
            f"{run}: {model}: missing {'; '.join(missing)} (run with benchmark.peer_models including {model!r})"
        )
    return found


def detections(model: Path, data: Path, split: str, out: Path, threads: int) -> Path:
    """``edgekd eval`` once per model file; the COCO detections it wrote."""
    dets = out / "detections.json"
    if not dets.is_file():
        cmd = [sys.executable, "-m", "pipeline.cli", "eval", "--model", str(model), "--data", str(data),
               "--split", split, "--out", str(out), "--threads", str(threads), "-q"]  # fmt: skip
        subprocess.run(cmd, check=True)
    return dets


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=Path, nargs="+", required=True, help="run directories")
    ap.add_argument("--models", nargs="+", default=["distill"], help="models with peers (default: distill)")
    ap.add_argument("--data", type=Path, required=True, help="held-out data.yaml with annotations/<split>_coco.json")
    ap.add_argument("--split", default="val")
    ap.add_argument("--out", type=Path, required=True, help="folder for the detections (a cache)")
    ap.add_argument("--resamples", type=int, default=1000)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)

    import json

    from pipeline.commands.evaluate import eval_ground_truth
    from pipeline.significance import describe, image_matches, paired_bootstrap

    _, gt_path = eval_ground_truth(args.data, args.split)
    gt = json.loads(gt_path.read_text())
    print(f"held-out: {gt_path} ({len(gt['images'])} images); {args.resamples} paired-bootstrap resamples")
    print("\n| run | model | runtime | a - b | mAP50-95 difference |\n|---|---|---|---|---|")
    for run in args.runs:
        for model in args.models:
            files = artifacts(run, model)
            cache = args.out / run.name / model
            matches = {
                k: image_matches(
                    gt, json.loads(detections(p, args.data, args.split, cache / k, args.threads).read_text())
                )
                for k, p in files.items()
            }
            for runtime, a, b in PAIRS:
                d = paired_bootstrap(matches[a], matches[b], resamples=args.resamples)
                if d is None:
                    raise SystemExit(f"{gt_path}: no ground-truth boxes")
                print(f"| {run.name} | {model} | {runtime} | {a} - {b} | {describe(d.as_dict())} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
