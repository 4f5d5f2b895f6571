#!/usr/bin/env bash
# A separate venv with EPyMARL, used only by benchmarks/qmix_vs_epymarl.py (its EPyMARL side,
# benchmarks/epymarl_side.py, runs in it).
#
#     bash benchmarks/setup_epymarl_venv.sh EPYMARL_GIT [VENV_DIR]   # default VENV_DIR: build/bench-venvs/epymarl
#
# EPyMARL (github.com/uoe-agents/epymarl) is not on PyPI. EPYMARL_GIT is any git repository holding its
# history: a checkout, a clone, or a bare mirror. The script clones it into VENV_DIR/epymarl at the
# commit EPYMARL_REF (default: the commit the benchmark was written and measured against; set
# EPYMARL_REF=HEAD for the repository's current one) and puts VENV_DIR/epymarl/src on the venv's path
# (a .pth file), so `python -c "import learners"` works in the venv. The caller's repository is only read.
#
# The smaclite guard. EPyMARL's src/envs/__init__.py imports its SMAClite wrapper unconditionally,
# and that wrapper does `import smaclite` (a git-only package that needs pygame and more), so no
# EPyMARL run starts without smaclite installed, RWARE's included. The script applies a one-hunk
# patch to ITS OWN CLONE (never to EPYMARL_GIT): the import becomes `try: ... except ImportError:`,
# and the "smaclite" registry entry is only added when the import worked. `git -C VENV_DIR/epymarl diff`
# shows the patch; nothing else in EPyMARL is changed.
#
# Installed, from EPyMARL's requirements.txt, only what its QMIX on RWARE imports (src/main.py,
# run.py, the episode and parallel runners, q_learner, the gymma env): torch, numpy, PyYAML (their
# pin, 5.3.1, built from its sdist without build isolation), sacred (main.py; it imports
# pkg_resources: setuptools < 81, see SETUPTOOLS_PIN), gymnasium, cloudpickle (the parallel runner), rware.
# Left out, as unused by QMIX on RWARE: the plotting, SMAC/SMACv2/SMAClite/pysc2, PettingZoo, VMAS,
# LBF, matrix-games, tensorboard-logger, wandb, einops/torch-scatter (PAC), torchvision, pytest and
# profiling packages (gymma.py's PettingZoo and VMAS imports are already guarded by EPyMARL).
# torch is pinned to coopbench's torch==2.13.0 (the CPU wheel; never an unpinned `torch`, which
# would pull a CUDA build) and rware to coopbench's requirements.lock version, so both sides run the
# same torch and the same simulator. About 1 GB on disk; a minute or two with the wheels at hand.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [ $# -lt 1 ]; then
  echo "usage: bash benchmarks/setup_epymarl_venv.sh EPYMARL_GIT [VENV_DIR]" >&2
  echo "  EPYMARL_GIT: a checkout, clone or bare mirror of github.com/uoe-agents/epymarl" >&2
  exit 2
fi
SOURCE="$1"
VENV="${2:-$REPO/build/bench-venvs/epymarl}"
PYTHON="${PYTHON:-python3.11}"
# The commit benchmarks/qmix_vs_epymarl.py was written and measured against (2025, "Update README.md").
EPYMARL_REF="${EPYMARL_REF:-cbc38c09588064eab978501d0f12c2cf58fa7fc2}"

if ! command -v "$PYTHON" >/dev/null; then
  echo "error: $PYTHON not found; set PYTHON=/path/to/python3.x (3.10-3.12, one torch 2.13.0 has a wheel for)" >&2
  exit 1
fi
if ! git --git-dir="$SOURCE/.git" rev-parse --git-dir >/dev/null 2>&1 \
   && ! git --git-dir="$SOURCE" rev-parse --git-dir >/dev/null 2>&1; then
  echo "error: $SOURCE is not a git repository (a checkout or a bare mirror of EPyMARL)" >&2
  exit 1
fi
RWARE_PIN="$(grep -E '^rware==' "$REPO/requirements.lock")"
# sacred needs pkg_resources, which setuptools 81 removed (issue 14 says "< 70"); torch 2.13.0 declares
# setuptools>=77.0.3. Both hold for 77.0.3 <= setuptools < 81, and EPyMARL's main.py runs there.
SETUPTOOLS_PIN="setuptools>=77.0.3,<81"

"$PYTHON" -m venv "$VENV"
CLONE="$VENV/epymarl"
rm -rf "$CLONE"
git clone --quiet --no-checkout "$SOURCE" "$CLONE"
git -C "$CLONE" -c advice.detachedHead=false checkout --quiet "$EPYMARL_REF"

# The smaclite guard (see above), applied to the clone only.
"$VENV/bin/python" - "$CLONE/src/envs/__init__.py" <<'EOF'
import sys
from pathlib import Path

path = Path(sys.argv[1])
text = path.read_text()
old_import = "from .smaclite_wrapper import SMACliteWrapper\n"
new_import = ("try:  # coopbench benchmark venv: smaclite is optional (benchmarks/setup_epymarl_venv.sh)\n"
              "    from .smaclite_wrapper import SMACliteWrapper\n"
              "except ImportError:\n"
              "    SMACliteWrapper = None\n")
old_entry = 'REGISTRY["smaclite"] = smaclite_fn\n'
new_entry = 'if SMACliteWrapper is not None:\n    REGISTRY["smaclite"] = smaclite_fn\n'
if text.count(old_import) != 1 or text.count(old_entry) != 1:
    sys.exit(f"error: {path} does not look as expected (EPyMARL changed?); guard the smaclite import by hand")
path.write_text(text.replace(old_import, new_import).replace(old_entry, new_entry))
EOF

# PyYAML 5.3.1 (EPyMARL's pin) has no wheel for this Python: built from its sdist with an old setuptools.
"$VENV/bin/python" -m pip install --quiet "setuptools<70" "wheel"
"$VENV/bin/python" -m pip install --quiet --no-build-isolation "PyYAML==5.3.1"
"$VENV/bin/python" -m pip install --quiet \
  "torch==2.13.0" "numpy" "sacred" "gymnasium" "cloudpickle" "$RWARE_PIN" "$SETUPTOOLS_PIN"
SITE="$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
echo "$CLONE/src" > "$SITE/epymarl_src.pth"
git -C "$CLONE" rev-parse HEAD > "$VENV/epymarl-commit"

(cd "$CLONE/src" && "$VENV/bin/python" - <<'EOF'
import warnings
warnings.filterwarnings("ignore")
from importlib.metadata import version
import run, sacred, yaml  # noqa: F401,E401 - what EPyMARL's main.py imports (run: learners, runners, controllers)
from envs import REGISTRY
env = REGISTRY["gymma"](key="rware:rware-tiny-2ag-hard-v2", time_limit=500, pretrained_wrapper=None, seed=0,
                        common_reward=True, reward_scalarisation="sum")
env.reset()
env.step([0, 0])
info = env.get_env_info()
assert "smaclite" not in REGISTRY or version("smaclite")
print("EPyMARL (torch {}, rware {}, gymnasium {}, sacred {}, PyYAML {}, setuptools {}): ok; "
      "rware-tiny-2ag-hard-v2 obs {} x {}, actions {}".format(
          *(version(p) for p in ("torch", "rware", "gymnasium", "sacred", "PyYAML", "setuptools")),
          info["n_agents"], info["obs_shape"], info["n_actions"]))
EOF
)
echo "EPyMARL $(cat "$VENV/epymarl-commit") (smaclite import guarded: git -C $CLONE diff)"
echo "venv ready: $VENV"
