"""Networks batched over agents.

Every layer holds one weight matrix per parameter group: one group when agents share parameters,
one per agent otherwise. Inputs are `[..., N, features]`; a single batched matmul serves all
agents, so there is no Python loop over agents on the hot path.
"""

from __future__ import annotations

import math

import torch
from torch import nn


class AgentLinear(nn.Module):
    def __init__(self, n_groups: int, in_features: int, out_features: int, gain: float = math.sqrt(2)):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(n_groups, in_features, out_features))
        self.bias = nn.Parameter(torch.zeros(n_groups, out_features))
        for w in self.weight:  # init only: one orthogonal matrix per group
            nn.init.orthogonal_(w, gain=gain)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.weight.shape[0] == 1:  # shared: one matmul over every leading dim
            return x @ self.weight[0] + self.bias[0]
        # Per agent: einsum lowers to one bmm batched over agents. (A broadcast `x[..., None, :] @ W`
        # would materialize a weight gradient per sample and is ~5x slower in backward.)
        return torch.einsum("...ni,nio->...no", x, self.weight) + self.bias


class AgentMLP(nn.Module):
    ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh}

    def __init__(self, n_groups: int, in_features: int, hidden_sizes: list[int], out_features: int,
                 activation: str = "relu", out_gain: float = 1.0):
        super().__init__()
        layers: list[nn.Module] = []
        width = in_features
        for hidden in hidden_sizes:
            layers += [AgentLinear(n_groups, width, hidden), self.ACTIVATIONS[activation]()]
            width = hidden
        layers.append(AgentLinear(n_groups, width, out_features, gain=out_gain))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def masked_logits(logits: torch.Tensor, avail_actions: torch.Tensor | None) -> torch.Tensor:
    if avail_actions is None:
        return logits
    # A large finite negative rather than -inf keeps log_softmax and entropy free of NaN.
    return logits.masked_fill(~avail_actions, -1e9)


class CategoricalPolicy(nn.Module):
    """pi(a_i | o_i) over discrete actions for every agent at once.

    The output layer starts near zero, so the initial policy is (near) uniform.
    """

    def __init__(self, n_groups: int, in_features: int, n_actions: int, hidden_sizes: list[int], activation: str):
        super().__init__()
        self.body = AgentMLP(n_groups, in_features, hidden_sizes, n_actions, activation, out_gain=0.01)

    def log_probs(self, inputs: torch.Tensor, avail_actions: torch.Tensor | None) -> torch.Tensor:
        """Log-probabilities of every action: `[..., N, n_actions]`."""
        return torch.log_softmax(masked_logits(self.body(inputs), avail_actions), dim=-1)

    def act(self, inputs, avail_actions, deterministic: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """Actions `[..., N]` and their log-probabilities."""
        log_probs = self.log_probs(inputs, avail_actions)
        if deterministic:
            actions = log_probs.argmax(-1)
        else:
            flat = log_probs.reshape(-1, log_probs.shape[-1]).exp()
            actions = torch.multinomial(flat, 1).view(log_probs.shape[:-1])
        return actions, log_probs.gather(-1, actions.unsqueeze(-1)).squeeze(-1)

    def evaluate(self, inputs, avail_actions, actions) -> tuple[torch.Tensor, torch.Tensor]:
        """Log-probabilities of `actions` and the entropy, both `[..., N]`."""
        log_probs = self.log_probs(inputs, avail_actions)
        entropy = -(log_probs.exp() * log_probs).sum(-1)
        return log_probs.gather(-1, actions.unsqueeze(-1)).squeeze(-1), entropy


class GaussianPolicy(nn.Module):
    """Diagonal Gaussian over continuous actions `[..., N, action_dim]`.

    The log-std is a free parameter per group (state-independent, as in MAPPO) or a second head
    (state-dependent). Samples are not squashed: the environment clips them to its action box,
    and log-probabilities are those of the unclipped sample, as in MAPPO/HAPPO's implementations.
    """

    LOG_STD_RANGE = (-20.0, 2.0)

    def __init__(self, n_groups: int, in_features: int, action_dim: int, hidden_sizes: list[int], activation: str,
                 log_std_init: float = 0.0, state_dependent_std: bool = False):
        super().__init__()
        self.action_dim = action_dim
        out = 2 * action_dim if state_dependent_std else action_dim
        self.body = AgentMLP(n_groups, in_features, hidden_sizes, out, activation, out_gain=0.01)
        self.state_dependent_std = state_dependent_std
        if state_dependent_std:
            with torch.no_grad():  # start at log_std_init: the std head's bias
                self.body.net[-1].bias[:, action_dim:] = log_std_init
        else:
            self.log_std = nn.Parameter(torch.full((n_groups, action_dim), float(log_std_init)))

    def mean_log_std(self, inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.body(inputs)
        if self.state_dependent_std:
            mean, log_std = out.split(self.action_dim, dim=-1)
        else:
            mean, log_std = out, self.log_std.expand_as(out)
        return mean, log_std.clamp(*self.LOG_STD_RANGE)

    @staticmethod
    def _log_prob(mean, log_std, actions) -> torch.Tensor:
        z = (actions - mean) * torch.exp(-log_std)
        return (-0.5 * z.pow(2) - log_std - 0.5 * math.log(2 * math.pi)).sum(-1)

    def act(self, inputs, avail_actions, deterministic: bool) -> tuple[torch.Tensor, torch.Tensor]:
        mean, log_std = self.mean_log_std(inputs)
        actions = mean if deterministic else mean + torch.randn_like(mean) * log_std.exp()
        return actions, self._log_prob(mean, log_std, actions)

    def evaluate(self, inputs, avail_actions, actions) -> tuple[torch.Tensor, torch.Tensor]:
        mean, log_std = self.mean_log_std(inputs)
        entropy = (log_std + 0.5 * math.log(2 * math.pi * math.e)).sum(-1)
        return self._log_prob(mean, log_std, actions), entropy


class ValueNet(nn.Module):
    """V for every agent at once: `[..., N, in] -> [..., N]`."""

    def __init__(self, n_groups: int, in_features: int, hidden_sizes: list[int], activation: str):
        super().__init__()
        self.body = AgentMLP(n_groups, in_features, hidden_sizes, 1, activation, out_gain=1.0)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.body(inputs).squeeze(-1)


def with_agent_ids(x: torch.Tensor) -> torch.Tensor:
    """Append a one-hot agent id to `[..., N, D]` so shared parameters can still specialize."""
    n_agents = x.shape[-2]
    ids = torch.eye(n_agents, dtype=x.dtype, device=x.device).expand(*x.shape[:-1], n_agents)
    return torch.cat([x, ids], dim=-1)
