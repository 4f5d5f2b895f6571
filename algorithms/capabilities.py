"""What an algorithm can run on, declared up front (algorithms/registry.py, one per registration), and the check
the plan and `coopbench run` make before anything is built: `incompatibility(algo, env) -> reason | None`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from environments.registry import EnvTraits, env_traits, traits_of_spec

if TYPE_CHECKING:
    from environments.base import EnvSpec


@dataclass(frozen=True)
class Capabilities:
    discrete: bool = True  # runs on discrete-action tasks
    continuous: bool = True  # runs on continuous-action tasks
    needs_model: bool = False  # plans on the exact model, env.model()
    needs_private_rewards: bool = False  # learns from each agent's own reward: meaningless on team-reward tasks
    # The hyperparameter bounding the joint action space, n_actions ** n_agents (centralized_ppo, acpi).
    joint_action_limit: str | None = None
    # The hyperparameter bounding the full coalition set, 2^N - 2, unless `coalition_samples` draws fewer (CORA).
    coalition_limit: str | None = None
    # Decomposes one team advantage: refuses `learning_reward: own` on private-reward tasks (CORA).
    team_advantage: bool = False
    recurrent: bool = True  # supports `recurrent: true` (GRU torsos)
    # Trains K seeds in one process (`n_seeds` in its constructor, docs/architecture.md "Seed batches"); without it
    # `coopbench run --seeds` and grouped workflow jobs run the seeds one after another.
    seed_batch: bool = False
    # (hparam, value, where): with hparam == value the method builds subteams from the agents' positions (BN Algorithm
    # 1), which the task must expose at every step ("step") or in its observations/state, also on stored steps
    # ("views") (EnvTraits.positions).
    needs_positions: tuple[str, str, str] | None = None
    # The hyperparameter listing subteam sizes, which must sum to the number of agents (bn_tabular_subteam*).
    subteam_sizes: str | None = None


def incompatibility(algo: str, env: str | EnvSpec | EnvTraits, hparams: dict[str, Any] | None = None,
                    env_params: dict[str, Any] | None = None) -> str | None:
    """Why `algo` cannot run on `env` (a registered name with `env_params`, a built task's spec, or its traits), in
    one line naming both; None if it can. `hparams`: the resolved hyperparameters (default: the class's)."""
    from algorithms.registry import ALGORITHMS, capabilities

    caps = capabilities(algo)
    if isinstance(env, str):
        traits = env_traits(env, env_params)
    elif isinstance(env, EnvTraits):
        traits = env
    else:
        traits = traits_of_spec(env)
    if hparams is None:
        hparams = ALGORITHMS.get(algo).load().Config().model_dump()
    name = traits.name
    if traits.discrete and not caps.discrete:
        return f"{algo} cannot run on {name}: {algo} needs continuous actions and {name} has discrete ones"
    if not traits.discrete and not caps.continuous:
        return f"{algo} cannot run on {name}: {algo} needs discrete actions and {name} has continuous ones"
    if caps.needs_model and not traits.has_model:
        return (f"{algo} cannot run on {name}: {algo} plans on the exact model of the game (env.model()) and "
                f"{name} has none (the matrix/* and coordination/* tasks have one)")
    if caps.needs_private_rewards and traits.reward_mode != "private":
        return (f"{algo} cannot run on {name}: {algo} learns from each agent's own reward and {name} gives every "
                "agent the team reward (run ippo with share_parameters false instead)")
    if caps.team_advantage and traits.reward_mode == "private" and hparams.get("learning_reward") == "own":
        return (f"{algo} cannot run on {name} with learning_reward=own: {algo} decomposes one team advantage and "
                f"{name} gives private rewards (set algo.learning_reward=team)")
    if hparams.get("recurrent") and not caps.recurrent:
        return f"{algo} cannot run on {name} with recurrent=true: {algo} has no recurrent policy"
    if caps.needs_positions and hparams.get(caps.needs_positions[0]) == caps.needs_positions[1]:
        key, value, where = caps.needs_positions
        if traits.positions not in (("views",) if where == "views" else ("views", "step")):
            stored = " on stored steps (in its observations or state)" if where == "views" else ""
            tasks = "coordination/*, particle/*, rware/*" + ("" if where == "views" else ", aloha/*")
            return (f"{algo} cannot run on {name} with {key}={value}: BN Algorithm 1 needs the agents' positions"
                    f"{stored} and {name} exposes none (tasks that do: {tasks})")
    if caps.subteam_sizes and traits.n_agents and hparams.get(caps.subteam_sizes) is not None:
        sizes = list(hparams[caps.subteam_sizes])
        if sum(sizes) != traits.n_agents:
            return (f"{algo} cannot run on {name}: its subteam sizes {sizes} sum to {sum(sizes)}, not {name}'s "
                    f"{traits.n_agents} agents (set algo.{caps.subteam_sizes} to sizes that sum to {traits.n_agents})")
    if caps.joint_action_limit and traits.discrete and traits.n_agents and traits.n_actions:
        joint, limit = traits.n_actions ** traits.n_agents, hparams[caps.joint_action_limit]
        if joint > limit:
            return (f"{algo} cannot run on {name}: {name} has {traits.n_actions}^{traits.n_agents} = {joint} joint "
                    f"actions, above {algo}'s {caps.joint_action_limit}={limit} (raise algo.{caps.joint_action_limit} "
                    "if memory allows, or choose a task with fewer agents or actions)")
    if caps.coalition_limit and traits.n_agents:
        coalitions, samples = 2 ** traits.n_agents - 2, hparams.get("coalition_samples")
        limit = hparams[caps.coalition_limit]
        if (samples is None or samples >= coalitions) and coalitions > limit:
            return (f"{algo} cannot run on {name}: {name}'s {traits.n_agents} agents make 2^{traits.n_agents} - 2 = "
                    f"{coalitions} coalitions per sample, above {algo}'s {caps.coalition_limit}={limit} (sample "
                    "coalitions with algo.coalition_samples, CORA eq. 19)")
    return None
