"""Device-agnostic hot paths (issue 18: "the CPU tests must already prove the code is device-agnostic"): after a
method and its task are built, its training iterations and acting create no tensor without naming its device.

On a CPU-only machine a stray CPU tensor cannot fail a run, so this test watches how tensors are made: every torch
factory call (zeros, arange, tensor, rand, randperm, ...) from coopbench's own code must pass `device=` (the run's
device, another tensor's, or "cpu" on purpose: replay bookkeeping, Adam's step counts, the driver's statistics).
`zeros_like`, `new_zeros` and friends inherit their device and are always fine. Construction is not watched: modules
are built on the CPU and moved, as torch does; what is created per step is what would land on the wrong device.

The exact tabular planners (`acpi`, `bn_tabular_*`) are left out: they plan on the game's model in float64 on the
CPU by design and move only the actions they draw to the run's device.
"""

import sys

import pytest
import torch
from torch.overrides import TorchFunctionMode

from algorithms.registry import ALGORITHMS, capabilities
from coopbench.config import resolve
from coopbench.run import build_seeds
from tests.conftest import REPO

FACTORIES = {torch.zeros, torch.ones, torch.empty, torch.full, torch.arange, torch.tensor, torch.eye, torch.rand,
             torch.randn, torch.randint, torch.randperm, torch.linspace, torch.as_tensor, torch.from_numpy}
OURS = ("algorithms/", "environments/", "coopbench/")
PLANNERS = {"acpi"} | {name for name in ALGORITHMS.names() if name.startswith("bn_tabular")}
EXCHANGE, PREDATION, CORA_2, CORA_5 = ("gridworld/as-exchange", "gridworld/as-coop-predation-2",
                                      "differential/cora-2agent", "differential/cora-5agent")
TASKS = {  # a small native task each method runs on; the rest run on the matrix game
    **dict.fromkeys(["as", "as_every_k", "as_rho0", "vs", "vps", "ps"], EXCHANGE),
    **dict.fromkeys(["as_one_neighbour", "ippo_private"], PREDATION),
    **dict.fromkeys(["acpo", "acpo_no_chain"], "matrix/acpo-3x3"),
    **dict.fromkeys(["hatrpo", "optimistic_mappo", "cora_no_std", "hatd3", "maddpg"], CORA_2),
    **dict.fromkeys(["ac_td3", "cora_m10", "cora_m15", "cora_m20", "cora_m25"], CORA_5),
    **dict.fromkeys(["vast", "vast_heuristic", *(f"bn_mappo_{t}" for t in ("full", "product", "random", "heuristic"))],
                    "coordination/bn-cg-5"),
    **dict.fromkeys(["qmix", "lan", "iql_no_fog"], "gridworld/lan-checkers"),
    **{f"bn_maddpg_{t}": "particle/bn-predator-prey-15" for t in ("full", "product", "random", "heuristic")},
}
SMALL = {"warmup_steps": 20, "n_envs": 2, "rollout_length": 8, "batch_size": 16, "train_interval": 5, "buffer_size": 64,
         "batch_episodes": 2, "buffer_episodes": 4, "ppo_epochs": 1, "hidden_sizes": [16], "rnn_hidden_size": 16}


class FactoriesWithoutDevice(TorchFunctionMode):
    """Records (factory, file:line) of every factory call from coopbench's code that names no device."""

    def __init__(self, root: str):
        super().__init__()
        self.root, self.calls = root, set()

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in FACTORIES and kwargs.get("device") is None and not (
                func is torch.as_tensor and args and isinstance(args[0], torch.Tensor)):  # a tensor keeps its device
            frame = sys._getframe(1)
            while frame is not None:
                path = frame.f_code.co_filename
                if path.startswith(self.root) and path[len(self.root):].startswith(OURS):
                    self.calls.add(f"{func.__name__} at {path[len(self.root):]}:{frame.f_lineno}")
                    break
                frame = frame.f_back
        return func(*args, **kwargs)


@pytest.mark.parametrize("algo", sorted(set(ALGORITHMS.names()) - PLANNERS))
def test_training_and_acting_create_no_tensor_without_a_device(algo):
    fields = ALGORITHMS.get(algo).load().Config.model_fields
    config = resolve(algo, TASKS.get(algo, "matrix/cora-mtg"),
                     {"algo": {k: v for k, v in SMALL.items() if k in fields}, "run": {"total_env_steps": 100_000}})
    seeds = [0, 1] if capabilities(algo).seed_batch else [0]
    env, algorithm = build_seeds(config, seeds, torch.device("cpu"))
    timestep = env.reset()
    timestep = algorithm.train_iteration(env, timestep).timestep  # first-call caches and lazy state, unwatched
    watch = FactoriesWithoutDevice(f"{REPO}/")
    with watch:
        for _ in range(3):
            timestep = algorithm.train_iteration(env, timestep).timestep
        memory = algorithm.initial_memory(env.n_envs // len(seeds))
        algorithm.act(timestep, memory, True)
    assert not watch.calls, f"{algo}: tensors made without a device on the hot path: {sorted(watch.calls)}"
