"""Adam for the learners: torch's own Adam kernel without `torch.optim.Optimizer` around it.

Why not `torch.optim.Adam` itself: its constructor, `step`, `zero_grad` and `state_dict` import
`torch._dynamo` on first use (bookkeeping for `torch.compile`, which coopbench never uses). That import
takes 1.5 s, about a third of a small run job, and `make leaderboard` runs about 90 of them. The update
here is torch's functional `torch.optim.adam.adam`, the kernel `torch.optim.Adam.step` calls, with the
same arguments, so parameters and moments are bitwise those of `torch.optim.Adam`, and `state_dict()`
has its format (tests/test_adam.py checks both).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
from torch.optim.adam import adam


class Adam:
    """`torch.optim.Adam(params, lr, betas, eps, weight_decay)` with one parameter group, no amsgrad."""

    def __init__(self, params: Iterable[torch.nn.Parameter], lr: float, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0, fused: Sequence[bool] | None = None):
        self.params = list(params)
        # fused[i]: step parameter i with torch's fused kernel (`torch.optim.Adam(fused=True)`, one kernel per tensor
        # instead of ~6; it rounds unlike the default one, so it is opt-in per parameter; the off-policy family's)
        self.fused = list(fused) if fused is not None else [False] * len(self.params)
        if not self.params:
            raise ValueError("Adam got an empty parameter list")
        self.lr, self.eps, self.weight_decay = float(lr), eps, weight_decay
        self.betas = (float(betas[0]), float(betas[1]))
        # per parameter: {"step", "exp_avg", "exp_avg_sq"}, created at its first update (as torch does)
        self.state: list[dict[str, torch.Tensor] | None] = [None] * len(self.params)

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    def _state(self, i: int) -> dict[str, torch.Tensor]:
        if self.state[i] is None:
            p = self.params[i]
            step_dtype = torch.float64 if torch.get_default_dtype() == torch.float64 else torch.float32
            self.state[i] = {"step": torch.tensor(0.0, dtype=step_dtype, device="cpu"),  # on the CPU, as torch keeps it
                             "exp_avg": torch.zeros_like(p, memory_format=torch.preserve_format),
                             "exp_avg_sq": torch.zeros_like(p, memory_format=torch.preserve_format)}
        return self.state[i]

    @torch.no_grad()
    def step(self) -> None:
        for fused in (False, True):
            params, grads, exp_avgs, exp_avg_sqs, steps = [], [], [], [], []
            for i, p in enumerate(self.params):
                if p.grad is None or self.fused[i] != fused:
                    continue
                state = self._state(i)
                params.append(p)
                grads.append(p.grad)
                exp_avgs.append(state["exp_avg"])
                exp_avg_sqs.append(state["exp_avg_sq"])
                steps.append(state["step"])
            if not params:
                continue
            adam(params, grads, exp_avgs, exp_avg_sqs, [], steps, amsgrad=False,
                 has_complex=any(torch.is_complex(p) for p in params), beta1=self.betas[0], beta2=self.betas[1],
                 lr=self.lr, weight_decay=self.weight_decay, eps=self.eps, maximize=False, foreach=None,
                 capturable=False, differentiable=False, fused=fused or None, grad_scale=None, found_inf=None,
                 decoupled_weight_decay=False)

    def state_dict(self) -> dict:
        """`torch.optim.Adam.state_dict()`'s format (tensors and plain containers)."""
        group = {"lr": self.lr, "betas": self.betas, "eps": self.eps, "weight_decay": self.weight_decay,
                 "amsgrad": False, "maximize": False, "foreach": None, "capturable": False, "differentiable": False,
                 "fused": None, "decoupled_weight_decay": False, "params": list(range(len(self.params)))}
        return {"state": {i: dict(s) for i, s in enumerate(self.state) if s is not None}, "param_groups": [group]}

    def load_state_dict(self, state_dict: dict) -> None:
        (group,) = state_dict["param_groups"]
        if len(group["params"]) != len(self.params):
            raise ValueError(f"optimizer state holds {len(group['params'])} parameters, this model {len(self.params)}")
        self.lr, self.eps, self.weight_decay = group["lr"], group["eps"], group["weight_decay"]
        self.betas = tuple(group["betas"])
        self.state = [None] * len(self.params)
        for i, s in state_dict["state"].items():
            p = self.params[int(i)]
            self.state[int(i)] = {"step": s["step"].detach().clone().cpu(),
                                  "exp_avg": s["exp_avg"].detach().to(p.device, p.dtype, copy=True),
                                  "exp_avg_sq": s["exp_avg_sq"].detach().to(p.device, p.dtype, copy=True)}


