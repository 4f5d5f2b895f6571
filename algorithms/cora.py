"""CORA-PPO: core advantage decomposition (CORA paper, sec. 4, Algorithm 1) on the PPO parts
of algorithms/blocks (the MAPPO/HAPPO backbone).

Per update (Alg. 1), on the whole rollout at once (no loop over agents, coalitions or samples; only rollouts
too large for one pass are cut into memory-bounded chunks of samples):

1. Two critics (CORA 4.2). V(s), one value per copy on the global state (as HAPPO's), gives the
   grand-coalition advantage A_N by GAE (eq. 2; Alg. 1 line 18). Q(s, a) on the state and the joint action
   (one-hot per agent for discrete actions; for continuous ones the action vector, clipped to the box the
   environment clips to and scaled to [-1, 1]) learns the TD target
   y_t = r_t + gamma V(s_{t+1}) (Alg. 1 lines 11 and 23; V(final state) on truncation, 0 on termination,
   as the collector's `next_values`).
2. Coalitional advantages for every sample and every coalition C (Alg. 1 lines 13-17): eq. 5,
   Q(s, a_C, abar_{N\\C}) - V(s) with abar the most probable action (`coalition_value: baseline`), or eq. 4,
   E_{a_{N\\C} ~ pi}[Q(s, a_C, a_{N\\C})] - V(s) (`coalition_value: expected`: a mean over `mc_samples` joint
   actions drawn from the current policies, or exact in closed form with the quadratic critic). The
   policies come from one no-grad forward of the actor on the stored inputs (recurrent actors: on the
   stored chunks, via the policy's `sequence_params`). Coalitions: all 2^n - 2 proper ones (A.9) or
   `coalition_samples` m drawn per sample (eq. 19).
3. Credits: the strong epsilon-core QP (eq. 8 / eq. 19, `algorithms.core_qp`) for all samples at once
   (Alg. 1 line 19), by default on advantages divided by the batch's RMS (`standardize_qp`: lambda is then
   unit-free). Each agent's credit replaces the shared advantage; the credits are then normalized as
   advantages and PPO's clipped update runs per agent (Alg. 1 line 21).

What V learns (Alg. 1 line 22 writes the TD(0) target y_t): by default GAE's lambda-return
(`value_target: gae`), deliberately: it is the target of the MAPPO/HAPPO baselines CORA is compared
with on the same backbone (CORA Table 1 gives one row of PPO values for all methods), and it is also a
TD target (TD(lambda)); on the one-step games (matrix/acpo-3x3, differential/*) both are r_t.
`value_target: td0` follows line 22 literally. Q always learns Alg. 1's TD(0) target. With value
normalization, Q learns its targets in V's normalized units (the same running statistics) and is
de-normalized before the coalition values, so A_C and A_N share one scale.

The Q critic is feed-forward on the global state even when the actor and V are recurrent
(SMAX/SMAC configs): the coalition values only vary the action input, and the global state is what
CORA's Q(s, a) conditions on.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from algorithms.blocks.adam import Adam
from algorithms.blocks.gae import rollout_gae, standardize
from algorithms.blocks.lr_schedule import LinearAnnealing
from algorithms.blocks.networks import ACTIVATIONS, AgentLinear, AgentMLP
from algorithms.blocks.on_policy_collection import RolloutCollector
from algorithms.blocks.on_policy_config import OnPolicyConfig
from algorithms.blocks.on_policy_contract import OnPolicyContract
from algorithms.blocks.parts import Named
from algorithms.blocks.policy import Policy, PolicyStep
from algorithms.blocks.ppo_loss import clipped_step, ppo_update
from algorithms.blocks.rollout import RolloutStorage, learning_rewards, minibatch_indices, update_batch
from algorithms.blocks.value_critic import ValueCritic
from algorithms.core_qp import all_proper_coalitions, sample_coalitions, solve_core_allocation
from coopbench.base.errors import CoopbenchError
from environments.base import EnvSpec, TimeStep

# Largest intermediate (elements) of one coalition-value pass; larger rollouts are cut into sample chunks.
COALITION_CHUNK_ELEMENTS = 1 << 24


class CORAConfig(OnPolicyConfig):
    coalition_value: Literal["baseline", "expected"] = Field(
        "baseline", description="baseline: CORA eq. 5, others play their most probable action (discrete: argmax, "
                                "continuous: the Gaussian mean); expected: eq. 4, others follow their current policies")
    mc_samples: int = Field(16, ge=1, description="eq. 4 with the MLP critic: joint actions drawn from the policies "
                                                  "per sample (the quadratic critic computes eq. 4 exactly)")
    coalition_samples: int | None = Field(
        None, ge=1, description="null: every proper coalition (2^n - 2, CORA A.9); m: m distinct coalitions drawn per "
                                "sample (eq. 19); m >= 2^n - 2 is the full set")
    max_coalitions: int = Field(1024, ge=1, description="refuse the full coalition set above this many coalitions")
    variance_weight: float = Field(1.0, ge=0, description="lambda of eq. 8 (0: CORA-PPO without std)")
    standardize_qp: bool = Field(
        True, description="solve eq. 8 on advantages divided by the batch's root mean square of A_N and A_C (credits "
                          "scaled back): variance_weight is then unit-free; false: eq. 8 in reward units")
    q_critic: Literal["mlp", "quadratic"] = Field(
        "mlp", description="mlp: Q = MLP([s, a_1..a_n]); quadratic: CORA 6.1's b(s) + sum <u_i(s), a_i> + "
                           "sum_{i<j} a_i^T W_ij(s) a_j (CORA-PPO-QC)")
    value_target: Literal["gae", "td0"] = Field(
        "gae", description="V's target: gae: GAE's lambda-return; td0: r + gamma V(s') (Alg. 1 line 22)")


class MLPQCritic(nn.Module):
    """Q(s, a) = MLP([s, x_1, .., x_n]) with x_i agent i's action input (one-hot or the scaled action vector).

    The first layer is linear in its input, so it splits into a state part and one part per agent:
    pre(s, x) = W_s s + b + sum_i W_i x_i. A coalition's input differs from another's only in which agents
    contribute W_i a_i and which W_i abar_i, so every coalition's first layer is one matmul of the coalition
    masks with the per-agent parts, without materializing a [samples, coalitions, state + joint action] input.
    """

    def __init__(self, state_dim: int, n_agents: int, width: int, hidden_sizes: list[int], activation: str):
        super().__init__()
        self.state_dim, self.n_agents, self.width = state_dim, n_agents, width
        widths = [state_dim + n_agents * width, *hidden_sizes]
        self.layers = nn.ModuleList(AgentLinear(1, i, o) for i, o in zip(widths[:-1], widths[1:], strict=True))
        self.out = AgentLinear(1, widths[-1], 1, gain=1.0)
        self.activation = ACTIVATIONS[activation]

    def _first_layer(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        weight, bias = self.layers[0].weight[0], self.layers[0].bias[0]
        state_w, action_w = weight.split([self.state_dim, self.n_agents * self.width])
        return state_w, action_w.view(self.n_agents, self.width, -1), bias

    def _after_first(self, pre: torch.Tensor) -> torch.Tensor:
        h = self.activation(pre)
        for layer in self.layers[1:]:
            h = self.activation(layer(h))
        return self.out(h).squeeze(-1)

    def forward(self, state: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """`state [B, S]`, `x [B, n, w]` -> Q `[B]`."""
        state_w, action_w, bias = self._first_layer()
        return self._after_first(state @ state_w + bias + torch.einsum("bnw,nwh->bh", x, action_w))

    def coalition_values(self, state, x, others, members) -> torch.Tensor:
        """Q(s, x_C, others_{N\\C}) for every coalition, `[B, m]`.

        `x [B, n, w]` the taken actions; `others [B, n, w]` one substitute joint action (eq. 5) or
        `[B, K, n, w]` K sampled ones, averaged (eq. 4 by Monte Carlo); `members [m, n]` or `[B, m, n]` bool.
        """
        state_w, action_w, bias = self._first_layer()
        base = state @ state_w + bias  # [B, H]
        own = torch.einsum("bnw,nwh->bnh", x, action_w)  # each agent's first-layer part for its taken action
        mem = members.to(own.dtype)
        if others.dim() == 3:  # CORA eq. 5: agents in C play a_i, the others abar_i
            other = torch.einsum("bnw,nwh->bnh", others, action_w)
            return self._after_first((base + other.sum(1)).unsqueeze(1) + mem @ (own - other))  # [B, m]
        # CORA eq. 4 by Monte Carlo: (1/K) sum_k Q(s, a_C, a^k_{N\C}), one draw of the whole team per k
        other = torch.einsum("bknw,nwh->bknh", others, action_w)  # [B, K, n, H]
        pre = (base.unsqueeze(1) + other.sum(2)).unsqueeze(2) + (mem @ own).unsqueeze(1) - mem.unsqueeze(-3) @ other
        return self._after_first(pre).mean(1)  # [B, K, m] -> [B, m]


class QuadraticQCritic(nn.Module):
    """CORA 6.1's quadratic critic: Q(s, a) = b(s) + sum_i <u_i(s), x_i> + sum_{i<j} x_i^T W_ij(s) x_j.

    b, u_i and W_ij are heads of one MLP on the state. Q has no x_i^T W_ii x_i term, so it is multilinear
    across agents: for independent a_{N\\C} ~ pi_{N\\C}, E[Q(s, a_C, a_{N\\C})] = Q(s, a_C, E[x_{N\\C}]). Eq. 4 is
    therefore exact in closed form: the policy probabilities (discrete) or the mean action input (continuous)
    take the place of the non-coalition agents' inputs (CORA 6.1).
    """

    def __init__(self, state_dim: int, n_agents: int, width: int, hidden_sizes: list[int], activation: str):
        super().__init__()
        self.n_agents, self.width = n_agents, width
        pairs = torch.triu_indices(n_agents, n_agents, offset=1)  # (i, j), i < j
        self.register_buffer("pair_i", pairs[0], persistent=False)
        self.register_buffer("pair_j", pairs[1], persistent=False)
        self.n_pairs = pairs.shape[1]
        self.torso = AgentMLP(1, state_dim, hidden_sizes, activation)
        self.head = AgentLinear(1, self.torso.out_features, 1 + n_agents * width + self.n_pairs * width * width,
                                gain=1.0)

    def _terms(self, state: torch.Tensor):
        b, u, w = self.head(self.torso(state)).split(
            [1, self.n_agents * self.width, self.n_pairs * self.width * self.width], dim=-1)
        return (b.squeeze(-1), u.unflatten(-1, (self.n_agents, self.width)),
                w.unflatten(-1, (self.n_pairs, self.width, self.width)))

    def _evaluate(self, state: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """`state [B, S]`, joint action inputs `x [B, m, n, w]` -> Q `[B, m]`."""
        b, u, w = self._terms(state)
        linear = torch.einsum("bnw,bmnw->bm", u, x)
        pairwise = torch.einsum("bmpv,bpvw,bmpw->bm", x[:, :, self.pair_i], w, x[:, :, self.pair_j])
        return b.unsqueeze(-1) + linear + pairwise

    def forward(self, state: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return self._evaluate(state, x.unsqueeze(1)).squeeze(1)

    def coalition_values(self, state, x, others, members) -> torch.Tensor:
        """As `MLPQCritic.coalition_values`, with `others [B, n, w]` (abar for eq. 5, E[x] for eq. 4)."""
        joint = torch.where(members.unsqueeze(-1), x.unsqueeze(1), others.unsqueeze(1))  # [B, m, n, w]
        return self._evaluate(state, joint)


class CORA(OnPolicyContract):
    Config = CORAConfig
    config: CORAConfig

    def __init__(self, spec: EnvSpec, config: CORAConfig, device: torch.device):
        if spec.reward_mode == "private" and config.learning_reward == "own":
            raise CoopbenchError(f"cora decomposes one team advantage; learning_reward=own gives each agent of "
                                 f"{spec.name} its own reward", "set learning_reward: team")
        n = spec.n_agents
        self.n_proper_coalitions = 2 ** n - 2
        m = config.coalition_samples
        self.full_coalitions = m is None or m >= self.n_proper_coalitions
        if self.full_coalitions and self.n_proper_coalitions > config.max_coalitions:
            raise CoopbenchError(
                f"cora: {spec.name} has {n} agents, 2^{n} - 2 = {self.n_proper_coalitions} coalitions per sample, "
                f"above max_coalitions={config.max_coalitions}",
                "sample coalitions (CORA eq. 19): set coalition_samples, e.g. 32, or raise max_coalitions")
        super().__init__(spec, config, device)
        self.actor = Policy(spec, config, n, spec.obs_dim, device)  # pi(a_i | o_i), ids if shared
        self.critic = ValueCritic(config, spec.state_dim, 1, n, device)  # one V(s): A_N is the team's (eq. 2)
        self.collector = RolloutCollector(
            config.rollout_length, config.recurrent, act=self.policy_step, critic=self.critic,
            critic_input=lambda obs, state, step: state.unsqueeze(-2), actor_memory=self.initial_memory(config.n_envs),
            rewards=lambda reward: learning_rewards(reward, spec.reward_mode, config.learning_reward))
        self.schedule = LinearAnnealing(config.lr_annealing)
        self.action_width = spec.n_actions if spec.discrete else spec.action_dim
        critic_cls = QuadraticQCritic if config.q_critic == "quadratic" else MLPQCritic
        self.q_critic = critic_cls(spec.state_dim, n, self.action_width, config.hidden_sizes,
                                   config.activation).to(device)
        self.q_optimizer = Adam(self.q_critic.parameters(), lr=config.lr_critic, eps=1e-5)
        self.extra_parts = (Named(q_critic=self.q_critic, q_optimizer=self.q_optimizer),)
        self.coalitions = (all_proper_coalitions(n, device=device) if self.full_coalitions and n > 1 else None)
        self.cora_stats: dict[str, float] = {}

    def policy_step(self, timestep: TimeStep, memory: torch.Tensor, deterministic: bool = False) -> PolicyStep:
        return self.actor.step(timestep.obs, timestep.avail_actions, memory, timestep.done, deterministic)

    # --- Algorithm 1 ----------------------------------------------------------------------------------------
    # Lines 3-10 are the collector built above; train_iteration = update(collect()).
    def update(self, storage: RolloutStorage) -> dict[str, float]:
        cfg = self.config
        advantages, returns = self.advantages(storage)  # lines 11-20: per-agent credits in the core
        self.critic.normalizer.update(returns)
        if cfg.normalize_advantages:
            advantages = standardize(advantages)
        batch = update_batch(storage, advantages, returns, cfg)
        self.schedule.apply((self.actor.optimizer, cfg.lr_actor), (self.critic.optimizer, cfg.lr_critic),
                            (self.q_optimizer, cfg.lr_critic))
        losses = self.critic.update(batch, cfg)  # line 22: V
        losses.update(ppo_update(self.actor, batch, cfg))  # line 21: each agent's PPO on its credit
        losses.update(self.update_q_critic(storage))  # line 23: Q
        losses.update(self.cora_stats)
        self.schedule.advance(self.steps_per_iteration)
        return losses

    def advantages(self, storage: RolloutStorage) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-agent credits `[T, B, n]` and V's targets; Q's TD targets go to `storage["q_targets"]`."""
        cfg = self.config
        gae, returns = rollout_gae(storage, cfg.gamma, cfg.gae_lambda)  # eq. 2: A_N by GAE, the same for every agent
        not_terminated = (~storage["terminated"]).to(gae.dtype)
        # Alg. 1 line 11: y_t = r_t + gamma V(s_{t+1}) (V(final state) on truncation, none after termination)
        targets = storage["rewards"][..., 0] + cfg.gamma * not_terminated * storage["next_values"][..., 0]
        storage.fields["q_targets"] = targets
        if cfg.value_target == "td0":  # Alg. 1 line 22 literally
            returns = targets.unsqueeze(-1).expand_as(returns)
        return self.core_credits(storage, gae[..., 0]), returns

    # --- action inputs of Q ---------------------------------------------------------------------------------
    def action_inputs(self, actions: torch.Tensor) -> torch.Tensor:
        """Q's input per agent, `[..., n, w]`: one-hot (discrete) or the action clipped to the box the environment
        clips to and scaled to [-1, 1] (continuous: Q sees the action that produced the reward)."""
        if self.spec.discrete:
            return F.one_hot(actions, self.spec.n_actions).float()
        low, high = self.spec.action_low, self.spec.action_high
        return (actions.clamp(low, high) - (low + high) / 2) / ((high - low) / 2)

    def baseline_action_inputs(self, params: torch.Tensor) -> torch.Tensor:
        """CORA eq. 5's abar: the most probable action (discrete: argmax pi_i; continuous: the Gaussian mean)."""
        if self.spec.discrete:
            return self.action_inputs(params.argmax(-1))
        return self.action_inputs(self.actor.net.head.mean_log_std(params)[0])

    def expected_action_inputs(self, params: torch.Tensor) -> torch.Tensor:
        """E_{a_i ~ pi_i}[x_i]: the probabilities (discrete) or the mean of the clipped, scaled Gaussian action."""
        if self.spec.discrete:
            return params.exp()
        mean, log_std = self.actor.net.head.mean_log_std(params)
        std, low, high = log_std.exp(), self.spec.action_low, self.spec.action_high
        normal = torch.distributions.Normal(0.0, 1.0)
        alpha, beta = (low - mean) / std, (high - mean) / std
        cdf_a, cdf_b = normal.cdf(alpha), normal.cdf(beta)
        pdf_a, pdf_b = normal.log_prob(alpha).exp(), normal.log_prob(beta).exp()
        # E[clip(a, low, high)] for a ~ N(mean, std^2)
        clipped = low * cdf_a + high * (1 - cdf_b) + mean * (cdf_b - cdf_a) + std * (pdf_a - pdf_b)
        return (clipped - (low + high) / 2) / ((high - low) / 2)

    def sampled_action_inputs(self, params: torch.Tensor, k: int) -> torch.Tensor:
        """`[B, K, n, w]`: K joint actions drawn from the current policies (CORA eq. 4's a^k)."""
        batch, n = params.shape[:2]
        if self.spec.discrete:
            draws = torch.multinomial(params.exp().reshape(batch * n, -1), k, replacement=True)
            return self.action_inputs(draws.view(batch, n, k).transpose(1, 2))
        mean, log_std = self.actor.net.head.mean_log_std(params)
        noise = torch.randn(batch, k, *mean.shape[1:], device=mean.device, dtype=mean.dtype)
        return self.action_inputs(mean.unsqueeze(1) + noise * log_std.exp().unsqueeze(1))

    # --- coalition values and credits -----------------------------------------------------------------------
    def coalition_set(self, batch: int) -> torch.Tensor:
        """`[m, n]` (every proper coalition, A.9) or `[batch, m, n]` (m drawn per sample, eq. 19)."""
        if self.coalitions is not None:
            return self.coalitions
        return sample_coalitions(self.spec.n_agents, self.config.coalition_samples, batch, device=self.device)

    @torch.no_grad()
    def coalition_advantages(self, state: torch.Tensor, actions: torch.Tensor, params: torch.Tensor,
                             values: torch.Tensor, members: torch.Tensor) -> torch.Tensor:
        """A_C for every sample and coalition, `[B, m]`: CORA eq. 5 or eq. 4 minus V(s).

        `state [B, S]`, `actions [B, n(, d)]`, policy `params [B, n, P]`, `values [B]` (V(s), reward units),
        `members [m, n]` or `[B, m, n]` bool.
        """
        cfg = self.config
        x = self.action_inputs(actions)
        if cfg.coalition_value == "baseline":
            others = self.baseline_action_inputs(params)  # CORA eq. 5
        elif cfg.q_critic == "quadratic":
            others = self.expected_action_inputs(params)  # CORA eq. 4, exact (6.1: Q is multilinear across agents)
        else:
            others = self.sampled_action_inputs(params, cfg.mc_samples)  # CORA eq. 4 by Monte Carlo
        batch, m = state.shape[0], members.shape[-2]
        per_sample = m * (others.shape[1] if others.dim() == 4 else 1) * self._coalition_row_size()
        step = max(1, COALITION_CHUNK_ELEMENTS // max(per_sample, 1))
        q = torch.cat([self.q_critic.coalition_values(state[i:i + step], x[i:i + step], others[i:i + step],
                                                      members if members.dim() == 2 else members[i:i + step])
                       for i in range(0, batch, step)])
        return self.critic.normalizer.denormalize(q) - values.unsqueeze(-1)

    def _coalition_row_size(self) -> int:
        """Elements of one (sample, coalition) row of the coalition-value pass (memory bound for chunking)."""
        if isinstance(self.q_critic, QuadraticQCritic):
            return self.spec.n_agents * self.action_width + 2 * self.q_critic.n_pairs * self.action_width
        return max(self.config.hidden_sizes)

    def allocate(self, coalition_adv: torch.Tensor, grand: torch.Tensor, members: torch.Tensor) -> torch.Tensor:
        """Per-agent credits `[B, n]` in the strong epsilon-core (CORA eq. 8 / eq. 19), all samples in one solve."""
        scale = 1.0
        if self.config.standardize_qp:  # eq. 8 in units of the batch's advantages: lambda is unit-free
            scale = torch.cat([grand, coalition_adv.flatten()]).square().mean().sqrt().clamp_min(1e-8)
        solution = solve_core_allocation(coalition_adv / scale, grand / scale, members, self.config.variance_weight)
        self.cora_stats = {"core_epsilon": float(solution.epsilon.mean() * scale),
                           "qp_iterations": float(solution.iterations),
                           "coalitions": float(members.shape[-2])}
        return solution.credits * scale  # float64 inside the solver, our dtype out

    def stored_policy_params(self, storage: RolloutStorage) -> torch.Tensor:
        """The current policies' distribution parameters at every stored step, `[T, B, n, P]` (one no-grad pass;
        recurrent actors unroll the stored chunks from their stored memories, as the actor update does)."""
        cfg = self.config
        steps, copies = storage["starts"].shape
        chunk = cfg.chunk_length if cfg.recurrent else 1
        seq = storage.sequences(["actor_in", "avail", "starts", "actor_memory"], chunk)
        params = self.actor.sequence_params(seq)  # [C, S, n, P], S = (T / C) * B
        return params.unflatten(1, (steps // chunk, copies)).transpose(0, 1).reshape(steps, copies, *params.shape[2:])

    @torch.no_grad()
    def core_credits(self, storage: RolloutStorage, grand: torch.Tensor) -> torch.Tensor:
        """Alg. 1 lines 12-20: per-agent credits `[T, B, n]` from A_N `[T, B]` and the coalitions' A_C."""
        n = self.spec.n_agents
        if n == 1:  # a one-agent team: the grand coalition is the only one
            return grand.unsqueeze(-1)
        flat = lambda x: x.flatten(0, 1)  # noqa: E731 - [T, B, ...] -> [T*B, ...]
        params = flat(self.stored_policy_params(storage))
        state = flat(storage["critic_in"][..., 0, :])  # the joint V's input: the global state
        values = flat(storage["values"][..., 0])  # V(s), de-normalized at collection
        members = self.coalition_set(state.shape[0])
        coalition_adv = self.coalition_advantages(state, flat(storage["actions"]), params, values, members)
        return self.allocate(coalition_adv, flat(grand), members).view(*grand.shape, n)

    # --- the Q critic ----------------------------------------------------------------------------------------
    def update_q_critic(self, storage: RolloutStorage) -> dict[str, float]:
        """Q(s, a) regressed on y_t (in V's normalized units), `ppo_epochs` x `num_minibatches` steps as V."""
        state = storage["critic_in"][..., 0, :].flatten(0, 1)
        x = self.action_inputs(storage["actions"]).flatten(0, 1)
        targets = self.critic.normalizer.normalize(storage["q_targets"].flatten(0, 1))
        total, count = 0.0, 0
        for _ in range(self.config.ppo_epochs):
            for idx in minibatch_indices(state.shape[0], self.config.num_minibatches, self.device):
                loss = 0.5 * (self.q_critic(state[idx], x[idx]) - targets[idx]).pow(2).mean()
                clipped_step(self.q_optimizer, self.q_critic, loss, self.config.max_grad_norm)
                total, count = total + loss.item(), count + 1
        return {"q_loss": total / count}

