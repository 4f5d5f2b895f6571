#!/usr/bin/env bash
# A separate venv with BenchMARL, used only by benchmarks/mappo_vs_benchmarl.py (its BenchMARL side,
# benchmarks/benchmarl_side.py, runs in it) and benchmarks/maddpg_vs_benchmarl.py (its --benchmarl-side).
#
#     bash benchmarks/setup_benchmarl_venv.sh [VENV_DIR]      # default: build/bench-venvs/benchmarl
#
# BenchMARL 1.5.2 (the latest release) requires torchrl >=0.10,<0.12; torchrl 0.11.1 requires tensordict
# >=0.11,<0.12. Newer torchrl/tensordict (0.14/0.15) would also install with torch 2.13.0, but not under
# benchmarl 1.5.2. torch is pinned to coopbench's torch==2.13.0 (the CPU wheel) and vmas to coopbench's
# requirements.lock version, so both sides of the benchmark run the same torch and the same simulator.
# torchvision (a hard dependency of benchmarl, unused here) is pinned to the release built for torch 2.13.
# About 1.2 GB on disk; about 1-2 minutes with pip's cache warm.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${1:-$REPO/build/bench-venvs/benchmarl}"
PYTHON="${PYTHON:-python3.11}"

if ! command -v "$PYTHON" >/dev/null; then
  echo "error: $PYTHON not found; set PYTHON=/path/to/python3.x (3.10-3.12)" >&2
  exit 1
fi
VMAS_PIN="$(grep -E '^vmas==' "$REPO/requirements.lock")"

"$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet \
  "torch==2.13.0" "torchvision==0.28.0" "tensordict==0.11.0" "torchrl==0.11.1" "benchmarl==1.5.2" "$VMAS_PIN"
"$VENV/bin/python" - <<'EOF'
import warnings
warnings.filterwarnings("ignore")
from importlib.metadata import version
import torch
from benchmarl.algorithms import MaddpgConfig, MappoConfig
from benchmarl.environments import VmasTask
from benchmarl.experiment import ExperimentConfig
MappoConfig.get_from_yaml(); MaddpgConfig.get_from_yaml(); ExperimentConfig.get_from_yaml(); VmasTask.NAVIGATION.get_task()
import vmas
env = vmas.make_env("navigation", num_envs=2, device="cpu", continuous_actions=True, n_agents=3)
env.reset()
print("benchmarl {} (torchrl {}, tensordict {}, torch {}, vmas {}): ok".format(
    *(version(p) for p in ("benchmarl", "torchrl", "tensordict", "torch", "vmas"))))
EOF
echo "venv ready: $VENV"
