"""Mixers: how the agents' chosen utilities Q_a combine into the team's Q_tot (and QTRAN's joint networks).

Every mixer takes `qs [..., N]` (each agent's Q of its action) and the global state `[..., S]` and returns
`[...]`, batched over any leading dims (episodes and time). Sizes default to the PyMARL / official code
values, set by the methods' configs.

Seed batches (docs/architecture.md): built with `n_seeds` K, every layer is a `SeedLinear` holding K seeds' weights
and the leading dim of every input is seed-major (K equal blocks of episodes, block k seed k's, as the value-based
learner samples them); seed k's rows meet only seed k's weights. Products that contract a small dimension (QMIX's
`qs @ W_1`, Qatten's `keys . query`) are written as a product and a sum over that dimension, so every row is
reduced alike whatever the number of rows (a batched matrix-vector kernel may round a batch of seeds differently
from one seed). Reductions over everything (Qatten's regulariser) are per seed, `[K]`. Transcendental activations
go through `networks.lane_aligned` (seed k's rows rounded as alone, whatever the widths).

- `SumMixer`: VDN (Sunehag et al. 2018, eq. in sec. 3): Q_tot = sum_a Q_a.
- `QMixer`: QMIX (Rashid et al. 2018, sec. 4.3): a mixing network whose weights come from hypernetworks of
  the state, made non-negative by an absolute value, so dQ_tot/dQ_a >= 0 (monotonicity, eq. 5).
- `DuplexMixer`: QPLEX (Wang et al. 2021, sec. 3 and eq. 9-11): per-agent transformation Q_a -> w_a(s) Q_a +
  b_a(s) (w_a > 0; from hypernetworks, or from Qatten's attention as in QPLEX's SMAC runs), then
  Q_tot = sum_a V_a + sum_a lambda_a(s, u) A_a with A_a = Q_a - max Q_a <= 0 and
  lambda_a > 0 from a multi-head attention over (state, joint action): the joint argmax is the agents' own
  (IGM).
- `QTranJoint`: QTRAN-base (Son et al. 2019, sec. 3.2): joint action-value Q_jt(s, u) and state value
  V_jt(s) on the agents' hidden states (and actions) summed after a shared encoding (PyMARL's
  `qtran_paper` architecture).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from algorithms.blocks.networks import lane_aligned, seeded_affine


class SeedLinear(nn.Module):
    """`nn.Linear` for the K seeds of a seed batch: `weight [K, in, out]`, `bias [K, out]`, block k initialised as
    `nn.Linear(in, out)` initialises its own (kaiming-uniform weight, then the bias, from the global RNG: a batch of
    one starts from exactly torch's values). Inputs `[R, ..., in]` with R seed-major (K equal blocks of rows);
    seed k's rows meet seed k's weights only, in one baddbmm over the seeds. One output (or one input feature): a
    product and a sum, which round every row alike whatever the number of rows (`networks.AgentLinear`'s reason)."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, n_seeds: int = 1):
        super().__init__()
        self.n_seeds = n_seeds
        layers = [nn.Linear(in_features, out_features, bias=bias) for _ in range(n_seeds)]  # torch's init, in order
        self.weight = nn.Parameter(torch.stack([layer.weight.detach().t() for layer in layers]).contiguous())
        self.bias = nn.Parameter(torch.stack([layer.bias.detach() for layer in layers])) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lead, k = x.shape[:-1], self.n_seeds
        flat = x.reshape(k, -1, x.shape[-1])
        bias = None if self.bias is None else self.bias.unsqueeze(1)
        if self.weight.shape[-1] == 1:
            out = (flat * self.weight[..., 0].unsqueeze(1)).sum(-1, keepdim=True)
        elif flat.shape[-1] == 1:
            out = flat * self.weight
        else:  # one product per seed, rounded as alone whatever K (networks.seeded_affine)
            return seeded_affine(flat, self.weight, self.bias).view(*lead, -1)
        return (out if bias is None else out + bias).view(*lead, -1)


def mlp(in_features: int, hidden: int, out_features: int, layers: int, n_seeds: int = 1) -> nn.Module:
    """`layers` = 1: one linear map; 2: linear-ReLU-linear; 3: two hidden layers (PyMARL's hypernet_layers)."""
    if layers == 1:
        return SeedLinear(in_features, out_features, n_seeds=n_seeds)
    widths = [in_features] + [hidden] * (layers - 1)
    modules: list[nn.Module] = []
    for i, o in zip(widths[:-1], widths[1:], strict=True):
        modules += [SeedLinear(i, o, n_seeds=n_seeds), nn.ReLU()]
    return nn.Sequential(*modules, SeedLinear(widths[-1], out_features, n_seeds=n_seeds))


class SumMixer(nn.Module):
    """VDN: Q_tot = sum_a Q_a (no parameters, no state)."""

    def forward(self, qs: torch.Tensor, state: torch.Tensor | None = None) -> torch.Tensor:
        return qs.sum(-1)


class QMixer(nn.Module):
    """QMIX's monotonic mixing network (Rashid et al. 2018, sec. 4.3 and Fig. 2a; PyMARL's QMixer).

    Q_tot = W_2^T elu(W_1^T Q + b_1) + V(s), W_1 = |hyper_w_1(s)| [N x E], W_2 = |hyper_w_final(s)| [E],
    b_1 = hyper_b_1(s), V(s) a 2-layer network. Non-negative weights and a monotonic activation: Q_tot is
    monotonic in every Q_a (eq. 5)."""

    def __init__(self, n_agents: int, state_dim: int, embed_dim: int = 32, hypernet_layers: int = 2,
                 hypernet_embed: int = 64, n_seeds: int = 1):
        super().__init__()
        self.n_agents, self.embed_dim = n_agents, embed_dim
        self.hyper_w_1 = mlp(state_dim, hypernet_embed, embed_dim * n_agents, hypernet_layers, n_seeds)
        self.hyper_w_final = mlp(state_dim, hypernet_embed, embed_dim, hypernet_layers, n_seeds)
        self.hyper_b_1 = SeedLinear(state_dim, embed_dim, n_seeds=n_seeds)
        self.V = nn.Sequential(SeedLinear(state_dim, embed_dim, n_seeds=n_seeds), nn.ReLU(),
                               SeedLinear(embed_dim, 1, n_seeds=n_seeds))

    def forward(self, qs: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        lead = qs.shape[:-1]
        # The updates pass time slices of the batch's states (s_t, s_{t+1}), strided views: one copy here, not one
        # per hypernetwork (each Linear would otherwise copy or batch it); the same values and gradients, bitwise.
        state = state.contiguous()
        w_1 = self.hyper_w_1(state).abs().view(*lead, self.n_agents, self.embed_dim)
        hidden = lane_aligned(F.elu, (qs.unsqueeze(-1) * w_1).sum(-2) + self.hyper_b_1(state))  # Q^T W_1 + b_1
        w_final = self.hyper_w_final(state).abs()  # [..., E]
        return (hidden * w_final).sum(-1) + self.V(state).squeeze(-1)


class HyperTransformation(nn.Module):
    """QPLEX's transformation weights from hypernetworks of the state (official `DMAQer`, mixer "dmaq"):
    w_a(s) = |MLP(s)|_a + 1e-10, b_a(s) = MLP(s)_a."""

    def __init__(self, n_agents: int, state_dim: int, hypernet_embed: int = 64, n_seeds: int = 1):
        super().__init__()
        self.n_seeds = n_seeds
        self.hyper_w_final = mlp(state_dim, hypernet_embed, n_agents, 2, n_seeds)
        self.V = mlp(state_dim, hypernet_embed, n_agents, 2, n_seeds)

    def forward(self, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """-> w `[..., N]`, b `[..., N]`, the regulariser to add to each seed's loss (none here), `[K]`."""
        return self.hyper_w_final(state).abs() + 1e-10, self.V(state), state.new_zeros(self.n_seeds)


class QattenTransformation(nn.Module):
    """QPLEX's transformation weights from Qatten's attention (official `Qatten_Weight`, mixer "dmaq_qatten",
    the SMAC configuration): w_a(s) = sum_h softmax_a(q_h(s) . k_h(x_a) / sqrt(E)) with x_a the first `unit_dim`
    state features of agent a, b_a(s) = V(s) / N; the squared attention logits are regularised (coefficient
    `attend_reg_coef`). Without the official code's options off by default (weighted heads, nonlinear keys,
    masking the dead)."""

    def __init__(self, n_agents: int, state_dim: int, unit_dim: int, n_heads: int = 4, embed_dim: int = 32,
                 hypernet_embed: int = 64, attend_reg_coef: float = 0.001, n_seeds: int = 1):
        super().__init__()
        self.n_agents, self.unit_dim, self.embed_dim, self.n_seeds = n_agents, unit_dim, embed_dim, n_seeds
        self.attend_reg_coef = attend_reg_coef
        self.selectors = nn.ModuleList(nn.Sequential(SeedLinear(state_dim, hypernet_embed, n_seeds=n_seeds), nn.ReLU(),
                                                     SeedLinear(hypernet_embed, embed_dim, False, n_seeds))
                                       for _ in range(n_heads))
        self.keys = nn.ModuleList(SeedLinear(unit_dim, embed_dim, False, n_seeds) for _ in range(n_heads))
        self.V = nn.Sequential(SeedLinear(state_dim, embed_dim, n_seeds=n_seeds), nn.ReLU(),
                               SeedLinear(embed_dim, 1, n_seeds=n_seeds))

    def forward(self, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        units = state[..., :self.unit_dim * self.n_agents].unflatten(-1, (self.n_agents, self.unit_dim))
        weights, regulariser = 0, state.new_zeros(self.n_seeds)
        for selector, key in zip(self.selectors, self.keys, strict=True):
            logits = (key(units) * selector(state).unsqueeze(-2)).sum(-1)  # key_a . query per agent, [..., N]
            weights = weights + torch.softmax(logits / self.embed_dim ** 0.5, dim=-1)
            regulariser = regulariser + logits.pow(2).reshape(self.n_seeds, -1).mean(1)  # each seed's own mean
        b = (self.V(state) / self.n_agents).expand(*state.shape[:-1], self.n_agents)
        return weights + 1e-10, b, self.attend_reg_coef * regulariser


class DuplexMixer(nn.Module):
    """QPLEX's duplex dueling mixer (Wang et al. 2021; the official `DMAQer` / `DMAQ_QattenMixer` with
    `DMAQ_SI_Weight`).

    Transformation (eq. 9): Q_a <- w_a(s) Q_a + b_a(s), w_a > 0, likewise V_a = w_a max_u Q_a + b_a
    (`transformation`: `HyperTransformation` or `QattenTransformation`). Duplex dueling (eq. 10-11):
    Q_tot = sum_a Q_a + sum_a (lambda_a(s, u) - 1) A_a, A_a = Q_a - V_a <= 0, written as the official code does
    (is_minus_one), so that the advantage term trains only lambda (A_a is detached in it);
    lambda_a = sum_k (|key_k(s)| + 1e-10) sigmoid(agents_k(s))_a sigmoid(action_k(s, u))_a over `n_heads`."""

    def __init__(self, n_agents: int, n_actions: int, state_dim: int, transformation: nn.Module, n_heads: int = 4,
                 adv_hypernet_layers: int = 1, adv_hypernet_embed: int = 64, n_seeds: int = 1):
        super().__init__()
        self.transformation = transformation  # built with the same n_seeds
        state_action = state_dim + n_agents * n_actions
        layers, embed = adv_hypernet_layers, adv_hypernet_embed
        self.key = nn.ModuleList(mlp(state_dim, embed, 1, layers, n_seeds) for _ in range(n_heads))
        self.agents = nn.ModuleList(mlp(state_dim, embed, n_agents, layers, n_seeds) for _ in range(n_heads))
        self.action = nn.ModuleList(mlp(state_action, embed, n_agents, layers, n_seeds) for _ in range(n_heads))

    def lambdas(self, state: torch.Tensor, actions_onehot: torch.Tensor) -> torch.Tensor:
        """lambda_a(s, u) > 0, `[..., N]` (the official DMAQ_SI_Weight)."""
        state_action = torch.cat([state, actions_onehot.flatten(-2)], dim=-1)
        weights = 0
        for key, agents, action in zip(self.key, self.agents, self.action, strict=True):
            weights = weights + (key(state).abs() + 1e-10) * lane_aligned(torch.sigmoid, agents(state)) \
                * lane_aligned(torch.sigmoid, action(state_action))
        return weights

    def forward(self, qs: torch.Tensor, state: torch.Tensor, max_qs: torch.Tensor,
                actions_onehot: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """`qs` the agents' Q of the actions `actions_onehot [..., N, A]`, `max_qs` their max over actions ->
        Q_tot `[...]` and the transformation's regulariser (one per seed, `[K]`, to add to the seeds' losses)."""
        w, b, regulariser = self.transformation(state)
        q, v = w * qs + b, w * max_qs + b
        advantage = (q - v).detach()
        return q.sum(-1) + ((self.lambdas(state, actions_onehot) - 1.0) * advantage).sum(-1), regulariser


class QTranJoint(nn.Module):
    """QTRAN-base's joint networks (Son et al. 2019, sec. 3.2; PyMARL's QTranBase, `qtran_paper` architecture).

    Q_jt(s, u) = MLP([s, sum_a enc([h_a, onehot(u_a)])]) and V_jt(s) = MLP([s, sum_a enc_h(h_a)]), the
    encoders shared between agents, the MLPs with two hidden layers of `embed_dim`."""

    def __init__(self, n_actions: int, state_dim: int, hidden_size: int, embed_dim: int = 64, n_seeds: int = 1):
        super().__init__()
        ae, h = hidden_size + n_actions, hidden_size
        self.action_encoding = nn.Sequential(SeedLinear(ae, ae, n_seeds=n_seeds), nn.ReLU(),
                                             SeedLinear(ae, ae, n_seeds=n_seeds))
        self.hidden_encoding = nn.Sequential(SeedLinear(h, h, n_seeds=n_seeds), nn.ReLU(),
                                             SeedLinear(h, h, n_seeds=n_seeds))
        self.Q = mlp(state_dim + ae, embed_dim, 1, 3, n_seeds)
        self.V = mlp(state_dim + hidden_size, embed_dim, 1, 3, n_seeds)

    def forward(self, state: torch.Tensor, hidden: torch.Tensor,
                actions_onehot: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """`state [..., S]`, `hidden [..., N, H]`, `actions_onehot [..., N, A]` -> Q_jt `[...]`, V_jt `[...]`."""
        joint = self.action_encoding(torch.cat([hidden, actions_onehot], dim=-1)).sum(-2)
        q = self.Q(torch.cat([state, joint], dim=-1)).squeeze(-1)
        v = self.V(torch.cat([state, self.hidden_encoding(hidden).sum(-2)], dim=-1)).squeeze(-1)
        return q, v
