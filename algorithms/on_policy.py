"""The on-policy family: one PPO backbone (ACPO section 7: "the same PPO backbone").

Members differ in what their critic sees (`critic_features`), how values become per-agent
advantages (`advantages`, `shape_advantages`) and how the actors are updated (`update_actor`:
jointly here; one agent after another in HAPPO/HATRPO). Collection, GAE, recurrent chunking, value
normalization and the clipped losses are written once here.

Shapes: `L` learners act per step (the N agents; one for Centralized PPO over joint actions).
Stored rollouts are `[T, B, L, ...]`; updates see chunks `[C, S, L, ...]` (C = chunk length for
recurrent networks, 1 otherwise; S sequences), see `RolloutStorage.sequences`.
"""

from __future__ import annotations

from abc import abstractmethod
from dataclasses import dataclass
from typing import ClassVar, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator

from algorithms.base import Algorithm, IterationResult
from algorithms.blocks.adam import Adam
from algorithms.blocks.gae import compute_gae
from algorithms.blocks.networks import Actor, CategoricalHead, Critic, GaussianHead, Torso, with_agent_ids
from algorithms.blocks.ppo_loss import ppo_clip_loss, value_loss
from algorithms.blocks.rollout import RolloutStorage, minibatch_indices
from algorithms.blocks.value_norm import ValueNormalizer
from environments.base import BatchedEnv, EnvSpec, TimeStep


class OnPolicyConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    n_envs: int = Field(4, ge=1, description="batched environment copies for collection")
    rollout_length: int = Field(64, ge=1, description="steps collected per copy per iteration")
    ppo_epochs: int = Field(10, ge=1)
    num_minibatches: int = Field(1, ge=1)
    lr_actor: float = Field(5e-4, gt=0)
    lr_critic: float = Field(5e-3, gt=0)
    lr_annealing: bool = Field(False, description="decay both learning rates linearly to 0 over the run's budget")
    gamma: float = Field(0.99, ge=0, le=1)
    gae_lambda: float = Field(0.95, ge=0, le=1)
    clip_eps: float = Field(0.2, gt=0, lt=1)
    value_clip_eps: float | None = Field(None, gt=0)
    value_normalization: bool = Field(False, description="critic learns standardized targets (MAPPO's ValueNorm)")
    entropy_coef: float = Field(0.01, ge=0)
    max_grad_norm: float = Field(10.0, gt=0)
    hidden_sizes: list[int] = Field(default_factory=lambda: [64, 64], min_length=1)
    activation: Literal["relu", "tanh"] = "relu"
    recurrent: bool = Field(False, description="a GRU after the MLP in actor and critic (chunked BPTT)")
    rnn_hidden_size: int = Field(64, ge=1)
    chunk_length: int = Field(10, ge=1, description="recurrent: steps per back-propagation chunk")
    share_parameters: bool = Field(True, description="one actor network for all agents (with agent ids)")
    share_critic_parameters: bool | None = Field(None, description="one critic network for all agents; "
                                                                   "default: as share_parameters")
    agent_id_input: bool = True
    normalize_advantages: bool = True
    log_std_init: float = Field(0.0, description="continuous actions: initial log standard deviation")
    state_dependent_std: bool = Field(False, description="continuous actions: log-std from a network head")
    learning_reward: Literal["team", "own"] = Field(
        "team", description="team: every agent learns from the team reward (on private-reward tasks, the sum of "
                            "the private rewards); own: each agent from its own reward (independent learners)")

    @model_validator(mode="after")
    def _chunks_fit(self):
        if self.recurrent and self.rollout_length % self.chunk_length:
            raise ValueError(f"recurrent: rollout_length ({self.rollout_length}) must be a multiple of "
                             f"chunk_length ({self.chunk_length})")
        return self

    @property
    def critic_shares_parameters(self) -> bool:
        return self.share_parameters if self.share_critic_parameters is None else self.share_critic_parameters


