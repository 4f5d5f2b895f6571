"""HAPPO/HATRPO's blocks in a seed batch (issue 18): each row (seed) of a batched trust-region step, conjugate
gradient and agent-wise Adam step is that row alone, bitwise, and decides for itself (accepts, rejects, converges,
steps its own agent). The whole methods against their solo runs: tests/test_seed_batch.py."""

import torch

from algorithms.blocks.adam import AgentwiseAdam
from algorithms.blocks.trust_region import conjugate_gradient, trust_region_step

MAX_KL = 0.01


def _problem(rows: list[int]):
    """Rows of independent problems around theta0: surrogate g.d - c |d|^2, KL 0.5 sum f d^2 (d = theta - theta0).
    Row 0 is linear (the full step is accepted), row 1 strongly concave (the line search backs off), row 2 has no
    gradient (no direction: no step), row 3 never improves within the KL radius (every candidate rejected)."""
    torch.manual_seed(0)
    theta0, f = torch.randn(4, 6), torch.rand(4, 6) + 0.5
    g = torch.randn(4, 6)
    g[2] = 0.0
    c = torch.tensor([0.0, 10.0, 0.0, 1e4])
    g[3] *= 1e-3
    theta0, f, g, c = theta0[rows], f[rows], g[rows], c[rows]
    theta = torch.nn.Parameter(theta0.clone())

    def surrogate():
        d = theta - theta0
        return (g * d).sum(-1) - c * (d * d).sum(-1)

    def kl():
        d = theta - theta0
        return 0.5 * (f * d * d).sum(-1)

    def set_flat(x):
        theta.data.copy_(x)

    def flat_grad(y, create_graph=False, retain_graph=None):
        return torch.autograd.grad(y.sum(), theta, create_graph=create_graph, retain_graph=retain_graph)[0]

    stats = trust_region_step(surrogate, kl, lambda: theta.detach(), set_flat, flat_grad, MAX_KL)
    return theta.detach(), theta0, stats, kl().detach()


def test_a_batched_trust_region_step_is_each_row_alone_and_accepts_or_rejects_per_row():
    theta, theta0, stats, kl = _problem([0, 1, 2, 3])
    for row in range(4):  # bitwise the row's lone step: parameters and every statistic
        alone, _, alone_stats, _ = _problem([row])
        assert torch.equal(theta[row], alone[0]), row
        for key, value in stats.items():
            assert torch.equal(value[row], alone_stats[key][0]), (row, key)
    assert stats["accepted"].tolist() == [1.0, 1.0, 0.0, 0.0]
    assert stats["step_fraction"].tolist() == [1.0, 0.5, 0.0, 0.0]  # row 1 backed off once
    assert (kl[:2] <= MAX_KL).all() and (kl[:2] > 0).all() and (stats["improvement"][:2] > 0).all()
    assert torch.equal(stats["kl"][:2], kl[:2])
    assert torch.equal(theta[2:], theta0[2:])  # no direction / every candidate rejected: left as they were
    assert torch.equal(stats["policy_loss"], -stats["improvement"])  # minus the surrogate it leaves (0 at theta0)


def test_conjugate_gradient_rows_stop_on_their_own_and_equal_their_lone_solves():
    torch.manual_seed(1)
    a = torch.rand(3, 5) + 0.5  # diagonal systems, one per row
    b = torch.randn(3, 5)
    b[1] = torch.tensor([0.0, 2.0, 0.0, 0.0, 0.0])  # an eigenvector: solved in one iteration, then stops
    x = conjugate_gradient(lambda v: a * v, b, iterations=10)
    assert torch.isfinite(x).all()  # the converged row did not divide 0 by 0 while the others went on
    torch.testing.assert_close(x, b / a, rtol=1e-5, atol=1e-5)
    for row in range(3):
        alone = conjugate_gradient(lambda v, r=row: a[r:r + 1] * v, b[row:row + 1], iterations=10)
        assert torch.equal(x[row], alone[0]), row


def test_agentwise_adam_steps_agent_k_of_each_seed_as_a_separate_adam_would():
    """Seed-major parameters [K*N, ...] (K=2 seeds of N=3 agents): a [K] agent tensor steps agent agents[k] of seed
    k, each row with its own step count (the second call steps rows with different counts), the rest untouched."""
    torch.manual_seed(0)
    seeds, agents = 2, 3
    weight, bias = torch.nn.Parameter(torch.randn(6, 4, 2)), torch.nn.Parameter(torch.randn(6, 2))
    initial = weight.detach().clone(), bias.detach().clone()
    separate = [[torch.nn.Parameter(weight[r].detach().clone()), torch.nn.Parameter(bias[r].detach().clone())]
                for r in range(6)]
    ours = AgentwiseAdam([weight, bias], n_agents=agents, lr=0.05)
    theirs = [torch.optim.Adam(p, lr=0.05) for p in separate]
    x = torch.randn(5, 4)
    steps = [torch.tensor([1, 2]), torch.tensor([1, 0]), 2, torch.tensor([1, 2])]  # an int: that agent of each seed
    for agent in steps:
        rows = (torch.arange(seeds) * agents + torch.as_tensor(agent)).tolist()
        ours.zero_grad()
        sum(((x @ weight[r] + bias[r]) ** 2).sum() for r in rows).backward()
        ours.step(agent)
        for r in rows:
            w, b = separate[r]
            theirs[r].zero_grad()
            ((x @ w + b) ** 2).sum().backward()
            theirs[r].step()
    for r in range(6):
        assert torch.equal(weight[r], separate[r][0]) and torch.equal(bias[r], separate[r][1]), r
    for r in (0, 4):  # agent 0 of seed 0 and agent 1 of seed 1 never stepped
        assert torch.equal(weight[r], initial[0][r]) and torch.equal(bias[r], initial[1][r]), r
    assert ours.state[0]["step"].tolist() == [0.0, 3.0, 1.0, 1.0, 0.0, 3.0]
