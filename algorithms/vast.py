"""VAST: value function factorization with variable agent sub-teams (Phan et al., NeurIPS 2021).

The agents are split into K = ceil(eta N) sub-teams that may change at every step. Sub-team k's value is the
sum of its members' utilities, Q^k = sum_{a in C_k} Q_a(tau_a, u_a) (a linear decomposition inside the
sub-team, so IGM holds for it), and a value-factorization operator mixes the K sub-team values instead of the
N agent values: Q_VAST(s, u) = Phi(Q^1, ..., Q^K; s) (BN 6.2.2 states it this way; here Phi is QMIX's
monotonic mixer over K inputs, their plain sum, or BN Table 3's MLP on the concatenated sub-team values).
Trained like the operator alone: one TD target on Q_VAST with the agents' greedy next actions (double Q).

The sub-teams come from a learned assignment policy X(k | s, o_a) (the official code's `VASTNet`: the state and
the agent's observation -> 128 ELU -> 128 ELU -> softmax over K, github.com/thomyphan/scalable-marl,
vast/controllers/vast.py), sampled at every step; it is trained by a policy gradient,
-log X(k_a | s, o_a) (G - sum_u pi_a(u) Q_a(u)), the official code's update_assignment_learner, where G is the
official code's Monte Carlo return and is our TD(lambda) target here.

`subgroups: heuristic` (`vast_heuristic`, BN 6.2.2, Fig. 3) replaces the learned assignment with BN's Algorithm 1:
at every stored step, the K = ceil(eta N) subteams that Algorithm 1 reaches on the dependency scores of that step's
positions (the task's `positions_from_views`; BN 6.2.2: "computed from 2D positions as in Predator-Prey"), "with
the mixer and learning losses [following] the original VAST algorithm"; there is no assignment network or loss.

Our choices where the sources leave one: the assignment and the TD losses are summed and take one optimizer step
with a joint gradient-norm clip (the official code has two optimizers; the losses share no parameter); the next
step's Q_VAST uses that step's sampled sub-teams.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn
from torch.distributions import Categorical

from algorithms.blocks.exploration import exploration_uniforms
from algorithms.blocks.mixers import QMixer, SeedLinear, SumMixer
from algorithms.blocks.networks import lane_aligned
from algorithms.blocks.q_targets import gather_actions, greedy_next, lambda_returns, masked_mse, with_fallback
from algorithms.blocks.subteams import (
    DependencyScore,
    contiguous_ids,
    dependency_scores,
    heuristic_subteams,
    positions_from_views,
)
from algorithms.value_based import PYMARL, EpisodicQLearning, ValueBasedConfig, ValueBasedContract, statistics
from coopbench.base.errors import CoopbenchError

VAST_CODE = "VAST's official code (github.com/thomyphan/scalable-marl, vast/controllers/vast.py)"


class VASTConfig(ValueBasedConfig):
    subteam_ratio: float = Field(0.25, gt=0, le=1, description="eta: K = ceil(eta N) sub-teams (Phan et al. 2021; "
                                                               "BN 6.2.2: 'K = ceil(eta N) with eta = 1/4')")
    mixer: Literal["qmix", "vdn", "mlp"] = Field(
        "qmix", description="the factorization operator over the sub-team values: QMIX's monotonic mixer, their sum, "
                            "or BN Table 3's 'Mixer architecture (QTRAN/VAST)' Concat(Q^{C_1..K}) -> FC -> ELU -> FC "
                            "-> ELU -> FC(1) of width mixing_embed_dim (no monotonicity, no state)")
    assignment_hidden: int = Field(128, ge=1, description=f"width of the assignment network's two ELU layers "
                                                          f"({VAST_CODE}, VASTNet)")
    assignment_loss_coef: float = Field(1.0, ge=0, description="weight of the assignment policy gradient in the "
                                                               "summed loss (1: the official separate loss)")
    mixing_embed_dim: int = Field(32, ge=1, description=f"qmix: mixing network width ({PYMARL}); mlp: its width "
                                                        "(BN Table 3: 128)")
    hypernet_layers: int = Field(2, ge=1, le=2, description=f"qmix: layers of the weight hypernetworks ({PYMARL})")
    hypernet_embed: int = Field(64, ge=1, description=f"qmix: hidden width of 2-layer hypernetworks ({PYMARL})")
    subgroups: Literal["meta", "heuristic"] = Field(
        "meta", description="meta: VAST's learned assignment policy (Phan et al. 2021); heuristic: BN Algorithm 1's K "
                            "subteams on the step's dependency scores (BN 6.2.2, vast_heuristic)")
    dependency_score: DependencyScore = Field("neg_euclidean", description="heuristic: d_ij from the agents' "
                                                                           "positions (BN App. B.3)")


class ELUNet(nn.Module):
    """Linear -> ELU -> Linear -> ELU -> Linear, each layer a `SeedLinear` (one weight set per seed of a seed batch,
    inputs seed-major; the ELUs through `lane_aligned`, so every seed's rows round as alone)."""

    def __init__(self, in_features: int, hidden: int, out_features: int, n_seeds: int = 1):
        super().__init__()
        self.layers = nn.ModuleList([SeedLinear(in_features, hidden, n_seeds=n_seeds),
                                     SeedLinear(hidden, hidden, n_seeds=n_seeds),
                                     SeedLinear(hidden, out_features, n_seeds=n_seeds)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers[:-1]:
            x = lane_aligned(F.elu, layer(x))
        return self.layers[-1](x)


class MLPMixer(nn.Module):
    """BN Table 3's VAST mixer: Concat(Q^{C_1}, ..., Q^{C_K}) -> FC(E) -> ELU -> FC(E) -> ELU -> FC(1)."""

    def __init__(self, n_inputs: int, embed_dim: int = 128, n_seeds: int = 1):
        super().__init__()
        self.net = ELUNet(n_inputs, embed_dim, 1, n_seeds)

    def forward(self, qs: torch.Tensor, state: torch.Tensor | None = None) -> torch.Tensor:
        return self.net(qs).squeeze(-1)


class SubteamAssignment(nn.Module):
    """X(k | s, o_a): every agent's distribution over the K sub-teams from [state, its observation]
    (VASTNet of the official code)."""

    def __init__(self, state_dim: int, obs_dim: int, n_subteams: int, hidden: int = 128, n_seeds: int = 1):
        super().__init__()
        self.net = ELUNet(state_dim + obs_dim, hidden, n_subteams, n_seeds)

    def forward(self, state: torch.Tensor, obs: torch.Tensor) -> Categorical:
        """`state [..., S]`, `obs [..., N, D]` -> a Categorical over sub-teams with batch shape `[..., N]`."""
        state = state.unsqueeze(-2).expand(*obs.shape[:-1], state.shape[-1])
        return Categorical(logits=self.net(torch.cat([state, obs], dim=-1)))


def sample_subteams(assignment: Categorical, streams) -> torch.Tensor:
    """A draw of every agent's sub-team at every step, `[K * S, ...]` seed-major, each seed's from its own stream:
    the Gumbel-max trick, argmax(log X - log(-log u)), on uniforms u drawn per seed (exact, as a categorical draw)."""
    log_probs = assignment.logits  # normalized log-probabilities
    n_seeds = streams.n_seeds
    per_seed = log_probs.numel() // n_seeds
    u = exploration_uniforms(streams, per_seed, [True] * n_seeds).view(log_probs.shape)
    return (log_probs - (-u.log()).log()).argmax(-1)


def subteam_values(qs: torch.Tensor, subteams: torch.Tensor, n_subteams: int) -> torch.Tensor:
    """Q^k = sum of the members' `qs [..., N]` for sub-teams `subteams [..., N]` (ids in 0..K-1) -> `[..., K]`;
    an empty sub-team's value is 0."""
    return qs.unsqueeze(-2).mul(F.one_hot(subteams, n_subteams).transpose(-1, -2).to(qs.dtype)).sum(-1)


def heuristic_subteam_ids(positions: torch.Tensor, score: DependencyScore, n_subteams: int) -> torch.Tensor:
    """Sub-team ids 0..K-1 `[..., N]` of BN Algorithm 1 run until K subteams are left (no edge budget: BN 6.2.2
    takes VAST's K = ceil(eta N) as the budget) on the dependency scores of `positions [..., N, D]`."""
    _, slots = heuristic_subteams(dependency_scores(positions.float(), score), n_subteams=n_subteams)
    return contiguous_ids(slots, n_subteams)


def epsilon_greedy_expectation(q: torch.Tensor, avail: torch.Tensor | None,
                               epsilon: float | torch.Tensor) -> torch.Tensor:
    """sum_u pi_a(u) Q_a(u) under the epsilon-greedy policy over the available actions, `[..., N]` (the baseline of
    the official assignment update, which takes the behaviour policy's probabilities). `epsilon` a float or a tensor
    broadcasting over `q [..., N, A]` (a seed batch: each seed's rows their seed's epsilon)."""
    allowed = with_fallback(avail, q)
    uniform = allowed.to(q.dtype) / allowed.sum(-1, keepdim=True)
    greedy = F.one_hot(q.masked_fill(~allowed, float("-inf")).argmax(-1), q.shape[-1]).to(q.dtype)
    return ((1 - epsilon) * greedy + epsilon * uniform).mul(q).sum(-1)


class VAST(ValueBasedContract):
    Config = VASTConfig
    config: VASTConfig

    def __init__(self, spec, config: VASTConfig, device: torch.device, n_seeds: int = 1):
        super().__init__(spec, config, device)
        self.n_subteams = math.ceil(config.subteam_ratio * spec.n_agents)
        mixers = {"qmix": lambda: QMixer(self.n_subteams, spec.state_dim, config.mixing_embed_dim,
                                         config.hypernet_layers, config.hypernet_embed, n_seeds),
                  "vdn": SumMixer, "mlp": lambda: MLPMixer(self.n_subteams, config.mixing_embed_dim, n_seeds)}
        mixer = mixers[config.mixer]()
        networks = {"mixer": mixer}
        if config.subgroups == "meta":
            networks["assignment"] = SubteamAssignment(spec.state_dim, spec.obs_dim, self.n_subteams,
                                                       config.assignment_hidden, n_seeds)
        else:  # BN 6.2.2: Algorithm 1 on the positions the task's views hold
            self.positions = positions_from_views(spec.name)
            if self.positions is None:
                raise CoopbenchError(f"vast_heuristic needs the agents' positions and {spec.name}'s observations "
                                     "and state do not expose them (no positions_from_views)",
                                     "run it on a task that does (rware/*, particle/*, coordination/*)")
        self.learner = EpisodicQLearning(spec, config, device, networks=networks, n_seeds=n_seeds)
        self.mixer, self.target_mixer = self.learner.online["mixer"], self.learner.target["mixer"]
        self.assignment = self.learner.online["assignment"] if config.subgroups == "meta" else None

    # Acting is decentralized: each agent's own Q (the sub-teams exist only in training).
    def update(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        c, filled, state, avail = self.config, batch["filled"][:, :-1], batch["state"], batch["avail"]
        k, n_seeds = self.n_subteams, self.n_seeds
        q, _ = self.learner.unroll(batch)  # [K * S, L + 1, N, A], seed-major
        if c.subgroups == "heuristic":  # BN 6.2.2: Algorithm 1's K subteams at every step, from its positions
            subteams = heuristic_subteam_ids(self.positions(batch["obs"], state), c.dependency_score, k)
        else:
            assignment = self.assignment(state, batch["obs"])  # X(. | s_t, o_a,t) at every step, [S, L + 1, N]
            subteams = sample_subteams(assignment, self.learner.streams)  # a fresh draw at every step, per seed
        with torch.no_grad():
            target_q, _ = self.learner.unroll(batch, target=True)
            next_q, _ = greedy_next(target_q[:, 1:], q[:, 1:].detach(), avail[:, 1:], c.double_q)
            next_tot = self.target_mixer(subteam_values(next_q, subteams[:, 1:], k), state[:, 1:])
            targets = lambda_returns(batch["reward"][:, :-1], batch["terminated"][:, :-1], filled, next_tot,
                                     c.gamma, c.td_lambda)
        chosen = gather_actions(q[:, :-1], batch["actions"][:, :-1])  # [S, L, N]
        q_vast = self.mixer(subteam_values(chosen, subteams[:, :-1], k), state[:, :-1])  # Phi(Q^1..Q^K; s)
        td_loss = masked_mse(q_vast - targets, filled, n_seeds)  # each seed's own, [K]
        if c.subgroups == "heuristic":
            return statistics(n_seeds, self.learner.step(td_loss), self.learner, value_loss=td_loss)
        # The assignment's policy gradient (official update_assignment_learner): advantage G - E_pi[Q_a].
        with torch.no_grad():
            epsilons = self.learner.epsilons().to(q.dtype).repeat_interleave(q.shape[0] // n_seeds).view(-1, 1, 1, 1)
            baseline = epsilon_greedy_expectation(q[:, :-1], avail[:, :-1], epsilons)  # each seed's own epsilon
            advantage = targets.unsqueeze(-1) - baseline  # [K * S, L, N]
        log_probs = assignment.log_prob(subteams)[:, :-1]
        mask = filled.unsqueeze(-1).expand_as(log_probs).to(log_probs.dtype)
        assignment_loss = per_seed_mean(-(log_probs * advantage), mask, n_seeds)
        entropy = per_seed_mean(assignment.entropy().detach()[:, :-1], mask, n_seeds)
        grad_norms = self.learner.step(td_loss + c.assignment_loss_coef * assignment_loss)
        return statistics(n_seeds, grad_norms, self.learner, value_loss=td_loss, assignment_loss=assignment_loss,
                          assignment_entropy=entropy)


def per_seed_mean(x: torch.Tensor, mask: torch.Tensor, n_seeds: int) -> torch.Tensor:
    """Each seed's mean of `x` over its real entries (`mask`, the same shape, seed-major rows), `[K]`: sums along
    each seed's contiguous row."""
    return (x * mask).reshape(n_seeds, -1).sum(1) / mask.reshape(n_seeds, -1).sum(1).clamp(min=1.0)
