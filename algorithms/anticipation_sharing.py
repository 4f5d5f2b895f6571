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

Seed batches (docs/architecture.md, "Seed batches"): built with `n_seeds` K, every part holds K seeds, tensors are
`[K, S, N, ...]` (eq. 16 is written on the trailing dimensions), the statistics (advantage standardization, kappa_i)
are per seed and agent, losses per seed (`seed_mean`), gradients clipped per seed, minibatches and `one_random`'s
picks drawn from each seed's streams, and the anticipations' optimizer (`protocol.ExchangeAdam`) steps only the
seeds whose agents exchanged in the update, as each alone would.
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
from algorithms.blocks.ppo_loss import clip_grad_norm_per_seed
from algorithms.blocks.protocol import (
    BYTES_PER_FLOAT,
    CommunicatingConfig,
    ExchangeAdam,
    Protocol,
    per_seed_agent_rows,
    standardize_per_agent,
    task_graph,
)
from algorithms.blocks.rollout import UPDATE_FIELDS, RolloutStorage, minibatches, seed_mean
from algorithms.blocks.value_critic import ValueCritic
from environments.base import BatchedEnv, EnvSpec, TimeStep


class ASConfig(CommunicatingConfig):
    rho: float = Field(0.1, ge=0.0, description="penalty weight of eq. 16 (rho_j = rho'_j = rho, AS 4.3)")


def taken_by_others(actions: torch.Tensor) -> torch.Tensor:
    """`[..., N, N, 1]`: a_j at [..., i, j] (what agent i's anticipation of agent j is evaluated at)."""
    n = actions.shape[-1]
    return actions.unsqueeze(-2).expand(*actions.shape[:-1], n, n).unsqueeze(-1)


def anticipation_objective(own_log: torch.Tensor, antic_log: torch.Tensor, own_old: torch.Tensor,
                           antic_old: torch.Tensor, actions: torch.Tensor, advantages: torch.Tensor,
                           msg_own: torch.Tensor, msg_antic: torch.Tensor, graph: torch.Tensor,
                           kappa: torch.Tensor, rho: float, clip_eps: float) -> tuple[torch.Tensor, dict]:
    """Eq. 16 per sample and agent, `[..., S, N]` (maximized), batched over samples S, agents i and neighbours j
    (and any leading dimensions, a seed batch's seeds: every operation is on the trailing ones).

    own_log `[..., S, N, A]`: log pi^ii(.|o_i); antic_log `[..., S, N, N, A]`: log pi^ij(.|o_i) at [s, i, j] (the
    diagonal is unused); own_old `[..., S, N]`, antic_old `[..., S, N, N]`: the rollout policies' log-probabilities
    of the actions taken (a_i, resp. a_j); actions `[..., S, N]`; advantages `[..., S, N]`; the messages as received:
    msg_own `[..., S, N, A]` = log pi^jj(.|o_j) at [s, j], msg_antic `[..., S, N, N, A]` = log pi^ji(.|o_j) at
    [s, j, i]; graph `[..., S, N, N]` bool, j in N_i at [s, i, j]; kappa broadcasting against `[..., S, N]` (`[N]`,
    or `[K, 1, N]` per seed). The statistics returned are per sample: xi_N `[..., S, N]` and the penalty.
    """
    n = own_log.shape[-2]
    links = (graph & ~torch.eye(n, dtype=torch.bool, device=graph.device)).to(own_log.dtype)  # [.., S, i, j]
    own_taken = own_log.gather(-1, actions.unsqueeze(-1)).squeeze(-1)  # log pi^ii(a_i)
    others = taken_by_others(actions)  # a_j at [.., s, i, j]
    antic_taken = antic_log.gather(-1, others).squeeze(-1)  # log pi^ij(a_j)
    ratio = torch.exp(own_taken - own_old)  # xi_i (eq. 13)
    ratio_n = torch.exp((links * (antic_taken - antic_old)).sum(-1))  # xi_N_i (eq. 13), 1 without neighbours
    adv = advantages
    surrogate = torch.minimum(ratio * ratio_n * adv, ratio.clamp(1 - clip_eps, 1 + clip_eps) * ratio_n * adv)
    # Discrepancy terms (eq. 16) and their sets (eq. 14), judged on the current distributions.
    received_own = msg_own.unsqueeze(-3)  # pi^jj at [.., s, (i), j]
    received_antic = msg_antic.transpose(-3, -2)  # pi^ji at [.., s, i, j]
    gap_ij = (antic_log.exp() - received_own.exp()).pow(2).sum(-1)  # ||pi^ij - pi^jj||^2
    gap_ii = (own_log.exp().unsqueeze(-2) - received_antic.exp()).pow(2).sum(-1)  # ||pi^ii - pi^ji||^2
    with torch.no_grad():
        a_col = adv.unsqueeze(-1)
        recv_own_taken = received_own.expand_as(antic_log).gather(-1, others).squeeze(-1)  # log pi^jj(a_j)
        recv_antic_taken = received_antic.gather(-1, actions.unsqueeze(-1).unsqueeze(-1).expand(
            *actions.shape, n, 1)).squeeze(-1)  # log pi^ji(a_i)
        in_xij = (torch.exp(antic_taken - recv_own_taken) * a_col >= a_col).to(own_log.dtype)
        in_xii = (torch.exp(own_taken.unsqueeze(-1) - recv_antic_taken) * a_col >= a_col).to(own_log.dtype)
    penalty = kappa * rho * (links * (in_xij * gap_ij + in_xii * gap_ii)).sum(-1)
    return surrogate - penalty, {"ratio_n": ratio_n.detach(), "penalty": penalty.detach()}


