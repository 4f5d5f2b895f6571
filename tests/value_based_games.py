"""Test-local games for the value-based family (tests only)."""

from __future__ import annotations

import torch

from environments.base import BatchedEnv, EnvSpec, TimeStep

# Rashid et al. 2018, sec. 6.1 and Fig. 3: agent 1's first action picks state 2A (payoff 7 whatever the
# joint action) or 2B (payoffs [[0, 1], [1, 8]]); agent 2's first action does not matter.
PAYOFF_2A = torch.full((2, 2), 7.0)
PAYOFF_2B = torch.tensor([[0.0, 1.0], [1.0, 8.0]])


class TwoStepGame(BatchedEnv):
    """The two-step game of the QMIX paper, batched: both agents observe the state (1, 2A, 2B) one-hot."""

    def __init__(self, n_envs: int, seed: int, device="cpu"):
        super().__init__(n_envs, seed, device)
        self.spec = EnvSpec(name="test/two-step", family="test", n_agents=2, obs_dim=3, state_dim=3, n_actions=2,
                            episode_limit=2, return_bounds=(0.0, 8.0))
        self.stage = torch.zeros(n_envs, dtype=torch.long)
        self.payoffs = torch.stack([PAYOFF_2A, PAYOFF_2B])

    def _views(self):
        state = torch.nn.functional.one_hot(self.stage, 3).float()
        return state.unsqueeze(1).expand(-1, 2, -1).clone(), state

    def reset(self) -> TimeStep:
        self.stage.zero_()
        obs, state = self._views()
        return self.first_timestep(obs, state)

    def step(self, actions: torch.Tensor) -> TimeStep:
        first = self.stage == 0
        reward = torch.where(first, 0.0, self.payoffs[(self.stage - 1).clamp(min=0), actions[:, 0], actions[:, 1]])
        self.stage = torch.where(first, 1 + actions[:, 0], torch.zeros_like(self.stage))
        done = ~first
        final_obs, final_state = self._views()  # the terminal views are the reset ones: never bootstrapped from
        obs, state = self._views()
        nan = torch.full((self.n_envs,), float("nan"))
        return TimeStep(obs, state, None, reward.unsqueeze(1).expand(-1, 2).clone(), done, torch.zeros_like(done),
                        final_obs, final_state, torch.where(done, reward, nan), torch.where(done, 2.0, nan))

    def state_dict(self) -> dict:
        return {**super().state_dict(), "stage": self.stage.clone()}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.stage.copy_(state["stage"])


def greedy_return(algorithm, env_cls=TwoStepGame) -> float:
    env = env_cls(1, seed=0)
    timestep, memory, total = env.reset(), algorithm.initial_memory(1), 0.0
    for _ in range(env.spec.episode_limit):
        actions, memory = algorithm.act(timestep, memory, deterministic=True)
        timestep = env.step(actions)
        total += float(timestep.reward[0, 0])
    return total


class CountingGame(BatchedEnv):
    """Episodes that describe themselves: obs = [episode id, t] for both agents, state = [episode id, t], reward
    t + 1 at step t; episode k lasts 1 + k % 4 steps (terminated), except those of 4 steps, truncated at the
    limit. Action 2 is unavailable at odd t. Replay tests read back exactly what was played."""

    LIMIT = 4

    def __init__(self, n_envs: int, seed: int, device="cpu"):
        super().__init__(n_envs, seed, device)
        self.spec = EnvSpec(name="test/counting", family="test", n_agents=2, obs_dim=2, state_dim=2, n_actions=3,
                            episode_limit=self.LIMIT, has_action_mask=True)
        self.ids = torch.arange(n_envs)
        self.next_id = n_envs
        self.t = torch.zeros(n_envs, dtype=torch.long)
        self.returns = torch.zeros(n_envs)

    def length(self, ids: torch.Tensor) -> torch.Tensor:
        return 1 + ids % self.LIMIT

    def _views(self):
        state = torch.stack([self.ids, self.t], -1).float()
        avail = torch.ones(self.n_envs, 2, 3, dtype=torch.bool)
        avail[:, :, 2] = (self.t % 2 == 0).unsqueeze(1)
        return state.unsqueeze(1).expand(-1, 2, -1).clone(), state, avail

    def reset(self) -> TimeStep:
        obs, state, avail = self._views()
        return self.first_timestep(obs, state, avail)

    def step(self, actions: torch.Tensor) -> TimeStep:
        assert actions.shape == (self.n_envs, 2)
        reward = (self.t + 1).float()
        self.returns += reward
        self.t += 1
        ended = self.t >= self.length(self.ids)
        truncated = ended & (self.t == self.LIMIT)
        terminated = ended & ~truncated
        final_obs, final_state, _ = self._views()
        episode_return = torch.where(ended, self.returns, float("nan"))
        episode_length = torch.where(ended, self.t.float(), float("nan"))
        n_ended = int(ended.sum())
        self.ids[ended] = torch.arange(self.next_id, self.next_id + n_ended)
        self.next_id += n_ended
        self.t[ended] = 0
        self.returns[ended] = 0
        obs, state, avail = self._views()
        return TimeStep(obs, state, avail, reward.unsqueeze(1).expand(-1, 2).clone(), terminated, truncated,
                        final_obs, final_state, episode_return, episode_length)

    def state_dict(self) -> dict:
        return {**super().state_dict(), "ids": self.ids.clone(), "t": self.t.clone(), "returns": self.returns.clone(),
                "next_id": self.next_id}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.ids.copy_(state["ids"])
        self.t.copy_(state["t"])
        self.returns.copy_(state["returns"])
        self.next_id = int(state["next_id"])
