"""Bad user input on the runtime side is an InputError naming the file, the key and the value: model preprocessing
metadata (ONNX metadata_props / sidecar) and a bundle's bundle.json. No model is built here."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import numpy as np
import pytest

from deploy.bundle import SCHEMA, check_manifest, load_bundle, verify_bundle, verify_checksums, write_sums
from deploy.device_bench import plan_variants
from deploy.errors import InputError
from deploy.metadata import contract_props, parse_metadata, read_sidecar, write_sidecar
from deploy.preprocess import DEFAULT_PREPROCESS, PreprocessSpec

NAMES = ("pedestrian", "cyclist", "car")


# ---------------------------------------------------------------- preprocessing metadata
def _props(**preprocess: object) -> dict[str, str]:
    """ONNX metadata_props as the exporter writes them, with ``preprocess`` values overridden."""
    props = contract_props(NAMES, (64, 64))
    props["preprocess"] = json.dumps({**json.loads(props["preprocess"]), **preprocess})
    return props


def test_exporter_metadata_round_trips():
    meta = parse_metadata(contract_props(NAMES, (64, 96)), "m.onnx", output_names=("boxes", "scores"))
    assert meta.preprocess == DEFAULT_PREPROCESS and meta.imgsz == (64, 96) and meta.stride == 32


def test_sidecar_round_trips(tmp_path):
    model = tmp_path / "m.engine"
    meta = parse_metadata(contract_props(NAMES, (64, 64)), "m.onnx")
    write_sidecar(model, meta, precision="fp16")
    assert parse_metadata(read_sidecar(model), str(model)).preprocess == DEFAULT_PREPROCESS


@pytest.mark.parametrize(
    "kwargs",
    [{"pad_value": 0}, {"pad_value": 114.0}, {"scale": 1}, {"scale": 0.5}, {"center": False}, {}],
)
def test_valid_preprocess_values_are_accepted(kwargs):
    assert parse_metadata(_props(**kwargs), "m.onnx").preprocess == PreprocessSpec(**kwargs)
    PreprocessSpec(pad_value=np.int64(255), scale=np.float32(0.5), center=np.bool_(True))


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("pad_value", "abc", "an integer in 0..255"),
        ("pad_value", "114", "an integer in 0..255"),
        ("pad_value", 114.5, "an integer in 0..255"),
        ("pad_value", True, "an integer in 0..255"),
        ("pad_value", 300, "an integer in 0..255"),
        ("scale", "x", "a positive number"),
        ("scale", 0, "a positive number"),
        ("scale", -0.5, "a positive number"),
        ("scale", None, "a positive number"),
        ("scale", True, "a positive number"),
        ("center", "false", "true or false"),
        ("center", 0, "true or false"),
        ("letterbox", "false", "true or false"),
        ("letterbox", 1, "true or false"),
        ("channel_order", ["RGB"], "'RGB' or 'BGR'"),
    ],
)
def test_bad_preprocess_values_name_file_key_and_value(key, value, expected):
    with pytest.raises(InputError) as err:
        parse_metadata(_props(**{key: value}), "models/m.onnx")
    msg = str(err.value)
    assert "models/m.onnx" in msg and f"{key}={value!r}" in msg and expected in msg and "m.edgekd.json" in msg


def test_nan_scale_is_rejected():
    with pytest.raises(InputError, match="scale=nan"):
        PreprocessSpec(scale=float("nan"))


@pytest.mark.parametrize(
    ("key", "value"),
    [("imgsz", "true"), ("imgsz", "[true, 64]"), ("imgsz", "[64, false]"), ("stride", "true"), ("stride", "0")],
)
def test_boolean_sizes_are_rejected(key, value):
    raw = {**contract_props(NAMES, (64, 64)), key: value}
    with pytest.raises(InputError, match=rf"m\.onnx: '{key}' = .*expected"):
        parse_metadata(raw, "m.onnx")


# ---------------------------------------------------------------- bundle.json
def _manifest() -> dict:
    art = {"model": "distill", "runtime": "onnxruntime", "recipe": None, "path": "models/distill_fp32.onnx"}
    return {
        "schema": SCHEMA,
        "model": "distill",
        "classes": list(NAMES),
        "imgsz": [64, 64],
        "stride": 32,
        "preprocess": json.loads(contract_props(NAMES, (64, 64))["preprocess"]),
        "format": "split-v1",
        "artifacts": [
            {**art, "id": "distill/onnxruntime/fp32", "precision": "fp32", "role": "fp32"},
            {**art, "id": "distill/onnxruntime/int8/qdq", "precision": "int8", "recipe": "qdq", "role": "int8_qdq"},
        ],
        "eval": {"images": 4, "annotations": "eval/annotations/val_coco.json", "distractors": None},
        "thresholds": {"source": "x", "per_class": {"car": 0.5}},
        "validated": {"fps": 30.0, "recall_target": 0.9},
        "parity": {"artifact": "distill/onnxruntime/fp32", "detections": "eval/ref.json", "params": {"conf": 0.001}},
        "files": {},
        "notes": [],
    }


def _write(root: Path, manifest: object) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "bundle.json").write_text(json.dumps(manifest))
    write_sums(root)  # a consistent bundle: only its content is wrong
    return root


def _without(path: tuple) -> dict:
    m = copy.deepcopy(_manifest())
    node = m
    for p in path[:-1]:
        node = node[p]
    del node[path[-1]]
    return m


def _with(path: tuple, value: object) -> dict:
    m = copy.deepcopy(_manifest())
    node = m
    for p in path[:-1]:
        node = node[p]
    node[path[-1]] = value
    return m


def test_a_valid_manifest_loads(tmp_path):
    check_manifest(_manifest())
    assert load_bundle(_write(tmp_path / "b", _manifest()))["model"] == "distill"


@pytest.mark.parametrize("value", [[1, 2], "text", 3, None])
def test_a_manifest_that_is_not_an_object(tmp_path, value):
    root = _write(tmp_path / "b", value)
    for call in (lambda: verify_checksums(root), lambda: load_bundle(root, check=False), lambda: load_bundle(root)):
        with pytest.raises(InputError, match=r"bundle\.json.*expected a JSON object.*edgekd deploy bundle"):
            call()


@pytest.mark.parametrize(
    ("path", "name"),
    [
        (("parity",), "parity"),
        (("eval",), "eval"),
        (("artifacts",), "artifacts"),
        (("model",), "model"),
        (("artifacts", 0, "model"), "artifacts[0].model"),
        (("artifacts", 1, "path"), "artifacts[1].path"),
        (("eval", "annotations"), "eval.annotations"),
        (("parity", "params"), "parity.params"),
        (("parity", "detections"), "parity.detections"),
    ],
)
def test_missing_keys_are_named(tmp_path, path, name):
    root = _write(tmp_path / "b", _without(path))
    with pytest.raises(InputError, match=rf"bundle\.json: key '{re.escape(name)}' is missing, expected"):
        load_bundle(root)


@pytest.mark.parametrize(
    ("path", "value", "match"),
    [
        (("schema",), "edgekd.bundle/v0", "schema 'edgekd.bundle/v0', expected"),
        (("parity",), [], "'parity' = \\[\\], expected a JSON object"),
        (("eval", "images"), "4", "'eval.images' = '4', expected an integer"),
        (("artifacts", 0), "x", "artifacts\\[0\\] = 'x', expected a JSON object"),
        (("artifacts", 0, "runtime"), 7, "'artifacts\\[0\\].runtime' = 7, expected a string"),
        (("classes",), ["a", 1], "'classes' = \\['a', 1\\], expected a non-empty list"),
        (("imgsz",), [True, 64], "'imgsz' = \\[True, 64\\], expected \\[height, width\\]"),
        (("validated", "fps"), "thirty", "'validated.fps' = 'thirty', expected a number"),
        (("parity", "params"), {"conf": "x"}, "'parity.params' = .*expected numbers"),
        (("parity", "params"), {"bogus": 1}, "'parity.params' = .*expected numbers"),
        (("preprocess",), {"pad_value": "abc"}, "'preprocess' = .*pad_value='abc'"),
        (("files",), {"a.txt": "x"}, "files\\['a.txt'\\] = 'x', expected"),
    ],
)
def test_wrong_types_are_named(tmp_path, path, value, match):
    root = _write(tmp_path / "b", _with(path, value))
    with pytest.raises(InputError, match=rf"bundle\.json.*{match}"):
        load_bundle(root)


def test_verify_bundle_without_parity_section(tmp_path):
    root = _write(tmp_path / "b", _without(("parity",)))
    with pytest.raises(InputError, match="'parity' is missing"):
        verify_bundle(root)


def test_cli_reports_a_malformed_manifest_without_traceback(tmp_path, capsys):
    from pipeline.cli import main

    root = _write(tmp_path / "b", [1, 2])
    assert main(["deploy", "verify", str(root), "--no-parity"]) == 2
    err = capsys.readouterr().err
    assert "bundle.json" in err and "expected a JSON object" in err and "Traceback" not in err


def test_plan_variants_names_a_missing_artifact_key():
    manifest = _without(("artifacts", 1, "model"))
    with pytest.raises(InputError, match=r"'artifacts\[1\]\.model' is missing"):
        plan_variants(manifest, ("onnxruntime",), {"onnxruntime": True})
    plans, _ = plan_variants(_manifest(), ("onnxruntime",), {"onnxruntime": True})
    assert [p.id for p in plans] == ["distill/onnxruntime/fp32", "distill/onnxruntime/int8/qdq"]