class AnticipationSharing(OnPolicyContract):
    Config = ASConfig
    config: ASConfig

    def __init__(self, spec: EnvSpec, config: ASConfig, device: torch.device, n_seeds: int = 1):
        # K seeds at once (docs/architecture.md, "Seed batches"); one seed is the batch of one
        super().__init__(spec, config, device, n_seeds)
        if not spec.discrete:
            raise ValueError("AS compares discrete action distributions (eq. 16's squared L2 over actions)")
        if config.recurrent:
            raise ValueError("AS's policies are feed-forward (A.3 Table 2): recurrent must be false")
        n = self.n = spec.n_agents
        # pi^ii(a_i | o_i), one network per agent; its streams draw the actions and the actors' minibatches
        self.actor = Policy(spec, config, n, spec.obs_dim, device, n_seeds=n_seeds)
        # pi^ij(a_j | o_i): one network per ordered pair (N^2, as AS 6 says; the diagonal rows are never read).
        self.anticipation = Policy(spec, config, n * n, spec.obs_dim, device, ids=False, n_seeds=n_seeds)
        # stepped only for the seeds that exchanged (in a gap of communicate_every, or with nobody to talk to, AS
        # 5.3: no anticipation is updated)
        self.anticipation_optimizer = ExchangeAdam(self.anticipation.net.parameters(), n_seeds, lr=config.lr_actor,
                                                   eps=1e-5)
        self.critic = ValueCritic(config, spec.obs_dim, n, n, device, n_seeds)  # V_i(o_i) on i's reward (eq. 18)
        self.collector = RolloutCollector(
            config.rollout_length, False, act=self.collect_step, critic=self.critic,
            critic_input=lambda obs, state, step: obs, actor_memory=self.initial_memory(config.n_envs),
            rewards=lambda reward: reward, n_seeds=n_seeds)  # each agent's private reward, nothing else
        self.schedule = LinearAnnealing(config.lr_annealing)
        self.protocol = Protocol(config, device, n_seeds)
        anticipation = Named(anticipation=self.anticipation.net, anticipation_optimizer=self.anticipation_optimizer)
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
        rollout.storage.fields["neighbours"] = torch.stack(self._graphs)  # [T, K, B, N, N]
        return rollout

    # --- Algorithm 1's update -------------------------------------------------------------------
    def distributions(self, obs: torch.Tensor, avail: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """log pi^ii(.|o_i) `[K, S, N, A]` and log pi^ij(.|o_i) `[K, S, N, N, A]` for samples `obs [K, S, N, D]`."""
        n = self.n
        own = self.actor.net.head.params(self.actor.net.torso.mlp(obs), avail)
        pairs = obs.unsqueeze(-2).expand(*obs.shape[:-1], n, obs.shape[-1]).flatten(-3, -2)  # row (i, j) sees o_i
        antic = self.anticipation.net.head.params(self.anticipation.net.torso.mlp(pairs), None)
        return own, antic.unflatten(-2, (n, n))

    def update(self, storage: RolloutStorage) -> dict[str, float | list[float]]:
        cfg, n, seeds = self.config, self.n, self.n_seeds
        advantages, returns = rollout_gae(storage, cfg.gamma, cfg.gae_lambda)  # eq. 17, own reward and V_i
        if cfg.normalize_advantages:
            advantages = standardize_per_agent(advantages, seeds)  # each seed's and agent's own samples
        storage.fields["advantages"], storage.fields["returns"] = advantages, returns
        storage.fields["graph"] = self.protocol.communication_graph(storage["neighbours"])  # [T, K, B, N, N]
        batch = storage.sequences(UPDATE_FIELDS + ["graph"], 1, seeded=True)  # [1, K, T*B, ...]
        flat = {k: v[0] for k, v in batch.items()}  # [K, S, ...]
        links_per_seed = flat["graph"].flatten(1).sum(1).tolist()  # who exchanged, per seed
        communicating = [links > 0 for links in links_per_seed]
        kappa = per_seed_agent_rows(flat["advantages"].abs(), seeds).mean(-1).unsqueeze(-2)  # mean |A_i| (4.3)
        avail = flat.get("avail")
        with torch.no_grad():
            own0, antic0 = self.distributions(flat["actor_in"], avail)  # the rollout's anticipations
            antic_old = antic0.gather(-1, taken_by_others(flat["actions"])).squeeze(-1)  # log pi^ij_old(a_j)
            off = ~torch.eye(n, dtype=torch.bool, device=self.device)
            gaps = (antic0.exp() - own0.exp().unsqueeze(-3)).pow(2).mean(-1)[..., off]  # [K, S, N(N-1)]
            mse = gaps.reshape(seeds, -1).mean(1).tolist()  # Fig. 7, per seed
        self.schedule.apply((self.actor.optimizer, cfg.lr_actor), (self.anticipation_optimizer, cfg.lr_actor),
                            (self.critic.optimizer, cfg.lr_critic))
        losses = self.critic.update(batch, cfg)  # eq. 18: V_i on its own returns
        names = ("policy_loss", "entropy", "penalty", "ratio_n_mean")
        totals, count, exchanging = dict.fromkeys(names, 0.0), 0, any(communicating)
        actor_batch = {k: batch[k] for k in ("actor_in", "avail", "actions", "log_probs", "advantages", "starts",
                                             "graph") if k in batch}
        actor_batch["antic_old"] = antic_old.unsqueeze(0)
        for _ in range(cfg.ppo_epochs):  # Algorithm 1: "for iteration = 1 to K"
            if exchanging:  # "Share action distributions ... Share anticipated action distributions"
                with torch.no_grad():
                    msg_own, msg_antic = self.distributions(flat["actor_in"], avail)
                actor_batch.update(msg_own=msg_own.unsqueeze(0), msg_antic=msg_antic.unsqueeze(0))
            # one partition of each seed's samples per iteration, from its actor's stream
            for mb in minibatches(actor_batch, 1, cfg.num_minibatches, self.actor.streams):
                mb = {k: v[0] for k, v in mb.items()}  # [K, S / num_minibatches, ...]
                own, antic = self.distributions(mb["actor_in"], mb.get("avail"))
                # A seed that exchanged nothing has no link: xi_N = 1 and no discrepancy term, so eq. 16 is PPO-Clip
                # there (a gap of AS 5.3), whatever messages it is given (its own, where nobody exchanged).
                objective, stats = anticipation_objective(
                    own, antic, mb["log_probs"], mb["antic_old"], mb["actions"], mb["advantages"],
                    mb["msg_own"] if exchanging else own.detach(), mb["msg_antic"] if exchanging else antic.detach(),
                    mb["graph"], kappa, cfg.rho, cfg.clip_eps)
                entropy = seed_mean(self.actor.net.head.entropy(own), seeds)
                loss = -seed_mean(objective, seeds)  # each seed's own eq. 16, [K]
                self.actor.optimizer.zero_grad()
                self.anticipation_optimizer.zero_grad()
                (loss - cfg.entropy_coef * entropy).sum().backward()  # seed k's weights: seed k's gradient
                clip_grad_norm_per_seed(self.actor.net.parameters(), cfg.max_grad_norm, seeds)
                self.actor.optimizer.step()
                if exchanging:  # in a gap no anticipation is updated (AS 5.3); a silent seed's neither
                    clip_grad_norm_per_seed(self.anticipation.net.parameters(), cfg.max_grad_norm, seeds)
                    self.anticipation_optimizer.step(communicating)
                for name, value in (("policy_loss", loss), ("entropy", entropy),
                                    ("penalty", seed_mean(stats["penalty"], seeds)),
                                    ("ratio_n_mean", seed_mean(stats["ratio_n"], seeds))):
                    totals[name] += value.detach()
                count += 1
        # What each agent sent: per exchange, 2|A| + 1 floats per step and neighbour it serves (j serves i when
        # j in N_i), averaged over agents; per seed.
        sent = [(cfg.ppo_epochs if talked else 0) * links * (2 * self.spec.n_actions + 1) / n
                for talked, links in zip(communicating, links_per_seed, strict=True)]
        self.protocol.record(sent)
        self.schedule.advance(self.steps_per_iteration)
        losses.update({k: (v / count).tolist() for k, v in totals.items()})
        losses.update({"anticipation_mse": mse, "comm_floats_per_agent_update": sent,
                       "comm_floats_per_agent": list(self.protocol.floats_sent),
                       "comm_bytes_per_agent": [f * BYTES_PER_FLOAT for f in self.protocol.floats_sent]})
        return losses
