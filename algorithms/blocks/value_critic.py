"""The critic as a part: V for every learner (or one V per copy), its value normalization (MAPPO's ValueNorm) and
its Adam, and the clipped value update. What the critic sees (its input function) is the method's choice: the
global state (MAPPO), each agent's observation (IPPO), the state with beliefs (ACPO)."""

from __future__ import annotations

import torch

from algorithms.blocks.adam import Adam
from algorithms.blocks.networks import Critic, Torso, with_agent_ids
from algorithms.blocks.on_policy_config import OnPolicyConfig
from algorithms.blocks.policy import first_memory
from algorithms.blocks.ppo_loss import CRITIC_FIELDS, clipped_step, statistic, value_loss
from algorithms.blocks.rollout import minibatches
from algorithms.blocks.seed_streams import SeedStreams
from algorithms.blocks.value_norm import ValueNormalizer


class ValueCritic:
    """`width` values per copy: one per learner, or 1 (one V for the team, broadcast to the `n_learners`).

    With one shared network over several values, one-hot ids are appended to its input (`agent_id_input`).
    With `n_seeds` K (a seed batch) it holds K seeds' networks and ValueNorm statistics, inputs and values carry the
    seed dimension (`[K, B, width, D]` acting, `[C, K, S, width, D]` in updates) and the minibatches come from the
    critic's own random streams (`streams`, one per seed)."""

    def __init__(self, config: OnPolicyConfig, in_features: int, width: int, n_learners: int, device: torch.device,
                 n_seeds: int | None = None):
        self.width, self.n_learners, self.device, self.n_seeds = width, n_learners, device, n_seeds
        groups = 1 if config.critic_shares_parameters else width
        self.ids = config.critic_shares_parameters and config.agent_id_input and width > 1
        rnn = config.rnn_hidden_size if config.recurrent else None
        torso = Torso(groups, in_features + (width if self.ids else 0), config.hidden_sizes, config.activation, rnn,
                      n_seeds)
        self.net = Critic(groups, torso, n_seeds).to(device)
        self.normalizer = ValueNormalizer(enabled=config.value_normalization, n_seeds=n_seeds).to(device)
        self.optimizer = Adam(self.net.parameters(), lr=config.lr_critic, eps=1e-5)
        self.streams = None if n_seeds is None else SeedStreams(n_seeds, device)  # critic minibatches

    def inputs(self, features: torch.Tensor) -> torch.Tensor:
        """The network's input from the method's critic features `[B, width, D]` (ids appended if shared)."""
        return with_agent_ids(features) if self.ids else features

    def initial_memory(self, n_envs: int) -> torch.Tensor:
        """Zeros `[(K,) n_envs, width, H]` (`n_envs` copies per seed)."""
        seeds = () if self.n_seeds is None else (self.n_seeds,)
        return torch.zeros(*seeds, n_envs, self.width, self.net.memory_size, device=self.device)

    def values(self, critic_in: torch.Tensor, memory: torch.Tensor,
               starts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """V in reward units for every learner, `[B, n_learners]`, and the next memory."""
        values, memory = self.net.step(critic_in, memory, starts)
        values = self.normalizer.denormalize(values)
        return values.expand(*values.shape[:-1], self.n_learners), memory

    def update(self, batch: dict[str, torch.Tensor], config: OnPolicyConfig) -> dict[str, float]:
        """`ppo_epochs` x `num_minibatches` steps on the (optionally clipped) value loss, in normalized units."""
        norm, total, count, seeds = self.normalizer, 0.0, 0, self.n_seeds
        critic_batch = {k: v for k, v in batch.items() if k in CRITIC_FIELDS}  # only what V reads is shuffled
        for mb in minibatches(critic_batch, config.ppo_epochs, config.num_minibatches, self.streams):
            memory = first_memory(mb, "critic_memory", self.width, self.net.memory_size)
            values = self.net.sequence_values(mb["critic_in"], memory, mb["starts"])  # [C, (K,) S, width]
            loss = value_loss(values, norm.normalize(mb["values"]), norm.normalize(mb["returns"]),
                              config.value_clip_eps, seeds)
            clipped_step(self.optimizer, self.net, loss, config.max_grad_norm, seeds)
            total, count = total + statistic(loss, seeds), count + 1
        return {"value_loss": total / count if seeds is None else (total / count).tolist()}

    def state_dict(self) -> dict:
        state = {"critic": self.net.state_dict(), "value_normalizer": self.normalizer.state_dict(),
                 "critic_optimizer": self.optimizer.state_dict()}
        if self.streams is not None:
            state["critic_streams"] = self.streams.state_dict()
        return state

    def load_state_dict(self, state: dict) -> None:
        self.net.load_state_dict(state["critic"])
        self.normalizer.load_state_dict(state["value_normalizer"])
        self.optimizer.load_state_dict(state["critic_optimizer"])
        if self.streams is not None:
            self.streams.load_state_dict(state["critic_streams"])
