#!/usr/bin/env bash
# Build the optional Xylo reference environment: Rockpool 3.1.0's XyloSim on xylosim 0.1.3.
#
# Usage: bash tools/xylo_env.sh [DIR]        (DIR defaults to <repo>/.xylo-env, git-ignored)
#
# Rockpool and xylosim are never dependencies of neurodeploy: this environment only serves
# tests/reference/test_xylosim.py (through tools/xylo_reference.py). See docs/xylo_reference.md.
# - xylosim 0.1.3 is published as a C++/pybind11 source distribution: it is compiled here (a C++
#   compiler is needed; about 30 s on 2 cores). `wheel` must be installed first, else the
#   build without isolation stops with "invalid command 'bdist_wheel'".
# - rockpool 3.1.0 is installed without its dependencies: XyloSim needs numpy and scipy only.
#   `samna` (SynSense's closed configuration library, pulled by rockpool[xylo]) is never
#   installed; tools/xylo_reference.py imports the simulator modules without it.
# The script is idempotent: rerunning it reuses what is already there and repeats the smoke check.
#
# Environment overrides:
#   XYLO_ENV_PYTHON  interpreter used to create the venv (default: python3)
# Afterwards: NEURODEPLOY_XYLO_PYTHON=DIR/bin/python python -m pytest tests/reference/test_xylosim.py
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
ENV_DIR="${1:-$REPO_ROOT/.xylo-env}"
BASE_PYTHON="${XYLO_ENV_PYTHON:-python3}"
DEPS=(numpy scipy pybind11 wheel)

STEP="start"
fail() {
    echo "xylo_env.sh: FAILED during step '$STEP': $*" >&2
    exit 1
}
trap 'echo "xylo_env.sh: FAILED during step '"'"'$STEP'"'"' (command exited with status $?)." \
      "Fix the cause and rerun: bash tools/xylo_env.sh $ENV_DIR" >&2' ERR
step() {
    STEP="$1"
    echo "xylo_env.sh: $STEP"
}

step "check interpreter"
command -v "$BASE_PYTHON" >/dev/null 2>&1 \
    || fail "'$BASE_PYTHON' not found; set XYLO_ENV_PYTHON=/path/to/python3"
"$BASE_PYTHON" -c 'import sys; assert sys.version_info[:2] >= (3, 10)' 2>/dev/null \
    || fail "'$BASE_PYTHON' is older than Python 3.10 (set XYLO_ENV_PYTHON)"

step "create venv"
PY="$ENV_DIR/bin/python"
if [[ -x "$PY" ]] && "$PY" -c 'import sys' 2>/dev/null; then
    echo "xylo_env.sh:   reusing $ENV_DIR"
else
    if [[ -d "$ENV_DIR" && -n "$(ls -A "$ENV_DIR" 2>/dev/null)" ]]; then
        fail "$ENV_DIR exists but holds no usable venv; remove it or pick another DIR"
    fi
    "$BASE_PYTHON" -m venv "$ENV_DIR" || fail "python -m venv $ENV_DIR failed"
fi
rm -f "$ENV_DIR/.complete"
PIP=("$PY" -m pip --disable-pip-version-check)

step "install build and runtime dependencies"
"${PIP[@]}" install --quiet "${DEPS[@]}" || fail "pip install ${DEPS[*]} failed"

step "build xylosim 0.1.3 from its source distribution"
if "$PY" -c 'import importlib.metadata as m; assert m.version("xylosim") == "0.1.3"' 2>/dev/null; then
    echo "xylo_env.sh:   xylosim 0.1.3 already installed"
else
    "${PIP[@]}" install --quiet --no-build-isolation --no-deps xylosim==0.1.3 \
        || fail "building xylosim 0.1.3 failed (is a C++ compiler installed?)"
fi

step "install rockpool 3.1.0 without dependencies"
if "$PY" -c 'import importlib.metadata as m; assert m.version("rockpool") == "3.1.0"' 2>/dev/null; then
    echo "xylo_env.sh:   rockpool 3.1.0 already installed"
else
    "${PIP[@]}" install --quiet --no-deps rockpool==3.1.0 || fail "pip install rockpool==3.1.0 failed"
fi
if "$PY" -c 'import importlib.util as u; assert u.find_spec("samna") is None' 2>/dev/null; then
    :
else
    fail "samna is installed in $ENV_DIR; this environment must not have it (remove the venv)"
fi

step "smoke check"
"$PY" "$REPO_ROOT/tools/xylo_reference.py" selftest \
    || fail "the XyloSim self-test (tools/xylo_reference.py selftest) failed"

step "done"
"$PY" -c 'import importlib.metadata as m; print(" ".join(f"{p}=={m.version(p)}" for p in
          ("rockpool", "xylosim", "numpy", "scipy")))' > "$ENV_DIR/.complete"
echo "xylo_env.sh: ready: $PY ($(cat "$ENV_DIR/.complete"))"
echo "xylo_env.sh: run the reference tests with:"
echo "  NEURODEPLOY_XYLO_PYTHON=$PY python -m pytest tests/reference/test_xylosim.py"
