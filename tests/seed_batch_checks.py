"""What the seed-batch tests of the episode- and transition-based families share: a few training iterations, and a
recursive bitwise comparison of a batch seed's state with its solo run's (dict, list and tensor leaves, with the
path of the first difference)."""

import torch


def train(algorithm, env, iterations: int):
    timestep, results = env.reset(), []
    for _ in range(iterations):
        result = algorithm.train_iteration(env, timestep)
        timestep = result.timestep
        results.append(result)
    return results


def assert_same_state(batch_state, solo_state, where=""):
    if isinstance(solo_state, dict):
        assert batch_state.keys() == solo_state.keys(), where
        for key in solo_state:
            assert_same_state(batch_state[key], solo_state[key], f"{where}/{key}")
    elif isinstance(solo_state, list | tuple):
        assert len(batch_state) == len(solo_state), where
        for i, (b, s) in enumerate(zip(batch_state, solo_state, strict=True)):
            assert_same_state(b, s, f"{where}[{i}]")
    elif isinstance(solo_state, torch.Tensor):
        assert batch_state.dtype == solo_state.dtype and batch_state.shape == solo_state.shape, where
        assert torch.equal(batch_state, solo_state), f"{where}: max diff {(batch_state - solo_state).abs().max()}"
    else:
        assert batch_state == solo_state, where
