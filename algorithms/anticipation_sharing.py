"""AS: Anticipation Sharing (AS paper, "Learning to Cooperate under Private Rewards", sec. 4.3, Algorithm 1).

Each agent i learns, from its private reward only, its own policy pi^ii, anticipations pi^ij of its neighbours'
policies, and its value V_i. Per update (Algorithm 1): collect one rollout; each agent computes its GAE (eq. 17) on
its own reward and V_i; then K iterations, each one a message exchange followed by a step on eq. 16:

    max E[ min(xi_i xi_N A_i, clip(xi_i, 1 - eps, 1 + eps) xi_N A_i)
           - kappa_i sum_{j in N_i} (rho 1[X^ij] ||pi^ij(.|s) - pi^jj(.|s)||^2
                                    + rho 1[X^ii] ||pi^ii(.|s) - pi^ji(.|s)||^2) ]

with xi_i = pi^ii(a_i)/pi^ii_old(a_i), xi_N = prod_{j in N_i} pi^ij(a_j)/pi^ij_old(a_j) (eq. 13), the sets X of
eq. 14 (the advantage's gradient would widen the discrepancy) and kappa_i = mean |A_i| (4.3, "Implementation
details"; rho_j = rho'_j = rho). V_i is fitted to its own returns (eq. 18).

What agents exchange (Algorithm 1's "Share" lines), per neighbour and stored step: agent j sends agent i its action
distribution pi^jj(.|s_t), its anticipation pi^ji(.|s_t) of i, and the action a_j it took (xi_N evaluates pi^ij at
a_j): 2|A| + 1 floats. Never rewards, values or parameters. `comm_floats_per_agent` / `comm_bytes_per_agent` count
them (float32: 4 bytes each), summed since the start of training, per agent.

Our choices where the paper is silent or ambiguous (each a config key or documented here):
- The ratio's old policy is the rollout's (PPO's K epochs on one batch, Table 1's "Update iteration K = 3"), so the
  clip of eq. 16 acts; Algorithm 1's `pi_old <- pi` inside the K loop would make every ratio 1 at each iteration's
  start. The exchanged distributions are the current ones at each iteration's start (Algorithm 1 shares once per
  iteration: K exchanges per update).
- pi^ij sees agent i's own observation o_i (what i knows of the state; AS 3 assumes full observability) and has no
  action mask (i does not see j's); pi^ii sees o_i as in IPPO.
- Neighbourhoods: the task's `extras["neighbours"]` `[B, N, N]` at every step (AS 4.3 leaves N_i to the task;
  Cooperative Predation's change per step); a task without one: every other agent (Definition 1's full anticipated
  joint policy). `protocol: one_random` (AS 5.3 scalability (1)): at each update every agent picks one other agent
  uniformly at random and the two exchange (the symmetric closure), in place of the task's graph.
  `communicate_every: k` (AS 5.3 (2)): agents exchange on every k-th update only; in the gaps the last two terms of
  eq. 16 and xi_N are dropped, so no anticipation is updated and each agent runs independent PPO.
- Advantages are standardized per agent (batch-wide statistics would mix the agents' private rewards); kappa_i is
  taken on the advantages eq. 16 uses, which makes eq. 16 invariant to their scale.
- Critic and actor gradients are norm-clipped per network as in IPPO on private rewards (`ippo_private`), the
  reference this method is compared with.
"""

from __future__ import annotations

import torch
from pydantic import Field

from algorithms.blocks.gae import rollout_gae
from algorithms.blocks.lr_schedule import LinearAnnealing
from algorithms.blocks.on_policy_collection import Rollout, RolloutCollector
from algorithms.blocks.on_policy_contract import OnPolicyContract
from algorithms.blocks.parts import Named
from algorithms.blocks.policy import Policy, PolicyStep
from algorithms.blocks.protocol import (
    BYTES_PER_FLOAT,
    CommunicatingConfig,
    Protocol,
    standardize_per_agent,
    task_graph,
)
from algorithms.blocks.rollout import UPDATE_FIELDS, RolloutStorage, minibatch_indices
from algorithms.blocks.value_critic import ValueCritic
from environments.base import BatchedEnv, EnvSpec, TimeStep


