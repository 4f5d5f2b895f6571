"""QMIX: monotonic value function factorisation (Rashid et al. 2018), as PyMARL runs it.

Q_tot(tau, u, s) = mixer(Q_1(tau_1, u_1), ..., Q_N(tau_N, u_N); s), with the mixing network's weights
produced by hypernetworks of the state and kept non-negative, so dQ_tot/dQ_a >= 0 (sec. 4.3, eq. 5): the
agents' greedy actions are the joint greedy action. Trained end to end on
L = sum (y - Q_tot(tau, u, s))^2, y = r + gamma Q_tot^target(tau', u'_greedy, s') (eq. 6; double Q from
PyMARL's default).
"""

from __future__ import annotations

import torch
from pydantic import Field

from algorithms.blocks.mixers import QMixer
from algorithms.blocks.q_targets import gather_actions, greedy_next, lambda_returns, masked_mse
from algorithms.value_based import PYMARL, EpisodicQLearning, ValueBasedConfig, ValueBasedContract, statistics


class QMIXConfig(ValueBasedConfig):
    mixing_embed_dim: int = Field(32, ge=1, description=f"mixing network width ({PYMARL})")
    hypernet_layers: int = Field(2, ge=1, le=2, description=f"layers of the weight hypernetworks ({PYMARL})")
    hypernet_embed: int = Field(64, ge=1, description=f"hidden width of 2-layer hypernetworks ({PYMARL})")


class QMIX(ValueBasedContract):
    Config = QMIXConfig
    config: QMIXConfig

    def __init__(self, spec, config: QMIXConfig, device: torch.device, n_seeds: int = 1):
        super().__init__(spec, config, device)
        mixer = QMixer(spec.n_agents, spec.state_dim, config.mixing_embed_dim, config.hypernet_layers,
                       config.hypernet_embed, n_seeds)
        self.learner = EpisodicQLearning(spec, config, device, networks={"mixer": mixer}, n_seeds=n_seeds)
        self.mixer, self.target_mixer = self.learner.online["mixer"], self.learner.target["mixer"]

    def update(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        c, filled, state = self.config, batch["filled"][:, :-1], batch["state"]
        q, _ = self.learner.unroll(batch)  # [K * S, L + 1, N, A]
        with torch.no_grad():
            target_q, _ = self.learner.unroll(batch, target=True)
            next_q, _ = greedy_next(target_q[:, 1:], q[:, 1:].detach(), batch["avail"][:, 1:], c.double_q)
            targets = lambda_returns(batch["reward"][:, :-1], batch["terminated"][:, :-1], filled,
                                     self.target_mixer(next_q, state[:, 1:]), c.gamma, c.td_lambda)
        q_tot = self.mixer(gather_actions(q[:, :-1], batch["actions"][:, :-1]), state[:, :-1])
        loss = masked_mse(q_tot - targets, filled, self.n_seeds)  # eq. 6, each seed's own: [K]
        return statistics(self.n_seeds, self.learner.step(loss), self.learner, value_loss=loss)
