"""Config is data: YAML under config/, validated on load, resolved into one hashed dict per run.

Precedence, lowest first: the algorithm's built-in defaults < config/algorithms/<algo>.yaml
`hparams` < its `overrides` whose `envs` pattern matches the environment < the paper's and the experiment's
`settings` and budget < the suite's `run` and `overrides` < `--set` on the command line. The resolved config
(env, algo, run) is hashed; the hash names the run directory, so a changed hyperparameter never reuses an old
result. Resolution records where every value came from (`ResolvedConfig.origins`, `coopbench config`): the plan,
the run and the explanation all go through `_pair_config` and `resolve`, so values and origins cannot drift.
"""

from __future__ import annotations

import copy
import dataclasses
import fnmatch
import functools
import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator, model_validator

from coopbench.base.config_errors import did_you_mean, params_error
from coopbench.base.errors import CoopbenchError
from coopbench.base.paths import REPO_ROOT
from coopbench.base.yaml_text import parse_yaml

SECTIONS = ("env", "algo", "run")

# Seeds feed numpy's and torch's seeding: unsigned 32-bit integers.
SEED_LIMIT = 2**32
# A suite name becomes a folder (results/<suite>/), a Snakemake wildcard and a word of shell commands: one pattern,
# checked here (the CLI) and by the workflow (workflow/rules/common.smk uses SUITE_NAME_RE as its wildcard constraint).
SUITE_NAME_RE = r"[A-Za-z0-9][A-Za-z0-9_.-]*"


def check_seed(seed: object, where: str = "--seed") -> int:
    """`seed` as a valid seed (an integer, 0 <= seed < 2**32), or one CoopbenchError naming where it came from."""
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise CoopbenchError(f"{where}: seed {seed!r} is not an integer", "give seeds as integers 0 <= seed < 2**32")
    if not 0 <= seed < SEED_LIMIT:
        raise CoopbenchError(f"{where}: seed {seed} is out of range [0, 2**32)",
                             "give seeds as integers 0 <= seed < 2**32")
    return seed


def check_suite_name(name: str) -> str:
    if not isinstance(name, str) or not re.fullmatch(SUITE_NAME_RE, name):
        raise CoopbenchError(f"bad suite name {name!r}: a suite name is letters, digits, '_', '.' and '-', "
                             "starting with a letter or digit", "rename the suite file and give that name")
    return name


def _check_seeds(seeds: list[int] | None) -> list[int] | None:
    for seed in seeds or []:
        if isinstance(seed, bool) or not 0 <= seed < SEED_LIMIT:
            raise ValueError(f"seed {seed} is out of range: seeds are integers 0 <= seed < 2**32")
    return seeds


def config_dir() -> Path:
    return Path(os.environ.get("COOPBENCH_CONFIG_DIR", REPO_ROOT / "config"))


class RunConfig(BaseModel):
    """How long to train and how to evaluate: the budget part of a run's config."""

    model_config = ConfigDict(extra="forbid")
    total_env_steps: int = Field(20_000, gt=0, description="environment steps, summed over batched copies")
    eval_interval: int = Field(2_000, gt=0, description="evaluate every this many environment steps")
    eval_episodes: int = Field(16, gt=0, description="greedy episodes per evaluation")
    device: Literal["cpu", "cuda"] = "cpu"


class Normalization(BaseModel):
    model_config = ConfigDict(extra="forbid")
    method: Literal["min_max", "env_bounds", "raw"]
    low: float | None = None
    high: float | None = None
    rule: str = Field(min_length=1, description="the rule in words, shown on the site")

    @model_validator(mode="after")
    def _check(self):
        if self.method == "min_max" and (self.low is None or self.high is None or self.high <= self.low):
            raise ValueError("min_max normalization needs low < high")
        return self


