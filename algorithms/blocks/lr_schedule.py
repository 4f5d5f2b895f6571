"""Linear learning-rate annealing over the run's budget (MAPPO's `use_linear_lr_decay`), and the env-step count
it runs on (kept in checkpoints)."""

from __future__ import annotations

from algorithms.blocks.adam import Adam


class LinearAnnealing:
    def __init__(self, enabled: bool):
        self.enabled = enabled
        self.env_steps_done = 0
        self.total_env_steps: int | None = None

    def set_budget(self, total_env_steps: int) -> None:
        self.total_env_steps = total_env_steps

    def apply(self, *schedule: tuple[Adam, float]) -> None:
        """Set each optimizer's rate to its base rate times the fraction of the budget left (no-op if disabled)."""
        if not self.enabled:
            return
        if self.total_env_steps is None:
            raise RuntimeError("lr_annealing needs the run's budget: call set_budget(total_env_steps) first")
        remaining = max(0.0, 1.0 - self.env_steps_done / self.total_env_steps)
        for optimizer, base_lr in schedule:
            optimizer.lr = base_lr * remaining

    def advance(self, env_steps: int) -> None:
        self.env_steps_done += env_steps

    def state_dict(self) -> dict:
        return {"env_steps_done": self.env_steps_done}

    def load_state_dict(self, state: dict) -> None:
        self.env_steps_done = state["env_steps_done"]
