"""Deterministic actors and Q critics for the off-policy family (DDPG: Lillicrap et al. 2016; MADDPG: Lowe et al.
2017; TD3: Fujimoto et al. 2018), batched over agents and critics.

- `DeterministicActor`: mu_i(x) for every agent in one batched matmul (one weight set per agent, or one shared),
  HARL's `DeterministicPolicy`: an MLP, a linear output layer (gain 0.01), tanh, scaled to the action box.
- `QEnsemble`: C critics (C = 2 for TD3's twin critics) in one batched matmul, `[..., D] -> [..., C]`.
- Exploration: Gaussian noise of `std` x half the box width, clipped to the box (HARL `expl_noise`).
- Target policy smoothing (TD3 sec. 5.3): clipped Gaussian noise on the target actions.
- Clipped double Q (TD3 sec. 4.2): the minimum of the twin target critics.
- Polyak averaging of every target network (`q_targets.soft_update`).

Seed batches (docs/architecture.md): built with `n_seeds` K (the off-policy members always pass it; K = 1 is a solo
run, on the same path), the networks hold K seeds' weights and take inputs whose first dimension is seed-major,
`[K * M, ...]` (copies when acting, samples when learning: K equal blocks); each seed's block meets only its own
weights, in kernels of its solo run's shape. Losses are per seed (`[K]`, every mean along the seed's own rows).
The noise functions take their standard draws from the caller (a part's `SeedStreams`, one generator per seed), so
seed k draws in a batch what it draws alone; without them they draw from the global torch RNG.
"""

from __future__ import annotations

import torch
from torch import nn

from algorithms.blocks.networks import ACTIVATIONS, AgentLinear, AgentMLP, lane_aligned


class DeterministicActor(nn.Module):
    """a = center + half_width * tanh(W h(x)) for every agent: `x [..., N, D] -> [..., N, A]` (or one agent's
    `[..., D]` with `agent=i`). With `n_seeds` K: `x [K * M, N, D] -> [K * M, N, A]` (`[K * M, D]` with `agent`, an
    int or a `[K]` tensor, one agent per seed)."""

    def __init__(self, n_groups: int, in_features: int, hidden_sizes: list[int], activation: str, action_dim: int,
                 low: float, high: float, n_seeds: int | None = None):
        super().__init__()
        self.n_seeds = n_seeds
        self.torso = seeded_mlp(n_groups, in_features, hidden_sizes, activation, n_seeds)
        self.out = AgentLinear(n_groups, self.torso.out_features, action_dim, gain=0.01, n_seeds=n_seeds)
        self.low, self.high = float(low), float(high)
        self.center, self.half_width = (self.high + self.low) / 2, (self.high - self.low) / 2

    def forward(self, x: torch.Tensor, agent: int | torch.Tensor | None = None) -> torch.Tensor:
        if self.n_seeds is None:
            return self.center + self.half_width * torch.tanh(self.out(self.torso(x, agent), agent))
        x = x.unflatten(0, (self.n_seeds, -1))  # [K, M, ...]: the layers' seed dimension
        # tanh through lane_aligned: its SIMD and scalar kernels round differently, see networks.lane_aligned
        squashed = lane_aligned(torch.tanh, self.out(self.torso(x, agent), agent))
        return (self.center + self.half_width * squashed).flatten(0, 1)


class QEnsemble(nn.Module):
    """`n_critics` independent critics Q_c(x) on the same input: `x [..., D] -> [..., n_critics]`."""

    def __init__(self, n_critics: int, in_features: int, hidden_sizes: list[int], activation: str,
                 n_seeds: int | None = None):
        super().__init__()
        self.n_critics, self.n_seeds = n_critics, n_seeds
        self.torso = seeded_mlp(n_critics, in_features, hidden_sizes, activation, n_seeds)
        self.out = AgentLinear(n_critics, self.torso.out_features, 1, gain=1.0, n_seeds=n_seeds)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.n_seeds is None:
            x = x.unsqueeze(-2).expand(*x.shape[:-1], self.n_critics, x.shape[-1])
            return self.out(self.torso(x)).squeeze(-1)
        lead = x.shape[:-1]  # [K * M, ...]: every seed's rows as one block `[K, R, critics, D]`
        x = x.reshape(self.n_seeds, -1, 1, x.shape[-1]).expand(self.n_seeds, -1, self.n_critics, x.shape[-1])
        return self.out(self.torso(x)).reshape(*lead, self.n_critics)

    def first(self, x: torch.Tensor) -> torch.Tensor:
        """Q_1 alone, `[..., D] -> [...]`: TD3's actor ascends the first critic only (Fujimoto et al. 2018, Alg. 1),
        so its pass skips the others' compute."""
        if self.n_seeds is None:
            return self.out(self.torso(x, 0), 0).squeeze(-1)
        lead = x.shape[:-1]
        return self.out(self.torso(x.reshape(self.n_seeds, -1, x.shape[-1]), 0), 0).reshape(lead)


def seeded_mlp(n_groups: int, in_features: int, hidden_sizes: list[int], activation: str,
               n_seeds: int | None) -> AgentMLP:
    """`AgentMLP`; in a seed batch a transcendental activation (tanh, elu) goes through `networks.lane_aligned`, so
    each seed's rows round as alone whatever the widths (relu is exact)."""
    mlp = AgentMLP(n_groups, in_features, hidden_sizes, activation, n_seeds)
    if n_seeds is not None and activation != "relu":
        fn = ACTIVATIONS[activation]
        mlp.activation = lambda x: lane_aligned(fn, x)
    return mlp


