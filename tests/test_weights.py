"""The trusted-weights registry: unknown pickles are refused before anything unpickles them."""

from __future__ import annotations

import json
import pathlib
import pickle
from pathlib import Path

import pytest

from deploy.errors import InputError, IntegrityError, StageError, UntrustedWeightsError
from pipeline.config import build_config
from pipeline.runner import Runner, Stage, sha256_file
from pipeline.stages import train as train_stages
from pipeline.train.weights import (
    DEFAULT_REGISTRY,
    REGISTRY_SCHEMA,
    load_registry,
    resolve_weights,
    verify_stage_weights,
)


class _Booby:
    """Unpickling this touches a marker file: proof that a file was (or was not) unpickled."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (pathlib.Path(self.marker),))


def _booby_pt(tmp_path: Path, name: str = "mystery.pt") -> tuple[Path, Path]:
    marker = tmp_path / "unpickled.flag"
    path = tmp_path / name
    path.write_bytes(pickle.dumps(_Booby(marker)))
    return path, marker


def _registry(tmp_path: Path, entries: dict) -> Path:
    path = tmp_path / "registry.json"
    path.write_text(json.dumps({"schema": REGISTRY_SCHEMA, "weights": entries}))
    return path


def _no_download(name: str) -> Path:
    raise AssertionError(f"unexpected download of {name}")


def test_shipped_registry_lists_v8_weights_with_cards():
    known = load_registry(DEFAULT_REGISTRY)
    assert {"yolov8l.pt", "yolov8s.pt"} <= set(known)
    for entry in known.values():
        assert (Path(__file__).resolve().parents[1] / entry.card).is_file()  # cards: models/cards/ of the project
        assert entry.sha256 is None or len(entry.sha256) == 64
        assert entry.source.startswith("https://github.com/ultralytics/assets/releases/")


def test_yaml_needs_no_check():
    r = resolve_weights("yolov8l.yaml", trust=False, download=_no_download)
    assert (r.path, r.sha256, r.trusted_by, r.model_arg) == (None, None, "yaml", "yolov8l.yaml")


def test_unknown_pt_is_refused_with_the_reason_and_not_unpickled(tmp_path):
    path, marker = _booby_pt(tmp_path)
    reg = _registry(tmp_path, {})
    with pytest.raises(UntrustedWeightsError) as err:
        resolve_weights(str(path), trust=False, registry=reg, download=_no_download)
    text = str(err.value)
    assert str(path) in text and sha256_file(path) in text
    assert "pickle" in text and "arbitrary code" in text and "teacher.trust_weights=true" in text
    assert err.value.exit_code == 2
    assert not marker.exists()


def test_known_name_with_other_content_or_unknown_checksum_is_refused(tmp_path):
    path, marker = _booby_pt(tmp_path, "yolov8l.pt")
    reg = _registry(tmp_path, {"yolov8l.pt": {"sha256": "ab" * 32}})
    with pytest.raises(UntrustedWeightsError, match="differs from the published"):
        resolve_weights(str(path), trust=False, registry=reg, download=_no_download)
    reg = _registry(tmp_path, {"yolov8l.pt": {"sha256": None}})
    with pytest.raises(UntrustedWeightsError, match="without a published sha256"):
        resolve_weights(str(path), trust=False, registry=reg, download=_no_download)
    assert not marker.exists()


def test_trusted_when_sha256_matches_and_opt_in_works(tmp_path):
    path, marker = _booby_pt(tmp_path)
    digest = sha256_file(path)
    reg = _registry(tmp_path, {"custom-teacher.pt": {"sha256": digest.upper()}})
    r = resolve_weights(str(path), trust=False, registry=reg, download=_no_download)
    assert (r.trusted_by, r.sha256, r.path) == ("registry", digest, path.resolve())
    r = resolve_weights(str(path), trust=True, registry=_registry(tmp_path, {}), download=_no_download)
    assert (r.trusted_by, r.sha256, r.model_arg) == ("user", digest, str(path.resolve()))
    assert not marker.exists()  # resolving never unpickles


def test_known_name_not_on_disk_is_downloaded_then_checked(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    payload = tmp_path / "cache" / "yolov8s.pt"
    payload.parent.mkdir()
    payload.write_bytes(b"not really a checkpoint")
    calls = []

    def fake_download(name: str) -> Path:
        calls.append(name)
        return payload

    reg = _registry(tmp_path, {"yolov8s.pt": {"sha256": sha256_file(payload)}})
    r = resolve_weights("yolov8s.pt", trust=False, registry=reg, download=fake_download)
    assert calls == ["yolov8s.pt"] and r.trusted_by == "registry" and r.path == payload.resolve()
    with pytest.raises(InputError, match="does not exist"):
        resolve_weights("other.pt", trust=True, registry=reg, download=fake_download)
    with pytest.raises(InputError, match="expected a .pt"):
        resolve_weights("model.onnx", trust=True, registry=reg, download=fake_download)


def test_malformed_registry_is_an_input_error(tmp_path):
    bad = tmp_path / "registry.json"
    bad.write_text("{not json")
    with pytest.raises(InputError, match="registry.json"):
        load_registry(bad)
    bad.write_text(json.dumps({"schema": REGISTRY_SCHEMA, "weights": {"x.pt": {"sha256": "123"}}}))
    with pytest.raises(InputError, match="64 hex digits"):
        load_registry(bad)
    with pytest.raises(InputError, match="does not exist"):
        load_registry(tmp_path / "absent.json")


def test_teacher_stage_refuses_unknown_weights_before_loading(tmp_path):
    path, marker = _booby_pt(tmp_path)
    cfg = build_config({"run": {"name": "w", "runs_dir": str(tmp_path / "runs")}, "teacher": {"weights": str(path)}})
    data = Stage("data", lambda ctx: None)
    teacher = next(s for s in train_stages.STAGES if s.name == "teacher")
    with pytest.raises(UntrustedWeightsError, match="teacher.trust_weights=true"):
        Runner(cfg, [data, teacher], log=lambda m: None).run()
    assert not marker.exists()


def _manifest(run: Path, stage: str, rel: str, digest: str, status: str = "done") -> None:
    record = {"status": status, "outputs": {rel: {"sha256": digest, "size": 1}}}
    (run / "manifest.json").write_text(json.dumps({"stages": {stage: record}}))


def test_run_weights_are_trusted_through_the_manifest(tmp_path):
    run = tmp_path / "run"
    best = run / "teacher" / "weights" / "best.pt"
    best.parent.mkdir(parents=True)
    best.write_bytes(b"weights")
    _manifest(run, "teacher", "weights/best.pt", sha256_file(best))
    assert verify_stage_weights(run, "teacher") == (best, sha256_file(best))
    best.write_bytes(b"weights, altered")
    with pytest.raises(IntegrityError, match=r"best\.pt.*differs from"):
        verify_stage_weights(run, "teacher")
    _manifest(run, "teacher", "weights/best.pt", sha256_file(best), status="running")
    with pytest.raises(StageError, match="has not completed"):
        verify_stage_weights(run, "teacher")
    with pytest.raises(StageError, match="no completed stage 'student'"):
        verify_stage_weights(run, "student")


def test_run_refuses_an_unverifiable_teacher_before_any_stage(tmp_path, capsys):
    """yolov8l.pt is known but has no published sha256: `edgekd run` stops at once (exit 2), writing nothing."""
    from pipeline.cli import main

    runs = tmp_path / "runs"
    assert main(["run", "--profile", "smoke", f"run.runs_dir={runs}", "teacher.weights=yolov8l.pt"]) == 2
    err = capsys.readouterr().err
    assert "no published sha256" in err and "teacher.trust_weights=true" in err and "yolov8l.yaml" in err
    assert not runs.exists()
