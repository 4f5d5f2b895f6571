"""Scripted policies the task tests play (the papers' reference behaviours); batched, read from the task's state.

They were methods of the tasks, used by nothing but these tests (issue 21: test-only code lives with the tests)."""

import torch

from environments import gridworld as gw
from environments.exchange import OPEN


def step_towards(pos: torch.Tensor, goal: torch.Tensor) -> torch.Tensor:
    """The move action (`gw.MOVES` index) that brings `pos` one cell closer to `goal`, rows first; STAY where
    already there."""
    d_row, d_col = (goal - pos).unbind(-1)
    action = torch.full_like(d_row, gw.STAY)
    action = torch.where(d_col > 0, gw.RIGHT, action)
    action = torch.where(d_col < 0, gw.LEFT, action)
    action = torch.where(d_row > 0, gw.DOWN, action)
    return torch.where(d_row < 0, gw.UP, action)


def navigation_greedy(env) -> torch.Tensor:
    """Cooperative Navigation: every agent steps straight towards its own landmark, ignoring the others."""
    return step_towards(env.pos, env.landmarks)


def predation_pursue(env) -> torch.Tensor:
    """Cooperative Predation: everyone moves towards the prey (AS's cooperative behaviour)."""
    return (env.prey.unsqueeze(1) > env.pos).long()


def predation_defect(env) -> torch.Tensor:
    """Cooperative Predation: everyone moves away from the prey (universal defection)."""
    return 1 - predation_pursue(env)


def exchange_cooperative(env) -> torch.Tensor:
    """Exchange (AS 5.3): each agent walks to the nearest closed box that is not its own (lowest index on ties)
    and opens it; with nothing left to open it stays. Totals 3 x (10 - 5) - 9 = 6 per episode."""
    distance = gw.manhattan(env.pos.unsqueeze(2), env.boxes.unsqueeze(1)).float()  # [B, agent, box]
    allowed = env.closed.unsqueeze(1) & ~torch.eye(env.n_agents, dtype=torch.bool)
    distance = distance.masked_fill(~allowed, float("inf"))
    target = distance.argmin(-1)  # [B, agent]
    goal = env.boxes.gather(1, target.unsqueeze(-1).expand(-1, -1, 2))
    action = step_towards(env.pos, goal)
    there = (env.pos == goal).all(-1) & allowed.any(-1)
    action = torch.where(there, torch.full_like(action, OPEN), action)
    return torch.where(allowed.any(-1), action, torch.full_like(action, gw.STAY))


def exchange_selfish(env, generator: torch.Generator | None = None) -> torch.Tensor:
    """Exchange: free riders wander (uniform random moves) and never open a box. Totals 3 x 300 x -0.01 = -9."""
    return torch.randint(0, 5, (env.n_envs, env.n_agents), generator=generator)
