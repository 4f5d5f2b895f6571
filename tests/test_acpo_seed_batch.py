"""ACPO in a seed batch whose seeds' episodes end at different steps (docs/architecture.md, "Seed batches").

tests/test_seed_batch.py checks ACPO on tasks where every seed's episodes end at the same steps. Here each seed
truncates at its own steps, so the collector bootstraps truncated final states at steps where only some seeds of
the batch truncated: the ablation samples beliefs there (ACPO.collect_step), and each seed must still draw from its
own stream exactly what it draws alone.
"""

import pytest
import torch

from algorithms.acpo import ACPO, ACPOConfig, chained_advantages
from coopbench.config import resolve
from coopbench.run import seed_everything, seed_slice, seed_stack
from environments import make
from environments.seed_batch import SeedBatch

CPU = torch.device("cpu")
TASK = "coordination/bn-cg-3"  # its episodes end by truncation only
EPISODE_LENGTHS = {3: 5, 4: 7, 5: 16}  # seed -> its episodes' length: with 16-step rollouts, truncations mostly apart
SMALL = {"n_envs": 4, "rollout_length": 16, "ppo_epochs": 2, "num_minibatches": 2}


def _flat(state, prefix=""):
    out = {}
    for key, value in state.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        elif isinstance(value, torch.Tensor):
            out[prefix + key] = value
    return out


def test_chained_advantages_of_a_seed_batch_are_each_seeds_own_bitwise():
    """[T, K, B, N] in one call: seed k's advantages and targets are those of its [T, B, N] alone, to the bit."""
    g = torch.Generator().manual_seed(0)
    steps, seeds, copies, agents = 9, 3, 5, 4
    values = torch.randn(steps, seeds, copies, agents, generator=g)
    next_first, rewards = torch.randn(2, steps, seeds, copies, generator=g)
    episode_end = torch.rand(steps, seeds, copies, generator=g) < 0.3
    terminated = episode_end & (torch.rand(steps, seeds, copies, generator=g) < 0.5)
    batch = chained_advantages(values, next_first, rewards, terminated, episode_end, 0.99 ** 0.25, 0.95 ** 0.25)
    for k in range(seeds):
        alone = chained_advantages(values[:, k], next_first[:, k], rewards[:, k], terminated[:, k],
                                   episode_end[:, k], 0.99 ** 0.25, 0.95 ** 0.25)
        for mine, its in zip(batch, alone, strict=True):
            assert torch.equal(mine[:, k], its)


@pytest.mark.parametrize("algo", ["acpo_no_chain", "acpo"])
def test_seeds_truncating_at_different_steps_train_as_they_do_alone(algo):
    config = resolve(algo, TASK, {"algo": SMALL})
    hparams = ACPOConfig(**config.algo_hparams)
    seeds = list(EPISODE_LENGTHS)

    def env_of(seed):
        return make(TASK, n_envs=SMALL["n_envs"], seed=seed,
                    **{**config.env_params, "episode_length": EPISODE_LENGTHS[seed]})

    solos = []
    for seed in seeds:  # as the driver builds each seed (coopbench.run.build_seeds)
        seed_everything(seed)
        env = env_of(seed)
        solos.append((env, ACPO(env.spec, hparams, CPU)))
    batch = ACPO(solos[0][0].spec, hparams, CPU, n_seeds=len(seeds))
    batch.load_state_dict(seed_stack([solo.state_dict() for _, solo in solos]))
    env = SeedBatch([env_of(seed) for seed in seeds])

    timestep, solo_steps, ends = env.reset(), [solo_env.reset() for solo_env, _ in solos], []
    for _ in range(3):
        rollout = batch.collect(env, timestep)
        ends.append(rollout.storage["episode_end"].any(-1))  # [T, K]: a seed's episodes ended at step t
        batch.update(rollout.storage)
        timestep = rollout.timestep
        solo_steps = [solo.train_iteration(solo_env, step).timestep
                      for (solo_env, solo), step in zip(solos, solo_steps, strict=True)]
    ended = torch.cat(ends)
    assert (ended.any(-1) & ~ended.all(-1)).sum() >= 10  # steps where some seeds truncated and others did not

    state = batch.state_dict()
    for k, (_, solo) in enumerate(solos):
        mine, alone = _flat(seed_slice(state, k, len(seeds))), _flat(solo.state_dict())
        assert mine.keys() == alone.keys()
        for key in alone:  # weights, Adam, ValueNorm, random streams: bitwise (CPU, see tests/test_seed_batch.py)
            assert torch.equal(mine[key], alone[key]), (k, key)
