#!/usr/bin/env bash
# Check that edgekd's runtime side installs on a Jetson (JetPack 6: aarch64, CPython 3.10) from binary wheels only.
#
#   scripts/check_jetson_resolution.sh [--keep DIR]
#
# 1. the base dependencies of pyproject.toml ([project] dependencies = what `edgekd device bench` needs), and
# 2. what docker/Dockerfile.jetson installs: docker/requirements-jetson.txt (the same list without onnxruntime, whose
#    GPU build comes from the Jetson AI Lab index inside the image, with the pins that keep numpy 1.x)
# must both resolve to manylinux aarch64 / cp310 (or pure-Python) wheels. `pip download` is used so that the
# resolver, not a guess, decides; the wheels land in a temporary folder removed at exit (unless --keep DIR).
# Note: onnxruntime from PyPI for aarch64 is the CPU build; that is what (1) proves installable.
# Exit 0 when both resolve; non-zero with pip's message naming the package without an aarch64/cp310 wheel.
set -euo pipefail

cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}"

keep=""
if [ "${1:-}" = "--keep" ]; then keep="${2:?--keep needs a folder}"; fi
if [ -n "$keep" ]; then
  dest="$keep"; mkdir -p "$dest"
else
  dest="$(mktemp -d)"; trap 'rm -rf "$dest"' EXIT
fi

# JetPack 6 is Ubuntu 22.04 (glibc 2.35): every manylinux tag up to 2_35 installs there.
platforms=(manylinux2014_aarch64 manylinux_2_17_aarch64 manylinux_2_24_aarch64 manylinux_2_27_aarch64
           manylinux_2_28_aarch64 manylinux_2_31_aarch64 manylinux_2_34_aarch64 manylinux_2_35_aarch64)
platform_args=()
for p in "${platforms[@]}"; do platform_args+=(--platform "$p"); done

mapfile -t base_deps < <("$PYTHON" - <<'EOF'
try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: pip's vendored copy of the same parser
    from pip._vendor import tomli as tomllib
with open("pyproject.toml", "rb") as fh:
    for dep in tomllib.load(fh)["project"]["dependencies"]:
        print(dep)
EOF
)
if [ "${#base_deps[@]}" -eq 0 ]; then echo "check_jetson_resolution: no base dependencies read from pyproject.toml" >&2; exit 2; fi

download() {  # $1 = label, rest = requirement arguments
  local label="$1"; shift
  echo "== resolving $label for aarch64 / CPython 3.10 (binary wheels only)"
  if ! "$PYTHON" -m pip download --quiet --disable-pip-version-check --only-binary=:all: \
      "${platform_args[@]}" --python-version 3.10 --implementation cp --abi cp310 --abi abi3 --abi none \
      -d "$dest" "$@"; then
    echo "check_jetson_resolution: FAILED for $label: a package above has no aarch64/cp310 wheel (see pip's message)" >&2
    return 1
  fi
}

download "pyproject base dependencies (${#base_deps[@]})" "${base_deps[@]}"
download "docker/requirements-jetson.txt" -r docker/requirements-jetson.txt

echo "== wheels resolved:"
ls "$dest" | sed 's/^/   /'
if ls "$dest" | grep -v -E '(aarch64|none-any)\.whl$' >/dev/null; then
  echo "check_jetson_resolution: a wheel is neither aarch64 nor pure Python:" >&2
  ls "$dest" | grep -v -E '(aarch64|none-any)\.whl$' >&2
  exit 1
fi
echo "check_jetson_resolution: OK (base dependencies and the Jetson image requirements resolve for aarch64/cp310)"
