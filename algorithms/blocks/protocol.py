"""Who exchanges with whom (AS 4.3 and 5.3) for the methods that communicate on private-reward tasks (AS and its
baselines VS, VPS, PS), the consensus weights of the parameter-sharing baselines, and what the agents sent.

- `task_graph`: the task's neighbourhoods at a step (`extras["neighbours"]`, `[B, N, N]`, j in N_i at [b, i, j]);
  a task without one: every other agent.
- `Protocol`: per update, the graph the agents exchange on: the task's (`neighbours`), or one random other agent
  per agent, both ways (`one_random`, AS 5.3 (1)); nobody in the gaps of `communicate_every` (AS 5.3 (2)).
- `metropolis_weights` / `consensus_step`: doubly stochastic weights from an undirected graph (Metropolis-Hastings:
  W_ij = 1 / (1 + max(d_i, d_j)) on edges, W_ii = 1 - sum_j W_ij), as the consensus updates of Zhang et al. 2018b
  and Zhang & Zavlanos 2019 require, and one step x_i <- sum_j W_ij x_j batched over agents.
- `ExchangeAdam`: the optimizer of what only moves when an agent exchanged (AS's anticipations).

Seed batches (docs/architecture.md, "Seed batches"): graphs are `[T, K, B, N, N]`, `one_random` draws each seed's
picks from its own stream, what was sent is counted per seed, and a seed that exchanged nothing in an update skips
the anticipations' step while the batch's other seeds take theirs (`ExchangeAdam`, one step count per seed).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import torch
from pydantic import Field, model_validator
from torch.optim.adam import adam

from algorithms.blocks.adam import Adam
from algorithms.blocks.on_policy_config import OnPolicyConfig
from algorithms.blocks.seed_streams import SeedStreams

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


def standardize_per_agent(advantages: torch.Tensor, n_seeds: int | None = None) -> torch.Tensor:
    """Zero mean, unit standard deviation over each agent's own samples (last dim = agents): batch-wide
    statistics would mix the agents' private rewards. In a seed batch (`n_seeds` K, advantages `[T, K, B, N]`)
    over each seed's own samples: the statistics of seed k and agent i along one contiguous row, as alone."""
    if n_seeds is None:
        flat = advantages.reshape(-1, advantages.shape[-1])
        return (advantages - flat.mean(0)) / (flat.std(0) + 1e-8)
    rows = per_seed_agent_rows(advantages, n_seeds)  # [K, N, T*B]
    return (advantages - rows.mean(-1).unsqueeze(-2)) / (rows.std(-1).unsqueeze(-2) + 1e-8)


def per_seed_agent_rows(x: torch.Tensor, n_seeds: int) -> torch.Tensor:
    """`x [..., K, B, N]` as `[K, N, everything else]`, each (seed, agent) one contiguous row (its reductions then
    round as the seed's solo run's do, whatever K: contiguous, as `reshape` may return a strided view for one seed
    and a copy for several, and torch reduces the two layouts in different orders)."""
    return x.movedim(-3, 0).movedim(-1, 1).reshape(n_seeds, x.shape[-1], -1).contiguous()


def task_graph(timestep: TimeStep, device: torch.device) -> torch.Tensor:
    """`[..., B, N, N]` bool, j in N_i at [b, i, j]: the task's neighbourhoods, or every other agent."""
    if "neighbours" in timestep.extras:
        return timestep.extras["neighbours"].to(device, torch.bool)
    lead, n = timestep.obs.shape[:-2], timestep.obs.shape[-2]
    return ~torch.eye(n, dtype=torch.bool, device=device).expand(*lead, n, n)


def metropolis_weights(adjacency: torch.Tensor) -> torch.Tensor:
    """`[..., N, N]` doubly stochastic consensus weights of symmetric `[..., N, N]` bool graphs (self loops
    ignored; one per seed of a seed batch)."""
    n = adjacency.shape[-1]
    links = adjacency & ~torch.eye(n, dtype=torch.bool, device=adjacency.device)
    degree = links.sum(-1).to(torch.float32)
    weights = links / (1.0 + torch.maximum(degree.unsqueeze(-2), degree.unsqueeze(-1)))
    return weights + torch.diag_embed(1.0 - weights.sum(-1))


