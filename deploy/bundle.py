"""Deploy bundles: the artifacts of a finished run, a small evaluation set and their checksums, in one folder.

``make_bundle(RUN_DIR, OUT)`` (``edgekd deploy bundle``) copies, for one model (default ``distill``):

- ``models/<model>_fp32.onnx``                 RUN_DIR/export/<model>.onnx (the ONNX contract, FP32);
- ``models/<model>_<runtime>_<recipe>.<ext>``  RUN_DIR/quantize artifacts of that model, as listed in
  ``quantize/quantize.json`` (INT8 Q/DQ ONNX for ONNX Runtime, the TensorRT-ready Q/DQ ONNX, OpenVINO IR .xml+.bin),
  each checked against the sha256 recorded there;
- ``calibration/calibration.json``             RUN_DIR/calib/calibration.json (which frames calibrated the INT8 models);
- ``eval/images/*.jpg`` + ``eval/annotations/val_coco.json`` (+ ``val_distractors.json``): N validation images of
  RUN_DIR/data and their ground truth (``file_name`` relative to ``eval/``);
- ``eval/reference_detections.json``: what ONNX Runtime (CPU, FP32 model) detected on them at bundling time;
- ``bundle.json``: classes, input size, preprocessing, per-class operating-point thresholds, the metrics the models
  were validated with, the artifacts and the sha256 of every file; ``SHA256SUMS`` (``sha256sum -c`` format) covers
  every file including bundle.json.

``verify_bundle(DIR)`` (``edgekd deploy verify``) checks every checksum (a flipped byte -> :class:`IntegrityError`
naming the file) and re-runs the FP32 model on the bundled images against the recorded detections.
All paths inside a bundle are relative, so it can be copied anywhere (a Jetson).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deploy.errors import InputError, IntegrityError

SCHEMA = "edgekd.bundle/v1"
SUMS = "SHA256SUMS"
BUNDLE_JSON = "bundle.json"
REFERENCE = "eval/reference_detections.json"
EVAL_GT = "eval/annotations/val_coco.json"
EVAL_DISTRACTORS = "eval/annotations/val_distractors.json"


# ---------------------------------------------------------------- files and checksums
from deploy.provenance import format_sums, parse_sums, sha256_file  # noqa: E402  (sha256_file re-exported for users)
from deploy.textio import read_json  # noqa: E402  (re-exported: device_bench reads bundle files with it)


def file_table(root: Path, exclude: tuple[str, ...] = (BUNDLE_JSON, SUMS)) -> dict[str, dict[str, Any]]:
    """{relative posix path: {"sha256", "size"}} of every file below ``root`` except ``exclude`` (top level)."""
    return {
        p.relative_to(root).as_posix(): {"sha256": sha256_file(p), "size": p.stat().st_size}
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.relative_to(root).as_posix() not in exclude
    }


def write_sums(root: Path) -> Path:
    """``SHA256SUMS`` over every file (bundle.json included), sorted, as ``sha256sum`` writes it."""
    table = file_table(root, exclude=(SUMS,))
    (root / SUMS).write_text(format_sums({k: v["sha256"] for k, v in table.items()}))
    return root / SUMS


def dump_json(obj: Any, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=1, sort_keys=True, allow_nan=False) + "\n")
    return path


@dataclass
class ChecksumReport:
    checked: int = 0
    unlisted: list[str] = field(default_factory=list)


def verify_checksums(root: Path) -> ChecksumReport:
    """Check SHA256SUMS and bundle.json's file table against the files; IntegrityError names the first bad file."""
    root = Path(root)
    sums_path = root / SUMS
    if not (root / BUNDLE_JSON).is_file():
        raise InputError(
            f"{str(root)!r} is not a deploy bundle: no {BUNDLE_JSON} (make one with `edgekd deploy bundle`)"
        )
    if not sums_path.is_file():
        raise IntegrityError(f"{str(sums_path)!r} is missing; the bundle cannot be verified (re-create it)")
    listed = parse_sums(sums_path.read_text(errors="replace"), str(sums_path))
    report = ChecksumReport()
    for rel, digest in sorted(listed.items()):
        path = root / rel
        if not path.is_file():
            raise IntegrityError(f"{str(path)!r} is listed in {SUMS} but missing from the bundle")
        actual = sha256_file(path)
        if actual != digest:
            raise IntegrityError(
                f"{str(path)!r}: checksum mismatch (sha256 {actual[:16]}..., recorded {digest[:16]}...); "
                "the file was altered or truncated after bundling: copy the bundle again"
            )
        report.checked += 1
    manifest = _read_manifest(root)
    for rel, info in sorted((manifest.get("files") or {}).items()):
        if listed.get(rel) != info.get("sha256"):
            raise IntegrityError(
                f"{str(root / rel)!r}: {BUNDLE_JSON} records sha256 {str(info.get('sha256'))[:16]}..., "
                f"{SUMS} records {str(listed.get(rel))[:16]}...; the bundle's manifests disagree"
            )
    present = {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}
    report.unlisted = sorted(present - set(listed) - {SUMS})
    return report


