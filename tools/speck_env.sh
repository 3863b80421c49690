#!/usr/bin/env bash
# Build the optional Sinabs reference environment (sinabs 3.1.3 on CPython 3.11, CPU torch).
#
# Usage: bash tools/speck_env.sh [DIR]       (DIR defaults to <repo>/.speck-env, git-ignored)
#
# Sinabs is never a dependency of neurodeploy: this environment only serves
# tests/reference/test_sinabs_dynapcnn.py through tools/speck_reference.py. Recipe (docs/speck.md):
# sinabs 3.1.3 declares samna (SynSense's hardware driver), which the software forward never
# needs, so sinabs, nir (pinned to 1.0.4, inside sinabs' declared range), nirtorch and pbr are
# installed without dependencies next to what they import (numpy, matplotlib, h5py and torch's
# own import-time dependencies). samna is never installed: tools/speck_reference.py puts a
# placeholder module in its place. The script is idempotent: rerunning it reuses what is there
# and repeats the smoke check; a completed build leaves DIR/.complete.
#
# Environment overrides:
#   SPECK_ENV_PYTHON       interpreter used to create the venv (default: python3.11)
#   SPECK_ENV_TORCH        pip requirement for torch (default: torch==2.13.0, installed without
#                          dependencies; point it at a CPU wheel file where needed)
#   SPECK_ENV_SYSTEM_SITE  1: create the venv with --system-site-packages and reuse the base
#                          interpreter's torch==2.13.0 instead of installing one
# Then: NEURODEPLOY_SPECK_PYTHON=DIR/bin/python python -m pytest tests/reference
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
ENV_DIR="${1:-$REPO_ROOT/.speck-env}"
BASE_PYTHON="${SPECK_ENV_PYTHON:-python3.11}"
TORCH_REQ="${SPECK_ENV_TORCH:-torch==2.13.0}"
SYSTEM_SITE="${SPECK_ENV_SYSTEM_SITE:-0}"
SINABS=(sinabs==3.1.3 nir==1.0.4 nirtorch==2.6 pbr==7.1.3)
DEPS=(numpy typing_extensions filelock sympy networkx jinja2 fsspec h5py matplotlib)

STEP="start"
fail() {
    echo "speck_env.sh: FAILED during step '$STEP': $*" >&2
    exit 1
}
step() {
    STEP="$1"
    echo "speck_env.sh: $STEP"
}

step "check interpreter"
command -v "$BASE_PYTHON" >/dev/null 2>&1 \
    || fail "'$BASE_PYTHON' not found; install CPython 3.11 or set SPECK_ENV_PYTHON"
BASE_VER="$("$BASE_PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')" \
    || fail "'$BASE_PYTHON' does not run"
[[ "$BASE_VER" == "3.11" ]] || fail "'$BASE_PYTHON' is Python $BASE_VER; this recipe needs 3.11"

step "create venv"
PY="$ENV_DIR/bin/python"
if [[ -x "$PY" ]] && "$PY" -c 'import sys; assert sys.version_info[:2] == (3, 11)' 2>/dev/null; then
    echo "speck_env.sh:   reusing $ENV_DIR"
else
    if [[ -d "$ENV_DIR" && -n "$(ls -A "$ENV_DIR" 2>/dev/null)" ]]; then
        fail "$ENV_DIR exists but holds no usable Python 3.11 venv; remove it or pick another DIR"
    fi
    if [[ "$SYSTEM_SITE" == "1" ]]; then
        "$BASE_PYTHON" -m venv --system-site-packages "$ENV_DIR" || fail "venv failed"
    else
        "$BASE_PYTHON" -m venv "$ENV_DIR" || fail "venv failed"
    fi
fi
rm -f "$ENV_DIR/.complete"
PIP=("$PY" -m pip --disable-pip-version-check)

step "install torch"
if "$PY" -c 'import torch, sys; sys.exit(torch.__version__.split("+")[0] != "2.13.0")' 2>/dev/null; then
    echo "speck_env.sh:   torch 2.13.0 already importable"
else
    "${PIP[@]}" install --quiet --no-deps "$TORCH_REQ" || fail "pip install $TORCH_REQ failed"
fi

step "install import-time dependencies"
"${PIP[@]}" install --quiet "${DEPS[@]}" || fail "pip install ${DEPS[*]} failed"

step "install sinabs without samna"
"${PIP[@]}" install --quiet --no-deps "${SINABS[@]}" || fail "pip install ${SINABS[*]} failed"
if "$PY" -c 'import importlib.util, sys; sys.exit(importlib.util.find_spec("samna") is None)'; then
    fail "samna is importable in $ENV_DIR; this environment must not hold it (remove it)"
fi

step "smoke check"
"$PY" "$REPO_ROOT/tools/speck_reference.py" selftest \
    || fail "the Sinabs self-test (tools/speck_reference.py selftest) failed"

"$PY" -c 'import importlib.metadata as m; print(" ".join(f"{p}=={m.version(p)}" for p in
          ("sinabs", "nir", "nirtorch", "torch", "numpy")))' > "$ENV_DIR/.complete"
echo "speck_env.sh: ready: $PY ($(cat "$ENV_DIR/.complete"))"
echo "speck_env.sh: run the reference tests with:"
echo "  NEURODEPLOY_SPECK_PYTHON=$PY python -m pytest tests/reference/test_sinabs_dynapcnn.py"