@dataclass
class PolicyStep:
    """What acting at one step produced, for every copy and learner."""

    actor_in: torch.Tensor  # [B, L, D] the actor's input for each learner's own decision (stored for the update)
    actions: torch.Tensor  # [B, L] or [B, L, action_dim]
    log_probs: torch.Tensor  # [B, L]
    memory: torch.Tensor  # [B, L, H] the actor's next memory
    avail: torch.Tensor | None  # [B, L, n_actions] the learners' available actions (None: all)
    critic_context: torch.Tensor | None = None  # what the critic sees besides obs/state (ACPO's beliefs)


class OnPolicyAlgorithm(Algorithm):
    family = "on_policy"
    Config = OnPolicyConfig
    config: OnPolicyConfig
    # One V(s) for the team instead of one value per learner: every agent's advantage is then the joint
    # advantage (HAPPO/HATRPO's critic, Kuba et al. 2022).
    joint_value: ClassVar[bool] = False

    def __init__(self, spec: EnvSpec, config: OnPolicyConfig, device: torch.device):
        super().__init__(spec, config, device)
        self.n_learners = self.learner_count(spec)
        rnn = config.rnn_hidden_size if config.recurrent else None
        actor_groups = 1 if config.share_parameters else self.n_learners
        self.critic_width = 1 if self.critic_is_joint(config) else self.n_learners  # values per copy
        critic_groups = 1 if config.critic_shares_parameters else self.critic_width
        self._actor_ids = self.actor_takes_ids(config)
        self._critic_ids = config.critic_shares_parameters and config.agent_id_input and self.critic_width > 1
        actor_in = self.actor_input_dim(spec) + (self.n_learners if self._actor_ids else 0)
        critic_in = self.critic_input_dim(spec) + (self.critic_width if self._critic_ids else 0)
        actor_torso = Torso(actor_groups, actor_in, config.hidden_sizes, config.activation, rnn)
        self.policy = Actor(actor_torso, self.policy_head(actor_groups, actor_torso.out_features)).to(device)
        self.critic = Critic(critic_groups, Torso(critic_groups, critic_in, config.hidden_sizes, config.activation,
                                                  rnn)).to(device)
        self.value_normalizer = ValueNormalizer(enabled=config.value_normalization).to(device)
        self.actor_optimizer = self.make_actor_optimizer()
        self.critic_optimizer = Adam(self.critic.parameters(), lr=config.lr_critic, eps=1e-5)
        self.actor_memory = self.initial_memory(config.n_envs)
        self.critic_memory = torch.zeros(config.n_envs, self.critic_width, self.critic.memory_size, device=device)
        self.env_steps_done = 0  # for learning-rate annealing
        self.total_env_steps: int | None = None

    # --- what distinguishes family members ------------------------------------------------------
    @abstractmethod
    def critic_input_dim(self, spec: EnvSpec) -> int: ...

    @abstractmethod
    def critic_features(self, obs: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        """Critic input, `[B, L, D]` (`[B, 1, D]` with `joint_value`), before agent ids."""

    def critic_is_joint(self, config: OnPolicyConfig) -> bool:
        """One value per copy rather than per learner (broadcast to the learners)."""
        return self.joint_value

    def learner_count(self, spec: EnvSpec) -> int:
        return spec.n_agents

    def actor_input_dim(self, spec: EnvSpec) -> int:
        return spec.obs_dim

    def actor_takes_ids(self, config: OnPolicyConfig) -> bool:
        """Append one-hot agent ids to the actor's input (shared parameters only)."""
        return config.share_parameters and config.agent_id_input and self.n_learners > 1

    def actor_features(self, timestep: TimeStep) -> torch.Tensor:
        """Actor input per learner, `[B, L, D]`, before agent ids."""
        return timestep.obs

    def actor_avail(self, timestep: TimeStep) -> torch.Tensor | None:
        return timestep.avail_actions

    def policy_head(self, n_groups: int, features: int) -> CategoricalHead | GaussianHead:
        spec, cfg = self.spec, self.config
        if spec.discrete:
            return CategoricalHead(n_groups, features, spec.n_actions)
        return GaussianHead(n_groups, features, spec.action_dim, cfg.log_std_init, cfg.state_dependent_std)

    def env_actions(self, actions: torch.Tensor) -> torch.Tensor:
        """The environment's `[B, N]` joint action from the learners' actions."""
        return actions

    def make_actor_optimizer(self) -> Adam:
        return Adam(self.policy.parameters(), lr=self.config.lr_actor, eps=1e-5)

    def shape_advantages(self, advantages: torch.Tensor) -> torch.Tensor:
        """Per-learner advantages `[T, B, L]` as the actor update uses them (after normalization)."""
        return advantages

    # --- shared machinery -----------------------------------------------------------------------
    @property
    def n_envs(self) -> int:
        return self.config.n_envs

    @property
    def steps_per_iteration(self) -> int:
        return self.config.rollout_length * self.config.n_envs

    def set_budget(self, total_env_steps: int) -> None:
        self.total_env_steps = total_env_steps

    def actor_inputs(self, timestep: TimeStep) -> torch.Tensor:
        x = self.actor_features(timestep)
        return with_agent_ids(x) if self._actor_ids else x

    def critic_inputs(self, obs: torch.Tensor, state: torch.Tensor,
                      context: torch.Tensor | None = None) -> torch.Tensor:
        x = self.critic_features(obs, state)
        return with_agent_ids(x) if self._critic_ids else x

    def policy_step(self, timestep: TimeStep, memory: torch.Tensor, deterministic: bool) -> PolicyStep:
        """Every learner acts at `timestep` (memory cleared where `timestep.done`)."""
        actor_in, avail = self.actor_inputs(timestep), self.actor_avail(timestep)
        actions, log_probs, memory = self.policy.step(actor_in, avail, memory, timestep.done, deterministic)
        return PolicyStep(actor_in, actions, log_probs, memory, avail)

    def bootstrap_context(self, obs: torch.Tensor, actor_memory: torch.Tensor,
                          starts: torch.Tensor) -> torch.Tensor | None:
        """`critic_context` at a state the learners do not act in (the value bootstraps)."""
        return None

    def initial_memory(self, n_envs: int) -> torch.Tensor:
        return torch.zeros(n_envs, self.n_learners, self.policy.memory_size, device=self.device)

    @torch.no_grad()
    def act(self, timestep: TimeStep, memory: torch.Tensor, deterministic: bool) -> tuple[torch.Tensor, torch.Tensor]:
        step = self.policy_step(timestep, memory, deterministic)
        return self.env_actions(step.actions), step.memory

    @torch.no_grad()
    def action_log_probs(self, timestep: TimeStep) -> torch.Tensor:
        """Discrete policies: log pi(. | o) of every learner at `timestep`, `[B, L, n_actions]` (from fresh memory)."""
        features, _ = self.policy.torso(self.actor_inputs(timestep), self.initial_memory(timestep.obs.shape[0]),
                                        timestep.done)
        return self.policy.head.params(features, self.actor_avail(timestep))

    def critic_values(self, critic_in, memory, starts) -> tuple[torch.Tensor, torch.Tensor]:
        values, memory = self.critic.step(critic_in, memory, starts)
        values = self.value_normalizer.denormalize(values)
        return values.expand(*values.shape[:-1], self.n_learners), memory

    @torch.no_grad()
    def collect(self, env: BatchedEnv, timestep: TimeStep) -> tuple[RolloutStorage, TimeStep, list[torch.Tensor]]:
        storage = RolloutStorage(self.config.rollout_length)
        finished_returns = []
        recurrent = self.config.recurrent
        for t in range(self.config.rollout_length):
            starts = timestep.done  # a done step's observation is the first of the copy's next episode
            step = self.policy_step(timestep, self.actor_memory, False)
            critic_in = self.critic_inputs(timestep.obs, timestep.state, step.critic_context)
            values, next_critic_memory = self.critic_values(critic_in, self.critic_memory, starts)
            nxt = env.step(self.env_actions(step.actions))
            # V(final state) for copies whose episode was cut short; replaced below otherwise.
            final_values = torch.zeros_like(values)
            if nxt.truncated.any():
                no_starts = torch.zeros_like(starts)
                context = self.bootstrap_context(nxt.final_obs, step.memory, no_starts)
                final_values = self.critic_values(self.critic_inputs(nxt.final_obs, nxt.final_state, context),
                                                  next_critic_memory, no_starts)[0]
            storage.insert(
                t, actor_in=step.actor_in, critic_in=critic_in, avail=step.avail,
                actions=step.actions, log_probs=step.log_probs, values=values,
                rewards=self.learning_rewards(nxt.reward), final_values=final_values,
                terminated=nxt.terminated, episode_end=nxt.done, starts=starts,
                actor_memory=self.actor_memory if recurrent else None,
                critic_memory=self.critic_memory if recurrent else None,
            )
            self.actor_memory, self.critic_memory = step.memory, next_critic_memory
            finished_returns.append(nxt.episode_return[nxt.done])
            timestep = nxt
        context = self.bootstrap_context(timestep.obs, self.actor_memory, timestep.done)
        last_values = self.critic_values(self.critic_inputs(timestep.obs, timestep.state, context), self.critic_memory,
                                         timestep.done)[0]
        ended = storage["episode_end"].unsqueeze(-1)
        following = torch.cat([storage["values"][1:], last_values.unsqueeze(0)])
        storage.fields["next_values"] = torch.where(ended, storage["final_values"], following)
        return storage, timestep, finished_returns

    def learning_rewards(self, reward: torch.Tensor) -> torch.Tensor:
        """`[B, L]` rewards the learners learn from. Team tasks already give every agent the team reward."""
        if self.config.learning_reward == "team" and self.spec.reward_mode == "private":
            # The cooperative objective is the team return, the sum of private rewards (AS 3).
            return reward.sum(dim=-1, keepdim=True).expand_as(reward)
        return reward

    def advantages(self, storage: RolloutStorage) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-learner advantages and value targets, `[T, B, L]` (GAE on each learner's reward)."""
        broadcast = lambda flag: flag.unsqueeze(-1).expand(-1, -1, self.n_learners)  # noqa: E731
        return compute_gae(storage["rewards"], storage["values"], storage["next_values"],
                           broadcast(storage["terminated"]), broadcast(storage["episode_end"]),
                           self.config.gamma, self.config.gae_lambda)

    def update(self, storage: RolloutStorage) -> dict[str, float]:
        cfg = self.config
        advantages, returns = self.advantages(storage)
        self.value_normalizer.update(returns)
        if cfg.normalize_advantages:
            advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
        storage.fields["advantages"] = self.shape_advantages(advantages)
        storage.fields["returns"] = returns
        batch = storage.sequences(["actor_in", "critic_in", "avail", "actions", "log_probs", "values", "advantages",
                                   "returns", "starts", "actor_memory", "critic_memory"],
                                  cfg.chunk_length if cfg.recurrent else 1)
        self._anneal_learning_rates()
        losses = self.update_critic(batch)
        losses.update(self.update_actor(batch))
        return losses

    def minibatches(self, batch: dict[str, torch.Tensor]):
        """`ppo_epochs` random partitions of the sequences into `num_minibatches` minibatches."""
        n_sequences = batch["actions"].shape[1]
        for _ in range(self.config.ppo_epochs):
            for idx in minibatch_indices(n_sequences, self.config.num_minibatches, self.device):
                yield {k: v[:, idx] for k, v in batch.items()}

    def first_memory(self, mb: dict[str, torch.Tensor], name: str, width: int, module) -> torch.Tensor:
        """The memory `[S, width, H]` at each chunk's first step (empty for feed-forward networks)."""
        if name in mb:
            return mb[name][0]
        return torch.zeros(mb["starts"].shape[1], width, module.memory_size, device=self.device)

    def update_critic(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        norm, total, count = self.value_normalizer, 0.0, 0
        for mb in self.minibatches(batch):
            memory = self.first_memory(mb, "critic_memory", self.critic_width, self.critic)
            values = self.critic.sequence_values(mb["critic_in"], memory, mb["starts"])  # [C, S, 1 or L]
            loss = value_loss(values, norm.normalize(mb["values"]), norm.normalize(mb["returns"]),
                              self.config.value_clip_eps)
            self.clipped_step(self.critic_optimizer, self.critic, loss)
            total, count = total + loss.item(), count + 1
        return {"value_loss": total / count}

    def sequence_params(self, mb: dict[str, torch.Tensor], agent: int | None = None) -> torch.Tensor:
        """The policy's distribution parameters on a minibatch (one agent's with `agent=i`)."""
        memory = self.first_memory(mb, "actor_memory", self.n_learners, self.policy)
        inputs, avail = mb["actor_in"], mb.get("avail")
        if agent is not None:
            inputs, memory = inputs.select(2, agent), memory.select(1, agent)
            avail = None if avail is None else avail.select(2, agent)
        return self.policy.sequence_params(inputs, avail, memory, mb["starts"], agent)

    def update_actor(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        """Every learner at once: PPO's clipped surrogate (MAPPO, IPPO)."""
        cfg, head = self.config, self.policy.head
        totals, count = {"policy_loss": 0.0, "entropy": 0.0}, 0
        for mb in self.minibatches(batch):
            params = self.sequence_params(mb)
            entropy = head.entropy(params).mean()
            loss = ppo_clip_loss(head.log_prob(params, mb["actions"]), mb["log_probs"], mb["advantages"], cfg.clip_eps)
            self.clipped_step(self.actor_optimizer, self.policy, loss - cfg.entropy_coef * entropy)
            totals["policy_loss"] += loss.item()
            totals["entropy"] += entropy.item()
            count += 1
        return {k: v / count for k, v in totals.items()}

    def clipped_step(self, optimizer: Adam, module: torch.nn.Module, loss: torch.Tensor, **step_args) -> None:
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(module.parameters(), self.config.max_grad_norm)
        optimizer.step(**step_args)

    def _anneal_learning_rates(self) -> None:
        if not self.config.lr_annealing:
            return
        if self.total_env_steps is None:
            raise RuntimeError("lr_annealing needs the run's budget: call set_budget(total_env_steps) first")
        remaining = max(0.0, 1.0 - self.env_steps_done / self.total_env_steps)
        self.actor_optimizer.lr = self.config.lr_actor * remaining
        self.critic_optimizer.lr = self.config.lr_critic * remaining

    def train_iteration(self, env: BatchedEnv, timestep: TimeStep) -> IterationResult:
        storage, timestep, finished = self.collect(env, timestep)
        losses = self.update(storage)
        self.env_steps_done += self.steps_per_iteration
        return IterationResult(timestep, self.steps_per_iteration, torch.cat(finished), losses)

    def state_dict(self) -> dict:
        return {
            "policy": self.policy.state_dict(),
            "critic": self.critic.state_dict(),
            "value_normalizer": self.value_normalizer.state_dict(),
            "actor_optimizer": self.actor_optimizer.state_dict(),
            "critic_optimizer": self.critic_optimizer.state_dict(),
            "actor_memory": self.actor_memory,
            "critic_memory": self.critic_memory,
            "env_steps_done": self.env_steps_done,
        }

    def load_state_dict(self, state: dict) -> None:
        self.policy.load_state_dict(state["policy"])
        self.critic.load_state_dict(state["critic"])
        self.value_normalizer.load_state_dict(state["value_normalizer"])
        self.actor_optimizer.load_state_dict(state["actor_optimizer"])
        self.critic_optimizer.load_state_dict(state["critic_optimizer"])
        self.actor_memory, self.critic_memory = state["actor_memory"], state["critic_memory"]
        self.env_steps_done = state["env_steps_done"]
