"""One reader for user-named files: every failure names the file, what went wrong and the caller's hint."""

from __future__ import annotations

import pytest

from deploy.errors import DataError, InputError
from deploy.textio import read_json, read_text, read_yaml


def test_missing_folder_and_unreadable(tmp_path):
    with pytest.raises(InputError, match=r"gt file '.*nope.json' does not exist; check the path$"):
        read_json(tmp_path / "nope.json", "gt file", "check the path")
    with pytest.raises(InputError, match="is a folder, expected a file"):
        read_text(tmp_path, "manifest")
    (tmp_path / "bin.json").write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(InputError, match="bin.json' cannot be read"):
        read_json(tmp_path / "bin.json", "metrics file")


def test_syntax_errors_name_line_and_column(tmp_path):
    (tmp_path / "bad.json").write_text('{"a": 1,\n "b": }')
    with pytest.raises(InputError, match=r"bad.json' is not valid JSON \(line 2, column 7: .*\); fix it$"):
        read_json(tmp_path / "bad.json", "listing", "fix it")
    (tmp_path / "bad.yaml").write_text("train: [unclosed\nval: x\n")
    with pytest.raises(InputError, match=r"bad.yaml' is not valid YAML at line \d+, column \d+"):
        read_yaml(tmp_path / "bad.yaml", "data.yaml")


def test_values_and_the_error_class(tmp_path):
    (tmp_path / "ok.yaml").write_text("a: 1\nb: [x, y]\n")
    assert read_yaml(tmp_path / "ok.yaml", "config") == {"a": 1, "b": ["x", "y"]}
    (tmp_path / "ok.json").write_text('{"images": []}')
    assert read_json(tmp_path / "ok.json", "gt") == {"images": []}
    with pytest.raises(DataError, match="COCO ground truth"):
        read_json(tmp_path / "none.json", "COCO ground truth", error=DataError)
    (tmp_path / "tag.yaml").write_text("!!python/object/apply:os.system ['true']\n")
    with pytest.raises(InputError, match="not valid YAML"):  # safe_load: no code runs
        read_yaml(tmp_path / "tag.yaml", "config")
