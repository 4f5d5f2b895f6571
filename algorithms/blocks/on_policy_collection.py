"""On-policy collection: T steps from B batched copies into a `RolloutStorage`, with the truncation-correct
bootstrap, carrying the actor's and critic's memory from one iteration to the next.

Each step stores what the updates need: the learners' inputs, actions, log-probabilities and values, the
rewards they learn from, and `next_values[t]`, V of the state step t leads to: the next stored state, or,
where the episode ended, its final state (a truncated episode bootstraps from V(final state); GAE zeroes it
after a termination). The parts are the method's: how the learners act, what the critic sees, how the
learners' actions become the environment's and which rewards they learn from.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch

from algorithms.base import IterationResult
from algorithms.blocks.policy import PolicyStep
from algorithms.blocks.rollout import RolloutStorage
from algorithms.blocks.value_critic import ValueCritic
from environments.base import BatchedEnv, TimeStep
from environments.seed_batch import seed_view


class Rollout(NamedTuple):
    storage: RolloutStorage
    timestep: TimeStep  # where collection stopped
    # team returns of the training episodes that finished; in a seed batch `[K, B]` per step, NaN where none did
    finished_returns: list[torch.Tensor]
    n_seeds: int | None = None

    def result(self, losses: dict[str, float | list[float]]) -> IterationResult:
        """What `train_iteration` reports once the rollout has been learned from (in a seed batch: per seed, each
        statistic a list of K values, and the batch's totals)."""
        if self.n_seeds is None:
            steps, copies = self.storage["starts"].shape
            return IterationResult(self.timestep, steps * copies, torch.cat(self.finished_returns), losses)
        steps, seeds, copies = self.storage["starts"].shape
        returns = torch.stack(self.finished_returns).cpu()  # [T, K, B], time-major as a solo run lists them
        per_seed = [IterationResult(self.timestep, steps * copies, (r := returns[:, k].flatten())[~r.isnan()],
                                    {name: v[k] if isinstance(v, list) else v for name, v in losses.items()})
                    for k in range(seeds)]
        mean = {name: sum(v) / len(v) if isinstance(v, list) else v for name, v in losses.items()}
        return IterationResult(self.timestep, steps * seeds * copies,
                               torch.cat([r.episode_returns for r in per_seed]), mean, per_seed)


class RolloutCollector:
    """`act(timestep, memory)`: the learners' `PolicyStep` (sampled). `critic_input(obs, state, step)`: the
    critic's input where the learners acted `step`; `bootstrap_input(obs, state, actor_memory, starts)` where
    they do not act (default: `critic_input(obs, state, None)`). `env_actions`: the environment's `[B, N]`
    action from the learners' (default: the same). `rewards`: `[B, L]` learning rewards from the env's.

    In a seed batch (`n_seeds` K) the environment has K*B seed-major copies: every TimeStep is viewed `[K, B, ...]`
    before the method sees it, actions go back as `[K*B, ...]`, and the storage is `[T, K, B, ...]`."""

    def __init__(self, length: int, recurrent: bool, act: Callable[[TimeStep, torch.Tensor], PolicyStep],
                 critic: ValueCritic, critic_input: Callable[..., torch.Tensor],
                 rewards: Callable[[torch.Tensor], torch.Tensor], actor_memory: torch.Tensor,
                 bootstrap_input: Callable[..., torch.Tensor] | None = None,
                 env_actions: Callable[[torch.Tensor], torch.Tensor] | None = None, n_seeds: int | None = None):
        self.length, self.recurrent, self.n_seeds = length, recurrent, n_seeds
        self.act, self.critic, self.critic_input, self.rewards = act, critic, critic_input, rewards
        self.bootstrap_input = bootstrap_input or (lambda obs, state, memory, starts: critic_input(obs, state, None))
        self.env_actions = env_actions or (lambda actions: actions)
        # The memories of the episodes in progress in each copy, carried between iterations (and checkpoints).
        self.actor_memory = actor_memory
        self.critic_memory = critic.initial_memory(actor_memory.shape[0 if n_seeds is None else 1])

    @torch.no_grad()
    def collect(self, env: BatchedEnv, timestep: TimeStep) -> Rollout:
        storage, finished_returns, critic, seeds = RolloutStorage(self.length), [], self.critic, self.n_seeds
        if seeds is not None:
            timestep = seed_view(timestep, seeds)
        for t in range(self.length):
            starts = timestep.done  # a done step's observation is the first of the copy's next episode
            step = self.act(timestep, self.actor_memory)
            critic_in = self.critic_input(timestep.obs, timestep.state, step)
            values, next_critic_memory = critic.values(critic_in, self.critic_memory, starts)
            if seeds is None:
                nxt = env.step(self.env_actions(step.actions))
            else:
                raw = env.step(self.env_actions(step.actions).flatten(0, 1))
                nxt = seed_view(raw, seeds)
            # V(final state) for copies whose episode was cut short; replaced below otherwise.
            final_values = torch.zeros_like(values)
            if nxt.truncated.any():
                no_starts = torch.zeros_like(starts)
                final_in = self.bootstrap_input(nxt.final_obs, nxt.final_state, step.memory, no_starts)
                final_values = critic.values(final_in, next_critic_memory, no_starts)[0]
            storage.insert(
                t, actor_in=step.actor_in, critic_in=critic_in, avail=step.avail,
                actions=step.actions, log_probs=step.log_probs, values=values,
                rewards=self.rewards(nxt.reward), final_values=final_values,
                terminated=nxt.terminated, episode_end=nxt.done, starts=starts,
                actor_memory=self.actor_memory if self.recurrent else None,
                critic_memory=self.critic_memory if self.recurrent else None,
            )
            self.actor_memory, self.critic_memory = step.memory, next_critic_memory
            finished_returns.append(nxt.episode_return[nxt.done] if seeds is None else nxt.episode_return.clone())
            timestep = nxt
        last_in = self.bootstrap_input(timestep.obs, timestep.state, self.actor_memory, timestep.done)
        last_values = critic.values(last_in, self.critic_memory, timestep.done)[0]
        ended = storage["episode_end"].unsqueeze(-1)
        following = torch.cat([storage["values"][1:], last_values.unsqueeze(0)])
        storage.fields["next_values"] = torch.where(ended, storage["final_values"], following)
        return Rollout(storage, timestep if seeds is None else raw, finished_returns, seeds)

    def state_dict(self) -> dict:
        return {"actor_memory": self.actor_memory, "critic_memory": self.critic_memory}

    def load_state_dict(self, state: dict) -> None:
        self.actor_memory, self.critic_memory = state["actor_memory"], state["critic_memory"]
