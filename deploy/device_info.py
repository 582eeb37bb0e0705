"""What machine a device benchmark ran on: Jetson model, L4T release, power mode, clocks, runtimes, packages.

No timestamps and no host name: the result goes into metrics.json provenance.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from deploy.power import read_clocks, read_nvpmodel
from deploy.provenance import machine_info
from deploy.provenance import package_versions as _versions

PACKAGES = (
    "edgekd",
    "numpy",
    "opencv-python-headless",
    "onnx",
    "onnxruntime",
    "onnxruntime-gpu",
    "openvino",
    "tensorrt",
    "faster-coco-eval",
    "jetson-stats",
)


def package_versions(names: tuple[str, ...] = PACKAGES) -> dict[str, str]:
    return _versions(names)


def jetson_model(root: Path = Path("/")) -> str | None:
    """The board name from the device tree (e.g. 'NVIDIA Jetson Orin Nano Developer Kit'), None off a Jetson."""
    for rel in ("proc/device-tree/model", "sys/firmware/devicetree/base/model"):
        try:
            text = (root / rel).read_bytes().decode(errors="replace").strip("\x00 \n")
        except OSError:
            continue
        if text:
            return text
    return None


def l4t_release(root: Path = Path("/")) -> str | None:
    """``# R36 (release), REVISION: 4.0, ...`` of /etc/nv_tegra_release -> 'R36.4.0'."""
    try:
        first = (root / "etc/nv_tegra_release").read_text().splitlines()[0]
    except (OSError, IndexError):
        return None
    parts = first.lstrip("# ").split(",")
    major = parts[0].split()[0] if parts and parts[0].split() else None
    revision = next((p.split(":", 1)[1].strip() for p in parts if "REVISION" in p), None)
    return f"{major}.{revision}" if major and revision else (major or None)


def tensorrt_status() -> tuple[str | None, str]:
    """(TensorRT version, "") when importable, else (None, why not)."""
    if importlib.util.find_spec("tensorrt") is None:
        return None, "the `tensorrt` Python package is not installed (TensorRT ships with JetPack on a Jetson)"
    try:
        import tensorrt as trt
    except Exception as exc:  # a broken install (missing libnvinfer) raises ImportError/OSError variants
        return None, f"`import tensorrt` failed: {exc}"
    return str(trt.__version__), ""


def onnxruntime_status() -> tuple[str | None, list[str]]:
    try:
        import onnxruntime as ort
    except ImportError:
        return None, []
    return str(ort.__version__), list(ort.get_available_providers())


def device_info() -> dict[str, Any]:
    """Everything known about this machine's accelerator side (JSON-able)."""
    board = jetson_model()
    trt_version, trt_reason = tensorrt_status()
    ort_version, providers = onnxruntime_status()
    mode, mode_reason = read_nvpmodel()
    return {
        "jetson": board is not None and "jetson" in board.lower(),
        "board": board,
        "l4t": l4t_release(),
        "nvpmodel": mode,
        "nvpmodel_note": mode_reason or None,
        "clocks": read_clocks(),
        "tensorrt": trt_version,
        "tensorrt_note": trt_reason or None,
        "onnxruntime": ort_version,
        "onnxruntime_providers": providers,
        "machine": machine_info(),
    }


def device_label(info: dict[str, Any]) -> str:
    """A short name for the ``device`` column: the board and power mode, else the CPU."""
    if info.get("board"):
        mode = (info.get("nvpmodel") or {}).get("name")
        return f"{info['board']}" + (f" [{mode}]" if mode else "")
    return f"{info['machine']['cpu']} ({info['machine']['machine']}, CPU)"
