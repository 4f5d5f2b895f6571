import pytest
import torch

from algorithms.blocks.gae import compute_gae


def _col(*values, dtype=torch.float32):
    return torch.tensor(values, dtype=dtype).unsqueeze(-1)  # [T, 1]


def test_gae_without_episode_ends_matches_hand_computation():
    gamma, lam = 0.9, 0.5
    rewards, values, next_values = _col(1.0, 2.0, 3.0), _col(0.5, 1.0, 1.5), _col(1.0, 1.5, 2.0)
    flags = _col(False, False, False, dtype=torch.bool)
    adv, ret = compute_gae(rewards, values, next_values, flags, flags, gamma, lam)
    # deltas: 1 + .9*1 - .5 = 1.4; 2 + .9*1.5 - 1 = 2.35; 3 + .9*2 - 1.5 = 3.3
    # A2 = 3.3; A1 = 2.35 + .45*3.3 = 3.835; A0 = 1.4 + .45*3.835 = 3.12575
    assert adv.squeeze(-1).tolist() == pytest.approx([3.12575, 3.835, 3.3])
    assert ret.squeeze(-1).tolist() == pytest.approx([3.62575, 4.835, 4.8])


def test_gae_truncation_bootstraps_and_termination_does_not():
    gamma, lam = 0.9, 0.5
    # step 0 continues; step 1 is truncated (bootstrap from V(final state) = 4); step 2 terminates.
    rewards, values = _col(1.0, 2.0, 3.0), _col(0.5, 1.0, 1.5)
    next_values = _col(1.0, 4.0, 7.0)  # 7 must be ignored: terminal
    terminated = _col(False, False, True, dtype=torch.bool)
    episode_end = _col(False, True, True, dtype=torch.bool)
    adv, ret = compute_gae(rewards, values, next_values, terminated, episode_end, gamma, lam)
    # deltas: 1.4; 2 + .9*4 - 1 = 4.6; 3 - 1.5 = 1.5. A2 = 1.5; A1 = 4.6 (no chaining past the end);
    # A0 = 1.4 + .45*4.6 = 3.47
    assert adv.squeeze(-1).tolist() == pytest.approx([3.47, 4.6, 1.5])
    assert ret.squeeze(-1).tolist() == pytest.approx([3.97, 5.6, 3.0])


def test_gae_is_batched_over_trailing_dims():
    torch.manual_seed(0)
    shape = (5, 3, 2)
    rewards, values, next_values = torch.randn(shape), torch.randn(shape), torch.randn(shape)
    terminated = torch.rand(shape) < 0.2
    ends = terminated | (torch.rand(shape) < 0.2)
    adv, _ = compute_gae(rewards, values, next_values, terminated, ends, 0.99, 0.95)
    for b in range(3):
        for n in range(2):
            single, _ = compute_gae(rewards[:, b, n], values[:, b, n], next_values[:, b, n],
                                    terminated[:, b, n], ends[:, b, n], 0.99, 0.95)
            assert torch.allclose(adv[:, b, n], single)
