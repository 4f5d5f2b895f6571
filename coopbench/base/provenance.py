"""Where a result came from: code version, package versions, host, container, scheduler job."""

from __future__ import annotations

import os
import socket
import subprocess
from datetime import UTC, datetime
from importlib import metadata

from coopbench.base.paths import REPO_ROOT

TRACKED_PACKAGES = ["coopbench", "torch", "numpy", "pandas", "pyarrow", "pydantic", "pettingzoo",
                    "gymnasium", "snakemake", "rliable", "seaborn"]


def code_version() -> dict:
    """Commit and dirty flag of the checkout; COOPBENCH_CODE_VERSION wins (containers have no .git)."""
    if os.environ.get("COOPBENCH_CODE_VERSION"):
        return {"commit": os.environ["COOPBENCH_CODE_VERSION"], "dirty": False}
    try:
        commit = subprocess.run(["git", "-C", str(REPO_ROOT), "rev-parse", "HEAD"], capture_output=True,
                                text=True, check=True, timeout=10).stdout.strip()
        status = subprocess.run(["git", "-C", str(REPO_ROOT), "status", "--porcelain", "--untracked-files=no"],
                                capture_output=True, text=True, check=True, timeout=10).stdout
        return {"commit": commit, "dirty": bool(status.strip())}
    except (OSError, subprocess.SubprocessError):
        return {"commit": "unknown", "dirty": None}


def package_versions() -> dict[str, str]:
    versions = {}
    for name in TRACKED_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def host() -> str:
    return socket.gethostname()


def container_image() -> str:
    return os.environ.get("COOPBENCH_CONTAINER_IMAGE", "none")


def slurm_job_id() -> str | None:
    return os.environ.get("SLURM_JOB_ID")


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
