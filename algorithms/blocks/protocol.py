"""Who exchanges with whom (AS 4.3 and 5.3) for the methods that communicate on private-reward tasks (AS and its
baselines VS, VPS, PS), the consensus weights of the parameter-sharing baselines, and what the agents sent.

- `task_graph`: the task's neighbourhoods at a step (`extras["neighbours"]`, `[B, N, N]`, j in N_i at [b, i, j]);
  a task without one: every other agent.
- `Protocol`: per update, the graph the agents exchange on: the task's (`neighbours`), or one random other agent
  per agent, both ways (`one_random`, AS 5.3 (1)); nobody in the gaps of `communicate_every` (AS 5.3 (2)).
- `metropolis_weights` / `consensus_step`: doubly stochastic weights from an undirected graph (Metropolis-Hastings:
  W_ij = 1 / (1 + max(d_i, d_j)) on edges, W_ii = 1 - sum_j W_ij), as the consensus updates of Zhang et al. 2018b
  and Zhang & Zavlanos 2019 require, and one step x_i <- sum_j W_ij x_j batched over agents.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import torch
from pydantic import Field, model_validator

from algorithms.blocks.on_policy_config import OnPolicyConfig

if TYPE_CHECKING:
    from environments.base import TimeStep

BYTES_PER_FLOAT = 4  # messages are float32


class CommunicatingConfig(OnPolicyConfig):
    """Independent learners on private rewards that communicate over a protocol (AS and its baselines)."""

    # Each agent learns from its own reward with its own networks (AS 3, 4.3): the only values accepted below.
    learning_reward: Literal["team", "own"] = "own"
    share_parameters: bool = False
    agent_id_input: bool = False
    protocol: Literal["neighbours", "one_random"] = Field(
        "neighbours", description="neighbours: the task's graph (every other agent if it has none); one_random: "
                                  "each agent picks one other agent per update (AS 5.3)")
    communicate_every: int = Field(1, ge=1, description="exchange on every k-th update only (AS 5.3: k = 2)")

    @model_validator(mode="after")
    def _private_learners(self):
        problems = []
        if self.learning_reward != "own":
            problems.append("learning_reward must be 'own' (each agent learns from its private reward, AS 3)")
        if self.share_parameters or self.critic_shares_parameters:
            problems.append("share_parameters and share_critic_parameters must be false (agents share parameters "
                            "only through their protocol)")
        if self.value_normalization:
            problems.append("value_normalization must be false (its running statistics would pool the agents' "
                            "private returns)")
        if problems:
            raise ValueError("; ".join(problems))
        return self


def standardize_per_agent(advantages: torch.Tensor) -> torch.Tensor:
    """Zero mean, unit standard deviation over each agent's own samples (last dim = agents): batch-wide
    statistics would mix the agents' private rewards."""
    flat = advantages.reshape(-1, advantages.shape[-1])
    return (advantages - flat.mean(0)) / (flat.std(0) + 1e-8)


def task_graph(timestep: TimeStep, device: torch.device) -> torch.Tensor:
    """`[B, N, N]` bool, j in N_i at [b, i, j]: the task's neighbourhoods, or every other agent."""
    if "neighbours" in timestep.extras:
        return timestep.extras["neighbours"].to(device, torch.bool)
    batch, n = timestep.obs.shape[:2]
    return ~torch.eye(n, dtype=torch.bool, device=device).expand(batch, -1, -1)


def metropolis_weights(adjacency: torch.Tensor) -> torch.Tensor:
    """`[N, N]` doubly stochastic consensus weights of a symmetric `[N, N]` bool graph (self loops ignored)."""
    n = adjacency.shape[-1]
    links = adjacency & ~torch.eye(n, dtype=torch.bool, device=adjacency.device)
    degree = links.sum(-1).to(torch.float32)
    weights = links / (1.0 + torch.maximum(degree.unsqueeze(0), degree.unsqueeze(1)))
    return weights + torch.diag(1.0 - weights.sum(-1))


@torch.no_grad()
def consensus_step(weights: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """x_i <- sum_j W_ij x_j for `values [N, ...]` (one agent's copy per leading row)."""
    flat = values.reshape(values.shape[0], -1)
    return (weights.to(values.dtype) @ flat).view_as(values)


class Protocol:
    """Who exchanges with whom at each update (AS 4.3, 5.3), and what the agents have sent so far."""

    def __init__(self, config: CommunicatingConfig, device: torch.device):
        self.kind, self.every, self.device = config.protocol, config.communicate_every, device
        self.updates = 0  # updates done: which ones communicate (communicate_every)
        self.floats_sent = 0.0  # floats each agent sent since the start, averaged over agents
        self.generator = torch.Generator(device=device)  # the random neighbour of `one_random`
        self.generator.manual_seed(int(torch.randint(0, 2**62, ()).item()))

    def communication_graph(self, task_graph: torch.Tensor) -> torch.Tensor:
        """`[T, B, N, N]`: who exchanges with whom in this update (all False in a gap of `communicate_every`)."""
        if self.updates % self.every:
            return torch.zeros_like(task_graph)
        if self.kind == "neighbours":
            return task_graph
        _, batch, n, _ = task_graph.shape
        # one other agent per agent and copy: a uniform draw among the N - 1 others
        pick = torch.randint(0, n - 1, (batch, n), generator=self.generator, device=self.generator.device)
        pick = pick.to(self.device)
        pick = pick + (pick >= torch.arange(n, device=self.device))
        chose = torch.nn.functional.one_hot(pick, n).bool()  # [B, i, j]: i picked j
        return (chose | chose.transpose(1, 2)).expand_as(task_graph)

    def state_dict(self) -> dict:
        return {"protocol": {"updates": self.updates, "floats_sent": self.floats_sent,
                             "generator": self.generator.get_state()}}

    def load_state_dict(self, state: dict) -> None:
        mine = state["protocol"]
        self.updates, self.floats_sent = int(mine["updates"]), float(mine["floats_sent"])
        self.generator.set_state(mine["generator"])
