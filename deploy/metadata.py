"""Model metadata: class names, input size, stride, preprocessing, output format.

Sources, merged in this order (later wins):

1. what the runtime reads from the model file (:attr:`deploy.backends.Backend.metadata`):
   ONNX ``metadata_props``, OpenVINO ``rt_info`` (section ``edgekd``; ONNX props survive as
   section ``framework``), the JSON header ultralytics prepends to TensorRT engines;
2. an ultralytics ``metadata.yaml`` next to the model (its OpenVINO exports);
3. a sidecar ``<model stem>.edgekd.json`` next to the model:
   ``{"names": [...], "imgsz": [h, w], "stride": 32, "preprocess": {...}, "format": "split-v1"}``.

Values may be JSON strings (the edgekd contract), Python-literal strings (ultralytics writes
``str(dict)``; parsed with :func:`ast.literal_eval`, never ``eval``) or already-parsed objects.
"""

from __future__ import annotations

import ast
import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from deploy.errors import InputError
from deploy.preprocess import DEFAULT_PREPROCESS, PreprocessSpec

FORMAT_SPLIT = "split-v1"  # the edgekd ONNX contract: outputs boxes (B,4,A) + scores (B,nc,A)
FORMAT_ULTRALYTICS = "ultralytics"  # ultralytics' own exports: output0 (B,4+nc,A)
SIDECAR_SUFFIX = ".edgekd.json"


@dataclass(frozen=True)
class ModelMeta:
    """What the Detector needs to know about a model besides its weights."""

    names: tuple[str, ...]
    imgsz: tuple[int, int]
    stride: int = 32
    preprocess: PreprocessSpec = field(default_factory=PreprocessSpec)
    format: str = FORMAT_SPLIT
    extra: Mapping[str, Any] = field(default_factory=dict)


def sidecar_path(model_path: str | Path) -> Path:
    """``dir/model.engine`` -> ``dir/model.edgekd.json``."""
    p = Path(model_path)
    return p.with_name(p.stem + SIDECAR_SUFFIX)


def contract_props(
    names: Sequence[str], imgsz: tuple[int, int], stride: int = 32, preprocess: PreprocessSpec = DEFAULT_PREPROCESS
) -> dict[str, str]:
    """The ONNX ``metadata_props`` of the export contract (also the OpenVINO ``rt_info['edgekd']`` values)."""
    return {
        "names": json.dumps({str(i): n for i, n in enumerate(names)}),
        "imgsz": json.dumps([int(imgsz[0]), int(imgsz[1])]),
        "stride": str(int(stride)),
        "preprocess": json.dumps(asdict(preprocess), sort_keys=True),
        "edgekd_format": FORMAT_SPLIT,
    }


def write_sidecar(model_path: str | Path, meta: ModelMeta, **extra: Any) -> Path:
    """Write ``<model stem>.edgekd.json`` (e.g. next to a TensorRT engine); ``extra`` keys are kept verbatim."""
    data = {
        "names": list(meta.names),
        "imgsz": list(meta.imgsz),
        "stride": meta.stride,
        "preprocess": asdict(meta.preprocess),
        "format": meta.format,
        **extra,
    }
    out = sidecar_path(model_path)
    out.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    return out


def parse_value(value: Any) -> Any:
    """A metadata value -> Python object: JSON first, then a Python literal; non-strings pass through."""
    if not isinstance(value, str):
        return value
    try:
        return json.loads(value)
    except ValueError:
        pass
    try:
        return ast.literal_eval(value)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return value  # a plain string, e.g. a format name


def _names(value: Any, source: str) -> tuple[str, ...]:
    if isinstance(value, Mapping):
        try:
            items = sorted((int(k), str(v)) for k, v in value.items())
        except (TypeError, ValueError):
            raise InputError(f"{source}: 'names' keys must be class indices, got {list(value)[:5]}") from None
        if [i for i, _ in items] != list(range(len(items))):
            raise InputError(f"{source}: 'names' indices {[i for i, _ in items]} are not 0..{len(items) - 1}")
        return tuple(n for _, n in items)
    if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise InputError(f"{source}: 'names' = {value!r}, expected {{'0': 'pedestrian', ...}} or a list of strings")


def _positive_int(value: Any) -> bool:
    """A positive int; ``True`` (JSON ``true``) is not a size."""
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _imgsz(value: Any, source: str) -> tuple[int, int]:
    if _positive_int(value):
        return value, value
    if isinstance(value, (list, tuple)) and len(value) == 2 and all(_positive_int(v) for v in value):
        return int(value[0]), int(value[1])
    raise InputError(
        f"{source}: 'imgsz' = {value!r}, expected [height, width] (positive integers); "
        f'fix the model metadata or set "imgsz" in a sidecar {sidecar_path(source).name}'
    )