def seed_means(x: torch.Tensor, n_seeds: int) -> torch.Tensor:
    """Each seed's mean of `x [K * M, ...]` (seed-major), `[K]`: one reduction along each seed's contiguous row."""
    return x.reshape(n_seeds, -1).mean(1)


def summed_agent_means(q: torch.Tensor, n_seeds: int) -> torch.Tensor:
    """Per seed, the sum over agents of each agent's mean over the samples, `q [K * M, N] -> [K]` (MADDPG eq. 6's
    terms, one per agent, summed; each mean along a contiguous row of that seed and agent)."""
    n = q.shape[-1]
    # contiguous: for K = 1 a reshape of the transpose would be a strided view, which reduces in another order
    per_agent = q.reshape(n_seeds, -1, n).transpose(1, 2).contiguous().view(n_seeds * n, -1).mean(1)
    return per_agent.view(n_seeds, n).sum(1)


def explore(actions: torch.Tensor, std: float, low: float, high: float,
            normal: torch.Tensor | None = None) -> torch.Tensor:
    """Behaviour actions: mu + N(0, (std x half width)^2), clipped to the box (HARL DeterministicPolicy).
    `normal`: standard normals shaped like `actions` from the caller's streams (else the global RNG)."""
    noise = (torch.randn_like(actions) if normal is None else normal) * (std * (high - low) / 2)
    return (actions + noise).clamp(low, high)


def smooth_target(actions: torch.Tensor, noise: float, noise_clip: float, low: float, high: float,
                  normal: torch.Tensor | None = None) -> torch.Tensor:
    """TD3's target policy smoothing (sec. 5.3, eq. 14): a' = clip(mu'(s') + clip(eps, -c, c)), eps ~ N(0, sigma^2);
    sigma and c in units of the box's half width (HARL `policy_noise`, `noise_clip`). `normal`: the standard
    normals, shaped like `actions`, from the caller's streams (else the global RNG)."""
    half = (high - low) / 2
    normal = torch.randn_like(actions) if normal is None else normal
    eps = (normal * (noise * half)).clamp(-noise_clip * half, noise_clip * half)
    return (actions + eps).clamp(low, high)


def uniform_actions(shape: tuple[int, ...], low: float, high: float, device: torch.device,
                    uniforms: torch.Tensor | None = None) -> torch.Tensor:
    """Uniform over the box: the warm-up's random actions (HARL `warmup`: `action_space.sample()`). `uniforms`:
    U[0, 1) draws of `shape` from the caller's streams (else the global RNG)."""
    return low + (high - low) * (torch.rand(shape, device=device) if uniforms is None else uniforms)


def fusable(module: nn.Module, n_seeds: int, lanes: int = 64) -> list[bool]:
    """Which of `module`'s parameters Adam may step with torch's fused kernel (`blocks.adam.Adam(fused=...)`) and
    keep each seed of a batch bitwise its solo run: those whose per-seed block is whole SIMD blocks (a multiple of
    `lanes` floats, as `networks.lane_aligned`). The fused kernel's vector body and scalar tail round differently,
    and where a tensor's tail falls depends on its whole size, i.e. on K, unless each seed's block is whole blocks."""
    return [p.numel() % (n_seeds * lanes) == 0 for p in module.parameters()]


def clipped_double_q(q: torch.Tensor) -> torch.Tensor:
    """TD3 sec. 4.2: y = r + gamma min_{c=1,2} Q'_c(s', a'); the minimum over the last (critic) dim."""
    return q.min(-1).values


def critic_loss(q: torch.Tensor, targets: torch.Tensor, n_seeds: int) -> torch.Tensor:
    """Sum over critics of each one's mean squared error to the shared targets (HARL's critic_loss1 + critic_loss2),
    per seed: `q [K * M, ..., C]`, `targets [K * M, ...]` -> `[K]`.

    One critic at a time (C <= 2), each mean along a seed's contiguous row (`seed_means`): the gradient reaching the
    critics is then laid out as `q`, and the output bias's gradient (a sum over the samples) reduces each seed's
    block as its solo run does. (Means over a transposed `[K, C, M]` layout round that sum differently in a batch.)"""
    error = (q - targets.unsqueeze(-1)).pow(2)
    return sum(seed_means(error[..., c], n_seeds) for c in range(q.shape[-1]))


def with_action(joint: torch.Tensor, own: torch.Tensor) -> torch.Tensor:
    """For every agent i, the joint action with agent i's entry replaced by `own[..., i, :]` and the others' kept
    as given (detached): `joint, own [..., N, A] -> [..., N (whose), N, A]`. One critic pass then gives every
    agent's deterministic policy gradient at once (MADDPG eq. 6: other agents' actions from the sample)."""
    n = joint.shape[-2]
    eye = torch.eye(n, dtype=torch.bool, device=joint.device).unsqueeze(-1)  # [i, j, 1]: j == i
    return torch.where(eye, own.unsqueeze(-3), joint.detach().unsqueeze(-3))  # [..., i, j, A]


def centralized_input(state: torch.Tensor, joint: torch.Tensor) -> torch.Tensor:
    """A centralized critic's input Q(s, a_1..a_N): `state [..., S]`, `joint [..., N, A]` -> `[..., S + N A]`;
    `joint [..., R, N, A]` (several joint actions per state, e.g. `with_action`'s rows) broadcasts the state."""
    joint = joint.flatten(-2)
    state = state.view(*state.shape[:-1], *(1,) * (joint.dim() - state.dim()), state.shape[-1])
    return torch.cat([state.expand(*joint.shape[:-1], state.shape[-1]), joint], dim=-1)
