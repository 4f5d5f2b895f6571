import math

import pytest
import torch

from algorithms.blocks.ppo_loss import ppo_clip_loss, value_loss


def test_clip_loss_values_and_gradients():
    clip = 0.2
    ratios = torch.tensor([1.5, 0.5, 1.1, 0.5])
    advantages = torch.tensor([2.0, -1.0, 1.0, 1.0])
    old = torch.zeros(4)
    new = torch.log(ratios).requires_grad_()
    loss = ppo_clip_loss(new, old, advantages, clip)
    # per sample min(r A, clip(r) A): 1.2*2 (clipped), 0.8*-1 (clipped), 1.1*1, 0.5*1 (the unclipped lower one)
    assert loss.item() == pytest.approx(-(2.4 - 0.8 + 1.1 + 0.5) / 4)
    loss.backward()
    # Clipped samples carry no gradient; unclipped ones d/dlogp(-r A / 4) = -r A / 4.
    expected = [0.0, 0.0, -1.1 / 4, -0.5 / 4]
    assert new.grad.tolist() == pytest.approx(expected)


def test_clip_loss_at_ratio_one_is_minus_mean_advantage():
    adv = torch.tensor([1.0, -3.0, 0.5])
    logp = torch.log(torch.tensor([0.2, 0.3, 0.5]))
    assert ppo_clip_loss(logp, logp, adv, 0.2).item() == pytest.approx(-adv.mean().item())


def test_value_loss_plain_and_clipped():
    values, old, returns = torch.tensor([2.0]), torch.tensor([0.0]), torch.tensor([3.0])
    assert value_loss(values, old, returns).item() == pytest.approx(0.5)
    # clipped prediction 0.5 is further from 3: the pessimistic max is taken
    assert value_loss(values, old, returns, clip_eps=0.5).item() == pytest.approx(0.5 * 2.5**2)
    assert math.isfinite(value_loss(values, old, returns, clip_eps=0.1).item())
