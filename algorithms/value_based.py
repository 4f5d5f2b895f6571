"""The value-based family's shared parts: its config and the episodic Q-learning loop pieces.

Every member (IQL, VDN, QMIX, QPLEX, QTRAN; LAN after them) is PyMARL's episodic scheme (Rashid et al.
2018, Alg. 1 in its appendix; LAN App. E, Alg. 1): act epsilon-greedily with recurrent agent networks,
store whole episodes, then sample a batch of episodes, unroll the online and target networks over them
and take a gradient step on a TD loss. The members differ only in that loss (how agent utilities become
the learning target), so each method file holds its networks and its loss, and `EpisodicQLearning`
holds the rest: agent network and its target copy, replay, collector, exploration, optimizer, target
updates, memory, checkpoint state. It is composed by the methods (no hooks to override).

How the rest of the family fits (issue 14): LAN's local advantages A_a(tau_a, .) are the agent network
(`AgentQNetwork`, acted on epsilon-greedily as any Q); its centralized value V(s, tau) is one more entry of
`networks` (target copy, optimizer and checkpoint come with it) reading the hidden states `unroll` returns
with the batch's obs, last actions, agent ids and state; eq. 3's targets are `greedy_next` on the target
advantages with the online ones choosing (double Q) plus the target V, through `lambda_returns` and
`masked_mse` with a per-agent trailing dim (as IQL's). LAN-mean subtracts the action mean (eq. 6). IQL without
fog (LAN 5.4) is `EpisodicQLearning(..., observe_state=True)`. VAST's sub-team mixers are `networks` entries.
"""

from __future__ import annotations

import copy
from abc import abstractmethod
from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from algorithms.base import Algorithm, IterationResult
from algorithms.blocks.adam import Adam
from algorithms.blocks.collector import EpisodeCollector
from algorithms.blocks.exploration import epsilon_greedy, linear_epsilon
from algorithms.blocks.q_agents import AgentQNetwork
from algorithms.blocks.q_targets import hard_update, soft_update
from algorithms.blocks.replay import EpisodeBuffer
from algorithms.blocks.rmsprop import RMSprop
from environments.base import BatchedEnv, EnvSpec, TimeStep

PYMARL = "PyMARL default (Rashid et al. 2018, src/config/default.yaml and algs/qmix.yaml)"


class ValueBasedConfig(BaseModel):
    """Hyperparameters every value-based member shares. Defaults: LAN App. B where it states them (its values
    are PyMARL's, 'consistent with the QMIX and QPLEX papers', LAN 5.1), else PyMARL's."""

    model_config = ConfigDict(extra="forbid")
    n_envs: int = Field(1, ge=1, description="batched copies; LAN 5.1 and PyMARL's episode runner: a single one")
    buffer_episodes: int = Field(5000, ge=1, description="replay capacity in episodes (LAN App. B: 5k)")
    batch_episodes: int = Field(32, ge=1, description="episodes per gradient step (LAN App. B: 32)")
    updates_per_episode: int = Field(
        1, ge=1, description="gradient steps after each round of n_envs episodes (PyMARL: 1; LAN App. B: 2)")
    epsilon_start: float = Field(1.0, ge=0, le=1, description="LAN App. B: from 1")
    epsilon_finish: float = Field(0.05, ge=0, le=1, description="LAN App. B: to 0.05")
    epsilon_anneal_steps: int = Field(50000, ge=0, description="env steps of linear annealing (LAN App. B: 50k)")
    gamma: float = Field(0.99, ge=0, le=1, description=PYMARL)
    td_lambda: float = Field(0.0, ge=0, le=1, description="0: one-step targets (LAN App. B: 'without TD(lambda)')")
    double_q: bool = Field(True, description=f"online network picks the next action ({PYMARL}; LAN eq. 3)")
    target_update_interval: int = Field(
        200, ge=1, description="gradient steps between hard target updates (LAN App. B: 200; PyMARL counts 200 "
                               "episodes, the same at one update per episode)")
    target_update_tau: float | None = Field(
        None, gt=0, le=1, description="soft (Polyak) target updates every step with this rate instead of hard ones")
    optimizer: Literal["rmsprop", "adam"] = Field("rmsprop", description=f"{PYMARL}: RMSprop; LAN App. B: Adam")
    lr: float = Field(5e-4, gt=0, description="LAN App. B and PyMARL: 5e-4")
    optim_alpha: float = Field(0.99, gt=0, lt=1, description=f"RMSprop's smoothing ({PYMARL})")
    optim_eps: float = Field(1e-5, gt=0, description=f"RMSprop's epsilon ({PYMARL})")
    max_grad_norm: float = Field(10.0, gt=0, description="LAN App. B: gradient norm clipped to 10 (PyMARL too)")
    hidden_sizes: list[int] = Field(default_factory=lambda: [64], min_length=1,
                                    description="LAN App. B: one 64-unit feed-forward layer before the GRU")
    activation: Literal["relu", "tanh", "elu"] = Field("relu", description="LAN App. B: ReLU (BN Table 3: ELU)")
    recurrent: bool = Field(True, description="a GRU after the feed-forward layer (LAN App. B; PyMARL's RNNAgent)")
    rnn_hidden_size: int = Field(64, ge=1, description="LAN App. B: a 64-unit GRU")
    share_parameters: bool = Field(True, description="one agent network for all agents (LAN App. B)")
    agent_id_input: bool = Field(True, description="the agent id as input (LAN App. B; PyMARL obs_agent_id)")
    last_action_input: bool = Field(True, description=f"the previous action as input ({PYMARL}: obs_last_action)")


