"""Benchmark the training stages: wall time per arm, parameters, GFLOPs, KD curves, final mAP, and a check that
ultralytics' own ``val`` on each saved ``weights/best.pt`` reproduces the metrics the stage reported.

Prints numbers; asserts nothing about speed (targets: the smoke profile trains all four arms in <= 5 min; the
default profile in <= 25 min of training with the teacher at mAP50 >= 0.6). ``--estimate`` extrapolates the
training time of another profile (default: ``default``) from the measured seconds per image-epoch of this run,
scaled by the pixel count, images and epochs of that profile.

    python benchmarks/bench_train.py                         # smoke profile, runs in /tmp/edgekd-bench-train
    python benchmarks/bench_train.py --profile smoke --estimate default --set distillation.ablation=true
"""

from __future__ import annotations

import argparse
import csv
import importlib
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline.cli import resolve_config  # noqa: E402
from pipeline.config import Config  # noqa: E402
from pipeline.runner import Runner, Stage, StageContext  # noqa: E402
from pipeline.stages import train as train_stages  # noqa: E402
from pipeline.train.summary import METRIC_KEYS  # noqa: E402

TARGET_SECONDS = {"smoke": 5 * 60, "default": 25 * 60}


def synth_data_stage() -> Stage:
    """The pipeline's ``data`` stage when it is available, else a synthetic YOLO dataset from ``render_frame``."""
    try:
        module = importlib.import_module("pipeline.stages.data")
        return next(s for s in module.STAGES if s.name == "data")
    except (ImportError, StopIteration, AttributeError):
        pass

    def build(ctx: StageContext) -> None:
        import cv2

        from pipeline.data.synth import CLASSES, render_frame

        syn = ctx.cfg.data.synth
        for split, n in (("train", syn.train), ("val", syn.val)):
            (ctx.out / "images" / split).mkdir(parents=True)
            (ctx.out / "labels" / split).mkdir(parents=True)
            for i in range(n):
                frame = render_frame(ctx.cfg.run.seed, split, i, syn.width, syn.height, reach=syn.reach)
                cv2.imwrite(str(ctx.out / "images" / split / f"{i:06d}.jpg"), frame.image)
                lines = []
                for obj in frame.objects:
                    if obj.labelled:
                        x1, y1, x2, y2 = obj.box
                        cx, cy = (x1 + x2) / 2 / syn.width, (y1 + y2) / 2 / syn.height
                        w, h = (x2 - x1) / syn.width, (y2 - y1) / syn.height
                        lines.append(f"{obj.class_id} {cx:.6f} {cy:.6f} {w:.6f} {h:.6f}")
                (ctx.out / "labels" / split / f"{i:06d}.txt").write_text("".join(f"{x}\n" for x in lines))
        names = "".join(f"  {i}: {n}\n" for i, n in enumerate(CLASSES))
        (ctx.out / "data.yaml").write_text(f"train: images/train\nval: images/val\nnc: {len(CLASSES)}\nnames:\n{names}")

    return Stage("data", build, params=("run.seed", "data.synth"), volatile=("labels/*.cache",))


def kd_trend(run: Path, stage: str) -> dict[str, tuple[float, float]]:
    """{term: (first epoch, last epoch)} of the train/* loss columns."""
    path = run / stage / "curves.csv"
    if not path.is_file():
        return {}
    with open(path) as fh:
        rows = list(csv.DictReader(fh))
    if not rows:
        return {}
    return {k[6:]: (float(rows[0][k]), float(rows[-1][k])) for k in rows[0] if k.startswith("train/")}


def val_check(run: Path, stage: str) -> float:
    """Largest |ultralytics val - stage summary| over precision, recall, mAP50, mAP50-95."""
    from ultralytics import YOLO

    summary = json.loads((run / stage / "summary.json").read_text())
    extra = {k: v for k, v in summary["val_args"].items() if k != "split"}
    metrics = YOLO(str(run / stage / "weights/best.pt")).val(
        data=str(run / "data" / "data.yaml"),
        project=str(run.parent / "val-check"),
        name=stage,
        exist_ok=True,
        device=summary["recipe"]["device"].split(",")[0],
        plots=False,
        verbose=False,
        **extra,
    )
    return max(abs(metrics.results_dict[ul] - summary["final"][k]) for ul, k in METRIC_KEYS.items())


