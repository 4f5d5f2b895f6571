"""A run killed with SIGKILL and started again ends with bitwise-identical metrics (CPU)."""

import pytest

from tests.sigkill_resume import assert_sigkill_resume_identical

ARGS = ["run", "mappo", "matrix/cora-mtg", "--seed", "5", "--set", "run.total_env_steps=24000",
        "--set", "run.eval_interval=1024", "--set", "algo.rollout_length=32"]


@pytest.mark.slow
def test_sigkill_then_restart_gives_identical_metrics(tmp_path):
    # killed 0.5 s past the first checkpoint: mid-way between two
    interrupted = assert_sigkill_resume_identical(ARGS, tmp_path, settle_s=0.5)
    assert not list(interrupted.glob("runs/**/checkpoint.pt"))
