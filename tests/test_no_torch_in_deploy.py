"""deploy/ is the runtime side: it must import and run with torch, torchvision and ultralytics absent."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from pathlib import Path

from _models import tiny_models

ROOT = Path(__file__).resolve().parents[1]
BLOCKED = ("torch", "torchvision", "ultralytics")
_NAMES = "|".join(BLOCKED)
PATTERN = re.compile(
    rf"^\s*(?:import|from)\s+(?:{_NAMES})\b|__import__\(\s*['\"](?:{_NAMES})\b|import_module\(\s*['\"](?:{_NAMES})\b",
    re.MULTILINE,
)

# Runs in a fresh interpreter: a meta-path hook makes every blocked import fail, then every module
# under deploy/ is imported; with a model path, the Detector also runs on ONNX Runtime and OpenVINO.
SCRIPT = textwrap.dedent(
    """
    import importlib, pkgutil, sys

    BLOCKED = {blocked!r}

    class Block:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ImportError(f"deploy/ must not import {{name}}")
            return None

    sys.meta_path.insert(0, Block())
    for name in BLOCKED:  # the hook itself works
        sys.modules.pop(name, None)
        try:
            importlib.import_module(name)
        except ImportError:
            pass
        else:
            raise SystemExit(f"the import hook failed to block {{name}}")
    import deploy

    names = sorted(m.name for m in pkgutil.walk_packages(deploy.__path__, "deploy."))
    for name in names:
        importlib.import_module(name)
    if len(sys.argv) > 1:
        import numpy as np
        from deploy.detector import Detector

        image = np.random.default_rng(0).integers(0, 255, (72, 128, 3), dtype=np.uint8)
        for backend in ("onnxruntime", "openvino"):
            Detector(sys.argv[1], backend=backend, threads=1).predict(image)
    print("IMPORTED", len(names), " ".join(names))
    print("LOADED", sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED))
    """
).format(blocked=BLOCKED)


def _run(*args: str) -> str:
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, *args], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def test_every_deploy_module_imports_without_torch():
    out = _run()
    imported = out.split("IMPORTED", 1)[1].splitlines()[0].split()
    assert int(imported[0]) == len(imported) - 1 >= 8  # errors, detections, preprocess, postprocess, backends...
    for module in ("deploy.detector", "deploy.backends.tensorrt", "deploy.backends.openvino", "deploy.metadata"):
        assert module in imported
    assert "LOADED []" in out


def test_detector_runs_without_torch(tmp_path_factory):
    model = tiny_models(tmp_path_factory.getbasetemp() / "edgekd-tiny-models")["onnx"]
    assert "LOADED []" in _run(str(model))


def test_no_torch_import_statements_under_deploy():
    files = sorted((ROOT / "deploy").rglob("*.py"))
    assert files
    offenders = [f"{p.relative_to(ROOT)}: {m.group(0).strip()}" for p in files for m in PATTERN.finditer(p.read_text())]
    assert offenders == []


def test_the_static_check_would_catch_an_import():
    assert PATTERN.search("x = 1\n    import torch.nn as nn\n")
    assert PATTERN.search("from ultralytics import YOLO\n")
    assert PATTERN.search("m = importlib.import_module('torchvision')\n")
    assert not PATTERN.search("import torchmetrics_free_name\n# mentions torch in a comment\n")
