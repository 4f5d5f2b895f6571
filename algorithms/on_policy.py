"""The on-policy family: one PPO backbone (ACPO section 7: "the same PPO backbone").

A member differs in what its critic sees (`critic_inputs`) and, later, in how it turns values into
per-agent advantages; collection, GAE and the clipped update are written once here.
"""

from __future__ import annotations

from abc import abstractmethod
from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, Field

from algorithms.adam import Adam
from algorithms.base import Algorithm, IterationResult
from algorithms.gae import compute_gae
from algorithms.networks import CategoricalPolicy, GaussianPolicy, ValueNet, with_agent_ids
from algorithms.ppo_loss import ppo_clip_loss, value_loss
from algorithms.rollout import RolloutStorage, minibatch_indices
from environments.base import BatchedEnv, EnvSpec, TimeStep


class OnPolicyConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    n_envs: int = Field(4, ge=1, description="batched environment copies for collection")
    rollout_length: int = Field(64, ge=1, description="steps collected per copy per iteration")
    ppo_epochs: int = Field(10, ge=1)
    num_minibatches: int = Field(1, ge=1)
    lr_actor: float = Field(5e-4, gt=0)
    lr_critic: float = Field(5e-3, gt=0)
    gamma: float = Field(0.99, ge=0, le=1)
    gae_lambda: float = Field(0.95, ge=0, le=1)
    clip_eps: float = Field(0.2, gt=0, lt=1)
    value_clip_eps: float | None = Field(None, gt=0)
    entropy_coef: float = Field(0.01, ge=0)
    max_grad_norm: float = Field(10.0, gt=0)
    hidden_sizes: list[int] = Field(default_factory=lambda: [64, 64], min_length=1)
    activation: Literal["relu", "tanh"] = "relu"
    share_parameters: bool = True
    agent_id_input: bool = True
    normalize_advantages: bool = True
    log_std_init: float = Field(0.0, description="continuous actions: initial log standard deviation")
    state_dependent_std: bool = Field(False, description="continuous actions: log-std from a network head")
    learning_reward: Literal["team", "own"] = Field(
        "team", description="team: every agent learns from the team reward (on private-reward tasks, the sum of "
                            "the private rewards); own: each agent from its own reward (independent learners)")


