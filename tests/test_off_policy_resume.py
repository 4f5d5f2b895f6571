"""An off-policy run killed with SIGKILL and started again ends with bitwise-identical metrics (CPU): the replay,
the exploration noise's RNG, target networks and optimizers are all in the checkpoint (as tests/test_resume.py for
MAPPO)."""

import pytest

from tests.sigkill_resume import assert_sigkill_resume_identical

ARGS = ["run", "maddpg", "differential/cora-2agent", "--seed", "3", "--set", "run.total_env_steps=30000",
        "--set", "run.eval_interval=2000", "--set", "algo.warmup_steps=2000", "--set", "algo.train_interval=10",
        "--set", "algo.batch_size=256", "--set", "algo.buffer_size=20000", "--set", "algo.n_step=3",
        "--set", "algo.hidden_sizes=[64,64]"]


@pytest.mark.slow
def test_sigkill_then_restart_gives_identical_metrics(tmp_path):
    # 1 s past the first checkpoint: after training began, so the replay, targets and noise state matter
    assert_sigkill_resume_identical(ARGS, tmp_path, settle_s=1.0)
