"""Tabular softmax Bayesian-network (BN) policy gradient ascent, exact on a game's model (BN paper, sec. 4-5, 6.1).

A BN policy over a DAG G (algorithms/blocks/dag.py) draws the joint action as
    pi(a | s) = prod_i pi^i(a^i | s, a^{P^i}),   pi^i(a^i | s, a^{P^i}) ∝ exp(theta^i(s, a^{P^i}, a^i))   (BN eq. 1)
and is trained by exact gradient ascent theta <- theta + eta * grad L_lambda(theta) (eq. 3) on the log-barrier
regularized objective (eq. 2)
    L_lambda(theta) = V_theta(mu) - lambda sum_i E_{(s, a^{P^i}) ~ Unif} KL(Unif_{A^i}, pi^i(. | s, a^{P^i})).
BN 6.1 runs it on the Coordination Game with product, full, line and K-subteam DAGs, theta_0 ~ N(0, 1),
50 seeds (Fig. 1: normalized suboptimality 1 - V/V*; Fig. 4: the equilibrium gap).

Tensor layout (batched over B = DAGs x seeds; Python loops run over agents and iterations only). Every agent's
table spans the whole joint action space, `logits[B, N, S, A_0, ..., A_{N-1}]`: agent i's logits at
(s, a^{-i}, a^i), tied (equal) along the dimensions of its non-parents, so each table holds exactly the
|S| |A^{P^i}| |A^i| free parameters of eq. 1 and one layout serves every DAG of the batch, whatever its parent
sets (`tie`). Agent i's conditional is the softmax along its own dimension; the joint policy is the product
of the N conditionals (a distribution because G is acyclic). The gradient steps themselves run on the free
parameters only, one column per context (i, a^{P^i}) (`ContextLayout`): the tied layout moves N |J| copies of
each parameter through memory, the context layout one (the analyses' N = 5 batch: ~3x faster per step).

The exact gradient (BN Lemma 1), with W(s, a) = d_mu(s) pi(a | s) Q(s, a):
    dL/dtheta^i(s, a^{P^i}, a^i) = G^i(s, a^{P^i}, a^i) - pi^i(a^i | s, a^{P^i}) sum_b G^i(s, a^{P^i}, b)
                                 + lambda / (|S| |A^{P^i}|) (1 / |A^i| - pi^i(a^i | s, a^{P^i})),
    G^i(s, a^{P^i}, a^i) = sum over the other agents' actions of W = d_mu(s) Pr(a^{P^i}, a^i | s) Q(s, a^{P^i}, a^i),
which is Lemma 1's d(s, a^{P^i}) pi^i A^i term. d_mu is the unnormalized discounted visitation
mu^T (I - gamma P_pi)^{-1} of BN sec. 3; Lemma 1 prints a further 1/(1 - gamma), which belongs to the normalized
visitation (1 - gamma) d_mu: with the unnormalized one as defined, the formula above is the gradient itself
(tests/test_bn_tabular.py checks it against autograd and finite differences). Values are exact: V solves
(I - gamma P_pi) V = r_pi, the infinite-horizon discounted problem of BN sec. 3 (stationary policies, no time in
the table). The equilibrium gap (sec. 3) is computed exactly by policy iteration of each agent's best response
among BN deviations pi'^i(a^i | s, a^{P^i}) with the other agents fixed (`equilibrium_gap`).

`BNTabular` (the bottom of this file) is the run driver's algorithm: one exact gradient step per
`train_iteration` for the one DAG its config names, then the current policy runs in the environment copies.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator

from algorithms.acpi import ExactGame, joint_optimum
from algorithms.base import Algorithm, IterationResult, seed_results
from algorithms.blocks.dag import named_dag, topological_levels
from algorithms.blocks.seed_streams import SeedStreams, inverse_cdf
from coopbench.base.errors import CoopbenchError
from environments.base import BatchedEnv, EnvSpec, TimeStep
from environments.tabular_model import TabularModel

DTYPE = torch.float64
DagKind = Literal["product", "full", "line", "subteams"]
TIE_TOLERANCE = 1e-12  # relative: a best response keeps its current action unless another is better by more


# --- the tied table layout ------------------------------------------------------------------------------------
def _agent_axis(i: int) -> int:
    """Axis of agent i's action in a per-agent table `[B, S, A_0, ..., A_{N-1}]`."""
    return 2 + i