class OnPolicyAlgorithm(Algorithm):
    family = "on_policy"
    Config = OnPolicyConfig
    config: OnPolicyConfig

    def __init__(self, spec: EnvSpec, config: OnPolicyConfig, device: torch.device):
        super().__init__(spec, config, device)
        groups = 1 if config.share_parameters else spec.n_agents
        self._append_ids = config.share_parameters and config.agent_id_input
        id_width = spec.n_agents if self._append_ids else 0
        if spec.discrete:
            self.policy = CategoricalPolicy(groups, spec.obs_dim + id_width, spec.n_actions, config.hidden_sizes,
                                            config.activation).to(device)
        else:
            self.policy = GaussianPolicy(groups, spec.obs_dim + id_width, spec.action_dim, config.hidden_sizes,
                                         config.activation, config.log_std_init, config.state_dependent_std).to(device)
        self.critic = ValueNet(groups, self.critic_input_dim(spec) + id_width, config.hidden_sizes,
                               config.activation).to(device)
        self.actor_optimizer = Adam(self.policy.parameters(), lr=config.lr_actor, eps=1e-5)
        self.critic_optimizer = Adam(self.critic.parameters(), lr=config.lr_critic, eps=1e-5)

    # --- what distinguishes family members ------------------------------------------------------
    @abstractmethod
    def critic_input_dim(self, spec: EnvSpec) -> int: ...

    @abstractmethod
    def critic_features(self, obs: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        """Critic input per agent, `[B, N, D]`, before agent ids."""

    # --- shared machinery -----------------------------------------------------------------------
    @property
    def n_envs(self) -> int:
        return self.config.n_envs

    @property
    def steps_per_iteration(self) -> int:
        return self.config.rollout_length * self.config.n_envs

    def _ids(self, x: torch.Tensor) -> torch.Tensor:
        return with_agent_ids(x) if self._append_ids else x

    def actor_inputs(self, timestep: TimeStep) -> torch.Tensor:
        return self._ids(timestep.obs)

    def critic_inputs(self, obs: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        return self._ids(self.critic_features(obs, state))

    @torch.no_grad()
    def act(self, timestep: TimeStep, deterministic: bool) -> torch.Tensor:
        return self.policy.act(self.actor_inputs(timestep), timestep.avail_actions, deterministic)[0]

    @torch.no_grad()
    def collect(self, env: BatchedEnv, timestep: TimeStep) -> tuple[RolloutStorage, TimeStep, list[torch.Tensor]]:
        storage = RolloutStorage(self.config.rollout_length)
        finished_returns = []
        for t in range(self.config.rollout_length):
            actor_in = self.actor_inputs(timestep)
            critic_in = self.critic_inputs(timestep.obs, timestep.state)
            actions, log_prob = self.policy.act(actor_in, timestep.avail_actions, deterministic=False)
            values = self.critic(critic_in)
            nxt = env.step(actions)
            # V(final state) for copies whose episode was cut short; replaced below otherwise.
            final_values = torch.zeros_like(values)
            if nxt.truncated.any():
                final_values = self.critic(self.critic_inputs(nxt.final_obs, nxt.final_state))
            storage.insert(
                t,
                actor_in=actor_in,
                critic_in=critic_in,
                avail=timestep.avail_actions,
                actions=actions,
                log_probs=log_prob,
                values=values,
                rewards=self.learning_rewards(nxt.reward),
                final_values=final_values,
                terminated=nxt.terminated,
                episode_end=nxt.done,
            )
            finished_returns.append(nxt.episode_return[nxt.done])
            timestep = nxt
        last_values = self.critic(self.critic_inputs(timestep.obs, timestep.state))
        ended = storage["episode_end"].unsqueeze(-1)
        following = torch.cat([storage["values"][1:], last_values.unsqueeze(0)])
        storage.fields["next_values"] = torch.where(ended, storage["final_values"], following)
        return storage, timestep, finished_returns

    def learning_rewards(self, reward: torch.Tensor) -> torch.Tensor:
        """`[B, N]` rewards the agents learn from. Team tasks already give every agent the team reward."""
        if self.config.learning_reward == "team" and self.spec.reward_mode == "private":
            # The cooperative objective is the team return, the sum of private rewards (AS 3).
            return reward.sum(dim=-1, keepdim=True).expand_as(reward)
        return reward

    def advantages(self, storage: RolloutStorage) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-agent advantages and value targets, `[T, B, N]` (GAE on each agent's reward)."""
        n_agents = self.spec.n_agents
        broadcast = lambda flag: flag.unsqueeze(-1).expand(-1, -1, n_agents)  # noqa: E731
        return compute_gae(storage["rewards"], storage["values"], storage["next_values"],
                           broadcast(storage["terminated"]), broadcast(storage["episode_end"]),
                           self.config.gamma, self.config.gae_lambda)

    def update(self, storage: RolloutStorage) -> dict[str, float]:
        cfg = self.config
        advantages, returns = self.advantages(storage)
        if cfg.normalize_advantages:
            advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
        batch = storage.flat(["actor_in", "critic_in", "avail", "actions", "log_probs", "values"])
        batch["advantages"] = advantages.flatten(0, 1)
        batch["returns"] = returns.flatten(0, 1)
        n_samples = batch["actions"].shape[0]
        totals = {"policy_loss": 0.0, "value_loss": 0.0, "entropy": 0.0}
        n_updates = 0
        for _ in range(cfg.ppo_epochs):
            for idx in minibatch_indices(n_samples, cfg.num_minibatches, self.device):
                mb = {k: v[idx] for k, v in batch.items()}
                new_log_prob, entropy = self.policy.evaluate(mb["actor_in"], mb.get("avail"), mb["actions"])
                entropy = entropy.mean()
                actor_loss = ppo_clip_loss(new_log_prob, mb["log_probs"], mb["advantages"], cfg.clip_eps)
                self._step(self.actor_optimizer, self.policy, actor_loss - cfg.entropy_coef * entropy)
                critic_loss = value_loss(self.critic(mb["critic_in"]), mb["values"], mb["returns"],
                                         cfg.value_clip_eps)
                self._step(self.critic_optimizer, self.critic, critic_loss)
                totals["policy_loss"] += actor_loss.item()
                totals["value_loss"] += critic_loss.item()
                totals["entropy"] += entropy.item()
                n_updates += 1
        return {k: v / n_updates for k, v in totals.items()}

    def _step(self, optimizer: Adam, module: torch.nn.Module, loss: torch.Tensor) -> None:
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(module.parameters(), self.config.max_grad_norm)
        optimizer.step()

    def train_iteration(self, env: BatchedEnv, timestep: TimeStep) -> IterationResult:
        storage, timestep, finished = self.collect(env, timestep)
        losses = self.update(storage)
        return IterationResult(timestep, self.steps_per_iteration, torch.cat(finished), losses)

    def state_dict(self) -> dict:
        return {
            "policy": self.policy.state_dict(),
            "critic": self.critic.state_dict(),
            "actor_optimizer": self.actor_optimizer.state_dict(),
            "critic_optimizer": self.critic_optimizer.state_dict(),
        }

    def load_state_dict(self, state: dict) -> None:
        self.policy.load_state_dict(state["policy"])
        self.critic.load_state_dict(state["critic"])
        self.actor_optimizer.load_state_dict(state["actor_optimizer"])
        self.critic_optimizer.load_state_dict(state["critic_optimizer"])

