"""A small cached, resumable stage runner (DVC-style: deps, params, outs).

Each stage writes into a fresh temporary folder; only when its function
returns is the folder moved into place (an atomic rename) and the manifest
updated (written to a temporary file, then ``os.replace``). A ``kill -9`` at
any moment therefore leaves either the previous complete output or none, and
the next run resumes after the last completed stage.

The cache key of a stage hashes: its name and version, the values of its
declared config keys, the versions of its declared tools, the sha256 of its
upstream stages' outputs and the contents of its external input files.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from deploy.errors import StageError
from deploy.provenance import package_versions, sha256_file
from pipeline.config import Config

MANIFEST_VERSION = 1


def list_files(root: Path, volatile: tuple[str, ...] = ()) -> list[Path]:
    """Files below ``root`` (sorted), leaving out those matching a ``volatile`` glob (relative posix path)."""
    files = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        rel = PurePosixPath(path.relative_to(root).as_posix())
        if not any(rel.match(pattern) for pattern in volatile):
            files.append(path)
    return files


def hash_tree(root: Path, volatile: tuple[str, ...] = ()) -> dict[str, dict[str, Any]]:
    """{relative posix path: {"sha256", "size"}} of every file below ``root`` but the volatile ones."""
    return {
        path.relative_to(root).as_posix(): {"sha256": sha256_file(path), "size": path.stat().st_size}
        for path in list_files(root, volatile)
    }


def tree_digest(files: dict[str, dict[str, Any]]) -> str:
    h = hashlib.sha256()
    for rel in sorted(files):
        h.update(f"{rel}\0{files[rel]['sha256']}\n".encode())
    return h.hexdigest()


tool_versions = package_versions  # the versions that go into a stage's cache key


@dataclass
class StageContext:
    """What a stage function sees: the config, where to write, its inputs."""

    cfg: Config
    name: str
    out: Path
    run_dir: Path
    inputs: dict[str, Path]
    log: Callable[[str], None] = print
    track: Callable[..., Iterable[Any]] = field(default=lambda items, description="", total=None: items)
    """``ctx.track(items, description, total)``: iterate with a progress bar (plain iteration by default)."""
    scratch: Path | None = None
    """A folder that survives a crash of this stage (same cache key) and is removed once the stage succeeds:
    where a long stage keeps what it needs to resume (e.g. ultralytics' ``last.pt``)."""

    def upstream(self, stage: str) -> Path:
        try:
            return self.inputs[stage]
        except KeyError:
            raise StageError(f"stage {self.name!r} asked for {stage!r}, which is not one of its upstream stages") from None


@dataclass(frozen=True)
class Stage:
    """A pipeline stage: a function plus what its output depends on."""

    name: str
    func: Callable[[StageContext], None]
    version: str = "1"
    params: tuple[str, ...] = ()
    upstream: tuple[str, ...] = ()
    tools: tuple[str, ...] = ()
    external: Callable[[Config], list[Path]] | None = None
    enabled: Callable[[Config], bool] = field(default=lambda cfg: True)
    description: str = ""
    # Globs (relative to the stage folder) of files that consumers may add or change later, such as
    # ultralytics' ``labels/*.cache``; they are neither hashed nor checked.
    volatile: tuple[str, ...] = ()


class Manifest:
    """``runs/<name>/manifest.json``: each stage's key, status, timings, outputs."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.data: dict[str, Any] = {"manifest_version": MANIFEST_VERSION, "stages": {}}
        if path.is_file():
            try:
                loaded = json.loads(path.read_text())
                if isinstance(loaded, dict) and isinstance(loaded.get("stages"), dict):
                    self.data = loaded
            except (OSError, ValueError):
                pass  # an unreadable manifest only costs a rebuild

    def stage(self, name: str) -> dict[str, Any] | None:
        return self.data["stages"].get(name)

    def set_stage(self, name: str, record: dict[str, Any]) -> None:
        self.data["stages"][name] = record
        self.save()

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".json.tmp")
        with open(tmp, "w") as fh:
            json.dump(self.data, fh, indent=2, sort_keys=True)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.path)


@dataclass
class StageResult:
    name: str
    status: str  # "cached" | "ran" | "skipped"
    seconds: float


class Runner:
    """Runs stages in order, skipping those whose key and outputs are unchanged."""

    def __init__(
        self,
        cfg: Config,
        stages: Sequence[Stage],
        log: Callable[[str], None] = print,
        track: Callable[..., Iterable[Any]] | None = None,
    ) -> None:
        self.cfg = cfg
        self.stages = list(stages)
        self.by_name = {s.name: s for s in self.stages}
        self.run_dir = cfg.run_dir
        self.manifest = Manifest(self.run_dir / "manifest.json")
        self.log = log
        self.track = track

    # -- keys ------------------------------------------------------------
    def key(self, stage: Stage) -> str:
        payload: dict[str, Any] = {
            "stage": stage.name,
            "version": stage.version,
            "params": self.cfg.values(stage.params),
            "tools": tool_versions(stage.tools),
            "upstream": {},
            "external": {},
        }
        for up in self.active_upstream(stage):
            rec = self.manifest.stage(up)
            if rec is None or rec.get("status") != "done":
                raise StageError(f"stage {stage.name!r} needs {up!r}, which has not completed")
            payload["upstream"][up] = rec["outputs_digest"]
        if stage.external is not None:
            for path in stage.external(self.cfg):
                payload["external"][str(path)] = _hash_input(path)
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()

    def active_upstream(self, stage: Stage) -> list[str]:
        """Upstream stages that are registered and enabled under this config."""
        return [u for u in stage.upstream if u in self.by_name and self.by_name[u].enabled(self.cfg)]

    def last_done(self, name: str) -> dict[str, Any] | None:
        """The stage's last "done" record: its own, or the one kept under ``previous`` while a re-run is running or
        after it failed (the re-run replaces the stage's folder only when it succeeds)."""
        rec = self.manifest.stage(name)
        return rec if rec is None or rec.get("status") == "done" else rec.get("previous")

    def is_fresh(self, stage: Stage, key: str) -> bool:
        rec = self.last_done(stage.name)
        if rec is None or rec.get("key") != key:
            return False
        out_dir = self.run_dir / stage.name
        if not out_dir.is_dir():
            return False
        recorded = rec.get("outputs", {})
        actual = {p.relative_to(out_dir).as_posix() for p in list_files(out_dir, stage.volatile)}
        if actual != set(recorded):
            self.log(f"[{stage.name}] outputs changed on disk (files added or removed); rebuilding")
            return False
        for rel, info in recorded.items():
            path = out_dir / rel
            if path.stat().st_size != info["size"] or sha256_file(path) != info["sha256"]:
                self.log(f"[{stage.name}] {rel}: checksum mismatch (truncated or altered); rebuilding")
                return False
        return True

    # -- running ---------------------------------------------------------
    def downstream(self, name: str) -> set[str]:
        out = {name}
        changed = True
        while changed:
            changed = False
            for s in self.stages:
                if s.name not in out and out.intersection(s.upstream):
                    out.add(s.name)
                    changed = True
        return out

    def run(self, force: Iterable[str] = (), until: str | None = None) -> list[StageResult]:
        forced: set[str] = set()
        for name in force:
            if name not in self.by_name:
                raise StageError(f"--force {name!r}: no such stage; expected one of {', '.join(self.by_name)}")
            forced |= self.downstream(name)
        results = []
        self.manifest.data["config_digest"] = self.cfg.digest()
        self.manifest.data["order"] = [s.name for s in self.stages]
        self.manifest.save()
        for stage in self.stages:
            if stage.enabled(self.cfg):
                results.append(self._run_one(stage, force=stage.name in forced))
            else:
                results.append(StageResult(stage.name, "skipped", 0.0))
            if stage.name == until:  # also when that stage is disabled: nothing after it runs
                break
        return results

    def _run_one(self, stage: Stage, force: bool) -> StageResult:
        key = self.key(stage)
        if not force and self.is_fresh(stage, key):
            done = self.last_done(stage.name)
            if done is not self.manifest.stage(stage.name):  # an interrupted re-run left its folder untouched
                self.manifest.set_stage(stage.name, done or {})
            self.log(f"[{stage.name}] up to date (cached)")
            return StageResult(stage.name, "cached", 0.0)
        self.log(f"[{stage.name}] running")
        tmp_root = self.run_dir / ".tmp"
        tmp = tmp_root / stage.name
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir(parents=True)
        inputs = {up: self.run_dir / up for up in self.active_upstream(stage)}
        scratch = _scratch_for(self.run_dir, stage.name, key, fresh=force)
        ctx = StageContext(self.cfg, stage.name, tmp, self.run_dir, inputs, self.log, scratch=scratch)
        if self.track is not None:
            ctx.track = self.track
        started = time.time()
        t0 = time.perf_counter()
        previous = self.last_done(stage.name)
        self.manifest.set_stage(stage.name, {"status": "running", "key": key, "started": started, "previous": previous})
        try:
            stage.func(ctx)
        except BaseException:
            failed = {"status": "failed", "key": key, "started": started, "previous": previous}
            self.manifest.set_stage(stage.name, failed)
            raise
        seconds = time.perf_counter() - t0
        files = hash_tree(tmp, stage.volatile)
        final = self.run_dir / stage.name
        _replace_dir(tmp, final)
        self.manifest.set_stage(
            stage.name,
            {
                "status": "done",
                "key": key,
                "version": stage.version,
                "started": started,
                "seconds": round(seconds, 3),
                "outputs": files,
                "outputs_digest": tree_digest(files),
            },
        )
        shutil.rmtree(scratch, ignore_errors=True)  # after "done" is on record: a crash before keeps the resume point
        self.log(f"[{stage.name}] done in {seconds:.1f} s")
        return StageResult(stage.name, "ran", seconds)


SCRATCH_KEY = "stage_key.txt"


def _scratch_for(run_dir: Path, name: str, key: str, fresh: bool = False) -> Path:
    """``run_dir/.scratch/<stage>``, kept when it was made for the same cache ``key`` (and not ``fresh``: --force),
    else emptied."""
    scratch = run_dir / ".scratch" / name
    marker = scratch / SCRATCH_KEY
    if scratch.exists() and (fresh or not (marker.is_file() and marker.read_text().strip() == key)):
        shutil.rmtree(scratch)
    scratch.mkdir(parents=True, exist_ok=True)
    marker.write_text(key + "\n")
    return scratch


def _hash_input(path: Path) -> str:
    if path.is_dir():
        return tree_digest(hash_tree(path))
    if path.is_file():
        return sha256_file(path)
    return "missing"


def _replace_dir(src: Path, dst: Path) -> None:
    """Move ``src`` to ``dst`` so that ``dst`` is always either old or new."""
    trash = dst.with_name(f".{dst.name}.old")
    if trash.exists():
        shutil.rmtree(trash)
    if dst.exists():
        os.replace(dst, trash)
    os.replace(src, dst)
    if trash.exists():
        shutil.rmtree(trash)
