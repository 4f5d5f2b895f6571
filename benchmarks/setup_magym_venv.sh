#!/usr/bin/env bash
# A separate venv with ma-gym, used only by benchmarks/checkers_vs_magym.py (and the ma-gym
# equivalence test in tests/test_env_checkers.py, which skips without it).
#
#     bash benchmarks/setup_magym_venv.sh [VENV_DIR]      # default: build/bench-venvs/magym
#
# ma-gym 0.0.14 (the last release) pins gym to 0.19/0.20 and cloudpickle to 2.0.0; it cannot share
# coopbench's venv (gymnasium, numpy 2). gym 0.20.0 ships only as an sdist whose setup.py needs an
# old setuptools and wheel, so we install those first and build gym without build isolation. This
# works on Python 3.11 (ma-gym declares < 3.12). numpy is kept below 2 for gym 0.20.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${1:-$REPO/build/bench-venvs/magym}"
PYTHON="${PYTHON:-python3.11}"

if ! command -v "$PYTHON" >/dev/null; then
  echo "error: $PYTHON not found (ma-gym needs Python < 3.12); set PYTHON=/path/to/python3.x" >&2
  exit 1
fi

"$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet "pip<24.1" "setuptools<66" "wheel<0.40"
"$VENV/bin/python" -m pip install --quiet --no-build-isolation "numpy<2" "gym==0.20.0"
"$VENV/bin/python" -m pip install --quiet "ma-gym==0.0.14"
"$VENV/bin/python" - <<'EOF'
import warnings
warnings.filterwarnings("ignore")
from importlib.metadata import version
from ma_gym.envs.checkers import Checkers
env = Checkers()
env.reset()
env.step([4, 4])
print(f"ma-gym {version('ma-gym')} with gym {version('gym')}: ok")
EOF
echo "venv ready: $VENV"
