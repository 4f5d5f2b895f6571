"""MADDPG with a Bayesian-network actor (BN 6.2.1, Fig. 2, Predator-Prey): agents act in a topological order of a
DAG, each deterministic actor on its own observation and its parents' actions, a^i = mu_i(Concat(o^i, a^{P^i}))
(BN Table 2's Predator-Prey actor: Concat(o^i, a^{P^i}) -> FC -> ReLU -> FC -> ReLU -> FC(|A^i|)).

The DAG (`topology`, one registry name each: bn_maddpg_full, _product, _random, _heuristic) is bn_mappo.py's:
full, product, a random DAG of at most `edge_budget` edges drawn once per run, or BN Algorithm 1 under
`edge_budget` on the step's dependency scores (recomputed at every step; BN 6.2.1: B = 50 on Predator-Prey).

Everything else is MADDPG (algorithms/maddpg.py: Lowe et al. 2017, Alg. 1, as HARL runs it): one centralized
critic Q(s, a_1..a_N), replay of n-step transitions, Polyak targets. Per gradient step:
  critic (line 13): y = r + gamma^k Q'(s', a'), a' drawn by the target actors level by level over the DAG of s';
  actors (line 14): each agent ascends Q(s, a_1, .., mu_i(o_i, a^{P^i}), .., a_N) with the other agents' and its
    parents' actions from the sample; parents' actions are data, detached (BN 6.2.1);
  targets (line 16): Polyak averaging.
Acting: each agent's deterministic action given its parents' deterministic actions, one batched pass per
topological level; exploration noise is added to the joint action afterwards (HARL's behaviour), so a child
conditions on its parents' noise-free actions while training sees the executed ones (our choice: BN does not say
where its exploration noise enters).
Our deviation: BN Table 2's GCN critic with max pooling is MADDPG's MLP critic here (maddpg.py).

Seed batches (off_policy.py): K seeds' networks on seed-major copies and samples, losses per seed; the random DAG
is each seed's own (drawn when its solo run is built, `[K * N, N]` in a batch's state), and each copy's DAG is
its seed's (`parents`).
"""

from __future__ import annotations

import copy

import torch
from pydantic import Field

from algorithms.blocks.adam import Adam
from algorithms.blocks.dag_policy import deterministic_dag_actions, parent_block
from algorithms.blocks.parts import Named
from algorithms.blocks.q_targets import soft_update
from algorithms.blocks.subteams import DagTopology, DependencyScore, Topology
from algorithms.blocks.td3 import DeterministicActor, QEnsemble, fusable
from algorithms.maddpg import maddpg_actor_loss, maddpg_critic_loss
from algorithms.off_policy import OffPolicyConfig, OffPolicyContract, OffPolicyLearner, actor_inputs
from environments.base import EnvSpec, TimeStep


class BNMADDPGConfig(OffPolicyConfig):
    topology: Topology = Field("full", description="the actors' DAG: full, product, random (B edges, drawn once per "
                                                   "run) or heuristic (BN Algorithm 1 under B at every step)")
    edge_budget: int = Field(50, ge=0, description="B, the most edges of the random and heuristic DAGs (BN 6.2.1: "
                                                   "50 for Predator-Prey)")
    dependency_score: DependencyScore = Field("neg_euclidean", description="heuristic: d_ij from the agents' "
                                                                           "positions (BN App. B.3)")
    parent_observations: bool = Field(False, description="the parent block also carries the parents' observations "
                                                         "(BN Table 2's Predator-Prey actor: actions only)")


