"""AS's three baselines (AS 5.2): PPO learners on private rewards that share values or parameters with neighbours.

AS 5.2 runs them on "the same PPO-based MARL algorithm" as AS, differing only in what is shared, so they are one
method with a `sharing` flag, each value named after the paper AS cites:

- `values`, VS (Du et al. 2022): "Each agent independently learns a value function and shares the output values with
  neighbors. The individual policy network is updated based on the average value." Agent i's TD residuals use its own
  reward and the average of its and its neighbours' values, V~_i = mean_{j in {i} u N_i} V_j:
  delta_i = r_i + gamma V~_i(s') - V~_i(s); each V_i is fitted to its own returns.
- `value_parameters`, VPS (Zhang et al. 2018b): "Each value function update utilizes the agent's unique reward and
  incorporates a weighted aggregation of value function parameters from neighboring agents": after each critic update,
  one consensus step w_i <- sum_j W_ij w_j; the actor uses GAE on its own reward and that critic.
- `policy_parameters`, PS (Zhang & Zavlanos 2019): "Each agent learns a global policy for all agents and then
  aggregates policy parameters among neighbours. Value functions are learned independently without consensus
  updates." Agent i holds a copy theta_i of the policy of every agent (pi_{theta_i}^j(a_j | o_j)), acts with its own
  component, improves the copy on its own advantage with the joint ratio prod_j pi_{theta_i}^j(a_j) / pi_old^j(a_j)
  (PPO-Clip on the joint ratio), then takes one consensus step theta_i <- sum_j W_ij theta_j.

Consensus weights: Metropolis weights of the update's graph (doubly stochastic), the union of the pairs that were
neighbours at some stored step (Cooperative Predation's neighbourhoods change per step). The protocols of AS 5.3 apply
as to AS (`protocol`, `communicate_every`; AS 5.3: "We apply the same approach to baseline algorithms"): in a gap VS
uses its own value and VPS/PS skip the consensus step. Communication counted as for AS: VS sends V_j(s_t) and
V_j(s_t') per stored step and neighbour (2 floats); VPS its critic's parameters and PS its global policy's per
neighbour and consensus step.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field

from algorithms.blocks.gae import compute_gae, rollout_gae
from algorithms.blocks.lr_schedule import LinearAnnealing
from algorithms.blocks.on_policy_collection import Rollout, RolloutCollector
from algorithms.blocks.on_policy_contract import OnPolicyContract
from algorithms.blocks.policy import Policy, PolicyStep
from algorithms.blocks.ppo_loss import clipped_step, ppo_update
from algorithms.blocks.protocol import (
    BYTES_PER_FLOAT,
    CommunicatingConfig,
    Protocol,
    consensus_step,
    metropolis_weights,
    standardize_per_agent,
    task_graph,
)
from algorithms.blocks.rollout import RolloutStorage, minibatches, update_batch
from algorithms.blocks.value_critic import ValueCritic
from environments.base import BatchedEnv, EnvSpec, TimeStep


class NetworkedConfig(CommunicatingConfig):
    sharing: Literal["values", "value_parameters", "policy_parameters"] = Field(
        "values", description="VS (Du et al. 2022), VPS (Zhang et al. 2018b), PS (Zhang & Zavlanos 2019)")


@torch.no_grad()
def group_consensus(module: torch.nn.Module, weights: torch.Tensor, n_agents: int) -> None:
    """One consensus step on every parameter of a module batched over agents (leading dim N, or N x M copies)."""
    for param in module.parameters():
        param.copy_(consensus_step(weights, param.view(n_agents, -1, *param.shape[1:])).view_as(param))


def parameters_per_agent(module: torch.nn.Module, n_agents: int) -> int:
    return sum(p.numel() for p in module.parameters()) // n_agents


class NetworkedPPO(OnPolicyContract):
    Config = NetworkedConfig
    config: NetworkedConfig

    def __init__(self, spec: EnvSpec, config: NetworkedConfig, device: torch.device):
        super().__init__(spec, config, device)
        if config.recurrent or not spec.discrete:
            raise ValueError("VS/VPS/PS here are feed-forward and discrete, as AS's runs (A.3 Table 2)")
        n = self.n = spec.n_agents
        self.global_policy = config.sharing == "policy_parameters"
        # PS: row (i, j) is agent i's copy of agent j's policy, on o_j; otherwise pi_i(a_i | o_i).
        self.actor = Policy(spec, config, n * n if self.global_policy else n, spec.obs_dim, device, ids=False)
        self.critic = ValueCritic(config, spec.obs_dim, n, n, device)  # V_i(o_i) on agent i's reward
        self.collector = RolloutCollector(
            config.rollout_length, False, act=self.collect_step, critic=self.critic,
            critic_input=lambda obs, state, step: obs, actor_memory=self.initial_memory(config.n_envs),
            rewards=lambda reward: reward)
        self.schedule = LinearAnnealing(config.lr_annealing)
        self.protocol = Protocol(config, device)
        self.extra_parts = (self.protocol,)
        self._graphs: list[torch.Tensor] = []

    def initial_memory(self, n_envs: int) -> torch.Tensor:
        return torch.zeros(n_envs, self.n, 0, device=self.device)

    def copies(self, obs: torch.Tensor) -> torch.Tensor:
        """PS's input `[..., N*N, D]`: row (i, j) is o_j."""
        n = self.n
        return obs.unsqueeze(-3).expand(*obs.shape[:-2], n, n, obs.shape[-1]).reshape(*obs.shape[:-2], n * n, -1)

    def policy_step(self, timestep: TimeStep, memory: torch.Tensor, deterministic: bool = False) -> PolicyStep:
        if not self.global_policy:
            return self.actor.step(timestep.obs, timestep.avail_actions, memory, timestep.done, deterministic)
        net, n, avail = self.actor.net, self.n, timestep.avail_actions
        params = net.head.params(net.torso.mlp(self.copies(timestep.obs)), None if avail is None else
                                 self.copies(avail))
        own = params.view(*params.shape[:-2], n, n, -1).diagonal(dim1=-3, dim2=-2).movedim(-1, -2)  # agent i's (i, i)
        actions = net.head.sample(own, deterministic)
        return PolicyStep(timestep.obs, actions, net.head.log_prob(own, actions), memory, avail)

    def collect_step(self, timestep: TimeStep, memory: torch.Tensor) -> PolicyStep:
        self._graphs.append(task_graph(timestep, self.device))
        return self.policy_step(timestep, memory)

    def collect(self, env: BatchedEnv, timestep: TimeStep) -> Rollout:
        self._graphs = []
        rollout = self.collector.collect(env, timestep)
        rollout.storage.fields["neighbours"] = torch.stack(self._graphs)
        return rollout

    def update(self, storage: RolloutStorage) -> dict[str, float]:
        cfg, n = self.config, self.n
        graph = self.protocol.communication_graph(storage["neighbours"])  # [T, B, N, N]
        advantages, returns = rollout_gae(storage, cfg.gamma, cfg.gae_lambda)  # own reward, own V_i
        sent = 0.0
        if cfg.sharing == "values":  # VS: TD residuals on the neighbourhood-averaged value
            links = graph.to(storage["values"].dtype)
            count = 1.0 + links.sum(-1)
            average = lambda v: (v + (links @ v.unsqueeze(-1)).squeeze(-1)) / count  # noqa: E731
            expand = lambda flag: flag.unsqueeze(-1).expand(-1, -1, n)  # noqa: E731
            advantages, _ = compute_gae(storage["rewards"], average(storage["values"]),
                                        average(storage["next_values"]), expand(storage["terminated"]),
                                        expand(storage["episode_end"]), cfg.gamma, cfg.gae_lambda)
            sent = 2.0 * graph.sum().item() / n
        if cfg.normalize_advantages:
            advantages = standardize_per_agent(advantages)
        batch = update_batch(storage, advantages, returns, cfg)
        self.schedule.apply((self.actor.optimizer, cfg.lr_actor), (self.critic.optimizer, cfg.lr_critic))
        losses = self.critic.update(batch, cfg)
        losses.update(self.joint_ratio_update(batch) if self.global_policy else ppo_update(self.actor, batch, cfg))
        adjacency = graph.any(0).any(0)  # [N, N]: who was linked in this update
        if adjacency.any() and cfg.sharing != "values":
            module = self.critic.net if cfg.sharing == "value_parameters" else self.actor.net
            group_consensus(module, metropolis_weights(adjacency), n)
            sent = parameters_per_agent(module, n) * adjacency.sum().item() / n
        self.protocol.floats_sent += sent
        self.protocol.updates += 1
        self.schedule.advance(self.steps_per_iteration)
        losses.update({"comm_floats_per_agent_update": sent, "comm_floats_per_agent": self.protocol.floats_sent,
                       "comm_bytes_per_agent": self.protocol.floats_sent * BYTES_PER_FLOAT})
        return losses

    def joint_ratio_update(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        """PS: each agent's global policy on its own advantage, PPO-Clip on the joint ratio over all agents."""
        cfg, n, head = self.config, self.n, self.actor.net.head
        totals, count = {"policy_loss": 0.0, "entropy": 0.0}, 0
        for mb in minibatches(batch, cfg.ppo_epochs, cfg.num_minibatches):
            avail = mb.get("avail")
            params = head.params(self.actor.net.torso.mlp(self.copies(mb["actor_in"])),
                                 None if avail is None else self.copies(avail))  # [1, S, N*N, A]
            others = mb["actions"].unsqueeze(-2).expand(*mb["actions"].shape[:-1], n, n).reshape(
                *mb["actions"].shape[:-1], n * n)
            log_prob = head.log_prob(params, others).view(*others.shape[:-1], n, n)  # [.., i, j]
            ratio = torch.exp((log_prob - mb["log_probs"].unsqueeze(-2)).sum(-1))  # prod_j over i's copies
            adv = mb["advantages"]
            loss = -torch.minimum(ratio * adv, ratio.clamp(1 - cfg.clip_eps, 1 + cfg.clip_eps) * adv).mean()
            entropy = head.entropy(params).mean()
            clipped_step(self.actor.optimizer, self.actor.net, loss - cfg.entropy_coef * entropy, cfg.max_grad_norm)
            totals["policy_loss"] += loss.item()
            totals["entropy"] += entropy.item()
            count += 1
        return {k: v / count for k, v in totals.items()}