class AgentwiseAdam(Adam):
    """Adam that updates one agent's parameters at a time (HAPPO and HATRPO update agents in turn).

    Every parameter's first dimension indexes agents (the parameter groups of `networks.AgentLinear`), in a seed
    batch K seed-major blocks of them, `[K*N, ...]`. Each row keeps its own step count, so its moments and bias
    corrections are exactly those of a separate `torch.optim.Adam` over that agent's parameters alone; the other
    rows stay untouched (a whole-tensor Adam step would move them through their momentum even with zero gradients).
    """

    def __init__(self, params: Iterable[torch.nn.Parameter], n_agents: int, lr: float,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8, weight_decay: float = 0.0):
        super().__init__(params, lr, betas, eps, weight_decay)
        blocks = {p.shape[0] // n_agents if p.dim() and p.shape[0] % n_agents == 0 else 0 for p in self.params}
        if len(blocks) != 1 or 0 in blocks:
            raise ValueError(f"AgentwiseAdam needs parameters whose first dimension is the {n_agents} agents (K "
                             f"seed-major blocks of them in a seed batch); got {[tuple(p.shape) for p in self.params]}")
        self.n_agents, self.n_seeds = n_agents, blocks.pop()

    def _state(self, i: int) -> dict[str, torch.Tensor]:
        if self.state[i] is None:
            super()._state(i)
            step_dtype = self.state[i]["step"].dtype
            self.state[i]["step"] = torch.zeros(self.params[i].shape[0], dtype=step_dtype, device="cpu")
        return self.state[i]

    @torch.no_grad()
    def step(self, agent: int | torch.Tensor) -> None:  # type: ignore[override]
        """Step agent `agent` of every seed (an int), or agent `agent[k]` of seed k (a `[K]` tensor: HAPPO's
        per-seed agent orders): rows `k * N + agent[k]` of every parameter."""
        rows = torch.arange(self.n_seeds, device="cpu") * self.n_agents + torch.as_tensor(agent).cpu()  # bookkeeping
        params, grads, exp_avgs, exp_avg_sqs, steps, targets = [], [], [], [], [], []
        for i, p in enumerate(self.params):
            if p.grad is None:
                continue
            state = self._state(i)
            counts = state["step"][rows]
            # torch's kernel takes one step count per tensor: the rows are gathered by count (one group in HAPPO,
            # where every agent steps equally often), stepped as one tensor and written back.
            for count in counts.unique().tolist():
                selected = rows[counts == count].to(p.device)
                params.append(p.index_select(0, selected))
                grads.append(p.grad.index_select(0, selected))
                exp_avgs.append(state["exp_avg"].index_select(0, selected))
                exp_avg_sqs.append(state["exp_avg_sq"].index_select(0, selected))
                steps.append(torch.tensor(count, dtype=state["step"].dtype, device="cpu"))
                targets.append((p, state, selected))
        if not params:
            return
        adam(params, grads, exp_avgs, exp_avg_sqs, [], steps, amsgrad=False, has_complex=False,
             beta1=self.betas[0], beta2=self.betas[1], lr=self.lr, weight_decay=self.weight_decay, eps=self.eps,
             maximize=False, foreach=False, capturable=False, differentiable=False, fused=None, grad_scale=None,
             found_inf=None, decoupled_weight_decay=False)
        for (p, state, selected), param, exp_avg, exp_avg_sq, count in zip(
                targets, params, exp_avgs, exp_avg_sqs, steps, strict=True):
            p.index_copy_(0, selected, param)
            state["exp_avg"].index_copy_(0, selected, exp_avg)
            state["exp_avg_sq"].index_copy_(0, selected, exp_avg_sq)
            state["step"][selected.cpu()] = count
