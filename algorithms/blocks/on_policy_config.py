"""The on-policy family's hyperparameters (data, shared by every PPO-based method; methods add theirs by
subclassing the config, never the algorithm)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


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