def load_bundle(root: Path, *, check: bool = True) -> dict[str, Any]:
    """bundle.json of ``root`` (checksums verified first unless ``check`` is False)."""
    if check:
        verify_checksums(root)
    return _read_manifest(Path(root))


# ---------------------------------------------------------------- manifest shape
_FIX = "the bundle is damaged or was not made by `edgekd deploy bundle`: re-create it with `edgekd deploy bundle`"
_NONE = type(None)
_KINDS = {str: "a string", int: "an integer", float: "a number", list: "a list", dict: "a JSON object", _NONE: "null"}
_TOP: tuple[tuple[str, Any, bool], ...] = (  # (key, type(s), required)
    ("model", str, True), ("classes", list, True), ("imgsz", list, True), ("artifacts", list, True),
    ("eval", dict, True), ("parity", dict, True), ("files", dict, False), ("preprocess", dict, False),
    ("stride", int, False), ("format", str, False), ("thresholds", dict, False), ("validated", dict, False),
    ("source", dict, False), ("notes", list, False),
)  # fmt: skip
_ARTIFACT = (("id", str, True), ("model", str, True), ("runtime", str, True), ("precision", str, True),
             ("path", str, True), ("recipe", (str, _NONE), False), ("role", (str, _NONE), False))  # fmt: skip
_EVAL = (("annotations", str, True), ("images", int, True), ("distractors", (str, _NONE), False))
_PARITY = (("artifact", str, True), ("detections", str, True), ("params", dict, True))
_NESTED = (
    ("thresholds", (("per_class", dict, False),)),
    ("validated", (("fps", float, False), ("recall_target", float, False))),
)


def _read_manifest(root: Path) -> dict[str, Any]:
    """bundle.json of ``root``, read and checked (:func:`check_manifest`)."""
    path = root / BUNDLE_JSON
    manifest = read_json(path, "bundle manifest", "re-create the bundle with `edgekd deploy bundle`")
    check_manifest(manifest, str(path))
    return manifest


def _is(value: Any, kinds: Any) -> bool:
    kinds = kinds if isinstance(kinds, tuple) else (kinds,)
    if isinstance(value, bool):
        return False  # JSON true/false is never a count, a number or a name here
    return isinstance(value, kinds) or (float in kinds and isinstance(value, int))


def _keys(obj: dict[str, Any], spec: Any, where: str, source: str) -> None:
    """InputError naming ``source`` and the key when a required key is missing or a key has the wrong type."""
    for key, kinds, required in spec:
        if key not in obj and not required:
            continue
        expected, name = " or ".join(_KINDS[k] for k in (kinds if isinstance(kinds, tuple) else (kinds,))), where + key
        if key not in obj:
            raise InputError(f"{source}: key {name!r} is missing, expected {expected}; {_FIX}")
        if not _is(obj[key], kinds):
            raise InputError(f"{source}: {name!r} = {obj[key]!r:.80}, expected {expected}; {_FIX}")


def check_artifacts(artifacts: Any, source: str = BUNDLE_JSON) -> None:
    """Every artifact is an object with string id, model, runtime, precision and path."""
    if not isinstance(artifacts, list):
        raise InputError(f"{source}: 'artifacts' = {artifacts!r:.80}, expected a list; {_FIX}")
    for i, art in enumerate(artifacts):
        if not isinstance(art, dict):
            raise InputError(f"{source}: artifacts[{i}] = {art!r:.80}, expected a JSON object; {_FIX}")
        _keys(art, _ARTIFACT, f"artifacts[{i}].", source)


