"""The exact model of a small (tabular) game, for the exact methods (ACPI, tabular BN policy gradient).

Joint actions are flattened row-major over agents: agent 0 is the most significant digit, so with
per-agent action counts (A_0, ..., A_{N-1}) the joint index is `sum_i a_i * prod_{k>i} A_k` (the
same order as `payoffs[t, a_0, ..., a_{N-1}].flatten()`). States are whatever the environment
enumerates; `observations`/`states` give each one's per-agent observation and global state vector,
so a batched environment's observations map back to state indices (`state_index`).

An episode starts in `initial`, takes one joint action per step, and ends after `horizon` steps or
on entering a `terminal` state (absorbing, zero reward), whichever comes first. A game whose
observation carries the time step encodes time in the state (its end is a terminal state); one
that does not (e.g. the Coordination Game) ends at the horizon by truncation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from coopbench.base.backward_induction import backward_induction


@dataclass
class TabularModel:
    initial: torch.Tensor  # [S] initial state distribution
    transitions: torch.Tensor  # [S, J, S] P(s' | s, joint action)
    rewards: torch.Tensor  # [S, J, N] per-agent reward of taking joint action j in state s
    horizon: int  # steps per episode (time-limit); terminal states may end it earlier
    n_actions: tuple[int, ...]  # per-agent action counts; J = prod(n_actions)
    observations: torch.Tensor  # [S, N, obs_dim] what each agent observes in each state
    states: torch.Tensor  # [S, state_dim] the environment's global state vector of each state
    terminal: torch.Tensor  # [S] bool: absorbing end states
    reward_mode: str = "team"

    def __post_init__(self) -> None:
        s, j = self.n_states, self.n_joint
        if self.transitions.shape != (s, j, s):
            raise ValueError(f"transitions must be [S, J, S] = {(s, j, s)}, got {tuple(self.transitions.shape)}")
        if self.rewards.shape != (s, j, self.n_agents):
            raise ValueError(f"rewards must be [S, J, N] = {(s, j, self.n_agents)}, got {tuple(self.rewards.shape)}")
        per_state = (self.observations.shape[:2], self.states.shape[0], self.terminal.shape)
        if per_state != ((s, self.n_agents), s, (s,)):
            raise ValueError("observations [S, N, obs_dim], states [S, state_dim] and terminal [S] must match S")
        if not torch.allclose(self.transitions.sum(-1), torch.ones(s, j, dtype=self.transitions.dtype), atol=1e-6):
            raise ValueError("every row of transitions must sum to 1")
        if not math.isclose(float(self.initial.sum()), 1.0, abs_tol=1e-6):
            raise ValueError("initial must sum to 1")

    def state_dict(self) -> dict:
        """Tensors and plain values only (a checkpoint's `weights_only` load reads them); `from_state_dict` inverts."""
        return {"initial": self.initial, "transitions": self.transitions, "rewards": self.rewards,
                "horizon": self.horizon, "n_actions": list(self.n_actions), "observations": self.observations,
                "states": self.states, "terminal": self.terminal, "reward_mode": self.reward_mode}

    @classmethod
    def from_state_dict(cls, state: dict) -> TabularModel:
        return cls(**{**state, "n_actions": tuple(state["n_actions"])})

    @property
    def n_states(self) -> int:
        return self.initial.shape[0]

    @property
    def n_agents(self) -> int:
        return len(self.n_actions)

    @property
    def n_joint(self) -> int:
        return math.prod(self.n_actions)

    def _strides(self) -> torch.Tensor:
        strides = [math.prod(self.n_actions[i + 1:]) for i in range(self.n_agents)]
        return torch.tensor(strides, dtype=torch.long)

    def joint_index(self, actions: torch.Tensor) -> torch.Tensor:
        """Joint-action index `[...]` of per-agent actions `[..., N]`."""
        return (actions.long() * self._strides().to(actions.device)).sum(-1)

    def joint_actions(self) -> torch.Tensor:
        """Every joint action `[J, N]`, in index order."""
        j = torch.arange(self.n_joint).unsqueeze(1)
        return (j // self._strides()) % torch.tensor(self.n_actions)

    def state_index(self, obs: torch.Tensor) -> torch.Tensor:
        """State index `[B]` of batched observations `[B, N, obs_dim]`; -1 where none matches."""
        table = self.observations.to(obs.device, torch.float64).flatten(1)  # [S, N * obs_dim]
        flat = obs.flatten(1).double()
        # nearest state by squared distance (one matmul), then an exact check of the match
        distance = (table * table).sum(-1) - 2 * flat @ table.T  # [B, S], up to the constant |obs|^2
        index = distance.argmin(-1)
        found = (table[index] == flat).all(-1)
        return torch.where(found, index, torch.full_like(index, -1))

    def known_state_index(self, obs: torch.Tensor, who: str) -> torch.Tensor:
        """`state_index` of observations `[B, N, obs_dim]` (on any device) that must all be states of the model; a
        RuntimeError naming `who` (the method and task) otherwise."""
        s = self.state_index(obs.detach().cpu())
        if bool((s < 0).any()):
            raise RuntimeError(f"{who}: an observation is no state of the task's model")
        return s

    def team_rewards(self) -> torch.Tensor:
        """Team reward `[S, J]` (the mean of per-agent rewards for team tasks, the sum otherwise)."""
        return self.rewards.mean(-1) if self.reward_mode == "team" else self.rewards.sum(-1)

    def optimal_values(self, maximize: bool = True) -> torch.Tensor:
        """Expected undiscounted team return `[S]` over `horizon` steps of the best (or worst) policy.

        Backward induction over time; the policy may depend on the time step, so this bounds every
        policy, including ones that see only the state.
        """
        best = (lambda t, q: q.max(-1).values) if maximize else (lambda t, q: q.min(-1).values)
        _, values = backward_induction(self.team_rewards().double(), self.transitions.double(),
                                       (~self.terminal).double(), 1.0, self.horizon, best)
        return values[0]

    def return_bounds(self) -> tuple[float, float]:
        """(lowest, highest) expected team return from the initial distribution."""
        mu = self.initial.double()
        return float(mu @ self.optimal_values(False)), float(mu @ self.optimal_values(True))