class ASConfig(CommunicatingConfig):
    rho: float = Field(0.1, ge=0.0, description="penalty weight of eq. 16 (rho_j = rho'_j = rho, AS 4.3)")


def anticipation_objective(own_log: torch.Tensor, antic_log: torch.Tensor, own_old: torch.Tensor,
                           antic_old: torch.Tensor, actions: torch.Tensor, advantages: torch.Tensor,
                           msg_own: torch.Tensor, msg_antic: torch.Tensor, graph: torch.Tensor,
                           kappa: torch.Tensor, rho: float, clip_eps: float) -> tuple[torch.Tensor, dict]:
    """Eq. 16 per sample and agent, `[S, N]` (maximized), batched over samples S, agents i and neighbours j.

    own_log `[S, N, A]`: log pi^ii(.|o_i); antic_log `[S, N, N, A]`: log pi^ij(.|o_i) at [s, i, j] (the diagonal is
    unused); own_old `[S, N]`, antic_old `[S, N, N]`: the rollout policies' log-probabilities of the actions taken
    (a_i, resp. a_j); actions `[S, N]`; advantages `[S, N]`; the messages as received: msg_own `[S, N, A]` = log
    pi^jj(.|o_j) at [s, j], msg_antic `[S, N, N, A]` = log pi^ji(.|o_j) at [s, j, i]; graph `[S, N, N]` bool, j in
    N_i at [s, i, j]; kappa `[N]`.
    """
    n = own_log.shape[1]
    links = (graph & ~torch.eye(n, dtype=torch.bool, device=graph.device)).to(own_log.dtype)  # [S, i, j]
    own_taken = own_log.gather(-1, actions.unsqueeze(-1)).squeeze(-1)  # log pi^ii(a_i)
    others = actions.unsqueeze(1).expand(-1, n, -1).unsqueeze(-1)  # a_j at [s, i, j]
    antic_taken = antic_log.gather(-1, others).squeeze(-1)  # log pi^ij(a_j)
    ratio = torch.exp(own_taken - own_old)  # xi_i (eq. 13)
    ratio_n = torch.exp((links * (antic_taken - antic_old)).sum(-1))  # xi_N_i (eq. 13), 1 without neighbours
    adv = advantages
    surrogate = torch.minimum(ratio * ratio_n * adv, ratio.clamp(1 - clip_eps, 1 + clip_eps) * ratio_n * adv)
    # Discrepancy terms (eq. 16) and their sets (eq. 14), judged on the current distributions.
    received_own = msg_own.unsqueeze(1)  # pi^jj at [s, (i), j]
    received_antic = msg_antic.transpose(1, 2)  # pi^ji at [s, i, j]
    gap_ij = (antic_log.exp() - received_own.exp()).pow(2).sum(-1)  # ||pi^ij - pi^jj||^2
    gap_ii = (own_log.exp().unsqueeze(2) - received_antic.exp()).pow(2).sum(-1)  # ||pi^ii - pi^ji||^2
    with torch.no_grad():
        a_col = adv.unsqueeze(-1)
        recv_own_taken = received_own.expand(-1, n, -1, -1).gather(-1, others).squeeze(-1)  # log pi^jj(a_j)
        recv_antic_taken = received_antic.gather(-1, actions.view(*actions.shape, 1, 1).expand(-1, -1, n, 1)
                                                 ).squeeze(-1)  # log pi^ji(a_i)
        in_xij = (torch.exp(antic_taken - recv_own_taken) * a_col >= a_col).to(own_log.dtype)
        in_xii = (torch.exp(own_taken.unsqueeze(-1) - recv_antic_taken) * a_col >= a_col).to(own_log.dtype)
    penalty = kappa * rho * (links * (in_xij * gap_ij + in_xii * gap_ii)).sum(-1)
    stats = {"ratio_n_mean": ratio_n.mean().item(), "penalty": penalty.mean().item()}
    return surrogate - penalty, stats