def estimate(cfg: Config, other: Config, seconds: dict[str, float]) -> dict[str, float]:
    """Seconds per arm for ``other``, scaling this run's seconds by pixels x images x epochs."""

    def work(c: Config, teacher: bool) -> float:
        epochs = (c.teacher.epochs or c.train.epochs) if teacher else c.train.epochs
        images = c.data.synth.train + c.data.synth.val
        return c.train.imgsz**2 * images * epochs

    return {stage: s * work(other, stage == "teacher") / work(cfg, stage == "teacher") for stage, s in seconds.items()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--profile", default="smoke")
    ap.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--runs-dir", default="/tmp/edgekd-bench-train")
    ap.add_argument("--estimate", metavar="PROFILE", help="extrapolate the training time of PROFILE")
    ap.add_argument("--no-val-check", action="store_true")
    args = ap.parse_args(argv)
    os.environ.setdefault("YOLO_OFFLINE", "1")
    os.environ.setdefault("YOLO_AUTOINSTALL", "false")
    os.environ.setdefault("YOLO_VERBOSE", "false")

    cfg = resolve_config(args.profile, [f"run.runs_dir={args.runs_dir}", *args.sets])
    stages = [synth_data_stage(), *train_stages.STAGES]
    runner = Runner(cfg, stages, log=lambda m: print(m, flush=True))
    t0 = time.perf_counter()
    results = runner.run()
    total = time.perf_counter() - t0
    run = cfg.run_dir

    seconds = {r.name: r.seconds for r in results if r.name != "data" and r.status == "ran"}
    print(
        f"\nprofile {cfg.profile}: imgsz {cfg.train.imgsz}, epochs {cfg.train.epochs}, "
        f"{cfg.data.synth.train}+{cfg.data.synth.val} images, batch {cfg.train.batch}, device {cfg.train.device}"
    )
    print(f"{'stage':22s} {'status':7s} {'sec':>8s} {'params':>12s} {'GFLOPs640':>10s} {'mAP50':>8s} {'mAP50-95':>9s}")
    for r in results:
        summary_path = run / r.name / "summary.json"
        if r.name == "data" or not summary_path.is_file():
            print(f"{r.name:22s} {r.status:7s} {r.seconds:8.1f}")
            continue
        s = json.loads(summary_path.read_text())
        print(
            f"{r.name:22s} {r.status:7s} {r.seconds:8.1f} {s['params']:12,d} {s['gflops_640']:10.1f} "
            f"{s['final'].get('map50', 0):8.4f} {s['final'].get('map50_95', 0):9.4f}"
        )
    train_total = sum(seconds.values())
    target = TARGET_SECONDS.get(cfg.profile)
    print(
        f"training stages: {train_total:.1f} s (all stages incl. data: {total:.1f} s)"
        + (f"; target <= {target} s: {'met' if train_total <= target else 'NOT met'}" if target else "")
    )

    for stage in [s for s in ("distill", *train_stages.ABLATION_ARMS) if (run / s / "curves.csv").is_file()]:
        trend = kd_trend(run, stage)
        text = ", ".join(f"{k} {a:.4g}->{b:.4g}" for k, (a, b) in trend.items())
        print(f"{stage} loss terms (first -> last epoch): {text}")

    if not args.no_val_check:
        for r in results:
            if (run / r.name / "weights/best.pt").is_file():
                print(f"ultralytics val vs {r.name} summary: max |diff| = {val_check(run, r.name):.2e}")

    if args.estimate and seconds:
        other = resolve_config(args.estimate, [])
        est = estimate(cfg, other, seconds)
        print(
            f"\nestimated training time for profile {args.estimate!r} on this machine (scaled from this run; "
            f"per-run overheads make it an upper bound for small runs):"
        )
        for stage, s in est.items():
            print(f"  {stage:22s} {s / 60:8.1f} min")
        print(
            f"  {'total':22s} {sum(est.values()) / 60:8.1f} min (target {TARGET_SECONDS.get(args.estimate, 0) / 60:.0f})"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
