"""What a trained arm leaves behind: the checkpoint, ``curves.csv`` and ``summary.json``.

- :func:`finalize_checkpoint`: ultralytics' final ``best.pt`` made location-free (no temporary-folder paths, no
  date, no git info) after checking that it holds a plain ``DetectionModel`` (no teacher, no projector);
- :func:`read_results` / :func:`write_curves`: every loss term and val mAP50 / mAP50-95 per epoch;
- :func:`model_stats`: parameters and GFLOPs at 640 and at the training size;
- :func:`final_metrics`: the final validation metrics from ultralytics' validator.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

from deploy.errors import StageError

SUMMARY_SCHEMA = "edgekd.train_summary/v1"
#: ultralytics' metric keys -> edgekd's names.
METRIC_KEYS = {
    "metrics/precision(B)": "precision",
    "metrics/recall(B)": "recall",
    "metrics/mAP50(B)": "map50",
    "metrics/mAP50-95(B)": "map50_95",
}
#: results.csv columns that are not reproducible (wall-clock) and are left out of curves.csv.
VOLATILE_COLUMNS = ("time",)
#: train_args that name ultralytics' temporary run folder.
PATH_ARGS = ("project", "name", "save_dir")


def finalize_checkpoint(src: Path, dst: Path) -> Any:
    """Copy ultralytics' final checkpoint ``src`` to ``dst`` without machine- or time-specific metadata.

    ``src`` was written by this stage's own trainer moments ago. Returns the (FP16) ``DetectionModel`` it holds;
    StageError if it holds anything else (e.g. a distillation wrapper that was not unwrapped).
    """
    from ultralytics.nn.tasks import DetectionModel
    from ultralytics.utils.patches import torch_load

    ckpt = torch_load(str(src), map_location="cpu")
    if isinstance(ckpt, dict) and ckpt.get("model") is None and ckpt.get("ema") is not None:
        # saved by the trainer but not yet stripped by its final evaluation (the stage stopped in between)
        from ultralytics.utils.torch_utils import strip_optimizer

        strip_optimizer(str(src))
        ckpt = torch_load(str(src), map_location="cpu")
    model = ckpt.get("model") if isinstance(ckpt, dict) else None
    if type(model) is not DetectionModel:
        raise StageError(f"{src}: expected a plain ultralytics DetectionModel checkpoint, got {type(model).__name__}")
    for key in ("date", "git"):
        ckpt[key] = None
    ckpt["train_args"] = _clean_args(ckpt.get("train_args"))
    model.args = _clean_args(getattr(model, "args", None))
    dst.parent.mkdir(parents=True, exist_ok=True)
    import torch

    torch.save(ckpt, dst)
    return model


def _clean_args(args: Any) -> Any:
    if not isinstance(args, dict):
        return args
    return {k: (None if k in PATH_ARGS else v) for k, v in args.items()}


def model_stats(model: Any, imgsz: int) -> dict[str, Any]:
    """{"params": int, "gflops_640": float, "gflops_imgsz": float, "imgsz": int} of a DetectionModel."""
    from copy import deepcopy

    from ultralytics.utils.torch_utils import get_flops, get_num_params

    probe = deepcopy(model).float().eval()
    at_640 = round(float(get_flops(probe, 640)), 4)
    return {
        "params": int(get_num_params(probe)),
        "gflops_640": at_640,
        "gflops_imgsz": at_640 if int(imgsz) == 640 else round(float(get_flops(probe, int(imgsz))), 4),
        "imgsz": int(imgsz),
    }


def read_results(path: Path) -> list[dict[str, float]]:
    """Rows of ultralytics' ``results.csv`` as {column: value} (names stripped, wall-clock columns dropped)."""
    if not path.is_file():
        return []
    with open(path, newline="") as fh:
        rows = []
        for row in csv.DictReader(fh):
            rows.append({k.strip(): _number(v) for k, v in row.items() if k and k.strip() not in VOLATILE_COLUMNS})
    return rows


def _number(text: str | None) -> float:
    try:
        value = float(text) if text is not None else math.nan
    except ValueError:
        return math.nan
    return value


def write_curves(rows: list[dict[str, float]], dst: Path) -> None:
    """``curves.csv``: one row per epoch, every loss term (train/*, val/*), precision, recall, mAP50, mAP50-95, lr."""
    columns: list[str] = []
    for row in rows:
        columns.extend(k for k in row if k not in columns)
    with open(dst, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: (int(v) if k == "epoch" else f"{v:.6g}") for k, v in row.items()})


def final_metrics(metrics: dict[str, Any] | None) -> dict[str, float]:
    """ultralytics' final validation metrics under edgekd's names (precision, recall, map50, map50_95)."""
    metrics = metrics or {}
    return {name: round(float(metrics[key]), 6) for key, name in METRIC_KEYS.items() if key in metrics}


def write_summary(dst: Path, payload: dict[str, Any]) -> None:
    dst.write_text(json.dumps({"schema": SUMMARY_SCHEMA, **payload}, indent=2, sort_keys=True) + "\n")
