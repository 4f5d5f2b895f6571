"""Whole episodes from the batched environment copies of one or more seeds, written straight into the episode
buffer: the value-based family's collection (PyMARL's episode runner, batched).

Each copy fills its own slot of an `EpisodeStore` at its own time index (`t[b]`): one indexed write per field and
step serves every copy and agent, with no Python loop over either. A copy whose episode ends (the environment
resets it in `step`) writes the view it ended on at index `t + 1` (so a truncated episode can bootstrap from it),
hands its slot to its seed's ring of the replay buffer and starts again at `t = 0`. Episodes in progress carry over
from one round to the next; `state_dict` holds them. The TimeStep contract has no available-action mask of the
final view: `extras["final_avail"]` is used where an adapter gives it, else every action counts as available there
(it matters only for a truncated episode's bootstrap max on a masked task; a terminated one does not bootstrap).

A round runs until `min_episodes` episodes have finished, which takes a different number of steps in each seed of
a seed batch (docs/architecture.md, "Seed batches"): the copies are seed-major (K seeds x B copies) and a seed
whose round is over waits for the others. A waiting seed is not acted for (`act` gets the active seeds; the
learner neither draws from its stream nor moves its memory or step count), its environment is not stepped
(`SeedBatch.step(actions, active=...)`) and nothing of it is written, so each seed's round is exactly its solo
run's; the TimeStep it waits at is handed back with the others'. With one seed (or all still playing) the loop
steps the environment as a solo run does.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from algorithms.blocks.replay import EpisodeBuffer, EpisodeStore, episode_fields
from environments.base import BatchedEnv, EnvSpec, TimeStep, team_return
from environments.seed_batch import join, split


@dataclass
class Collected:
    timestep: TimeStep  # where collection stopped (every seed's copies)
    env_steps: list[int]  # per seed, summed over its copies
    episode_returns: list[torch.Tensor]  # per seed: team returns of the episodes that finished, in finishing order


def merge(timestep: TimeStep, stepped: TimeStep, active: list[bool]) -> TimeStep:
    """`timestep` of K seeds with the active seeds' blocks replaced by `stepped` (only theirs, seed-major)."""
    new = iter(split(stepped, sum(active)))
    return join([next(new) if on else old for old, on in zip(split(timestep, len(active)), active, strict=True)])


class EpisodeCollection:
    def __init__(self, spec: EnvSpec, n_envs: int, device: torch.device, n_seeds: int = 1):
        self.spec, self.n_seeds, self.n_envs = spec, n_seeds, n_envs
        copies = n_seeds * n_envs
        self.episodes = EpisodeStore(copies, spec.episode_limit + 1, episode_fields(spec), device)
        self.t = torch.zeros(copies, dtype=torch.long, device=device)
        self.rows = torch.arange(copies, device=device)
        self.all_available = torch.ones(copies, spec.n_agents, spec.n_actions, dtype=torch.bool, device=device)
        # Every field seen as `[copies * (T + 1), ...]`: copy b's step t is row b (T + 1) + t, so a step's write of
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

    def collect(self, env: BatchedEnv, timestep: TimeStep,
                act: Callable[[TimeStep, torch.Tensor | None], torch.Tensor], buffer: EpisodeBuffer,
                min_episodes: int) -> Collected:
        """Step every seed's copies with `act(timestep, active)` until `min_episodes` of its episodes have finished
        (with B copies and `min_episodes = B`, at most `episode_limit` steps); finished episodes go to `buffer`.
        `active` is None while every seed plays, else the `[K]` mask of those that do."""
        e, flat, n_seeds, n_envs, limit = self.episodes, self.flat, self.n_seeds, self.n_envs, self.spec.episode_limit
        finished, steps = [0] * n_seeds, [0] * n_seeds
        returns: list[list[torch.Tensor]] = [[] for _ in range(n_seeds)]
        active: list[bool] | None = None  # None: every seed plays (the common step, and always with one seed)
        rows, mask = self.rows, None  # the playing seeds' copies; their [K] mask for `act`
        index = self.row_starts + self.t  # where each copy's current step goes
        longest = int(self.t.max())  # an upper bound of t over the copies: the time-limit check runs only near it
        while True:
            avail = self.all_available if timestep.avail_actions is None else timestep.avail_actions
            actions = act(timestep, mask)
            if active is None:
                at = index
                self._write_view(at, timestep.obs, timestep.state, avail)
                stepped = env.step(actions)
            else:  # only the playing seeds' copies: their rows of the view, of the actions, of the store
                at = index[rows]
                self._write_view(at, timestep.obs[rows], timestep.state[rows], avail[rows])
                stepped = env.step(actions, active=active)
                actions = actions[rows]
            self._put("actions", at, actions)
            self._put("reward", at, team_return(stepped.reward, self.spec.reward_mode))
            self._put("terminated", at, stepped.terminated)
            flat["filled"].index_fill_(0, at, True)
            if active is None:
                self.t += 1
                index += 1
            else:
                self.t[rows] += 1
                index[rows] += 1
            longest += 1
            for k in range(n_seeds):
                steps[k] += n_envs if active is None or active[k] else 0
            done = stepped.done
            if longest >= limit:
                at_limit = self.t[rows] >= limit
                if bool(at_limit.any()) and not bool(done[at_limit].all()):
                    raise RuntimeError(f"{self.spec.name}: an episode ran past the task's episode_limit "
                                       f"({limit}); the replay buffer stores episodes up to that length")
            if bool(done.any()):
                local = done.nonzero().squeeze(1)
                ended = rows[local]  # ascending, so grouped by seed
                final_avail = stepped.extras.get("final_avail", self.all_available[rows])
                # The view the episode ended on (the environment has already reset the copy): for bootstrapping.
                self._write_view(index[ended], stepped.final_obs[local], stepped.final_state[local],
                                 final_avail[local])
                seeds = ended // n_envs
                buffer.insert({name: tensor[ended] for name, tensor in e.data.items()}, seeds)
                for tensor in e.data.values():
                    tensor[ended] = 0
                self.t[ended] = 0
                index = self.row_starts + self.t
                longest = int(self.t.max())
                counts = torch.bincount(seeds, minlength=n_seeds).tolist()
                for k, part in enumerate(stepped.episode_return[local].split(counts)):
                    if counts[k]:
                        returns[k].append(part)
                        finished[k] += counts[k]
            timestep = stepped if active is None else merge(timestep, stepped, active)
            playing = [f < min_episodes for f in finished]
            if not any(playing):
                break
            if not all(playing) and playing != active:  # a seed's round is over: it waits for the others
                active = playing
                mask = torch.tensor(playing, device=self.t.device)
                rows = self.rows[mask.repeat_interleave(n_envs)]
        episode_returns = [torch.cat(r) if r else torch.zeros(0) for r in returns]
        return Collected(timestep, steps, episode_returns)

    def state_dict(self) -> dict:
        return {"t": self.t.clone(), "data": {name: tensor.clone() for name, tensor in self.episodes.data.items()}}

    def load_state_dict(self, state: dict) -> None:
        self.t.copy_(state["t"])
        for name, tensor in self.episodes.data.items():
            tensor.copy_(state["data"][name])
