"""A BN actor (BN 6.2.1, App. B.3, Table 2): every agent's action conditioned on its own input and on its
parents' sampled actions in a DAG that may change at every step, pi(a | s) = prod_i pi^i(a^i | o^i, a^{P^i}).

Input layout (BN 6.2.1: "a fixed-length input vector of size N sum_i |A^i|, where the actions of non-parent agents
are zero-padded"): agent i's parent block holds one slot per agent j, j's one-hot action (continuous: the action
vector) where j is a parent of i and zeros elsewhere, optionally followed by the same zero-padded slots of the
parents' observations (App. B.3's "optionally observations"). The stored actor input is [own input, parent block],
so PPO's epochs re-evaluate exactly the conditional each agent sampled from; the parents' actions enter as data,
detached, as BN 6.2.1 prescribes ("parent actions are detached from the computation graph").

Network (BN Table 2): Concat(Base(own input), parent block) -> FC(|A^i|) -> softmax (Coordination Game), or with
`parent_observations` Concat(Base(o^i), Base(Concat(o^{P^i}, a^{P^i}))) -> FC(|A^i|) (Aloha); Base is the torso of
`hidden_sizes` (FC -> act -> FC -> act), optionally followed by a GRU on the own input.

Sampling (one batched pass per topological level, never one per agent): the own-input torso runs once; then for
each level l = 0, 1, ... of the DAGs (algorithms/blocks/dag.py `topological_levels`, per copy) the parent block is
built from the actions drawn so far and the head runs for every agent at once; the agents of level l keep their
draw. A level's agents have all their parents at earlier levels, so each conditions on its parents' actual
actions; masked actions are never drawn (the head masks them, as every policy here).

Seed batches (docs/architecture.md): built with `n_seeds` K, the networks hold K seeds' weights, tensors are
`[K, B, N, ...]` and the random draws come from the policy's streams (one per seed): one noise tensor per step, drawn
before the levels, of which each agent's draw uses its own entries at its own level only. So a seed draws the same
number of numbers whatever the levels of the batch's other seeds (a batch runs max-over-seeds levels; a seed's
agents are all settled after its own, later passes leave them untouched).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from algorithms.blocks.adam import Adam
from algorithms.blocks.dag import topological_levels
from algorithms.blocks.networks import CategoricalHead, GaussianHead, Torso, agent_rows, with_agent_ids
from algorithms.blocks.on_policy_config import OnPolicyConfig
from algorithms.blocks.policy import PolicyStep, first_memory
from algorithms.blocks.seed_streams import SeedStreams
from environments.base import EnvSpec


def parent_block(parents: torch.Tensor, actions: torch.Tensor, obs: torch.Tensor | None) -> torch.Tensor:
    """`[..., N, N * (W + D)]`: for agent i, every agent j's slot (action encoding W, then observation D when `obs`
    is given) where j is a parent of i, zeros elsewhere. `parents [..., N, N]`, `actions [..., N, W]`."""
    slots = actions if obs is None else torch.cat([actions, obs], dim=-1)  # [..., N, W (+ D)]
    mask = parents.to(slots.dtype).unsqueeze(-1)  # [..., N(i), N(j), 1]
    return (mask * slots.unsqueeze(-3)).flatten(-2)


class DagActorNet(nn.Module):
    """Base(own input) and, with `parent_obs_dim`, Base(parent block), concatenated into the policy head."""

    def __init__(self, groups: int, own_features: int, parent_features: int, config: OnPolicyConfig,
                 head_for, parent_torso: bool, n_seeds: int | None = None):
        super().__init__()
        rnn = config.rnn_hidden_size if config.recurrent else None
        self.own_features = own_features
        self.torso = Torso(groups, own_features, config.hidden_sizes, config.activation, rnn, n_seeds)
        self.parent_torso = (Torso(groups, parent_features, config.hidden_sizes, config.activation, n_seeds=n_seeds)
                             if parent_torso else None)
        width = self.parent_torso.out_features if parent_torso else parent_features
        self.head = head_for(self.torso.out_features + width)

    @property
    def memory_size(self) -> int:
        return self.torso.memory_size

    def parent_features(self, block: torch.Tensor, agent: int | torch.Tensor | None = None) -> torch.Tensor:
        return block if self.parent_torso is None else self.parent_torso.mlp(block, agent)

    def params_from(self, own: torch.Tensor, block: torch.Tensor, avail,
                    agent: int | torch.Tensor | None = None) -> torch.Tensor:
        return self.head.params(torch.cat([own, self.parent_features(block, agent)], dim=-1), avail, agent)

    def sequence_params(self, inputs, avail_actions, memory, starts,
                        agent: int | torch.Tensor | None = None) -> torch.Tensor:
        """Distribution parameters over stored sequences `[L, S, (N,) own + parent block]`."""
        own, block = inputs[..., : self.own_features], inputs[..., self.own_features:]
        return self.params_from(self.torso.unroll(own, memory, starts, agent), block, avail_actions, agent)


class DagPolicy:
    """The BN actor as a part with `Policy`'s interface for PPO's update (`net.head`, `net` parameters,
    `optimizer`, `sequence_params`, `initial_memory`, state dict keys): one network shared by the agents (with
    agent ids) or one per agent, as `config.share_parameters` says. With `n_seeds` K (a seed batch) tensors carry a
    seed dimension, `[K, B, N, ...]`, and the draws come from `streams` (one per seed); None: the unbatched layout,
    sampling from the global RNG."""

    def __init__(self, spec: EnvSpec, config: OnPolicyConfig, in_features: int, device: torch.device,
                 parent_observations: bool, n_seeds: int | None = None):
        n = self.n_learners = spec.n_agents
        self.discrete = spec.discrete
        self.action_width = spec.n_actions if spec.discrete else spec.action_dim
        self.parent_observations = parent_observations
        self.ids = config.share_parameters and config.agent_id_input and n > 1
        groups = 1 if config.share_parameters else n
        parent_features = n * (self.action_width + (spec.obs_dim if parent_observations else 0))
        if spec.discrete:
            def head_for(width):
                return CategoricalHead(groups, width, spec.n_actions, n_seeds)
        else:
            def head_for(width):
                return GaussianHead(groups, width, spec.action_dim, config.log_std_init, config.state_dependent_std,
                                    n_seeds)
        self.net = DagActorNet(groups, in_features + (n if self.ids else 0), parent_features, config, head_for,
                               parent_observations, n_seeds).to(device)
        self.optimizer = Adam(self.net.parameters(), lr=config.lr_actor, eps=1e-5)
        self.device = device
        # ppo_update reads these as Policy's: sampling and the actor's minibatches draw from the streams
        self.n_seeds = n_seeds
        self.streams = None if n_seeds is None else SeedStreams(n_seeds, device)

    def initial_memory(self, n_envs: int) -> torch.Tensor:
        """Zeros `[(K,) n_envs, N, H]` (`n_envs` copies per seed)."""
        seeds = () if self.n_seeds is None else (self.n_seeds,)
        return torch.zeros(*seeds, n_envs, self.n_learners, self.net.memory_size, device=self.device)

    def encode(self, actions: torch.Tensor) -> torch.Tensor:
        """`[(K,) B, N, W]`: one-hot discrete actions, continuous ones as they are."""
        return F.one_hot(actions, self.action_width).float() if self.discrete else actions

    def step(self, features: torch.Tensor, avail: torch.Tensor | None, memory: torch.Tensor, starts: torch.Tensor,
             parents: torch.Tensor, deterministic: bool, obs: torch.Tensor | None = None) -> PolicyStep:
        """Every agent acts on `features [(K,) B, N, D]` in the DAGs `parents [(K,) B, N, N]`, level by level;
        `obs` are the observations the parent block carries when `parent_observations`."""
        net, head = self.net, self.net.head
        own = with_agent_ids(features) if self.ids else features
        hidden, memory = net.torso(own, memory, starts)  # the own-input torso: once per step
        parent_obs = obs if self.parent_observations else None
        levels = topological_levels(parents)  # [(K,) B, N]
        actions = log_probs = noise = None
        for level in range(int(levels.max()) + 1):  # one batched pass per topological level
            drawn = (torch.zeros(*levels.shape, *([] if self.discrete else [self.action_width]),
                                 dtype=torch.long if self.discrete else features.dtype, device=features.device)
                     if actions is None else actions)
            params = net.params_from(hidden, parent_block(parents, self.encode(drawn), parent_obs), avail)
            if noise is None and not deterministic and self.streams is not None:  # once per step, see the module
                noise = head.noise(params, self.streams)
            sampled = head.sample(params, deterministic, noise)
            here = levels == level
            chosen = here if self.discrete else here.unsqueeze(-1)
            actions = torch.where(chosen, sampled, drawn)
            logp = head.log_prob(params, sampled)
            log_probs = logp if log_probs is None else torch.where(here, logp, log_probs)
        actor_in = torch.cat([own, parent_block(parents, self.encode(actions), parent_obs)], dim=-1)
        return PolicyStep(actor_in, actions, log_probs, memory, avail)

    def sequence_params(self, mb: dict[str, torch.Tensor], agent: int | torch.Tensor | None = None) -> torch.Tensor:
        """The distribution parameters on a minibatch of stored chunks (one learner's with `agent=i`; in a seed
        batch `agent` may be `[K]`, learner `agent[k]` of seed k)."""
        memory = first_memory(mb, "actor_memory", self.n_learners, self.net.memory_size)
        inputs, avail = mb["actor_in"], mb.get("avail")
        if agent is not None:  # learners are the second-to-last dimension of inputs, memories and masks
            inputs, memory = agent_rows(inputs, agent), agent_rows(memory, agent)
            avail = None if avail is None else agent_rows(avail, agent)
        return self.net.sequence_params(inputs, avail, memory, mb["starts"], agent)

    def state_dict(self) -> dict:
        state = {"policy": self.net.state_dict(), "actor_optimizer": self.optimizer.state_dict()}
        if self.streams is not None:
            state["actor_streams"] = self.streams.state_dict()
        return state

    def load_state_dict(self, state: dict) -> None:
        self.net.load_state_dict(state["policy"])
        self.optimizer.load_state_dict(state["actor_optimizer"])
        if self.streams is not None:
            self.streams.load_state_dict(state["actor_streams"])


def deterministic_dag_actions(actor, own: torch.Tensor, parents: torch.Tensor, action_dim: int,
                              obs: torch.Tensor | None = None) -> torch.Tensor:
    """a^i = mu_i(Concat(own^i, a^{P^i})) drawn level by level over the DAGs `parents [..., N, N]` (BN Table 2's
    Predator-Prey actor, with MADDPG): one batched pass of `actor` per topological level, never one per agent;
    `own [..., N, D]`; `obs` adds the parents' observations to the parent block. Returns `[..., N, action_dim]`."""
    levels = topological_levels(parents)
    actions = torch.zeros(*own.shape[:-1], action_dim, dtype=own.dtype, device=own.device)
    for level in range(int(levels.max()) + 1):
        out = actor(torch.cat([own, parent_block(parents, actions, obs)], dim=-1))
        actions = torch.where((levels == level).unsqueeze(-1), out, actions)
    return actions