class Resources(BaseModel):
    """What one run job of a task or algorithm asks the scheduler for (the `resources:` section).

    Not part of the resolved config or its hash: where a run executes does not change its result.
    Per run, each value is the largest that the environment's and the algorithm's files ask for;
    the workflow raises it to its own floor (config/workflow.yaml `run_resources`).
    """

    model_config = ConfigDict(extra="forbid")
    runtime: int | None = Field(None, gt=0, description="wall-clock limit in minutes")
    mem_mb: int | None = Field(None, gt=0, description="memory in MB")
    cpus_per_task: int | None = Field(None, gt=0, description="CPU cores (also the job's torch threads)")
    gpus: int | None = Field(None, ge=0, description="GPUs (Slurm --gpus)")


def combine_resources(*parts: Resources) -> dict[str, int]:
    """The largest value of each resource that any part sets; unset everywhere means absent."""
    out: dict[str, int] = {}
    for part in parts:
        for key, value in part.model_dump(exclude_none=True).items():
            out[key] = max(out.get(key, value), value)
    return out


class EnvFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    params: dict[str, Any] = Field(default_factory=dict)
    normalization: Normalization
    notes: str = ""
    resources: Resources = Field(default_factory=Resources)


class HparamOverride(BaseModel):
    model_config = ConfigDict(extra="forbid")
    envs: list[str] = Field(min_length=1, description="glob patterns of environment names")
    source: str = Field(min_length=1, description="where the values come from (paper, table)")
    hparams: dict[str, Any]
    # The algorithm files from the one resolved down its `inherits:` chain to the one declaring this rule.
    _chain: tuple[str, ...] = PrivateAttr(default=())


class AlgoFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    # Another algorithm file this one extends: its hparams, then ours; its overrides, then ours.
    inherits: str | None = None
    source: str = ""
    hparams: dict[str, Any] = Field(default_factory=dict)
    overrides: list[HparamOverride] = Field(default_factory=list)
    resources: Resources = Field(default_factory=Resources)
    # Per hparam, the algorithm files from the one resolved down its `inherits:` chain to the one setting it.
    _hparam_chains: dict[str, tuple[str, ...]] = PrivateAttr(default_factory=dict)


class SuiteOverride(BaseModel):
    model_config = ConfigDict(extra="forbid")
    envs: list[str] = Field(default_factory=lambda: ["*"])
    algos: list[str] = Field(default_factory=lambda: ["*"])
    # Comparisons the rule applies to: "<paper>/<experiment>" globs, or "suite:<name>" for the suite's own runs.
    comparisons: list[str] = Field(default_factory=lambda: ["*"])
    set: dict[str, Any] = Field(default_factory=dict)
    # Replaces the suite's seeds for the matching runs (the last matching rule that sets it wins).
    seeds: list[int] | None = Field(None, min_length=1)
    # Replaces what the matching runs' jobs ask the scheduler for, per key (the last matching rule wins); not hashed.
    resources: Resources = Field(default_factory=Resources)

    _seeds_in_range = field_validator("seeds")(_check_seeds)

    def matches(self, env: str, algo: str, comparison: str) -> bool:
        return all(any(fnmatch.fnmatch(value, p) for p in patterns) for value, patterns in
                   ((env, self.envs), (algo, self.algos), (comparison, self.comparisons)))


class AlgoSelection(BaseModel):
    """An algorithm run only on some of the suite's environments (those its papers pair it with)."""

    model_config = ConfigDict(extra="forbid")
    name: str
    envs: list[str] = Field(min_length=1, description="glob patterns of environment names")
    source: str = Field("", description="where the pairing comes from (paper, figure)")


class SuiteFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    description: str = Field(min_length=1)
    # The papers' experiments to run, as claims/<paper>.yaml defines them: "<paper>/<experiment>" globs.
    experiments: list[str] = Field(default_factory=list)
    # Analyses (coopbench.claims.ANALYSES) whose outputs the suite's claims stage reads.
    analyses: list[str] = Field(default_factory=list)
    # The suite's own runs (comparison "suite:<name>"), serving no claim: environments x algorithms x seeds.
    environments: list[str] = Field(default_factory=list)
    # A name runs on every environment; {name, envs} only on the matching ones.
    algorithms: list[str | AlgoSelection] = Field(default_factory=list)
    seeds: list[int] = Field(default_factory=list)
    run: dict[str, Any] = Field(default_factory=dict)
    overrides: list[SuiteOverride] = Field(default_factory=list)

    _seeds_in_range = field_validator("seeds")(_check_seeds)

    @model_validator(mode="after")
    def _check(self):
        if not self.experiments and not self.environments:
            raise ValueError("a suite names `experiments`, or `environments` with `algorithms` and `seeds`")
        if self.environments and (not self.algorithms or not self.seeds):
            raise ValueError("a suite with `environments` also needs `algorithms` and `seeds`")
        from coopbench.claims import ANALYSES

        unknown = sorted(set(self.analyses) - set(ANALYSES.names()))
        if unknown:
            raise ValueError(f"unknown analyses {unknown}; known: {', '.join(ANALYSES.names())}")
        return self


