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
from algorithms.blocks.episode_collection import Collected, EpisodeCollection
from algorithms.blocks.exploration import epsilon_greedy, exploration_uniforms, linear_epsilons
from algorithms.blocks.ppo_loss import clip_grad_norm_per_seed
from algorithms.blocks.q_agents import AgentQNetwork
from algorithms.blocks.q_targets import hard_update, masked_argmax, soft_update
from algorithms.blocks.replay import EpisodeBuffer
from algorithms.blocks.rmsprop import RMSprop
from algorithms.blocks.seed_streams import SeedStreams
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
    memory, episode replay filled by a batched collector, and the optimizer with target updates.

    Seed batches (docs/architecture.md): `n_seeds` K seeds at once (K = 1: a solo run, the same code). The method
    builds its `networks` with the same `n_seeds`; every tensor is seed-major (copies, episodes, parameters, the
    step counts `env_steps [K]`); each seed explores with its own epsilon and stream, keeps its own replay ring and
    finishes its own round of episodes (`episode_collection`: a seed that is done waits, untouched). Rounds are
    the same for every seed, and so are the gradient steps: updates start once every seed must hold a batch
    (`ready`), each seed's loss is its own (`[K]`, summed: seed k's weights get exactly seed k's gradient), its
    gradient norm clipped on its own; the optimizer is elementwise and the target updates come at the same step
    counts for every seed."""

    def __init__(self, spec: EnvSpec, config: ValueBasedConfig, device: torch.device,
                 networks: dict[str, nn.Module] | None = None, observe_state: bool = False, n_seeds: int = 1):
        self.spec, self.config, self.device, self.n_seeds = spec, config, device, n_seeds
        # observe_state: agents read the global state instead of their observation (LAN 5.4, IQL without fog).
        self.observe_state = observe_state
        self.agents = AgentQNetwork(spec, config.hidden_sizes, config.activation, config.recurrent,
                                    config.rnn_hidden_size, config.share_parameters, config.agent_id_input,
                                    config.last_action_input, obs_dim=spec.state_dim if observe_state else spec.obs_dim,
                                    n_seeds=n_seeds).to(device)
        self.online: dict[str, nn.Module] = {"agents": self.agents, **{k: v.to(device) for k, v in
                                                                        (networks or {}).items()}}
        self.target = {name: copy.deepcopy(net).requires_grad_(False) for name, net in self.online.items()}
        self.params = [p for net in self.online.values() for p in net.parameters()]
        self.optimizer = (Adam(self.params, lr=config.lr) if config.optimizer == "adam" else
                          RMSprop(self.params, lr=config.lr, alpha=config.optim_alpha, eps=config.optim_eps))
        self.buffer = EpisodeBuffer(config.buffer_episodes, spec, device, n_seeds)
        self.collector = EpisodeCollection(spec, config.n_envs, device, n_seeds)
        self.streams = SeedStreams(n_seeds, device)  # exploration
        self.memory = self.initial_memory(config.n_envs)
        self.action_eye = torch.eye(spec.n_actions, device=device)
        self.env_steps = torch.zeros(n_seeds, dtype=torch.long)  # each seed's training steps: its epsilon's clock
        self.rounds = 0  # collection rounds (iterations), the same for every seed
        self.updates = 0

    # --- acting -------------------------------------------------------------------------------------
    def epsilons(self) -> torch.Tensor:
        """Every seed's exploration rate now, `[K]` (float64; acting compares in float32)."""
        c = self.config
        return linear_epsilons(self.env_steps, c.epsilon_start, c.epsilon_finish, c.epsilon_anneal_steps)

    def initial_memory(self, n_envs: int) -> torch.Tensor:
        """GRU state and one-hot last action of every agent of `n_envs` copies per seed: `[K * n_envs, N, H + A]`."""
        return torch.zeros(self.n_seeds * n_envs, self.spec.n_agents, self.agents.memory_size + self.spec.n_actions,
                           device=self.device)

    def agent_obs(self, obs: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        if not self.observe_state:
            return obs
        return state.unsqueeze(-2).expand(*obs.shape[:-1], state.shape[-1])

    @torch.inference_mode()
    def act(self, timestep: TimeStep, memory: torch.Tensor, explore: bool,
            active: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Actions `[K * B, N]` (epsilon-greedy with `explore`, else greedy) and the next memory. `active` `[K]`: only
        those seeds act (draw from their streams, move their memory); None: every seed."""
        starts = timestep.done
        hidden, last = memory.split([self.agents.memory_size, self.spec.n_actions], dim=-1)
        if not bool(starts.any()):  # the common step: no memory to clear (clearing would multiply by one)
            starts = None
        else:
            last = last * (~starts).to(last.dtype).view(-1, 1, 1)  # an episode's first step has no last action
        q, hidden = self.agents.step(self.agent_obs(timestep.obs, timestep.state), last, hidden, starts)
        avail = timestep.avail_actions
        if explore:
            k = self.n_seeds
            epsilons = self.epsilons()
            playing = [True] * k if active is None else active.tolist()
            draw = [epsilon > 0 and on for epsilon, on in zip(epsilons.tolist(), playing, strict=True)]
            q = q.unflatten(0, (k, -1))  # [K, B, N, A]: each seed's rows with its own epsilon and stream
            n = q[0].numel()
            uniforms = exploration_uniforms(self.streams, n + n // q.shape[-1], draw)
            noise, chance = uniforms[:, :n].view(q.shape), uniforms[:, n:].view(q.shape[:-1])
            actions = epsilon_greedy(q, None if avail is None else avail.unflatten(0, (k, -1)),
                                     epsilons.to(device=q.device, dtype=q.dtype).view(k, 1, 1),
                                     (noise, chance)).flatten(0, 1)
        else:
            actions = masked_argmax(q, avail)
        # one-hot rows of an identity matrix: F.one_hot's values, without its range check on every step
        memory_next = torch.cat([hidden, self.action_eye.to(hidden.dtype)[actions]], dim=-1)
        if active is not None:  # a waiting seed's memory stays where its solo run has it
            memory_next = torch.where(active.repeat_interleave(len(actions) // self.n_seeds).view(-1, 1, 1),
                                      memory_next, memory)
        return actions, memory_next

    # --- collecting ---------------------------------------------------------------------------------
    def collect(self, env: BatchedEnv, timestep: TimeStep) -> Collected:
        """One round: each seed's copies play on until n_envs of its episodes have finished (one, for LAN's single
        env); a seed that has them waits for the others."""
        n_envs = self.config.n_envs

        def explore(ts: TimeStep, active: torch.Tensor | None) -> torch.Tensor:
            actions, self.memory = self.act(ts, self.memory, True, active)
            self.env_steps += n_envs if active is None else n_envs * active.cpu().long()
            return actions

        collected = self.collector.collect(env, timestep, explore, self.buffer, n_envs)
        self.rounds += 1
        return collected

    def ready(self) -> bool:
        """Whether updates run: once every seed's ring holds a batch, which a round of n_envs episodes or more per
        seed guarantees after batch_episodes / n_envs rounds (the same round for every seed; with one env, the
        round the buffer first holds a batch, as PyMARL's `can_sample`)."""
        c = self.config
        return self.rounds * c.n_envs >= c.batch_episodes and c.buffer_episodes >= c.batch_episodes

    def batches(self):
        """`updates_per_episode` sampled batches of whole episodes, `[K * batch_episodes, T + 1, ...]` (none until
        `ready`)."""
        for _ in range(self.config.updates_per_episode):
            if not self.ready():
                return
            yield self.buffer.sample(self.config.batch_episodes, cut=False)

    def unroll(self, batch: dict[str, torch.Tensor], target: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """Q-values `[K * S, L + 1, N, A]` and hidden states of the online (or target) agents over `batch`."""
        agents = self.target["agents"] if target else self.agents
        return agents.unroll(self.agent_obs(batch["obs"], batch["state"]), batch["actions"])

    # --- learning -----------------------------------------------------------------------------------
    def step(self, losses: torch.Tensor) -> torch.Tensor:
        """One gradient step on every seed's loss (`[K]`; their sum is differentiated, each seed's gradient norm
        clipped on its own, LAN App. B), then the target networks' update. Returns the seeds' gradient norms."""
        self.optimizer.zero_grad()
        losses.sum().backward()
        grad_norms = clip_grad_norm_per_seed(self.params, self.config.max_grad_norm, self.n_seeds)
        self.optimizer.step()
        self.updates += 1
        tau = self.config.target_update_tau
        if tau is not None or self.updates % self.config.target_update_interval == 0:
            for name, net in self.online.items():
                soft_update(self.target[name], net, tau) if tau is not None else hard_update(self.target[name], net)
        return grad_norms

    def result(self, collected: Collected, statistics: dict[str, torch.Tensor]) -> IterationResult:
        """The driver's result: each seed's steps, returns and statistics (`[K]` each); one seed: its own."""
        values = {name: torch.as_tensor(value, device="cpu").reshape(-1).tolist() for name, value in statistics.items()}
        parts = [IterationResult(collected.timestep, steps, returns, {name: v[k] for name, v in values.items()})
                 for k, (steps, returns) in enumerate(zip(collected.env_steps, collected.episode_returns,
                                                           strict=True))]
        if self.n_seeds == 1:
            return parts[0]
        return IterationResult(collected.timestep, sum(collected.env_steps), torch.cat(collected.episode_returns),
                               {name: sum(v) / len(v) for name, v in values.items()}, seeds=parts)

    # --- checkpoints --------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {"online": {k: v.state_dict() for k, v in self.online.items()},
                "target": {k: v.state_dict() for k, v in self.target.items()},
                "optimizer": self.optimizer.state_dict(), "buffer": self.buffer.state_dict(),
                "collector": self.collector.state_dict(), "memory": self.memory.clone(),
                "streams": self.streams.state_dict(), "env_steps": self.env_steps.clone(),
                "rounds": self.rounds, "updates": self.updates}

    def load_state_dict(self, state: dict) -> None:
        for k, v in self.online.items():
            v.load_state_dict(state["online"][k])
            self.target[k].load_state_dict(state["target"][k])
        self.optimizer.load_state_dict(state["optimizer"])
        self.buffer.load_state_dict(state["buffer"])
        self.collector.load_state_dict(state["collector"])
        self.memory = state["memory"].clone()
        self.streams.load_state_dict(state["streams"])
        self.env_steps = state["env_steps"].clone()
        self.rounds, self.updates = int(state["rounds"]), int(state["updates"])


class ValueBasedContract(Algorithm):
    """The driver's contract (algorithms/base.py) for a member built on `self.learner` (`EpisodicQLearning`),
    written once: a method's constructor builds its networks (with `n_seeds`) and the learner, and it writes its
    TD loss, `update(batch)`, returning each statistic per seed (`[K]`). Acting is decentralized and
    epsilon-greedy on each agent's own network (greedy in evaluation); an iteration stores `n_envs` episodes per
    seed, then takes `updates_per_episode` gradient steps."""

    learner: EpisodicQLearning

    @abstractmethod
    def update(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """One gradient step of the method's loss on a batch of whole episodes; its statistics, `[K]` each."""

    def train_iteration(self, env: BatchedEnv, timestep: TimeStep) -> IterationResult:
        collected = self.learner.collect(env, timestep)  # epsilon-greedy episodes into the replay buffer
        statistics: dict[str, torch.Tensor] = {}
        for batch in self.learner.batches():
            statistics = self.update(batch)
        return self.learner.result(collected, statistics)

    @property
    def n_seeds(self) -> int:
        return self.learner.n_seeds

    @property
    def n_envs(self) -> int:
        return self.config.n_envs

    @property
    def steps_per_iteration(self) -> int:  # at most: an iteration ends when n_envs episodes have finished
        return self.config.n_envs * self.spec.episode_limit

    def initial_memory(self, n_envs: int) -> torch.Tensor:
        return self.learner.initial_memory(n_envs)

    def act(self, timestep: TimeStep, memory: torch.Tensor, deterministic: bool) -> tuple[torch.Tensor, torch.Tensor]:
        return self.learner.act(timestep, memory, explore=not deterministic)

    def state_dict(self) -> dict:
        return self.learner.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.learner.load_state_dict(state)


def statistics(n_seeds: int, grad_norms: torch.Tensor, learner: EpisodicQLearning,
               **losses: torch.Tensor) -> dict[str, torch.Tensor]:
    """A member's update statistics, `[K]` each: its losses (detached), the gradient norms and the epsilons."""
    return {**{name: loss.detach().reshape(n_seeds) for name, loss in losses.items()}, "grad_norm": grad_norms,
            "epsilon": learner.epsilons()}
