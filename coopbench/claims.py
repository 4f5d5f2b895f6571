"""The claims registry: `claims/<paper>.yaml`, one file per paper, validated on load.

A paper file holds three things (docs/architecture.md, "Scores, comparisons, statistics" and "Claims and verdicts"):

- `settings`: the paper's "common parameters for all algorithms", applied to every method of its
  experiments (after config/algorithms/<algo>.yaml, before the experiment's own settings, the
  suite and --set). Two papers' settings for one task and method are two configs, two hashes.
- `experiments`: the comparisons the paper runs (a figure or table): environments x methods x seeds
  x budget, with the source of each value. `paper-<name>` suites and the `papers` suite plan from them.
- `claims`: one row per published number, ordering or outcome, each judged by a rule
  (leaderboard/verdicts.py) on the runs of its experiment, or on an analysis output
  (leaderboard/analyses.py) where the paper's number is not a training curve.

A method or environment that coopbench does not have yet may be named (it must be in
PLANNED_ALGORITHMS / exist as a config file): its claims are judged `not run` with that reason.
"""

from __future__ import annotations

import fnmatch
import re
from functools import cache
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from coopbench.base.errors import CoopbenchError
from coopbench.base.registry import Registry
from coopbench.base.yaml_text import parse_yaml

ID_PATTERN = r"^[a-z0-9][a-z0-9._-]*$"
PAPERS = ("acpo", "as", "bn", "cora", "lan")

# Methods the papers use that coopbench does not implement yet, and the issue that brings them. A claim
# naming one is judged `not run` with this reason; a name in neither this table nor the registry is a typo.
PLANNED_ALGORITHMS: dict[str, str] = {}

# Analyses: results a paper reports that are no training curve (an exact planner's converged policy, a QP's
# approximation error, a runtime ratio). Each is one DAG job writing results/analyses/<name>.json
# ({"values": {key: number or list}, ...}); claims with `analysis:` read a key of it.
ANALYSES = Registry("analysis")
ANALYSES.register("acpo-table1", "analysis", "leaderboard.analyses:acpo_table1",
                  "ACPO Table 1: the exact planners (ACPI, simultaneous update, iterative BR, HASPI) on the 3x3 game")
ANALYSES.register("cora-fig9", "analysis", "leaderboard.analyses:cora_fig9",
                  "CORA Fig. 9: core QP on m sampled coalitions, n = 7: violation ratio, objective gap, time")
ANALYSES.register("acpo-fig5", "analysis", "leaderboard.analyses:acpo_fig5",
                  "ACPO Fig. 5 / App. J: training time of ACPO, HAPPO, HATRPO relative to MAPPO, 2 to 12 agents")
ANALYSES.register("lan-parameter-counts", "analysis", "leaderboard.analyses:lan_parameter_counts",
                  "LAN Tables 1 and 3: parameters of LAN's centralized value and QMIX's / QPLEX's mixers per SMAC map")
ANALYSES.register("bn-equilibrium-gap", "analysis", "leaderboard.analyses:bn_equilibrium_gap",
                  "BN Fig. 4 / Fig. 1: equilibrium gap and suboptimality of the tabular BN runs, 50 seeds, exact")
ANALYSES.register("bn-decomposition-errors", "analysis", "leaderboard.analyses:bn_decomposition_errors",
                  "BN Table 1: decomposition errors of per-subteam MLP fits of the Coordination Game's P and r")
# Exact planners that exist only inside an analysis (no DAG algorithm): claims on that analysis may name them.
ANALYSIS_METHODS: dict[str, str] = {
    "simultaneous_pi": "acpo-table1", "iterative_br": "acpo-table1", "haspi": "acpo-table1",
    "bn_decomposition": "bn-decomposition-errors",
}
PLANNED_ANALYSES: dict[str, str] = {}