def check_manifest(manifest: Any, source: str = BUNDLE_JSON) -> None:
    """The shape of a bundle.json that the deploy code indexes: InputError naming ``source`` and the key."""
    if not isinstance(manifest, dict):
        raise InputError(f"{source}: a JSON {type(manifest).__name__}, expected a JSON object; {_FIX}")
    if manifest.get("schema") != SCHEMA:
        raise InputError(f"{source}: schema {manifest.get('schema')!r:.80}, expected {SCHEMA!r}; {_FIX}")
    _keys(manifest, _TOP, "", source)
    check_artifacts(manifest["artifacts"], source)
    _keys(manifest["eval"], _EVAL, "eval.", source)
    _keys(manifest["parity"], _PARITY, "parity.", source)
    for key, spec in _NESTED:
        _keys(manifest.get(key, {}), spec, f"{key}.", source)
    classes, imgsz = manifest["classes"], manifest["imgsz"]
    if not classes or not all(isinstance(c, str) for c in classes):
        raise InputError(f"{source}: 'classes' = {classes!r:.80}, expected a non-empty list of names; {_FIX}")
    if len(imgsz) != 2 or not all(_is(v, int) and v > 0 for v in imgsz):
        raise InputError(f"{source}: 'imgsz' = {imgsz!r:.80}, expected [height, width] (positive integers); {_FIX}")
    _check_details(manifest, source)


def _check_details(manifest: dict[str, Any], source: str) -> None:
    """files entries are objects; parity.params and preprocess build their dataclasses."""
    for rel, info in manifest.get("files", {}).items():
        if not isinstance(info, dict):
            raise InputError(
                f"{source}: files[{rel!r}] = {info!r:.80}, expected {{'sha256': ..., 'size': ...}}; {_FIX}"
            )
    params = manifest["parity"]["params"]
    unknown = sorted(set(params) - set(ParityParams.__dataclass_fields__))
    if unknown or not all(_is(v, float) for v in params.values()):
        raise InputError(
            f"{source}: 'parity.params' = {params!r:.120}, expected numbers for "
            f"{', '.join(ParityParams.__dataclass_fields__)}; {_FIX}"
        )
    from deploy.preprocess import PreprocessSpec

    pre = manifest.get("preprocess", {})
    try:
        PreprocessSpec(**pre)
    except (TypeError, InputError) as exc:
        raise InputError(f"{source}: 'preprocess' = {pre!r:.120}: {exc}; {_FIX}") from None


# ---------------------------------------------------------------- parity
@dataclass(frozen=True)
class ParityParams:
    """How reference detections are produced and compared (stored in bundle.json)."""

    conf: float = 0.001
    iou: float = 0.7
    max_det: int = 300
    keep_above: float = 0.05  # detections recorded: score > keep_above
    score_atol: float = 2e-3
    min_iou: float = 0.9

    def as_dict(self) -> dict[str, float]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def detections_record(det: Any, keep_above: float) -> dict[str, list]:
    """Detections -> {"boxes": [[x1, y1, x2, y2]], "scores": [...], "classes": [...]} above ``keep_above``."""
    keep = det.confidence > keep_above
    return {
        "boxes": [[round(float(v), 3) for v in box] for box in det.xyxy[keep]],
        "scores": [round(float(s), 6) for s in det.confidence[keep]],
        "classes": [int(c) for c in det.class_id[keep]],
    }


def compare_records(ref: dict[str, list], new: dict[str, list], params: ParityParams) -> dict[str, Any]:
    """Match two detection records both ways (same class, IoU >= min_iou, |score diff| <= score_atol).

    Only detections clearly above ``keep_above`` (by ``score_atol``) must be matched, so a box whose score sits on
    the recording threshold may appear on one side only. Returns {"compared", "unmatched", "max_score_diff",
    "min_iou"}.
    """
    import numpy as np

    from deploy.metrics.matching import iou_matrix

    margin = params.keep_above + params.score_atol
    out: dict[str, Any] = {"compared": 0, "unmatched": 0, "max_score_diff": 0.0, "min_iou": 1.0}
    for a, b in ((ref, new), (new, ref)):
        a_box, b_box = np.asarray(a["boxes"], float).reshape(-1, 4), np.asarray(b["boxes"], float).reshape(-1, 4)
        a_s, b_s = np.asarray(a["scores"], float), np.asarray(b["scores"], float)
        a_c, b_c = np.asarray(a["classes"], int), np.asarray(b["classes"], int)
        iou = iou_matrix(a_box, b_box)
        for i in np.flatnonzero(a_s > margin):
            ok = (b_c == a_c[i]) & (iou[i] >= params.min_iou) & (np.abs(b_s - a_s[i]) <= params.score_atol)
            out["compared"] += 1
            if not ok.any():
                out["unmatched"] += 1
                continue
            j = int(np.flatnonzero(ok)[np.argmax(iou[i][ok])])
            out["max_score_diff"] = max(out["max_score_diff"], float(abs(b_s[j] - a_s[i])))
            out["min_iou"] = min(out["min_iou"], float(iou[i, j]))
    return out


