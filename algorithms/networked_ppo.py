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

Seed batches (docs/architecture.md, "Seed batches"): built with `n_seeds` K, the parts hold K seeds, tensors are
`[T, K, B, N, ...]`, every operation here is on the trailing dimensions (the neighbourhood average and the consensus
as products and sums over the neighbours, not matrix products whose kernels round a batch unlike one seed), each
seed takes its consensus step with its own update's graph (none where its agents had no neighbour) and counts what
its agents sent, and PS samples from the policy's streams.
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
from algorithms.blocks.ppo_loss import clipped_step, ppo_update, statistic
from algorithms.blocks.protocol import (
    BYTES_PER_FLOAT,
    CommunicatingConfig,
    Protocol,
    metropolis_weights,
    standardize_per_agent,
    task_graph,
)
from algorithms.blocks.rollout import RolloutStorage, minibatches, seed_mean, update_batch
from algorithms.blocks.value_critic import ValueCritic
from environments.base import BatchedEnv, EnvSpec, TimeStep


class NetworkedConfig(CommunicatingConfig):
    sharing: Literal["values", "value_parameters", "policy_parameters"] = Field(
        "values", description="VS (Du et al. 2022), VPS (Zhang et al. 2018b), PS (Zhang & Zavlanos 2019)")


@torch.no_grad()
def group_consensus(module: torch.nn.Module, weights: torch.Tensor, n_agents: int,
                    active: torch.Tensor | None = None) -> None:
    """One consensus step x_i <- sum_j W_ij x_j on every parameter of a module batched over agents (leading dim N,
    or N x M copies; in a seed batch K seed-major blocks of them) with each seed's weights `[(K,) N, N]`; seeds not
    `active` (`[K]` bool) keep their parameters. A product and a sum over j per entry: each seed's rounding is its
    solo run's (a batched matrix product's kernel may round K seeds unlike one)."""
    seeds = 1 if weights.dim() == 2 else weights.shape[0]
    w = weights.reshape(seeds, n_agents, n_agents, 1)
    for param in module.parameters():
        x = param.view(seeds, n_agents, -1)  # [K, j, agent j's entries]
        mixed = (w.to(x.dtype) * x.unsqueeze(1)).sum(2)  # [K, i, .]
        if active is not None:
            mixed = torch.where(active.view(seeds, 1, 1), mixed, x)
        param.copy_(mixed.view_as(param))


def parameters_per_agent(module: torch.nn.Module, n_agents: int, n_seeds: int = 1) -> int:
    """The parameters one agent holds (of one seed)."""
    return sum(p.numel() for p in module.parameters()) // (n_agents * n_seeds)


