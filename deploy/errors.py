"""The one error hierarchy of edgekd.

Every user-facing failure is an :class:`EdgeKDError` (or a subclass). The CLI
prints its message without a traceback and exits with ``exit_code``. Messages
say what failed, the value seen, what was expected and how to fix it.
"""

from __future__ import annotations


class EdgeKDError(Exception):
    """Root of every error edgekd raises on purpose."""

    exit_code: int = 1


class ConfigError(EdgeKDError):
    """Invalid configuration: unknown keys, wrong types, missing files."""

    exit_code = 2

    def __init__(self, problems: list[str], source: str = "config") -> None:
        self.problems = list(problems)
        self.source = source
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"{source}: {len(self.problems)} problem(s):\n{lines}")


class InputError(EdgeKDError):
    """A user-supplied file or argument is missing, unreadable or malformed."""

    exit_code = 2


class DataError(EdgeKDError):
    """A dataset is inconsistent (labels without images, bad label values...): bad input, like InputError."""

    exit_code = 2


class StageError(EdgeKDError):
    """A pipeline stage failed; earlier stages' outputs are kept."""


class IntegrityError(EdgeKDError):
    """A file's checksum does not match what was recorded."""


class UntrustedWeightsError(EdgeKDError):
    """A pickle-based weights file is not in the known-checksum registry."""

    exit_code = 2


class BackendUnavailableError(EdgeKDError):
    """A runtime (TensorRT, OpenVINO, ...) is not installed on this machine."""

    exit_code = 3