def claims_dir() -> Path:
    from coopbench.config import config_dir

    return config_dir().parent / "claims"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SettingsRule(_Strict):
    """Values a paper (or one of its experiments) states for every method it runs on some tasks."""

    envs: list[str] = Field(default_factory=lambda: ["*"], min_length=1, description="glob patterns")
    algos: list[str] = Field(default_factory=lambda: ["*"], min_length=1, description="glob patterns")
    source: str = Field(min_length=1, description="where the values come from (table, section)")
    hparams: dict[str, Any] = Field(default_factory=dict)
    env: dict[str, Any] = Field(default_factory=dict, description="task parameters")

    def matches(self, env: str, algo: str) -> bool:
        return (any(fnmatch.fnmatch(env, p) for p in self.envs)
                and any(fnmatch.fnmatch(algo, p) for p in self.algos))


class Budget(_Strict):
    total_env_steps: int = Field(gt=0)
    eval_interval: int = Field(gt=0)
    eval_episodes: int = Field(gt=0)
    source: str = Field(min_length=1, description="the paper's words, or 'our choice: ...' and why")


class Experiment(_Strict):
    """One comparison of the paper: every method on every task, `seeds` seeds, at `run`'s budget."""

    id: str = Field(pattern=ID_PATTERN)
    source: str = Field(min_length=1, description="the figure or table and what it shows")
    envs: list[str] = Field(min_length=1)
    algos: list[str] = Field(min_length=1)
    seeds: int = Field(gt=0, description="seeds 0 .. seeds-1")
    seeds_source: str = Field(min_length=1)
    run: Budget
    settings: list[SettingsRule] = Field(default_factory=list, description="this experiment only")


class PublishedNumber(_Strict):
    """A printed value: ours is compared by its 95% CI against value +- error."""

    kind: Literal["number"]
    value: float
    error: float | None = Field(None, ge=0)
    error_kind: Literal["se", "std", "ci95", "iqr", "none"] = "none"
    # `median_iqr`: the paper prints the median with its quartiles; error_low/high are those quartiles.
    error_low: float | None = None
    error_high: float | None = None


class PublishedOrdering(_Strict):
    """`better` outperforms `worse` on the claim's tasks (rliable probability of improvement > 0.5)."""

    kind: Literal["ordering"]
    better: str
    worse: str


class PublishedTie(_Strict):
    """The paper says two methods perform about the same: the CI of P(first > second) lies within
    0.5 +- margin (reproduced); excludes 0.5 (not reproduced); otherwise inconclusive."""

    kind: Literal["tie"]
    between: list[str] = Field(min_length=2, max_length=2)
    margin: float = Field(0.25, gt=0, lt=0.5)


class PublishedOutcome(_Strict):
    """An exact result: every seed's value equals `value` within `tolerance` (a converged policy,
    a count), or for an analysis a list that is `monotone` in its index."""

    kind: Literal["outcome"]
    value: float | None = None
    tolerance: float = Field(1e-6, ge=0)
    monotone: Literal["decreasing", "increasing", "nonincreasing", "nondecreasing"] | None = None
    meaning: str = Field(min_length=1, description="what the value means, e.g. '(C, C): the only action paying 20'")

    @model_validator(mode="after")
    def _one(self):
        if (self.value is None) == (self.monotone is None):
            raise ValueError("an outcome gives exactly one of `value` or `monotone`")
        return self


Published = Annotated[PublishedNumber | PublishedOrdering | PublishedTie | PublishedOutcome,
                      Field(discriminator="kind")]
Metric = Literal["return", "normalized_score", "win_rate", "value"]
Summary = Literal["mean", "median", "iqm"]


