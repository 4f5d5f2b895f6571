"""HATD3: heterogeneous-agent TD3 (Zhong et al. 2024, HARL; the off-policy member of the HAML family), as HARL
runs it (`OffPolicyHARunner` + `TwinContinuousQCritic`).

TD3's machinery (Fujimoto et al. 2018) on a centralized twin critic Q_1, Q_2(s, a_1..a_N):
  critic: y = r^(n) + gamma^k min_c Q'_c(s', a~'), a~' = the target actors' actions with clipped smoothing noise
          (TD3 eq. 14-15); both critics regress on y;
  every `policy_freq` critic steps (delayed updates, TD3 sec. 5.2): the actors one after another in a random
  order (HAML's sequential update): agent i_m ascends Q_1(s, mu_{i_1..i_{m-1}}^new(o), mu_{i_m}(o_{i_m}),
  mu_{i_{m+1}..}(o)) with the agents before it at their new policies and those after at their current ones
  (all deterministic, no noise); then Polyak updates of every target network.
With one agent this is TD3 (tests/test_off_policy.py checks it against a direct TD3 step).

Seed batches (off_policy.py): every seed draws its own order from the learner's update streams (as HAPPO does,
blocks/sequential_update.py); the loop runs over the N positions, and at position m seed k updates its own m-th
agent (`agent` a `[K]` tensor for the networks and `AgentwiseAdam`, rows gathered by `networks.agent_rows`).
"""

from __future__ import annotations

import copy

import torch
from pydantic import Field

from algorithms.blocks.adam import Adam, AgentwiseAdam
from algorithms.blocks.networks import agent_rows
from algorithms.blocks.parts import Named
from algorithms.blocks.q_targets import soft_update
from algorithms.blocks.td3 import (
    DeterministicActor,
    QEnsemble,
    centralized_input,
    clipped_double_q,
    critic_loss,
    fusable,
    seed_means,
    smooth_target,
)
from algorithms.off_policy import HARL, OffPolicyContract, OffPolicyLearner, TD3Config, actor_inputs
from environments.base import EnvSpec, TimeStep


class HATD3Config(TD3Config):
    fixed_order: bool = Field(False, description=f"update agents in index order instead of a random permutation "
                                                 f"each time ({HARL}: hatd3 fixed_order false)")


class HATD3(OffPolicyContract):
    Config = HATD3Config
    config: HATD3Config

    def __init__(self, spec: EnvSpec, config: HATD3Config, device: torch.device, n_seeds: int = 1):
        super().__init__(spec, config, device, n_seeds)
        n, shared = spec.n_agents, config.share_parameters
        in_features = spec.obs_dim + (n if shared and config.agent_id_input else 0)
        self.actor = DeterministicActor(1 if shared else n, in_features, config.hidden_sizes, config.activation,
                                        spec.action_dim, spec.action_low, spec.action_high, n_seeds).to(device)
        self.critic = QEnsemble(2, spec.state_dim + n * spec.action_dim, config.hidden_sizes,
                                config.activation, n_seeds).to(device)  # twin critics (TD3 sec. 4.2)
        self.target_actor = copy.deepcopy(self.actor).requires_grad_(False)
        self.target_critic = copy.deepcopy(self.critic).requires_grad_(False)
        # Agents step one at a time: each agent's rows of the weights have their own Adam moments and step count
        # (HARL: one optimizer per actor).
        self.actor_optimizer = (Adam(self.actor.parameters(), lr=config.lr, fused=fusable(self.actor, n_seeds))
                                if shared else
                                AgentwiseAdam(self.actor.parameters(), n, lr=config.lr))
        self.critic_optimizer = Adam(self.critic.parameters(), lr=config.critic_lr,
                                     fused=fusable(self.critic, n_seeds))  # as MADDPG's (issue 15)
        self.learner = OffPolicyLearner(spec, config, device, n_seeds=n_seeds)
        self.parts = (Named(actor=self.actor, critic=self.critic, target_actor=self.target_actor,
                            target_critic=self.target_critic, actor_optimizer=self.actor_optimizer,
                            critic_optimizer=self.critic_optimizer),)

    def policy(self, timestep: TimeStep) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        return self.actor(actor_inputs(timestep.obs, self.config)), {}

    def update(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        cfg, spec = self.config, self.spec
        # Critic: clipped double Q on smoothed target actions (TD3 eq. 15).
        with torch.no_grad():
            next_actions = self.target_actor(actor_inputs(batch["next_obs"], cfg))
            next_actions = smooth_target(next_actions, cfg.policy_noise, cfg.noise_clip, spec.action_low,
                                         spec.action_high, self.learner.update_normals(next_actions))
            next_q = clipped_double_q(self.target_critic(centralized_input(batch["next_state"], next_actions)))
            targets = batch["reward"] + batch["discount"] * next_q
        value_loss = critic_loss(self.critic(centralized_input(batch["state"], batch["actions"])), targets,
                                 self.n_seeds)
        self.critic_optimizer.zero_grad()
        value_loss.sum().backward()  # the seeds' losses summed: seed k's weights get seed k's gradient
        self.critic_optimizer.step()
        losses = {"value_loss": value_loss.detach()}
        if (self.learner.updates + 1) % cfg.policy_freq == 0:  # delayed actor and target updates (TD3 sec. 5.2)
            losses["policy_loss"] = self.sequential_actor_update(batch)
            soft_update(self.target_actor, self.actor, cfg.polyak)
            soft_update(self.target_critic, self.critic, cfg.polyak)
        return losses

    def sequential_actor_update(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """HAML's sequential scheme: each agent in turn maximizes Q_1 with the earlier agents' new actions. Each seed
        in its own random order; returns each seed's mean loss over its agents, `[K]`."""
        n, k = self.spec.n_agents, self.n_seeds
        inputs = actor_inputs(batch["obs"], self.config)
        with torch.no_grad():
            current = self.actor(inputs).unflatten(0, (k, -1))  # [K, M, N, A]
        seeded = inputs.unflatten(0, (k, -1))  # [K, M, N, D]
        orders = (torch.arange(n).expand(k, n) if self.config.fixed_order
                  else self.learner.update_streams.permutations(n).cpu())  # [K, N]: seed k's order
        params = list(self.actor.parameters())
        ids = torch.arange(n, device=current.device)
        total = torch.zeros(k, dtype=torch.float64, device=current.device)
        for agent in orders.T:  # position m: agent[k] is seed k's m-th agent
            agent = agent.to(current.device)
            x = agent_rows(seeded, agent).flatten(0, 1)  # [K * M, D]: each seed's agent's rows
            own = self.actor(x, agent=agent).unflatten(0, (k, -1))
            mine = (ids == agent.unsqueeze(1)).view(k, 1, n, 1)
            joint = torch.where(mine, own.unsqueeze(-2), current)
            loss = -seed_means(self.critic.first(centralized_input(batch["state"], joint.flatten(0, 1))), k)
            self.actor_optimizer.zero_grad()
            loss.sum().backward(inputs=params)
            if isinstance(self.actor_optimizer, AgentwiseAdam):
                self.actor_optimizer.step(agent)
            else:
                self.actor_optimizer.step()
            with torch.no_grad():
                current = torch.where(mine, self.actor(x, agent=agent).unflatten(0, (k, -1)).unsqueeze(-2), current)
            total += loss.detach().double()
        return total / n
