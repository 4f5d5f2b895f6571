"""IQL: independent Q-learning (Tan 1993; Tampuu et al. 2015), as the value-based baselines run it
(PyMARL's iql: recurrent agents with shared parameters, episode replay, double-Q targets).

Every agent learns its own Q_a(tau_a, u_a) from the team reward, treating the others as part of the
environment: y_a = r + gamma Q_a^target(tau_a', argmax_u Q_a(tau_a', u)), no mixing.
"""

from __future__ import annotations

import torch
from pydantic import Field

from algorithms.blocks.q_targets import gather_actions, greedy_next, lambda_returns, masked_mse
from algorithms.value_based import EpisodicQLearning, ValueBasedConfig, ValueBasedContract, statistics


class IQLConfig(ValueBasedConfig):
    observe_state: bool = Field(False, description="IQL without fog (LAN 5.4, iql_no_fog): every agent observes the "
                                                   "global state instead of its observation, same architecture "
                                                   "and episode replay")


class IQL(ValueBasedContract):
    Config = IQLConfig
    config: IQLConfig

    def __init__(self, spec, config: IQLConfig, device: torch.device, n_seeds: int = 1):
        super().__init__(spec, config, device)
        self.learner = EpisodicQLearning(spec, config, device, observe_state=config.observe_state, n_seeds=n_seeds)

    def update(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        c, filled = self.config, batch["filled"][:, :-1]
        q, _ = self.learner.unroll(batch)  # [K * S, L + 1, N, A]
        with torch.no_grad():
            target_q, _ = self.learner.unroll(batch, target=True)
            next_q, _ = greedy_next(target_q[:, 1:], q[:, 1:].detach(), batch["avail"][:, 1:], c.double_q)
            rewards = batch["reward"][:, :-1, None].expand_as(next_q)  # each agent learns from the team reward
            targets = lambda_returns(rewards, batch["terminated"][:, :-1], filled, next_q, c.gamma, c.td_lambda)
        chosen = gather_actions(q[:, :-1], batch["actions"][:, :-1])  # Q_a(tau_a, u_a), [S, L, N]
        loss = masked_mse(chosen - targets, filled, self.n_seeds)  # each seed's own, [K]
        return statistics(self.n_seeds, self.learner.step(loss), self.learner, value_loss=loss)