class Claim(_Strict):
    id: str = Field(pattern=ID_PATTERN)
    source: str = Field(min_length=1, description="table/figure and the sentence or cell it comes from")
    experiment: str | None = Field(None, description="the experiment whose runs judge it")
    analysis: str | None = Field(None, description="an analysis output that judges it instead of runs")
    key: str | None = Field(None, description="the analysis output's value (for metric `value`)")
    tasks: list[str] = Field(default_factory=list)
    methods: list[str] = Field(min_length=1)
    metric: Metric
    summary: Summary = Field("mean", description="the statistic the paper reports over seeds")
    budget: int | None = Field(None, gt=0, description="env steps; default: the experiment's budget")
    seeds: int | None = Field(None, gt=0, description="default: the experiment's seeds")
    published: Published
    notes: str = ""

    @model_validator(mode="after")
    def _shape(self):
        if (self.experiment is None) == (self.analysis is None):
            raise ValueError("a claim names exactly one of `experiment` or `analysis`")
        if self.analysis is not None and (self.metric != "value" or not self.key):
            raise ValueError("an analysis claim has metric `value` and a `key`")
        if self.experiment is not None and (self.metric == "value" or not self.tasks):
            raise ValueError("a run claim has tasks and a metric among return, normalized_score, win_rate")
        kind = self.published.kind
        if kind == "ordering":
            if sorted(self.methods) != sorted({self.published.better, self.published.worse}):
                raise ValueError("an ordering claim's methods are exactly its `better` and `worse`")
        elif kind == "tie" and sorted(self.methods) != sorted(set(self.published.between)):
            raise ValueError("a tie claim's methods are exactly the two it names in `between`")
        elif kind == "number" and (len(self.methods) != 1 or len(self.tasks) > 1):
            raise ValueError("a number claim has one method and at most one task")
        if kind == "outcome" and self.published.monotone is not None and self.analysis is None:
            raise ValueError("`monotone` outcomes are for analysis outputs")
        return self


class PaperFile(_Strict):
    paper: str
    title: str = Field(min_length=1)
    text: str = Field(min_length=1, description="the paper's file, relative to shared/papers/")
    settings: list[SettingsRule] = Field(default_factory=list)
    experiments: list[Experiment] = Field(default_factory=list)
    claims: list[Claim] = Field(min_length=1)

    @field_validator("paper")
    @classmethod
    def _known(cls, value: str) -> str:
        if value not in PAPERS:
            raise ValueError(f"unknown paper {value!r}; one of {', '.join(PAPERS)}")
        return value

    def experiment(self, experiment_id: str) -> Experiment:
        return next(e for e in self.experiments if e.id == experiment_id)


def _location(err: ValidationError, data: dict) -> str:
    """`claims[3] (id table2-protoss)` style location of the first error, naming the claim id."""
    loc = err.errors()[0]["loc"]
    parts, node = [], data
    for part in loc:
        if isinstance(part, int) and isinstance(node, list) and part < len(node):
            node = node[part]
            ident = node.get("id") if isinstance(node, dict) else None
            parts[-1] = f"{parts[-1]}[{part}]" + (f" (id {ident})" if ident else "")
        else:
            parts.append(str(part))
            node = node.get(part) if isinstance(node, dict) else None
    return ".".join(parts)