@functools.lru_cache(maxsize=1024)
def _parse_yaml(text: str) -> Any:
    """The YAML `text` parsed (cached by the text itself: planning reads the same few files for every run)."""
    return parse_yaml(text)


def load_yaml(path: Path, model: type[BaseModel], what: str) -> BaseModel:
    try:
        data = copy.deepcopy(_parse_yaml(path.read_text())) or {}
    except FileNotFoundError:
        raise CoopbenchError(f"no config file for {what}: {path}", f"create {path}") from None
    except yaml.YAMLError as err:
        raise CoopbenchError(" ".join(f"{path} is not valid YAML: {err}".split()), "fix the YAML syntax") from None
    except (IsADirectoryError, UnicodeDecodeError) as err:
        raise CoopbenchError(f"config file for {what} {path} cannot be read: {type(err).__name__}",
                             f"make {path} a YAML text file") from None
    if not isinstance(data, dict):
        raise CoopbenchError(f"{path} holds a YAML {type(data).__name__}, not a mapping of keys to values",
                             "write it as `key: value` lines (see the other files beside it)")
    try:
        return model(**data)
    except ValidationError as err:
        raise params_error(err, prefix=path.name, model=model, what=what) from None


def parse_set(items: list[str]) -> dict[str, dict[str, Any]]:
    """`["algo.lr_actor=1e-3", "run.total_env_steps=5000"]` -> {"algo": {...}, "run": {...}}."""
    out: dict[str, dict[str, Any]] = {s: {} for s in SECTIONS}
    for item in items:
        key, sep, raw = item.partition("=")
        section, dot, name = key.strip().partition(".")
        if not sep or not dot or section not in SECTIONS or not name:
            raise CoopbenchError(f"bad --set {item!r}",
                                 "write --set SECTION.KEY=VALUE with SECTION one of env, algo, run")
        try:
            value = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError:
            raise CoopbenchError(f"bad --set value in {item!r}",
                                 "give a YAML scalar or list, e.g. 0.001 or [64,64]") from None
        out[section][name] = value
    return out


@dataclass(frozen=True)
class ResolvedConfig:
    env: str
    algo: str
    env_params: dict[str, Any]
    algo_hparams: dict[str, Any]
    run: dict[str, Any]
    normalization: dict[str, Any]
    algo_family: str
    env_family: str
    env_notes: str = ""
    # Scheduler resources (runtime, mem_mb, cpus_per_task, gpus); not hashed, not in to_dict().
    resources: dict[str, int] = field(default_factory=dict)
    # Where each value came from, by "env.KEY", "algo.KEY", "run.KEY"; not hashed, not in to_dict().
    origins: dict[str, str] = field(default_factory=dict, compare=False)

    def to_dict(self) -> dict[str, Any]:
        return {"env": {"name": self.env, "params": self.env_params},
                "algo": {"name": self.algo, "hparams": self.algo_hparams},
                "run": self.run}

    @property
    def hash(self) -> str:
        canonical = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:12]

    def run_dir(self, results_dir: Path, seed: int) -> Path:
        return Path(results_dir) / "runs" / self.env / self.algo / self.hash / f"seed-{seed}"


def _validate(model: type[BaseModel], values: dict, prefix: str, what: str) -> dict:
    try:
        return model(**values).model_dump()
    except ValidationError as err:
        raise params_error(err, prefix=prefix, model=model, what=what) from None


