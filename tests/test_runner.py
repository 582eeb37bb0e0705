"""The cached, resumable stage runner: caching, checksums, --force, kill -9 resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from deploy.errors import StageError
from pipeline.config import build_config
from pipeline.runner import Runner, Stage, StageContext, hash_tree


def _cfg(tmp_path: Path, **train):
    return build_config({"run": {"name": "t", "runs_dir": str(tmp_path / "runs")}, "train": train})


CALLS: list[str] = []


def _make(name: str, upstream: tuple[str, ...] = ()):
    def func(ctx: StageContext) -> None:
        CALLS.append(name)
        text = f"{name}:{ctx.cfg.train.epochs}"
        for up in upstream:
            text += "|" + (ctx.upstream(up) / "out.txt").read_text()
        (ctx.out / "out.txt").write_text(text)

    return Stage(name, func, params=("train.epochs",), upstream=upstream)


def _stages():
    return [_make("a"), _make("b", ("a",)), _make("c", ("b",))]


def test_rerun_with_nothing_changed_does_no_work(tmp_path):
    CALLS.clear()
    cfg = _cfg(tmp_path)
    first = Runner(cfg, _stages(), log=lambda m: None).run()
    assert [r.status for r in first] == ["ran", "ran", "ran"]
    second = Runner(cfg, _stages(), log=lambda m: None).run()
    assert [r.status for r in second] == ["cached", "cached", "cached"]
    assert CALLS == ["a", "b", "c"]
    manifest = json.loads((cfg.run_dir / "manifest.json").read_text())
    rec = manifest["stages"]["c"]
    assert rec["status"] == "done" and len(rec["key"]) == 64
    assert rec["outputs"]["out.txt"]["sha256"] == hash_tree(cfg.run_dir / "c")["out.txt"]["sha256"]


def test_config_change_reruns_only_dependent_stages(tmp_path):
    CALLS.clear()
    Runner(_cfg(tmp_path), _stages(), log=lambda m: None).run()
    CALLS.clear()
    stages = [_make("a"), _make("b", ("a",)), Stage("c", _stages()[2].func, params=(), upstream=("b",))]
    Runner(_cfg(tmp_path, epochs=7), stages, log=lambda m: None).run()
    assert CALLS == ["a", "b", "c"]  # c's own params did not change, but its upstream output did
    assert (tmp_path / "runs/t/c/out.txt").read_text() == "c:7|b:7|a:7"


def test_truncated_or_altered_output_is_rebuilt(tmp_path):
    CALLS.clear()
    cfg = _cfg(tmp_path)
    Runner(cfg, _stages(), log=lambda m: None).run()
    (cfg.run_dir / "b" / "out.txt").write_text("b:3")  # same size, different bytes? no: altered content
    CALLS.clear()
    logs: list[str] = []
    Runner(cfg, _stages(), log=logs.append).run()
    assert CALLS == ["b"]  # b rebuilt to identical bytes, so c's key is unchanged
    assert any("checksum mismatch" in m for m in logs)
    with open(cfg.run_dir / "a" / "out.txt", "r+") as fh:
        fh.truncate(1)
    CALLS.clear()
    Runner(cfg, _stages(), log=lambda m: None).run()
    assert CALLS == ["a"]


def test_force_reruns_stage_and_downstream(tmp_path):
    CALLS.clear()
    cfg = _cfg(tmp_path)
    Runner(cfg, _stages(), log=lambda m: None).run()
    CALLS.clear()
    Runner(cfg, _stages(), log=lambda m: None).run(force=["b"])
    assert CALLS == ["b", "c"]
    with pytest.raises(StageError, match="no such stage"):
        Runner(cfg, _stages(), log=lambda m: None).run(force=["nope"])


def test_failed_stage_keeps_earlier_outputs(tmp_path):
    CALLS.clear()
    cfg = _cfg(tmp_path)

    def boom(ctx: StageContext) -> None:
        (ctx.out / "partial.txt").write_text("x")
        raise RuntimeError("boom")

    stages = [_make("a"), Stage("b", boom, upstream=("a",))]
    with pytest.raises(RuntimeError):
        Runner(cfg, stages, log=lambda m: None).run()
    manifest = json.loads((cfg.run_dir / "manifest.json").read_text())
    assert manifest["stages"]["a"]["status"] == "done"
    assert manifest["stages"]["b"]["status"] == "failed"
    assert not (cfg.run_dir / "b").exists()
    assert (cfg.run_dir / "a" / "out.txt").is_file()


SCRIPT = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from pipeline.config import build_config
    from pipeline.runner import Runner, Stage

    runs, marker = sys.argv[1], Path(sys.argv[2])

    def a(ctx):
        (ctx.out / "a.txt").write_text("alpha")

    def b(ctx):
        (ctx.out / "b1.txt").write_text((ctx.upstream("a") / "a.txt").read_text() + "-beta")
        marker.write_text("in b")
        if not marker.with_suffix(".nosleep").exists():
            time.sleep(60)
        (ctx.out / "b2.txt").write_text("done")

    def c(ctx):
        (ctx.out / "c.txt").write_text((ctx.upstream("b") / "b1.txt").read_text() + "-gamma")

    cfg = build_config({"run": {"name": "k", "runs_dir": runs}})
    for r in Runner(cfg, [Stage("a", a), Stage("b", b, upstream=("a",)), Stage("c", c, upstream=("b",))],
                    log=lambda m: print(m, flush=True)).run():
        print("RESULT", r.name, r.status, flush=True)
    """
)


