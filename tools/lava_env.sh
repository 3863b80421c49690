#!/usr/bin/env bash
# Build the optional Lava reference environment (lava-nc 0.10.0 + lava-dl 0.6.0 on CPython 3.11).
#
# Usage: bash tools/lava_env.sh [DIR]        (DIR defaults to <repo>/.lava-env, git-ignored)
#
# Lava is never a dependency of neurodeploy: this environment only serves the reference tests in
# tests/reference/ and benchmarks/bench_vs_lava.py. The recipe is the one of docs/lava_reference.md:
# the two wheels declare Python <3.11, so they are downloaded for 3.10, installed without their
# dependency pins into a 3.11 venv next to a known-good set of dependencies, and patched twice:
#   A. lava/magma/compiler/var_model.py: mutable dataclass defaults (a ValueError on 3.11)
#      become field(default_factory=ByteEncoder);
#   B. lava/lib/dl/slayer/__init__.py: the object_detection import (needs torchvision/opencv)
#      becomes optional.
# The script is idempotent: rerunning it reuses what is already there and repeats the smoke check.
#
# Environment overrides:
#   LAVA_ENV_PYTHON  interpreter used to create the venv (default: python3.11)
#   LAVA_ENV_TORCH   pip requirement for torch (default: torch==2.13.0; point it at a CPU wheel
#                    file where the default would resolve to a CUDA build)
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
ENV_DIR="${1:-$REPO_ROOT/.lava-env}"
BASE_PYTHON="${LAVA_ENV_PYTHON:-python3.11}"
TORCH_REQ="${LAVA_ENV_TORCH:-torch==2.13.0}"
DEPS=(numpy==1.26.4 networkx==2.8.7 asteval==0.9.33 scipy==1.17.1 scikit-learn==1.9.1
      h5py==3.16.0 matplotlib==3.11.2)
LAVA_WHEELS=(lava-nc==0.10.0 lava-dl==0.6.0)

STEP="start"
fail() {
    echo "lava_env.sh: FAILED during step '$STEP': $*" >&2
    exit 1
}
trap 'echo "lava_env.sh: FAILED during step '"'"'$STEP'"'"' (command exited with status $?)." \
      "Fix the cause and rerun: bash tools/lava_env.sh $ENV_DIR" >&2' ERR

now() { date +%s%N; }                                   # nanoseconds
secs() { local ms=$(( ($2 - $1) / 1000000 )); printf '%d.%d' $((ms / 1000)) $(((ms % 1000) / 100)); }
T_ALL=$(now)
T_STEP=$T_ALL
step() {
    local t
    t=$(now)
    if [[ "$STEP" != "start" ]]; then
        printf 'lava_env.sh:   %-28s %6s s\n' "$STEP" "$(secs "$T_STEP" "$t")"
    fi
    STEP="$1"
    T_STEP=$t
    echo "lava_env.sh: $STEP"
}

# ---------------------------------------------------------------------------------------- venv
step "check interpreter"
command -v "$BASE_PYTHON" >/dev/null 2>&1 \
    || fail "'$BASE_PYTHON' not found; install CPython 3.11 or set LAVA_ENV_PYTHON=/path/to/python3.11"
BASE_VER="$("$BASE_PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null)" \
    || fail "'$BASE_PYTHON' does not run; install CPython 3.11 or set LAVA_ENV_PYTHON"
[[ "$BASE_VER" == "3.11" ]] \
    || fail "'$BASE_PYTHON' is Python $BASE_VER; this recipe needs 3.11 (set LAVA_ENV_PYTHON)"

step "create venv"
PY="$ENV_DIR/bin/python"
if [[ -x "$PY" ]] && "$PY" -c 'import sys; assert sys.version_info[:2] == (3, 11)' 2>/dev/null; then
    echo "lava_env.sh:   reusing $ENV_DIR"
else
    if [[ -d "$ENV_DIR" && -n "$(ls -A "$ENV_DIR" 2>/dev/null)" ]]; then
        fail "$ENV_DIR exists but holds no usable Python 3.11 venv; remove it or pick another DIR"
    fi
    "$BASE_PYTHON" -m venv "$ENV_DIR" || fail "python -m venv $ENV_DIR failed"
fi
rm -f "$ENV_DIR/.complete"
PIP=("$PY" -m pip --disable-pip-version-check)

