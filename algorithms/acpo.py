"""ACPO: Agent-Chained Policy Optimization (ACPO paper, sec. 6, App. D, E Alg. 3, L).

Each env step is serialized into N micro-steps, agent 1 first (sec. 3). Agent i acts on its
observation and a belief b^(i) over the actions the agents before it take this step (sec. 4). As in
App. L, the belief is agent i's own prediction: it runs its policy with agent j's id (and the
predictions it made for agents < j) to sample a~^(j) for j = 1..i-1, then acts with id i. The N
micro-steps are N batched forward passes over every (copy, viewer) at once; pass k predicts agent
k's action for every later viewer and is agent k's own decision.

Decentralized critics V^(i)(s, b^(i)) (one shared network with ids) are chained: agent i's TD
residual bootstraps from agent i+1's value at the same step, agent N's from agent 1's at the next
step, with the micro-step discount gamma' = gamma^(1/N) (sec. 6, App. D). Each agent's PPO ratio is
its own (eq. 3); the actor update is MAPPO's on the stored inputs (the same backbone, sec. 7).

`chained: false` is the ablation "ACPO without chaining" (Fig. 4): MAPPO with the belief inputs,
each agent's GAE on its own V^(i)(s, b^(i)) with gamma and lambda.

Seed batches (docs/architecture.md): built with `n_seeds` K, the parts hold K seeds and every tensor here has a
leading seed dimension, `[(K,) B, N, ...]` acting and `[T, (K,) B, N]` for the advantages; the chain, the critics'
inputs and the chained advantages only operate on the trailing dimensions, and the belief samples come from the
policy's random streams (one per seed), so seed k of a batch computes exactly what it computes alone.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field, model_validator

from algorithms.blocks.gae import rollout_gae
from algorithms.blocks.lr_schedule import LinearAnnealing
from algorithms.blocks.on_policy_collection import RolloutCollector
from algorithms.blocks.on_policy_config import OnPolicyConfig
from algorithms.blocks.on_policy_contract import OnPolicyContract
from algorithms.blocks.policy import Policy, PolicyStep
from algorithms.blocks.ppo_loss import ppo_update
from algorithms.blocks.rollout import RolloutStorage, learning_rewards
from algorithms.blocks.value_critic import ValueCritic
from environments.base import EnvSpec, TimeStep


class ACPOConfig(OnPolicyConfig):
    chained: bool = Field(True, description="agent-chained advantages (false: the 'without chaining' ablation)")
    micro_lambda: Literal["root", "same"] = Field(
        "root", description="the micro-step GAE lambda': 'root' = lambda^(1/N) (the same decay per env step as "
                            "MAPPO's GAE), 'same' = lambda per micro-step")

    @model_validator(mode="after")
    def _team_reward(self):
        if self.learning_reward != "team":
            raise ValueError("ACPO serializes one team reward over the agents' micro-steps (ACPO sec. 3): "
                             "learning_reward must be 'team'")
        return self


def chained_advantages(values: torch.Tensor, next_first_value: torch.Tensor, rewards: torch.Tensor,
                       terminated: torch.Tensor, episode_end: torch.Tensor, micro_gamma: float,
                       micro_lambda: float) -> tuple[torch.Tensor, torch.Tensor]:
    """ACPO's chained advantages (sec. 6, App. D) and value targets, `[T, (K,) B, N]` (K: a seed batch's seeds).

    `values[t, ..., i]` = V^(i)(s_t, b^(i)_t); `next_first_value[t, ...]` = V^(1) of the state step t leads
    to (the next stored state, or the final state of an episode that ended); `rewards [T, (K,) B]`.
    zeta^(i)_t = gamma' V^(i+1)_t - V^(i)_t (i < N), zeta^(N)_t = r_t + gamma' V^(1)_{t+1} - V^(N)_t, and
    A^(i)_t = sum_{j>=i} (gamma' lambda')^(j-i) zeta^(j)_t + (gamma' lambda')^(N-i+1) A^(1)_{t+1}:
    GAE over the micro-step sequence, computed per env step (a recursion over the agents for the within-step
    sums, then one over t on agent 1's advantage only). Every operation is elementwise over the leading
    dimensions, so each copy (each seed of a batch) computes exactly what it computes alone.
    """
    n = values.shape[-1]
    decay = micro_gamma * micro_lambda
    not_terminated = (~terminated).to(values.dtype)
    zeta = torch.empty_like(values)
    zeta[..., :-1] = micro_gamma * values[..., 1:] - values[..., :-1]
    zeta[..., -1] = rewards + micro_gamma * not_terminated * next_first_value - values[..., -1]
    # within[..., i] = sum_{j >= i} decay^(j - i) zeta[..., j], by GAE's recursion over the micro-steps of one env
    # step (elementwise, not a matmul over the flattened rows: a GEMM may round a row differently with the row count)
    within = torch.empty_like(zeta)
    within[..., -1] = zeta[..., -1]
    for i in range(n - 2, -1, -1):
        within[..., i] = zeta[..., i] + decay * within[..., i + 1]
    powers = torch.arange(n, device=values.device)
    carry_weight = decay ** (n - powers).to(values.dtype)  # decay^(N - i + 1) for 1-based agent i
    continues = (~episode_end).to(values.dtype)
    advantages = torch.empty_like(values)
    following_first = torch.zeros_like(next_first_value[0])  # A^(1)_{t+1}
    for t in range(values.shape[0] - 1, -1, -1):
        carry = continues[t] * following_first
        advantages[t] = within[t] + carry_weight * carry.unsqueeze(-1)
        following_first = advantages[t, ..., 0]
    return advantages, advantages + values


class ACPO(OnPolicyContract):
    Config = ACPOConfig
    config: ACPOConfig

    def __init__(self, spec: EnvSpec, config: ACPOConfig, device: torch.device, n_seeds: int | None = 1):
        # K seeds at once (docs/architecture.md, "Seed batches"); None: no seed dimension (the unbatched layout)
        super().__init__(spec, config, device, n_seeds)
        n, seeds = spec.n_agents, n_seeds
        # A belief entry per preceding agent: a one-hot action (discrete) or the action vector (continuous).
        self.belief_width = spec.n_actions if spec.discrete else spec.action_dim
        # pi^(i)(a | o_i, id, b^(i)): the id is part of ACPO's own input (whose action a pass decides or predicts).
        self.actor = Policy(spec, config, n, spec.obs_dim + n + n * self.belief_width, device, ids=False,
                            n_seeds=seeds)
        # Decentralized critics V^(i)(s, b^(i)) (one shared network with ids by default).
        self.critic = ValueCritic(config, spec.state_dim + n * self.belief_width, n, n, device, seeds)
        self.collector = RolloutCollector(
            config.rollout_length, config.recurrent, act=self.collect_step, critic=self.critic,
            critic_input=self.critic_input, bootstrap_input=self.bootstrap_input,
            actor_memory=self.initial_memory(config.n_envs),
            rewards=lambda reward: learning_rewards(reward, spec.reward_mode, "team"), n_seeds=seeds)
        self.schedule = LinearAnnealing(config.lr_annealing)
        self.micro_gamma = config.gamma ** (1.0 / n)  # gamma' (sec. 6, App. D)
        self.micro_lambda = config.gae_lambda ** (1.0 / n) if config.micro_lambda == "root" else config.gae_lambda
        self.bootstrap_noise: torch.Tensor | None = None  # see collect_step

    # --- the chain of N batched passes ------------------------------------------------------------
    def chain(self, obs: torch.Tensor, avail: torch.Tensor | None, memory: torch.Tensor, starts: torch.Tensor,
              deterministic: bool, noise: torch.Tensor | None = None) -> PolicyStep:
        """Serialized acting with predicted beliefs (App. L), every copy and viewer at once.

        Row v of pass k is viewer v's view of agent k: for v > k a prediction (written into v's
        belief), for v = k agent k's decision. With shared parameters pass k runs the viewers >= k
        only (N(N+1)/2 rows per step in all); with per-agent weights every pass runs all N rows, so
        each viewer keeps its own weights in one batched matmul (rows v < k are ignored).

        Tensors are `[(K,) B, N, ...]` (K: a seed batch's seeds); every operation below is on the trailing
        dimensions. `noise` (`chain_noise`) is what the sampled passes draw from (None: the global RNG).
        """
        n, width, obs_dim = self.spec.n_agents, self.belief_width, obs.shape[-1]
        lead = obs.shape[:-2]  # [(K,) B]
        shared = self.config.share_parameters
        net = self.actor.net
        # An action tensor's agent (row) dimension: the last for discrete actions, before the action vector otherwise.
        at = (lambda i: (..., i)) if self.spec.discrete else (lambda i: (..., i, slice(None)))
        x = torch.zeros(*lead, n, obs_dim + n + n * width, dtype=obs.dtype, device=obs.device)
        x[..., :obs_dim] = obs
        id_slot, belief_slot = obs_dim, obs_dim + n
        actor_in = torch.empty_like(x)
        actions = log_probs = None
        next_memory = torch.empty_like(memory)
        for k in range(n):
            first = k if shared else 0  # rows [first, N) of this pass; agent k's own row is k - first
            own = k - first
            x[..., first:, id_slot:id_slot + n] = 0.0
            x[..., first:, id_slot + k] = 1.0
            features, memory_k = net.torso(x[..., first:, :], memory[..., first:, :], starts)
            # Only agent k's own decision is masked by its available actions: a viewer cannot see another's.
            own_avail = None
            if avail is not None:
                own_avail = torch.ones_like(avail[..., first:, :])
                own_avail[..., own, :] = avail[..., k, :]
            params = net.head.params(features, own_avail)
            sampled = net.head.sample(params, deterministic, None if noise is None else noise[..., k, first:, :])
            if actions is None:  # [(K,) B, N(, action_dim)]
                actions = sampled.new_empty((*lead, n, *sampled.shape[len(lead) + 1:]))
                log_probs = params.new_empty((*lead, n))
            actor_in[..., k, :] = x[..., k, :]
            actions[at(k)] = sampled[at(own)]
            log_probs[..., k] = net.head.log_prob(params[..., own, :], sampled[at(own)])
            next_memory[..., k, :] = memory_k[..., own, :]
            predictions = sampled[at(slice(own + 1, None))]  # viewers k+1..N-1 predicting agent k
            slot = slice(belief_slot + k * width, belief_slot + (k + 1) * width)
            if self.spec.discrete:
                x[..., k + 1:, slot] = torch.nn.functional.one_hot(predictions, width).to(x.dtype)
            else:
                x[..., k + 1:, slot] = predictions.to(x.dtype)
        return PolicyStep(actor_in, actions, log_probs, next_memory, avail)

    def chain_noise(self, obs: torch.Tensor) -> torch.Tensor | None:
        """What one sampled chain draws, from the policy's random streams (one per seed, docs/architecture.md "Seed
        batches"): `[K, B, N, N, ...]`, pass k's row v at `[:, :, k, v]` (a uniform per action for the
        Gumbel-max draw of a categorical, a standard normal per action dimension for a Gaussian), drawn at once,
        one call per seed and chain (with shared parameters the rows v < k are drawn and not used). None without
        streams (the unbatched layout samples from the global RNG)."""
        streams = self.actor.streams
        if streams is None:
            return None
        n, copies = self.spec.n_agents, obs.shape[-3]
        if self.spec.discrete:
            return streams.uniform((copies, n, n, self.spec.n_actions))
        return streams.normal((copies, n, n, self.spec.action_dim))

    def beliefs(self, actor_in: torch.Tensor) -> torch.Tensor:
        """b^(i), `[(K,) B, N, N * width]`: agent i's predictions of agents < i (zeros for agents >= i)."""
        return actor_in[..., self.spec.obs_dim + self.spec.n_agents:]

    def policy_step(self, timestep: TimeStep, memory: torch.Tensor, deterministic: bool = False) -> PolicyStep:
        noise = None if deterministic else self.chain_noise(timestep.obs)
        return self.chain(timestep.obs, timestep.avail_actions, memory, timestep.done, deterministic, noise)

    def collect_step(self, timestep: TimeStep, memory: torch.Tensor) -> PolicyStep:
        """Acting at a collection step. The ablation (`chained: false`) samples beliefs again where no one acts,
        to bootstrap V^(i)(s', b^(i)) (`bootstrap_input`): at a truncated episode's final state, which the
        collector evaluates only at steps where some copy of the batch truncates, and at the rollout's last
        state. The noise of that chain is drawn here, at every step, so that a seed's stream advances alike
        whether or not other seeds of its batch truncate (a draw at the bootstrap itself would follow the
        batch's truncations, not the seed's). The last bootstrap reuses the last step's noise: each copy's
        value at that step comes from one of the two bootstraps (its final state where its episode ended, else
        the last state), never both, so every belief the targets use is still an independent draw."""
        if not self.config.chained:
            self.bootstrap_noise = self.chain_noise(timestep.obs)
        return self.policy_step(timestep, memory)

    # --- the critics' input: V^(i)(s, b^(i)) ------------------------------------------------------
    def critic_input(self, obs: torch.Tensor, state: torch.Tensor, step: PolicyStep) -> torch.Tensor:
        """At a step the agents acted in: the beliefs they acted on."""
        return self._critic_input(state, self.beliefs(step.actor_in))

    def bootstrap_input(self, obs: torch.Tensor, state: torch.Tensor, actor_memory: torch.Tensor,
                        starts: torch.Tensor) -> torch.Tensor:
        """At a state no one acts in (the value bootstraps)."""
        if self.config.chained:
            # Only V^(1) is bootstrapped, and agent 1 has no belief: skip the passes.
            beliefs = torch.zeros(*obs.shape[:-1], self.spec.n_agents * self.belief_width, dtype=obs.dtype,
                                  device=obs.device)
        else:
            step = self.chain(obs, None, actor_memory, starts, False, self.bootstrap_noise)
            beliefs = self.beliefs(step.actor_in)
        return self._critic_input(state, beliefs)

    def _critic_input(self, state: torch.Tensor, beliefs: torch.Tensor) -> torch.Tensor:
        n = self.spec.n_agents
        return self.critic.inputs(torch.cat([state.unsqueeze(-2).expand(*state.shape[:-1], n, state.shape[-1]),
                                             beliefs], dim=-1))

    # --- Alg. 3 -------------------------------------------------------------------------------------
    # Line 3 (the N micro-steps of every env step) is the collector built above; train_iteration = update(collect()).
    def update(self, storage: RolloutStorage) -> dict[str, float]:
        cfg = self.config
        if cfg.chained:  # line 4: chained advantages over the micro-steps (sec. 6, App. D)
            # V^(1) of the state each step leads to: next_values is V^(i) there, agent 1's column is V^(1).
            advantages, returns = chained_advantages(
                storage["values"], storage["next_values"][..., 0], storage["rewards"][..., -1],
                storage["terminated"], storage["episode_end"], self.micro_gamma, self.micro_lambda)
        else:  # the "without chaining" ablation: each agent's GAE on its own V^(i)(s, b^(i))
            advantages, returns = rollout_gae(storage, cfg.gamma, cfg.gae_lambda)
        # Lines 5-6 read the same stored rollout, so their order only orders the random minibatch draws.
        # line 6, the decentralized critics, then line 5: each agent's own ratio (eq. 3), PPO-Clip
        return self.backbone_update(storage, advantages, returns, lambda batch: ppo_update(self.actor, batch, cfg))

