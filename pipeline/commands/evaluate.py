"""``edgekd metrics`` (COCO GT + detections -> metrics) and ``edgekd eval`` (a model on a dataset -> metrics).

Both import only the deploy side (numpy, OpenCV, faster-coco-eval, the runtimes): no torch.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from deploy.errors import InputError


def register(sub: argparse._SubParsersAction) -> None:
    m = sub.add_parser(
        "metrics",
        help="accuracy, false alarms (FPPI, LAMR), calibration of COCO detections against COCO ground truth",
        description="Per class and overall: mAP50, mAP50-95, the operating point at a recall target (precision, "
        "recall, FPPI, false alarms per hour), LAMR, D-ECE, recall by object height and image condition.",
    )
    m.add_argument("--gt", required=True, type=Path, metavar="GT.json", help="COCO ground truth")
    m.add_argument("--dt", required=True, type=Path, metavar="DT.json", help="COCO detection results (a list)")
    m.add_argument("--out", type=Path, metavar="M.json", help="write every metric, curve and breakdown as JSON")
    m.add_argument("--distractors", type=Path, metavar="D.json", help="distractor boxes (synthetic data)")
    m.add_argument(
        "--vs",
        type=Path,
        metavar="DT_B.json",
        help="another detector's results on the same images: also print mAP50-95(--dt) - mAP50-95(--vs) with a "
        "paired-bootstrap confidence interval over images (needs pycocotools: pip install 'edgekd[train]')",
    )
    m.add_argument("--resamples", type=int, default=1000, help="bootstrap resamples for --vs (default 1000)")
    m.add_argument("--confidence", type=float, default=0.95, help="confidence of the --vs interval (default 0.95)")
    _add_metric_args(m)
    m.set_defaults(func=_metrics)

    e = sub.add_parser(
        "eval",
        help="run an exported model on a dataset split and compute its metrics",
        description="Runs deploy.detector.Detector on the images of DIR/annotations/{split}_coco.json and writes "
        "detections.json (COCO results) and metrics.json into --out.",
    )
    e.add_argument("--model", required=True, type=Path, metavar="FILE", help=".onnx, OpenVINO .xml or TensorRT .engine")
    e.add_argument("--data", required=True, type=Path, metavar="data.yaml", help="dataset (edgekd layout)")
    e.add_argument("--split", default="val", help="annotations/{split}_coco.json to evaluate (default: val)")
    e.add_argument("--out", type=Path, metavar="DIR", help="output folder (default: eval-<model name>-<split>)")
    e.add_argument("--conf", type=float, default=0.001, help="detection score threshold (default 0.001)")
    e.add_argument("--iou", type=float, default=0.7, help="NMS IoU threshold (default 0.7)")
    e.add_argument("--max-det", type=int, default=300, help="detections kept per image (default 300)")
    e.add_argument("--backend", default=None, help="runtime (onnxruntime, openvino, tensorrt); default from the file")
    e.add_argument("--threads", type=int, default=None, help="runtime CPU threads")
    e.add_argument("--corruption", default=None, help="corrupt every image first: night, fog, rain, blur, noise, jpeg")
    e.add_argument("--severity", type=int, default=3, help="corruption severity 1..5 (default 3)")
    e.add_argument("--seed", type=int, default=0, help="corruption seed (default 0)")
    _add_metric_args(e)
    e.set_defaults(func=_eval)


def _add_metric_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--recall-target", type=float, default=0.9, help="recall of the operating point (default 0.9)")
    p.add_argument("--fps", type=float, default=30.0, help="frame rate for false alarms per hour (default 30)")
    p.add_argument("--dece-bins", type=int, default=10, help="confidence bins of D-ECE (default 10)")
    p.add_argument("--quiet", "-q", action="store_true", help="no table on the console")


def _options(args: argparse.Namespace):
    from deploy.metrics import EvalOptions

    return EvalOptions(recall_target=args.recall_target, fps=args.fps, dece_bins=args.dece_bins)


def _metrics(args: argparse.Namespace) -> int:
    from deploy.metrics import evaluate_files

    if args.vs is not None and args.resamples < 1:
        raise InputError(f"--resamples: got {args.resamples}, expected a positive number of bootstrap resamples")
    if args.vs is not None and not 0 < args.confidence < 1:
        raise InputError(f"--confidence: got {args.confidence}, expected a value in (0, 1), e.g. 0.95")
    result = evaluate_files(args.gt, args.dt, _options(args), args.distractors)
    if args.vs is not None:
        result["paired"] = _paired(args)
    if args.out is not None:
        _write_json(args.out, result)
    if not args.quiet:
        print_table(result, title=f"{args.dt.name} vs {args.gt.name}")
        if args.vs is not None:
            from pipeline.significance import describe

            p = result["paired"]
            print(f"mAP50-95 {args.dt} - {args.vs}: {describe(p)} ({p['n_images']} images, {p['resamples']} resamples)")
    return 0


def _paired(args: argparse.Namespace) -> dict[str, Any]:
    """The paired bootstrap of ``--dt`` against ``--vs`` (:mod:`pipeline.significance`)."""
    from deploy.errors import BackendUnavailableError
    from deploy.metrics.cocoio import load_json, parse_detections, parse_ground_truth

    try:
        import pycocotools  # noqa: F401

        from pipeline.significance import image_matches, paired_bootstrap
    except ImportError:
        raise BackendUnavailableError("--vs needs pycocotools: pip install 'edgekd[train]' (or pycocotools)") from None
    gt, dt, vs = load_json(args.gt, "ground truth"), load_json(args.dt, "detections"), load_json(args.vs, "detections")
    parse_detections(vs, parse_ground_truth(gt, str(args.gt)), str(args.vs))  # --dt was checked by evaluate_files
    a, b = (image_matches(gt, x["annotations"] if isinstance(x, dict) else x) for x in (dt, vs))  # both forms parse
    d = paired_bootstrap(a, b, resamples=args.resamples, confidence=args.confidence)
    if d is None:
        raise InputError(f"--gt {str(args.gt)!r}: no ground-truth boxes, so mAP50-95 and its difference are undefined")
    return {"vs": str(args.vs), **d.as_dict()}


def eval_ground_truth(data_yaml: Path, split: str) -> tuple[Path, Path]:
    """(dataset root, ``annotations/<split>_coco.json``) of an ultralytics data.yaml, as ``edgekd eval`` reads them;
    InputError naming the file when the yaml is not a mapping or the split has no COCO ground truth."""
    from pipeline.cli import read_yaml

    data = read_yaml(data_yaml, "data.yaml")
    if not isinstance(data, dict):
        raise InputError(
            f"data.yaml {str(data_yaml)!r}: expected a mapping (ultralytics data.yaml), got {type(data).__name__}"
        )
    root = Path(data_yaml).resolve().parent
    if isinstance(data.get("path"), str):
        root = Path(data["path"]) if Path(data["path"]).is_absolute() else root / data["path"]
    gt_path = root / "annotations" / f"{split}_coco.json"
    if not gt_path.is_file():
        raise InputError(
            f"{str(gt_path)!r} does not exist: --split {split!r} of {str(data_yaml)!r} has no COCO ground truth; "
            "create the dataset with `edgekd data synth` or `edgekd data bdd100k`, or pick another --split"
        )
    return root, gt_path


def _eval(args: argparse.Namespace) -> int:
    options = _options(args)
    root, gt_path = eval_ground_truth(args.data, args.split)
    corruption = None
    if args.corruption is not None:
        from deploy.corruptions import CorruptionSpec

        corruption = CorruptionSpec(args.corruption, args.severity, args.seed)
    if not args.model.is_file():
        raise InputError(f"--model {str(args.model)!r} does not exist; expected an exported .onnx/.xml/.engine file")
    from deploy.detector import Detector
    from deploy.metrics.cocoio import load_json
    from deploy.metrics.evaluate import evaluate

    gt = load_json(gt_path, "ground truth")
    if not isinstance(gt, dict) or not isinstance(gt.get("images"), list):
        raise InputError(f"ground truth {str(gt_path)!r}: expected a COCO object with an 'images' list")
    detector = Detector(
        args.model, backend=args.backend, conf=args.conf, iou=args.iou, max_det=args.max_det, threads=args.threads
    )
    results = _predict_with_progress(detector, gt, root, corruption, quiet=args.quiet)
    dis_path = root / "annotations" / f"{args.split}_distractors.json"
    distractors = load_json(dis_path, "distractors") if dis_path.is_file() else None
    metrics = evaluate(gt, results, options, distractors, sources=(str(gt_path), "predictions", str(dis_path)))
    metrics["params"].update(
        model=args.model.name,
        split=args.split,
        conf=args.conf,
        nms_iou=args.iou,
        max_det=args.max_det,
        backend=detector.backend_name if hasattr(detector, "backend_name") else args.backend,
        corruption=None
        if corruption is None
        else {"kind": corruption.kind, "severity": corruption.severity, "seed": corruption.seed},
    )
    out = args.out or Path(f"eval-{args.model.stem}-{args.split}")
    out.mkdir(parents=True, exist_ok=True)
    _write_json(out / "detections.json", results)
    _write_json(out / "metrics.json", metrics)
    if not args.quiet:
        print_table(metrics, title=f"{args.model.name} on {args.split} ({len(gt['images'])} images)")
        print(f"wrote {out / 'detections.json'} and {out / 'metrics.json'}")
    return 0


def _predict_with_progress(detector: Any, gt: dict, root: Path, corruption: Any, quiet: bool) -> list[dict]:
    from deploy.metrics.evaluate import predict_coco

    if quiet:
        return predict_coco(detector, gt, root, corruption)
    from rich.progress import Progress

    with Progress(transient=True) as bar:
        task = bar.add_task("predicting", total=len(gt["images"]))
        return predict_coco(
            detector, gt, root, corruption, progress=lambda done, total: bar.update(task, completed=done)
        )


def _write_json(path: Path, obj: Any) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(obj, indent=1, allow_nan=False) + "\n")
    except OSError as exc:
        raise InputError(f"cannot write {str(path)!r}: {exc.strerror}") from None


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.{digits}f}"
    return str(value)


COLUMNS = (
    ("n_gt", "GT"),
    ("map50", "mAP50"),
    ("map50_95", "mAP50-95"),
    ("op_threshold", "thr@op"),
    ("precision_at_op", "P@op"),
    ("recall_at_op", "R@op"),
    ("fppi_at_op", "FPPI@op"),
    ("fa_per_hour", "FA/h"),
    ("lamr", "LAMR"),
    ("dece", "D-ECE"),
)


def print_table(result: dict[str, Any], title: str = "metrics") -> None:
    """The per-class + overall table on the console (rich)."""
    from rich.console import Console
    from rich.table import Table

    params = result["params"]
    table = Table(
        title=f"{title}\nrecall target {params['recall_target']:g}, {params['fps']:g} fps", title_justify="left"
    )
    table.add_column("class")
    for _, label in COLUMNS:
        table.add_column(label, justify="right")
    for name, row in result["per_class"].items():
        table.add_row(name, *(_fmt(row[k]) for k, _ in COLUMNS))
    overall = result["overall"]
    table.add_row("[bold]overall[/]", *(f"[bold]{_fmt(overall[k])}[/]" for k, _ in COLUMNS), end_section=True)
    console = Console()
    if console.width < 132:  # never squeeze numbers into ellipses (pipes, CI logs and narrow terminals)
        console = Console(width=132)
    console.print(table)
    missed = [
        f"{n} (max recall {_fmt(r['max_recall'])})"
        for n, r in result["per_class"].items()
        if r["n_gt"] and not r["op_reached"]
    ]
    if missed:
        console.print(
            f"[yellow]recall target not reached for: {', '.join(missed)}; their operating point is the maximum recall[/]"
        )
