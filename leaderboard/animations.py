"""Stage `animations`: a short GIF of a trained policy for each task of a suite that can draw itself.

One run per task, chosen when the suite is planned (so the DAG knows its input): the lowest seed of the first
method, in name order, of the first comparison that has the task, preferring the papers' experiments to the
suite's own runs. `coopbench render` does the work (`coopbench.render.render_run`); a task whose picture cannot
be drawn here (no OpenGL for VMAS, say) gets its error recorded in `index.json` instead of stopping the site.
"""

from __future__ import annotations

from pathlib import Path

from coopbench.base.errors import CoopbenchError
from coopbench.base.io import write_json

ADAPTERS_THAT_RENDER = ("mpe", "vmas", "mamujoco")  # their libraries draw; the other adapters have no picture
EPISODES, FPS, MAX_FRAMES = 1, 8, 120


def can_render(env: str) -> bool:
    from environments.base import BatchedEnv
    from environments.registry import ENVIRONMENTS

    entry = ENVIRONMENTS.get(env)
    if entry.target.startswith("environments.adapters."):
        return entry.family in ADAPTERS_THAT_RENDER
    return entry.load().render_rgb is not BatchedEnv.render_rgb


def chosen_runs(runs) -> dict[str, object]:
    """task -> the planned run whose policy its animation shows (see the module docstring)."""
    def order(run):
        first = sorted(run.comparisons, key=lambda c: (c.startswith("suite:"), c))[0]
        return (first.startswith("suite:"), first, run.config.algo, run.seed)

    chosen: dict[str, object] = {}
    for run in sorted(runs, key=order):
        if run.config.env not in chosen and can_render(run.config.env):
            chosen[run.config.env] = run
    return chosen


def animation_file(env: str) -> str:
    return env.replace("/", "__") + ".gif"


def make_animations(suite: str, results_dir: Path, out_dir: Path) -> dict:
    """Write <out_dir>/<task>.gif for each chosen run and <out_dir>/index.json (what was drawn, or why not)."""
    from coopbench.config import plan
    from coopbench.render import render_run

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    index = {}
    for env, run in sorted(chosen_runs(plan(suite).runs).items()):
        run_dir = run.config.run_dir(results_dir, run.seed)
        entry = {"run_dir": str(run_dir), "algo": run.config.algo, "seed": run.seed,
                 "comparisons": list(run.comparisons)}
        try:
            report = render_run(run_dir, episodes=EPISODES, out=out_dir / animation_file(env), fps=FPS,
                                max_frames=MAX_FRAMES)
            entry.update(file=animation_file(env), episode_return=report["returns"][0], frames=report["frames"])
        except CoopbenchError as error:  # drawn nowhere here: say why on the task page
            entry["error"] = " ".join(str(error).split())
        index[env] = entry
    write_json(out_dir / "index.json", {"suite": suite, "animations": index})
    return index