def load_env_file(env: str) -> EnvFile:
    """`config/environments/<env>.yaml`: the task's parameters, normalization rule, notes, resources."""
    return load_yaml(config_dir() / "environments" / f"{env}.yaml", EnvFile, f"environment {env!r}")


def load_algo_file(algo: str, _children: tuple[str, ...] = ()) -> AlgoFile:
    """`config/algorithms/<algo>.yaml` with its `inherits:` chain merged in (each value and rule remembers the
    file it came from: `_hparam_chains`, `HparamOverride._chain`)."""
    file = load_yaml(config_dir() / "algorithms" / f"{algo}.yaml", AlgoFile, f"algorithm {algo!r}")
    file._hparam_chains = dict.fromkeys(file.hparams, (algo,))
    for rule in file.overrides:
        rule._chain = (algo,)
    if file.inherits is None:
        return file
    if file.inherits in (algo, *_children):
        chain = " -> ".join((*_children, algo, file.inherits))
        raise CoopbenchError(f"algorithm configs inherit in a cycle: {chain}", "remove one `inherits:` of the cycle")
    base = load_algo_file(file.inherits, (*_children, algo))
    inherited = [rule.model_copy() for rule in base.overrides]
    for rule in inherited:
        rule._chain = (algo, *rule._chain)
    merged = AlgoFile(source=file.source or base.source, hparams={**base.hparams, **file.hparams},
                      overrides=[*inherited, *file.overrides],
                      resources=file.resources if "resources" in file.model_fields_set else base.resources)
    merged._hparam_chains = {**{k: (algo, *c) for k, c in base._hparam_chains.items()}, **file._hparam_chains}
    return merged


def _algo_file_origin(chain: tuple[str, ...]) -> str:
    """`config/algorithms/mappo.yaml (inherits: happo.yaml -> mappo.yaml)` for a value `happo` takes from mappo's."""
    where = f"config/algorithms/{chain[-1]}.yaml"
    return where if len(chain) == 1 else f"{where} (inherits: {' -> '.join(f'{a}.yaml' for a in chain)})"


COMMAND_LINE = "command line (--set)"


def _class_default(cls: type) -> str:
    return f"class default ({cls.__module__}.{cls.__qualname__})"


def resolve(algo: str, env: str, overrides: dict[str, dict[str, Any]] | None = None,
            override_origins: dict[str, str] | None = None) -> ResolvedConfig:
    """The full, validated config of one (algo, env) pair; `overrides` as returned by parse_set.

    `override_origins` names where each override ("algo.lr_actor") came from (default: the command line); the
    result's `origins` says it for every value."""
    from algorithms.registry import ALGORITHMS
    from environments.registry import ENVIRONMENTS, validate_params

    overrides = overrides or {s: {} for s in SECTIONS}
    override_origins = override_origins or {}
    algo_entry, env_entry = ALGORITHMS.get(algo), ENVIRONMENTS.get(env)
    env_file = load_env_file(env)
    algo_file = load_algo_file(algo)
    origins: dict[str, str] = {}

    def layer(section: str, values: dict[str, Any], origin) -> dict[str, Any]:
        origins.update({f"{section}.{key}": origin(key) if callable(origin) else origin for key in values})
        return values

    hparams = dict(layer("algo", algo_file.hparams, lambda key: _algo_file_origin(algo_file._hparam_chains[key])))
    for rule in algo_file.overrides:
        if any(fnmatch.fnmatch(env, pattern) for pattern in rule.envs):
            hparams.update(layer("algo", rule.hparams, f"{_algo_file_origin(rule._chain)} override envs "
                                                       f"{rule.envs} ({rule.source})"))
    env_values = dict(layer("env", env_file.params, f"config/environments/{env}.yaml"))
    for section, target in (("algo", hparams), ("env", env_values), ("run", {})):
        values = overrides.get(section, {})
        layer(section, values, lambda key, s=section: override_origins.get(f"{s}.{key}", COMMAND_LINE))
        target.update(values)
    algo_cls, env_cls = algo_entry.load(), env_entry.load()
    algo_hparams = _validate(algo_cls.Config, hparams, "algo", f"algorithm {algo!r}")
    env_params = validate_params(env, env_values)
    run = _validate(RunConfig, overrides.get("run", {}), "run", "the run")
    for section, values, model in (("env", env_params, env_cls.Params), ("algo", algo_hparams, algo_cls.Config),
                                   ("run", run, RunConfig)):
        for key in values:
            origins.setdefault(f"{section}.{key}", _class_default(model))
    return ResolvedConfig(env, algo, env_params, algo_hparams, run, env_file.normalization.model_dump(),
                          algo_entry.family, env_entry.family, env_file.notes,
                          combine_resources(env_file.resources, algo_file.resources),
                          {key: origins[key] for key in sorted(origins)})


