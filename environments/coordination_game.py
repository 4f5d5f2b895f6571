"""BN 6.1 Coordination Game: an N-agent extension of the two-player game of Zhang et al. (2024).

Every agent has a binary local state and a binary action. The local transition depends only on the
agent's own action, P(s'^i = 0 | a^i = 0) = 1 - eps and P(s'^i = 0 | a^i = 1) = eps, and the team
reward is a function of the joint state computed by BN Algorithm 2 (appendix B.4). The reward of a
step is r(s_t) of the state the joint action is taken in (BN Section 3: r_t := r(s_t, a_t)), so the
first reward of an episode comes from the initial state and the last action only moves the state.

Full observability (BN Section 3): every agent observes the global state s in {0, 1}^N. The paper
does not give the initial distribution; we draw every local state uniformly (mu(s) > 0 for every s,
as its Assumption 1 requires). The tabular experiments are infinite-horizon; the deep runs of BN
6.2.1 use 20-step episodes (BN Table 2), which end by truncation since time is not observed.
"""

from __future__ import annotations

import torch
from pydantic import BaseModel, ConfigDict, Field

from environments.base import EnvSpec, TaskEnv
from environments.tabular_model import TabularModel


def alg2_reward(n_agents: int, c0: int) -> float:
    """BN Algorithm 2, literally: the team reward of a joint state with `c0` agents in state 0."""
    difference_bound = 1 if n_agents in (2, 3) else 2
    c1 = n_agents - c0
    if abs(c0 - c1) <= difference_bound:
        return 1.0 if c0 < c1 else 0.0
    return 3.0 if c0 > c1 else 2.0


class CoordinationGameParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    n_agents: int = Field(2, ge=2, le=6, description="the exact model (built for the return bounds) has 8^N entries")
    epsilon: float = Field(0.05, ge=0.0, le=0.5, description="probability that a local transition misses its action")
    episode_length: int = Field(20, ge=1)


class CoordinationGame(TaskEnv):
    Params = CoordinationGameParams
    STATE_KEYS = ("s",)

    def __init__(self, n_envs: int, seed: int, device="cpu", name: str | None = None, **params):
        p = CoordinationGameParams(**params)
        super().__init__(n_envs, seed, device, p.episode_length, name)
        self.params = p
        self.n_agents = p.n_agents
        # Reward by the number of agents in state 0 (Algorithm 2 depends on nothing else).
        self._reward_by_c0 = torch.tensor([alg2_reward(p.n_agents, c0) for c0 in range(p.n_agents + 1)],
                                          device=self.device)
        # P(s'^i = 1 | a^i): eps after action 0, 1 - eps after action 1.
        self._p_one = torch.tensor([p.epsilon, 1.0 - p.epsilon], device=self.device)
        self.s = torch.zeros(n_envs, p.n_agents, dtype=torch.long, device=self.device)
        self.spec = EnvSpec(
            name=self.name,
            family="coordination",
            n_agents=p.n_agents,
            obs_dim=p.n_agents,
            state_dim=p.n_agents,
            n_actions=2,
            episode_limit=p.episode_length,
            reward_mode="team",
            # Expected return of the worst and the best policy from the initial distribution (exact, by
            # backward induction on the model); single episodes can lie outside because of the noise.
            return_bounds=self.model().return_bounds(),
            description=f"BN 6.1 Coordination Game (Alg. 2), N = {p.n_agents}, eps = {p.epsilon}",
        )

    def _views(self, s: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Every agent observes the global state (BN Section 3): `(obs [B, N, N], state [B, N])`."""
        state = s.float()
        return state.unsqueeze(1).expand(-1, self.n_agents, -1), state

    def _observe(self) -> tuple[torch.Tensor, torch.Tensor, None]:
        return *self._views(self.s), None

    @staticmethod
    def positions_from_views(obs: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        """`[..., N, 1]`: each agent's binary local state as its 1D position (BN 6.2.1 / B.3's dependency score)."""
        return state.unsqueeze(-1)

    def _fresh(self) -> dict[str, torch.Tensor]:
        return {"s": self.random.randint(0, 2, self.n_agents)}

    def _transition(self, actions: torch.Tensor):
        team_reward = self._reward_by_c0[(self.s == 0).sum(-1)]  # r(s_t)
        p_one = self._p_one[actions.long()]
        uniform = self.random.rand(self.n_agents)
        self.s = (uniform < p_one).long()
        return team_reward, None

    def model(self) -> TabularModel:
        """States and joint actions are bit vectors indexed row-major (agent 0 the most significant bit)."""
        n = self.n_agents
        index = torch.arange(2**n)
        bits = (index.unsqueeze(1) >> torch.arange(n - 1, -1, -1)) & 1  # [S, N], also the joint actions [J, N]
        p_one = self._p_one.cpu().double()[bits]  # [J, N]: P(s'^i = 1 | a^i)
        # P(s' | a) = prod_i P(s'^i | a^i), the same from every state.
        per_agent = torch.where(bits.unsqueeze(0).bool(), p_one.unsqueeze(1), 1.0 - p_one.unsqueeze(1))  # [J, S', N]
        p_next = per_agent.prod(-1)
        transitions = p_next.unsqueeze(0).expand(2**n, -1, -1).clone()
        reward = self._reward_by_c0.cpu()[(bits == 0).sum(-1)]  # [S]
        rewards = reward.view(-1, 1, 1).expand(-1, 2**n, n).clone()
        obs, state = self._views(bits.to(self.device))
        return TabularModel(
            initial=torch.full((2**n,), 1.0 / 2**n, dtype=torch.float64),
            transitions=transitions,
            rewards=rewards,
            horizon=self.episode_length,
            n_actions=(2,) * n,
            observations=obs.cpu().clone(),
            states=state.cpu(),
            terminal=torch.zeros(2**n, dtype=torch.bool),
        )