@dataclass(frozen=True)
class DagBatch:
    """The DAG of every batch element, `parents [B, N, N]`, grouped by distinct DAG so that each group reduces over
    fixed axes (a batch is a few DAGs x many seeds): `groups` holds (batch indices, that DAG's parent mask, and per
    agent i the axes of its table `[b, S, *A]` along which it is tied: every other agent but its parents)."""

    parents: torch.Tensor
    groups: tuple[tuple[slice | torch.Tensor, torch.Tensor, tuple[tuple[int, ...], ...]], ...]
    _layouts: dict = field(default_factory=dict, compare=False, repr=False)  # n_actions -> ContextLayout per group

    @classmethod
    def of(cls, parents: torch.Tensor) -> DagBatch:
        parents = parents.bool()
        if parents.dim() == 2:
            parents = parents.unsqueeze(0)
        unique, inverse = torch.unique(parents.flatten(1), dim=0, return_inverse=True)
        n = parents.shape[-1]
        groups = []
        for k in range(unique.shape[0]):
            dag = unique[k].view(n, n)
            topological_levels(dag)  # raises on a cycle: a BN policy needs a DAG
            axes = tuple(tuple(_agent_axis(j) for j in range(n) if j != i and not bool(dag[i, j])) for i in range(n))
            groups.append((_as_slice(torch.nonzero(inverse == k).flatten()), dag, axes))
        return cls(parents, tuple(groups))

    @property
    def n_agents(self) -> int:
        return self.parents.shape[-1]

    def layouts(self, n_actions: tuple[int, ...]) -> tuple[ContextLayout, ...]:
        """The context layout of each group's DAG (`ContextLayout`), built once per action counts."""
        if len(set(n_actions)) != 1 or len(n_actions) != self.n_agents:
            raise ValueError(f"the context layout needs {self.n_agents} agents with equal action counts, got "
                             f"{n_actions}")
        if n_actions not in self._layouts:
            self._layouts[n_actions] = tuple(ContextLayout.of(dag, n_actions[0]) for _, dag, _ in self.groups)
        return self._layouts[n_actions]


def _as_slice(index: torch.Tensor) -> slice | torch.Tensor:
    """A contiguous run of batch indices as a slice (views and plain copies instead of gathers and scatters)."""
    first, last = int(index[0]), int(index[-1])
    return slice(first, last + 1) if last - first + 1 == index.numel() else index


def tie(tables: torch.Tensor, dags: DagBatch, reduce: Literal["sum", "mean", "first"]) -> torch.Tensor:
    """Make agent i's table `tables[:, i]` constant along every non-parent's action axis (not its own): replaced
    there by its sum, mean, or first slice, broadcast back. `tables [B, N, S, *A]`.

    "first" ties a free table (initialization); "sum" turns the gradient with respect to every copy into the
    gradient with respect to the one shared parameter (the chain rule of the broadcast)."""
    out = torch.empty_like(tables)
    for index, _, non_parents in dags.groups:
        for i, axes in enumerate(non_parents):
            table = tables[index, i]
            if axes and reduce == "first":
                for axis in axes:
                    table = table.narrow(axis, 0, 1)
            elif axes:
                table = table.sum(axes, keepdim=True) if reduce == "sum" else table.mean(axes, keepdim=True)
            out[index, i] = table.expand(out[index, i].shape)
    return out


