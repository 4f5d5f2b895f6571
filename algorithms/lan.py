"""LAN: local advantage networks (Avalos, Reymond, Nowe, Roijers; TMLR), and its zero-mean ablation LAN-mean.

Each agent learns a local advantage A_a(tau_a, u_a) on its own history (the shared recurrent agent network,
acted on epsilon-greedily: argmax A_a is the decentralized policy, eq. 2). One centralized value V(s, tau),
used only in training, reads every agent's GRU state h_a with its last observation, last action and id,
embeds each [h_a, o_a, u_a, a] with one shared layer, sums the embeddings (so its size does not grow with
the agents), concatenates the state and maps that to V through two hidden layers (sec. 4 "Architecture",
Fig. 2, App. B). Every agent's Q-value proxy is

    Q~_a(s, tau, u_a) = V(s, tau) + A_a(tau_a, u_a)                                          (eq. 1)

and all of them are trained at once by DQN with double-Q targets from delayed copies (eq. 3):

    y_a = r + gamma [V_t(s', tau') + A_t,a(tau_a', argmax_u A_a(tau_a', u))]

on the mean squared TD error over agents and steps (App. E, Alg. 1). LAN leaves the advantages
unconstrained (end of sec. 4); LAN-mean (App. D, Fig. 7) subtracts their mean over the actions (eq. 6).
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from algorithms.blocks.mixers import SeedLinear
from algorithms.blocks.q_targets import gather_actions, greedy_next, lambda_returns, masked_mse, seed_masked_mean
from algorithms.value_based import EpisodicQLearning, ValueBasedConfig, ValueBasedContract, statistics

LAN_B = "LAN App. B"


class LANConfig(ValueBasedConfig):
    # App. B's values where they differ from the family's PyMARL defaults (config/algorithms/lan.yaml repeats them).
    optimizer: Literal["rmsprop", "adam"] = Field("adam", description=f"{LAN_B}: Adam")
    updates_per_episode: int = Field(2, ge=1, description=f"{LAN_B}: 'after every episode we optimize both "
                                                          "networks twice'")
    zero_mean_advantages: bool = Field(False, description="LAN-mean (eq. 6, App. D): A_a <- A_a - mean_u A_a(., u); "
                                                          "LAN itself leaves A unconstrained (end of sec. 4)")
    value_embed_size: int = Field(128, ge=1, description=f"{LAN_B}: each [h_a, o_a, u_a, a] embedded by a "
                                                          "feed-forward layer of 128 units")
    value_hidden_sizes: list[int] = Field(default_factory=lambda: [128, 128], min_length=1,
                                          description=f"{LAN_B}: two hidden layers of 128 units on [sum of "
                                                      "embeddings, state]")


class CentralValue(nn.Module):
    """V(s, tau) of LAN (sec. 4 "Architecture", Fig. 2 left, App. B).

    h~_a = [h_a, o_a, u_a, a] -> ReLU(Linear(h~_a)) for every agent with shared weights, summed over the
    agents, concatenated with the state, then an MLP with ReLU. Its parameter count depends on the agents only
    through the sizes of o_a, u_a and the id (LAN Table 1's caption). `n_seeds`: K seeds' weights, inputs' leading
    dim seed-major (mixers.SeedLinear)."""

    def __init__(self, n_agents: int, obs_dim: int, n_actions: int, hidden_size: int, state_dim: int,
                 embed_size: int = 128, hidden_sizes: list[int] | None = None, n_seeds: int = 1):
        super().__init__()
        self.embed = nn.Sequential(SeedLinear(hidden_size + obs_dim + n_actions + n_agents, embed_size,
                                              n_seeds=n_seeds), nn.ReLU())
        widths = [embed_size + state_dim, *(hidden_sizes or [128, 128])]
        layers: list[nn.Module] = []
        for i, o in zip(widths[:-1], widths[1:], strict=True):
            layers += [SeedLinear(i, o, n_seeds=n_seeds), nn.ReLU()]
        self.value = nn.Sequential(*layers, SeedLinear(widths[-1], 1, n_seeds=n_seeds))

    def forward(self, hidden: torch.Tensor, obs: torch.Tensor, last_actions: torch.Tensor,
                state: torch.Tensor) -> torch.Tensor:
        """`hidden [..., N, H]`, `obs [..., N, D]`, `last_actions [..., N, A]` (one-hot), `state [..., S]` -> V
        `[...]`."""
        n_agents = hidden.shape[-2]
        ids = torch.eye(n_agents, dtype=hidden.dtype, device=hidden.device).expand(*hidden.shape[:-1], n_agents)
        joint = self.embed(torch.cat([hidden, obs, last_actions, ids], dim=-1)).sum(-2)  # tau, a fixed size
        return self.value(torch.cat([joint, state], dim=-1)).squeeze(-1)


def local_advantages(output: torch.Tensor, zero_mean: bool) -> torch.Tensor:
    """The advantage network's output as A_a `[..., A]`: as is (LAN), or minus its mean over the actions (eq. 6,
    LAN-mean; over all |U_a| actions as the equation writes it). Either way argmax_u A_a is unchanged."""
    return output - output.mean(-1, keepdim=True) if zero_mean else output


def last_actions_onehot(actions: torch.Tensor, n_actions: int) -> torch.Tensor:
    """`actions [S, L, N]` taken at each step -> the one-hot action taken before each step (zeros at the first)."""
    onehot = F.one_hot(actions, n_actions).float()
    return torch.cat([torch.zeros_like(onehot[:, :1]), onehot[:, :-1]], dim=1)


def lan_targets(reward: torch.Tensor, terminated: torch.Tensor, filled: torch.Tensor, next_v: torch.Tensor,
                next_target_adv: torch.Tensor, next_online_adv: torch.Tensor, next_avail: torch.Tensor | None,
                gamma: float, td_lambda: float = 0.0, double_q: bool = True) -> torch.Tensor:
    """Eq. 3 for every agent, `[S, L, N]`: r + gamma [V_t(s', tau') + A_t,a(tau_a', argmax_u A_a(tau_a', u))], the
    argmax over available actions by the online advantages (double Q), nothing after a termination.
    `reward, terminated, filled [S, L]`, `next_v [S, L]` (target V of the next step), advantages `[S, L, N, A]`."""
    next_adv, _ = greedy_next(next_target_adv, next_online_adv, next_avail, double_q)
    next_q = next_v.unsqueeze(-1) + next_adv  # the target proxy Q~_t,a of eq. 1 at the chosen action
    return lambda_returns(reward.unsqueeze(-1).expand_as(next_q), terminated, filled, next_q, gamma, td_lambda)


class LAN(ValueBasedContract):
    Config = LANConfig
    config: LANConfig

    def __init__(self, spec, config: LANConfig, device: torch.device, n_seeds: int = 1):
        super().__init__(spec, config, device)
        hidden = config.rnn_hidden_size if config.recurrent else config.hidden_sizes[-1]
        value = CentralValue(spec.n_agents, spec.obs_dim, spec.n_actions, hidden, spec.state_dim,
                             config.value_embed_size, config.value_hidden_sizes, n_seeds)
        # The agent network is the local advantage network A_a (App. E, Alg. 1 line 3); V and its delayed copy
        # come with the learner's target networks, optimizer and checkpoint (one loss for both, sec. 4).
        self.learner = EpisodicQLearning(spec, config, device, networks={"value": value}, n_seeds=n_seeds)
        self.value, self.target_value = self.learner.online["value"], self.learner.target["value"]

    # Acting: epsilon-greedy on the raw advantages, eq. 6's shift does not move the argmax (Alg. 1 line 14).
    # An iteration is Alg. 1 lines 7-20 (one episode stored), then lines 21-29 twice per episode (App. B).

    def central_value(self, net: CentralValue, hidden: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """V(s_t, tau_t) at every step of the batch, `[S, L + 1]`."""
        last = last_actions_onehot(batch["actions"], self.spec.n_actions)
        return net(hidden, batch["obs"], last, batch["state"])

    def update(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        c, filled, avail = self.config, batch["filled"][:, :-1], batch["avail"]
        output, hidden = self.learner.unroll(batch)  # advantage network over the episodes: [K * S, L + 1, N, A]
        adv = local_advantages(output, c.zero_mean_advantages)
        v = self.central_value(self.value, hidden, batch)  # [K * S, L + 1]
        with torch.no_grad():
            target_output, target_hidden = self.learner.unroll(batch, target=True)
            target_v = self.central_value(self.target_value, target_hidden, batch)
            targets = lan_targets(batch["reward"][:, :-1], batch["terminated"][:, :-1], filled, target_v[:, 1:],
                                  local_advantages(target_output, c.zero_mean_advantages)[:, 1:],
                                  adv[:, 1:].detach(), avail[:, 1:], c.gamma, c.td_lambda, c.double_q)
        proxy = v[:, :-1].unsqueeze(-1) + gather_actions(adv[:, :-1], batch["actions"][:, :-1])  # eq. 1, [S, L, N]
        # the mean squared TD error over agents and steps (Alg. 1 line 28), each seed's own: [K]
        loss = masked_mse(proxy - targets, filled, self.n_seeds)
        return statistics(self.n_seeds, self.learner.step(loss), self.learner, value_loss=loss,
                          central_value=seed_masked_mean(v[:, :-1], filled, self.n_seeds))
