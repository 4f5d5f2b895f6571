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
    """pi(a_i | o_i) for every agent at once; the output layer starts near zero (near-uniform policy)."""

    def __init__(self, n_groups: int, in_features: int, n_actions: int, hidden_sizes: list[int], activation: str):
        super().__init__()
        self.body = AgentMLP(n_groups, in_features, hidden_sizes, n_actions, activation, out_gain=0.01)

    def log_probs(self, inputs: torch.Tensor, avail_actions: torch.Tensor | None) -> torch.Tensor:
        """Log-probabilities of every action: `[..., N, n_actions]`."""
        return torch.log_softmax(masked_logits(self.body(inputs), avail_actions), dim=-1)

    @staticmethod
    def sample(log_probs: torch.Tensor, deterministic: bool) -> torch.Tensor:
        if deterministic:
            return log_probs.argmax(-1)
        flat = log_probs.reshape(-1, log_probs.shape[-1]).exp()
        return torch.multinomial(flat, 1).view(log_probs.shape[:-1])

    @staticmethod
    def entropy(log_probs: torch.Tensor) -> torch.Tensor:
        return -(log_probs.exp() * log_probs).sum(-1)


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
