#!/usr/bin/env bash
# Build the NIR peers environment: snnTorch 1.0.0, SpikingJelly 2.0.0, Norse 1.1.0, Sinabs 3.1.3 and
# Rockpool 3.1.0 beside the test interpreter, for tests/test_interop_nir.py (docs/nir_interop.md).
#
# Usage: bash tools/peers_env.sh [DIR]       (DIR defaults to <repo>/.peers-env, git-ignored)
#
# The peers are never dependencies of neurodeploy. Three of them cannot be installed with their
# declared dependencies on a CPU machine: SpikingJelly 2.0.0 pins torchaudio, torchvision and
# tensorboard, Norse 1.1.0 torchvision, Sinabs 3.1.3 samna (SynSense's hardware driver). None of
# these is imported by their NIR code or the forward passes the test runs, so every peer is
# installed with --no-deps, next to the pure-Python packages they do import (loguru, pbr), all
# pinned. Everything else (torch, numpy, scipy, h5py, matplotlib, pytest, neurodeploy itself)
# comes from the test interpreter: the venv is created with --system-site-packages over its base
# interpreter, and a .pth file adds the test interpreter's own site-packages when it is a venv.
# The peers' NIR modules are imported as a smoke check. The script is idempotent: rerunning it
# reuses what is installed (no network when the pins are met); a completed build leaves
# DIR/.complete with the versions.
#
# Environment overrides:
#   PEERS_ENV_PYTHON   the test interpreter (default: python3); it must have neurodeploy installed
#                      with its test extra (pip install -e ".[test]")
# Then: NEURODEPLOY_PEERS_PYTHON=DIR/bin/python python -m pytest tests/reference/test_peers_interop.py
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
ENV_DIR="${1:-$REPO_ROOT/.peers-env}"
TEST_PYTHON="${PEERS_ENV_PYTHON:-python3}"
# name==version, installed without dependencies
PINS=(snntorch==1.0.0 spikingjelly==2.0.0 norse==1.1.0 sinabs==3.1.3 rockpool==3.1.0
      nir==1.0.8 nirtorch==2.6 loguru==0.7.3 pbr==7.1.3)
SMOKE=(snntorch.export_nir snntorch.import_nir spikingjelly.activation_based.nir_exchange
       norse.torch.utils.export_nir norse.torch.utils.import_nir sinabs.nir rockpool.nn.modules.torch.nir
       neurodeploy.export.nir pytest)

STEP="start"
fail() {
    echo "peers_env.sh: FAILED during step '$STEP': $*" >&2
    exit 1
}
step() {
    STEP="$1"
    echo "peers_env.sh: $STEP"
}

step "check the test interpreter"
command -v "$TEST_PYTHON" >/dev/null 2>&1 || fail "'$TEST_PYTHON' not found; set PEERS_ENV_PYTHON"
read -r BASE_PYTHON TEST_VER < <("$TEST_PYTHON" -c 'import sys
print(getattr(sys, "_base_executable", sys.executable), "%d.%d" % sys.version_info[:2])') \
    || fail "'$TEST_PYTHON' does not run"
"$TEST_PYTHON" -c 'import torch, neurodeploy, pytest' 2>/dev/null \
    || fail "'$TEST_PYTHON' cannot import torch, neurodeploy and pytest; run pip install -e \".[test]\" with it"
# the test interpreter's own site-packages (empty when it is not a venv: --system-site-packages has them)
SITE_DIRS="$("$TEST_PYTHON" -c 'import sys, sysconfig
if sys.prefix != sys.base_prefix:
    print("\n".join(dict.fromkeys(sysconfig.get_paths()[k] for k in ("purelib", "platlib"))))')"

step "create venv"
PY="$ENV_DIR/bin/python"
if [[ -x "$PY" ]] && "$PY" -c "import sys; assert '%d.%d' % sys.version_info[:2] == '$TEST_VER'" 2>/dev/null; then
    echo "peers_env.sh:   reusing $ENV_DIR"
else
    if [[ -d "$ENV_DIR" && -n "$(ls -A "$ENV_DIR" 2>/dev/null)" ]]; then
        fail "$ENV_DIR exists but holds no Python $TEST_VER venv; remove it or pick another DIR"
    fi
    "$BASE_PYTHON" -m venv --system-site-packages "$ENV_DIR" || fail "python -m venv $ENV_DIR failed"
fi
rm -f "$ENV_DIR/.complete"
ENV_SITE="$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
PTH="$ENV_SITE/neurodeploy_test_interpreter.pth"
: > "$PTH.tmp"
while IFS= read -r dir; do
    [[ -n "$dir" ]] && echo "import site; site.addsitedir('$dir')" >> "$PTH.tmp"
done <<< "$SITE_DIRS"
mv "$PTH.tmp" "$PTH"
PIP=("$PY" -m pip --disable-pip-version-check)

step "install the peers without their dependencies"
mapfile -t MISSING < <("$PY" -c 'import importlib.metadata as m, sys
for pin in sys.argv[1:]:
    name, version = pin.split("==")
    try:
        ok = m.version(name) == version
    except m.PackageNotFoundError:
        ok = False
    if not ok:
        print(pin)' "${PINS[@]}")
if ((${#MISSING[@]})); then
    "${PIP[@]}" install --quiet --no-deps "${MISSING[@]}" || fail "pip install --no-deps ${MISSING[*]} failed"
else
    echo "peers_env.sh:   all pins already installed"
fi

step "smoke check"
"$PY" -W ignore -c "import importlib, sys
for name in sys.argv[1:]:
    importlib.import_module(name)" "${SMOKE[@]}" || fail "importing the peers' NIR modules failed"

"$PY" -c 'import importlib.metadata as m, sys; print(" ".join(f"{p}=={m.version(p)}" for p in sys.argv[1:]))' \
    "${PINS[@]%%==*}" torch numpy > "$ENV_DIR/.complete.tmp"
mv "$ENV_DIR/.complete.tmp" "$ENV_DIR/.complete"
echo "peers_env.sh: ready: $PY ($(cat "$ENV_DIR/.complete"))"
echo "peers_env.sh: run the interop matrix with every peer:"
echo "  NEURODEPLOY_PEERS_PYTHON=$PY python -m pytest tests/reference/test_peers_interop.py"
