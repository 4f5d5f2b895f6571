"""Decentralized agent Q-networks: Q_a(tau_a, .) for every agent at once.

PyMARL's RNNAgent (Rashid et al. 2018, sec. 6; LAN App. B: "a 64 units feed forward network and a 64
units GRU", ReLU, weights shared between agents with the agent id as input): a `networks.Torso` (MLP
then GRU, batched over agents) and one linear output per action. The input of agent a at step t is
[o_a^t, onehot(u_a^{t-1}), onehot(a)] (PyMARL's obs_last_action and obs_agent_id); the last action of an
episode's first step is all zeros.

The same network is LAN's local advantage network A_a(tau_a, .) (LAN eq. 1), and `unroll` returns the
GRU's hidden states h_a^t, which LAN's centralized value and QTRAN's joint networks read.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from algorithms.blocks.networks import AgentLinear, Torso, with_agent_ids
from environments.base import EnvSpec


class AgentQNetwork(nn.Module):
    def __init__(self, spec: EnvSpec, hidden_sizes: list[int], activation: str, recurrent: bool,
                 rnn_hidden_size: int, share_parameters: bool, agent_id_input: bool, last_action_input: bool,
                 obs_dim: int | None = None):
        super().__init__()
        self.n_agents, self.n_actions = spec.n_agents, spec.n_actions
        self.agent_id_input, self.last_action_input = agent_id_input, last_action_input
        obs_dim = spec.obs_dim if obs_dim is None else obs_dim  # IQL without fog reads the state instead
        in_features = obs_dim + (spec.n_actions if last_action_input else 0) + (spec.n_agents if agent_id_input else 0)
        groups = 1 if share_parameters else spec.n_agents
        self.torso = Torso(groups, in_features, hidden_sizes, activation, rnn_hidden_size if recurrent else None)
        self.head = AgentLinear(groups, self.torso.out_features, spec.n_actions, gain=1.0)

    @property
    def memory_size(self) -> int:
        return self.torso.memory_size

    @property
    def hidden_size(self) -> int:
        """Width of the features `unroll` returns (the GRU's hidden state when recurrent)."""
        return self.torso.out_features

    def inputs(self, obs: torch.Tensor, last_actions: torch.Tensor | None) -> torch.Tensor:
        """`obs [..., N, D]`, `last_actions [..., N, A]` (one-hot, zeros at an episode's start) -> network input."""
        parts = [obs]
        if self.last_action_input:
            parts.append(last_actions)
        x = torch.cat(parts, dim=-1) if len(parts) > 1 else obs
        return with_agent_ids(x) if self.agent_id_input else x

    def step(self, obs: torch.Tensor, last_actions: torch.Tensor, memory: torch.Tensor,
             starts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One step for every copy and agent: `q [B, N, A]` and the next memory `[B, N, H]`."""
        features, memory = self.torso(self.inputs(obs, last_actions), memory, starts)
        return self.head(features), memory

    def unroll(self, obs: torch.Tensor, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Whole sampled episodes from their first step, batch-first: `obs [S, L, N, D]`, `actions [S, L, N]`
        (the actions taken; the input at t uses those of t - 1) -> `q [S, L, N, A]`, features `[S, L, N, H]`."""
        last = F.one_hot(actions, self.n_actions).to(obs.dtype)
        last = torch.cat([torch.zeros_like(last[:, :1]), last[:, :-1]], dim=1)
        x = self.inputs(obs, last).transpose(0, 1)  # time first for the GRU
        starts = torch.zeros(x.shape[:2], dtype=torch.bool, device=obs.device)
        starts[0] = True
        memory = torch.zeros(x.shape[1], self.n_agents, self.memory_size, device=obs.device)
        features = self.torso.unroll(x, memory, starts).transpose(0, 1)
        return self.head(features), features