class EpisodicQLearning:
    """Agent Q-networks (+ target copies of them and of the method's `networks`), epsilon-greedy acting with
    memory, episode replay filled by a batched collector, and the optimizer with target updates."""

    def __init__(self, spec: EnvSpec, config: ValueBasedConfig, device: torch.device,
                 networks: dict[str, nn.Module] | None = None, observe_state: bool = False):
        self.spec, self.config, self.device = spec, config, device
        # observe_state: agents read the global state instead of their observation (LAN 5.4, IQL without fog).
        self.observe_state = observe_state
        self.agents = AgentQNetwork(spec, config.hidden_sizes, config.activation, config.recurrent,
                                    config.rnn_hidden_size, config.share_parameters, config.agent_id_input,
                                    config.last_action_input,
                                    obs_dim=spec.state_dim if observe_state else spec.obs_dim).to(device)
        self.online: dict[str, nn.Module] = {"agents": self.agents, **{k: v.to(device) for k, v in
                                                                        (networks or {}).items()}}
        self.target = {name: copy.deepcopy(net).requires_grad_(False) for name, net in self.online.items()}
        self.params = [p for net in self.online.values() for p in net.parameters()]
        self.optimizer = (Adam(self.params, lr=config.lr) if config.optimizer == "adam" else
                          RMSprop(self.params, lr=config.lr, alpha=config.optim_alpha, eps=config.optim_eps))
        self.buffer = EpisodeBuffer(config.buffer_episodes, spec, device)
        self.collector = EpisodeCollector(spec, config.n_envs, device)
        self.memory = self.initial_memory(config.n_envs)
        self.action_eye = torch.eye(spec.n_actions, device=device)
        self.env_steps = 0  # training steps so far: the epsilon schedule's clock (PyMARL's t_env)
        self.updates = 0

    # --- acting -------------------------------------------------------------------------------------
    @property
    def epsilon(self) -> float:
        c = self.config
        return linear_epsilon(self.env_steps, c.epsilon_start, c.epsilon_finish, c.epsilon_anneal_steps)

    def initial_memory(self, n_envs: int) -> torch.Tensor:
        """GRU state and one-hot last action of every agent: `[n_envs, N, H + A]`."""
        return torch.zeros(n_envs, self.spec.n_agents, self.agents.memory_size + self.spec.n_actions,
                           device=self.device)

    def agent_obs(self, obs: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        if not self.observe_state:
            return obs
        return state.unsqueeze(-2).expand(*obs.shape[:-1], state.shape[-1])

    @torch.inference_mode()
    def act(self, timestep: TimeStep, memory: torch.Tensor, epsilon: float) -> tuple[torch.Tensor, torch.Tensor]:
        starts = timestep.done
        hidden, last = memory.split([self.agents.memory_size, self.spec.n_actions], dim=-1)
        if not bool(starts.any()):  # the common step: no memory to clear (clearing would multiply by one)
            starts = None
        else:
            last = last * (~starts).to(last.dtype).view(-1, 1, 1)  # an episode's first step has no last action
        q, hidden = self.agents.step(self.agent_obs(timestep.obs, timestep.state), last, hidden, starts)
        actions = epsilon_greedy(q, timestep.avail_actions, epsilon)
        # one-hot rows of an identity matrix: F.one_hot's values, without its range check on every step
        return actions, torch.cat([hidden, self.action_eye.to(hidden.dtype)[actions]], dim=-1)

    # --- collecting ---------------------------------------------------------------------------------
    def collect(self, env: BatchedEnv, timestep: TimeStep):
        """One round: every copy plays on until n_envs episodes have finished (one, for LAN's single env)."""
        def explore(ts: TimeStep) -> torch.Tensor:
            actions, self.memory = self.act(ts, self.memory, self.epsilon)
            self.env_steps += self.config.n_envs
            return actions

        return self.collector.collect(env, timestep, explore, self.buffer, self.config.n_envs)

    def batches(self):
        """`updates_per_episode` sampled batches of episodes (none until the buffer holds a batch)."""
        for _ in range(self.config.updates_per_episode):
            if not self.buffer.can_sample(self.config.batch_episodes):
                return
            yield self.buffer.sample(self.config.batch_episodes)

    def unroll(self, batch: dict[str, torch.Tensor], target: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """Q-values `[S, L + 1, N, A]` and hidden states of the online (or target) agents over `batch`."""
        agents = self.target["agents"] if target else self.agents
        return agents.unroll(self.agent_obs(batch["obs"], batch["state"]), batch["actions"])

    # --- learning -----------------------------------------------------------------------------------
    def optimize(self, loss: torch.Tensor) -> float:
        """One gradient step on `loss` (norm clipped, LAN App. B), then the target networks' update."""
        self.optimizer.zero_grad()
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(self.params, self.config.max_grad_norm)
        self.optimizer.step()
        self.updates += 1
        tau = self.config.target_update_tau
        if tau is not None or self.updates % self.config.target_update_interval == 0:
            for name, net in self.online.items():
                soft_update(self.target[name], net, tau) if tau is not None else hard_update(self.target[name], net)
        return float(grad_norm)

    def result(self, collected, losses: dict[str, float]) -> IterationResult:
        return IterationResult(collected.timestep, collected.env_steps, collected.episode_returns, losses)

    # --- checkpoints --------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {"online": {k: v.state_dict() for k, v in self.online.items()},
                "target": {k: v.state_dict() for k, v in self.target.items()},
                "optimizer": self.optimizer.state_dict(), "buffer": self.buffer.state_dict(),
                "collector": self.collector.state_dict(), "memory": self.memory.clone(),
                "env_steps": self.env_steps, "updates": self.updates}

    def load_state_dict(self, state: dict) -> None:
        for k, v in self.online.items():
            v.load_state_dict(state["online"][k])
            self.target[k].load_state_dict(state["target"][k])
        self.optimizer.load_state_dict(state["optimizer"])
        self.buffer.load_state_dict(state["buffer"])
        self.collector.load_state_dict(state["collector"])
        self.memory = state["memory"].clone()
        self.env_steps, self.updates = int(state["env_steps"]), int(state["updates"])


class ValueBasedContract(Algorithm):
    """The driver's contract (algorithms/base.py) for a member built on `self.learner` (`EpisodicQLearning`),
    written once: a method's constructor builds its networks and the learner, and it writes its TD loss,
    `update(batch)`. Acting is decentralized and epsilon-greedy on each agent's own network (greedy in
    evaluation); an iteration stores `n_envs` episodes, then takes `updates_per_episode` gradient steps."""

    learner: EpisodicQLearning

    @abstractmethod
    def update(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        """One gradient step of the method's loss on a batch of whole episodes; returns its statistics."""

    def train_iteration(self, env: BatchedEnv, timestep: TimeStep) -> IterationResult:
        collected = self.learner.collect(env, timestep)  # epsilon-greedy episodes into the replay buffer
        losses: dict[str, float] = {}
        for batch in self.learner.batches():
            losses = self.update(batch)
        return self.learner.result(collected, losses)

    @property
    def n_envs(self) -> int:
        return self.config.n_envs

    @property
    def steps_per_iteration(self) -> int:  # at most: an iteration ends when n_envs episodes have finished
        return self.config.n_envs * self.spec.episode_limit

    def initial_memory(self, n_envs: int) -> torch.Tensor:
        return self.learner.initial_memory(n_envs)

    def act(self, timestep: TimeStep, memory: torch.Tensor, deterministic: bool) -> tuple[torch.Tensor, torch.Tensor]:
        return self.learner.act(timestep, memory, 0.0 if deterministic else self.learner.epsilon)

    def state_dict(self) -> dict:
        return self.learner.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.learner.load_state_dict(state)
