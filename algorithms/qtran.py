"""QTRAN-base (Son et al. 2019), as PyMARL's qtran learner runs it.

Besides the agents' Q_a(tau_a, u_a), QTRAN learns a joint action-value Q_jt(s, u) and a state value
V_jt(s) (sec. 3.2). The factorization sum_a Q_a is tied to them by conditions (Theorem 1) enforced as
losses (sec. 3.3, eq. 7): L = L_td + lambda_opt L_opt + lambda_nopt L_nopt, with

  L_td   = (Q_jt(s, u) - y)^2,  y = r + gamma Q_jt^target(s', u'_greedy)  (u'_greedy: the agents' argmaxes)
  L_opt  = (sum_a Q_a(tau_a, ubar_a) - Q_jt(s, ubar) + V_jt(s))^2        (ubar: the agents' argmaxes now)
  L_nopt = min(sum_a Q_a(tau_a, u_a) - Q_jt(s, u) + V_jt(s), 0)^2        (the actions taken)

Q_jt is held fixed (detached) inside L_opt and L_nopt, as in the paper (sec. 3.3) and PyMARL.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import Field

from algorithms.blocks.mixers import QTranJoint
from algorithms.blocks.q_targets import gather_actions, greedy_next, lambda_returns, masked_argmax, masked_mse
from algorithms.value_based import EpisodicQLearning, ValueBasedConfig, ValueBasedContract, statistics

PYMARL_QTRAN = "PyMARL algs/qtran.yaml"


class QTRANConfig(ValueBasedConfig):
    mixing_embed_dim: int = Field(64, ge=1, description=f"width of Q_jt and V_jt ({PYMARL_QTRAN})")
    opt_loss: float = Field(1.0, ge=0, description=f"lambda_opt, weight of L_opt ({PYMARL_QTRAN})")
    nopt_min_loss: float = Field(0.1, ge=0, description=f"lambda_nopt, weight of L_nopt ({PYMARL_QTRAN})")


class QTRAN(ValueBasedContract):
    Config = QTRANConfig
    config: QTRANConfig

    def __init__(self, spec, config: QTRANConfig, device: torch.device, n_seeds: int = 1):
        super().__init__(spec, config, device)
        hidden = config.rnn_hidden_size if config.recurrent else config.hidden_sizes[-1]
        joint = QTranJoint(spec.n_actions, spec.state_dim, hidden, config.mixing_embed_dim, n_seeds)
        self.learner = EpisodicQLearning(spec, config, device, networks={"joint": joint}, n_seeds=n_seeds)
        self.joint, self.target_joint = self.learner.online["joint"], self.learner.target["joint"]

    def onehot(self, actions: torch.Tensor) -> torch.Tensor:
        return F.one_hot(actions, self.spec.n_actions).float()

    def update(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        c, filled, state, avail = self.config, batch["filled"][:, :-1], batch["state"], batch["avail"]
        actions, seeds = batch["actions"][:, :-1], self.n_seeds
        q, hidden = self.learner.unroll(batch)  # [K * S, L + 1, N, A], [K * S, L + 1, N, H]
        with torch.no_grad():
            target_q, target_hidden = self.learner.unroll(batch, target=True)
            _, next_actions = greedy_next(target_q[:, 1:], q[:, 1:].detach(), avail[:, 1:], c.double_q)
            next_q_jt, _ = self.target_joint(state[:, 1:], target_hidden[:, 1:], self.onehot(next_actions))
            targets = lambda_returns(batch["reward"][:, :-1], batch["terminated"][:, :-1], filled, next_q_jt,
                                     c.gamma, c.td_lambda)
        # L_td: the joint action-value of the actions taken.
        q_jt, v_jt = self.joint(state[:, :-1], hidden[:, :-1], self.onehot(actions))
        td_loss = masked_mse(q_jt - targets, filled, seeds)  # each seed's own, [K]
        # L_opt: at the agents' greedy joint action ubar, sum_a Q_a - Q_jt + V_jt = 0.
        greedy = masked_argmax(q[:, :-1].detach(), avail[:, :-1])
        q_jt_greedy, _ = self.joint(state[:, :-1], hidden[:, :-1], self.onehot(greedy))
        opt = gather_actions(q[:, :-1], greedy).sum(-1) - q_jt_greedy.detach() + v_jt
        opt_loss = masked_mse(opt, filled, seeds)
        # L_nopt: at the actions taken, sum_a Q_a - Q_jt + V_jt >= 0.
        nopt = gather_actions(q[:, :-1], actions).sum(-1) - q_jt.detach() + v_jt
        nopt_loss = masked_mse(nopt.clamp(max=0.0), filled, seeds)
        loss = td_loss + c.opt_loss * opt_loss + c.nopt_min_loss * nopt_loss
        return statistics(seeds, self.learner.step(loss), self.learner, value_loss=td_loss, opt_loss=opt_loss,
                          nopt_loss=nopt_loss)
