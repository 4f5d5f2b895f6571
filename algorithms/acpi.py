"""ACPI: Agent-Chained Policy Iteration (ACPO paper, sec. 3-5, App. E Alg. 2, App. G), exact on a game's model,
with the tabular comparators of ACPO Table 1 and the exact joint optimum.

Everything here plans on a `TabularModel` (environments/tabular_model.py) in float64, batched over states
and preceding-action tuples (Python loops only over agents, time steps and iterations).

Serialization (sec. 3). Each env step is split into N micro-steps, agent 1 first; agent i acts in the
augmented state [s, a^{<i}], rewards arrive at agent N's micro-step, and the micro-step discount is
gamma' = gamma^(1/N), so that gamma'^N = gamma per env step. With deterministic action distributions the
belief b^(i) of the AC-BMDP (sec. 4) is the tuple a^{<i} itself (Corollary C.2, App. E Alg. 2): agent i's
policy is a table pi_i[t, s, a_1, ..., a_{i-1}, a_i] (a distribution over a_i; a stochastic table is
allowed as the initial policy, e.g. Table 1's pi(A) = 0.6).

Agent-chained evaluation (Def. 5.1, Alg. 2 lines 5-6):
    Q^(N)([s, a^{<N}], a_N) = R(s, a) + gamma' E_{s'} V^(1)(s'),   V^(1)(s) = E_{a_1 ~ pi_1(.|s)} Q^(1)(s, a_1)
    Q^(i)([s, a^{<i}], a_i) = gamma' E_{a_{i+1} ~ pi_{i+1}(.|s, a^{<=i})} Q^(i+1)([s, a^{<=i}], a_{i+1}),  i < N.
Hence Q^(N) is the joint action value Q(s, a) of the un-serialized game and V^(1) = gamma'^(N-1) V(s).
Improvement (Eq. 1, Alg. 2 line 9): every agent greedy on its own Q^(i), all at once (not in sequence).

The time horizon (`horizon`). A model's episode ends after `model.horizon` steps or on entering a terminal
state. The matrix games carry time in their state and end in an absorbing terminal state; the Coordination
Game ends at the horizon by truncation, with time not in its state. We plan, by default, on exactly that
problem: `"finite"` indexes every table by the step t = 0..T-1 of the episode and evaluates by backward
induction over t (exact, no iteration; V = 0 after the horizon and in terminal states); the optimal policy
of a time-limited problem may depend on t, so executing agents count the steps of their episode (a clock,
no communication). `"discounted"` is the paper's own setting: one stationary table (t axis of length 1),
the infinite-horizon discounted problem (the time limit ignored; needs gamma < 1), evaluated exactly by one
linear solve for V^(1), the fixed point of the chained operators (Lemma 5.2).

Comparators on the un-serialized game (decentralized tables pi_i[t, s, a_i], ACPO sec. 2.2-2.3, Table 1):
- `simultaneous_update` (the tabular ideal of MAPPO): every agent at once greedy on its marginal
  Q_i(s, a_i) = E_{a_-i ~ pi_-i}[Q(s, a)] of the current joint policy.
- `iterative_best_response` (MA-PI, Zhong et al. 2024; HAPPO/HATRPO's basis): agents in turn, each solving
  its reduced MDP exactly (ACPO sec. 2.2) against the others' most recent policies. On a one-step game this
  is MA-PI's greedy step; in general both have the Nash equilibria as fixed points.
- `haspi` (Heterogeneous-Agent Soft Policy Iteration, Liu et al. 2024, "Maximum Entropy Heterogeneous-Agent
  RL", HASAC's basis): soft policy evaluation of the joint policy pi_k (V(s) = E_a[Q(s, a)] + alpha sum_i
  H(pi_i(.|s))), then, over a random permutation of the agents, pi_i <- argmin_pi KL(pi || exp(Q^{i_1:m}/alpha)/Z)
  = softmax(E[Q_{pi_k}(s, a)] / alpha), the expectation over the earlier agents' new and the later agents'
  old policies (HARL's HASAC actor loss: alpha log pi_i(a_i) - Q(s, a) with that sampling). The later agents'
  entropy term -alpha log pi^{later} in Liu et al.'s Q^{i_1:m} does not depend on a_i and cancels in the softmax.

ACPO Table 1 says HASPI reaches (C, C) with alpha = 5 from pi(A) = 0.6. The faithful HASPI above does not:
from (0.6, 0.2, 0.2) for both agents it converges to the quantal response equilibrium at A (pi(A) = 0.985
at alpha = 5) for every alpha < 6.7116, and to the one at C above. None of the readings we tried changes that: on a
one-step game the soft Q holds no future entropy terms, and the later agents' entropy cancels; the agent
order (fixed or random) is immaterial from a symmetric start; a damped update (mixing the softmax into
the old policy) and a softmax policy-gradient or soft natural-gradient flow instead of the exact step all
reach the A-QRE at alpha = 5 too (checked numerically). What would reproduce both HASPI rows of Table 1
(alpha = 1 -> (A, A), alpha = 5 -> (C, C)) is an initialization the paper does not state: with pi(A) = 0.6,
alpha = 5 reaches (C, C) for pi(C) > 0.2838 and alpha = 1 still reaches (A, A) for pi(C) < 0.3624 (e.g.
(0.6, 0.1, 0.3)); or payoffs divided by a factor in (1.342, 6.71) (alpha scales with the reward), where
the paper gives the payoffs unscaled. tests/test_acpi.py asserts what the faithful algorithm does.

`ACPI` (the bottom of this file) is the run driver's algorithm: one ACPI sweep per `train_iteration`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator

from algorithms.base import Algorithm, IterationResult, seed_results
from algorithms.blocks.seed_streams import SeedStreams, inverse_cdf
from coopbench.base.backward_induction import backward_induction
from coopbench.base.errors import CoopbenchError
from environments.base import BatchedEnv, EnvSpec, TimeStep
from environments.tabular_model import TabularModel

DTYPE = torch.float64
Horizon = Literal["finite", "discounted"]
Order = Literal["fixed", "random"]  # the agents' update order per iteration (random: a fresh permutation)
TIE_TOLERANCE = 1e-9  # relative: Q-values this close count as a tie (float noise must not flip a policy)


# --- the model, ready for planning --------------------------------------------------------------------------
@dataclass(frozen=True)
class ExactGame:
    """A `TabularModel` in float64 with the discount and the time-horizon treatment the planners use."""

    reward: torch.Tensor  # [S, J] team reward
    transitions: torch.Tensor  # [S, J, S]
    initial: torch.Tensor  # [S]
    live: torch.Tensor  # [S] 1.0, 0.0 at terminal states (the episode has ended: value 0)
    n_actions: tuple[int, ...]
    gamma: float
    horizon: Horizon
    steps: int  # length T of every table's time axis: the model's horizon ("finite"), or 1 ("discounted")

    @classmethod
    def of(cls, model: TabularModel, gamma: float = 0.99, horizon: Horizon = "finite") -> ExactGame:
        if not 0.0 < gamma <= 1.0:
            raise ValueError(f"gamma must be in (0, 1], got {gamma}")
        if horizon == "discounted" and gamma >= 1.0:
            raise ValueError("the discounted (infinite-horizon) problem needs gamma < 1")
        if horizon not in ("finite", "discounted"):
            raise ValueError(f"horizon must be 'finite' or 'discounted', got {horizon!r}")
        return cls(reward=model.team_rewards().to(DTYPE), transitions=model.transitions.to(DTYPE),
                   initial=model.initial.to(DTYPE), live=(~model.terminal).to(DTYPE),
                   n_actions=tuple(int(a) for a in model.n_actions), gamma=float(gamma), horizon=horizon,
                   steps=model.horizon if horizon == "finite" else 1)

    @property
    def n_states(self) -> int:
        return self.initial.shape[0]

    @property
    def n_agents(self) -> int:
        return len(self.n_actions)

    @property
    def n_joint(self) -> int:
        return math.prod(self.n_actions)

    @property
    def micro_gamma(self) -> float:
        """gamma' = gamma^(1/N): the discount of one micro-step (ACPO sec. 3)."""
        return self.gamma ** (1.0 / self.n_agents)


