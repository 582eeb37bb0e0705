"""Small provenance helpers shared by the build and the runtime side: file checksums, package versions, CPU name."""

from __future__ import annotations

import hashlib
import os
import platform
from collections.abc import Iterable
from importlib import metadata
from pathlib import Path

from deploy.errors import IntegrityError

_CHUNK = 1 << 20


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file's bytes, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(_CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def format_sums(digests: dict[str, str]) -> str:
    """{path: sha256} -> ``<sha256>  <path>`` lines, sorted by path, as ``sha256sum`` writes them."""
    return "".join(f"{digests[k]}  {k}\n" for k in sorted(digests))


def parse_sums(text: str, source: str) -> dict[str, str]:
    """``<sha256>  <path>`` lines -> {path: sha256}; a malformed line raises IntegrityError naming ``source``."""
    out = {}
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        digest, sep, rel = line.partition("  ")
        if not sep or len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest) or not rel:
            raise IntegrityError(f"{source}: line {n} is not '<sha256>  <path>': {line[:80]!r}")
        out[rel.lstrip("*")] = digest
    return out


def package_versions(names: Iterable[str]) -> dict[str, str]:
    """{distribution name: installed version, or "absent"}."""
    out = {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "absent"
    return out


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity mask where the OS has one, else all cores); at least 1."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, cores)


def machine_info() -> dict[str, object]:
    """The ``machine`` block of metrics.json provenance: platform, CPU, usable cores, Python (no host name, no time)."""
    return {
        "platform": platform.platform(),
        "cpu": cpu_name(),
        "cores": usable_cores(),
        "python": platform.python_version(),
        "machine": platform.machine(),
    }


def cpu_name() -> str:
    """The CPU model (x86 ``model name`` or Arm ``Hardware`` of /proc/cpuinfo), else what platform knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith(("model name", "hardware")):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"
