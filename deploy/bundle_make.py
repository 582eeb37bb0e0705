"""``make_bundle``: gather a finished run's artifacts into a deploy bundle (layout in :mod:`deploy.bundle`).

Reads, under RUN_DIR (the layout of ``runs/<name>/``; every file but the FP32 ONNX is optional and its absence is
recorded in ``bundle.json``'s ``notes``):

- ``export/<model>.onnx`` (+ ``export/<model>.json``: ``params``, ``gflops``);
- ``quantize/quantize.json``: ``{"artifacts": [{model, runtime, precision, recipe, path, sha256, size}]}`` (or the
  list alone), ``path`` relative to ``quantize/`` (or to RUN_DIR, or absolute);
- ``calib/calibration.json``; ``data/annotations/val_coco.json`` (+ ``val_distractors.json``) and its images;
- ``evaluate/metrics_rows.json`` (rows validated for this model) and ``evaluate/tables.json`` (``per_class``
  entries ``{"variant": "<model>/<runtime>/fp32/float", "class", "op_threshold"}``) for the operating-point thresholds;
  when absent, the thresholds come from the bundled evaluation set itself (and bundle.json says so);
- ``manifest.json``: ``config_digest`` (the config hash reported with device results).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from deploy.bundle import (
    BUNDLE_JSON,
    EVAL_DISTRACTORS,
    EVAL_GT,
    REFERENCE,
    SCHEMA,
    ParityParams,
    copy_checked,
    dump_json,
    file_table,
    read_json,
    run_reference,
    write_sums,
)
from deploy.errors import InputError


@dataclass(frozen=True)
class BundleOptions:
    model: str = "distill"
    n_images: int = 32
    seed: int = 0
    data: Path | None = None  # dataset folder; default RUN_DIR/data
    recipes: tuple[str, ...] | None = None  # quantization recipes to include; None = all
    recall_target: float = 0.9
    fps: float = 30.0
    parity: ParityParams = field(default_factory=ParityParams)
    threads: int | None = None
    force: bool = False

    def __post_init__(self) -> None:
        if self.n_images < 1:
            raise InputError(f"--images: got {self.n_images}, expected a positive number of evaluation images")
        if not self.model or "/" in self.model:
            raise InputError(f"--model: got {self.model!r}, expected a model name such as distill or student")


def make_bundle(
    run_dir: Path, out: Path, options: BundleOptions = BundleOptions(), log: Callable[[str], None] = print
) -> dict[str, Any]:
    """Write the bundle of ``options.model`` from ``run_dir`` into ``out``; returns its bundle.json content."""
    run_dir, out = Path(run_dir), Path(out)
    if not run_dir.is_dir():
        raise InputError(f"run folder {str(run_dir)!r} does not exist; expected runs/<name> of a finished `edgekd run`")
    _check_out(out, options.force)
    tmp = out.parent / f".{out.name}.partial"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    try:
        manifest = _build(run_dir, tmp, options, log)
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log(f"bundle written to {out} ({len(manifest['files']) + 2} files)")
    return manifest


def _check_out(out: Path, force: bool) -> None:
    if out.is_file():
        raise InputError(f"--out {str(out)!r} is a file; expected a new or empty folder")
    if out.is_dir() and any(out.iterdir()):
        if not (out / BUNDLE_JSON).is_file():
            raise InputError(f"--out {str(out)!r} is a non-empty folder that is not a bundle; choose a new folder")
        if not force:
            raise InputError(f"--out {str(out)!r} already holds a bundle; pass --force to replace it")


def _build(run_dir: Path, root: Path, opt: BundleOptions, log: Callable[[str], None]) -> dict[str, Any]:
    notes: list[str] = []
    fp32_src = run_dir / "export" / f"{opt.model}.onnx"
    if not fp32_src.is_file():
        found = sorted(p.stem for p in (run_dir / "export").glob("*.onnx"))
        raise InputError(
            f"{str(fp32_src)!r} does not exist; models exported in this run: {', '.join(found) or 'none'} "
            f"(choose one with --model, or run the export stage)"
        )
    artifacts = [_fp32_artifact(run_dir, root, opt.model)]
    artifacts += _quant_artifacts(run_dir, root, opt, notes)
    log(f"models: {', '.join(a['id'] for a in artifacts)}")
    calibration = _calibration(run_dir, root, notes)
    data_dir = Path(opt.data) if opt.data else run_dir / "data"
    gt, distractors = _eval_set(data_dir, root, opt)
    log(f"evaluation set: {len(gt['images'])} images, {len(gt['annotations'])} boxes from {data_dir}")

    from deploy.detector import Detector
    from deploy.metrics.evaluate import EvalOptions, category_map, evaluate

    model_path = root / artifacts[0]["path"]
    meta = Detector(model_path, backend="onnxruntime", providers=["CPUExecutionProvider"]).meta
    images = [(int(im["id"]), root / "eval" / im["file_name"]) for im in gt["images"]]
    records, dets = run_reference(model_path, images, opt.parity, opt.threads)
    dump_json(records, root / REFERENCE)
    cmap = category_map(list(meta.names), gt)
    results = [r for (image_id, _), d in zip(images, dets, strict=True) for r in _coco(d, image_id, cmap)]
    metrics = evaluate(gt, results, EvalOptions(recall_target=opt.recall_target, fps=opt.fps), distractors)
    thresholds = _thresholds(run_dir, opt.model, metrics, len(images), notes)
    manifest: dict[str, Any] = {
        "schema": SCHEMA,
        "model": opt.model,
        "classes": list(meta.names),
        "imgsz": list(meta.imgsz),
        "stride": meta.stride,
        "preprocess": asdict(meta.preprocess),
        "format": meta.format,
        "artifacts": artifacts,
        "calibration": calibration,
        "eval": {
            "images": len(images),
            "annotations": EVAL_GT,
            "distractors": EVAL_DISTRACTORS if distractors is not None else None,
            "seed": opt.seed,
            "source": "val split of the run's dataset",
        },
        "thresholds": thresholds,
        "validated": {
            "rows": _validated_rows(run_dir, opt.model, notes),
            "bundle_eval": {"artifact": artifacts[0]["id"], "overall": metrics["overall"]},
            "recall_target": opt.recall_target,
            "fps": opt.fps,
        },
        "parity": {"artifact": artifacts[0]["id"], "detections": REFERENCE, "params": opt.parity.as_dict()},
        "source": _source(run_dir),
        "notes": notes,
    }
    manifest["files"] = file_table(root)
    dump_json(manifest, root / BUNDLE_JSON)
    write_sums(root)
    return manifest


def _coco(det: Any, image_id: int, cmap: dict[int, int]) -> list[dict[str, Any]]:
    det = det[np.asarray([int(c) in cmap for c in det.class_id], bool)]
    return [{**r, "category_id": cmap[int(r["category_id"])]} for r in det.to_coco(image_id)]


def _fp32_artifact(run_dir: Path, root: Path, model: str) -> dict[str, Any]:
    rel = f"models/{model}_fp32.onnx"
    info = copy_checked(run_dir / "export" / f"{model}.onnx", root / rel, None, f"the FP32 export of {model}")
    stats = _export_stats(run_dir / "export" / f"{model}.json", root / rel)
    return {
        "id": f"{model}/onnxruntime/fp32",
        "model": model,
        "runtime": "onnxruntime",
        "precision": "fp32",
        "recipe": None,
        "role": "fp32",
        "path": rel,
        **info,
        **stats,
    }


def _export_stats(json_path: Path, onnx_path: Path) -> dict[str, Any]:
    """params / gflops from export/<model>.json, else counted on the ONNX graph."""
    found: dict[str, Any] = {}
    if json_path.is_file():
        data = read_json(json_path, "export summary")
        for node in (
            data,
            data.get("model") if isinstance(data, dict) else None,
            data.get("stats") if isinstance(data, dict) else None,
        ):
            if isinstance(node, dict):
                for key in ("params", "gflops"):
                    if key not in found and isinstance(node.get(key), (int, float)):
                        found[key] = node[key]
    if "params" not in found or "gflops" not in found:
        import onnx
        from onnx import numpy_helper

        from deploy.hwfloor import count_macs

        proto = onnx.load(str(onnx_path))
        found.setdefault("params", int(sum(numpy_helper.to_array(t).size for t in proto.graph.initializer)))
        found.setdefault("gflops", round(2 * count_macs(onnx_path) / 1e9, 4))
    return {"params": int(found["params"]), "gflops": float(found["gflops"])}


def _quant_artifacts(run_dir: Path, root: Path, opt: BundleOptions, notes: list[str]) -> list[dict[str, Any]]:
    qdir = run_dir / "quantize"
    listing = qdir / "quantize.json"
    if not listing.is_file():
        notes.append("no quantize/quantize.json in the run: the bundle holds the FP32 model only")
        return []
    data = read_json(listing, "quantization listing")
    entries = data.get("artifacts", []) if isinstance(data, dict) else data
    if not isinstance(entries, list):
        raise InputError(f"{str(listing)!r}: expected {{'artifacts': [...]}} or a list, got {type(entries).__name__}")
    out = []
    for i, e in enumerate(entries):
        if not isinstance(e, dict) or not all(k in e for k in ("model", "runtime", "precision", "path")):
            raise InputError(
                f"{str(listing)!r}: artifacts[{i}] needs model, runtime, precision and path; got {e!r:.120}"
            )
        if e["model"] != opt.model or (opt.recipes is not None and e.get("recipe") not in opt.recipes):
            continue
        src = next(
            (p for p in (qdir / e["path"], run_dir / e["path"], Path(e["path"])) if p.is_file()), qdir / e["path"]
        )
        recipe = e.get("recipe")
        stem = "_".join(str(x) for x in (opt.model, e["runtime"], e["precision"], *([recipe] if recipe else [])))
        rel = f"models/{stem}{src.suffix}"
        info = copy_checked(
            src, root / rel, e.get("sha256"), f"{e['runtime']} {e['precision']} artifact of {opt.model}"
        )
        if src.suffix == ".xml":
            copy_checked(src.with_suffix(".bin"), (root / rel).with_suffix(".bin"), None, "OpenVINO weights")
        parts = [opt.model, e["runtime"], e["precision"]] + ([recipe] if recipe else [])
        role = "trt_qdq" if e["runtime"] == "tensorrt" else ("openvino_ir" if src.suffix == ".xml" else "int8_qdq")
        out.append({
            "id": "/".join(str(p) for p in parts), "model": opt.model, "runtime": e["runtime"],
            "precision": e["precision"], "recipe": recipe, "role": role, "path": rel, **info,
        })  # fmt: skip
    return out


def _calibration(run_dir: Path, root: Path, notes: list[str]) -> dict[str, Any] | None:
    src = run_dir / "calib" / "calibration.json"
    if not src.is_file():
        notes.append("no calib/calibration.json in the run: the calibration set is not recorded")
        return None
    info = copy_checked(src, root / "calibration/calibration.json", None, "calibration manifest")
    data = read_json(src, "calibration manifest")
    return {"path": "calibration/calibration.json", "n": data.get("n"), "seed": data.get("seed"), **info}


def _eval_set(data_dir: Path, root: Path, opt: BundleOptions) -> tuple[dict[str, Any], dict[str, Any] | None]:
    gt_path = data_dir / "annotations" / "val_coco.json"
    gt = read_json(gt_path, "validation ground truth (give the dataset folder with --data)")
    if not isinstance(gt, dict) or not gt.get("images"):
        raise InputError(f"{str(gt_path)!r}: no images; expected a COCO file with images, annotations, categories")
    images = sorted(gt["images"], key=lambda im: im["id"])
    rng = np.random.default_rng(opt.seed)
    chosen = [images[i] for i in sorted(rng.choice(len(images), size=min(opt.n_images, len(images)), replace=False))]
    used: set[str] = set()
    new_images = []
    for im in chosen:
        src = Path(im["file_name"])
        src = src if src.is_absolute() else data_dir / src
        name = src.name if src.name not in used else f"{im['id']}_{src.name}"
        used.add(name)
        copy_checked(src, root / "eval" / "images" / name, None, f"validation image id {im['id']}")
        new_images.append({**im, "file_name": f"images/{name}"})
    ids = {im["id"] for im in new_images}
    subset = {k: v for k, v in gt.items() if k not in ("images", "annotations")}
    subset["images"] = new_images
    subset["annotations"] = [a for a in gt.get("annotations", []) if a.get("image_id") in ids]
    dump_json(subset, root / EVAL_GT)
    distractors = None
    dis_path = data_dir / "annotations" / "val_distractors.json"
    if dis_path.is_file():
        dis = read_json(dis_path, "distractors")
        distractors = {**dis, "distractors": [d for d in dis.get("distractors", []) if d.get("image_id") in ids]}
        dump_json(distractors, root / EVAL_DISTRACTORS)
    return subset, distractors


def _thresholds(run_dir: Path, model: str, metrics: dict[str, Any], n: int, notes: list[str]) -> dict[str, Any]:
    """Per-class operating-point thresholds: from the run's evaluation (FP32 row) if recorded, else the bundled set."""
    per_class: dict[str, Any] = {}
    tables = run_dir / "evaluate" / "tables.json"
    if tables.is_file():
        data = read_json(tables, "evaluation tables")
        entries = data.get("per_class", []) if isinstance(data, dict) else []
        for vid in (
            f"{model}/{rt}/fp32{suffix}" for rt in ("onnxruntime", "openvino", "pytorch") for suffix in ("/float", "")
        ):
            per_class = {
                e["class"]: e["op_threshold"]
                for e in entries
                if isinstance(e, dict) and e.get("variant") == vid and e.get("op_threshold") is not None
            }
            if per_class:
                return {"source": f"evaluate/tables.json ({vid})", "per_class": per_class}
    for row in _validated_rows(run_dir, model, []):
        if row.get("precision") != "fp32" or row.get("recipe"):
            continue
        found = _row_thresholds(row)
        if found:
            return {"source": f"evaluate/metrics_rows.json ({model}/{row.get('runtime')}/fp32)", "per_class": found}
    notes.append(f"operating-point thresholds computed on the {n} bundled images (the run recorded none)")
    return {
        "source": f"bundled evaluation set ({n} images, {model}/onnxruntime/fp32)",
        "per_class": metrics["thresholds"],
    }


