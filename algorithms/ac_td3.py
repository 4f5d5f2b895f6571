"""AC-TD3: agent-chained TD3, the off-policy variant of ACPO (ACPO App. N; compared with HATD3 and MADDPG in App. O,
Fig. 9).

Acting is ACPO's serialized chain (sec. 3-4, App. L): agent i acts on its observation, its id and its belief
b^(i), its own predictions of the agents before it, made by running its own (deterministic) actor with their ids.
`chain` runs the N passes batched over every copy and viewer, as `ACPO.chain` does for stochastic policies; the
actor inputs it builds (observation, id, belief) are stored with the transition.

Critics Q^(i)([s, a^(<i)], a^(i)) (App. N), one twin network shared by the agents with their ids, trained on the
k-step targets of App. N:
  y^(i)_t = r_t + gamma r_{t+1} + .. + gamma^k r_{t+k} + gamma^(k+1) Q^(i+1)([s_{t+k+1}, a^(<i+1)], a^(i+1)),
  Q^(i)([s_t, a_t^(<i)], a_t^(i)) -> (gamma')^(N-i) y^(i)_t,  gamma' = gamma^(1/N),
with Q^(N+1) read as Q^(1) (App. N's one-step J^(N), whose next-state critic is Q^(1)). The next actions are the
target actors' chain at s_{t+k+1} with TD3's smoothing noise; the bootstrap takes the minimum of the twin target
critics (TD3). The window stops at terminations and bootstraps at truncations (`TransitionReplay`).
Actors (delayed, as TD3): agent i ascends Q_1^(i)([s, a^(<i)], mu_i(o_i, i, b^(i))) on the stored actor inputs,
all agents in one pass (simultaneous, like ACPO's MAPPO backbone), then Polyak updates of the targets.

Seed batches (off_policy.py): K seeds' networks on seed-major copies and samples; losses per seed (`[K]`).
"""

from __future__ import annotations

import copy

import torch

from algorithms.blocks.adam import Adam
from algorithms.blocks.parts import Named
from algorithms.blocks.q_targets import soft_update
from algorithms.blocks.td3 import (
    DeterministicActor,
    QEnsemble,
    clipped_double_q,
    critic_loss,
    fusable,
    smooth_target,
    summed_agent_means,
)
from algorithms.off_policy import OffPolicyContract, OffPolicyLearner, TD3Config
from environments.base import EnvSpec, TimeStep


