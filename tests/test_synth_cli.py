"""``edgekd data synth`` through the CLI: happy path and clear errors (exit code 2) for bad input."""

from __future__ import annotations

import json

import pytest

from deploy.errors import InputError
from pipeline.cli import main
from pipeline.data.synth_writer import generate_dataset, parse_size


def test_synth_command_writes_the_layout(tmp_path, capsys):
    out = tmp_path / "ds"
    code = main(["data", "synth", "--out", str(out), "--train", "3", "--val", "2", "--seed", "5", "--size", "160x96"])
    assert code == 0
    assert sorted(p.name for p in (out / "images/train").iterdir()) == ["000001.jpg", "000002.jpg", "000003.jpg"]
    assert len(list((out / "labels/val").iterdir())) == 2
    meta = json.loads((out / "dataset.json").read_text())
    assert meta["seed"] == 5 and meta["size"] == [160, 96] and meta["splits"]["val"]["images"] == 2
    text = capsys.readouterr().out
    assert "train: 3 images" in text and "wrote" in text


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--size", "640by384"], "'640by384'"),
        (["--size", "32x32"], "width 32"),
        (["--size", "640x5000"], "height 5000"),
        (["--train", "-5"], "--train: got -5"),
        (["--val", "0"], "--val: got 0"),
        (["--seed", "-1"], "--seed: got -1"),
        (["--reach", "0"], "--reach: got 0.0"),
        (["--reach", "1.5"], "--reach: got 1.5"),
    ],
)
def test_bad_arguments_exit_2_with_a_clear_message(tmp_path, capsys, args, needle):
    code = main(["data", "synth", "--out", str(tmp_path / "ds"), "--train", "2", "--val", "1", *args])
    assert code == 2
    err = capsys.readouterr().err
    assert needle in err and "Traceback" not in err
    assert not (tmp_path / "ds").exists()


def test_out_pointing_at_a_file_or_a_foreign_folder(tmp_path, capsys):
    target = tmp_path / "file.txt"
    target.write_text("mine")
    assert main(["data", "synth", "--out", str(target), "--train", "1", "--val", "1", "--size", "96x64"]) == 2
    assert "is a file" in capsys.readouterr().err
    assert target.read_text() == "mine"
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "holiday.jpg").write_bytes(b"x")
    assert main(["data", "synth", "--out", str(folder), "--train", "1", "--val", "1", "--size", "96x64"]) == 2
    assert "not empty" in capsys.readouterr().err
    assert (folder / "holiday.jpg").read_bytes() == b"x"


def test_api_validates_like_the_cli(tmp_path):
    with pytest.raises(InputError, match="--train"):
        generate_dataset(tmp_path / "x", train=0, val=1)
    with pytest.raises(InputError, match="WIDTHxHEIGHT"):
        parse_size("640")
    assert parse_size(" 320X192 ") == (320, 192)
    assert not list(tmp_path.iterdir())  # nothing half-written
