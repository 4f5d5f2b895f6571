"""An off-policy run killed with SIGKILL and started again ends with bitwise-identical metrics (CPU): the replay,
the exploration noise's RNG, target networks and optimizers are all in the checkpoint (as tests/test_resume.py for
MAPPO)."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from tests.conftest import REPO

ARGS = ["run", "maddpg", "differential/cora-2agent", "--seed", "3", "--set", "run.total_env_steps=30000",
        "--set", "run.eval_interval=2000", "--set", "algo.warmup_steps=2000", "--set", "algo.train_interval=10",
        "--set", "algo.batch_size=256", "--set", "algo.buffer_size=20000", "--set", "algo.n_step=3",
        "--set", "algo.hidden_sizes=[64,64]"]


def start(results):
    return subprocess.Popen([sys.executable, "-m", "coopbench", *ARGS, "--results-dir", str(results)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(REPO)})


@pytest.mark.slow
def test_sigkill_then_restart_gives_identical_metrics(tmp_path):
    reference, interrupted = tmp_path / "reference", tmp_path / "interrupted"
    ref = start(reference)
    victim = start(interrupted)
    deadline = time.time() + 120
    checkpoints = []
    while time.time() < deadline and not checkpoints:
        checkpoints = list(interrupted.glob("runs/**/checkpoint.pt"))
        time.sleep(0.05)
    assert checkpoints, "no checkpoint appeared"
    time.sleep(1.0)  # past the first checkpoint (after training began: the replay, targets and noise state matter)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    assert not list(interrupted.glob("runs/**/manifest.json")), "killed too late: the run had finished"

    resumed = start(interrupted)
    assert resumed.wait(timeout=300) == 0, resumed.stderr.read()
    assert ref.wait(timeout=300) == 0, ref.stderr.read()
    [ref_metrics] = reference.glob("runs/**/metrics.parquet")
    [new_metrics] = interrupted.glob("runs/**/metrics.parquet")
    assert ref_metrics.read_bytes() == new_metrics.read_bytes()
    manifest = json.loads((new_metrics.parent / "manifest.json").read_text())
    assert manifest["resumes"] == 1
