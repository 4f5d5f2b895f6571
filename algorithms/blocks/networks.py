"""Networks batched over agents: MLP and GRU torsos, policy heads, critics.

Every layer holds one weight matrix per parameter group: one group when agents share parameters,
one per agent otherwise. Inputs are `[..., N, features]`; a single batched matmul serves all
agents, so there is no Python loop over agents on the hot path. Methods that update agents one at
a time (HAPPO, HATRPO) pass `agent=i` and inputs `[..., features]` of that agent alone: only its
weights are used, so its update costs one agent's compute, not N agents'. In a seed batch `agent` may be a `[K]`
tensor, one agent per seed (each seed's own random agent order): seed k's rows meet agent `agent[k]`'s weights.

Seed batches (docs/architecture.md): built with `n_seeds` K, every layer holds K blocks of groups (groups become
seeds x agents) and inputs gain a seed dimension before the batch one, `[..., K, M, N, features]`; seed k's rows
only ever meet seed k's weights, so seed k computes what it would alone.

A torso carries a memory `[..., N, H]` (H = 0 for feed-forward torsos), and a `starts` flag per
batch entry that clears the memory before an episode's first input.
"""

from __future__ import annotations

import math

import torch
from torch import nn

ACTIVATIONS = {"relu": torch.relu, "tanh": torch.tanh, "elu": torch.nn.functional.elu}