def test_kill_9_mid_stage_then_resume(tmp_path):
    script = tmp_path / "pipe.py"
    script.write_text(SCRIPT)
    marker = tmp_path / "marker.txt"
    runs = tmp_path / "runs"
    proc = subprocess.Popen([sys.executable, str(script), str(runs), str(marker)], stdout=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while not marker.exists() and time.time() < deadline:
        time.sleep(0.05)
    assert marker.exists(), "stage b never started"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    manifest = json.loads((runs / "k" / "manifest.json").read_text())
    assert manifest["stages"]["a"]["status"] == "done"
    assert manifest["stages"]["b"]["status"] == "running"
    assert not (runs / "k" / "b").exists()

    marker.with_suffix(".nosleep").write_text("")
    out = subprocess.run([sys.executable, str(script), str(runs), str(marker)], capture_output=True, text=True, check=True)
    assert "RESULT a cached" in out.stdout
    assert "RESULT b ran" in out.stdout and "RESULT c ran" in out.stdout

    clean = tmp_path / "clean"
    subprocess.run([sys.executable, str(script), str(clean), str(marker)], capture_output=True, text=True, check=True)
    resumed = json.loads((runs / "k" / "manifest.json").read_text())["stages"]
    fresh = json.loads((clean / "k" / "manifest.json").read_text())["stages"]
    for name in "abc":
        assert resumed[name]["outputs"] == fresh[name]["outputs"]
        assert resumed[name]["key"] == fresh[name]["key"]


def test_volatile_files_do_not_invalidate(tmp_path):
    cfg = _cfg(tmp_path)

    def make(ctx: StageContext) -> None:
        (ctx.out / "labels").mkdir()
        (ctx.out / "labels" / "a.txt").write_text("0 0.5 0.5 0.1 0.1\n")

    stages = [Stage("data", make, volatile=("labels/*.cache",))]
    Runner(cfg, stages, log=lambda m: None).run()
    (cfg.run_dir / "data" / "labels" / "train.cache").write_bytes(b"consumer cache")
    assert [r.status for r in Runner(cfg, stages, log=lambda m: None).run()] == ["cached"]
    (cfg.run_dir / "data" / "labels" / "extra.txt").write_text("x")
    assert [r.status for r in Runner(cfg, stages, log=lambda m: None).run()] == ["ran"]


def test_stages_get_the_runner_progress_tracker(tmp_path):
    seen: list[str] = []

    def track(items, description="", total=None):
        seen.append(description)
        return items

    def loop(ctx: StageContext) -> None:
        for _ in ctx.track(range(3), "frames", 3):
            pass
        (ctx.out / "x").write_text("x")

    Runner(_cfg(tmp_path), [Stage("s", loop)], log=lambda m: None, track=track).run()
    assert seen == ["frames"]


class Crash(Exception):
    """Stands in for a killed process in the scratch test."""


def test_scratch_survives_a_crash_for_the_same_key_only(tmp_path):
    seen: list[list[str]] = []

    def step(ctx: StageContext) -> None:
        assert ctx.scratch is not None and ctx.scratch.is_dir()
        seen.append(sorted(p.name for p in ctx.scratch.iterdir() if p.name != "stage_key.txt"))
        progress = ctx.scratch / "progress.txt"
        if not progress.exists():
            progress.write_text("half done")
            raise Crash
        (ctx.out / "out.txt").write_text(progress.read_text())

    stage = [Stage("s", step, params=("train.epochs",))]
    cfg = _cfg(tmp_path, epochs=3)
    with pytest.raises(Crash):
        Runner(cfg, stage, log=lambda m: None).run()
    Runner(cfg, stage, log=lambda m: None).run()  # same key: the scratch folder is still there
    assert seen == [[], ["progress.txt"]]
    assert (cfg.run_dir / "s/out.txt").read_text() == "half done"
    assert not (cfg.run_dir / ".scratch/s").exists()  # removed after success

    other = _cfg(tmp_path, epochs=4)  # another key: a crash's scratch is not reused
    with pytest.raises(Crash):
        Runner(other, stage, log=lambda m: None).run()
    seen.clear()
    with pytest.raises(Crash):
        Runner(_cfg(tmp_path, epochs=5), stage, log=lambda m: None).run()
    with pytest.raises(Crash):  # --force: from scratch too, although the key is the same
        Runner(_cfg(tmp_path, epochs=5), stage, log=lambda m: None).run(force=["s"])
    assert seen == [[], []]


def test_until_stops_at_a_disabled_stage_too(tmp_path):
    CALLS.clear()
    off = Stage("b", _make("b", ("a",)).func, upstream=("a",), enabled=lambda cfg: False)
    results = Runner(_cfg(tmp_path), [_make("a"), off, _make("c", ("a",))], log=lambda m: None).run(until="b")
    assert [(r.name, r.status) for r in results] == [("a", "ran"), ("b", "skipped")] and CALLS == ["a"]


def test_scratch_is_removed_only_after_done_is_on_record(tmp_path):
    cfg = _cfg(tmp_path)
    seen: list[str] = []

    def func(ctx: StageContext) -> None:
        (ctx.scratch / "last.pt").write_text("resume point")
        (ctx.out / "out.txt").write_text("x")

    runner = Runner(cfg, [Stage("a", func)], log=lambda m: None)
    real_set = runner.manifest.set_stage

    def spy(name, record):
        if record["status"] == "done":
            seen.append("scratch kept" if (cfg.run_dir / ".scratch/a/last.pt").is_file() else "scratch gone")
        real_set(name, record)

    runner.manifest.set_stage = spy
    runner.run()
    assert seen == ["scratch kept"]


def test_a_failed_rerun_keeps_the_last_done_record(tmp_path):
    """A re-run (config changed) that fails leaves the stage's folder as it was; going back to the old config finds
    it cached instead of running it again."""
    CALLS.clear()
    Runner(_cfg(tmp_path, epochs=1), _stages(), log=lambda m: None).run()

    def boom(ctx: StageContext) -> None:
        raise KeyboardInterrupt  # killed mid-stage

    failing = [_make("a"), Stage("b", boom, params=("train.epochs",), upstream=("a",)), _make("c", ("b",))]
    with pytest.raises(KeyboardInterrupt):
        Runner(_cfg(tmp_path, epochs=2), failing, log=lambda m: None).run()
    CALLS.clear()
    again = Runner(_cfg(tmp_path, epochs=1), _stages(), log=lambda m: None).run()
    assert [r.status for r in again] == ["ran", "cached", "cached"] and CALLS == ["a"]
    manifest = json.loads((_cfg(tmp_path).run_dir / "manifest.json").read_text())
    assert manifest["stages"]["b"]["status"] == "done"