# --- the free parameters by context (the training steps' layout) ------------------------------------------------
@dataclass(frozen=True)
class ContextLayout:
    """The free parameters of one DAG's N tables as `theta [b, S, A, C]`: one column per context c = (i, a^{P^i}),
    an agent and a joint action of its parents (agent 0's columns first, the parents' actions row-major), holding
    theta^i(s, a^{P^i}, .) along the action axis. These are exactly eq. 1's |S| |A^{P^i}| |A^i| parameters per
    agent, so pi^i(. | s, a^{P^i}) is a softmax along the action axis and a step works on the parameters, not on
    the tied layout's N |J| copies of them. Agent i's columns seen on the tied axes `[b, S, *A]` (size 1 along
    its non-parents) are a view (`on_axes`); the gradient of every copy of a parameter, summed (the chain rule of
    the broadcast), is a product with `copies`."""

    parents: tuple[tuple[int, ...], ...]  # per agent i, its parents in increasing order
    columns: tuple[slice, ...]  # per agent i, its contexts' columns
    copies: torch.Tensor  # [J, A * C] 0/1: 1 where joint action j reads entry a * C + c (one entry per agent)
    parent_actions: torch.Tensor  # [C] |A^{P^i}| of each context's agent i

    @classmethod
    def of(cls, dag: torch.Tensor, n_actions: int) -> ContextLayout:
        n = dag.shape[0]
        joint = torch.cartesian_prod(*[torch.arange(n_actions)] * n).view(-1, n)  # [J, N], agent 0 most significant
        parents = tuple(tuple(j for j in range(n) if bool(dag[i, j])) for i in range(n))
        contexts, columns, offset = [], [], 0
        for i in range(n):
            context = torch.zeros(joint.shape[0], dtype=torch.long)  # a^{P^i} row-major, per joint action
            for parent in parents[i]:
                context = context * n_actions + joint[:, parent]
            contexts.append(offset + context)
            columns.append(slice(offset, offset + n_actions ** len(parents[i])))
            offset += n_actions ** len(parents[i])
        read = torch.stack([joint[:, i] * offset + contexts[i] for i in range(n)], 1)  # [J, N] entries read at j
        copies = torch.zeros(joint.shape[0], n_actions * offset, dtype=DTYPE).scatter_(1, read, 1.0)
        parent_actions = torch.tensor([float(c.stop - c.start) for c in columns for _ in range(c.start, c.stop)],
                                      dtype=DTYPE)
        return cls(parents, tuple(columns), copies, parent_actions)

    def on_axes(self, theta: torch.Tensor, i: int) -> torch.Tensor:
        """Agent i's columns of `theta [b, S, A, C]` as its table on the tied axes `[b, S, *A]`, size 1 along its
        non-parents (a view: broadcasting it gives the tied layout)."""
        n, parents = len(self.parents), self.parents[i]
        table = theta[..., self.columns[i]].unflatten(-1, (theta.shape[-2],) * len(parents) or (1,))
        if not parents:
            table = table.squeeze(-1)
        order = (i, *parents)  # the axes after [b, S]: agent i's action, then its parents' actions
        table = table.permute(0, 1, *(2 + order.index(j) for j in sorted(order)))
        for j in range(n):
            if j not in order:
                table = table.unsqueeze(2 + j)
        return table

    def columns_of(self, table: torch.Tensor, i: int) -> torch.Tensor:
        """`on_axes`' inverse: agent i's table `[b, S, *A]` (read at index 0 along its non-parents) -> its columns."""
        order = (i, *self.parents[i])
        for j in reversed(range(len(self.parents))):
            if j not in order:
                table = table.narrow(2 + j, 0, 1).squeeze(2 + j)
        ranked = sorted(order)
        table = table.permute(0, 1, *(2 + ranked.index(j) for j in order))
        return table.reshape(*table.shape[:3], -1)


def context_parameters(tables: torch.Tensor, dags: DagBatch, n_actions: tuple[int, ...]) -> list[torch.Tensor]:
    """Each group's `theta [b, S, A, C]` (`ContextLayout`) from tied tables `[B, N, S, *A]` (read at the first copy
    of each parameter, as `conditionals` reads them)."""
    return [torch.cat([layout.columns_of(tables[index, i], i) for i in range(dags.n_agents)], -1)
            for (index, _, _), layout in zip(dags.groups, dags.layouts(n_actions), strict=True)]


def tied_tables(theta: list[torch.Tensor], dags: DagBatch, shape: torch.Size) -> torch.Tensor:
    """The tied layout `shape = [B, N, S, *A]` of each group's `theta` (`context_parameters`' inverse)."""
    out = torch.empty(shape, dtype=theta[0].dtype)
    for (index, _, _), layout, t in zip(dags.groups, dags.layouts(tuple(shape[3:])), theta, strict=True):
        for i in range(dags.n_agents):
            out[index, i] = layout.on_axes(t, i).expand(out[index, i].shape)
    return out


def _context_policy(theta: list[torch.Tensor], dags: DagBatch,
                    shape: torch.Size) -> tuple[list[torch.Tensor], torch.Tensor]:
    """pi^i(. | s, a^{P^i}) per context `[b, S, A, C]` for each group, and the joint pi(a | s) `[B, S, J]`:
    log pi(a | s) = sum_i log pi^i(a^i | s, a^{P^i}) is the product of the log-conditionals with `copies`
    (log_softmax is finite, so no 0 * log 0 enters the product)."""
    log_cond = [torch.log_softmax(t, dim=-2) for t in theta]
    joint = torch.empty(shape[0], shape[2], math.prod(shape[3:]), dtype=theta[0].dtype)
    for (index, _, _), layout, log_c in zip(dags.groups, dags.layouts(tuple(shape[3:])), log_cond, strict=True):
        joint[index] = log_c.flatten(2) @ layout.copies.T
    return [log_c.exp() for log_c in log_cond], joint.exp_()


def context_gradient(game: ExactGame, theta: list[torch.Tensor], dags: DagBatch, lam: float,
                     shape: torch.Size) -> tuple[list[torch.Tensor], Evaluation]:
    """`exact_gradient` on each group's `theta [b, S, A, C]` (`shape`: the tied layout's), with BN Lemma 1's G^i
    for every context at once: G = W @ copies sums W(s, a) = d_mu(s) pi(a | s) Q(s, a) over the joint actions
    that read each parameter, i.e. over the other agents' actions given (a^{P^i}, a^i)."""
    cond, joint = _context_policy(theta, dags, shape)
    ev = evaluate(game, joint)
    w = ev.visitation.unsqueeze(-1) * joint * ev.q  # [B, S, J]
    grad = []
    for (index, _, _), layout, pi in zip(dags.groups, dags.layouts(tuple(shape[3:])), cond, strict=True):
        g = (w[index] @ layout.copies).unflatten(-1, pi.shape[-2:])  # G^i(s, a^{P^i}, a^i)
        barrier = lam / (game.n_states * layout.parent_actions)  # [C]: lambda / (|S| |A^{P^i}|)
        # G^i - pi^i sum_b G^i(., b) + barrier (1 / |A^i| - pi^i), with pi^i factored out
        grad.append(g + barrier / pi.shape[-2] - pi * (g.sum(-2, keepdim=True) + barrier))
    return grad, ev


