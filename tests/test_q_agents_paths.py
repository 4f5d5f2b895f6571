"""AgentQNetwork's fast paths compute what the generic Torso path computes. Acting (shared weights, parameters
looked up once, no clear without starts): the same values bitwise. Unrolling with torch.gru (input gates of all steps
in one addmm): values and gradients equal up to float rounding (bitwise on some shapes, e.g. RWARE's, not all)."""

from types import SimpleNamespace

import pytest
import torch

from algorithms.blocks.q_agents import AgentQNetwork

SPEC = SimpleNamespace(n_agents=3, n_actions=5, obs_dim=7)


def generic(net: AgentQNetwork) -> AgentQNetwork:
    """The same network with its fast paths switched off (the Torso's step and unroll)."""
    net._shared_weights = lambda: False
    return net


@pytest.mark.parametrize("share", [True, False])
def test_step_matches_torso_step(share):
    torch.manual_seed(0)
    net = AgentQNetwork(SPEC, [16], "relu", True, 8, share, True, True)
    obs, last = torch.randn(4, 3, 7), torch.nn.functional.one_hot(torch.randint(0, 5, (4, 3)), 5).float()
    memory = torch.randn(4, 3, 8)
    for starts in (None, torch.tensor([True, False, True, False])):
        with torch.no_grad():
            q, h = net.step(obs, last, memory, starts)
        ref = generic(AgentQNetwork(SPEC, [16], "relu", True, 8, share, True, True))
        ref.load_state_dict(net.state_dict())
        with torch.no_grad():
            q_ref, h_ref = ref.step(obs, last, memory, starts)
            # the Torso's own step, which clears the memory of every start through its `_clear`
            features, h_torso = ref.torso(ref.inputs(obs, last), memory, torch.zeros(4, dtype=torch.bool)
                                          if starts is None else starts)
        assert torch.equal(q, q_ref) and torch.equal(h, h_ref)
        assert torch.equal(h, h_torso) and torch.equal(q, ref.head(features))
        if starts is not None:  # a start clears the memory: the step equals one from zeros
            with torch.no_grad():
                _, from_zero = net.step(obs, last, memory * 0, None)
            assert torch.equal(h[starts], from_zero[starts]) and not torch.equal(h[~starts], from_zero[~starts])


def test_unroll_matches_stepwise_unroll():
    torch.manual_seed(1)
    net = AgentQNetwork(SPEC, [16], "relu", True, 8, True, True, True)
    ref = generic(AgentQNetwork(SPEC, [16], "relu", True, 8, True, True, True))
    ref.load_state_dict(net.state_dict())
    obs, actions = torch.randn(6, 30, 3, 7), torch.randint(0, 5, (6, 30, 3))
    q, features = net.unroll(obs, actions)
    q_ref, features_ref = ref.unroll(obs, actions)
    assert torch.allclose(q, q_ref, rtol=1e-6, atol=1e-6)
    assert torch.allclose(features, features_ref, rtol=1e-6, atol=1e-6)
    weights = torch.randn_like(q)
    grads = torch.autograd.grad((q * weights).sum(), list(net.parameters()))
    grads_ref = torch.autograd.grad((q_ref * weights).sum(), list(ref.parameters()))
    for g, g_ref in zip(grads, grads_ref, strict=True):
        assert torch.allclose(g, g_ref, rtol=1e-5, atol=1e-6)
    # and the acting step, step by step over one episode, gives the unroll's values
    memory, last = torch.zeros(6, 3, 8), torch.zeros(6, 3, 5)
    with torch.no_grad():
        for t in range(30):
            q_t, memory = net.step(obs[:, t], last, memory, torch.ones(6, dtype=torch.bool) if t == 0 else None)
            last = torch.nn.functional.one_hot(actions[:, t], 5).float()
            assert torch.allclose(q_t, q[:, t].detach(), rtol=1e-6, atol=1e-6)


def test_step_parameter_cache_follows_updates():
    torch.manual_seed(2)
    net = AgentQNetwork(SPEC, [16], "relu", True, 8, True, True, True)
    obs, last, memory = torch.randn(2, 3, 7), torch.zeros(2, 3, 5), torch.zeros(2, 3, 8)
    with torch.no_grad():
        before, _ = net.step(obs, last, memory, None)
        for p in net.parameters():
            p.add_(0.1)  # in place, as the optimizer and target updates do
        after, _ = net.step(obs, last, memory, None)
        other = AgentQNetwork(SPEC, [16], "relu", True, 8, True, True, True)
        net.load_state_dict(other.state_dict(), assign=True)  # replaces the parameter objects
        loaded, _ = net.step(obs, last, memory, None)
        expected, _ = other.step(obs, last, memory, None)
    assert not torch.equal(before, after)
    assert torch.equal(loaded, expected)
