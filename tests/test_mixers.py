"""Mixers: the properties each paper's factorization rests on, at random inputs and random weights, and the
parameter counts LAN's Table 1 prints for QMIX and QPLEX (SMAC sizes from SMAC's own state formula)."""

import itertools

import pytest
import torch

from algorithms.blocks.mixers import (
    DuplexMixer,
    HyperTransformation,
    QattenTransformation,
    QMixer,
    QTranJoint,
    SumMixer,
)


def scrambled(module: torch.nn.Module, seed: int, scale: float = 2.0) -> torch.nn.Module:
    """Weights far from their initialization (large, of both signs): properties must not rest on the init."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * scale)
    return module


def n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def smac_state_dim(n_agents: int, n_enemies: int, ally_features: int, enemy_features: int, n_actions: int) -> int:
    """SMAC's state size (smac/env/starcraft2/starcraft2.py, get_state_size with the default state_last_action):
    allies x (health, cooldown, x, y[, shield][, unit type bits]) + enemies x (health, x, y[, shield][, type bits])
    + the allies' last actions."""
    return n_agents * ally_features + n_enemies * enemy_features + n_agents * n_actions


def test_vdn_q_tot_is_the_exact_sum():
    qs = torch.randn(7, 5, 4)
    assert torch.equal(SumMixer()(qs, torch.randn(7, 5, 3)), qs.sum(-1))


@pytest.mark.parametrize("seed", range(3))
def test_qmix_is_monotonic_in_every_agent_q(seed):
    torch.manual_seed(seed)
    mixer = scrambled(QMixer(n_agents=4, state_dim=6, embed_dim=8), seed)
    qs = (torch.randn(64, 4) * 5).requires_grad_()
    states = torch.randn(64, 6) * 3
    (grad,) = torch.autograd.grad(mixer(qs, states).sum(), qs)
    assert (grad >= 0).all()
    assert (grad > 0).any()  # the bound is not met by a constant mixer
    # and Q_tot really depends on the state (the hypernetworks): same qs, other states, other Q_tot
    assert not torch.allclose(mixer(qs, states), mixer(qs, states.flip(0)))


@pytest.mark.parametrize("kind", ["hyper", "qatten"])
def test_qplex_joint_argmax_is_the_agents_own_argmax(kind):
    """IGM (Wang et al. 2021, Prop. 2): over all joint actions, Q_tot is largest at the agents' greedy actions."""
    torch.manual_seed(0)
    n, a, s = 3, 4, 9
    transformation = (HyperTransformation(n, s) if kind == "hyper" else QattenTransformation(n, s, unit_dim=3))
    mixer = scrambled(DuplexMixer(n, a, s, transformation, n_heads=2), 1, scale=0.5)
    batch = 16
    q = torch.randn(batch, n, a) * 3
    state = torch.randn(batch, s)
    joints = torch.tensor(list(itertools.product(range(a), repeat=n)))  # [a^n, n]
    q_b = q.unsqueeze(1).expand(batch, len(joints), n, a)
    actions = joints.unsqueeze(0).expand(batch, -1, -1)
    chosen = q_b.gather(-1, actions.unsqueeze(-1)).squeeze(-1)
    onehot = torch.nn.functional.one_hot(actions, a).float()
    q_tot, _ = mixer(chosen, state.unsqueeze(1).expand(-1, len(joints), -1), q_b.max(-1).values, onehot)
    greedy = (q.argmax(-1) * torch.tensor([a ** (n - 1 - i) for i in range(n)])).sum(-1)  # its row in `joints`
    at_greedy = q_tot.gather(1, greedy.unsqueeze(1)).squeeze(1)
    # the agents' greedy joint action is a joint argmax (float ties aside: a lambda can be ~0 at scrambled weights)
    assert (at_greedy >= q_tot.max(1).values - 1e-5 * q_tot.abs().max(1).values).all()
    assert (joints[q_tot.argmax(1)] == q.argmax(-1)).all(-1).float().mean() > 0.8
    # and not trivially: Q_tot varies over the joint actions, and is no sum of transformed utilities (lambda acts)
    assert (q_tot.max(1).values - q_tot.min(1).values > 1e-3).all()
    w, b, _ = mixer.transformation(state)
    additive = (w.unsqueeze(1) * chosen + b.unsqueeze(1)).sum(-1)
    assert not torch.allclose(q_tot, additive, atol=1e-3)


def test_qtran_joint_networks_read_actions_and_hidden_states():
    torch.manual_seed(0)
    joint = QTranJoint(n_actions=3, state_dim=5, hidden_size=8, embed_dim=16)
    state, hidden = torch.randn(4, 6, 5), torch.randn(4, 6, 2, 8)
    a, b = torch.nn.functional.one_hot(torch.zeros(4, 6, 2, dtype=torch.long), 3).float(), \
        torch.nn.functional.one_hot(torch.ones(4, 6, 2, dtype=torch.long), 3).float()
    (q_a, v_a), (q_b, v_b) = joint(state, hidden, a), joint(state, hidden, b)
    assert q_a.shape == v_a.shape == (4, 6)
    assert torch.equal(v_a, v_b) and not torch.allclose(q_a, q_b)  # V_jt ignores the actions, Q_jt does not
    # agents are summed after a shared encoding: permuting them changes nothing
    assert torch.allclose(joint(state, hidden.flip(2), a.flip(2))[0], q_a, atol=1e-6)


# LAN Table 1 (App. A Table 3), thousands of parameters of the centralized components, rounded: QMIX 32 and
# QPLEX 43 on 5m_vs_6m, QMIX 283 and QPLEX 709 on 27m_vs_30m. Marines: 4 ally features (health, cooldown,
# x, y), 3 enemy features, 6 + enemies actions. LAN's QPLEX counts are those of the Qatten transformation
# (qplex_qatten_sc2.yaml, unit_dim 4), the other sizes the official defaults.
@pytest.mark.parametrize(("agents", "enemies", "qmix_k", "qplex_k"), [(5, 6, 32, 43), (27, 30, 283, 709)])
def test_mixer_parameter_counts_are_lan_table_1s(agents, enemies, qmix_k, qplex_k):
    n_actions = 6 + enemies
    state = smac_state_dim(agents, enemies, 4, 3, n_actions)
    assert round(n_params(QMixer(agents, state, embed_dim=32, hypernet_layers=2, hypernet_embed=64)) / 1000) == qmix_k
    qplex = DuplexMixer(agents, n_actions, state, QattenTransformation(agents, state, unit_dim=4), n_heads=4,
                        adv_hypernet_layers=1)
    assert round(n_params(qplex) / 1000) == qplex_k
