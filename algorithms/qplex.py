"""QPLEX: duplex dueling multi-agent Q-learning (Wang et al. 2021), as its official PyMARL code runs it.

Each agent's Q_a(tau_a, u_a) is split into a value V_a = max_u Q_a and an advantage A_a = Q_a - V_a <= 0,
both transformed by the state (eq. 9); the joint Q is Q_tot = sum_a V_a + sum_a lambda_a(s, u) A_a with
lambda_a > 0 from a multi-head attention over the state and joint action (eq. 10-11). The joint greedy
action is then the agents' own greedy actions (IGM, Wang et al. Prop. 2). Trained like QMIX: one TD
target on Q_tot, the next action picked by the online agents (double Q).
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field, model_validator
from torch import nn

from algorithms.blocks.mixers import DuplexMixer, HyperTransformation, QattenTransformation
from algorithms.blocks.q_targets import gather_actions, greedy_next, lambda_returns, masked_max, masked_mse
from algorithms.value_based import EpisodicQLearning, ValueBasedConfig, ValueBasedContract, statistics

QPLEX_CODE = "QPLEX's official code (github.com/wjh720/QPLEX, pymarl-master/src/config/algs/qplex_sc2.yaml)"
QATTEN_CODE = "QPLEX's official code, qplex_qatten_sc2.yaml"


class QPLEXConfig(ValueBasedConfig):
    transformation: Literal["hyper", "qatten"] = Field(
        "hyper", description="how w_a(s), b_a(s) of eq. 9 are computed: hypernetworks (mixer 'dmaq', "
                             f"{QPLEX_CODE}) or Qatten's attention over each agent's state features (mixer "
                             f"'dmaq_qatten', {QATTEN_CODE}: LAN's Table 1 QPLEX counts are this one's)")
    unit_dim: int | None = Field(None, ge=1, description="qatten: state features per agent (the first "
                                                         "unit_dim * N entries of the state are the agents')")
    hypernet_embed: int = Field(64, ge=1, description=f"hidden width of the transformation networks ({QPLEX_CODE})")
    mixing_embed_dim: int = Field(32, ge=1, description=f"qatten: attention embedding ({QATTEN_CODE})")
    attention_heads: int = Field(4, ge=1, description=f"qatten: attention heads (n_head, {QATTEN_CODE})")
    attend_reg_coef: float = Field(0.001, ge=0, description=f"qatten: attention-logit regulariser ({QATTEN_CODE})")
    n_heads: int = Field(4, ge=1, description=f"heads of lambda (num_kernel, {QPLEX_CODE})")
    adv_hypernet_layers: int = Field(1, ge=1, le=3, description=f"layers of each lambda head ({QPLEX_CODE})")
    adv_hypernet_embed: int = Field(64, ge=1, description=f"width of the lambda heads ({QPLEX_CODE})")

    @model_validator(mode="after")
    def _qatten_needs_unit_dim(self):
        if self.transformation == "qatten" and self.unit_dim is None:
            raise ValueError("transformation=qatten needs unit_dim (the state features of one agent)")
        return self


def transformation(spec, c: QPLEXConfig, n_seeds: int = 1) -> nn.Module:
    if c.transformation == "qatten":
        return QattenTransformation(spec.n_agents, spec.state_dim, c.unit_dim, c.attention_heads, c.mixing_embed_dim,
                                    c.hypernet_embed, c.attend_reg_coef, n_seeds)
    return HyperTransformation(spec.n_agents, spec.state_dim, c.hypernet_embed, n_seeds)


class QPLEX(ValueBasedContract):
    Config = QPLEXConfig
    config: QPLEXConfig

    def __init__(self, spec, config: QPLEXConfig, device: torch.device, n_seeds: int = 1):
        super().__init__(spec, config, device)
        mixer = DuplexMixer(spec.n_agents, spec.n_actions, spec.state_dim, transformation(spec, config, n_seeds),
                            config.n_heads, config.adv_hypernet_layers, config.adv_hypernet_embed, n_seeds)
        self.learner = EpisodicQLearning(spec, config, device, networks={"mixer": mixer}, n_seeds=n_seeds)
        self.mixer, self.target_mixer = self.learner.online["mixer"], self.learner.target["mixer"]

    def q_tot(self, mixer: DuplexMixer, q: torch.Tensor, actions: torch.Tensor, avail: torch.Tensor,
              state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Q_tot(s, u) of eq. 11 from the agents' `q [..., N, A]` at joint action `actions [..., N]`, and the
        transformation's regulariser (per seed)."""
        onehot = F.one_hot(actions, self.spec.n_actions).to(q.dtype)
        return mixer(gather_actions(q, actions), state, masked_max(q, avail), onehot)

    def update(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        c, filled, state, avail = self.config, batch["filled"][:, :-1], batch["state"], batch["avail"]
        q, _ = self.learner.unroll(batch)  # [K * S, L + 1, N, A]
        with torch.no_grad():
            target_q, _ = self.learner.unroll(batch, target=True)
            _, next_actions = greedy_next(target_q[:, 1:], q[:, 1:].detach(), avail[:, 1:], c.double_q)
            next_tot, _ = self.q_tot(self.target_mixer, target_q[:, 1:], next_actions, avail[:, 1:], state[:, 1:])
            targets = lambda_returns(batch["reward"][:, :-1], batch["terminated"][:, :-1], filled, next_tot,
                                     c.gamma, c.td_lambda)
        q_tot, regulariser = self.q_tot(self.mixer, q[:, :-1], batch["actions"][:, :-1], avail[:, :-1], state[:, :-1])
        td_loss = masked_mse(q_tot - targets, filled, self.n_seeds)  # each seed's own, [K]
        loss = td_loss + regulariser  # the official learner adds Qatten's logit regulariser (0 for hypernetworks)
        return statistics(self.n_seeds, self.learner.step(loss), self.learner, value_loss=td_loss)
