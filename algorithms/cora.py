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

Seed batches (docs/architecture.md): built with `n_seeds` K, every part holds K seeds (the Q critics too: one
weight block per seed, `networks.AgentLinear`), the rollout is `[T, K, B, ...]` and everything CORA computes on
it is per seed: each seed's T*B samples in its solo run's order (`per_seed`, `[K, T*B, ...]`), its own V
statistics, its own QP scale and QP solve (one `solve_core_allocation` call per seed, see `allocate`), its own
loss and gradient norm; coalition samples (eq. 19), Monte Carlo joint actions (eq. 4) and Q's minibatches come
from CORA's random streams, one per seed. `n_seeds=1` is the solo run, on the same code path.
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
from algorithms.blocks.networks import ACTIVATIONS, AgentLinear, AgentMLP, seeded_affine
from algorithms.blocks.on_policy_collection import RolloutCollector
from algorithms.blocks.on_policy_config import OnPolicyConfig
from algorithms.blocks.on_policy_contract import OnPolicyContract
from algorithms.blocks.parts import Named
from algorithms.blocks.policy import Policy, PolicyStep
from algorithms.blocks.ppo_loss import clipped_step, ppo_update
from algorithms.blocks.rollout import RolloutStorage, learning_rewards, minibatches, seed_mean, update_batch
from algorithms.blocks.seed_streams import SeedStreams
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


def per_seed(x: torch.Tensor) -> torch.Tensor:
    """A rollout field `[T, K, B, ...]` as each seed's samples `[K, T*B, ...]`, in its solo run's order (by time)."""
    return x.transpose(0, 1).flatten(1, 2)


def coalition_sums(members: torch.Tensor, parts: torch.Tensor) -> torch.Tensor:
    """sum_{i in C} parts_i for every coalition C: `members [m, n]` (shared) or `[..., m, n]` (per sample) and
    `parts [..., n, H]` -> `[..., m, H]`. One `[m, n] x [n, H]` product per sample (a bmm over the samples), so a
    sample's sums round alike however many samples and seeds the pass holds (one matmul over all samples' rows
    would give BLAS a shape that grows with them)."""
    lead, (m, n), width = parts.shape[:-2], members.shape[-2:], parts.shape[-1]
    mem = members.to(parts.dtype).expand(*lead, m, n).reshape(-1, m, n)
    return torch.bmm(mem, parts.reshape(-1, n, width)).view(*lead, m, width)


