"""Config schema, profiles, overrides and the CLI's error handling."""

from __future__ import annotations

import subprocess
import sys

import pytest
import yaml

from deploy.errors import ConfigError
from pipeline.cli import available_profiles, main, resolve_config


@pytest.mark.parametrize("profile", ["smoke", "default", "bdd100k"])
def test_shipped_profiles_validate(profile, monkeypatch, tmp_path):
    if profile == "bdd100k":
        # the profile points at ../shared relative to the project root; paths are checked, so run from there
        from pathlib import Path

        root = Path(__file__).resolve().parents[1]
        if not (root.parent / "shared/datasets/bdd100k-mini").is_dir():
            pytest.skip("../shared/datasets/bdd100k-mini is absent (bdd100k profile paths cannot be checked)")
        monkeypatch.chdir(root)
    cfg = resolve_config(profile, [])
    assert cfg.profile == profile
    assert cfg.run.name == profile


def test_profiles_listed():
    assert {"smoke", "default", "bdd100k"} <= set(available_profiles())


def test_overrides_are_typed_and_applied():
    cfg = resolve_config(
        "smoke", ["train.epochs=3", "quantization.runtimes=[onnxruntime]", "teacher.trust_weights=true"]
    )
    assert cfg.train.epochs == 3
    assert cfg.quantization.runtimes == ("onnxruntime",)
    assert cfg.teacher.trust_weights is True


def test_every_problem_listed_at_once():
    with pytest.raises(ConfigError) as info:
        resolve_config("smoke", ["train.epochs=abc", "teacher.foo=1", "train.imgsz=100", "data.source=nope"])
    problems = "\n".join(info.value.problems)
    assert len(info.value.problems) == 4
    for key in ("train.epochs", "teacher.foo", "train.imgsz", "data.source"):
        assert key in problems
    assert "'abc'" in problems and "unknown key" in problems


def test_missing_files_are_reported(tmp_path):
    missing = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError) as info:
        resolve_config("smoke", ["data.source=yolo", f"data.yaml={missing}", f"report.baseline={missing}"])
    text = str(info.value)
    assert "data.yaml" in text and "report.baseline" in text and str(missing) in text


def test_options_that_would_be_dropped_are_errors():
    with pytest.raises(ConfigError) as info:
        resolve_config("smoke", ["evaluation.robustness_recipes=[head-float]", "benchmark.imgsz=320"])
    problems = "\n".join(info.value.problems)
    assert "evaluation.robustness_recipes.0: got 'head-float'" in problems and "'head_float'" in problems
    assert "benchmark.imgsz: unknown key" in problems  # it was never read
    with pytest.raises(ConfigError) as info:
        resolve_config("smoke", ["benchmark.peer_models=[distil]", "quantization.runtimes=[tensorrt]",
                                 "quantization.fallback=true", "quantization.accuracy_control=true"])  # fmt: skip
    problems = "\n".join(info.value.problems)
    assert len(info.value.problems) == 3, problems
    assert "benchmark.peer_models: got ['distil'], expected trained arms" in problems
    assert "quantization.fallback: true needs 'onnxruntime'" in problems
    assert "quantization.accuracy_control: true needs 'openvino'" in problems
    ok = resolve_config("smoke", ["quantization.runtimes=[onnxruntime]", "quantization.fallback=true",
                                  "benchmark.peer_models=[teacher,distill]"])  # fmt: skip
    assert ok.quantization.fallback and ok.benchmark.peer_models == ("teacher", "distill")


def test_cli_bad_config_exit_2_without_traceback():
    proc = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "config", "show", "--profile", "smoke", "train.epochs=-1", "oops"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert "train.epochs" in proc.stderr and "oops" in proc.stderr


@pytest.mark.parametrize("family", ["config", "device", "data", "deploy"])
def test_command_family_without_action_prints_its_own_help(family, capsys):
    assert main([family]) == 2
    out = capsys.readouterr().out
    assert out.startswith(f"usage: edgekd {family} [-h]"), out[:200]
    assert "ACTION" in out


def test_cli_config_show_prints_resolved_config(capsys):
    assert main(["config", "show", "--profile", "smoke", "--set", "train.epochs=2"]) == 0
    shown = yaml.safe_load(capsys.readouterr().out)
    assert shown["train"]["epochs"] == 2
    assert shown["profile"] == "smoke"


def test_malformed_profile_file(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: {epochs: 2\n  imgsz: [")
    assert main(["config", "show", "--profile", str(bad)]) == 2
    err = capsys.readouterr().err
    assert str(bad) in err and "not valid YAML" in err


def test_profile_file_not_a_mapping(tmp_path, capsys):
    bad = tmp_path / "list.yaml"
    bad.write_text("- 1\n- 2\n")
    assert main(["config", "show", "--profile", str(bad)]) == 2
    assert "expected a mapping" in capsys.readouterr().err


def test_unknown_profile_name(capsys):
    assert main(["config", "show", "--profile", "nosuch"]) == 2
    assert "smoke" in capsys.readouterr().err


def test_config_digest_changes_with_values():
    a = resolve_config("smoke", [])
    b = resolve_config("smoke", ["train.epochs=5"])
    assert a.digest() != b.digest()
    assert a.digest(("data.synth",)) == b.digest(("data.synth",))


def test_trust_weights_flag(capsys):
    assert (
        main(["config", "show", "--profile", "smoke", "--trust-weights", "teacher.weights=my.pt", "--format", "json"])
        == 0
    )
    import json

    shown = json.loads(capsys.readouterr().out)
    assert shown["teacher"]["trust_weights"] is True and shown["teacher"]["weights"] == "my.pt"