class AnticipationSharing(OnPolicyContract):
    Config = ASConfig
    config: ASConfig

    def __init__(self, spec: EnvSpec, config: ASConfig, device: torch.device):
        super().__init__(spec, config, device)
        if not spec.discrete:
            raise ValueError("AS compares discrete action distributions (eq. 16's squared L2 over actions)")
        if config.recurrent:
            raise ValueError("AS's policies are feed-forward (A.3 Table 2): recurrent must be false")
        n = self.n = spec.n_agents
        self.actor = Policy(spec, config, n, spec.obs_dim, device)  # pi^ii(a_i | o_i), one network per agent
        # pi^ij(a_j | o_i): one network per ordered pair (N^2, as AS 6 says; the diagonal rows are never read).
        self.anticipation = Policy(spec, config, n * n, spec.obs_dim, device, ids=False)
        self.critic = ValueCritic(config, spec.obs_dim, n, n, device)  # V_i(o_i) on agent i's reward (eq. 18)
        self.collector = RolloutCollector(
            config.rollout_length, False, act=self.collect_step, critic=self.critic,
            critic_input=lambda obs, state, step: obs, actor_memory=self.initial_memory(config.n_envs),
            rewards=lambda reward: reward)  # each agent's private reward, nothing else
        self.schedule = LinearAnnealing(config.lr_annealing)
        self.protocol = Protocol(config, device)
        anticipation = Named(anticipation=self.anticipation.net, anticipation_optimizer=self.anticipation.optimizer)
        self.extra_parts = (anticipation, self.protocol)
        self._graphs: list[torch.Tensor] = []

    # --- acting and collection --------------------------------------------------------------------
    def policy_step(self, timestep: TimeStep, memory: torch.Tensor, deterministic: bool = False) -> PolicyStep:
        return self.actor.step(timestep.obs, timestep.avail_actions, memory, timestep.done, deterministic)

    def collect_step(self, timestep: TimeStep, memory: torch.Tensor) -> PolicyStep:
        """Acting during collection also notes who neighbours whom at this step (the task's graph)."""
        self._graphs.append(task_graph(timestep, self.device))
        return self.policy_step(timestep, memory)

    def collect(self, env: BatchedEnv, timestep: TimeStep) -> Rollout:
        self._graphs = []
        rollout = self.collector.collect(env, timestep)
        rollout.storage.fields["neighbours"] = torch.stack(self._graphs)  # [T, B, N, N]
        return rollout

    # --- Algorithm 1's update -------------------------------------------------------------------
    def distributions(self, obs: torch.Tensor, avail: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """log pi^ii(.|o_i) `[S, N, A]` and log pi^ij(.|o_i) `[S, N, N, A]` for flat samples `obs [S, N, D]`."""
        n, samples = self.n, obs.shape[0]
        own = self.actor.net.head.params(self.actor.net.torso.mlp(obs), avail)
        pairs = obs.unsqueeze(2).expand(-1, -1, n, -1).reshape(samples, n * n, -1)  # row (i, j) sees o_i
        antic = self.anticipation.net.head.params(self.anticipation.net.torso.mlp(pairs), None)
        return own, antic.view(samples, n, n, -1)

    def update(self, storage: RolloutStorage) -> dict[str, float]:
        cfg, n = self.config, self.n
        advantages, returns = rollout_gae(storage, cfg.gamma, cfg.gae_lambda)  # eq. 17, own reward and V_i
        if cfg.normalize_advantages:
            advantages = standardize_per_agent(advantages)
        storage.fields["advantages"], storage.fields["returns"] = advantages, returns
        batch = storage.sequences(UPDATE_FIELDS + ["neighbours"], 1)  # [1, T*B, ...]
        flat = {k: v[0] for k, v in batch.items()}
        graph = self.protocol.communication_graph(storage["neighbours"]).reshape(-1, n, n)  # [S, N, N]
        communicating = bool(graph.any())
        kappa = flat["advantages"].abs().mean(0)  # kappa_i = mean |A_i| (4.3)
        avail = flat.get("avail")
        with torch.no_grad():
            own0, antic0 = self.distributions(flat["actor_in"], avail)  # the rollout's anticipations
            others = flat["actions"].unsqueeze(1).expand(-1, n, -1).unsqueeze(-1)
            antic_old = antic0.gather(-1, others).squeeze(-1)  # log pi^ij_old(a_j)
            off = ~torch.eye(n, dtype=torch.bool, device=self.device)
            mse = (antic0.exp() - own0.exp().unsqueeze(1)).pow(2).mean(-1)[:, off].mean().item()  # Fig. 7
        self.schedule.apply((self.actor.optimizer, cfg.lr_actor), (self.anticipation.optimizer, cfg.lr_actor),
                            (self.critic.optimizer, cfg.lr_critic))
        losses = self.critic.update(batch, cfg)  # eq. 18: V_i on its own returns
        totals, count, exchanges = {"policy_loss": 0.0, "entropy": 0.0, "penalty": 0.0, "ratio_n_mean": 0.0}, 0, 0
        samples = flat["actions"].shape[0]
        for _ in range(cfg.ppo_epochs):  # Algorithm 1: "for iteration = 1 to K"
            if communicating:  # "Share action distributions ... Share anticipated action distributions"
                with torch.no_grad():
                    msg_own, msg_antic = self.distributions(flat["actor_in"], avail)
                exchanges += 1
            for idx in minibatch_indices(samples, cfg.num_minibatches, self.device):
                own, antic = self.distributions(flat["actor_in"][idx], None if avail is None else avail[idx])
                if communicating:
                    objective, stats = anticipation_objective(
                        own, antic, flat["log_probs"][idx], antic_old[idx], flat["actions"][idx],
                        flat["advantages"][idx], msg_own[idx], msg_antic[idx], graph[idx], kappa, cfg.rho,
                        cfg.clip_eps)
                else:  # a gap (communicate_every): eq. 16 without xi_N and the discrepancy terms = PPO-Clip
                    objective, stats = anticipation_objective(
                        own, antic.detach(), flat["log_probs"][idx], antic_old[idx], flat["actions"][idx],
                        flat["advantages"][idx], own.detach(), antic.detach(), torch.zeros_like(graph[idx]), kappa,
                        cfg.rho, cfg.clip_eps)
                entropy = self.actor.net.head.entropy(own).mean()
                loss = -objective.mean()
                self.actor.optimizer.zero_grad()
                self.anticipation.optimizer.zero_grad()
                (loss - cfg.entropy_coef * entropy).backward()
                torch.nn.utils.clip_grad_norm_(self.actor.net.parameters(), cfg.max_grad_norm)
                self.actor.optimizer.step()
                if communicating:  # in a gap no anticipation is updated (AS 5.3)
                    torch.nn.utils.clip_grad_norm_(self.anticipation.net.parameters(), cfg.max_grad_norm)
                    self.anticipation.optimizer.step()
                totals["policy_loss"] += loss.item()
                totals["entropy"] += entropy.item()
                totals["penalty"] += stats["penalty"]
                totals["ratio_n_mean"] += stats["ratio_n_mean"]
                count += 1
        # What each agent sent: per exchange, 2|A| + 1 floats per step and neighbour it serves (j serves i when
        # j in N_i), averaged over agents.
        sent = exchanges * graph.sum().item() * (2 * self.spec.n_actions + 1) / n
        self.protocol.floats_sent += sent
        self.protocol.updates += 1
        self.schedule.advance(self.steps_per_iteration)
        losses.update({k: v / count for k, v in totals.items()})
        losses.update({"anticipation_mse": mse, "comm_floats_per_agent_update": sent,
                       "comm_floats_per_agent": self.protocol.floats_sent,
                       "comm_bytes_per_agent": self.protocol.floats_sent * BYTES_PER_FLOAT})
        return losses