def check_compatible(config: ResolvedConfig, where: str = "") -> None:
    """One CoopbenchError naming the algorithm and the task if the algorithm cannot run on it (its Capabilities,
    algorithms/registry.py); `where` says which suite or paper paired them."""
    from algorithms.capabilities import incompatibility

    reason = incompatibility(config.algo, config.env, config.algo_hparams, config.env_params)
    if reason is not None:
        raise CoopbenchError(f"{where}{reason}", f"pair {config.algo} only with tasks it can run on "
                             "(its Capabilities in algorithms/registry.py)")


@dataclass(frozen=True)
class PlannedRun:
    """One job of a suite: what Snakemake schedules and `coopbench run` executes."""

    config: ResolvedConfig
    seed: int
    set_args: tuple[str, ...]  # the --set arguments that reproduce `config` on the command line
    # The comparisons this run serves ("<paper>/<experiment>", "suite:<name>"); one run may serve several.
    comparisons: tuple[str, ...] = ()

    @property
    def key(self) -> tuple[str, str, str, int]:
        return (self.config.env, self.config.algo, self.config.hash, self.seed)

    @property
    def resources(self) -> dict[str, int]:
        """runtime (minutes), mem_mb, cpus_per_task, gpus: the largest that the env and algo files ask for."""
        return dict(self.config.resources)


@dataclass(frozen=True)
class SkippedPair:
    """A pair of a comparison that is not planned, and why (a method not implemented, StarCraft II absent)."""

    comparison: str
    env: str
    algo: str
    reason: str


@dataclass(frozen=True)
class Plan:
    suite: str
    runs: list[PlannedRun]
    skipped: list[SkippedPair]

    def comparisons(self) -> list[str]:
        return sorted({c for run in self.runs for c in run.comparisons} | {s.comparison for s in self.skipped})


def load_suite(name: str) -> SuiteFile:
    check_suite_name(name)
    path = config_dir() / "suites" / f"{name}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in (config_dir() / "suites").glob("*.yaml"))
        raise CoopbenchError(f"unknown suite {name!r}", f"{did_you_mean(name, known)}choose one of: {', '.join(known)}")
    return load_yaml(path, SuiteFile, f"suite {name!r}")


def _flat_sets(section: str, values: dict[str, Any]) -> dict[str, Any]:
    return {f"{section}.{key}": value for key, value in values.items()}


def _experiment_pairs(paper, exp):
    """(comparison, env, algo, layers, seeds) of one experiment of claims/<paper>.yaml; `layers` are the paper's
    and the experiment's settings and the experiment's budget, each (origin, {"section.key": value})."""
    from coopbench.claims import comparison_id, experiment_settings_layers

    comparison = comparison_id(paper.paper, exp.id)
    budget = (f"claims/{paper.paper}.yaml experiment {exp.id} budget ({exp.run.source})",
              _flat_sets("run", exp.run.model_dump(exclude={"source"})))
    for env in exp.envs:
        for algo in exp.algos:
            layers = [(origin, {**_flat_sets("env", env_params), **_flat_sets("algo", hparams)})
                      for origin, hparams, env_params in experiment_settings_layers(paper, exp, env, algo)]
            yield comparison, env, algo, [*layers, budget], list(range(exp.seeds))


