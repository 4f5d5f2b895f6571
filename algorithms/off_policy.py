"""The off-policy family's shared parts: its config, the replay learner and the driver's contract.

Every member (MADDPG, HATD3, AC-TD3; BN's MADDPG after them) is HARL's off-policy loop (Zhong et al. 2024,
`OffPolicyBaseRunner`), the setup ACPO App. I/O follows for MA-MuJoCo: `n_envs` copies step together; the first
`warmup_steps` act uniformly at random, then deterministic actors plus Gaussian exploration noise; every
transition goes to a replay buffer; every `train_interval` steps of each copy the learner takes
`update_per_train x train_interval` gradient steps on sampled n-step transitions. Members differ in their
networks and their update (critic targets, how the actors climb the critics), so a method file holds those and
`OffPolicyLearner` holds the rest: replay, collection, warm-up and the step counters. No hooks: a member calls
the learner's pieces from its own constructor and update.

Seed batches (docs/architecture.md): a member built with `n_seeds` K (K = 1 is a solo run, on the same code path)
holds K seeds' networks (`td3.DeterministicActor`, `td3.QEnsemble` with `n_seeds`), acts on the K * n_envs
seed-major copies of a `SeedBatch`, keeps one replay ring per seed and takes each seed's draws from its own streams:
`learner.streams` for collection (warm-up uniforms, exploration noise), `learner.update_streams` for the update
(TD3's target smoothing, HATD3's agent orders), the replay's for sampling. Every seed steps, trains and warms up at
the same counts (one env step per copy per step, the same gradient steps), its losses are its own (`[K]`, summed
for one backward: seed k's weights get exactly seed k's gradient), and Adam and the Polyak updates are elementwise.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable
from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, Field

from algorithms.base import Algorithm, IterationResult, seed_results
from algorithms.blocks.parts import load_parts, state_of
from algorithms.blocks.seed_streams import SeedStreams
from algorithms.blocks.td3 import explore, uniform_actions
from algorithms.blocks.transition_replay import TransitionReplay
from environments.base import BatchedEnv, EnvSpec, TimeStep, team_return

HARL = "HARL (Zhong et al. 2024) harl/configs/algos_cfgs/{maddpg,hatd3}.yaml, commit 60efde1"


class OffPolicyConfig(BaseModel):
    """Hyperparameters every off-policy member shares. Defaults: HARL's MADDPG/HATD3 configs (the MA-MuJoCo setup of
    Zhong et al. 2024, which ACPO App. I says it uses for every baseline there)."""

    model_config = ConfigDict(extra="forbid")
    n_envs: int = Field(10, ge=1, description=f"batched copies ({HARL}: n_rollout_threads 10)")
    buffer_size: int = Field(1_000_000, ge=1, description=f"replay capacity in transitions ({HARL})")
    batch_size: int = Field(1000, ge=1, description=f"transitions per gradient step ({HARL})")
    warmup_steps: int = Field(10000, ge=0, description=f"env steps of uniform random actions first ({HARL})")
    train_interval: int = Field(50, ge=1, description=f"steps of every copy between training rounds ({HARL})")
    update_per_train: float = Field(
        1.0, gt=0, description=f"gradient steps per round = update_per_train x train_interval ({HARL})")
    gamma: float = Field(0.99, ge=0, le=1, description=f"{HARL}; ACPO Table 3 (MA-MuJoCo)")
    n_step: int = Field(1, ge=1, description=f"n-step returns (HARL n_step, {HARL}: 1)")
    polyak: float = Field(0.005, gt=0, le=1, description=f"target networks' soft-update rate ({HARL})")
    lr: float = Field(5e-4, gt=0, description=f"actor learning rate, Adam ({HARL})")
    critic_lr: float = Field(1e-3, gt=0, description=f"critic learning rate, Adam ({HARL})")
    hidden_sizes: list[int] = Field(default_factory=lambda: [128, 128], min_length=1,
                                    description=f"actor and critic MLP widths ({HARL})")
    activation: Literal["relu", "tanh", "elu"] = Field("relu", description=f"{HARL}: relu")
    expl_noise: float = Field(0.1, ge=0, description=f"exploration noise std in half box widths ({HARL})")
    share_parameters: bool = Field(False, description=f"one actor network for all agents ({HARL}: share_param false)")
    agent_id_input: bool = Field(True, description="a one-hot agent id as actor input when parameters are shared")

    @property
    def updates_per_iteration(self) -> int:
        # HARL: int(update_per_train * train_interval); rounded here so that a ratio such as 1000 / 600 gives 1000
        # (HARL's own values, 1 and 0.5 of 50, are exact either way).
        return max(1, round(self.update_per_train * self.train_interval))


class TD3Config(OffPolicyConfig):
    """TD3's machinery (Fujimoto et al. 2018): twin critics, target policy smoothing, delayed actor updates."""

    policy_noise: float = Field(0.2, ge=0, description=f"target smoothing noise std, half box widths ({HARL}; TD3)")
    noise_clip: float = Field(0.5, ge=0, description=f"target smoothing noise clip, half box widths ({HARL}; TD3)")
    policy_freq: int = Field(2, ge=1, description=f"critic steps per actor and target update ({HARL}; TD3 d = 2)")


