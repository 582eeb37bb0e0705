"""Read a user-named text, JSON or YAML file; every failure is an error naming the file and what was expected.

One reader for the CLI's YAML, COCO JSON, data.yaml, metrics.json, calibration manifests and bundle files,
so that a missing, unreadable or malformed file always says the same things: which file, what went wrong
(with line and column for a syntax error), and the caller's hint on how to fix it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from deploy.errors import EdgeKDError, InputError


def read_text(path: Path | str, what: str, hint: str = "", error: type[EdgeKDError] = InputError) -> str:
    """The file's text; ``error`` ("<what> '<path>' does not exist; <hint>") when missing or unreadable."""
    p = Path(path)
    tail = f"; {hint}" if hint else ""
    if p.is_dir():
        raise error(f"{what} {str(p)!r} is a folder, expected a file{tail}")
    try:
        return p.read_text()
    except FileNotFoundError:
        raise error(f"{what} {str(p)!r} does not exist{tail}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise error(f"{what} {str(p)!r} cannot be read: {getattr(exc, 'strerror', None) or exc}{tail}") from None


def read_json(path: Path | str, what: str, hint: str = "", error: type[EdgeKDError] = InputError) -> Any:
    """Parsed JSON; a syntax error names the line and column."""
    text = read_text(path, what, hint, error)
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        tail = f"; {hint}" if hint else ""
        raise error(
            f"{what} {str(path)!r} is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg}){tail}"
        ) from None


def read_yaml(path: Path | str, what: str, hint: str = "", error: type[EdgeKDError] = InputError) -> Any:
    """Parsed YAML (``yaml.safe_load``: no code runs); a syntax error names the line and column."""
    import yaml

    text = read_text(path, what, hint, error)
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        tail = f"; {hint}" if hint else ""
        raise error(f"{what} {str(path)!r} is not valid YAML{where}: {getattr(exc, 'problem', exc)}{tail}") from None
