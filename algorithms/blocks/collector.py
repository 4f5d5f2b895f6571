"""Whole episodes from B batched environment copies, written straight into an episode buffer.

Each copy fills its own slot of an `EpisodeStore` at its own time index (`t[b]`): one indexed write per
field and step serves every copy and agent, with no Python loop over either. A copy whose episode ends
(the environment resets it in `step`) writes the view it ended on at index `t + 1` (so a truncated
episode can bootstrap from it), hands its slot to the replay buffer and starts again at `t = 0`.
Episodes in progress carry over from one training iteration to the next; `state_dict` holds them.
The TimeStep contract has no available-action mask of the final view: `extras["final_avail"]` is used where an
adapter gives it, else every action counts as available there (it matters only for a truncated episode's
bootstrap max on a masked task; a terminated one does not bootstrap).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from algorithms.blocks.replay import EpisodeBuffer, EpisodeStore, episode_fields
from environments.base import BatchedEnv, EnvSpec, TimeStep, team_return


@dataclass
class Collected:
    timestep: TimeStep  # where collection stopped
    env_steps: int  # summed over copies
    episode_returns: torch.Tensor  # [K] team returns of the episodes that finished


class EpisodeCollector:
    def __init__(self, spec: EnvSpec, n_envs: int, device: torch.device):
        self.spec = spec
        self.episodes = EpisodeStore(n_envs, spec.episode_limit + 1, episode_fields(spec), device)
        self.t = torch.zeros(n_envs, dtype=torch.long, device=device)
        self.rows = torch.arange(n_envs, device=device)
        self.all_available = torch.ones(n_envs, spec.n_agents, spec.n_actions, dtype=torch.bool, device=device)
        # Every field seen as `[n_envs * (T + 1), ...]`: copy b's step t is row b (T + 1) + t, so a step's write of
        # every copy is one index_copy_ with one index (cheaper than indexing with the pair (rows, t)).
        self.flat = {name: tensor.view(-1, *tensor.shape[2:]) for name, tensor in self.episodes.data.items()}
        self.row_starts = self.rows * (spec.episode_limit + 1)

    def _put(self, name: str, index: torch.Tensor, value: torch.Tensor) -> None:
        """Row `index[b]` of field `name` <- `value[b]` (cast to the field's dtype, as an indexed assignment would)."""
        field = self.flat[name]
        field.index_copy_(0, index, value if value.dtype == field.dtype else value.to(field.dtype))

    def _write_view(self, index, obs, state, avail) -> None:
        self._put("obs", index, obs)
        self._put("state", index, state)
        self._put("avail", index, avail)

    def collect(self, env: BatchedEnv, timestep: TimeStep, act: Callable[[TimeStep], torch.Tensor],
                buffer: EpisodeBuffer, min_episodes: int) -> Collected:
        """Step every copy with `act` until `min_episodes` episodes have finished (with B copies and
        `min_episodes = B`, at most `episode_limit` steps); finished episodes go to `buffer`."""
        e, flat, n_envs, limit = self.episodes, self.flat, len(self.rows), self.spec.episode_limit
        finished, steps, returns = 0, 0, []
        index = self.row_starts + self.t  # where each copy's current step goes
        longest = int(self.t.max())  # an upper bound of t over the copies: the time-limit check runs only near it
        while finished < min_episodes:
            avail = self.all_available if timestep.avail_actions is None else timestep.avail_actions
            self._write_view(index, timestep.obs, timestep.state, avail)
            actions = act(timestep)
            timestep = env.step(actions)
            self._put("actions", index, actions)
            self._put("reward", index, team_return(timestep.reward, self.spec.reward_mode))
            self._put("terminated", index, timestep.terminated)
            flat["filled"].index_fill_(0, index, True)
            self.t += 1
            index += 1
            longest += 1
            steps += n_envs
            done = timestep.done
            if longest >= limit:
                at_limit = self.t >= limit
                if bool(at_limit.any()) and not bool(done[at_limit].all()):
                    raise RuntimeError(f"{self.spec.name}: an episode ran past the task's episode_limit "
                                       f"({limit}); the replay buffer stores episodes up to that length")
            if bool(done.any()):
                ended = done.nonzero().squeeze(1)
                final_avail = timestep.extras.get("final_avail", self.all_available)
                # The view the episode ended on (the environment has already reset the copy): for bootstrapping.
                self._write_view(index[ended], timestep.final_obs[ended], timestep.final_state[ended],
                                 final_avail[ended])
                buffer.insert({name: tensor[ended] for name, tensor in e.data.items()})
                for tensor in e.data.values():
                    tensor[ended] = 0
                self.t[ended] = 0
                index = self.row_starts + self.t
                longest = int(self.t.max())
                returns.append(timestep.episode_return[ended])
                finished += len(ended)
        episode_returns = torch.cat(returns) if returns else torch.zeros(0)
        return Collected(timestep, steps, episode_returns)

    def state_dict(self) -> dict:
        return {"t": self.t.clone(), "data": {name: tensor.clone() for name, tensor in self.episodes.data.items()}}

    def load_state_dict(self, state: dict) -> None:
        self.t.copy_(state["t"])
        for name, tensor in self.episodes.data.items():
            tensor.copy_(state["data"][name])
