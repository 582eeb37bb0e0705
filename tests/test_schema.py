"""metrics.json: the JSON Schema, the fixtures validated against it, and the checks a schema cannot express."""

from __future__ import annotations

import copy
import importlib.util
import json
import math
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator

from deploy.errors import InputError
from pipeline.report.metrics_file import (
    ROW_KEYS,
    SCHEMA_VERSION,
    dumps_metrics,
    load_metrics,
    load_schema,
    schema_problems,
    validate_metrics,
)

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "metrics"


@pytest.fixture(scope="module")
def current() -> dict:
    return json.loads((FIXTURES / "current.json").read_text())


def test_schema_is_valid_draft_2020_12():
    schema = load_schema()
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    Draft202012Validator.check_schema(schema)
    assert schema["properties"]["schema_version"]["const"] == SCHEMA_VERSION
    assert set(schema["$defs"]["row"]["required"]) == set(ROW_KEYS)


@pytest.mark.parametrize("name", ["current.json", "baseline.json"])
def test_fixtures_validate(name):
    obj = load_metrics(FIXTURES / name)
    assert obj["rows"] and obj["per_class"] and obj["curves"] and obj["latency"]
    assert schema_problems(obj) == []


def test_fixtures_are_reproducible_from_their_generator():
    spec = importlib.util.spec_from_file_location("make_fixtures", FIXTURES / "make_fixtures.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    current = module.build()
    assert dumps_metrics(current) == (FIXTURES / "current.json").read_text()
    assert dumps_metrics(module.baseline_of(current)) == (FIXTURES / "baseline.json").read_text()


def test_broken_fixture_fails_naming_every_problem():
    with pytest.raises(InputError) as info:
        load_metrics(FIXTURES / "broken.json")
    text = str(info.value)
    assert "broken.json" in text and "3 problem(s)" in text
    assert "rows[0]: 'model' is a required property" in text
    assert "rows[1].map50: '0.71' is not of type 'number', 'null'" in text
    assert "rows[2].lamr: 1.7 is greater than the maximum of 1" in text


def test_old_schema_version_is_refused_with_the_fix():
    with pytest.raises(InputError) as info:
        load_metrics(FIXTURES / "old_schema.json")
    text = str(info.value)
    assert "old_schema.json" in text and "'0.9'" in text and "'1.0'" in text and "edgekd report --run" in text


def test_missing_and_invalid_json_name_the_file(tmp_path):
    with pytest.raises(InputError, match="nope.json.*does not exist"):
        load_metrics(tmp_path / "nope.json")
    bad = tmp_path / "bad.json"
    bad.write_text('{"schema_version": "1.0",\n "rows": [}')
    with pytest.raises(InputError, match=r"bad.json.*not valid JSON \(line 2"):
        load_metrics(bad)
    arr = tmp_path / "arr.json"
    arr.write_text("[1, 2]")
    with pytest.raises(InputError, match="got a JSON list"):
        load_metrics(arr)


def test_timestamps_are_not_allowed_in_provenance(current):
    obj = copy.deepcopy(current)
    obj["provenance"]["generated_at"] = "2026-01-01T00:00:00Z"
    assert any("generated_at" in p for p in schema_problems(obj))


def test_semantic_checks(current):
    dup = copy.deepcopy(current)
    dup["rows"].append(copy.deepcopy(dup["rows"][0]))
    assert any("duplicate variant 'teacher/onnxruntime/fp32/float'" in p for p in schema_problems(dup))

    ref = copy.deepcopy(current)
    ref["reference"] = "nobody/onnxruntime/fp32"
    assert any(p.startswith("reference: got 'nobody/onnxruntime/fp32'") for p in schema_problems(ref))

    orphan = copy.deepcopy(current)
    orphan["per_class"][0]["variant"] = "ghost/onnxruntime/fp32"
    assert any("per_class[0].variant" in p for p in schema_problems(orphan))

    paired = copy.deepcopy(current)
    paired["paired"][1]["b"] = "ghost/onnxruntime/fp32/float"
    assert any(p.startswith("paired[1].b: got 'ghost/onnxruntime/fp32/float'") for p in schema_problems(paired))

    curve = copy.deepcopy(current)
    curve["curves"]["ghost/openvino/fp32"] = {}
    assert any("curves.ghost/openvino/fp32" in p for p in schema_problems(curve))

    nan = copy.deepcopy(current)
    nan["rows"][0]["map50"] = math.nan
    assert any("rows[0].map50" in p and "finite" in p for p in schema_problems(nan))


def test_variant_names_may_not_contain_slashes(current):
    obj = copy.deepcopy(current)
    obj["rows"][0]["model"] = "a/b"
    assert any(p.startswith("rows[0].model") for p in schema_problems(obj))


def test_null_metrics_are_valid_but_keys_are_required(current):
    obj = copy.deepcopy(current)
    for key in ROW_KEYS[3:]:
        obj["rows"][0][key] = None
    assert schema_problems(obj) == []
    del obj["rows"][0]["lamr"]
    assert schema_problems(obj) == ["rows[0]: 'lamr' is a required property"]


def test_validate_names_the_source():
    with pytest.raises(InputError, match="^thing.json: no schema_version"):
        validate_metrics({}, "thing.json")
