"""Decentralized agent Q-networks: Q_a(tau_a, .) for every agent at once.

PyMARL's RNNAgent (Rashid et al. 2018, sec. 6; LAN App. B: "a 64 units feed forward network and a 64
units GRU", ReLU, weights shared between agents with the agent id as input): a `networks.Torso` (MLP
then GRU, batched over agents) and one linear output per action. The input of agent a at step t is
[o_a^t, onehot(u_a^{t-1}), onehot(a)] (PyMARL's obs_last_action and obs_agent_id); the last action of an
episode's first step is all zeros.

The same network is LAN's local advantage network A_a(tau_a, .) (LAN eq. 1), and `unroll` returns the
GRU's hidden states h_a^t, which LAN's centralized value and QTRAN's joint networks read.

Seed batches (docs/architecture.md): built with `n_seeds` K (the value-based learner always passes it; K = 1 is a
solo run, on the same path), the layers hold K seeds' weights and the leading dim of every input (copies when
acting, episodes when unrolling) is seed-major, K equal blocks. Its fast paths (shared parameters, a GRU) are the
same arithmetic for K = 1 and every seed of K > 1: acting `_seeded_step` (the layers' baddbmm over the seeds,
written out), unrolling `_seeded_gru_unroll` (`torch.gru` once per seed). Without `n_seeds` (None) the network
is unbatched and keeps its fast paths (`_shared_step`, `torch.gru` in `_shared_gru_unroll`), which round
differently from the layer-by-layer path (tests/test_q_agents_paths.py compares them).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from algorithms.blocks.networks import AgentLinear, Torso, lane_aligned
from environments.base import EnvSpec


def gru_update(input_gates: torch.Tensor, hidden_gates: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
    """`networks.AgentGRUCell`'s equations from its gates' pre-activations `[..., 3H]`, the sigmoids and the tanh
    through `lane_aligned` (a seed batch's seeds round as their solo runs do, whatever H)."""
    i_r, i_z, i_n = input_gates.chunk(3, dim=-1)
    h_r, h_z, h_n = hidden_gates.chunk(3, dim=-1)
    reset, update = lane_aligned(torch.sigmoid, i_r + h_r), lane_aligned(torch.sigmoid, i_z + h_z)
    candidate = lane_aligned(torch.tanh, i_n + reset * h_n)
    return candidate + update * (memory - candidate)  # (1 - z) * n + z * h


class AgentQNetwork(nn.Module):
    def __init__(self, spec: EnvSpec, hidden_sizes: list[int], activation: str, recurrent: bool,
                 rnn_hidden_size: int, share_parameters: bool, agent_id_input: bool, last_action_input: bool,
                 obs_dim: int | None = None, n_seeds: int | None = None):
        super().__init__()
        self.n_agents, self.n_actions, self.n_seeds = spec.n_agents, spec.n_actions, n_seeds
        self.agent_id_input, self.last_action_input = agent_id_input, last_action_input
        obs_dim = spec.obs_dim if obs_dim is None else obs_dim  # IQL without fog reads the state instead
        in_features = obs_dim + (spec.n_actions if last_action_input else 0) + (spec.n_agents if agent_id_input else 0)
        groups = 1 if share_parameters else spec.n_agents
        self.torso = Torso(groups, in_features, hidden_sizes, activation, rnn_hidden_size if recurrent else None,
                           n_seeds)
        self.head = AgentLinear(groups, self.torso.out_features, spec.n_actions, gain=1.0, n_seeds=n_seeds)

    @property
    def memory_size(self) -> int:
        return self.torso.memory_size

    @property
    def hidden_size(self) -> int:
        """Width of the features `unroll` returns (the GRU's hidden state when recurrent)."""
        return self.torso.out_features

    def inputs(self, obs: torch.Tensor, last_actions: torch.Tensor | None) -> torch.Tensor:
        """`obs [..., N, D]`, `last_actions [..., N, A]` (one-hot, zeros at an episode's start) -> network input
        `[o_a, onehot(u_a), onehot(a)]`, in one cat (the values `with_agent_ids` of the first two would give)."""
        parts = [obs]
        if self.last_action_input:
            parts.append(last_actions)
        if self.agent_id_input:
            parts.append(self._agent_ids(obs))
        return torch.cat(parts, dim=-1) if len(parts) > 1 else obs

    def _agent_ids(self, obs: torch.Tensor) -> torch.Tensor:
        """One-hot agent ids `[..., N, N]` shaped like `obs`'s leading dims; the acting step's (one shape, every
        step) is kept rather than rebuilt."""
        key = (obs.shape[:-1], obs.dtype, obs.device)
        cached = getattr(self, "_ids_cache", None)
        if cached is not None and cached[0] == key:
            return cached[1]
        ids = torch.eye(self.n_agents, dtype=obs.dtype, device=obs.device).expand(*obs.shape[:-1], self.n_agents)
        self._ids_cache = (key, ids)
        return ids

    def step(self, obs: torch.Tensor, last_actions: torch.Tensor, memory: torch.Tensor,
             starts: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """One step for every copy and agent: `q [B, N, A]` and the next memory `[B, N, H]`. `starts [B]` clears the
        memory of copies whose episode starts here; None: no copy's does (the common step: nothing to clear).

        `Torso.forward` then the head, the parts called directly so that a step without starts skips the clear (a
        multiplication by one: the same values). With one shared weight set (LAN App. B) the layers' matmuls are
        written out on parameters looked up once (`_step_params`): the same ops and values, bitwise (tests check
        it), without nn.Module's per-call and attribute-lookup overhead; acting runs once per env step."""
        x = self.inputs(obs, last_actions)
        if starts is not None:
            keep = (~starts).to(memory.dtype)
            memory = memory * keep.view(*keep.shape, *([1] * (memory.dim() - keep.dim())))
        if self.n_seeds is not None and self._seeded_fast():
            return self._seeded_step(x, memory)
        if self.n_seeds is not None:  # [K*B, N, ...] seen as [K, B, N, ...]: each seed's copies meet its weights
            q, memory = self._layers_step(x.unflatten(0, (self.n_seeds, -1)), memory.unflatten(0, (self.n_seeds, -1)))
            return q.flatten(0, 1), memory.flatten(0, 1)
        if self._shared_weights():
            return self._shared_step(x, memory)
        return self._layers_step(x, memory)

    def _layers_step(self, x: torch.Tensor, memory: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.torso.mlp(x)
        gru = self.torso.gru
        if gru is None:
            return self.head(features), memory
        if self.n_seeds is None:
            memory = gru(features, memory)
        else:  # AgentGRUCell's equations, each seed's rows rounded as alone (`gru_update`)
            memory = gru_update(gru.input_gates(features), gru.hidden_gates(memory), memory)
        return self.head(memory), memory

    def _seeded_fast(self) -> bool:
        """A seed batch whose layers are each one matrix per seed (shared parameters), a GRU, and no layer with one
        input or one output feature (those take `AgentLinear._seeded`'s other kernels): `_seeded_step` applies."""
        cached = self.__dict__.get("_seeded_fast_cache")
        if cached is None:
            layers = [*self.torso.mlp.layers, self.head] if self.torso.gru is not None else []
            cached = bool(layers) and all(layer.n_groups == 1 and min(layer.weight.shape[1:]) > 1 for layer in layers)
            self.__dict__["_seeded_fast_cache"] = cached
        return cached

    def _seeded_step(self, x: torch.Tensor, memory: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """`_layers_step` of a seed batch with shared parameters, written out: the same kernels on the same shapes
        (each layer one baddbmm over the seeds, `[K, B * N, in] x [K, in, out]`, as `AgentLinear._seeded`; the
        GRU's `gru_update`), hence the same values bitwise, on parameters looked up once (`_step_params`): acting
        runs once per env step and nn.Module's per-call overhead costs more than these small ops."""
        mlp_layers, activation, gru, head = self._step_params()
        k, lead = self.n_seeds, x.shape[:-1]
        h = x.reshape(k, -1, x.shape[-1])
        for weight, bias in mlp_layers:
            h = activation(torch.baddbmm(bias.unsqueeze(1), h, weight))
        hidden = memory.reshape(k, -1, memory.shape[-1])
        hidden = gru_update(torch.baddbmm(gru.input_gates.bias.unsqueeze(1), h, gru.input_gates.weight),
                            torch.baddbmm(gru.hidden_gates.bias.unsqueeze(1), hidden, gru.hidden_gates.weight),
                            hidden)
        q = torch.baddbmm(head[1].unsqueeze(1), hidden, head[0])
        return q.view(*lead, -1), hidden.view(*lead, -1)

    def _shared_weights(self) -> bool:
        """One weight set for every agent, no seed batch, a GRU: the case `_shared_step` and `torch.gru` handle."""
        gru = self.torso.gru
        return (gru is not None and gru.input_gates.weight.shape[0] == 1
                and getattr(gru.input_gates, "n_seeds", None) is None)

    def _shared_step(self, x: torch.Tensor, memory: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mlp_layers, activation, gru_cell, head = self._step_params()
        lead = x.shape[:-1]
        h = x.reshape(-1, x.shape[-1])
        for weight, bias in mlp_layers:
            h = activation(h @ weight[0] + bias[0])
        memory = gru_cell(h, memory.reshape(-1, memory.shape[-1]))
        q = memory @ head[0][0] + head[1][0]
        return q.view(*lead, -1), memory.view(*lead, -1)

    def _step_params(self):
        """The parameters `_shared_step` reads, looked up once (nn.Module attribute lookups cost more than the
        step's small ops). Parameters are updated in place (optimizer, target copies, load_state_dict), so the
        objects stay; `_apply` (`.to()`) and loading with assign=True may replace them and clear this."""
        cached = self.__dict__.get("_step_params_cache")
        if cached is None:
            mlp, gru = self.torso.mlp, self.torso.gru
            cached = ([(layer.weight, layer.bias) for layer in mlp.layers], mlp.activation,
                      gru,
                      (self.head.weight, self.head.bias))
            self.__dict__["_step_params_cache"] = cached
        return cached

    def _apply(self, fn, recurse=True):
        self.__dict__.pop("_step_params_cache", None)
        return super()._apply(fn, recurse)

    def _load_from_state_dict(self, *args, **kwargs):
        self.__dict__.pop("_step_params_cache", None)
        return super()._load_from_state_dict(*args, **kwargs)

    def unroll(self, obs: torch.Tensor, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Whole sampled episodes from their first step, batch-first: `obs [S, L, N, D]`, `actions [S, L, N]`
        (the actions taken; the input at t uses those of t - 1) -> `q [S, L, N, A]`, features `[S, L, N, H]`."""
        last = F.one_hot(actions, self.n_actions).to(obs.dtype)
        last = torch.cat([torch.zeros_like(last[:, :1]), last[:, :-1]], dim=1)
        if self.n_seeds is not None:
            return self._seeded_unroll(self.inputs(obs, last))
        x = self.inputs(obs, last).transpose(0, 1)  # time first for the GRU
        features = self._shared_gru_unroll(x)
        if features is None:
            starts = torch.zeros(x.shape[:2], dtype=torch.bool, device=obs.device)
            starts[0] = True
            memory = torch.zeros(x.shape[1], self.n_agents, self.memory_size, device=obs.device)
            features = self.torso.unroll(x, memory, starts)
        features = features.transpose(0, 1)
        return self.head(features), features

    def _seeded_unroll(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """`unroll` in a seed batch: inputs `x [K * S, L, N, D]` (seed-major episodes, batch-first) -> q and features.

        Every tensor stays seed-first and contiguous, `[K, S, L, N, ...]`, so each seed's block has its solo run's
        shape and strides in every kernel, forward and backward (a time-first layout interleaves the seeds, and the
        weight gradients' matmuls then read each seed's rows with other strides, which rounds differently). The MLP
        is one batched matmul over the seeds; the GRU with one weight set per seed is torch's fused GRU once per seed
        (`_seeded_gru_unroll`); with a weight set per agent, the GRU's input gates of all L steps are one batched
        matmul and the recurrence adds the hidden gates step by step with `AgentGRUCell`'s equations, from a zero
        memory."""
        k, lead = self.n_seeds, x.shape[:2]
        features = self.torso.mlp(x.reshape(k, -1, *x.shape[2:]))  # [K, S * L, N, F]
        gru = self.torso.gru
        if gru is not None and gru.input_gates.n_groups == 1:
            features = self._seeded_gru_unroll(features.view(k, lead[0] // k, lead[1], *features.shape[2:]))
        elif gru is not None:
            input_gates = gru.input_gates(features).view(k, -1, lead[1], *features.shape[2:-1], 3 * self.memory_size)
            memory = input_gates.new_zeros(*input_gates.shape[:2], *input_gates.shape[3:-1], self.memory_size)
            outputs = []
            for i_gates in input_gates.unbind(2):  # unbind: one stack in backward (see networks.Torso.unroll)
                memory = gru_update(i_gates, gru.hidden_gates(memory), memory)
                outputs.append(memory)
            features = torch.stack(outputs, dim=2).view(k, -1, *features.shape[2:-1], self.memory_size)
        return self.head(features).reshape(*lead, *features.shape[2:-1], -1), features.view(*lead, *features.shape[2:])

    def _seeded_gru_unroll(self, features: torch.Tensor) -> torch.Tensor:
        """The GRU over every seed's episodes `features [K, S, L, N, F]` (one weight set per seed) from a zero memory
        -> hidden states `[K, S * L, N, H]`, with torch's fused GRU (`torch.gru`, as `_shared_gru_unroll`).

        Why a loop over the seeds: torch.gru holds one weight set, so it runs once per seed, on that seed's
        episodes with that seed's weights; seed k's call is then exactly its solo run's call (the K = 1 loop), the
        same kernels on the same shapes forward and backward: bitwise alike by construction, whatever K. K fused
        calls cost far less than the Python loop over L time steps they replace (a step is a handful of tiny ops
        whose dispatch costs more than their arithmetic): QMIX's update on gridworld/lan-checkers ~1.6x faster."""
        gru, h = self.torso.gru, self.memory_size
        k, episodes, length, n_agents = features.shape[:4]
        w_in, w_hidden = gru.input_gates.weight, gru.hidden_gates.weight  # [K, in, 3H], [K, H, 3H]
        b_in, b_hidden = gru.input_gates.bias, gru.hidden_gates.bias
        outputs = []
        for seed in range(k):
            x = features[seed].transpose(0, 1).reshape(length, episodes * n_agents, -1)  # time first
            memory = x.new_zeros(1, episodes * n_agents, h)
            # torch's weight layout is [3H, in] (gates r, z, n, as AgentGRUCell's chunks); AgentLinear's is [in, 3H]
            weights = (w_in[seed].t(), w_hidden[seed].t(), b_in[seed], b_hidden[seed])
            output, _ = torch.gru(x, memory, weights, True, 1, 0.0, self.training, False, False)
            outputs.append(output.view(length, episodes, n_agents, h).transpose(0, 1))
        return torch.stack(outputs).view(k, episodes * length, n_agents, h)

    def _shared_gru_unroll(self, x: torch.Tensor) -> torch.Tensor | None:
        """The torso over whole episodes `x [L, S, N, D]` from a zero memory, with torch's own GRU loop
        (`torch.gru`, the same equations as `AgentGRUCell`; its addmm adds the bias inside the matmul, so values equal
        the step-by-step unroll's up to float rounding: bitwise on RWARE tiny's shapes, not on every shape);
        None where it does not apply (no GRU, or one weight set per agent).

        Why: the update unrolls 32 episodes of up to 500 steps, twice (online and target network), and with
        64-unit layers each step is a handful of tiny ops whose dispatch costs more than their arithmetic.
        torch.gru computes the input-to-hidden gates of all L steps in one matmul and runs the recurrent loop
        in C++, with fewer autograd nodes per step: about half the time of the update's unrolls (forward and
        backward). The gradients of the input-gate weights are the same sum over steps taken in one matmul, so
        they differ from the step-by-step ones in float summation order (~1e-6 relative): the same algorithm."""
        if not self._shared_weights():
            return None
        gru = self.torso.gru
        features = self.torso.mlp(x)
        length, episodes = features.shape[:2]
        flat = features.reshape(length, episodes * self.n_agents, features.shape[-1])
        memory = flat.new_zeros(1, flat.shape[1], self.memory_size)
        # torch's weight layout is [3H, in] (gates r, z, n, as AgentGRUCell's chunks); AgentLinear's is [in, 3H]
        weights = (gru.input_gates.weight[0].t(), gru.hidden_gates.weight[0].t(), gru.input_gates.bias[0],
                   gru.hidden_gates.bias[0])
        output, _ = torch.gru(flat, memory, weights, True, 1, 0.0, self.training, False, False)
        return output.view(length, episodes, self.n_agents, self.memory_size)
