"""Any batched environment seen as a PettingZoo `ParallelEnv` (one copy).

This is how coopbench environments plug into PettingZoo tooling (and its API tests); training
never goes through it, because it un-batches.
"""

from __future__ import annotations

import numpy as np
import torch
from gymnasium import spaces
from pettingzoo import ParallelEnv

from environments.registry import make


class ParallelEnvView(ParallelEnv):
    metadata = {"name": "coopbench", "render_modes": []}

    def __init__(self, env_name: str, seed: int = 0, **params):
        self._env_name = env_name
        self._params = params
        self._env = make(env_name, n_envs=1, seed=seed, **params)
        spec = self._env.spec
        self.metadata = {"name": env_name.replace("/", "_"), "render_modes": []}
        self.possible_agents = [f"agent_{i}" for i in range(spec.n_agents)]
        self.agents: list[str] = []
        self._observation_space = spaces.Box(-np.inf, np.inf, (spec.obs_dim,), np.float32)
        if spec.discrete:
            self._action_space = spaces.Discrete(spec.n_actions)
        else:
            # the box the task's step clips to (CORA's differential games: [-5, 5]; VMAS: [-u_range, u_range])
            self._action_space = spaces.Box(spec.action_low, spec.action_high, (spec.action_dim,), np.float32)
        self.state_space = spaces.Box(-np.inf, np.inf, (spec.state_dim,), np.float32)
        self._state = None

    def observation_space(self, agent):
        return self._observation_space

    def action_space(self, agent):
        return self._action_space

    def _split(self, timestep, use_final: bool):
        obs = (timestep.final_obs if use_final else timestep.obs)[0].numpy().astype(np.float32)
        self._state = (timestep.final_state if use_final else timestep.state)[0].numpy().astype(np.float32)
        observations = {a: obs[i] for i, a in enumerate(self.possible_agents)}
        infos = {a: {} for a in self.possible_agents}
        if timestep.avail_actions is not None:
            masks = timestep.avail_actions[0].numpy().astype(np.int8)
            for i, a in enumerate(self.possible_agents):
                infos[a]["action_mask"] = masks[i]
        return observations, infos

    def reset(self, seed=None, options=None):
        if seed is not None:
            self._env = make(self._env_name, n_envs=1, seed=seed, **self._params)
        self.agents = list(self.possible_agents)
        return self._split(self._env.reset(), use_final=False)

    def step(self, actions):
        joint = [actions[a] for a in self.possible_agents]
        dtype = torch.long if self._env.spec.discrete else torch.float32
        timestep = self._env.step(torch.as_tensor(np.array(joint), dtype=dtype).unsqueeze(0))
        done = bool(timestep.done[0])
        observations, infos = self._split(timestep, use_final=done)
        rewards = {a: float(timestep.reward[0, i]) for i, a in enumerate(self.possible_agents)}
        terminations = {a: bool(timestep.terminated[0]) for a in self.possible_agents}
        truncations = {a: bool(timestep.truncated[0]) for a in self.possible_agents}
        if done:
            self.agents = []
        return observations, rewards, terminations, truncations, infos

    def state(self):
        return self._state

    def render(self):
        return None

    def close(self):
        self._env.close()