def transition_fields(spec: EnvSpec, extra: dict[str, tuple[tuple[int, ...], torch.dtype]] | None = None):
    """What one transition of `spec` stores (continuous actions), plus a method's own per-step fields."""
    n, f32 = spec.n_agents, torch.float32
    return {"obs": ((n, spec.obs_dim), f32), "state": ((spec.state_dim,), f32),
            "actions": ((n, spec.action_dim), f32), "reward": ((), f32), "terminated": ((), torch.bool),
            "done": ((), torch.bool), "next_obs": ((n, spec.obs_dim), f32), "next_state": ((spec.state_dim,), f32),
            **(extra or {})}


class OffPolicyLearner:
    """Replay, collection (warm-up, exploration noise) and the step counters of one off-policy run of `n_seeds`
    seeds (the counters are the same for every seed)."""

    def __init__(self, spec: EnvSpec, config: OffPolicyConfig, device: torch.device,
                 extra_fields: dict[str, tuple[tuple[int, ...], torch.dtype]] | None = None, n_seeds: int = 1):
        if spec.discrete:
            raise ValueError(f"{spec.name}: the off-policy family has deterministic actors on continuous actions; "
                             "this task's actions are discrete")
        self.spec, self.config, self.device, self.n_seeds = spec, config, device, n_seeds
        self.replay = TransitionReplay(config.buffer_size, config.n_envs, transition_fields(spec, extra_fields),
                                       device, n_seeds)
        self.streams = SeedStreams(n_seeds, device)  # collection: warm-up uniforms, exploration noise
        self.update_streams = SeedStreams(n_seeds, device)  # the members' updates: target smoothing, agent orders
        self.env_steps = 0  # training steps so far, per seed (the warm-up's clock)
        self.updates = 0  # gradient steps so far (TD3's delayed-update clock)

    @property
    def warming_up(self) -> bool:
        return self.env_steps < self.config.warmup_steps

    def per_seed(self, x: torch.Tensor) -> tuple[int, ...]:
        """The shape of one seed's block of a seed-major `[K * B, ...]` tensor."""
        return (x.shape[0] // self.n_seeds, *x.shape[1:])

    def behaviour(self, actions: torch.Tensor) -> torch.Tensor:
        """What the agents play while training: uniform during the warm-up, then mu + exploration noise; each seed's
        draws from its own stream (`actions [K * B, N, A]`)."""
        spec = self.spec
        if self.warming_up:
            return uniform_actions(tuple(actions.shape), spec.action_low, spec.action_high, actions.device,
                                   self.streams.uniform(self.per_seed(actions)).flatten(0, 1).to(actions.device))
        return explore(actions, self.config.expl_noise, spec.action_low, spec.action_high,
                       self.streams.normal(self.per_seed(actions)).flatten(0, 1).to(actions.device))

    def update_normals(self, like: torch.Tensor) -> torch.Tensor:
        """Standard normals shaped like the seed-major `like`, each seed's block from its update stream."""
        return self.update_streams.normal(self.per_seed(like)).flatten(0, 1).to(like.device)

    def collect(self, env: BatchedEnv, timestep: TimeStep,
                policy: Callable[[TimeStep], tuple[torch.Tensor, dict[str, torch.Tensor]]]) -> IterationResult:
        """`train_interval` steps of every copy (`K * n_envs` seed-major ones); `policy` gives the greedy actions
        `[K * B, N, A]` and the method's own per-step fields (stored with the transition). Returns what the driver
        records, each seed's part in `seeds` when K > 1 (losses filled later, `with_losses`)."""
        ended, returns = [], []
        for _ in range(self.config.train_interval):
            with torch.no_grad():
                greedy, extra = policy(timestep)
            actions = self.behaviour(greedy)
            after = env.step(actions)
            self.replay.insert({"obs": timestep.obs, "state": timestep.state, "actions": actions,
                                # contiguous: a solo task's team reward is one value expanded over the agents
                                # (stride 0), a batch's is concatenated; their means would round differently
                                "reward": team_return(after.reward.contiguous(), self.spec.reward_mode),
                                "terminated": after.terminated, "done": after.done,
                                "next_obs": after.final_obs, "next_state": after.final_state, **extra})
            self.env_steps += self.config.n_envs
            ended.append(after.done)
            returns.append(after.episode_return)
            timestep = after
        return seed_results(timestep, returns, ended, self.n_seeds, self.config.train_interval * self.config.n_envs)

    def with_losses(self, result: IterationResult, losses: dict[str, torch.Tensor]) -> IterationResult:
        """`result` with each seed's statistics of the iteration's last update (`[K]` each)."""
        values = {name: value.reshape(-1).tolist() for name, value in losses.items()}
        for k, part in enumerate(result.seeds or [result]):
            part.losses = {name: v[k] for name, v in values.items()}
        if result.seeds:
            result.losses = {name: sum(v) / len(v) for name, v in values.items()}
        return result

    def sample(self) -> dict[str, torch.Tensor]:
        c = self.config
        return self.replay.sample(c.batch_size, c.n_step, c.gamma)

    def state_dict(self) -> dict:
        return {"replay": self.replay.state_dict(), "env_steps": self.env_steps, "updates": self.updates,
                "streams": self.streams.state_dict(), "update_streams": self.update_streams.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.replay.load_state_dict(state["replay"])
        self.env_steps, self.updates = int(state["env_steps"]), int(state["updates"])
        self.streams.load_state_dict(state["streams"])
        self.update_streams.load_state_dict(state["update_streams"])


def actor_inputs(obs: torch.Tensor, config: OffPolicyConfig) -> torch.Tensor:
    """Each agent's actor input: its observation, plus its one-hot id when one network serves every agent."""
    if not (config.share_parameters and config.agent_id_input):
        return obs
    n = obs.shape[-2]
    return torch.cat([obs, torch.eye(n, dtype=obs.dtype, device=obs.device).expand(*obs.shape[:-1], n)], dim=-1)


class OffPolicyContract(Algorithm):
    """The driver's contract (algorithms/base.py) for a member built on `self.learner` (`OffPolicyLearner`) and its
    networks and optimizers `self.parts` (each with state_dict/load_state_dict), written once. A member writes
    `policy` (its greedy joint action and the fields it stores) and `update` (one gradient step on a sample);
    an iteration is HARL's training round: collect `train_interval` steps, then `updates_per_iteration` steps
    once the warm-up is over.

    A member takes `n_seeds` (K, default 1: a solo run) and builds its networks and learner with it; `policy` then
    sees the `K * B` seed-major copies and `update` a `[K * M, ...]` seed-major sample."""

    learner: OffPolicyLearner
    parts: tuple = ()

    def __init__(self, spec: EnvSpec, config: OffPolicyConfig, device: torch.device, n_seeds: int = 1):
        super().__init__(spec, config, device)
        if n_seeds < 1:
            raise ValueError(f"n_seeds must be >= 1, got {n_seeds}")
        self.n_seeds = n_seeds

    @abstractmethod
    def policy(self, timestep: TimeStep) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Greedy actions `[K * B, N, A]` of every copy and the method's extra per-step fields (for the replay)."""

    @abstractmethod
    def update(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """One gradient step on a sampled batch of n-step transitions; returns its statistics, `[K]` each."""

    def train_iteration(self, env: BatchedEnv, timestep: TimeStep) -> IterationResult:
        result = self.learner.collect(env, timestep, self.policy)
        losses: dict[str, torch.Tensor] = {}
        if not self.learner.warming_up:
            for _ in range(self.config.updates_per_iteration):
                losses = self.update(self.learner.sample())
                self.learner.updates += 1
        return self.learner.with_losses(result, losses)

    @property
    def n_envs(self) -> int:
        return self.config.n_envs

    @property
    def steps_per_iteration(self) -> int:
        return self.config.train_interval * self.config.n_envs

    def initial_memory(self, n_envs: int) -> None:
        return None  # feed-forward actors

    @torch.no_grad()
    def act(self, timestep: TimeStep, memory: None, deterministic: bool) -> tuple[torch.Tensor, None]:
        actions, _ = self.policy(timestep)
        if not deterministic:  # (not training: rendering's stochastic rollouts draw from the global RNG)
            actions = explore(actions, self.config.expl_noise, self.spec.action_low, self.spec.action_high)
        return actions, None

    def state_dict(self) -> dict:
        return state_of(self.learner, *self.parts)

    def load_state_dict(self, state: dict) -> None:
        load_parts(state, self.learner, *self.parts)
