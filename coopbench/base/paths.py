"""Where the checkout is (the root every relative project path starts from)."""

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