@torch.no_grad()
def consensus_step(weights: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """x_i <- sum_j W_ij x_j for `values [N, ...]` (one agent's copy per leading row)."""
    flat = values.reshape(values.shape[0], -1)
    return (weights.to(values.dtype) @ flat).view_as(values)


class Protocol:
    """Who exchanges with whom at each update (AS 4.3, 5.3), and what the agents have sent so far: per seed of a
    seed batch (`n_seeds` K), each seed's `one_random` picks from its own random stream (`streams`)."""

    def __init__(self, config: CommunicatingConfig, device: torch.device, n_seeds: int = 1):
        self.kind, self.every, self.device = config.protocol, config.communicate_every, device
        self.updates = 0  # updates done: which ones communicate (communicate_every), the same for every seed
        self.floats_sent = [0.0] * n_seeds  # per seed: floats each agent sent since the start, averaged over agents
        self.streams = SeedStreams(n_seeds, device)  # the random neighbour of `one_random`

    @property
    def communicates(self) -> bool:
        """Whether this update is one the agents exchange in (not a gap of `communicate_every`, AS 5.3 (2))."""
        return self.updates % self.every == 0

    def communication_graph(self, task_graph: torch.Tensor) -> torch.Tensor:
        """`[T, K, B, N, N]`: who exchanges with whom in this update (all False in a gap of `communicate_every`)."""
        if not self.communicates:
            return torch.zeros_like(task_graph)
        if self.kind == "neighbours":
            return task_graph
        batch, n = task_graph.shape[-3], task_graph.shape[-1]
        # one other agent per agent and copy: a uniform draw among the N - 1 others, from each seed's own stream
        pick = torch.stack([torch.randint(0, n - 1, (batch, n), generator=g, device=self.streams.device)
                            for g in self.streams.generators]).to(self.device)  # [K, B, N]
        pick = pick + (pick >= torch.arange(n, device=self.device))
        chose = torch.nn.functional.one_hot(pick, n).bool()  # [K, B, i, j]: i picked j
        return (chose | chose.transpose(-1, -2)).expand_as(task_graph)

    def record(self, sent: list[float]) -> None:
        """One update done; each seed's agents sent `sent[k]` floats each (on average) in it."""
        self.floats_sent = [total + mine for total, mine in zip(self.floats_sent, sent, strict=True)]
        self.updates += 1

    def state_dict(self) -> dict:
        return {"protocol": {"updates": self.updates,
                             "floats_sent": torch.tensor(self.floats_sent, dtype=torch.float64),  # [K], exact floats
                             "streams": self.streams.state_dict()}}

    def load_state_dict(self, state: dict) -> None:
        mine = state["protocol"]
        self.updates, self.floats_sent = int(mine["updates"]), mine["floats_sent"].tolist()
        self.streams.load_state_dict(mine["streams"])


class ExchangeAdam(Adam):
    """Adam over seed-major parameters (`[K * G, ...]`, networks.AgentLinear) whose step moves only the seeds that
    exchanged in the update (`step(active)`): AS's anticipations are not updated by a seed whose agents had no one
    to exchange with (a gap, or no neighbour at any stored step), while the batch's other seeds step. Each seed keeps
    its own step count (`state["step"]` is `[K]`), so its moments and bias corrections are those of its solo run's
    Adam; rows of seeds with equal counts step as one tensor (torch's kernel takes one count per tensor)."""

    def __init__(self, params, n_seeds: int, lr: float, eps: float = 1e-8):
        super().__init__(params, lr=lr, eps=eps)
        self.n_seeds = n_seeds

    def _state(self, i: int) -> dict[str, torch.Tensor]:
        if self.state[i] is None:
            super()._state(i)
            self.state[i]["step"] = torch.zeros(self.n_seeds, dtype=self.state[i]["step"].dtype, device="cpu")
        return self.state[i]

    @torch.no_grad()
    def step(self, active: list[bool]) -> None:  # type: ignore[override]
        seeds = torch.tensor([k for k, on in enumerate(active) if on], dtype=torch.long, device="cpu")  # bookkeeping
        if not len(seeds):
            return
        params, grads, exp_avgs, exp_avg_sqs, steps, targets = [], [], [], [], [], []
        for i, p in enumerate(self.params):
            if p.grad is None:
                continue
            state, per_seed = self._state(i), p.shape[0] // self.n_seeds
            counts = state["step"][seeds]
            for count in counts.unique().tolist():
                members = seeds[counts == count]
                rows = (members.unsqueeze(1) * per_seed + torch.arange(per_seed, device="cpu")).flatten().to(p.device)
                params.append(p.index_select(0, rows))
                grads.append(p.grad.index_select(0, rows))
                exp_avgs.append(state["exp_avg"].index_select(0, rows))
                exp_avg_sqs.append(state["exp_avg_sq"].index_select(0, rows))
                steps.append(torch.tensor(count, dtype=state["step"].dtype, device="cpu"))
                targets.append((p, state, rows, members))
        adam(params, grads, exp_avgs, exp_avg_sqs, [], steps, amsgrad=False, has_complex=False,
             beta1=self.betas[0], beta2=self.betas[1], lr=self.lr, weight_decay=self.weight_decay, eps=self.eps,
             maximize=False, foreach=False, capturable=False, differentiable=False, fused=None, grad_scale=None,
             found_inf=None, decoupled_weight_decay=False)
        for (p, state, rows, members), param, exp_avg, exp_avg_sq, count in zip(
                targets, params, exp_avgs, exp_avg_sqs, steps, strict=True):
            p.index_copy_(0, rows, param)
            state["exp_avg"].index_copy_(0, rows, exp_avg)
            state["exp_avg_sq"].index_copy_(0, rows, exp_avg_sq)
            state["step"][members] = count