# -------------------------------------------------------------------------------- lava wheels
step "download lava wheels"
WHEELS="$ENV_DIR/wheels"
mkdir -p "$WHEELS"
if compgen -G "$WHEELS/lava_nc-0.10.0-*.whl" >/dev/null \
        && compgen -G "$WHEELS/lava_dl-0.6.0-*.whl" >/dev/null; then
    echo "lava_env.sh:   wheels already in $WHEELS"
else
    "${PIP[@]}" download --quiet --no-deps --python-version 3.10 --only-binary=:all: \
        -d "$WHEELS" "${LAVA_WHEELS[@]}" \
        || fail "could not download ${LAVA_WHEELS[*]} (is the package index reachable?)"
fi

# ------------------------------------------------------------------------------- dependencies
step "install dependencies"
"${PIP[@]}" install --quiet "${DEPS[@]}" || fail "pip install ${DEPS[*]} failed"

step "install torch"
"${PIP[@]}" install --quiet "$TORCH_REQ" || fail "pip install $TORCH_REQ failed"

step "install lava wheels"
"${PIP[@]}" install --quiet --no-deps --ignore-requires-python \
    "$WHEELS"/lava_nc-0.10.0-*.whl "$WHEELS"/lava_dl-0.6.0-*.whl \
    || fail "installing the lava wheels from $WHEELS failed"

# ------------------------------------------------------------------------------------ patches
step "patch lava for Python 3.11"
SITE="$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
"$PY" - "$SITE" <<'PYEOF' || fail "patching lava in $SITE failed (see the message above)"
import pathlib
import re
import sys

site = pathlib.Path(sys.argv[1])

# Patch A: dataclass fields defaulting to a ByteEncoder() instance are refused on 3.11.
var_model = site / "lava/magma/compiler/var_model.py"
text = var_model.read_text()
original = text
if not re.search(r"^from dataclasses import .*\bfield\b", text, flags=re.M):
    text, n = re.subn(r"^from dataclasses import (.*)$", r"from dataclasses import \1, field",
                      text, count=1, flags=re.M)
    if n != 1:
        sys.exit(f"patch A: no 'from dataclasses import' line in {var_model}")
text = re.sub(r":\s*ByteEncoder\s*=\s*ByteEncoder\(\)", ": ByteEncoder = field(default_factory=ByteEncoder)",
              text)
if re.search(r"=\s*ByteEncoder\(\)", text):
    sys.exit(f"patch A: a ByteEncoder() default is left in {var_model}")
if text.count("field(default_factory=ByteEncoder)") < 8:
    sys.exit(f"patch A: {var_model} does not look like lava-nc 0.10.0's (too few encoder fields)")
if text != original:
    var_model.write_text(text)
    print("lava_env.sh:   patch A applied")
else:
    print("lava_env.sh:   patch A already present")

# Patch B: make slayer's object_detection subpackage (torchvision, opencv) optional.
slayer_init = site / "lava/lib/dl/slayer/__init__.py"
text = slayer_init.read_text()
plain = "from . import object_detection as obd\n"
guarded = ("try:  # optional: needs torchvision and opencv\n"
           "    from . import object_detection as obd\n"
           "except ImportError:\n"
           "    obd = None\n")
if guarded in text:
    print("lava_env.sh:   patch B already present")
elif text.count(plain) == 1:
    slayer_init.write_text(text.replace(plain, guarded))
    print("lava_env.sh:   patch B applied")
else:
    sys.exit(f"patch B: the object_detection import was not found in {slayer_init}")
PYEOF

# -------------------------------------------------------------------------------- smoke check
step "smoke check"
"$PY" -c 'import lava.proc.lif.process, lava.proc.dense.process, lava.lib.dl.netx' \
    || fail "lava does not import in $ENV_DIR"
"$PY" "$REPO_ROOT/tools/lava_reference.py" selftest \
    || fail "the Lava self-test (tools/lava_reference.py selftest) failed"

step "done"
"$PY" -c 'import importlib.metadata as m; print(" ".join(f"{p}=={m.version(p)}" for p in
          ("lava-nc", "lava-dl", "numpy", "torch", "h5py")))' > "$ENV_DIR/.complete"
TOTAL="$(secs "$T_ALL" "$(now)")"
SIZE="$(du -sh "$ENV_DIR" | cut -f1)"
echo "lava_env.sh: ready: $PY ($(cat "$ENV_DIR/.complete"))"
echo "lava_env.sh: total $TOTAL s, venv size $SIZE"
echo "lava_env.sh: run the reference tests with:"
echo "  NEURODEPLOY_LAVA_PYTHON=$PY python -m pytest tests/reference"