def run_reference(
    model: Path, images: list[tuple[int, Path]], params: ParityParams, threads: int | None = None
) -> tuple[dict[str, dict[str, list]], list[Any]]:
    """FP32 model on ONNX Runtime's CPU provider over ``images`` [(image id, path)].

    Returns ({str(image id): record above keep_above}, [Detections per image at ``params.conf``]).
    """
    from deploy.detector import Detector

    det = Detector(
        model, backend="onnxruntime", conf=params.conf, iou=params.iou, max_det=params.max_det, threads=threads,
        providers=["CPUExecutionProvider"],
    )  # fmt: skip
    records, all_dets = {}, []
    for image_id, path in images:
        d = det.predict_file(path)
        all_dets.append(d)
        records[str(image_id)] = detections_record(d, params.keep_above)
    return records, all_dets


@dataclass
class VerifyReport:
    checked_files: int
    unlisted: list[str]
    parity: dict[str, Any] | None


def verify_bundle(
    root: Path, *, parity: bool = True, threads: int | None = None, log: Callable[[str], None] = lambda s: None
) -> VerifyReport:
    """Checksums of every file, then (``parity``) the FP32 model's detections against the recorded ones.

    Raises:
        IntegrityError: a file differs from its checksum (named), or the detections do not reproduce.
        InputError: not a bundle.
    """
    root = Path(root)
    sums = verify_checksums(root)
    log(f"checksums: {sums.checked} files OK")
    manifest = load_bundle(root, check=False)
    if not parity:
        return VerifyReport(sums.checked, sums.unlisted, None)
    ref_info = manifest["parity"]
    params = ParityParams(**ref_info["params"])
    reference = read_json(root / ref_info["detections"], "reference detections")
    gt = read_json(root / EVAL_GT, "bundled ground truth")
    images = [(int(im["id"]), root / "eval" / im["file_name"]) for im in gt["images"]]
    model = root / _artifact(manifest, ref_info["artifact"])["path"]
    records, _ = run_reference(model, images, params, threads)
    total = {"compared": 0, "unmatched": 0, "max_score_diff": 0.0, "min_iou": 1.0, "images": len(images)}
    bad = []
    for image_id, rec in records.items():
        res = compare_records(reference[image_id], rec, params)
        total["compared"] += res["compared"]
        total["unmatched"] += res["unmatched"]
        total["max_score_diff"] = max(total["max_score_diff"], res["max_score_diff"])
        total["min_iou"] = min(total["min_iou"], res["min_iou"])
        if res["unmatched"]:
            bad.append(image_id)
    if bad:
        raise IntegrityError(
            f"parity check failed for {model}: {total['unmatched']} of {total['compared']} detections on "
            f"{len(bad)} image(s) (ids {', '.join(bad[:5])}) differ from {ref_info['detections']} beyond "
            f"score {params.score_atol} / IoU {params.min_iou}; the model or this runtime does not reproduce the bundle"
        )
    log(
        f"parity: {total['compared']} detections on {total['images']} images reproduced "
        f"(max score diff {total['max_score_diff']:.2e}, min IoU {total['min_iou']:.4f})"
    )
    return VerifyReport(sums.checked, sums.unlisted, total)


def _artifact(manifest: dict[str, Any], artifact_id: str) -> dict[str, Any]:
    for art in manifest.get("artifacts", []):
        if art.get("id") == artifact_id:
            return art
    raise InputError(
        f"bundle.json: no artifact {artifact_id!r}; expected one of {[a.get('id') for a in manifest.get('artifacts', [])]}"
    )


def copy_checked(src: Path, dst: Path, sha256: str | None, what: str) -> dict[str, Any]:
    """Copy ``src`` to ``dst`` after checking it against ``sha256`` (when recorded); returns {"sha256", "size"}."""
    if not src.is_file():
        raise InputError(f"{what}: {str(src)!r} does not exist")
    digest = sha256_file(src)
    if sha256 and digest != sha256:
        raise IntegrityError(
            f"{str(src)!r}: sha256 {digest[:16]}... differs from {sha256[:16]}... recorded for {what}; "
            "the run's artifact was altered since it was written: rerun that stage (edgekd run --force STAGE)"
        )
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dst)
    return {"sha256": digest, "size": dst.stat().st_size}