def _suite_pairs(suite: SuiteFile, name: str):
    """(comparison, env, algo, layers, seeds) for every pair the suite asks for, experiments first; `layers`
    are its base values before the suite's overrides, each (origin, {"section.key": value})."""
    from coopbench.claims import comparison_id, load_papers

    papers = load_papers()
    matched = set()
    for paper in papers.values():
        for exp in paper.experiments:
            comparison = comparison_id(paper.paper, exp.id)
            if not any(fnmatch.fnmatch(comparison, p) for p in suite.experiments):
                continue
            matched.add(comparison)
            yield from _experiment_pairs(paper, exp)
    for pattern in suite.experiments:
        if not any(fnmatch.fnmatch(c, pattern) for c in matched):
            raise CoopbenchError(f"suite {name!r}: no experiment matches {pattern!r}",
                                 "write PAPER/EXPERIMENT as in claims/<paper>.yaml (globs allowed, e.g. acpo/*)")
    selections = [a if isinstance(a, AlgoSelection) else AlgoSelection(name=a, envs=["*"]) for a in suite.algorithms]
    run = [(f"config/suites/{name}.yaml run", _flat_sets("run", suite.run))] if suite.run else []
    for env in suite.environments:
        for algo in (s.name for s in selections if any(fnmatch.fnmatch(env, p) for p in s.envs)):
            yield f"suite:{name}", env, algo, run, list(suite.seeds)


def _pair_where(comparison: str) -> str:
    """Who paired them, for the one-line refusal of an incompatible pair."""
    if not comparison:
        return ""
    if comparison.startswith("suite:"):
        return f"suite {comparison.removeprefix('suite:')!r} (its own runs): "
    paper, _, experiment = comparison.partition("/")
    return f"claims/{paper}.yaml experiment {experiment!r} (a registry error): "


def _pair_config(suite: SuiteFile | None, name: str | None, comparison: str, env: str, algo: str,
                 layers: list[tuple[str, dict[str, Any]]], seeds: list[int],
                 command_line: dict[str, Any] | None = None) -> tuple[ResolvedConfig, tuple[str, ...], list[int]]:
    """One pair's resolved config, its --set arguments and seeds: its layers, then the suite's matching overrides,
    then `command_line` ({"section.key": value}); refused in one line if the algorithm cannot run on the task.
    The plan and `coopbench config` both call this, so the hash and the origins are the planned run's."""
    sets: dict[str, Any] = {}
    origins: dict[str, str] = {}
    resources: dict[str, int] = {}  # the suite's overrides: they win over the config files' (coopbench/estimate.py)
    for origin, values in layers:
        sets.update(values)
        origins.update(dict.fromkeys(values, origin))
    for index, rule in enumerate(suite.overrides if suite is not None else []):
        if rule.matches(env, algo, comparison):
            sets.update(rule.set)
            origins.update(dict.fromkeys(rule.set, f"config/suites/{name}.yaml overrides[{index}] (envs {rule.envs}, "
                                                   f"algos {rule.algos}, comparisons {rule.comparisons})"))
            seeds = rule.seeds or seeds
            resources.update(rule.resources.model_dump(exclude_none=True))
    sets.update(command_line or {})
    origins.update(dict.fromkeys(command_line or {}, COMMAND_LINE))
    set_args = tuple(f"{k}={json.dumps(v)}" for k, v in sorted(sets.items()))
    config = resolve(algo, env, parse_set(list(set_args)), origins)
    if resources:
        config = dataclasses.replace(config, resources={**config.resources, **resources})
    check_compatible(config, _pair_where(comparison))
    return config, set_args, seeds