def chain(actor: DeterministicActor, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Serialized deterministic acting with predicted beliefs (ACPO App. L): actions `[B, N, A]` and every
    agent's actor input `[B, N, O + N + N A]` (observation, one-hot id, belief over the agents before it).

    Pass k runs the viewers with agent k's id: row k is agent k's action, rows v > k are viewer v's prediction of
    it, written into v's belief slot k. As in `ACPO.chain`: with one shared network pass k runs the viewers >= k
    only (N(N+1)/2 rows in all); with per-agent weights every pass runs all N rows in one batched matmul, each
    viewer on its own weights (rows v < k are not used)."""
    batch, n, obs_dim = obs.shape
    width = actor.out.weight.shape[-1]  # the action dimension
    shared = actor.out.n_groups == 1
    x = torch.zeros(batch, n, obs_dim + n + n * width, dtype=obs.dtype, device=obs.device)
    x[..., :obs_dim] = obs
    actor_in = torch.empty_like(x)
    actions = torch.empty(batch, n, width, dtype=obs.dtype, device=obs.device)
    for k in range(n):
        first = k if shared else 0  # rows [first, N) run; agent k's own row is k - first
        x[:, first:, obs_dim:obs_dim + n] = 0.0
        x[:, first:, obs_dim + k] = 1.0
        out = actor(x[:, first:])
        actor_in[:, k] = x[:, k]
        actions[:, k] = out[:, k - first]
        belief = obs_dim + n + k * width
        x[:, k + 1:, belief:belief + width] = out[:, k - first + 1:]
    return actions, actor_in


def chained_critic_input(state: torch.Tensor, joint: torch.Tensor) -> torch.Tensor:
    """Every agent's critic input [s, id_i, a^(<=i)]: `state [M, S]`, `joint [M, (i,) N, A]` (one joint action, or
    one per agent i) -> `[M, N, S + N + N A]`, the actions of agents after i zeroed."""
    m, n = state.shape[0], joint.shape[-2]
    if joint.dim() == 3:
        joint = joint.unsqueeze(1).expand(m, n, n, joint.shape[-1])
    before = torch.ones(n, n, dtype=torch.bool, device=state.device).tril()  # [i, j]: j <= i
    actions = (joint * before.unsqueeze(-1).to(joint.dtype)).flatten(-2)
    ids = torch.eye(n, dtype=state.dtype, device=state.device).expand(m, n, n)
    return torch.cat([state.unsqueeze(1).expand(m, n, state.shape[-1]), ids, actions], dim=-1)


class ACTD3(OffPolicyContract):
    Config = TD3Config
    config: TD3Config

    def __init__(self, spec: EnvSpec, config: TD3Config, device: torch.device, n_seeds: int = 1):
        super().__init__(spec, config, device, n_seeds)
        n, a = spec.n_agents, spec.action_dim
        self.actor_width = spec.obs_dim + n + n * a  # observation, id, belief (App. L)
        self.actor = DeterministicActor(1 if config.share_parameters else n, self.actor_width, config.hidden_sizes,
                                        config.activation, a, spec.action_low, spec.action_high, n_seeds).to(device)
        self.critic = QEnsemble(2, spec.state_dim + n + n * a, config.hidden_sizes, config.activation,
                                n_seeds).to(device)
        self.target_actor = copy.deepcopy(self.actor).requires_grad_(False)
        self.target_critic = copy.deepcopy(self.critic).requires_grad_(False)
        # fused where each seed stays bitwise its solo run, as MADDPG's (issue 15)
        self.actor_optimizer = Adam(self.actor.parameters(), lr=config.lr, fused=fusable(self.actor, n_seeds))
        self.critic_optimizer = Adam(self.critic.parameters(), lr=config.critic_lr,
                                     fused=fusable(self.critic, n_seeds))
        self.learner = OffPolicyLearner(spec, config, device,
                                        extra_fields={"actor_in": ((n, self.actor_width), torch.float32)},
                                        n_seeds=n_seeds)
        self.parts = (Named(actor=self.actor, critic=self.critic, target_actor=self.target_actor,
                            target_critic=self.target_critic, actor_optimizer=self.actor_optimizer,
                            critic_optimizer=self.critic_optimizer),)
        micro_gamma = config.gamma ** (1.0 / n)  # gamma' (ACPO sec. 6, App. N)
        # (gamma')^(N - i) for 1-based agent i: "to adjust the micro step to match with the last agent" (App. N)
        self.micro_discount = micro_gamma ** torch.arange(n - 1, -1, -1, dtype=torch.float32, device=device)

    def policy(self, timestep: TimeStep) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        actions, actor_in = chain(self.actor, timestep.obs)
        return actions, {"actor_in": actor_in}

    def update(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        cfg, spec = self.config, self.spec
        with torch.no_grad():  # App. N's k-step targets, chained to the next agent's critic
            next_actions, _ = chain(self.target_actor, batch["next_obs"])
            next_actions = smooth_target(next_actions, cfg.policy_noise, cfg.noise_clip, spec.action_low,
                                         spec.action_high, self.learner.update_normals(next_actions))
            next_q = clipped_double_q(self.target_critic(chained_critic_input(batch["next_state"], next_actions)))
            following = next_q.roll(-1, dims=-1)  # Q^(i+1), agent N's is Q^(1)
            targets = self.micro_discount * (batch["reward"].unsqueeze(-1)
                                             + batch["discount"].unsqueeze(-1) * following)
        value_loss = critic_loss(self.critic(chained_critic_input(batch["state"], batch["actions"])), targets,
                                 self.n_seeds)
        self.critic_optimizer.zero_grad()
        value_loss.sum().backward()  # the seeds' losses summed: seed k's weights get seed k's gradient
        self.critic_optimizer.step()
        losses = {"value_loss": value_loss.detach()}
        if (self.learner.updates + 1) % cfg.policy_freq == 0:  # delayed actor and target updates (TD3 sec. 5.2)
            own = self.actor(batch["actor_in"])  # mu_i(o_i, i, b^(i)) on the stored inputs, [M, N, A]
            n = spec.n_agents
            mine = torch.eye(n, dtype=torch.bool, device=own.device).unsqueeze(-1)
            joint = torch.where(mine, own.unsqueeze(1), batch["actions"].unsqueeze(1))  # [M, i, j, A]
            q = self.critic.first(chained_critic_input(batch["state"], joint))  # Q_1^(i), [K * M, N]
            policy_loss = -summed_agent_means(q, self.n_seeds)
            self.actor_optimizer.zero_grad()
            policy_loss.sum().backward(inputs=list(self.actor.parameters()))
            self.actor_optimizer.step()
            soft_update(self.target_actor, self.actor, cfg.polyak)
            soft_update(self.target_critic, self.critic, cfg.polyak)
            losses["policy_loss"] = policy_loss.detach().double() / n
        return losses
