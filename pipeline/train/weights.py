"""Weights you can trust: a ``.pt`` is a Python pickle, and unpickling can run arbitrary code.

Before anything unpickles a ``.pt`` file, edgekd checks its sha256:

- against ``pipeline/train/registry.json`` (known weight names -> published sha256, with model cards): a match is trusted;
- for weights trained by edgekd's own stages in the same run, against the sha256 the run manifest recorded when
  that stage completed (:func:`verify_stage_weights`);
- anything else is refused with :class:`UntrustedWeightsError` unless the user opted in
  (``teacher.trust_weights=true``).

Model ``.yaml`` files are not pickles and need no check. This module does not import torch.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from deploy.errors import InputError, IntegrityError, StageError, UntrustedWeightsError
from pipeline.runner import sha256_file

REGISTRY_SCHEMA = "edgekd.weights_registry/v1"
DEFAULT_REGISTRY = Path(__file__).resolve().parent / "registry.json"  # package data: installed with the package
PICKLE_SUFFIXES = (".pt", ".pth")
MODEL_YAML_SUFFIXES = (".yaml", ".yml")
#: Where a training stage leaves its weights, relative to its stage folder (a manifest output).
STAGE_WEIGHTS = "weights/best.pt"


@dataclass(frozen=True)
class KnownWeights:
    """One registry entry. ``sha256`` is None when no published checksum is known (then it is not trusted)."""

    name: str
    sha256: str | None
    architecture: str
    source: str
    card: str


@dataclass(frozen=True)
class ResolvedWeights:
    """A model spec after the trust check: a ``.yaml`` (``sha256`` None) or a verified ``.pt`` file."""

    spec: str
    path: Path | None  # None for a model .yaml (built by ultralytics from its packaged configs)
    sha256: str | None
    trusted_by: str  # "yaml" | "registry" | "user" | "run-manifest"

    @property
    def model_arg(self) -> str:
        """What to pass to ultralytics as ``model=``."""
        return str(self.path) if self.path is not None else self.spec


def is_pickle(spec: str) -> bool:
    return spec.lower().endswith(PICKLE_SUFFIXES)


def load_registry(path: Path = DEFAULT_REGISTRY) -> dict[str, KnownWeights]:
    """{name: KnownWeights} from a registry JSON file; an InputError naming the file if it is malformed."""
    try:
        raw = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise InputError(f"weights registry {str(path)!r} does not exist; restore pipeline/train/registry.json") from None
    except (OSError, ValueError) as exc:
        raise InputError(f"weights registry {str(path)!r} is not readable JSON: {exc}") from None
    if not isinstance(raw, dict) or raw.get("schema") != REGISTRY_SCHEMA or not isinstance(raw.get("weights"), dict):
        raise InputError(
            f"weights registry {str(path)!r}: expected an object with schema {REGISTRY_SCHEMA!r} and a 'weights' map"
        )
    out = {}
    for name, entry in raw["weights"].items():
        sha = entry.get("sha256") if isinstance(entry, dict) else None
        if not isinstance(entry, dict) or (sha is not None and not _is_sha256(sha)):
            raise InputError(
                f"weights registry {str(path)!r}: entry {name!r} needs 'sha256' (64 hex digits, or null if unknown)"
            )
        out[name] = KnownWeights(
            name=name,
            sha256=sha.lower() if sha else None,
            architecture=str(entry.get("architecture", "")),
            source=str(entry.get("source", "")),
            card=str(entry.get("card", "")),
        )
    return out


def _is_sha256(value: object) -> bool:
    return isinstance(value, str) and len(value) == 64 and all(c in "0123456789abcdefABCDEF" for c in value)


def _download_asset(name: str) -> Path:
    """Download an ultralytics release asset by name (no unpickling); InputError when offline."""
    from ultralytics.utils.downloads import attempt_download_asset

    try:
        return Path(attempt_download_asset(name))
    except Exception as exc:  # network errors come in many types
        raise InputError(
            f"teacher.weights: {name!r} is not a local file and could not be downloaded ({type(exc).__name__}: {exc}); "
            f"put the file there, give a path, or train from scratch with a model .yaml (e.g. yolov8l.yaml)"
        ) from None


def resolve_weights(
    spec: str,
    *,
    trust: bool,
    key: str = "teacher.weights",
    trust_key: str = "teacher.trust_weights",
    registry: Path = DEFAULT_REGISTRY,
    download: Callable[[str], Path] = _download_asset,
) -> ResolvedWeights:
    """Locate ``spec`` and decide whether it may be unpickled, BEFORE anything loads it.

    A ``.yaml`` passes as is. A ``.pt``: a local path, or a registry name that ultralytics would download. Its sha256
    must match a registry entry, or ``trust`` must be True; otherwise :class:`UntrustedWeightsError` explains why.
    """
    if spec.lower().endswith(MODEL_YAML_SUFFIXES):
        return ResolvedWeights(spec, None, None, "yaml")
    if not is_pickle(spec):
        raise InputError(f"{key}: got {spec!r}, expected a .pt (name or path) or a model .yaml")
    known = load_registry(registry)
    path = Path(spec).expanduser()
    if not path.is_file():
        if path.name == spec and spec in known:
            path = download(spec)
        else:
            raise InputError(
                f"{key}: file {spec!r} does not exist; expected a .pt path, a known name ({', '.join(sorted(known))}) "
                f"or a model .yaml"
            )
    digest = sha256_file(path)
    if any(k.sha256 == digest for k in known.values()):
        return ResolvedWeights(spec, path.resolve(), digest, "registry")
    if trust:
        return ResolvedWeights(spec, path.resolve(), digest, "user")
    raise UntrustedWeightsError(_untrusted_message(spec, path, digest, known.get(path.name), key, trust_key, registry))


def _untrusted_message(
    spec: str, path: Path, digest: str, entry: KnownWeights | None, key: str, trust_key: str, registry: Path
) -> str:
    if entry is not None and entry.sha256 is None:
        why = (
            f"{entry.name!r} is listed in {registry} without a published sha256 (unknown), so its content cannot be "
            f"verified"
        )
    elif entry is not None:
        why = f"its sha256 {digest} differs from the published {entry.sha256} of {entry.name!r} (altered or corrupt)"
    else:
        why = f"its sha256 {digest} is not in the trusted-weights registry {registry}"
    if trust_key.startswith("--"):  # a command-line flag (edgekd bench): no value, and no .yaml alternative
        opt_in, scratch = f"add {trust_key} to the command", ""
    else:  # a config key (edgekd run)
        opt_in = f"set {trust_key}=true (e.g. `edgekd run {trust_key}=true`)"
        scratch = f"; or train from scratch with a model .yaml (e.g. {key}={_yaml_hint(path.name)})"
    return (
        f"{key}: refusing to load {spec!r} ({path}): {why}. A .pt file is a Python pickle and loading it can run "
        f"arbitrary code, so edgekd loads only weights whose checksum it knows. If you trust where this file came "
        f"from, {opt_in}; or add its sha256 to {registry}{scratch}."
    )


def _yaml_hint(name: str) -> str:
    stem = name.rsplit(".", 1)[0]
    return f"{stem}.yaml" if stem.startswith("yolo") else "yolov8l.yaml"


def verify_stage_weights(run_dir: Path, stage: str, rel: str = STAGE_WEIGHTS) -> tuple[Path, str]:
    """Weights written by an earlier stage of this run, checked against the sha256 in ``run_dir/manifest.json``.

    Returns (path, sha256); IntegrityError naming the file when the checksum differs (altered since it was written).
    """
    manifest = Path(run_dir) / "manifest.json"
    try:
        record = json.loads(manifest.read_text())["stages"][stage]
        expected = record["outputs"][rel]["sha256"]
        done = record.get("status") == "done"
    except (OSError, ValueError, KeyError, TypeError):
        raise StageError(
            f"{manifest}: no completed stage {stage!r} with output {rel!r}; run stage {stage!r} first"
        ) from None
    if not done:
        raise StageError(f"{manifest}: stage {stage!r} has not completed; run it first")
    path = Path(run_dir) / stage / rel
    if not path.is_file():
        raise IntegrityError(f"{path}: missing, but the run manifest records it; rerun with --force {stage}")
    actual = sha256_file(path)
    if actual != expected:
        raise IntegrityError(
            f"{path}: sha256 {actual} differs from {expected} recorded in {manifest} when stage {stage!r} wrote it; "
            f"the file was altered, so it is not loaded (a .pt can run code). Rerun with --force {stage}"
        )
    return path, actual
