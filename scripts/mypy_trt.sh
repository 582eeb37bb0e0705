#!/usr/bin/env bash
# Type-check the TensorRT code (deploy/trt_build.py, deploy/backends/tensorrt.py, deploy/trt_timing.py and the
# `edgekd deploy` CLI) against tensorrt-stubs.
#
# tensorrt-stubs hard-depends on the `tensorrt` wheel, whose build downloads from NVIDIA (fails offline and on
# machines without CUDA), so the stubs are installed alone (--no-deps) into a side folder outside the venv and
# shown to mypy through MYPYPATH. Idempotent: the install is skipped when that version is already there.
# A probe first proves mypy really sees the stubs (the config's ignore_missing_imports would otherwise make
# every TensorRT call pass unchecked).
set -euo pipefail
cd "$(dirname "$0")/.."

STUBS_VERSION="10.13.0.35.1"
STUBS_DIR="${EDGEKD_TRT_STUBS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/edgekd/tensorrt-stubs-${STUBS_VERSION}}"
PY="${PYTHON:-python}"
FILES=(deploy/trt_build.py deploy/backends/tensorrt.py deploy/trt_timing.py pipeline/commands/deploy.py)

if [ ! -d "${STUBS_DIR}/tensorrt_stubs-${STUBS_VERSION}.dist-info" ] || [ ! -f "${STUBS_DIR}/tensorrt/__init__.pyi" ]; then
  echo "mypy_trt: installing tensorrt-stubs==${STUBS_VERSION} (no deps) into ${STUBS_DIR}"
  rm -rf "${STUBS_DIR}"
  "${PY}" -m pip install --quiet --disable-pip-version-check --no-deps --target "${STUBS_DIR}" \
    "tensorrt-stubs==${STUBS_VERSION}"
fi

# The generated stubs of this release hold a few lines that are not valid Python (parameters named `in`, a
# parameter without a default after defaulted ones); repair exactly those lines, in the side copy only.
"${PY}" - "${STUBS_DIR}/tensorrt_bindings/tensorrt.pyi" "${STUBS_DIR}/tensorrt/__init__.pyi" <<'PYFIX'
import ast
import keyword
import re
import sys
from pathlib import Path

KEYWORD_PARAM = re.compile(r"([(,]\s*)(" + "|".join(keyword.kwlist) + r")(\s*:)")
SIGNATURE = re.compile(r"^(\s*def \w+\()(.*)(\)\s*->.*)$")


def fix_line(line: str) -> str:
    line = KEYWORD_PARAM.sub(r"\1\2_\3", line)
    m = SIGNATURE.match(line)
    if m:
        params, seen_default = [], False
        for p in m.group(2).split(", "):
            if "=" in p:
                seen_default = True
            elif seen_default and ":" in p and not p.lstrip().startswith("*"):
                p += " = ..."
            params.append(p)
        line = m.group(1) + ", ".join(params) + m.group(3)
    return line


for path in map(Path, sys.argv[1:]):
    lines = path.read_text().split("\n")
    for _ in range(500):
        try:
            ast.parse("\n".join(lines))
            break
        except SyntaxError as exc:
            i = (exc.lineno or 1) - 1
            fixed = fix_line(lines[i])
            if fixed == lines[i]:
                sys.exit(f"mypy_trt: {path}:{exc.lineno}: cannot repair the stub: {exc.msg}")
            lines[i] = fixed
    else:
        sys.exit(f"mypy_trt: {path}: too many syntax errors")
    path.write_text("\n".join(lines))
PYFIX

export MYPYPATH="${STUBS_DIR}${MYPYPATH:+:${MYPYPATH}}"
CACHE_DIR="$(mktemp -d)"
trap 'rm -rf "${CACHE_DIR}"' EXIT

# Probe: with the stubs visible, assigning the str __version__ to an int must be a type error.
if "${PY}" -m mypy --cache-dir "${CACHE_DIR}" --no-error-summary \
     -c 'import tensorrt as trt
x: int = trt.__version__' >/dev/null 2>&1; then
  echo "mypy_trt: mypy does not see the tensorrt stubs in ${STUBS_DIR}; refusing to pass unchecked" >&2
  exit 1
fi

"${PY}" -m mypy --cache-dir "${CACHE_DIR}" --follow-imports=silent "${FILES[@]}"
echo "mypy_trt: ${FILES[*]} type-check against tensorrt-stubs ${STUBS_VERSION}"
