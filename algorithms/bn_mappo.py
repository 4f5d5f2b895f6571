"""MAPPO with a Bayesian-network actor (BN 6.2.1, Fig. 2): agents sample in a topological order of a DAG, each
conditioned on its parents' sampled actions, pi(a | s) = prod_i pi^i(a^i | o^i, a^{P^i}).

The DAG (`topology`, one registry name each: bn_mappo_full, _product, _random, _heuristic):
- full: every pair connected (one subteam of all agents); product: no edges (MAPPO's independent policy);
- random: a random DAG with at most `edge_budget` edges, drawn once per run;
- heuristic: BN Algorithm 1 under `edge_budget`, recomputed at every step from the dependency scores of the
  step's positions (`dependency_score`, BN App. B.3): the dynamic, context-aware subteams of BN 6.2.
BN 6.2.1: "heuristic and random are constrained under the same edge budget B with B = 4, 10, 50 for Coordination
Game, Aloha, and Predator-Prey".

Everything else is MAPPO (Yu et al. 2022; algorithms/mappo.py): per iteration collect T steps from every copy, GAE
per agent on V(s), the critic on the lambda-returns, then the actors on PPO's clipped surrogate. The stored actor
input holds the parents' actions (algorithms/blocks/dag_policy.py), so PPO's ratio is the ratio of the very
conditional each agent sampled from, and the joint ratio is their product.

Seed batches (docs/architecture.md): built with `n_seeds` K, the parts hold K seeds (MAPPO's, and the BN actor's
streams draw each seed's samples), tensors are `[K, B, ...]`, each seed's random DAG is its own (drawn by its solo
construction, `DagTopology`) and the heuristic DAG is computed per copy, so seed k of a batch is its solo run.
"""

from __future__ import annotations

import torch
from pydantic import Field

from algorithms.blocks.dag_policy import DagPolicy
from algorithms.blocks.gae import rollout_gae
from algorithms.blocks.lr_schedule import LinearAnnealing
from algorithms.blocks.on_policy_collection import RolloutCollector
from algorithms.blocks.on_policy_config import OnPolicyConfig
from algorithms.blocks.on_policy_contract import OnPolicyContract
from algorithms.blocks.policy import PolicyStep
from algorithms.blocks.ppo_loss import ppo_update
from algorithms.blocks.rollout import RolloutStorage, learning_rewards
from algorithms.blocks.subteams import DagTopology, DependencyScore, Topology
from algorithms.blocks.value_critic import ValueCritic
from environments.base import EnvSpec, TimeStep


class BNMAPPOConfig(OnPolicyConfig):
    topology: Topology = Field("full", description="the actor's DAG: full, product, random (B edges, drawn once per "
                                                   "run) or heuristic (BN Algorithm 1 under B at every step)")
    edge_budget: int = Field(4, ge=0, description="B, the most edges of the random and heuristic DAGs (BN 6.2.1: "
                                                  "4 for Coordination Game, 10 for Aloha, 50 for Predator-Prey)")
    dependency_score: DependencyScore = Field(
        "neg_euclidean", description="heuristic: d_ij from the agents' positions (BN App. B.3): neg_state_distance "
                                     "(Coordination Game), neg_manhattan (Aloha), neg_euclidean (2D positions)")
    parent_observations: bool = Field(
        False, description="the parent block also carries the parents' observations through a second Base (BN "
                           "Table 2's Aloha actor); false: parents' actions only (its Coordination Game actor)")


class BNMAPPO(OnPolicyContract):
    Config = BNMAPPOConfig
    config: BNMAPPOConfig

    def __init__(self, spec: EnvSpec, config: BNMAPPOConfig, device: torch.device, n_seeds: int | None = 1):
        # K seeds at once (docs/architecture.md, "Seed batches"); None: no seed dimension (the unbatched layout)
        super().__init__(spec, config, device, n_seeds)
        n, seeds = spec.n_agents, n_seeds
        # the DAG of each step (BN 6.2.1) and pi^i(a^i | o^i, a^{P^i}) over it (BN Table 2's actors)
        self.topology = DagTopology(config.topology, n, spec.name, device, config.edge_budget, config.dependency_score)
        self.actor = DagPolicy(spec, config, spec.obs_dim, device, config.parent_observations, seeds)
        # MAPPO's centralized critic V(s), computed once per copy when shared without agent ids (as mappo.py)
        joint = config.critic_shares_parameters and not config.agent_id_input
        self.critic = ValueCritic(config, spec.state_dim, 1 if joint else n, n, device, seeds)
        self.collector = RolloutCollector(
            config.rollout_length, config.recurrent, act=self.policy_step, critic=self.critic,
            critic_input=self.critic_input, actor_memory=self.initial_memory(config.n_envs),
            rewards=lambda reward: learning_rewards(reward, spec.reward_mode, config.learning_reward), n_seeds=seeds)
        self.schedule = LinearAnnealing(config.lr_annealing)
        self.extra_parts = (self.topology,)

    def policy_step(self, timestep: TimeStep, memory: torch.Tensor, deterministic: bool = False) -> PolicyStep:
        parents = self.topology(timestep)  # [(K,) B, N, N], this step's DAG
        return self.actor.step(timestep.obs, timestep.avail_actions, memory, timestep.done, parents, deterministic,
                               obs=timestep.obs)

    def critic_input(self, obs: torch.Tensor, state: torch.Tensor, step: PolicyStep | None) -> torch.Tensor:
        width = self.critic.width  # the global state for each value row
        return self.critic.inputs(state.unsqueeze(-2).expand(*state.shape[:-1], width, state.shape[-1]))

    def update(self, storage: RolloutStorage) -> dict[str, float]:
        cfg = self.config
        advantages, returns = rollout_gae(storage, cfg.gamma, cfg.gae_lambda)  # each agent's GAE on V(s)
        # critic on the returns, then every actor at once: PPO-Clip + entropy on its stored conditional
        return self.backbone_update(storage, advantages, returns, lambda batch: ppo_update(self.actor, batch, cfg))