def conditionals(logits: torch.Tensor, dags: DagBatch) -> torch.Tensor:
    """pi^i(a^i | s, a^{P^i}) laid out over the joint action, `[B, N, S, *A]` (softmax along agent i's axis,
    computed once per free parameter: on the first slice along the non-parent axes, then broadcast)."""
    out = torch.empty_like(logits)
    for index, _, non_parents in dags.groups:
        for i, axes in enumerate(non_parents):
            table = logits[index, i]
            for axis in axes:
                table = table.narrow(axis, 0, 1)
            out[index, i] = torch.softmax(table, dim=_agent_axis(i)).expand(out[index, i].shape)
    return out


def joint_policy(cond: torch.Tensor) -> torch.Tensor:
    """pi(a | s) = prod_i pi^i(a^i | s, a^{P^i}), `[B, S, J]` (joint actions row-major, agent 0 most significant)."""
    return cond.prod(1).flatten(2)


def initial_logits(game: ExactGame, dags: DagBatch, seeds: list[int], std: float) -> torch.Tensor:
    """theta_0 ~ N(0, std^2) per free parameter (BN Fig. 1 / 4 captions: N(0, 1)), `[B, N, S, *A]`.

    Batch element b draws a full table from a generator seeded with `seeds[b]` and keeps its first slice along
    every non-parent axis, so one seed gives the same draw whichever batch it sits in (the run driver's single
    DAG and the analyses' batches agree)."""
    if len(seeds) != dags.parents.shape[0]:
        raise ValueError(f"one seed per DAG of the batch: {len(seeds)} seeds, {dags.parents.shape[0]} DAGs")
    shape = (game.n_agents, game.n_states, *game.n_actions)
    draws = [torch.randn(shape, generator=torch.Generator().manual_seed(int(s)), dtype=DTYPE) for s in seeds]
    return tie(std * torch.stack(draws), dags, "first")


# --- exact evaluation -----------------------------------------------------------------------------------------
@dataclass
class Evaluation:
    v: torch.Tensor  # [B, S] V_pi
    q: torch.Tensor  # [B, S, J] Q_pi
    visitation: torch.Tensor  # [B, S] unnormalized discounted visitation d_mu = mu^T (I - gamma P_pi)^{-1}
    value: torch.Tensor  # [B] V_pi(mu)


def evaluate(game: ExactGame, joint: torch.Tensor) -> Evaluation:
    """Exact discounted evaluation of joint policies `[B, S, J]`: one batched LU factorization of I - gamma P_pi
    serves both linear systems, (I - gamma P_pi) V = r_pi and its transpose d_mu^T (I - gamma P_pi) = mu^T."""
    if game.gamma >= 1.0:
        raise ValueError("the BN objective is the discounted infinite-horizon value: gamma must be < 1")
    live = game.live
    discounted = game.gamma * game.transitions  # [S, J, S]
    r_pi = (joint * game.reward).sum(-1) * live  # [B, S]
    system = torch.eye(game.n_states, dtype=DTYPE) - torch.einsum("bsj,sjk->bsk", joint,
                                                                  discounted * live.view(-1, 1, 1))
    lu, pivots = torch.linalg.lu_factor(system)
    v = torch.linalg.lu_solve(lu, pivots, r_pi.unsqueeze(-1)).squeeze(-1)
    visitation = torch.linalg.lu_solve(lu, pivots, game.initial.expand_as(v).unsqueeze(-1), adjoint=True).squeeze(-1)
    q = game.reward + _expected_next(discounted, v)
    return Evaluation(v, q, visitation, v @ game.initial)


