"""The learners' policy as a part: the actor network batched over learners (`networks.Actor`), its Adam, and how
it acts at one step and is read back on stored minibatches.

Shapes: `L` learners act per step (the N agents; one for Centralized PPO over joint actions). Acting sees
`[B, L, D]`; updates see chunks `[C, S, L, D]` (C = chunk length for recurrent torsos, 1 otherwise), see
`RolloutStorage.sequences`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from algorithms.blocks.adam import Adam, AgentwiseAdam
from algorithms.blocks.networks import Actor, CategoricalHead, GaussianHead, Torso, agent_rows, with_agent_ids
from algorithms.blocks.on_policy_config import OnPolicyConfig
from algorithms.blocks.seed_streams import SeedStreams
from environments.base import EnvSpec


@dataclass
class PolicyStep:
    """What acting at one step produced, for every copy and learner."""

    actor_in: torch.Tensor  # [B, L, D] the actor's input for each learner's own decision (stored for the update)
    actions: torch.Tensor  # [B, L] or [B, L, action_dim]
    log_probs: torch.Tensor  # [B, L]
    memory: torch.Tensor  # [B, L, H] the actor's next memory
    avail: torch.Tensor | None  # [B, L, n_actions] the learners' available actions (None: all)


def first_memory(mb: dict[str, torch.Tensor], name: str, width: int, memory_size: int) -> torch.Tensor:
    """The memory `[(K,) S, width, H]` at each chunk's first step (empty for feed-forward networks)."""
    if name in mb:
        return mb[name][0]
    return torch.zeros(*mb["starts"].shape[1:], width, memory_size, device=mb["starts"].device)


class Policy:
    """pi(a_l | x_l) for every learner l: one network for all (`share_parameters`, with one-hot learner ids
    appended unless `ids=False`) or one per learner; Adam, or `AgentwiseAdam` for methods that update the
    learners one at a time (`agentwise`).

    With `n_seeds` K (a seed batch, docs/architecture.md) the network holds K seeds' weights, tensors carry a seed
    dimension (`[K, B, L, D]` acting, `[C, K, S, L, D]` in updates) and actions are sampled from the policy's own
    random streams, one per seed (`streams`); without it (None) as before, from the global RNG."""

    def __init__(self, spec: EnvSpec, config: OnPolicyConfig, n_learners: int, in_features: int,
                 device: torch.device, ids: bool | None = None, n_actions: int | None = None, agentwise: bool = False,
                 n_seeds: int | None = None):
        self.n_learners, self.n_seeds = n_learners, n_seeds
        self.ids = (config.share_parameters and config.agent_id_input and n_learners > 1) if ids is None else ids
        groups = 1 if config.share_parameters else n_learners
        rnn = config.rnn_hidden_size if config.recurrent else None
        torso = Torso(groups, in_features + (n_learners if self.ids else 0), config.hidden_sizes, config.activation,
                      rnn, n_seeds)
        if spec.discrete:
            head = CategoricalHead(groups, torso.out_features, n_actions or spec.n_actions, n_seeds)
        else:
            head = GaussianHead(groups, torso.out_features, spec.action_dim, config.log_std_init,
                                config.state_dependent_std, n_seeds)
        self.net = Actor(torso, head).to(device)
        if agentwise:
            self.optimizer = AgentwiseAdam(self.net.parameters(), n_learners, lr=config.lr_actor, eps=1e-5)
        else:
            self.optimizer = Adam(self.net.parameters(), lr=config.lr_actor, eps=1e-5)
        self.device = device
        self.streams = None if n_seeds is None else SeedStreams(n_seeds, device)  # sampling, actor minibatches

    def initial_memory(self, n_envs: int) -> torch.Tensor:
        """Zeros `[(K,) n_envs, L, H]` (`n_envs` copies per seed)."""
        seeds = () if self.n_seeds is None else (self.n_seeds,)
        return torch.zeros(*seeds, n_envs, self.n_learners, self.net.memory_size, device=self.device)

    def step(self, features: torch.Tensor, avail: torch.Tensor | None, memory: torch.Tensor, starts: torch.Tensor,
             deterministic: bool) -> PolicyStep:
        """Every learner acts on `features [B, L, D]` (memory cleared where `starts`)."""
        actor_in = with_agent_ids(features) if self.ids else features
        hidden, memory = self.net.torso(actor_in, memory, starts)
        params = self.net.head.params(hidden, avail)
        noise = None if deterministic or self.streams is None else self.net.head.noise(params, self.streams)
        actions = self.net.head.sample(params, deterministic, noise)
        return PolicyStep(actor_in, actions, self.net.head.log_prob(params, actions), memory, avail)

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
