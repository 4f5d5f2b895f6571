"""MADDPG: multi-agent deep deterministic policy gradient (Lowe et al. 2017, Alg. 1), as HARL runs it on
cooperative tasks (Zhong et al. 2024, `OffPolicyMARunner` + `ContinuousQCritic`): one centralized critic
Q(s, a_1..a_N) on the team reward (with a team reward every agent's critic of Alg. 1 has the same target, so HARL
keeps one), decentralized deterministic actors mu_i(o_i).

Per gradient step (Alg. 1, lines 12-15):
  critic: y = r^(n) + gamma^k Q'(s', mu'_1(o'_1), .., mu'_N(o'_N)), minimize (Q(s, a) - y)^2;
  actors: each agent ascends Q(s, a_1, .., mu_i(o_i), .., a_N), the other agents' actions from the sample (eq. 6);
  targets: Polyak averaging, theta' <- (1 - tau) theta' + tau theta (line 16).
All agents' policy gradients come from one critic pass over N joint actions per sample (`with_action`).
`actor_others_actions: current` is BenchMARL's reading instead (torchrl `DDPGLoss.loss_actor`, which BenchMARL 1.5.2's
`Maddpg` uses: one critic pass on every agent's current-policy action, -Q(s, mu_1(o_1), .., mu_N(o_N))); it exists
so that benchmarks/maddpg_vs_benchmarl.py can run both sides with the same update; the default is the paper's.

`self.actor` is a part: a method that acts differently (BN's DAG actors) builds its own and reuses the critic
pieces (`maddpg_critic_loss`, `maddpg_actor_loss`).

Seed batches (off_policy.py): K seeds' networks, seed-major samples `[K * M, ...]`, each loss per seed (`[K]`).
"""

from __future__ import annotations

import copy
from typing import Literal

import torch
from pydantic import Field

from algorithms.blocks.adam import Adam
from algorithms.blocks.parts import Named
from algorithms.blocks.q_targets import soft_update
from algorithms.blocks.td3 import (
    DeterministicActor,
    QEnsemble,
    centralized_input,
    critic_loss,
    fusable,
    seed_means,
    summed_agent_means,
    with_action,
)
from algorithms.off_policy import OffPolicyConfig, OffPolicyContract, OffPolicyLearner, actor_inputs
from environments.base import EnvSpec, TimeStep


def maddpg_critic_loss(critic: QEnsemble, target_critic: QEnsemble, batch: dict[str, torch.Tensor],
                       next_actions: torch.Tensor, n_seeds: int = 1) -> torch.Tensor:
    """Alg. 1 line 13 on n-step samples: (Q(s, a) - [r^(n) + gamma^k Q'(s', a')])^2, a' the target actors'; each
    seed's mean over its own samples, `[K]`."""
    with torch.no_grad():
        next_q = target_critic(centralized_input(batch["next_state"], next_actions))[..., 0]
        targets = batch["reward"] + batch["discount"] * next_q
    return critic_loss(critic(centralized_input(batch["state"], batch["actions"])), targets, n_seeds)


def maddpg_actor_loss(critic: QEnsemble, state: torch.Tensor, actions: torch.Tensor,
                      own: torch.Tensor, others: Literal["sampled", "current"] = "sampled",
                      n_seeds: int = 1) -> torch.Tensor:
    """Alg. 1 line 14 (eq. 6) for every agent at once: -Q(s, a_1, .., mu_i(o_i), .., a_N) averaged over the batch,
    summed over agents (each agent's actor receives only its own term's gradient). Per seed of the seed-major
    samples `[K * M, ...]`: `[K]`.

    `others="current"` (BenchMARL / torchrl `DDPGLoss`): the other agents' actions are their current policies'
    too, so every agent's term is the same joint action and one critic pass serves all: -Q(s, mu(o)) averaged
    over the batch. Its gradient is the sum of the agents' terms' gradients (agent i's term, the others' actions
    held fixed, differentiates only through a_i), so the summed loss's gradient is kept; its value is one term's."""
    if others == "current":
        return -seed_means(critic(centralized_input(state, own))[..., 0], n_seeds)
    q = critic(centralized_input(state, with_action(actions, own)))[..., 0]  # [K * M, N]
    return -summed_agent_means(q, n_seeds)