def plan(name: str) -> Plan:
    """Every run of suite `name` (deduplicated: a run serving several comparisons is planned once), and the
    pairs left out with their reason. Resolving validates every config file, and refuses any pair whose algorithm
    cannot run on its task, before any job starts."""
    from algorithms.registry import ALGORITHMS
    from coopbench.claims import PLANNED_ALGORITHMS
    from environments.registry import missing_requirement

    suite = load_suite(name)
    runs: dict[tuple, PlannedRun] = {}
    skipped: list[SkippedPair] = []
    missing: dict[str, str | None] = {}
    for comparison, env, algo, layers, seeds in _suite_pairs(suite, name):
        if algo not in ALGORITHMS.names():
            skipped.append(SkippedPair(comparison, env, algo, f"method {algo} is not implemented yet: "
                                       f"{PLANNED_ALGORITHMS.get(algo, 'not planned')}"))
            continue
        # Resolved and checked even where the task's simulator is missing here: a bad config or an incompatible
        # pair is an error on every machine, with or without StarCraft II.
        config, set_args, seeds = _pair_config(suite, name, comparison, env, algo, layers, seeds)
        if env not in missing:
            missing[env] = missing_requirement(env)
        if missing[env] is not None:
            skipped.append(SkippedPair(comparison, env, algo, missing[env]))
            continue
        for seed in seeds:
            key = (env, algo, config.hash, seed)
            known = runs.get(key)
            comparisons = (*known.comparisons, comparison) if known else (comparison,)
            runs[key] = PlannedRun(config, seed, set_args, tuple(dict.fromkeys(comparisons)))
    return Plan(name, list(runs.values()), skipped)


def explain(algo: str, env: str, suite: str | None = None, experiment: str | None = None,
            set_items: list[str] | None = None) -> tuple[ResolvedConfig, str]:
    """The config `coopbench config` prints, and which run it is: (algo, env) as suite `suite` plans it (in the
    comparison `experiment`: "PAPER/ID" or "suite:NAME", needed where the suite pairs them with different configs),
    as experiment `experiment` alone defines it (no suite overrides), or bare; then `set_items` (--set). The same
    `_pair_config` as the plan: the hash is the planned run's (with no --set)."""
    from coopbench.claims import comparison_id, load_papers, split_comparison

    command_line = {f"{section}.{key}": value for section, values in parse_set(set_items or []).items()
                    for key, value in values.items()}
    if suite is None and experiment is None:
        config, _, _ = _pair_config(None, None, "", env, algo, [], [], command_line)
        return config, "no suite or experiment: config files and --set only (as `coopbench run` resolves it)"
    if suite is not None:
        suite_file = load_suite(suite)
        pairs = [p for p in _suite_pairs(suite_file, suite) if p[1] == env and p[2] == algo]
        where = f"suite {suite!r}"
    else:
        paper_name, exp_id = split_comparison(experiment)
        paper = load_papers().get(paper_name)
        exp = next((e for e in paper.experiments if e.id == exp_id), None) if paper else None
        if exp is None:
            raise CoopbenchError(f"unknown experiment {experiment!r}",
                                 "give --experiment PAPER/ID as in claims/<paper>.yaml, e.g. acpo/table1-matrix")
        suite_file, pairs, where = None, [p for p in _experiment_pairs(paper, exp) if p[1] == env and p[2] == algo], \
            f"experiment {comparison_id(paper_name, exp_id)}"
    if experiment is not None:
        pairs = [p for p in pairs if p[0] == experiment]
    if not pairs:
        raise CoopbenchError(f"{where} does not run {algo} on {env}" + (f" in {experiment}" if experiment else ""),
                             "choose a pair the suite or experiment runs (coopbench plan SUITE lists them)")
    configs = {}
    for comparison, _, _, layers, seeds in pairs:
        config, _, _ = _pair_config(suite_file, suite, comparison, env, algo, layers, seeds, command_line)
        configs.setdefault(config.hash, (config, comparison))
    if len(configs) > 1:
        listed = ", ".join(f"{comparison} ({h})" for h, (_, comparison) in configs.items())
        raise CoopbenchError(f"{where} runs {algo} on {env} with {len(configs)} configs: {listed}",
                             "choose one with --experiment PAPER/ID (or suite:NAME for the suite's own runs)")
    config, comparison = next(iter(configs.values()))
    comparisons = sorted({p[0] for p in pairs})
    return config, f"{where}, comparison{'s' if len(comparisons) > 1 else ''} {', '.join(comparisons)}"


def plan_suite(name: str) -> list[PlannedRun]:
    return plan(name).runs