def _row_thresholds(row: dict[str, Any]) -> dict[str, float]:
    """Per-class thresholds a row may carry: ``thresholds: {class: t}`` or ``per_class: {class: {op_threshold}}``."""
    if isinstance(row.get("thresholds"), dict):
        return {str(k): float(v) for k, v in row["thresholds"].items() if isinstance(v, (int, float))}
    per_class = row.get("per_class")
    if isinstance(per_class, dict):
        return {
            str(k): float(v["op_threshold"])
            for k, v in per_class.items()
            if isinstance(v, dict) and isinstance(v.get("op_threshold"), (int, float))
        }
    return {}


def _validated_rows(run_dir: Path, model: str, notes: list[str]) -> list[dict[str, Any]]:
    path = run_dir / "evaluate" / "metrics_rows.json"
    if not path.is_file():
        notes.append("no evaluate/metrics_rows.json in the run: no full-validation metrics recorded")
        return []
    data = read_json(path, "evaluation rows")
    rows = data.get("rows", []) if isinstance(data, dict) else data
    return [r for r in rows if isinstance(r, dict) and r.get("model") == model] if isinstance(rows, list) else []


def _source(run_dir: Path) -> dict[str, Any]:
    manifest_path = run_dir / "manifest.json"
    data = read_json(manifest_path, "run manifest") if manifest_path.is_file() else {}
    stages = data.get("stages", {}) if isinstance(data, dict) else {}
    digest = data.get("config_digest") if isinstance(data, dict) else None
    return {
        "run": run_dir.resolve().name,
        "config_hash": digest if isinstance(digest, str) and len(digest) == 64 else None,
        "stages": {k: v.get("outputs_digest") for k, v in sorted(stages.items()) if isinstance(v, dict)},
    }