class BNMADDPG(OffPolicyContract):
    Config = BNMADDPGConfig
    config: BNMADDPGConfig

    def __init__(self, spec: EnvSpec, config: BNMADDPGConfig, device: torch.device, n_seeds: int = 1):
        super().__init__(spec, config, device, n_seeds)
        n, shared = spec.n_agents, config.share_parameters
        own = spec.obs_dim + (n if shared and config.agent_id_input else 0)
        parents = n * (spec.action_dim + (spec.obs_dim if config.parent_observations else 0))
        # the DAG of each step (BN 6.2.1) and mu_i(o^i, a^{P^i}) over it (BN Table 2), zero-padded parent slots
        self.topology = DagTopology(config.topology, n, spec.name, device, config.edge_budget, config.dependency_score)
        self.actor = DeterministicActor(1 if shared else n, own + parents, config.hidden_sizes, config.activation,
                                        spec.action_dim, spec.action_low, spec.action_high, n_seeds).to(device)
        self.critic = QEnsemble(1, spec.state_dim + n * spec.action_dim, config.hidden_sizes,
                                config.activation, n_seeds).to(device)
        self.target_actor = copy.deepcopy(self.actor).requires_grad_(False)
        self.target_critic = copy.deepcopy(self.critic).requires_grad_(False)
        # fused where each seed stays bitwise its solo run, as MADDPG's (issue 15)
        self.actor_optimizer = Adam(self.actor.parameters(), lr=config.lr, fused=fusable(self.actor, n_seeds))
        self.critic_optimizer = Adam(self.critic.parameters(), lr=config.critic_lr,
                                     fused=fusable(self.critic, n_seeds))
        # the replay keeps each step's DAG: the actors' update conditions on the parents the agents acted in
        self.learner = OffPolicyLearner(spec, config, device, extra_fields={"parents": ((n, n), torch.bool)},
                                        n_seeds=n_seeds)
        self.parts = (Named(actor=self.actor, critic=self.critic, target_actor=self.target_actor,
                            target_critic=self.target_critic, actor_optimizer=self.actor_optimizer,
                            critic_optimizer=self.critic_optimizer), self.topology)

    def actions_in(self, actor: DeterministicActor, obs: torch.Tensor, parents: torch.Tensor) -> torch.Tensor:
        """Every agent's action, level by level over `parents` (one batched pass per level)."""
        return deterministic_dag_actions(actor, actor_inputs(obs, self.config), parents, self.spec.action_dim,
                                         obs if self.config.parent_observations else None)

    def parents(self, obs: torch.Tensor, timestep: TimeStep | None = None,
                state: torch.Tensor | None = None) -> torch.Tensor:
        """`[K * B, N, N]`: the DAG of every seed-major copy (at `timestep`) or stored step (`obs`, `state`). A fixed
        DAG is `[N, N]` (full, product) or one per seed, `[K * N, N]` (random: each seed's own draw)."""
        if self.topology.fixed is None:  # heuristic: each copy's own DAG from its positions
            return self.topology(timestep) if timestep is not None else self.topology.of_views(obs, state)
        n, copies = self.spec.n_agents, obs.shape[0]
        per_seed = self.topology.fixed.view(-1, 1, n, n)
        return per_seed.expand(self.n_seeds, copies // self.n_seeds, n, n).reshape(copies, n, n)

    def policy(self, timestep: TimeStep) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        parents = self.parents(timestep.obs, timestep)  # [K * B, N, N], this step's DAG
        return self.actions_in(self.actor, timestep.obs, parents), {"parents": parents}

    def update(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        cfg, k = self.config, self.n_seeds
        # Critic (line 13): the target actors' actions at the window's last view, over that view's DAG.
        next_parents = self.parents(batch["next_obs"], state=batch["next_state"])
        value_loss = maddpg_critic_loss(self.critic, self.target_critic, batch,
                                        self.actions_in(self.target_actor, batch["next_obs"], next_parents), k)
        self.critic_optimizer.zero_grad()
        value_loss.sum().backward()  # the seeds' losses summed: seed k's weights get seed k's gradient
        self.critic_optimizer.step()
        # Actors (line 14): mu_i(o_i, a^{P^i}) with the stored parents' stored (executed) actions, detached data.
        parent_obs = batch["obs"] if cfg.parent_observations else None
        block = parent_block(batch["parents"], batch["actions"], parent_obs)
        own = self.actor(torch.cat([actor_inputs(batch["obs"], cfg), block], dim=-1))
        policy_loss = maddpg_actor_loss(self.critic, batch["state"], batch["actions"], own, n_seeds=k)
        self.actor_optimizer.zero_grad()
        policy_loss.sum().backward(inputs=list(self.actor.parameters()))
        self.actor_optimizer.step()
        # Targets (line 16).
        soft_update(self.target_actor, self.actor, cfg.polyak)
        soft_update(self.target_critic, self.critic, cfg.polyak)
        return {"value_loss": value_loss.detach(), "policy_loss": policy_loss.detach().double() / self.spec.n_agents}
