"""VDN: value decomposition networks (Sunehag et al. 2018), as PyMARL runs it.

The team's Q is the sum of the agents' utilities, Q_tot(tau, u) = sum_a Q_a(tau_a, u_a) (Sunehag et al.,
sec. 3), learned end to end from the team reward with one TD target per transition:
y = r + gamma sum_a Q_a^target(tau_a', argmax_u Q_a(tau_a', u)).
"""

from __future__ import annotations

import torch

from algorithms.blocks.mixers import SumMixer
from algorithms.blocks.q_targets import gather_actions, greedy_next, lambda_returns, masked_mse
from algorithms.value_based import EpisodicQLearning, ValueBasedConfig, ValueBasedContract, statistics


class VDNConfig(ValueBasedConfig):
    pass


class VDN(ValueBasedContract):
    Config = VDNConfig
    config: VDNConfig

    def __init__(self, spec, config: VDNConfig, device: torch.device, n_seeds: int = 1):
        super().__init__(spec, config, device)
        self.mixer = SumMixer()
        self.learner = EpisodicQLearning(spec, config, device, n_seeds=n_seeds)

    def update(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        c, filled = self.config, batch["filled"][:, :-1]
        q, _ = self.learner.unroll(batch)  # [K * S, L + 1, N, A]
        with torch.no_grad():
            target_q, _ = self.learner.unroll(batch, target=True)
            next_q, _ = greedy_next(target_q[:, 1:], q[:, 1:].detach(), batch["avail"][:, 1:], c.double_q)
            targets = lambda_returns(batch["reward"][:, :-1], batch["terminated"][:, :-1], filled,
                                     self.mixer(next_q), c.gamma, c.td_lambda)
        q_tot = self.mixer(gather_actions(q[:, :-1], batch["actions"][:, :-1]))  # sum_a Q_a(tau_a, u_a)
        loss = masked_mse(q_tot - targets, filled, self.n_seeds)  # each seed's own, [K]
        return statistics(self.n_seeds, self.learner.step(loss), self.learner, value_loss=loss)