class NetworkedPPO(OnPolicyContract):
    Config = NetworkedConfig
    config: NetworkedConfig

    def __init__(self, spec: EnvSpec, config: NetworkedConfig, device: torch.device, n_seeds: int = 1):
        # K seeds at once (docs/architecture.md, "Seed batches"); one seed is the batch of one
        super().__init__(spec, config, device, n_seeds)
        if config.recurrent or not spec.discrete:
            raise ValueError("VS/VPS/PS here are feed-forward and discrete, as AS's runs (A.3 Table 2)")
        n = self.n = spec.n_agents
        self.global_policy = config.sharing == "policy_parameters"
        # PS: row (i, j) is agent i's copy of agent j's policy, on o_j; otherwise pi_i(a_i | o_i).
        self.actor = Policy(spec, config, n * n if self.global_policy else n, spec.obs_dim, device, ids=False,
                            n_seeds=n_seeds)
        self.critic = ValueCritic(config, spec.obs_dim, n, n, device, n_seeds)  # V_i(o_i) on agent i's reward
        self.collector = RolloutCollector(
            config.rollout_length, False, act=self.collect_step, critic=self.critic,
            critic_input=lambda obs, state, step: obs, actor_memory=self.initial_memory(config.n_envs),
            rewards=lambda reward: reward, n_seeds=n_seeds)
        self.schedule = LinearAnnealing(config.lr_annealing)
        self.protocol = Protocol(config, device, n_seeds)
        self.extra_parts = (self.protocol,)
        self._graphs: list[torch.Tensor] = []

    def initial_memory(self, n_envs: int) -> torch.Tensor:
        return torch.zeros(self.n_seeds, n_envs, self.n, 0, device=self.device)

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
        noise = None if deterministic else net.head.noise(own, self.actor.streams)  # each seed's own draws
        actions = net.head.sample(own, deterministic, noise)
        return PolicyStep(timestep.obs, actions, net.head.log_prob(own, actions), memory, avail)

    def collect_step(self, timestep: TimeStep, memory: torch.Tensor) -> PolicyStep:
        self._graphs.append(task_graph(timestep, self.device))
        return self.policy_step(timestep, memory)

    def collect(self, env: BatchedEnv, timestep: TimeStep) -> Rollout:
        self._graphs = []
        rollout = self.collector.collect(env, timestep)
        rollout.storage.fields["neighbours"] = torch.stack(self._graphs)
        return rollout

    def update(self, storage: RolloutStorage) -> dict[str, float | list[float]]:
        cfg, n, seeds = self.config, self.n, self.n_seeds
        graph = self.protocol.communication_graph(storage["neighbours"])  # [T, K, B, N, N]
        advantages, returns = rollout_gae(storage, cfg.gamma, cfg.gae_lambda)  # own reward, own V_i
        sent = [0.0] * seeds
        if cfg.sharing == "values":  # VS: TD residuals on the neighbourhood-averaged value
            links = graph.to(storage["values"].dtype)
            count = 1.0 + links.sum(-1)
            average = lambda v: (v + (links * v.unsqueeze(-2)).sum(-1)) / count  # noqa: E731  (sum_j l_ij v_j)
            expand = lambda flag: flag.unsqueeze(-1).expand(*flag.shape, n)  # noqa: E731
            advantages, _ = compute_gae(storage["rewards"], average(storage["values"]),
                                        average(storage["next_values"]), expand(storage["terminated"]),
                                        expand(storage["episode_end"]), cfg.gamma, cfg.gae_lambda)
            sent = [2.0 * links / n for links in graph.transpose(0, 1).flatten(1).sum(1).tolist()]
        if cfg.normalize_advantages:
            advantages = standardize_per_agent(advantages, seeds)  # each seed's and agent's own samples
        batch = update_batch(storage, advantages, returns, cfg, seeded=True)
        self.schedule.apply((self.actor.optimizer, cfg.lr_actor), (self.critic.optimizer, cfg.lr_critic))
        losses = self.critic.update(batch, cfg)
        losses.update(self.joint_ratio_update(batch) if self.global_policy else ppo_update(self.actor, batch, cfg))
        adjacency = graph.any(0).any(1)  # [K, N, N]: who was linked in this update, per seed
        linked = adjacency.flatten(1).sum(1)  # [K]
        if bool(linked.any()) and cfg.sharing != "values":  # seeds whose agents had no neighbour skip the step
            module = self.critic.net if cfg.sharing == "value_parameters" else self.actor.net
            group_consensus(module, metropolis_weights(adjacency), n, active=linked > 0)
            per_agent = parameters_per_agent(module, n, seeds)
            sent = [per_agent * pairs / n if pairs else 0.0 for pairs in linked.tolist()]
        self.protocol.record(sent)
        self.schedule.advance(self.steps_per_iteration)
        losses.update({"comm_floats_per_agent_update": sent, "comm_floats_per_agent": list(self.protocol.floats_sent),
                       "comm_bytes_per_agent": [f * BYTES_PER_FLOAT for f in self.protocol.floats_sent]})
        return losses

    def joint_ratio_update(self, batch: dict[str, torch.Tensor]) -> dict[str, list[float]]:
        """PS: each agent's global policy on its own advantage, PPO-Clip on the joint ratio over all agents; each
        seed's loss its own (`seed_mean`)."""
        cfg, n, head, seeds = self.config, self.n, self.actor.net.head, self.n_seeds
        totals, count = {"policy_loss": 0.0, "entropy": 0.0}, 0
        for mb in minibatches(batch, cfg.ppo_epochs, cfg.num_minibatches, self.actor.streams):
            avail = mb.get("avail")
            params = head.params(self.actor.net.torso.mlp(self.copies(mb["actor_in"])),
                                 None if avail is None else self.copies(avail))  # [1, K, S, N*N, A]
            others = mb["actions"].unsqueeze(-2).expand(*mb["actions"].shape[:-1], n, n).reshape(
                *mb["actions"].shape[:-1], n * n)
            log_prob = head.log_prob(params, others).view(*others.shape[:-1], n, n)  # [.., i, j]
            ratio = torch.exp((log_prob - mb["log_probs"].unsqueeze(-2)).sum(-1))  # prod_j over i's copies
            adv = mb["advantages"]
            loss = -seed_mean(torch.minimum(ratio * adv, ratio.clamp(1 - cfg.clip_eps, 1 + cfg.clip_eps) * adv), seeds)
            entropy = seed_mean(head.entropy(params), seeds)
            clipped_step(self.actor.optimizer, self.actor.net, loss - cfg.entropy_coef * entropy, cfg.max_grad_norm,
                         seeds)
            totals["policy_loss"] += statistic(loss, seeds)
            totals["entropy"] += statistic(entropy, seeds)
            count += 1
        return {k: (v / count).tolist() for k, v in totals.items()}