class _SeededAffine(torch.autograd.Function):
    """`x [K, R, in] @ weight [K, in, out] (+ bias [K, 1, out])`: one baddbmm over the seeds forward, and backward
    the same products autograd takes, except the weight gradient: one bmm per seed, of one matrix. Why: that
    gradient contracts the R rows, and MKL's batched gemm rounds a long contraction differently for a batch of K >= 2
    matrices than for one, from about a thousand rows on (LAN-mean's batch seeds drifted from their solo runs by
    ~1e-8 on gridworld/as-exchange); one matrix at a time is exactly the solo run's call (autograd's baddbmm backward
    with K = 1). A solo run does not come here: this Python function costs ~30 us a layer more than autograd's own.
    The input gradient and the forward contract the features only: one bmm agrees bitwise.
    Differentiable twice (HATRPO's Fisher-vector products): the backward is made of differentiable ops."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None
        return torch.bmm(x, weight) if bias is None else torch.baddbmm(bias, x, weight)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        x, weight = ctx.saved_tensors
        grad_x = grad_weight = grad_bias = None
        if ctx.needs_input_grad[0]:
            grad_x = torch.bmm(grad, weight.transpose(1, 2))
        if ctx.needs_input_grad[1]:
            x_t = x.transpose(1, 2)  # autograd's own product, one seed's matrix at a time
            grad_weight = torch.cat([torch.bmm(x_t[k:k + 1], grad[k:k + 1]) for k in range(x.shape[0])])
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_bias = grad.sum(1, keepdim=True)
        return grad_x, grad_weight, grad_bias


def seeded_affine(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """Each seed's rows against its own weights, `x [K, R, in]`, `weight [K, in, out]`, `bias [K, out]` or None ->
    `[K, R, out]`, rounded as the seed's solo run rounds them whatever K (forward and backward; `_SeededAffine`).
    One input feature or one output: a broadcast product (and a sum over the features): bmm's vector-matrix and
    matrix-vector kernels round K seeds differently from one; the product and sum round every row alike."""
    if x.shape[-1] == 1 or weight.shape[-1] == 1:
        out = x * weight if x.shape[-1] == 1 else (x * weight[..., 0].unsqueeze(1)).sum(-1, keepdim=True)
        return out if bias is None else out + bias.unsqueeze(1)
    bias = None if bias is None else bias.unsqueeze(1)
    if x.shape[0] == 1:  # a solo run: autograd's own baddbmm (its weight gradient is `_SeededAffine`'s per seed)
        return torch.bmm(x, weight) if bias is None else torch.baddbmm(bias, x, weight)
    return _SeededAffine.apply(x, weight, bias)


class AgentLinear(nn.Module):
    """One weight matrix per group. With `n_seeds` K (a seed batch, docs/architecture.md "Seed batches") it holds
    K blocks of groups, `weight [K*G, in, out]` seed-major (block k is seed k's layer as a solo run holds it), and
    inputs carry a seed dimension before the batch and agent ones: `[..., K, M, N, in]` (`[..., K, M, in]` with
    `agent=i`). Without `n_seeds` (None) inputs have no seed dimension, as before."""

    def __init__(self, n_groups: int, in_features: int, out_features: int, gain: float = math.sqrt(2),
                 n_seeds: int | None = None):
        super().__init__()
        self.n_seeds = n_seeds
        self.n_groups = n_groups
        self.weight = nn.Parameter(torch.empty((n_seeds or 1) * n_groups, in_features, out_features))
        self.bias = nn.Parameter(torch.zeros((n_seeds or 1) * n_groups, out_features))
        for w in self.weight:  # init only: one orthogonal matrix per group
            nn.init.orthogonal_(w, gain=gain)

    def forward(self, x: torch.Tensor, agent: int | torch.Tensor | None = None) -> torch.Tensor:
        if self.n_seeds is not None:
            return self._seeded(x, agent)
        if self.weight.shape[0] == 1 or agent is not None:  # one matrix: one matmul over every leading dim
            group = 0 if self.weight.shape[0] == 1 else agent
            return x @ self.weight[group] + self.bias[group]
        # Per agent: einsum lowers to one bmm batched over agents. (A broadcast `x[..., None, :] @ W`
        # would materialize a weight gradient per sample and is ~5x slower in backward.)
        return torch.einsum("...ni,nio->...no", x, self.weight) + self.bias

    def _seeded(self, x: torch.Tensor, agent: int | torch.Tensor | None) -> torch.Tensor:
        k, g = self.n_seeds, self.n_groups
        if g == 1 and agent is None and self.weight.shape[-1] > 1 and x.shape[-1] > 1 and x.dim() == 4:
            # The common case, acting with one matrix per seed on `[K, B, N, in]` (seed first): the branch below
            # with its views and indexing folded away (the same baddbmm on the same numbers; ~3x fewer Python ops)
            out = seeded_affine(x.reshape(k, -1, x.shape[-1]), self.weight, self.bias)
            return out.view(*x.shape[:-1], -1)
        weight, bias = self.weight.view(k, g, *self.weight.shape[1:]), self.bias.view(k, g, -1)
        seed_dim = x.dim() - (3 if agent is not None else 4)
        xk = x.movedim(seed_dim, 0)  # [K, ..., (N,) in]: each seed's rows against its own weights
        if weight.shape[-1] == 1:  # a value head: a product and a sum over features, see below
            return seed_dim_moved(self._seeded_dot(xk, weight[..., 0], bias, agent), seed_dim)
        if g == 1 or agent is not None:  # one matrix per seed: one bmm over the seeds
            group = 0 if g == 1 else agent
            flat = xk.reshape(k, -1, xk.shape[-1])
            out = seeded_affine(flat, seed_group(weight, group), seed_group(bias, group))
        else:  # one matrix per seed and agent: one bmm over seeds x agents (einsum lowers it)
            flat = xk.reshape(k, -1, g, xk.shape[-1])
            out = torch.einsum("kmni,knio->kmno", flat, weight) + bias.unsqueeze(1)
        return out.reshape(*xk.shape[:-1], -1).movedim(0, seed_dim)

    def _seeded_dot(self, xk: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor,
                    agent: int | torch.Tensor | None) -> torch.Tensor:
        """One output (`weight [K, G, in]`): bmm's matrix-vector kernels round a batch of seeds differently from one
        seed, so seed k's values would differ from its solo run's in the last bit; a product and a sum over the
        features rounds each row alike whatever K."""
        k, g = self.n_seeds, self.n_groups
        if g == 1 or agent is not None:
            group = 0 if g == 1 else agent
            flat = xk.reshape(k, -1, xk.shape[-1])
            out = ((flat * seed_group(weight, group).unsqueeze(1)).sum(-1, keepdim=True)
                   + seed_group(bias, group).unsqueeze(1))
        else:
            flat = xk.reshape(k, -1, g, xk.shape[-1])
            out = (flat * weight.unsqueeze(1)).sum(-1, keepdim=True) + bias.unsqueeze(1)
        return out.reshape(*xk.shape[:-1], 1)


def seed_group(t: torch.Tensor, group: int | torch.Tensor) -> torch.Tensor:
    """`t [K, G, ...]`'s group `group` of every seed (an int), or group `group[k]` of seed k (a `[K]` tensor), by
    index: `[K, ...]`."""
    if isinstance(group, torch.Tensor):
        return t[torch.arange(t.shape[0], device=t.device), group]
    return t[:, group]


def agent_rows(x: torch.Tensor, agent: int | torch.Tensor, dim: int = -2) -> torch.Tensor:
    """`x`'s entries of agent `agent` along its agent dimension `dim`: the same agent everywhere (an int), or in a
    seed batch agent `agent[k]` for seed k (a `[K]` tensor; the seed dimension is two before the agent one,
    `[..., K, S, N, ...]`), gathered by index."""
    if not isinstance(agent, torch.Tensor):
        return x.select(dim, agent)
    dim %= x.dim()
    shape = [1] * x.dim()
    shape[dim - 2] = -1
    index = agent.view(shape).expand(*x.shape[:dim], 1, *x.shape[dim + 1:])
    return x.gather(dim, index).squeeze(dim)


class AgentMLP(nn.Module):
    """Hidden layers, each followed by the activation (no output layer: heads add their own)."""

    def __init__(self, n_groups: int, in_features: int, hidden_sizes: list[int], activation: str = "relu",
                 n_seeds: int | None = None):
        super().__init__()
        widths = [in_features, *hidden_sizes]
        self.layers = nn.ModuleList(AgentLinear(n_groups, i, o, n_seeds=n_seeds)
                                    for i, o in zip(widths[:-1], widths[1:], strict=True))
        self.activation = ACTIVATIONS[activation]
        self.out_features = widths[-1]

    def forward(self, x: torch.Tensor, agent: int | torch.Tensor | None = None) -> torch.Tensor:
        for layer in self.layers:
            x = self.activation(layer(x, agent))
        return x


class AgentGRUCell(nn.Module):
    """`torch.nn.GRUCell`'s equations with one weight set per group (tests check it against torch's)."""

    def __init__(self, n_groups: int, in_features: int, hidden_size: int, n_seeds: int | None = None):
        super().__init__()
        self.input_gates = AgentLinear(n_groups, in_features, 3 * hidden_size, gain=1.0, n_seeds=n_seeds)
        self.hidden_gates = AgentLinear(n_groups, hidden_size, 3 * hidden_size, gain=1.0, n_seeds=n_seeds)

    def forward(self, x: torch.Tensor, h: torch.Tensor, agent: int | torch.Tensor | None = None) -> torch.Tensor:
        i_r, i_z, i_n = self.input_gates(x, agent).chunk(3, dim=-1)
        h_r, h_z, h_n = self.hidden_gates(h, agent).chunk(3, dim=-1)
        reset = torch.sigmoid(i_r + h_r)
        update = torch.sigmoid(i_z + h_z)
        candidate = torch.tanh(i_n + reset * h_n)
        return candidate + update * (h - candidate)  # (1 - z) * n + z * h


def _clear(memory: torch.Tensor, starts: torch.Tensor) -> torch.Tensor:
    """Zero the memory of batch entries whose episode starts here (`starts` is `[batch]`)."""
    keep = (~starts).to(memory.dtype)
    return memory * keep.view(*keep.shape, *([1] * (memory.dim() - keep.dim())))


class Torso(nn.Module):
    """An MLP over each agent's input, optionally followed by a GRU (recurrent policies and critics)."""

    def __init__(self, n_groups: int, in_features: int, hidden_sizes: list[int], activation: str,
                 rnn_hidden_size: int | None = None, n_seeds: int | None = None):
        super().__init__()
        self.mlp = AgentMLP(n_groups, in_features, hidden_sizes, activation, n_seeds)
        self.gru = AgentGRUCell(n_groups, self.mlp.out_features, rnn_hidden_size, n_seeds) if rnn_hidden_size else None
        self.memory_size = rnn_hidden_size or 0
        self.out_features = rnn_hidden_size or self.mlp.out_features

    def forward(self, x: torch.Tensor, memory: torch.Tensor, starts: torch.Tensor,
                agent: int | torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """One time step: `x [B, (N,) D]`, `memory [B, (N,) H]`, `starts [B]` -> features, next memory."""
        features = self.mlp(x, agent)
        if self.gru is None:
            return features, memory
        memory = self.gru(features, _clear(memory, starts), agent)
        return memory, memory

    def unroll(self, x: torch.Tensor, memory: torch.Tensor, starts: torch.Tensor,
               agent: int | torch.Tensor | None = None) -> torch.Tensor:
        """Sequences, time first: `x [L, S, (N,) D]` from `memory [S, (N,) H]`, `starts [L, S]` -> `[L, S, (N,) F]`.

        Back-propagation runs through the whole chunk of L steps (chunked BPTT, as MAPPO's
        recurrent policies); the memory at the chunk's first step is the one stored at collection.
        """
        features = self.mlp(x, agent)
        if self.gru is None:
            return features
        outputs = []
        # unbind, not features[t]: the backward of L selects would fill L full-size zero gradients (O(L^2): 3x the
        # whole update of a 500-step episode batch); unbind's is one stack. Same values either way.
        for step, start in zip(features.unbind(0), starts.unbind(0), strict=True):
            memory = self.gru(step, _clear(memory, start), agent)
            outputs.append(memory)
        return torch.stack(outputs)


def masked_logits(logits: torch.Tensor, avail_actions: torch.Tensor | None) -> torch.Tensor:
    if avail_actions is None:
        return logits
    # A large finite negative rather than -inf keeps log_softmax and entropy free of NaN.
    return logits.masked_fill(~avail_actions, -1e9)


class CategoricalHead(nn.Module):
    """pi(a | features) over discrete actions; its distribution parameters are the log-probabilities.

    The output layer starts near zero, so the initial policy is (near) uniform.
    """

    def __init__(self, n_groups: int, in_features: int, n_actions: int, n_seeds: int | None = None):
        super().__init__()
        self.linear = AgentLinear(n_groups, in_features, n_actions, gain=0.01, n_seeds=n_seeds)

    def params(self, features, avail_actions, agent: int | torch.Tensor | None = None) -> torch.Tensor:
        return torch.log_softmax(masked_logits(self.linear(features, agent), avail_actions), dim=-1)

    @staticmethod
    def sample(params: torch.Tensor, deterministic: bool, noise: torch.Tensor | None = None) -> torch.Tensor:
        """The greedy action, or a sample: from the global RNG, or, given `noise` (uniforms shaped like `params`,
        drawn from the run's own stream), by the Gumbel-max trick, argmax(log p - log(-log u)): exact, one
        argmax, and masked actions (log p ~ -1e9) are never drawn."""
        if deterministic:
            return params.argmax(-1)
        if noise is not None:
            return (params - (-noise.log()).log()).argmax(-1)
        flat = params.reshape(-1, params.shape[-1]).exp()
        return torch.multinomial(flat, 1).view(params.shape[:-1])

    @staticmethod
    def noise(params: torch.Tensor, streams) -> torch.Tensor:
        """What `sample` needs from the run's streams for acting on `params [K, B, N, A]`: a uniform per action."""
        return streams.uniform(params.shape[1:])

    @staticmethod
    def log_prob(params: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        return params.gather(-1, actions.unsqueeze(-1)).squeeze(-1)

    @staticmethod
    def entropy(params: torch.Tensor) -> torch.Tensor:
        return -(params.exp() * params).sum(-1)

    @staticmethod
    def kl(old: torch.Tensor, new: torch.Tensor) -> torch.Tensor:
        """KL(old || new) per sample."""
        return (old.exp() * (old - new)).sum(-1)


class _ContiguousGrad(torch.autograd.Function):
    """The identity, whose gradient is made contiguous (see `seed_dim_moved`)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        return grad.contiguous()


def seed_dim_moved(x: torch.Tensor, seed_dim: int) -> torch.Tensor:
    """A seed-first result `x [K, ...]` with its seed dim moved to `seed_dim` (a time-first sequence `[L, K, ...]`),
    its gradient made contiguous seed first before it reaches `x`'s reductions. Why: a reduction of the gradient
    (a bias's, a broadcast parameter's) runs in the memory order of the incoming gradient, which a time-first layout
    gives as a strided view for one seed (the dims coalesce) and a copy for several: one seed's rows are then summed
    with another stride or as a two-level reduction, and seed k of a batch drifts from its solo run in the last bits
    (a recurrent Gaussian policy's log-std and one-output head bias: ~1e-11 an update). Contiguous and seed first,
    each seed's rows are reduced by the same kernel as alone, whatever K."""
    return x if seed_dim == 0 else _ContiguousGrad.apply(x).movedim(0, seed_dim)


class GaussianHead(nn.Module):
    """Diagonal Gaussian over continuous actions; its parameters are `cat(mean, log_std)`.

    The log-std is a free parameter per group (state-independent, as in MAPPO) or a second output
    (state-dependent). Samples are not squashed: the environment clips them to its action box,
    and log-probabilities are those of the unclipped sample, as in MAPPO/HAPPO's implementations.
    """

    LOG_STD_RANGE = (-20.0, 2.0)

    def __init__(self, n_groups: int, in_features: int, action_dim: int, log_std_init: float = 0.0,
                 state_dependent_std: bool = False, n_seeds: int | None = None):
        super().__init__()
        self.action_dim = action_dim
        self.state_dependent_std = state_dependent_std
        self.n_seeds, self.n_groups = n_seeds, n_groups
        self.linear = AgentLinear(n_groups, in_features, 2 * action_dim if state_dependent_std else action_dim,
                                  gain=0.01, n_seeds=n_seeds)
        if state_dependent_std:
            with torch.no_grad():  # start at log_std_init: the std output's bias
                self.linear.bias[:, action_dim:] = log_std_init
        else:
            self.log_std = nn.Parameter(torch.full(((n_seeds or 1) * n_groups, action_dim), float(log_std_init)))

    def params(self, features, avail_actions, agent: int | torch.Tensor | None = None) -> torch.Tensor:
        out = self.linear(features, agent)
        if self.state_dependent_std:
            mean, log_std = out.split(self.action_dim, dim=-1)
        elif self.n_seeds is not None:  # [K*G, A] -> broadcast over [..., K, M, (N,) A]
            log_std = self.log_std.view(self.n_seeds, self.n_groups, self.action_dim)
            log_std = (log_std.unsqueeze(1) if agent is None
                       else seed_group(log_std, 0 if self.n_groups == 1 else agent).unsqueeze(1))
            seed_dim = out.dim() - log_std.dim()  # 0 when acting and on flat minibatches; 1 on time-first sequences
            if seed_dim == 0:
                log_std = log_std.expand_as(out)
            else:  # [K, 1, (G,) A] broadcast seed first, then moved: see `seed_dim_moved`
                seed_first = out.movedim(seed_dim, 0).shape
                log_std = log_std.view(log_std.shape[0], *[1] * seed_dim, *log_std.shape[1:]).expand(seed_first)
                log_std = seed_dim_moved(log_std, seed_dim)
            mean = out
        else:
            log_std = self.log_std if agent is None else self.log_std[0 if self.log_std.shape[0] == 1 else agent]
            mean, log_std = out, log_std.expand_as(out)
        return torch.cat([mean, log_std.clamp(*self.LOG_STD_RANGE)], dim=-1)

    def mean_log_std(self, params: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return params.split(self.action_dim, dim=-1)

    def sample(self, params: torch.Tensor, deterministic: bool, noise: torch.Tensor | None = None) -> torch.Tensor:
        """The mean, or mean + std * z with z standard normal: `noise` from the run's streams, else the global RNG."""
        mean, log_std = self.mean_log_std(params)
        if deterministic:
            return mean
        return mean + (torch.randn_like(mean) if noise is None else noise) * log_std.exp()

    def noise(self, params: torch.Tensor, streams) -> torch.Tensor:
        """What `sample` needs for acting on `params [K, B, N, 2A]`: a standard normal per action dimension."""
        return streams.normal((*params.shape[1:-1], self.action_dim))

    def log_prob(self, params: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        mean, log_std = self.mean_log_std(params)
        z = (actions - mean) * torch.exp(-log_std)
        return (-0.5 * z.pow(2) - log_std - 0.5 * math.log(2 * math.pi)).sum(-1)

    def entropy(self, params: torch.Tensor) -> torch.Tensor:
        return (self.mean_log_std(params)[1] + 0.5 * math.log(2 * math.pi * math.e)).sum(-1)

    def kl(self, old: torch.Tensor, new: torch.Tensor) -> torch.Tensor:
        """KL(old || new) per sample, summed over action dimensions."""
        (old_mean, old_log_std), (new_mean, new_log_std) = self.mean_log_std(old), self.mean_log_std(new)
        ratio_sq = torch.exp(2 * (old_log_std - new_log_std))
        mean_term = (old_mean - new_mean).pow(2) * torch.exp(-2 * new_log_std)
        return (new_log_std - old_log_std + 0.5 * (ratio_sq + mean_term - 1)).sum(-1)


class Actor(nn.Module):
    """A policy: torso (MLP or MLP+GRU) and a categorical or Gaussian head."""

    def __init__(self, torso: Torso, head: CategoricalHead | GaussianHead):
        super().__init__()
        self.torso, self.head = torso, head

    @property
    def memory_size(self) -> int:
        return self.torso.memory_size

    def step(self, inputs, avail_actions, memory, starts, deterministic: bool):
        """One step for every agent: actions, their log-probabilities, the next memory."""
        features, memory = self.torso(inputs, memory, starts)
        params = self.head.params(features, avail_actions)
        actions = self.head.sample(params, deterministic)
        return actions, self.head.log_prob(params, actions), memory

    def sequence_params(self, inputs, avail_actions, memory, starts,
                        agent: int | torch.Tensor | None = None) -> torch.Tensor:
        """Distribution parameters over stored sequences `[L, S, (N,) ...]` (see `Torso.unroll`)."""
        return self.head.params(self.torso.unroll(inputs, memory, starts, agent), avail_actions, agent)


class Critic(nn.Module):
    """V for every agent at once: `[..., N, in] -> [..., N]`."""

    def __init__(self, n_groups: int, torso: Torso, n_seeds: int | None = None):
        super().__init__()
        self.torso = torso
        self.value = AgentLinear(n_groups, torso.out_features, 1, gain=1.0, n_seeds=n_seeds)

    @property
    def memory_size(self) -> int:
        return self.torso.memory_size

    def step(self, inputs, memory, starts) -> tuple[torch.Tensor, torch.Tensor]:
        features, memory = self.torso(inputs, memory, starts)
        return self.value(features).squeeze(-1), memory

    def sequence_values(self, inputs, memory, starts) -> torch.Tensor:
        return self.value(self.torso.unroll(inputs, memory, starts)).squeeze(-1)


def with_agent_ids(x: torch.Tensor) -> torch.Tensor:
    """Append a one-hot agent id to `[..., N, D]` so shared parameters can still specialize."""
    n_agents = x.shape[-2]
    ids = torch.eye(n_agents, dtype=x.dtype, device=x.device).expand(*x.shape[:-1], n_agents)
    return torch.cat([x, ids], dim=-1)


def lane_aligned(fn, x: torch.Tensor, lanes: int = 64) -> torch.Tensor:
    """`fn(x)` for an elementwise `fn` with a transcendental kernel (sigmoid, tanh, elu, exp), rounded alike for every
    seed of a seed batch. torch's CPU kernels run a contiguous tensor in SIMD blocks and its last partial block
    through scalar code, whose exp/tanh round differently in the last bit; which elements fall in that block
    depends on the whole tensor's size, so seed k's rows of a batch could round unlike its solo run's. With the last
    dimension padded to a multiple of `lanes` (64 floats: whole blocks on AVX2 and AVX-512) every row, hence every
    seed's block, is whole blocks. No padding where the last dimension already is a multiple (the default widths)."""
    pad = -x.shape[-1] % lanes
    if pad == 0:
        return fn(x)
    return fn(torch.nn.functional.pad(x, (0, pad)))[..., :x.shape[-1]]
