"""Deterministic actors and Q critics for the off-policy family (DDPG: Lillicrap et al. 2016; MADDPG: Lowe et al.
2017; TD3: Fujimoto et al. 2018), batched over agents and critics.

- `DeterministicActor`: mu_i(x) for every agent in one batched matmul (one weight set per agent, or one shared),
  HARL's `DeterministicPolicy`: an MLP, a linear output layer (gain 0.01), tanh, scaled to the action box.
- `QEnsemble`: C critics (C = 2 for TD3's twin critics) in one batched matmul, `[..., D] -> [..., C]`.
- Exploration: Gaussian noise of `std` x half the box width, clipped to the box (HARL `expl_noise`).
- Target policy smoothing (TD3 sec. 5.3): clipped Gaussian noise on the target actions.
- Clipped double Q (TD3 sec. 4.2): the minimum of the twin target critics.
- Polyak averaging of every target network (`q_targets.soft_update`).
All random draws use the global torch RNG, which the run driver checkpoints.
"""

from __future__ import annotations

import torch
from torch import nn

from algorithms.blocks.networks import AgentLinear, AgentMLP


class DeterministicActor(nn.Module):
    """a = center + half_width * tanh(W h(x)) for every agent: `x [..., N, D] -> [..., N, A]` (or one agent's
    `[..., D]` with `agent=i`)."""

    def __init__(self, n_groups: int, in_features: int, hidden_sizes: list[int], activation: str, action_dim: int,
                 low: float, high: float):
        super().__init__()
        self.torso = AgentMLP(n_groups, in_features, hidden_sizes, activation)
        self.out = AgentLinear(n_groups, self.torso.out_features, action_dim, gain=0.01)
        self.low, self.high = float(low), float(high)
        self.center, self.half_width = (self.high + self.low) / 2, (self.high - self.low) / 2

    def forward(self, x: torch.Tensor, agent: int | None = None) -> torch.Tensor:
        return self.center + self.half_width * torch.tanh(self.out(self.torso(x, agent), agent))


class QEnsemble(nn.Module):
    """`n_critics` independent critics Q_c(x) on the same input: `x [..., D] -> [..., n_critics]`."""

    def __init__(self, n_critics: int, in_features: int, hidden_sizes: list[int], activation: str):
        super().__init__()
        self.n_critics = n_critics
        self.torso = AgentMLP(n_critics, in_features, hidden_sizes, activation)
        self.out = AgentLinear(n_critics, self.torso.out_features, 1, gain=1.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.unsqueeze(-2).expand(*x.shape[:-1], self.n_critics, x.shape[-1])
        return self.out(self.torso(x)).squeeze(-1)

    def first(self, x: torch.Tensor) -> torch.Tensor:
        """Q_1 alone, `[..., D] -> [...]`: TD3's actor ascends the first critic only (Fujimoto et al. 2018, Alg. 1),
        so its pass skips the others' compute."""
        return self.out(self.torso(x, 0), 0).squeeze(-1)


def explore(actions: torch.Tensor, std: float, low: float, high: float) -> torch.Tensor:
    """Behaviour actions: mu + N(0, (std x half width)^2), clipped to the box (HARL DeterministicPolicy)."""
    noise = torch.randn_like(actions) * (std * (high - low) / 2)
    return (actions + noise).clamp(low, high)


def smooth_target(actions: torch.Tensor, noise: float, noise_clip: float, low: float, high: float) -> torch.Tensor:
    """TD3's target policy smoothing (sec. 5.3, eq. 14): a' = clip(mu'(s') + clip(eps, -c, c)), eps ~ N(0, sigma^2);
    sigma and c in units of the box's half width (HARL `policy_noise`, `noise_clip`)."""
    half = (high - low) / 2
    eps = (torch.randn_like(actions) * (noise * half)).clamp(-noise_clip * half, noise_clip * half)
    return (actions + eps).clamp(low, high)


def uniform_actions(shape: tuple[int, ...], low: float, high: float, device: torch.device) -> torch.Tensor:
    """Uniform over the box: the warm-up's random actions (HARL `warmup`: `action_space.sample()`)."""
    return low + (high - low) * torch.rand(shape, device=device)


def clipped_double_q(q: torch.Tensor) -> torch.Tensor:
    """TD3 sec. 4.2: y = r + gamma min_{c=1,2} Q'_c(s', a'); the minimum over the last (critic) dim."""
    return q.min(-1).values


def critic_loss(q: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Sum over critics of each one's mean squared error to the shared targets (HARL's critic_loss1 + critic_loss2)."""
    return (q - targets.unsqueeze(-1)).pow(2).mean(dim=tuple(range(q.dim() - 1))).sum()


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
