"""Kill a `coopbench run` with SIGKILL past its first checkpoint, start it again, and check it ends with the
metrics of an uninterrupted run bit for bit (CPU). Used by test_resume.py (MAPPO) and test_off_policy_resume.py."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import REPO


def _start(args: list[str], results: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "coopbench", *args, "--results-dir", str(results)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(REPO)})


def assert_sigkill_resume_identical(args: list[str], tmp_path: Path, settle_s: float) -> Path:
    """Run `args` uninterrupted and, beside it, killed `settle_s` after its first checkpoint appeared and restarted;
    assert identical metrics.parquet and one resume. Returns the interrupted run's results directory."""
    reference, interrupted = tmp_path / "reference", tmp_path / "interrupted"
    ref = _start(args, reference)
    victim = _start(args, interrupted)
    deadline = time.time() + 120
    checkpoints = []
    while time.time() < deadline and not checkpoints:
        checkpoints = list(interrupted.glob("runs/**/checkpoint.pt"))
        time.sleep(0.05)
    assert checkpoints, "no checkpoint appeared"
    time.sleep(settle_s)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    assert not list(interrupted.glob("runs/**/manifest.json")), "killed too late: the run had finished"

    resumed = _start(args, interrupted)
    assert resumed.wait(timeout=300) == 0, resumed.stderr.read()
    assert ref.wait(timeout=300) == 0, ref.stderr.read()
    [ref_metrics] = reference.glob("runs/**/metrics.parquet")
    [new_metrics] = interrupted.glob("runs/**/metrics.parquet")
    assert ref_metrics.read_bytes() == new_metrics.read_bytes()
    manifest = json.loads((new_metrics.parent / "manifest.json").read_text())
    assert manifest["resumes"] == 1
    return interrupted
