# Google Research Football, built from source into the venv (included by the Makefile; or alone:
#   make -f mk/gfootball.mk gfootball VENV=/path/to/venv
# ). gfootball has no wheel for Python 3.11: pip builds its C++ engine from the PyPI sdist with
# CMake, SDL2 and Boost.Python, which must match the venv's Python, hence:
#   - Debian packages first (apt-get, as root; otherwise the target prints the command and stops);
#   - `--no-build-isolation`: the build imports psutil and must see the venv's Python, headers and
#     site-packages, and its CMake finds Python through the first `python3` on PATH, so the venv's
#     bin/ comes first on PATH for the whole recipe;
#   - `--no-deps`: gfootball's metadata asks for `pygame` and `gym>=0.11`; pygame would overwrite the
#     pygame-ce that magent2/mpe2 use (same `pygame` module), so its runtime dependencies are installed
#     here explicitly, pinned, and the adapter never calls gym's wrappers (gym 0.26 changed their API).
# Build time on the 2-core machine: 1900 s wall for the whole target (Debian packages already there;
# niced, machine shared, load 3-6), then a 400-step academy episode as the check.
GFOOTBALL_MK := $(abspath $(lastword $(MAKEFILE_LIST)))
GFOOTBALL_ROOT := $(abspath $(dir $(GFOOTBALL_MK))/..)
VENV ?= .venv
GFOOTBALL_BIN := $(abspath $(VENV))/bin
GFOOTBALL_VERSION ?= 2.10.2
GFOOTBALL_APT := cmake build-essential libgl1-mesa-dev libegl-dev libsdl2-dev libsdl2-image-dev \
	libsdl2-ttf-dev libsdl2-gfx-dev libboost-python-dev libboost-thread-dev libboost-system-dev \
	libboost-filesystem-dev libdirectfb-dev libst-dev
# gfootball's runtime imports besides numpy/scipy (in the lock already): gym (old API, only its spaces
# and Env base class are used), six, psutil, absl-py, opencv (observation_preprocessing imports cv2).
GFOOTBALL_RUNTIME := "gym==0.26.2" "six>=1.16" "psutil>=5.9" "absl-py>=1.4" "opencv-python-headless>=4.8"

.PHONY: gfootball gfootball-apt gfootball-check

gfootball: $(VENV)/.gfootball-$(GFOOTBALL_VERSION)

gfootball-apt:
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $(GFOOTBALL_APT); \
	elif dpkg -s $(GFOOTBALL_APT) >/dev/null 2>&1; then \
		echo "gfootball: build packages already installed"; \
	else \
		echo "gfootball: run as root first: apt-get install -y $(GFOOTBALL_APT)"; exit 1; \
	fi

$(VENV)/.gfootball-$(GFOOTBALL_VERSION): | gfootball-apt
	@test -x $(GFOOTBALL_BIN)/python || { echo "gfootball: no venv at $(VENV) (run 'make venv' first)"; exit 1; }
	export PATH="$(GFOOTBALL_BIN):$$PATH"; \
	$(GFOOTBALL_BIN)/pip install -q "torch==2.13.0" "setuptools>=64" wheel $(GFOOTBALL_RUNTIME) && \
	time $(GFOOTBALL_BIN)/pip install --no-deps --no-build-isolation "gfootball==$(GFOOTBALL_VERSION)"
	$(MAKE) -f $(GFOOTBALL_MK) gfootball-check VENV=$(abspath $(VENV))
	@touch $@

# A short episode: the engine starts, steps and ends an academy episode through the adapter.
gfootball-check:
	cd $(GFOOTBALL_ROOT) && \
	COOPBENCH_ENV_WORKERS=0 $(GFOOTBALL_BIN)/python -m environments.adapters.gfootball_adapter
