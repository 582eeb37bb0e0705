"""The ``edgekd`` command line. The only place that reads YAML files and the environment.

Each command family lives in its own module (``pipeline/commands/*.py``) with a
``register(subparsers)`` function; implementations are imported lazily so that
``edgekd metrics`` or ``edgekd device bench`` never import torch.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from deploy.errors import ConfigError, EdgeKDError

# Command families, in the order they appear in ``edgekd --help``.
COMMAND_MODULES: tuple[str, ...] = (
    "pipeline.commands.run",
    "pipeline.commands.data",
    "pipeline.commands.evaluate",
    "pipeline.commands.compare",
    "pipeline.commands.bench",
    "pipeline.commands.device",
    "pipeline.commands.deploy",
)

PROFILE_ENV = "EDGEKD_PROFILE"


# ---------------------------------------------------------------- YAML / env
def read_yaml(path: Path, what: str = "YAML file") -> Any:
    """Load a YAML file, turning every failure into an :class:`InputError` naming the file."""
    from deploy.textio import read_yaml as _read_yaml

    return _read_yaml(path, what)


def available_profiles() -> list[str]:
    root = resources.files("pipeline") / "profiles"
    return sorted(p.name[:-5] for p in root.iterdir() if p.name.endswith(".yaml"))


def load_profile(name_or_path: str) -> dict[str, Any]:
    """A shipped profile by name, or a user's YAML file by path."""
    if name_or_path.endswith((".yaml", ".yml")) or os.sep in name_or_path:
        raw = read_yaml(Path(name_or_path), "profile")
        name = Path(name_or_path).stem
    else:
        if name_or_path not in available_profiles():
            raise ConfigError(
                [f"--profile: got {name_or_path!r}, expected one of {', '.join(available_profiles())} or a .yaml path"],
                "command line",
            )
        text = (resources.files("pipeline") / "profiles" / f"{name_or_path}.yaml").read_text()
        raw = yaml.safe_load(text)
        name = name_or_path
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError([f"<root>: got {type(raw).__name__}, expected a mapping of sections"], f"profile {name_or_path}")
    raw.setdefault("profile", name)
    run = raw.setdefault("run", {}) if isinstance(raw.get("run", {}), dict) else raw["run"]
    if isinstance(run, dict):
        run.setdefault("name", name)
    return raw


def resolve_config(profile: str | None, overrides: Sequence[str]):
    """Profile (or $EDGEKD_PROFILE, or ``default``) + ``key=value`` overrides -> validated Config."""
    from pipeline.config import apply_overrides, build_config, parse_override

    name = profile or os.environ.get(PROFILE_ENV) or "default"
    raw = load_profile(name)
    parsed = []
    problems = []
    for item in overrides:
        try:
            parts, text = parse_override(item)
        except ConfigError as exc:
            problems.extend(exc.problems)
            continue
        try:
            parsed.append((parts, yaml.safe_load(text) if text != "" else None))
        except yaml.YAMLError:
            parsed.append((parts, text))
    if problems:
        raise ConfigError(problems, "command line")
    return build_config(apply_overrides(raw, parsed), source=f"profile {name!r} with overrides" if overrides else f"profile {name!r}")


def add_config_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--profile", "-p", help="profile name (smoke, default, bdd100k) or a YAML path")
    parser.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE", help="override a config key")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides, e.g. train.epochs=2")
    parser.add_argument(
        "--trust-weights",
        action="store_true",
        help="load a teacher .pt that is not in pipeline/train/registry.json (a pickle can run code: only files you trust)",
    )


def config_from_args(args: argparse.Namespace):
    trust = ["teacher.trust_weights=true"] if getattr(args, "trust_weights", False) else []
    return resolve_config(args.profile, [*args.sets, *args.overrides, *trust])


# ---------------------------------------------------------------- main
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edgekd",
        description="Distil a large detector into a small one, export, INT8-quantize, benchmark and report.",
    )
    parser.add_argument("--version", action="version", version=f"edgekd {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in COMMAND_MODULES:
        importlib.import_module(module).register(sub)
    return parser


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("edgekd")
    except PackageNotFoundError:
        return "unknown"


def _quiet_third_parties() -> None:
    """Runtime settings for libraries we drive: offline, no auto-install (set here, never at import)."""
    os.environ.setdefault("YOLO_OFFLINE", "1")
    os.environ.setdefault("YOLO_AUTOINSTALL", "false")
    os.environ.setdefault("YOLO_VERBOSE", "false")


def help_without_action(parser: argparse.ArgumentParser) -> None:
    """A command family (``edgekd data``, ``deploy``, ``device``, ``config``) run without an action prints its own
    help and exits 2."""

    def usage(_args: argparse.Namespace) -> int:
        parser.print_help()
        return 2

    parser.set_defaults(func=usage)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv:
        argv = ["run"]  # `edgekd` alone runs the default pipeline
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    _quiet_third_parties()
    try:
        code = args.func(args)
    except EdgeKDError as exc:
        _print_error(str(exc))
        return exc.exit_code
    except KeyboardInterrupt:
        _print_error("interrupted; completed stages are kept, run the same command again to resume")
        return 130
    return int(code or 0)


def _print_error(message: str) -> None:
    try:
        from rich.console import Console
        from rich.markup import escape

        Console(stderr=True, highlight=False).print(f"[bold red]error:[/] {escape(message)}", soft_wrap=True)
    except Exception:  # pragma: no cover - rich is a base dependency
        print(f"error: {message}", file=sys.stderr)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