def _check_names(paper: PaperFile, path: Path) -> None:
    """Cross-references: experiment ids, env config files, method names, analyses."""
    from algorithms.registry import ALGORITHMS
    from coopbench.config import config_dir

    def fail(where: str, problem: str, fix: str) -> None:
        raise CoopbenchError(f"{path}: {where}: {problem}", fix)

    known_methods = set(ALGORITHMS.names()) | set(PLANNED_ALGORITHMS)
    ids = [e.id for e in paper.experiments]
    if len(ids) != len(set(ids)):
        fail("experiments", f"duplicate experiment ids {sorted({i for i in ids if ids.count(i) > 1})}",
             "give every experiment its own id")
    claim_ids = [c.id for c in paper.claims]
    if len(claim_ids) != len(set(claim_ids)):
        fail("claims", f"duplicate claim ids {sorted({i for i in claim_ids if claim_ids.count(i) > 1})}",
             "give every claim its own id")
    for exp in paper.experiments:
        for env in exp.envs:
            if not (config_dir() / "environments" / f"{env}.yaml").is_file():
                fail(f"experiment {exp.id}", f"unknown environment {env!r}",
                     "name a task with a file under config/environments/")
        for algo in exp.algos:
            if algo not in known_methods:
                fail(f"experiment {exp.id}", f"unknown method {algo!r}",
                     "name a registered algorithm (`coopbench list`) or one of PLANNED_ALGORITHMS")
    for claim in paper.claims:
        where = f"claim {claim.id}"
        for method in claim.methods:
            if ANALYSIS_METHODS.get(method, "-") == claim.analysis:
                continue
            if method not in known_methods:
                fail(where, f"unknown method {method!r}", "name a registered or planned algorithm")
        if claim.analysis is not None:
            if claim.analysis not in ANALYSES.names() and claim.analysis not in PLANNED_ANALYSES:
                fail(where, f"unknown analysis {claim.analysis!r}", f"one of {', '.join(ANALYSES.names())}")
            continue
        if claim.experiment not in ids:
            fail(where, f"unknown experiment {claim.experiment!r}", f"one of {', '.join(ids) or '(none)'}")
        exp = paper.experiment(claim.experiment)
        for task in claim.tasks:
            if task not in exp.envs:
                fail(where, f"task {task!r} is not in experiment {exp.id}", "add it to the experiment's envs")
        for method in claim.methods:
            if method not in exp.algos:
                fail(where, f"method {method!r} is not in experiment {exp.id}", "add it to the experiment's algos")
        if claim.budget is not None and claim.budget > exp.run.total_env_steps:
            fail(where, f"budget {claim.budget} exceeds experiment {exp.id}'s {exp.run.total_env_steps}",
                 "raise the experiment's budget or lower the claim's")


@cache
def _load_paper_cached(path: Path, mtime: float) -> PaperFile:
    try:
        data = parse_yaml(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise CoopbenchError(f"{path} is not valid YAML: {err}".replace("\n", " "), "fix the YAML syntax") from None
    if not isinstance(data, dict):
        raise CoopbenchError(f"{path} must hold a mapping (paper, title, settings, experiments, claims)",
                             "see claims/acpo.yaml for the layout")
    try:
        paper = PaperFile(**data)
    except ValidationError as err:
        first = err.errors()[0]
        raise CoopbenchError(f"{path}: {_location(err, data)}: {first['msg']}",
                             "fix that field (see coopbench/claims.py for the schema)") from None
    if paper.paper != path.stem:
        raise CoopbenchError(f"{path}: paper {paper.paper!r} differs from the file name",
                             f"rename it {paper.paper}.yaml")
    _check_names(paper, path)
    return paper


def load_paper(name: str) -> PaperFile:
    path = claims_dir() / f"{name}.yaml"
    if not path.is_file():
        raise CoopbenchError(f"no claims file for paper {name!r}: {path}", f"papers: {', '.join(PAPERS)}")
    return _load_paper_cached(path, path.stat().st_mtime)


def load_papers() -> dict[str, PaperFile]:
    return {name: load_paper(name) for name in PAPERS if (claims_dir() / f"{name}.yaml").is_file()}


def experiment_settings_layers(paper: PaperFile, experiment: Experiment, env: str,
                               algo: str) -> list[tuple[str, dict, dict]]:
    """The paper's and then the experiment's settings rules matching (env, algo), in order, each as (origin,
    hparams, env params); the origin names the file, the rule and its source (`coopbench config` shows it)."""
    layers = []
    for where, rules in (("settings", paper.settings), (f"experiment {experiment.id} settings", experiment.settings)):
        for index, rule in enumerate(rules):
            if rule.matches(env, algo):
                layers.append((f"claims/{paper.paper}.yaml {where}[{index}] ({rule.source})", rule.hparams, rule.env))
    return layers


def comparison_id(paper: str, experiment: str) -> str:
    return f"{paper}/{experiment}"


def split_comparison(comparison: str) -> tuple[str, str]:
    paper, _, experiment = comparison.partition("/")
    if not re.match(ID_PATTERN, paper) or not experiment:
        raise CoopbenchError(f"bad comparison {comparison!r}", "write PAPER/EXPERIMENT, e.g. acpo/table1")
    return paper, experiment
