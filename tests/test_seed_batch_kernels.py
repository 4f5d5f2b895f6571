"""The kernels a seed batch relies on to compute each seed as its solo run does, bitwise on CPU, at the sizes real runs
reach (the seed-batch tests of the families train small networks on small batches; these check the parts whose
rounding depends on the batch's shape at large sizes):

- `networks.seeded_affine`: forward and every gradient of seed k of K equal to the K = 1 computation, for long
  contractions (thousands of rows: a minibatch of 32 copies x 64 steps x 10 agents), where MKL's batched gemm rounds
  a batch of several matrices differently from one;
- `networks.seed_dim_moved`: on a time-first layout `[L, K, ...]`, a broadcast parameter's and a bias's gradients
  per seed equal the solo run's;
- `seed_batch.join` keeps a field expanded over agents (a team reward `[B]` seen as `[B, N]`) expanded, so its mean
  over agents rounds as in the solo run.
"""

import pytest
import torch

from algorithms.blocks.networks import AgentLinear, GaussianHead, seed_dim_moved, seeded_affine
from environments.base import TimeStep
from environments.seed_batch import join, split

K = 3


def _affine(x, weight, bias, upstream):
    """seeded_affine's output and the gradients of (output * upstream).sum() w.r.t. x, weight, bias."""
    leaves = [t.detach().clone().requires_grad_(True) for t in (x, weight, bias)]
    out = seeded_affine(*leaves)
    (out * upstream).sum().backward()
    return out.detach(), [leaf.grad for leaf in leaves]


@pytest.mark.parametrize(("rows", "inputs", "outputs"), [(30, 12, 12), (3000, 40, 12), (5003, 64, 64), (4096, 7, 1),
                                                         (2048, 1, 16)])
def test_seeded_affine_rounds_each_seed_as_alone_at_any_size(rows, inputs, outputs):
    torch.manual_seed(0)
    x, weight, bias = torch.randn(K, rows, inputs), torch.randn(K, inputs, outputs), torch.randn(K, outputs)
    upstream = torch.randn(K, rows, outputs)
    out, grads = _affine(x, weight, bias, upstream)
    for k in range(K):
        one = slice(k, k + 1)
        alone_out, alone_grads = _affine(x[one], weight[one], bias[one], upstream[one])
        assert torch.equal(out[one], alone_out)
        for batch_grad, alone_grad in zip(grads, alone_grads, strict=True):
            assert torch.equal(batch_grad[one], alone_grad)


def test_seeded_affine_is_twice_differentiable():
    """HATRPO's Fisher-vector products differentiate the gradient of the policy network again."""
    torch.manual_seed(0)
    x = torch.randn(2, 50, 6)
    weight = torch.randn(2, 6, 4, requires_grad=True)
    bias = torch.randn(2, 4, requires_grad=True)
    (grad_w,) = torch.autograd.grad(seeded_affine(x, weight, bias).pow(2).sum(), weight, create_graph=True)
    vector = torch.randn_like(weight)
    (hvp,) = torch.autograd.grad((grad_w * vector).sum(), weight)
    expected = torch.autograd.functional.hvp(lambda w: torch.baddbmm(bias.detach().unsqueeze(1), x, w).pow(2).sum(),
                                             weight.detach(), vector)[1]
    torch.testing.assert_close(hvp, expected)


def _time_first_grads(build, inputs: torch.Tensor, upstream: torch.Tensor) -> dict[str, torch.Tensor]:
    """Parameter gradients of a seeded module on a time-first sequence `inputs [L, K, M, N, D]` (the recurrent
    minibatch layout), the upstream gradient reaching it as a slice of a wider tensor (as `cat(mean, log_std)`'s)."""
    torch.manual_seed(0)
    module, apply = build(inputs.shape[1])
    out = apply(inputs)
    wide = torch.cat([out, out.detach()], dim=-1)
    (wide * torch.cat([upstream, upstream], dim=-1)).sum().backward()
    return {name: p.grad.clone() for name, p in module.named_parameters()}


def _value_head(n_seeds):
    head = AgentLinear(1, 5, 1, n_seeds=n_seeds)
    return head, head


def _gaussian_head(n_seeds):
    head = GaussianHead(1, 5, 1, n_seeds=n_seeds)
    return head, lambda features: head.params(features, None)[..., 1:]  # the log-std part


@pytest.mark.parametrize("build", [_value_head, _gaussian_head], ids=["value head", "gaussian log-std"])
def test_a_time_first_sequence_reduces_each_seeds_gradients_as_alone(build):
    torch.manual_seed(0)
    inputs, upstream = torch.randn(16, K, 8, 2, 5), torch.randn(16, K, 8, 2, 1)  # [L, K, M, N, ...]
    batch = _time_first_grads(build, inputs, upstream)
    for k in range(K):
        one = slice(k, k + 1)
        alone = _time_first_grads(build, inputs[:, one], upstream[:, one])
        for name, grad in alone.items():  # parameters are seed-major: seed k's rows are block k
            assert torch.equal(batch[name].view(K, -1)[k], grad.view(-1)), name


def test_seed_dim_moved_is_a_plain_movedim_forward():
    x = torch.randn(K, 4, 5)
    assert torch.equal(seed_dim_moved(x, 1), x.movedim(0, 1))
    assert seed_dim_moved(x, 0) is x


def _timestep(team_reward: torch.Tensor, n_agents: int) -> TimeStep:
    b = team_reward.shape[0]
    no = torch.zeros(b, dtype=torch.bool)
    obs, state = torch.zeros(b, n_agents, 2), torch.zeros(b, 3)
    return TimeStep(obs, state, None, team_reward.unsqueeze(1).expand(-1, n_agents), no, no, obs, state,
                    torch.zeros(b), torch.zeros(b), {})


def test_join_keeps_a_team_reward_expanded_over_agents_so_its_mean_rounds_as_alone():
    torch.manual_seed(0)
    parts = [_timestep(torch.randn(1) * 1e3 + 0.1, 10) for _ in range(K)]
    joined = join(parts)
    assert joined.reward.shape == (K, 10) and joined.reward.stride(1) == 0
    for k, part in enumerate(split(joined, K)):
        assert torch.equal(part.reward.mean(-1), parts[k].reward.mean(-1))
        assert torch.equal(joined.reward.mean(-1)[k:k + 1], parts[k].reward.mean(-1))
    assert torch.equal(join([_timestep(torch.ones(2), 3), _timestep(torch.zeros(2), 3)]).obs, torch.zeros(4, 3, 2))