class MLPQCritic(nn.Module):
    """Q(s, a) = MLP([s, x_1, .., x_n]) with x_i agent i's action input (one-hot or the scaled action vector).

    The first layer is linear in its input, so it splits into a state part and one part per agent:
    pre(s, x) = W_s s + b + sum_i W_i x_i. A coalition's input differs from another's only in which agents
    contribute W_i a_i and which W_i abar_i, so every coalition's first layer is one product of the coalition
    masks with the per-agent parts, without materializing a [samples, coalitions, state + joint action] input.

    One network per seed of a seed batch (`n_seeds` K, `networks.AgentLinear`'s seed-major weights
    `[K, in, out]`): states are `[K, B, S]`, action inputs `[K, B, n, w]`, values `[K, B]`.
    """

    def __init__(self, state_dim: int, n_agents: int, width: int, hidden_sizes: list[int], activation: str,
                 n_seeds: int = 1):
        super().__init__()
        self.state_dim, self.n_agents, self.width, self.n_seeds = state_dim, n_agents, width, n_seeds
        widths = [state_dim + n_agents * width, *hidden_sizes]
        self.layers = nn.ModuleList(AgentLinear(1, i, o, n_seeds=n_seeds)
                                    for i, o in zip(widths[:-1], widths[1:], strict=True))
        self.out = AgentLinear(1, widths[-1], 1, gain=1.0, n_seeds=n_seeds)
        self.activation = ACTIVATIONS[activation]

    def _after_first(self, pre: torch.Tensor) -> torch.Tensor:
        """The rest of the network on first-layer pre-activations `[K, R, H]` -> `[K, R]` (one group per seed: the
        layers take `[K, R, in]` with `agent=0`)."""
        h = self.activation(pre)
        for layer in self.layers[1:]:
            h = self.activation(layer(h, 0))
        return self.out(h, 0).squeeze(-1)

    def forward(self, state: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """`state [K, B, S]`, `x [K, B, n, w]` -> Q `[K, B]`."""
        return self._after_first(self.layers[0](torch.cat([state, x.flatten(-2)], -1), 0))

    def _action_parts(self, x: torch.Tensor) -> torch.Tensor:
        """Each agent's first-layer part W_i x_i for action inputs `x [K, R, n, w]`, `[K, R, n, H]`: one product per
        (seed, agent) block, batched over both."""
        action_w = self.layers[0].weight[:, self.state_dim:].unflatten(1, (self.n_agents, self.width))  # [K, n, w, H]
        return torch.matmul(x.transpose(1, 2), action_w).transpose(1, 2)

    def coalition_values(self, state, x, others, members) -> torch.Tensor:
        """Q(s, x_C, others_{N\\C}) for every coalition, `[K, B, m]`.

        `x [K, B, n, w]` the taken actions; `others [K, B, n, w]` one substitute joint action (eq. 5) or
        `[K, B, D, n, w]` D sampled ones, averaged (eq. 4 by Monte Carlo); `members [m, n]` or `[K, B, m, n]` bool.
        """
        first = self.layers[0]
        base = seeded_affine(state, first.weight[:, :self.state_dim], first.bias)  # W_s s + b: [K, B, H]
        own = self._action_parts(x)  # each agent's part for its taken action: [K, B, n, H]
        sampled = others.dim() == 5
        if sampled:  # CORA eq. 4 by Monte Carlo: (1/D) sum_d Q(s, a_C, a^d_{N\C}), one draw of the whole team per d
            other = self._action_parts(others.flatten(1, 2)).unflatten(1, others.shape[1:3])  # [K, B, D, n, H]
            base, own = base.unsqueeze(2), own.unsqueeze(2)
            members = members if members.dim() == 2 else members.unsqueeze(2)  # [K, B, 1, m, n]
        else:  # CORA eq. 5: agents in C play a_i, the others abar_i
            other = self._action_parts(others)
        # pre = W_s s + b + sum_i W_i abar_i + sum_{i in C} (W_i a_i - W_i abar_i)
        pre = (base + other.sum(-2)).unsqueeze(-2) + coalition_sums(members, own - other)  # [K, B, (D,) m, H]
        q = self._after_first(pre.flatten(1, -2)).view(pre.shape[:-1])  # [K, B, (D,) m]
        return q.mean(2) if sampled else q


class QuadraticQCritic(nn.Module):
    """CORA 6.1's quadratic critic: Q(s, a) = b(s) + sum_i <u_i(s), x_i> + sum_{i<j} x_i^T W_ij(s) x_j.

    b, u_i and W_ij are heads of one MLP on the state. Q has no x_i^T W_ii x_i term, so it is multilinear
    across agents: for independent a_{N\\C} ~ pi_{N\\C}, E[Q(s, a_C, a_{N\\C})] = Q(s, a_C, E[x_{N\\C}]). Eq. 4 is
    therefore exact in closed form: the policy probabilities (discrete) or the mean action input (continuous)
    take the place of the non-coalition agents' inputs (CORA 6.1).

    One network per seed of a seed batch (`n_seeds` K), shapes as `MLPQCritic`'s.
    """

    def __init__(self, state_dim: int, n_agents: int, width: int, hidden_sizes: list[int], activation: str,
                 n_seeds: int = 1):
        super().__init__()
        self.n_agents, self.width = n_agents, width
        pairs = torch.triu_indices(n_agents, n_agents, offset=1)  # (i, j), i < j
        self.register_buffer("pair_i", pairs[0], persistent=False)
        self.register_buffer("pair_j", pairs[1], persistent=False)
        self.n_pairs = pairs.shape[1]
        self.torso = AgentMLP(1, state_dim, hidden_sizes, activation, n_seeds)
        self.head = AgentLinear(1, self.torso.out_features, 1 + n_agents * width + self.n_pairs * width * width,
                                gain=1.0, n_seeds=n_seeds)

    def _terms(self, state: torch.Tensor):
        b, u, w = self.head(self.torso(state, 0), 0).split(
            [1, self.n_agents * self.width, self.n_pairs * self.width * self.width], dim=-1)
        return (b.squeeze(-1), u.unflatten(-1, (self.n_agents, self.width)),
                w.unflatten(-1, (self.n_pairs, self.width, self.width)))

    def _evaluate(self, state: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """`state [K, B, S]`, joint action inputs `x [K, B, m, n, w]` -> Q `[K, B, m]`."""
        b, u, w = self._terms(state)
        linear = (u.unsqueeze(2) * x).sum((-2, -1))  # sum_i <u_i, x_i>
        # x_i^T W_ij by one product per (seed, sample, pair), then its dot with x_j: [K, B, P, m, w]
        left = torch.matmul(x[..., self.pair_i, :].movedim(2, -2), w)
        pairwise = (left * x[..., self.pair_j, :].movedim(2, -2)).sum(-1).sum(2)
        return b.unsqueeze(-1) + linear + pairwise

    def forward(self, state: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """`state [K, B, S]`, `x [K, B, n, w]` -> Q `[K, B]`."""
        return self._evaluate(state, x.unsqueeze(2)).squeeze(2)

    def coalition_values(self, state, x, others, members) -> torch.Tensor:
        """As `MLPQCritic.coalition_values`, with `others [K, B, n, w]` (abar for eq. 5, E[x] for eq. 4)."""
        joint = torch.where(members.unsqueeze(-1), x.unsqueeze(2), others.unsqueeze(2))  # [K, B, m, n, w]
        return self._evaluate(state, joint)


class CORA(OnPolicyContract):
    Config = CORAConfig
    config: CORAConfig

    def __init__(self, spec: EnvSpec, config: CORAConfig, device: torch.device, n_seeds: int | None = 1):
        # K seeds at once (docs/architecture.md, "Seed batches"); CORA has no unbatched layout: one seed is K = 1
        if n_seeds is None:
            raise ValueError("cora always has a seed dimension: n_seeds=1 is one seed")
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
        super().__init__(spec, config, device, n_seeds)
        seeds = n_seeds
        self.actor = Policy(spec, config, n, spec.obs_dim, device, n_seeds=seeds)  # pi(a_i | o_i), ids if shared
        self.critic = ValueCritic(config, spec.state_dim, 1, n, device, seeds)  # one V(s): A_N is the team's (eq. 2)
        self.collector = RolloutCollector(
            config.rollout_length, config.recurrent, act=self.policy_step, critic=self.critic,
            critic_input=lambda obs, state, step: state.unsqueeze(-2), actor_memory=self.initial_memory(config.n_envs),
            rewards=lambda reward: learning_rewards(reward, spec.reward_mode, config.learning_reward), n_seeds=seeds)
        self.schedule = LinearAnnealing(config.lr_annealing)
        self.action_width = spec.n_actions if spec.discrete else spec.action_dim
        critic_cls = QuadraticQCritic if config.q_critic == "quadratic" else MLPQCritic
        self.q_critic = critic_cls(spec.state_dim, n, self.action_width, config.hidden_sizes,
                                   config.activation, seeds).to(device)
        self.q_optimizer = Adam(self.q_critic.parameters(), lr=config.lr_critic, eps=1e-5)
        # CORA's own draws: coalition samples (eq. 19), Monte Carlo joint actions (eq. 4), Q's minibatches
        self.streams = SeedStreams(seeds, device)
        self.extra_parts = (Named(q_critic=self.q_critic, q_optimizer=self.q_optimizer, cora_streams=self.streams),)
        self.coalitions = (all_proper_coalitions(n, device=device) if self.full_coalitions and n > 1 else None)
        self.cora_stats: dict[str, float | list[float]] = {}

    def policy_step(self, timestep: TimeStep, memory: torch.Tensor, deterministic: bool = False) -> PolicyStep:
        return self.actor.step(timestep.obs, timestep.avail_actions, memory, timestep.done, deterministic)

    # --- Algorithm 1 ----------------------------------------------------------------------------------------
    # Lines 3-10 are the collector built above; train_iteration = update(collect()).
    def update(self, storage: RolloutStorage) -> dict[str, float | list[float]]:
        cfg, seeds = self.config, self.n_seeds
        advantages, returns = self.advantages(storage)  # lines 11-20: per-agent credits in the core
        self.critic.normalizer.update(returns)
        if cfg.normalize_advantages:
            advantages = standardize(advantages, seeds)  # each seed over its own batch
        batch = update_batch(storage, advantages, returns, cfg, seeded=True)
        self.schedule.apply((self.actor.optimizer, cfg.lr_actor), (self.critic.optimizer, cfg.lr_critic),
                            (self.q_optimizer, cfg.lr_critic))
        losses = self.critic.update(batch, cfg)  # line 22: V
        losses.update(ppo_update(self.actor, batch, cfg))  # line 21: each agent's PPO on its credit
        losses.update(self.update_q_critic(storage))  # line 23: Q
        losses.update(self.cora_stats)
        self.schedule.advance(self.steps_per_iteration)
        return losses

    def advantages(self, storage: RolloutStorage) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-agent credits `[T, K, B, n]` and V's targets; Q's TD targets go to `storage["q_targets"]`."""
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

    def sampled_action_inputs(self, params: torch.Tensor, draws: int) -> torch.Tensor:
        """`[K, B, D, n, w]`: D joint actions drawn from the current policies (CORA eq. 4's a^d), from each seed's
        stream (the policy head's own sampling: Gumbel-max for a categorical, mean + std * z for a Gaussian)."""
        head = self.actor.net.head
        params = params.unsqueeze(2).expand(-1, -1, draws, *params.shape[2:])  # [K, B, D, n, P]
        return self.action_inputs(head.sample(params, False, head.noise(params, self.streams)))

    # --- coalition values and credits -----------------------------------------------------------------------
    def coalition_set(self, batch: int) -> torch.Tensor:
        """`[m, n]` (every proper coalition, A.9) or `[K, batch, m, n]` (m drawn per sample from each seed's stream,
        eq. 19)."""
        if self.coalitions is not None:
            return self.coalitions
        return torch.stack([sample_coalitions(self.spec.n_agents, self.config.coalition_samples, batch, generator,
                                              self.device) for generator in self.streams.generators])

    @torch.no_grad()
    def coalition_advantages(self, state: torch.Tensor, actions: torch.Tensor, params: torch.Tensor,
                             values: torch.Tensor, members: torch.Tensor) -> torch.Tensor:
        """A_C for every sample and coalition, `[K, B, m]`: CORA eq. 5 or eq. 4 minus V(s).

        `state [K, B, S]`, `actions [K, B, n(, d)]`, policy `params [K, B, n, P]`, `values [K, B]` (V(s), reward
        units), `members [m, n]` or `[K, B, m, n]` bool.
        """
        cfg = self.config
        x = self.action_inputs(actions)
        if cfg.coalition_value == "baseline":
            others = self.baseline_action_inputs(params)  # CORA eq. 5
        elif cfg.q_critic == "quadratic":
            others = self.expected_action_inputs(params)  # CORA eq. 4, exact (6.1: Q is multilinear across agents)
        else:
            others = self.sampled_action_inputs(params, cfg.mc_samples)  # CORA eq. 4 by Monte Carlo
        # Chunks of each seed's samples, cut where its solo run cuts them (a chunk holds K seeds' rows)
        batch, m = state.shape[1], members.shape[-2]
        per_sample = m * (others.shape[2] if others.dim() == 5 else 1) * self._coalition_row_size()
        step = max(1, COALITION_CHUNK_ELEMENTS // max(per_sample, 1))
        q = torch.cat([self.q_critic.coalition_values(state[:, i:i + step], x[:, i:i + step], others[:, i:i + step],
                                                      members if members.dim() == 2 else members[:, i:i + step])
                       for i in range(0, batch, step)], dim=1)
        return self.critic.normalizer.denormalize(q) - values.unsqueeze(-1)  # each seed's V statistics

    def _coalition_row_size(self) -> int:
        """Elements of one (sample, coalition) row of the coalition-value pass (memory bound for chunking)."""
        if isinstance(self.q_critic, QuadraticQCritic):
            return self.spec.n_agents * self.action_width + 2 * self.q_critic.n_pairs * self.action_width
        return max(self.config.hidden_sizes)

    def allocate(self, coalition_adv: torch.Tensor, grand: torch.Tensor, members: torch.Tensor) -> torch.Tensor:
        """Per-agent credits `[K, B, n]` in the strong epsilon-core (CORA eq. 8 / eq. 19): `coalition_adv [K, B, m]`,
        `grand [K, B]`, `members [m, n]` or `[K, B, m, n]`.

        One solve per seed, all its samples at once: a sample's last bits from the batched interior-point method
        depend on the other samples of its call (core_qp's "Batch independence"), so each seed's call is its solo
        run's, the same samples and shapes, and a seed of a batch gets its solo run's credits bit for bit.
        """
        credits, epsilon, iterations = [], [], []
        for k in range(self.n_seeds):
            adv, a_n = coalition_adv[k], grand[k]
            scale = 1.0
            if self.config.standardize_qp:  # eq. 8 in units of the seed's advantages: lambda is unit-free
                scale = torch.cat([a_n, adv.flatten()]).square().mean().sqrt().clamp_min(1e-8)
            solution = solve_core_allocation(adv / scale, a_n / scale, members if members.dim() == 2 else members[k],
                                             self.config.variance_weight)
            credits.append(solution.credits * scale)  # float64 inside the solver, our dtype out
            epsilon.append(float(solution.epsilon.mean() * scale))
            iterations.append(float(solution.iterations))
        self.cora_stats = {"core_epsilon": epsilon, "qp_iterations": iterations, "coalitions": float(members.shape[-2])}
        return torch.stack(credits)

    def stored_policy_params(self, storage: RolloutStorage) -> torch.Tensor:
        """The current policies' distribution parameters at every stored step, `[T, K, B, n, P]` (one no-grad pass;
        recurrent actors unroll the stored chunks from their stored memories, as the actor update does)."""
        cfg = self.config
        steps, seeds, copies = storage["starts"].shape
        chunk = cfg.chunk_length if cfg.recurrent else 1
        seq = storage.sequences(["actor_in", "avail", "starts", "actor_memory"], chunk, seeded=True)
        params = self.actor.sequence_params(seq)  # [C, K, S, n, P], S = (T / C) * B
        # [C, K, T/C, B, ...] -> [T/C, C, K, B, ...] -> [T, K, B, ...]
        return params.unflatten(2, (steps // chunk, copies)).movedim(2, 0).reshape(steps, seeds, copies,
                                                                                   *params.shape[3:])

    @torch.no_grad()
    def core_credits(self, storage: RolloutStorage, grand: torch.Tensor) -> torch.Tensor:
        """Alg. 1 lines 12-20: per-agent credits `[T, K, B, n]` from A_N `[T, K, B]` and the coalitions' A_C."""
        if self.spec.n_agents == 1:  # a one-agent team: the grand coalition is the only one
            return grand.unsqueeze(-1)
        params = per_seed(self.stored_policy_params(storage))
        state = per_seed(storage["critic_in"][..., 0, :])  # the joint V's input: the global state
        values = per_seed(storage["values"][..., 0])  # V(s), de-normalized at collection
        members = self.coalition_set(state.shape[1])
        coalition_adv = self.coalition_advantages(state, per_seed(storage["actions"]), params, values, members)
        credits = self.allocate(coalition_adv, per_seed(grand), members)  # [K, T*B, n]
        return credits.unflatten(1, (grand.shape[0], grand.shape[2])).transpose(0, 1)

    # --- the Q critic ----------------------------------------------------------------------------------------
    def update_q_critic(self, storage: RolloutStorage) -> dict[str, list[float]]:
        """Q(s, a) regressed on y_t (in V's normalized units), `ppo_epochs` x `num_minibatches` steps as V, each seed
        on its own samples, loss and gradient norm; returns each seed's mean loss."""
        cfg, seeds = self.config, self.n_seeds
        targets = self.critic.normalizer.normalize(storage["q_targets"].unsqueeze(-1))[..., 0]  # [T, K, B]
        fields = {"starts": storage["starts"], "state": storage["critic_in"][..., 0, :],
                  "actions": storage["actions"], "targets": targets}
        samples = {name: per_seed(value).unsqueeze(0) for name, value in fields.items()}  # [1, K, T*B, ...]
        total, count = 0.0, 0
        for mb in minibatches(samples, cfg.ppo_epochs, cfg.num_minibatches, self.streams):
            q = self.q_critic(mb["state"][0], self.action_inputs(mb["actions"][0]))  # [K, M]
            loss = 0.5 * seed_mean((q - mb["targets"][0]).pow(2).unsqueeze(-1), seeds)  # [K]
            clipped_step(self.q_optimizer, self.q_critic, loss, cfg.max_grad_norm, seeds)
            total, count = total + loss.detach(), count + 1
        return {"q_loss": (total / count).tolist()}