def _preprocess(value: Any, source: str) -> PreprocessSpec:
    if value is None:
        return PreprocessSpec()
    if not isinstance(value, Mapping):
        raise InputError(f"{source}: 'preprocess' = {value!r}, expected a JSON object")
    known = PreprocessSpec.__dataclass_fields__
    try:
        return PreprocessSpec(**{k: v for k, v in value.items() if k in known})
    except (TypeError, InputError) as exc:
        raise InputError(
            f"{source}: 'preprocess' = {value!r}: {exc}; fix the model's preprocess metadata (re-export it: "
            f'`edgekd run --until export`) or give a corrected "preprocess" in a sidecar {sidecar_path(source).name}'
        ) from None


def parse_metadata(
    raw: Mapping[str, Any],
    source: str,
    input_shape: Sequence[int | None] | None = None,
    output_names: Sequence[str] = (),
) -> ModelMeta:
    """Raw key/values -> :class:`ModelMeta`.

    Args:
        raw: merged metadata (see the module docstring).
        source: where it came from, for error messages (the model path).
        input_shape: the model's (B, 3, H, W) input shape, used when ``imgsz`` is absent and H, W are static.
        output_names: the model's outputs; ``boxes`` + ``scores`` imply the split format.
    """
    values = {k: parse_value(v) for k, v in raw.items()}
    if "names" not in values:
        raise InputError(
            f"{source}: no class names in the model metadata; expected ONNX metadata_props 'names' "
            f"(the export stage: `edgekd run --until export`) or a sidecar {sidecar_path(source).name} with "
            '"names": [...]'
        )
    names = _names(values["names"], source)
    if "imgsz" in values:
        imgsz = _imgsz(values["imgsz"], source)
    elif input_shape is not None and len(input_shape) == 4 and all(isinstance(d, int) for d in input_shape[2:]):
        imgsz = (int(input_shape[2]), int(input_shape[3]))  # type: ignore[arg-type]
    else:
        raise InputError(f"{source}: no 'imgsz' in the model metadata and the input size is dynamic; add imgsz [h, w]")
    fmt = values.get("edgekd_format", values.get("format"))
    if not isinstance(fmt, str) or fmt not in (FORMAT_SPLIT, FORMAT_ULTRALYTICS):
        fmt = FORMAT_SPLIT if {"boxes", "scores"} <= set(output_names) else FORMAT_ULTRALYTICS
    stride = values.get("stride", 32)
    if not _positive_int(stride):
        raise InputError(
            f"{source}: 'stride' = {stride!r}, expected a positive integer (32 for YOLOv8); "
            f'fix the model metadata or set "stride" in a sidecar {sidecar_path(source).name}'
        )
    known = {"names", "imgsz", "stride", "preprocess", "format", "edgekd_format"}
    extra = {k: v for k, v in values.items() if k not in known}
    return ModelMeta(names, imgsz, stride, _preprocess(values.get("preprocess"), source), fmt, extra)


def read_sidecar(model_path: str | Path) -> dict[str, Any]:
    """The sidecar JSON next to ``model_path`` as a dict ({} when there is none)."""
    path = sidecar_path(model_path)
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise InputError(f"model metadata sidecar {str(path)!r} is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise InputError(f"model metadata sidecar {str(path)!r}: expected a JSON object, got {type(data).__name__}")
    return data


def read_ultralytics_yaml(model_path: str | Path) -> dict[str, Any]:
    """ultralytics' ``metadata.yaml`` next to an exported OpenVINO IR ({} when there is none / not an IR)."""
    path = Path(model_path).with_name("metadata.yaml")
    if Path(model_path).suffix.lower() != ".xml" or not path.is_file():
        return {}
    import yaml

    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise InputError(f"model metadata {str(path)!r} is not valid YAML: {exc}") from None
    return {k: v for k, v in data.items() if k in ("names", "imgsz", "stride")} if isinstance(data, dict) else {}


def resolve_metadata(
    model_path: str | Path,
    embedded: Mapping[str, Any],
    input_shape: Sequence[int | None] | None = None,
    output_names: Sequence[str] = (),
) -> ModelMeta:
    """Merge the model's embedded metadata, an ultralytics metadata.yaml and the sidecar; parse them."""
    raw: dict[str, Any] = dict(embedded)
    raw.update(read_ultralytics_yaml(model_path))
    raw.update(read_sidecar(model_path))
    return parse_metadata(raw, str(model_path), input_shape, output_names)