def _expected_next(discounted: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """sum_s' gamma P(s' | s, a) V_b(s') `[B, S, J]` from `discounted [S, J, S]` and `v [B, S]`, each batch row's bits
    independent of B (a seed of a batch computes its solo run's values): one matrix product with the B values as
    columns, a lone column doubled, because MKL takes a one-column product as a gemv, which rounds unlike the gemm
    of two or more columns (whose columns do not depend on each other: tests/test_bn_tabular.py)."""
    columns = v.T if v.shape[0] > 1 else v.T.expand(-1, 2)
    product = discounted.flatten(0, 1) @ columns  # [S * J, B (or 2)]
    return product[:, : v.shape[0]].T.reshape(v.shape[0], *discounted.shape[:2])


def regularizer(cond: torch.Tensor) -> torch.Tensor:
    """sum_i E_{(s, a^{P^i}) ~ Unif} KL(Unif, pi^i(. | s, a^{P^i})) per batch element `[B]` (eq. 2). On the tied
    layout the mean over (s, a^{-i}) is the mean over (s, a^{P^i}): the copies are equal."""
    n = cond.shape[1]
    total = torch.zeros(cond.shape[0], dtype=cond.dtype)
    for i in range(n):
        axis = _agent_axis(i)
        kl = -math.log(cond.shape[1 + axis]) - torch.log(cond[:, i]).mean(axis)  # -log|A| - mean_a log pi(a)
        total = total + kl.flatten(1).mean(-1)
    return total


def objective(game: ExactGame, logits: torch.Tensor, dags: DagBatch, lam: float) -> torch.Tensor:
    """L_lambda(theta) of eq. 2 per batch element `[B]`, differentiable (autograd's reference for the tests)."""
    cond = conditionals(logits, dags)
    return evaluate(game, joint_policy(cond)).value - lam * regularizer(cond)


def exact_gradient(game: ExactGame, logits: torch.Tensor, dags: DagBatch,
                   lam: float) -> tuple[torch.Tensor, Evaluation]:
    """grad_theta L_lambda (BN Lemma 1) on the tied layout `[B, N, S, *A]`: every copy of a parameter holds
    the parameter's gradient (so theta + eta * grad stays tied). Also returns the evaluation of pi_theta.

    With W(s, a) = d_mu(s) pi(a | s) Q(s, a) (`context_gradient` computes it per parameter):
        dL/dtheta^i(s, a^{P^i}, a^i) = G^i - pi^i(a^i | s, a^{P^i}) sum_b G^i(s, a^{P^i}, b)
                                     + lambda / (|S| |A^{P^i}|) (1 / |A^i| - pi^i(a^i | s, a^{P^i})),
        G^i(s, a^{P^i}, a^i) = sum over the other agents' actions of W."""
    grad, ev = context_gradient(game, context_parameters(logits, dags, game.n_actions), dags, lam, logits.shape)
    return tied_tables(grad, dags, logits.shape), ev


# --- the equilibrium gap (BN sec. 3) ---------------------------------------------------------------------------
def best_response_values(game: ExactGame, logits: torch.Tensor, dags: DagBatch,
                         max_iterations: int = 200) -> torch.Tensor:
    """max over BN deviations pi'^i(a^i | s, a^{P^i}) of V_{pi'^i, pi^-i}(mu), per agent `[B, N]`, exact.

    Agent i's deviation problem is an MDP on the augmented state (s, a^{P^i}) (BN sec. 4's reading): its parents'
    actions are drawn by the others given s, and its action moves the descendants and the next state. Policy
    iteration: evaluate the joint with agent i's table replaced by a deterministic choice, then re-choose
    argmax_{a^i} sum over the others' actions of pi^{-i}(a | s) Q(s, a) for each (s, a^{P^i}); exact
    evaluation each round, so it ends after a few rounds at the optimum (a deterministic deviation is optimal)."""
    cond = conditionals(logits, dags)
    shape = cond[:, 0].shape
    best = torch.empty(cond.shape[0], dags.n_agents, dtype=DTYPE)
    for i in range(dags.n_agents):
        axis = _agent_axis(i)
        others = torch.cat([cond[:, :i], cond[:, i + 1:]], 1).prod(1)  # prod_{j != i} pi^j, [B, S, *A]
        # max(...).indices: argmax's index (the first maximal one), without argmax's slow kernel along a middle axis
        choice = torch.zeros(shape, dtype=DTYPE).scatter_(axis, cond[:, i].max(axis, keepdim=True).indices, 1.0)
        for _ in range(max_iterations):
            ev = evaluate(game, (others * choice).flatten(2))
            weighted = others * ev.q.view(shape)
            score = torch.empty_like(weighted)  # summed over agent i's non-parents (a mean: same argmax, tied)
            for index, _, non_parents in dags.groups:
                axes = non_parents[i]
                part = weighted[index].mean(axes, keepdim=True) if axes else weighted[index]
                score[index] = part.expand(score[index].shape)
            top, argmax = score.max(axis, keepdim=True)
            current = (score * choice).sum(axis, keepdim=True)
            keep = current >= top - TIE_TOLERANCE * (1.0 + top.abs())
            new = torch.where(keep, choice, torch.zeros_like(choice).scatter_(axis, argmax, 1.0))
            if torch.equal(new, choice):
                break
            choice = new
        best[:, i] = ev.value
    return best


def equilibrium_gap(game: ExactGame, logits: torch.Tensor, dags: DagBatch) -> torch.Tensor:
    """gap(pi) = max_i [max_{pi'^i} V_{pi'^i, pi^-i}(mu) - V_pi(mu)] (BN sec. 3), per batch element `[B]`."""
    value = evaluate(game, joint_policy(conditionals(logits, dags))).value
    return (best_response_values(game, logits, dags) - value.unsqueeze(1)).amax(1).clamp(min=0.0)


# --- batched training (the analyses run every seed and DAG at once) --------------------------------------------
@dataclass
class AscentResult:
    logits: torch.Tensor  # [B, N, S, *A] final
    values: torch.Tensor  # [B, T + 1] V(mu) before each step and after the last
    gaps: torch.Tensor  # [B, len(gap_at)] equilibrium gap at the iterations `gap_at`
    gap_at: list[int]


def gradient_ascent(game: ExactGame, logits: torch.Tensor, dags: DagBatch, lr: float, lam: float,
                    iterations: int, gap_at: list[int] | None = None) -> AscentResult:
    """`iterations` steps of eq. 3 for every batch element at once; the equilibrium gap at `gap_at`. The steps run
    on the free parameters (`ContextLayout`); the tied layout is built only where the gap is computed."""
    gap_at = sorted(set(gap_at or []))
    shape = logits.shape
    theta = context_parameters(logits, dags, game.n_actions)
    values, gaps = [], []
    for t in range(iterations + 1):
        if t in gap_at:
            gaps.append(equilibrium_gap(game, tied_tables(theta, dags, shape), dags))
        if t == iterations:
            values.append(evaluate(game, _context_policy(theta, dags, shape)[1]).value)
            break
        grad, ev = context_gradient(game, theta, dags, lam, shape)
        values.append(ev.value)
        theta = [t_k + lr * g_k for t_k, g_k in zip(theta, grad, strict=True)]  # eq. 3, as BNTabular steps
    stacked_gaps = torch.stack(gaps, 1) if gaps else torch.empty(shape[0], 0, dtype=DTYPE)
    return AscentResult(tied_tables(theta, dags, shape), torch.stack(values, 1), stacked_gaps, gap_at)


def optimal_value(game: ExactGame) -> float:
    """V*(mu): the best joint policy's discounted value (a centralized controller), exact."""
    return joint_optimum(game).value


# --- decentralized execution ----------------------------------------------------------------------------------
def sample_actions(cond: torch.Tensor, levels: torch.Tensor, states: torch.Tensor,
                   uniforms: torch.Tensor | None = None) -> torch.Tensor:
    """Joint actions `[E, N]` of K BN policies (`cond [K, N, S, *A]`, homogeneous action counts) in states `[E]`,
    the copies seed-major (E / K per policy).

    One pass per topological level (`levels [N]`): the agents of a level read their conditional at the actions
    their parents (earlier levels) already drew; the actions of agents not yet drawn sit at 0 and are read only
    along axes on which the table is tied (non-parents), so they change nothing. Greedy where `uniforms` is None,
    else drawn by inverse CDF from `uniforms [E, N]` (one per agent: each agent draws at one level)."""
    k, n, n_states, n_act = cond.shape[:4]
    flat = cond.reshape(k, n, n_states, -1)  # [K, N, S, J]
    strides = torch.tensor([n_act ** (n - 1 - i) for i in range(n)], dtype=torch.long)
    policy = torch.arange(k).repeat_interleave(states.shape[0] // k).view(-1, 1, 1)  # [E, 1, 1]: each copy's seed
    actions = torch.zeros(states.shape[0], n, dtype=torch.long)
    agents = torch.arange(n)
    for level in range(int(levels.max()) + 1):
        base = (actions * strides).sum(-1, keepdim=True) - actions * strides  # [E, N]: a^i set to 0
        index = base.unsqueeze(-1) + strides.view(1, n, 1) * torch.arange(n_act).view(1, 1, -1)  # [E, N, A]
        probs = flat[policy, agents.view(1, n, 1), states.view(-1, 1, 1), index]  # [E, N, A]
        drawn = probs.argmax(-1) if uniforms is None else inverse_cdf(probs, uniforms)
        actions = torch.where(levels.view(1, n) == level, drawn, actions)
    return actions


# --- the run driver's algorithm -------------------------------------------------------------------------------
class BNTabularConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    dag: DagKind = Field("full", description="BN 6.1's fixed DAG: product (no edges), full (one subteam), line "
                                             "(i -> i + 1), subteams (full inside, none between; `subteams`)")
    subteams: list[int] | None = Field(None, description="subteam sizes for dag=subteams, consecutive agents "
                                                         "(BN 6.1 labels, e.g. [2, 3] for 2+3); sum = N")
    gamma: float = Field(0.95, gt=0.0, lt=1.0, description="discount of the infinite-horizon objective (BN sec. 3); "
                                                          "the paper does not state its value")
    lr: float = Field(1.0, gt=0.0, description="stepsize eta of eq. 3 (the paper does not state it)")
    reg: float = Field(1e-3, ge=0.0, description="log-barrier weight lambda of eq. 2 (not stated in the paper)")
    init_std: float = Field(1.0, ge=0.0, description="theta_0 ~ N(0, init_std^2): BN Fig. 1 / Fig. 4, N(0, 1)")
    n_envs: int = Field(8, ge=1, description="batched copies the current policy runs in after each step")
    rollout_length: int = Field(32, ge=1, description="steps per copy after each step")
    max_model_size: int = Field(1_000_000, ge=1, description="refuse models with more than this many "
                                                             "(state, joint action) pairs, S * J")

    @model_validator(mode="after")
    def _check(self):
        if self.dag == "subteams" and not self.subteams:
            raise ValueError("dag 'subteams' needs `subteams`, the subteam sizes (e.g. [1, 2])")
        if self.dag != "subteams" and self.subteams is not None:
            raise ValueError(f"`subteams` is only for dag 'subteams' (dag is {self.dag!r})")
        if self.subteams is not None and any(k < 1 for k in self.subteams):
            raise ValueError(f"subteam sizes must be positive, got {self.subteams}")
        return self


class BNTabular(Algorithm):
    """Tabular softmax BN policy gradient ascent on the exact model of a small game (`env.model()`).

    Each `train_iteration` takes one exact step of eq. 3 on the model for the DAG of the config, then runs the
    current (stochastic) BN policy for `rollout_length` steps in each of the `n_envs` copies, so the run's env-step
    axis and training returns are real samples; learning uses the model only. theta_0 ~ N(0, init_std^2) from a
    generator seeded by one draw of the global torch RNG at construction (the run driver seeds it with the run's
    seed: `construction_seed`), drawn when the model is first seen. Until then (the run's evaluation of the
    untrained policy) the policy is uniform, theta = 0 (Theorem 1's start; greedy: every agent's first action).
    `act` executes decentrally, agents by topological level, each conditioning on its parents' drawn (greedy when
    `deterministic`) actions. Rollouts draw from the run's own stream (`SeedStreams`, seeded after theta_0's).

    A seed batch (`n_seeds` K, docs/architecture.md "Seed batches"): the K seeds' logits `[K, N, S, *A]` step
    together (the exact maths is batched over a leading dimension already; `_expected_next` keeps each row's
    bits), the game's model is shared (state key `shared`: a seed-independent game), and each seed draws its
    copies' actions from its own stream.
    """

    Config = BNTabularConfig
    config: BNTabularConfig

    def __init__(self, spec: EnvSpec, config: BNTabularConfig, device: torch.device,
                 model: TabularModel | None = None, n_seeds: int | None = 1):
        super().__init__(spec, config, device)
        if not spec.discrete:
            raise CoopbenchError(f"bn_tabular plans on a tabular model with discrete actions; {spec.name} has "
                                 "continuous ones", "run it on a coordination/* or matrix/* task")
        joint = spec.n_actions ** spec.n_agents
        if joint > config.max_model_size:
            raise CoopbenchError(
                f"bn_tabular: {spec.name} has {spec.n_actions}^{spec.n_agents} = {joint} joint actions, above "
                f"max_model_size={config.max_model_size}", "run it on a smaller game, or raise algo.max_model_size")
        try:
            dag = named_dag(config.dag, spec.n_agents, config.subteams)
        except ValueError as err:
            raise CoopbenchError(f"bn_tabular on {spec.name} ({spec.n_agents} agents): {err}",
                                 "set algo.subteams to sizes summing to the number of agents") from None
        self.n_seeds = n_seeds or 1
        self.dags = DagBatch.of(dag.expand(self.n_seeds, -1, -1))  # the same DAG for every seed
        self.levels = topological_levels(dag)
        self.init_seed = torch.tensor([construction_seed() for _ in range(self.n_seeds)])  # [K]
        self.streams = SeedStreams(self.n_seeds, torch.device("cpu"))  # planned and drawn on the CPU
        self.model: TabularModel | None = None
        self.game: ExactGame | None = None
        self.logits: torch.Tensor | None = None  # [K, N, S, *A]
        self._policy: tuple[torch.Tensor, torch.Tensor] | None = None  # (conditionals [K, N, S, *A], joint [K, S, J])
        self.steps = 0
        if model is not None:
            self._attach(model)

    def _attach(self, model: TabularModel) -> None:
        size = model.n_states * model.n_joint
        if size > self.config.max_model_size:
            raise CoopbenchError(f"bn_tabular: the model of {self.spec.name} has S * J = {size} (state, joint action) "
                                 f"pairs, above max_model_size={self.config.max_model_size}",
                                 "run it on a smaller game, or raise algo.max_model_size")
        if model.n_actions != (self.spec.n_actions,) * self.spec.n_agents:
            raise CoopbenchError(f"bn_tabular: the model of {self.spec.name} has actions {model.n_actions}, its spec "
                                 f"{self.spec.n_agents} agents x {self.spec.n_actions}",
                                 "fix the environment's model()")
        self.model = model
        self.game = ExactGame.of(model, self.config.gamma, "discounted")
        if self.logits is None:
            self.logits = initial_logits(self.game, self.dags, self.init_seed.tolist(), self.config.init_std)

    def policy(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The current conditionals `[K, N, S, *A]` and joints `[K, S, J]` (computed once per update)."""
        if self._policy is None:
            cond = conditionals(self.logits, self.dags)
            self._policy = (cond, joint_policy(cond))
        return self._policy

    def _states(self, timestep: TimeStep) -> torch.Tensor:
        return self.model.known_state_index(timestep.obs, f"bn_tabular on {self.spec.name}")

    # -- the Algorithm contract
    @property
    def n_envs(self) -> int:
        return self.config.n_envs

    @property
    def steps_per_iteration(self) -> int:
        return self.config.n_envs * self.config.rollout_length

    def initial_memory(self, n_envs: int) -> None:
        return None  # a stationary policy of the current state

    @torch.no_grad()
    def act(self, timestep: TimeStep, memory: None, deterministic: bool) -> tuple[torch.Tensor, None]:
        n, n_agents = timestep.obs.shape[0], self.spec.n_agents
        uniforms = None if deterministic else self.streams.uniform((n // self.n_seeds, n_agents)).flatten(0, 1)
        if self.logits is None:  # the model is not seen yet: theta = 0, uniform (greedy: the first action)
            actions = (torch.zeros(n, n_agents, dtype=torch.long) if uniforms is None
                       else (uniforms * self.spec.n_actions).long().clamp(max=self.spec.n_actions - 1))
        else:
            actions = sample_actions(self.policy()[0], self.levels, self._states(timestep), uniforms)
        return actions.to(timestep.obs.device), None

    def train_iteration(self, env: BatchedEnv, timestep: TimeStep) -> IterationResult:
        if self.model is None:
            if not callable(getattr(env, "model", None)):
                raise CoopbenchError(f"bn_tabular needs the exact model of the game (env.model()); {self.spec.name} "
                                     "has none", "run it on a task with a model: coordination/* or matrix/*")
            self._attach(env.model())
        # eq. 3: one exact gradient step on L_lambda (Lemma 1), every seed at once
        grad, ev = exact_gradient(self.game, self.logits, self.dags, self.config.reg)
        self.logits = self.logits + self.config.lr * grad
        self._policy = None
        self.steps += 1
        # The training copies draw joint actions from pi(a | s) = prod_i pi^i (one draw per copy instead of one
        # per topological level: the same distribution as `act`'s decentralized sampling, faster).
        k, b = self.n_seeds, self.config.n_envs
        joint, joint_actions = self.policy()[1], self.model.joint_actions()
        policy = torch.arange(k).repeat_interleave(b)  # each copy's seed
        returns, ended = [], []
        for _ in range(self.config.rollout_length):
            draws = inverse_cdf(joint[policy, self._states(timestep)], self.streams.uniform((b,)).flatten())
            timestep = env.step(joint_actions[draws].to(timestep.obs.device))
            returns.append(timestep.episode_return)
            ended.append(timestep.done)
        return seed_results(timestep, returns, ended, k, self.steps_per_iteration,
                            {"bn_value": ev.value.tolist(), "bn_grad_norm": grad.flatten(1).norm(dim=1).tolist()})

    def state_dict(self) -> dict:
        # The model is the same for every seed (a seed-independent game): shared, not seed-major
        return {"shared": {"model": None if self.model is None else self.model.state_dict()},
                "logits": self.logits, "steps": self.steps, "init_seed": self.init_seed,
                "streams": self.streams.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.model = self.game = self.logits = self._policy = None
        self.init_seed = state["init_seed"].clone()
        self.streams.load_state_dict(state["streams"])
        self.logits = None if state["logits"] is None else state["logits"].clone()
        if state["shared"]["model"] is not None:
            self._attach(TabularModel.from_state_dict(state["shared"]["model"]))
        self.steps = state["steps"]


def construction_seed() -> int:
    """The seed of theta_0's generator: one draw of the global torch RNG (which the run driver seeds with the run's
    seed before building the algorithm). An analysis reproduces run `seed`'s theta_0 with
    `torch.manual_seed(seed); construction_seed()`."""
    return int(torch.randint(0, 2**62, (1,)))