class MADDPGConfig(OffPolicyConfig):
    actor_others_actions: Literal["sampled", "current"] = Field(
        "sampled", description="the other agents' actions in an agent's actor loss: from the sample (Lowe et al. "
        "2017 eq. 6; HARL) or their current policies' (BenchMARL 1.5.2 / torchrl DDPGLoss.loss_actor)")


class MADDPG(OffPolicyContract):
    Config = MADDPGConfig
    config: MADDPGConfig

    def __init__(self, spec: EnvSpec, config: OffPolicyConfig, device: torch.device, n_seeds: int = 1):
        if not isinstance(config, MADDPGConfig):  # the family's plain config: MADDPG with the paper's actor loss
            config = MADDPGConfig(**config.model_dump())
        super().__init__(spec, config, device, n_seeds)
        n, shared = spec.n_agents, config.share_parameters
        in_features = spec.obs_dim + (n if shared and config.agent_id_input else 0)
        self.actor = DeterministicActor(1 if shared else n, in_features, config.hidden_sizes, config.activation,
                                        spec.action_dim, spec.action_low, spec.action_high, n_seeds).to(device)
        self.critic = QEnsemble(1, spec.state_dim + n * spec.action_dim, config.hidden_sizes,
                                config.activation, n_seeds).to(device)
        self.target_actor = copy.deepcopy(self.actor).requires_grad_(False)
        self.target_critic = copy.deepcopy(self.critic).requires_grad_(False)
        # One Adam over every agent's weights equals one Adam per agent (HARL): Adam is elementwise and every
        # agent steps at every update. Fused kernels (one per tensor instead of ~6) where each seed stays bitwise
        # its solo run (`fusable`): issue 15, ~1000 small steps per iteration where kernel launches weigh.
        self.actor_optimizer = Adam(self.actor.parameters(), lr=config.lr, fused=fusable(self.actor, n_seeds))
        self.critic_optimizer = Adam(self.critic.parameters(), lr=config.critic_lr,
                                     fused=fusable(self.critic, n_seeds))
        self.learner = OffPolicyLearner(spec, config, device, n_seeds=n_seeds)
        self.parts = (Named(actor=self.actor, critic=self.critic, target_actor=self.target_actor,
                            target_critic=self.target_critic, actor_optimizer=self.actor_optimizer,
                            critic_optimizer=self.critic_optimizer),)

    def policy(self, timestep: TimeStep) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        return self.actor(actor_inputs(timestep.obs, self.config)), {}

    def update(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        cfg, k = self.config, self.n_seeds
        # Critic (line 13): the target actors' actions at the window's last view.
        next_actions = self.target_actor(actor_inputs(batch["next_obs"], cfg))
        value_loss = maddpg_critic_loss(self.critic, self.target_critic, batch, next_actions, k)
        self.critic_optimizer.zero_grad()
        value_loss.sum().backward()  # the seeds' losses summed: seed k's weights get seed k's gradient
        self.critic_optimizer.step()
        # Actors (line 14): each agent's deterministic policy gradient through the updated critic.
        own = self.actor(actor_inputs(batch["obs"], cfg))
        policy_loss = maddpg_actor_loss(self.critic, batch["state"], batch["actions"], own, cfg.actor_others_actions,
                                        k)
        self.actor_optimizer.zero_grad()
        policy_loss.sum().backward(inputs=list(self.actor.parameters()))
        self.actor_optimizer.step()
        # Targets (line 16).
        soft_update(self.target_actor, self.actor, cfg.polyak)
        soft_update(self.target_critic, self.critic, cfg.polyak)
        per_agent = self.spec.n_agents if cfg.actor_others_actions == "sampled" else 1  # "current": one term's value
        return {"value_loss": value_loss.detach(), "policy_loss": policy_loss.detach().double() / per_agent}