# --- policy tables ------------------------------------------------------------------------------------------
def first_action_distribution(n_actions: int, first_action_prob: float | None = None) -> torch.Tensor:
    """Uniform over `n_actions` (None), or pi(first action) = p with the rest uniform (ACPO Table 1: p = 0.6)."""
    if first_action_prob is None or n_actions == 1:
        return torch.full((n_actions,), 1.0 / n_actions, dtype=DTYPE)
    if not 0.0 <= first_action_prob <= 1.0:
        raise ValueError(f"first_action_prob must be in [0, 1], got {first_action_prob}")
    dist = torch.full((n_actions,), (1.0 - first_action_prob) / (n_actions - 1), dtype=DTYPE)
    dist[0] = first_action_prob
    return dist


def _per_agent(game: ExactGame, dists: torch.Tensor | Sequence[torch.Tensor]) -> list[torch.Tensor]:
    if isinstance(dists, torch.Tensor):
        dists = [dists] * game.n_agents
    if len(dists) != game.n_agents:
        raise ValueError(f"need one distribution per agent ({game.n_agents}), got {len(dists)}")
    return [torch.as_tensor(d, dtype=DTYPE) for d in dists]


def chained_policies(game: ExactGame, dists: torch.Tensor | Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """ACPI tables pi_i[T, S, A_1, ..., A_i] that play `dists[i]` in every state, after every preceding tuple."""
    tables = []
    for i, dist in enumerate(_per_agent(game, dists)):
        shape = (game.steps, game.n_states, *game.n_actions[: i + 1])
        tables.append(dist.expand(shape).clone())
    return tables


def state_policies(game: ExactGame, dists: torch.Tensor | Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """Decentralized tables pi_i[T, S, A_i] (the un-serialized game) that play `dists[i]` in every state."""
    return [d.expand(game.steps, game.n_states, d.shape[0]).clone() for d in _per_agent(game, dists)]


def joint_from_chained(game: ExactGame, policies: Sequence[torch.Tensor]) -> torch.Tensor:
    """The joint policy `[T, S, J]` of ACPI tables: prod_i pi_i(a_i | s, a^{<i})."""
    n = game.n_agents
    joint = torch.ones((game.steps, game.n_states) + (1,) * n, dtype=DTYPE)
    for i, pi in enumerate(policies):
        joint = joint * pi.reshape(*pi.shape, *([1] * (n - 1 - i)))
    return joint.reshape(game.steps, game.n_states, game.n_joint)


def joint_from_state(game: ExactGame, policies: Sequence[torch.Tensor]) -> torch.Tensor:
    """The joint policy `[T, S, J]` of decentralized tables: prod_i pi_i(a_i | s)."""
    n = game.n_agents
    joint = torch.ones((game.steps, game.n_states) + (1,) * n, dtype=DTYPE)
    for i, pi in enumerate(policies):
        view = [1] * n
        view[i] = game.n_actions[i]
        joint = joint * pi.reshape(game.steps, game.n_states, *view)
    return joint.reshape(game.steps, game.n_states, game.n_joint)


def entropy(policy: torch.Tensor) -> torch.Tensor:
    """H(pi(. | ...)) over the last dimension."""
    return -torch.special.xlogy(policy, policy).sum(-1)


def greedy(q: torch.Tensor, current: torch.Tensor) -> torch.Tensor:
    """One-hot greedy policy on `q` over the last dimension, with a deterministic tie-break: the current
    action when the current policy is deterministic and its action is (within float noise) a maximizer,
    else the lowest-index maximizer. Keeping the current action on ties makes policy iteration stop."""
    best = q.max(-1, keepdim=True).values
    candidate = q >= best - TIE_TOLERANCE * (1.0 + best.abs())
    current_action = current.argmax(-1, keepdim=True)
    keep = (current.max(-1, keepdim=True).values == 1.0) & candidate.gather(-1, current_action)
    first = candidate.to(DTYPE).argmax(-1, keepdim=True)  # argmax returns the first maximal index
    action = torch.where(keep, current_action, first).squeeze(-1)
    return torch.nn.functional.one_hot(action, q.shape[-1]).to(DTYPE)


def chained_act(policies: Sequence[torch.Tensor], t: torch.Tensor, s: torch.Tensor,
                uniforms: torch.Tensor | None = None) -> torch.Tensor:
    """Decentralized execution of ACPI tables: actions `[B, N]` at steps `t [B]` in states `s [B]`.

    Agent i computes the preceding actions itself from the earlier agents' greedy choices
    (s -> a_1 -> a_2 ...), then picks its own: greedy, or, given `uniforms [B, N]`, drawn from
    pi_i(. | s, a^{<i}) by inverse CDF. After an ACPI sweep every table is deterministic, so this is exact; a
    stochastic initial table (the same distribution after every preceding tuple) is sampled exactly too.
    """
    prefix: list[torch.Tensor] = []
    actions = []
    for i, pi in enumerate(policies):
        probs = pi[(t, s, *prefix)]  # [B, A_i]
        choice = probs.argmax(-1)
        actions.append(choice if uniforms is None else inverse_cdf(probs, uniforms[:, i]))
        prefix.append(choice)
    return torch.stack(actions, dim=1)


# --- evaluation -----------------------------------------------------------------------------------------------
def evaluate_joint(game: ExactGame, joint: torch.Tensor,
                   bonus: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact evaluation of a joint policy `[T, S, J]` on the un-serialized game, per env step with gamma.

    Returns Q `[T, S, J]` and V `[T, S]`, V_t(s) = sum_a pi_t(a | s) Q_t(s, a) + bonus_t(s) (`bonus [T, S]`:
    HASPI's entropy term; none for the plain value); V = 0 in terminal states and after the horizon.
    """
    r, p, live = game.reward, game.transitions, game.live
    bonus = torch.zeros(game.steps, game.n_states, dtype=DTYPE) if bonus is None else bonus
    if game.horizon == "finite":
        return backward_induction(r, p, live, game.gamma, game.steps,
                                  lambda t, q: (joint[t] * q).sum(-1) + bonus[t])
    r_pi, p_pi = _on_policy(game, joint[0], bonus[0])
    v = torch.linalg.solve(torch.eye(game.n_states, dtype=DTYPE) - game.gamma * p_pi, r_pi).unsqueeze(0)
    return (r + game.gamma * p @ v[0]).unsqueeze(0), v


def _on_policy(game: ExactGame, joint: torch.Tensor, bonus: torch.Tensor | float = 0.0):
    """The expected reward r_pi(s) (+ bonus) `[S]` and transitions P_pi(s' | s) `[S, S]` of a stationary joint
    policy `[S, J]`, zero out of terminal states: V = r_pi + gamma P_pi V is its discounted value."""
    r_pi = ((joint * game.reward).sum(-1) + bonus) * game.live
    p_pi = torch.einsum("sj,sjk->sk", joint, game.transitions) * game.live.unsqueeze(-1)
    return r_pi, p_pi


@dataclass
class ChainedValues:
    """The agent-chained values of ACPI tables (Def. 5.1)."""

    q: list[torch.Tensor]  # Q^(i) per agent, [T, S, A_1, ..., A_i]
    v1: torch.Tensor  # V^(1) [T, S] = gamma'^(N-1) V
    v: torch.Tensor  # V [T, S]: the joint policy's value on the un-serialized game (per env step, gamma)
    value: float  # mu . V_0: the expected discounted return from the initial distribution


def chained_evaluation(game: ExactGame, policies: Sequence[torch.Tensor]) -> ChainedValues:
    """ACPI's policy evaluation by the agent-chained Bellman operators (Def. 5.1, Alg. 2 lines 5-6), exact.

    "finite": backward induction over t and, within a step, over the agents N, ..., 1.
    "discounted": V^(1) solves V^(1) = gamma'^(N-1) (r_pi + gamma' P_pi V^(1)) (one linear solve; the limit
    of applying the operators, Lemma 5.2), then the same chain back from agent N to agent 1.
    """
    n, gp = game.n_agents, game.micro_gamma
    r, p, live = game.reward, game.transitions, game.live
    shape = (game.n_states, *game.n_actions)
    qs = [torch.empty(game.steps, *shape[: i + 2], dtype=DTYPE) for i in range(n)]

    def chain_back(t: int, q_joint: torch.Tensor) -> torch.Tensor:
        """Q^(N) = `q_joint` [S, J] (the reward, then agent 1 of the next step) back to Q^(1); returns V^(1)."""
        q = q_joint.reshape(shape)
        qs[n - 1][t] = q
        for i in range(n - 2, -1, -1):  # Q^(i) = gamma' E_{a_{i+1} ~ pi_{i+1}} Q^(i+1)
            q = gp * (policies[i + 1][t] * q).sum(-1)
            qs[i][t] = q
        return (policies[0][t] * q).sum(-1)

    joint = joint_from_chained(game, policies)
    if game.horizon == "finite":  # within each step t, over the agents N, ..., 1 (the micro-steps)
        _, v1 = backward_induction(r, p, live, gp, game.steps, chain_back)
    else:
        r_pi, p_pi = _on_policy(game, joint[0])
        v1 = torch.linalg.solve(torch.eye(game.n_states, dtype=DTYPE) - gp**n * p_pi, gp ** (n - 1) * r_pi)
        v1 = v1.unsqueeze(0)
        chain_back(0, r + gp * p @ v1[0])
    v = (joint * qs[n - 1].reshape(game.steps, game.n_states, game.n_joint)).sum(-1) * live
    return ChainedValues(qs, v1, v, float(game.initial @ v[0]))


def marginal_q(game: ExactGame, q: torch.Tensor, policies: Sequence[torch.Tensor], agent: int) -> torch.Tensor:
    """Q_i(s, a_i) = E_{a_-i ~ pi_-i(.|s)}[Q(s, a)], `[T, S, A_i]`, from joint Q `[T, S, J]` and decentralized
    tables (the entry of `agent` itself is not used)."""
    n = game.n_agents
    q = q.reshape(game.steps, game.n_states, *game.n_actions)
    for k in range(n):
        if k == agent:
            continue
        view = [1] * n
        view[k] = game.n_actions[k]
        q = (q * policies[k].reshape(game.steps, game.n_states, *view)).sum(2 + k, keepdim=True)
    return q.reshape(game.steps, game.n_states, game.n_actions[agent])


# --- planners -------------------------------------------------------------------------------------------------
@dataclass
class PlannerResult:
    policies: list[torch.Tensor]  # ACPI: [T, S, A_1..A_i]; the comparators: [T, S, A_i]
    q: list[torch.Tensor]  # the Q-values the last improvement used (ACPI: Q^(i); the others: marginal Q_i)
    value: float  # mu . V_0 of the final joint policy (discounted return, no entropy term)
    iterations: int  # sweeps (evaluation + improvement) done, the last one included
    converged: bool  # the policy was stable (ACPI, best responses) or changed less than `tol` (HASPI)


def acpi_sweep(game: ExactGame, policies: Sequence[torch.Tensor]) -> tuple[list[torch.Tensor], ChainedValues]:
    """One ACPI iteration: chained evaluation of `policies`, then every agent greedy on its own Q^(i), in
    parallel (Eq. 1, Alg. 2 line 9). Returns the new tables and the values of the evaluated ones."""
    values = chained_evaluation(game, policies)
    return [greedy(q, pi) for q, pi in zip(values.q, policies, strict=True)], values


def acpi(game: ExactGame, policies: Sequence[torch.Tensor] | None = None, max_iterations: int = 1000) -> PlannerResult:
    """Agent-Chained Policy Iteration (ACPO Alg. 2) from `policies` (uniform when None) until stable."""
    policies = list(policies) if policies is not None else chained_policies(
        game, [first_action_distribution(a) for a in game.n_actions])
    converged = False
    values = None
    iterations = 0
    while iterations < max_iterations:
        iterations += 1
        new, values = acpi_sweep(game, policies)
        converged = all(torch.equal(a, b) for a, b in zip(new, policies, strict=True))
        policies = new
        if converged:
            break
    if not converged:
        values = chained_evaluation(game, policies)
    return PlannerResult(policies, values.q, values.value, iterations, converged)


def _state_value(game: ExactGame, policies: Sequence[torch.Tensor]) -> float:
    return float(game.initial @ evaluate_joint(game, joint_from_state(game, policies))[1][0])


def simultaneous_update(game: ExactGame, policies: Sequence[torch.Tensor],
                        max_iterations: int = 1000) -> PlannerResult:
    """Every agent at once greedy on its marginal Q_i of the current joint policy (MAPPO's tabular ideal,
    ACPO sec. 2.2). May cycle (e.g. between miscoordinated pairs): then `converged` is False."""
    policies = list(policies)
    converged, qs, iterations = False, [], 0
    while iterations < max_iterations:
        iterations += 1
        q, _ = evaluate_joint(game, joint_from_state(game, policies))
        qs = [marginal_q(game, q, policies, i) for i in range(game.n_agents)]
        new = [greedy(qi, pi) for qi, pi in zip(qs, policies, strict=True)]
        converged = all(torch.equal(a, b) for a, b in zip(new, policies, strict=True))
        policies = new
        if converged:
            break
    return PlannerResult(policies, qs, _state_value(game, policies), iterations, converged)


def _order(n: int, order: Order, generator: torch.Generator) -> list[int]:
    return list(range(n)) if order == "fixed" else torch.randperm(n, generator=generator).tolist()


def iterative_best_response(game: ExactGame, policies: Sequence[torch.Tensor], order: Order = "fixed",
                            seed: int = 0, max_iterations: int = 1000) -> PlannerResult:
    """Iterative BR (ACPO sec. 2.2; MA-PI of Zhong et al. 2024): agents one after another, each computing its
    exact best response to the others' most recent policies (earlier agents already updated) by policy
    iteration on its reduced MDP. Stops when a whole round changes nothing (a Nash equilibrium)."""
    policies = list(policies)
    generator = torch.Generator().manual_seed(seed)
    converged, qs, iterations = False, [None] * game.n_agents, 0
    while iterations < max_iterations:
        iterations += 1
        changed = False
        for i in _order(game.n_agents, order, generator):
            for _ in range(max_iterations):  # policy iteration on agent i's reduced MDP
                q, _ = evaluate_joint(game, joint_from_state(game, policies))
                qs[i] = marginal_q(game, q, policies, i)
                new = greedy(qs[i], policies[i])
                if torch.equal(new, policies[i]):
                    break
                policies[i], changed = new, True
        if not changed:
            converged = True
            break
    return PlannerResult(policies, qs, _state_value(game, policies), iterations, converged)


def haspi(game: ExactGame, policies: Sequence[torch.Tensor], alpha: float, order: Order = "random",
          seed: int = 0, tol: float = 1e-12, max_iterations: int = 100_000) -> PlannerResult:
    """HASPI (Liu et al. 2024): soft evaluation of pi_k, then in a random order of the agents
    pi_i <- softmax(E[Q_{pi_k}(s, a)] / alpha) over the earlier agents' new and later agents' old policies.
    Stops when no probability moves by more than `tol`. `value` is the plain (entropy-free) return."""
    if alpha <= 0:
        raise ValueError(f"alpha must be positive, got {alpha}")
    policies = list(policies)
    generator = torch.Generator().manual_seed(seed)
    converged, qs, iterations = False, [None] * game.n_agents, 0
    while iterations < max_iterations:
        iterations += 1
        bonus = alpha * sum(entropy(pi) for pi in policies)  # [T, S]: the joint entropy of a product policy
        q, _ = evaluate_joint(game, joint_from_state(game, policies), bonus)
        new = list(policies)
        for i in _order(game.n_agents, order, generator):
            qs[i] = marginal_q(game, q, new, i)  # agents updated before i enter with their new tables
            new[i] = torch.softmax(qs[i] / alpha, dim=-1)
        change = max(float((a - b).abs().max()) for a, b in zip(new, policies, strict=True))
        policies = new
        if change < tol:
            converged = True
            break
    return PlannerResult(policies, qs, _state_value(game, policies), iterations, converged)


@dataclass
class JointOptimum:
    values: torch.Tensor  # V* [T, S]
    q: torch.Tensor  # Q* [T, S, J]
    value: float  # mu . V*_0


def joint_optimum(game: ExactGame, max_iterations: int = 10_000) -> JointOptimum:
    """The optimum over joint actions (a centralized controller) on the model, exact: value iteration by
    backward induction over the horizon ("finite"); policy iteration over joint actions ("discounted": exact
    evaluation by a linear solve, where value iteration would need about log(tol) / log(gamma) sweeps).
    ACPI must reach its value."""
    r, p, live = game.reward, game.transitions, game.live
    if game.horizon == "finite":
        q, values = backward_induction(r, p, live, game.gamma, game.steps, lambda t, q: q.max(-1).values)
    else:
        policy = greedy(r, torch.zeros_like(r)).unsqueeze(0)  # [1, S, J] one-hot
        for _ in range(max_iterations):
            q, values = evaluate_joint(game, policy)
            improved = greedy(q, policy)
            if torch.equal(improved, policy):
                break
            policy = improved
    return JointOptimum(values, q, float(game.initial @ values[0]))


# --- the run driver's algorithm -------------------------------------------------------------------------------
class ACPIConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    gamma: float = Field(0.99, gt=0.0, le=1.0, description="discount per env step; gamma' = gamma^(1/N)")
    n_envs: int = Field(8, ge=1, description="batched copies the current policy is run in after each sweep")
    rollout_length: int = Field(32, ge=1, description="steps per copy after each sweep")
    horizon: Horizon = Field("finite", description="'finite': tables per step t of the time-limited episode "
                                                  "(exact); 'discounted': stationary, infinite horizon")
    initial_policy: Literal["uniform", "first_action"] = Field(
        "uniform", description="'first_action': pi(first action) = first_action_prob, the rest uniform")
    first_action_prob: float = Field(0.6, ge=0.0, le=1.0, description="ACPO Table 1: pi(A) = 0.6")
    max_model_size: int = Field(1_000_000, ge=1, description="refuse models with more than this many "
                                                             "(state, joint action) pairs, S * J")

    @model_validator(mode="after")
    def _check(self):
        if self.horizon == "discounted" and self.gamma >= 1.0:
            raise ValueError("horizon 'discounted' (infinite horizon) needs gamma < 1")
        return self


def _environment_class(name: str):
    """The registered class of the task `name`, or None where the name is not registered (e.g. a test's)."""
    from environments.registry import ENVIRONMENTS

    try:
        return ENVIRONMENTS.get(name).load()
    except (CoopbenchError, ImportError):
        return None


class ACPI(Algorithm):
    """ACPI on the exact model of a small game (`env.model()`), as an algorithm the run driver can run.

    Each `train_iteration` performs one ACPI sweep (chained evaluation + parallel greedy improvement) on
    the model, then runs the current deterministic policy for `rollout_length` steps in each of the
    `n_envs` copies, so that the run's env-step axis and training returns are real samples. The planner
    learns from the model only, never from these samples. `act` executes decentrally: agent i reconstructs
    a^{<i} from the earlier agents' deterministic tables (s -> a_1 -> a_2 ...), with s = the model's state
    of the observation and, for `horizon: finite`, t = the step of the episode (the memory is that clock).
    The training copies' clocks carry over from one `train_iteration` to the next (and into checkpoints),
    as the copies' episodes do. Until the model is first seen (the run's evaluation of the untrained
    policy), the initial policy, the same in every state, is played. Sampled (not `deterministic`) actions
    draw from the run's own stream (`SeedStreams`).

    A seed batch (`n_seeds` K, docs/architecture.md "Seed batches"): the plan does not depend on the seed (an
    exact planner from the config's initial policy on a seed-independent model), so a batch plans once, its
    tables and model are shared (state key `shared`), and its seeds differ in their copies (clocks seed-major).
    """

    Config = ACPIConfig
    config: ACPIConfig

    def __init__(self, spec: EnvSpec, config: ACPIConfig, device: torch.device, model: TabularModel | None = None,
                 n_seeds: int | None = 1):
        super().__init__(spec, config, device)
        if not spec.discrete:
            raise CoopbenchError(f"acpi plans on a tabular model with discrete actions; {spec.name} has continuous "
                                 "ones", "run it on a matrix/* or coordination/* task")
        env_class = _environment_class(spec.name)
        if model is None and env_class is not None and not callable(getattr(env_class, "model", None)):
            raise CoopbenchError(f"acpi needs the exact model of the game (env.model()); {spec.name} has none",
                                 "run it on a task with a model: matrix/* or coordination/*")
        joint = spec.n_actions ** spec.n_agents
        if joint > config.max_model_size:
            raise CoopbenchError(
                f"acpi: {spec.name} has {spec.n_actions}^{spec.n_agents} = {joint} joint actions, above "
                f"max_model_size={config.max_model_size} (state, joint action) pairs",
                "run it on a smaller game, or raise algo.max_model_size (memory grows with S * J * S)")
        self.model: TabularModel | None = None
        self.game: ExactGame | None = None
        self.policies: list[torch.Tensor] | None = None
        self.sweeps = 0
        self.stable = False
        self.n_seeds = n_seeds or 1
        self.streams = SeedStreams(self.n_seeds, torch.device("cpu"))  # sampled acting only; planned on the CPU
        self._memory = self.initial_memory(config.n_envs)  # the training copies' step clocks
        if model is not None:
            self._attach(model)

    # -- model and policies
    def initial_distributions(self) -> list[torch.Tensor]:
        p = self.config.first_action_prob if self.config.initial_policy == "first_action" else None
        return [first_action_distribution(self.spec.n_actions, p) for _ in range(self.spec.n_agents)]

    def _attach(self, model: TabularModel) -> None:
        size = model.n_states * model.n_joint
        if size > self.config.max_model_size:
            raise CoopbenchError(
                f"acpi: the model of {self.spec.name} has S * J = {model.n_states} * {model.n_joint} = {size} "
                f"(state, joint action) pairs, above max_model_size={self.config.max_model_size}",
                "run it on a smaller game, or raise algo.max_model_size (memory grows with S * J * S)")
        if model.n_actions != (self.spec.n_actions,) * self.spec.n_agents:
            raise CoopbenchError(f"acpi: the model of {self.spec.name} has actions {model.n_actions}, its spec "
                                 f"{self.spec.n_agents} agents x {self.spec.n_actions}",
                                 "fix the environment's model()")
        self.model = model
        self.game = ExactGame.of(model, self.config.gamma, self.config.horizon)
        if self.policies is None:
            self.policies = chained_policies(self.game, self.initial_distributions())

    # -- the Algorithm contract
    @property
    def n_envs(self) -> int:
        return self.config.n_envs

    @property
    def steps_per_iteration(self) -> int:
        return self.config.n_envs * self.config.rollout_length

    def initial_memory(self, n_envs: int) -> torch.Tensor:
        """The step clocks of `n_envs` fresh copies per seed, `[K * n_envs]`."""
        return torch.zeros(self.n_seeds * n_envs, dtype=torch.long, device=self.device)

    @torch.no_grad()
    def act(self, timestep: TimeStep, memory: torch.Tensor | None,
            deterministic: bool) -> tuple[torch.Tensor, torch.Tensor]:
        n = timestep.obs.shape[0]
        clock = self.initial_memory(n // self.n_seeds) if memory is None else memory
        t = torch.where(timestep.done.to(clock.device), torch.zeros_like(clock), clock)
        per_seed = (n // self.n_seeds, self.spec.n_agents)
        uniforms = None if deterministic else self.streams.uniform(per_seed).flatten(0, 1)
        if self.policies is None:  # no model yet: the initial policy does not depend on the state
            dists = torch.stack(self.initial_distributions())  # [N, A]
            actions = dists.argmax(-1).repeat(n, 1) if uniforms is None else inverse_cdf(dists.expand(n, -1, -1),
                                                                                           uniforms)
        else:
            s = self.model.known_state_index(timestep.obs, f"acpi on {self.spec.name}")
            step = t.cpu().clamp(max=self.game.steps - 1)
            actions = chained_act(self.policies, step, s, uniforms)
        return actions.to(timestep.obs.device), t + 1

    def train_iteration(self, env: BatchedEnv, timestep: TimeStep) -> IterationResult:
        if self.model is None:
            if not callable(getattr(env, "model", None)):
                raise CoopbenchError(f"acpi needs the exact model of the game (env.model()); {self.spec.name} "
                                     "has none", "run it on a task with a model: matrix/* or coordination/*")
            self._attach(env.model())
        new, _ = acpi_sweep(self.game, self.policies)
        changes = sum(int((a.argmax(-1) != b.argmax(-1)).sum()) for a, b in zip(new, self.policies, strict=True))
        self.stable = all(torch.equal(a, b) for a, b in zip(new, self.policies, strict=True))
        self.policies = new
        self.sweeps += 1
        value = chained_evaluation(self.game, self.policies).value
        returns, ended = [], []
        for _ in range(self.config.rollout_length):
            actions, self._memory = self.act(timestep, self._memory, deterministic=True)
            timestep = env.step(actions)
            returns.append(timestep.episode_return)
            ended.append(timestep.done)
        losses = {"acpi_value": value, "policy_changes": float(changes), "policy_stable": float(self.stable)}
        # the plan is every seed's: each seed reports its values
        return seed_results(timestep, returns, ended, self.n_seeds, self.steps_per_iteration,
                            {name: [v] * self.n_seeds for name, v in losses.items()})

    def state_dict(self) -> dict:
        # the model and the plan are the same for every seed of a batch: shared, not seed-major
        return {"shared": {"model": None if self.model is None else self.model.state_dict(),
                           "policies": self.policies},
                "sweeps": self.sweeps, "stable": self.stable, "memory": self._memory,
                "streams": self.streams.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.model = self.game = self.policies = None
        shared = state["shared"]
        if shared["model"] is not None:
            self._attach(TabularModel.from_state_dict(shared["model"]))
        self.policies = None if shared["policies"] is None else [p.clone() for p in shared["policies"]]
        self.sweeps, self.stable = state["sweeps"], state["stable"]
        self._memory = state["memory"].to(self.device)
        self.streams.load_state_dict(state["streams"])
