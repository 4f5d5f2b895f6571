"""A native task's seed batch is one object of K*B copies drawing from the K seeds' streams
(environments/seed_batch.py, `base.CopyRandom`): every seed's rows must be what its own environment produces,
bitwise, through episode ends (fresh episodes drawn only by the seeds that had a finished copy), conditional draws
(a tie among some seed's agents), checkpoints and stepping a subset of seeds."""

import pytest
import torch

from environments.base import TaskEnv, TimeStep
from environments.registry import ENVIRONMENTS, make
from environments.seed_batch import SeedBatch, join, merge
from tests.seed_batch_checks import assert_same_state

SEEDS = [4, 0, 7]
COPIES = 5  # K * B = 15: neither block nor batch a multiple of a SIMD width


def _native_tasks() -> list[str]:
    tasks = []
    for name in ENVIRONMENTS.names():
        try:
            cls = ENVIRONMENTS.get(name).load()
        except ImportError:
            continue
        if issubclass(cls, TaskEnv):
            tasks.append(name)
    return tasks


NATIVE = _native_tasks()


def _actions(spec, generator: torch.Generator) -> torch.Tensor:
    n = len(SEEDS) * COPIES
    if spec.discrete:
        return torch.randint(0, spec.n_actions, (n, spec.n_agents), generator=generator)
    return torch.rand(n, spec.n_agents, spec.action_dim, generator=generator) * 2 - 1


def _assert_same(merged: TimeStep, separate: TimeStep, where: str) -> None:
    for name in ("obs", "state", "avail_actions", "reward", "terminated", "truncated", "final_obs", "final_state",
                 "episode_return", "episode_length"):
        a, b = getattr(merged, name), getattr(separate, name)
        if b is None:
            assert a is None, (where, name)
            continue
        assert a.dtype == b.dtype and torch.equal(a.nan_to_num(-7.0), b.nan_to_num(-7.0)), (where, name)
    assert merged.extras.keys() == separate.extras.keys(), where
    for key, value in separate.extras.items():
        assert torch.equal(merged.extras[key].nan_to_num(-7.0), value.nan_to_num(-7.0)), (where, key)


def _batch(task: str) -> SeedBatch:
    return merge([make(task, n_envs=COPIES, seed=seed) for seed in SEEDS])


def _pair(task: str) -> tuple[SeedBatch, SeedBatch]:
    batch = _batch(task)
    assert batch.merged is not None and batch.merged.n_envs == len(SEEDS) * COPIES
    return batch, SeedBatch([make(task, n_envs=COPIES, seed=seed) for seed in SEEDS])


MERGED = [task for task in NATIVE if ENVIRONMENTS.get(task).load().SEED_MERGE]
NOT_MERGED = {"differential/cora-2agent", "differential/cora-5agent", "particle/bn-predator-prey-15"}  # their notes


def test_every_native_task_merges_but_those_whose_rows_round_by_batch_size():
    assert len(NATIVE) >= 20 and set(NATIVE) - set(MERGED) == NOT_MERGED
    batch = _batch("differential/cora-2agent")
    assert batch.merged is None and len(batch.envs) == len(SEEDS)


@pytest.mark.parametrize("task", MERGED)
def test_a_merged_seed_batch_steps_every_seed_bitwise_as_its_own_environment(task):
    merged, separate = _pair(task)
    generator = torch.Generator().manual_seed(0)
    _assert_same(merged.reset(), separate.reset(), "reset")
    limit = merged.spec.episode_limit
    ended = 0
    for t in range(min(2 * limit + 3, 700)):
        actions = _actions(merged.spec, generator)
        step, alone = merged.step(actions), separate.step(actions)
        _assert_same(step, alone, f"step {t}")
        ended += int(alone.done.sum())
    for k, state in enumerate(merged.seed_states()):  # each seed's checkpoint is its own environment's state
        assert_same_state(state, separate.envs[k].state_dict(), f"seed {k}")
    assert ended > 0, "no episode ended: the test would not see fresh draws"


@pytest.mark.parametrize("task", ["gridworld/as-exchange", "coordination/bn-cg-3", "social_dilemma/as-cleanup",
                                  "aloha/bn-aloha-10"])
def test_a_merged_batch_restores_from_its_seeds_states_and_steps_a_subset(task):
    merged, separate = _pair(task)
    generator = torch.Generator().manual_seed(1)
    merged.reset(), separate.reset()
    for _ in range(7):
        actions = _actions(merged.spec, generator)
        merged.step(actions), separate.step(actions)
    # a fresh merged batch restored from the seeds' states continues as the original
    restored, _ = _pair(task)
    restored.load_seed_states(merged.seed_states())
    for t in range(5):
        actions = _actions(merged.spec, generator)
        _assert_same(restored.step(actions), merged.step(actions), f"restored, step {t}")
        separate.step(actions)
    # seeds 0 and 2 step, seed 1 waits (no step, no draw), then all again
    for t in range(2 * merged.spec.episode_limit):
        active = [True, t % 3 == 0, True]
        actions = _actions(merged.spec, generator)
        stepped = [env.step(a) for env, a, on in zip(separate.envs, actions.chunk(3), active, strict=True) if on]
        _assert_same(merged.step(actions, active=active), join(stepped), f"subset, step {t}")
        _assert_same(restored.step(actions, active=active), join(stepped), f"restored subset, step {t}")
