"""Property-based tests (hypothesis) of config validation and the result readers: whatever the input, the answer
is a validated value or one CoopbenchError on one line, never another exception (issue 19)."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from coopbench.base.errors import CoopbenchError
from coopbench.base.io import read_json, read_parquet
from coopbench.config import (
    SEED_LIMIT,
    SuiteFile,
    check_seed,
    check_suite_name,
    load_yaml,
    parse_set,
    resolve,
)
from leaderboard.aggregate import read_manifest, read_runs
from leaderboard.stats import read_stats

# No example database: nothing is written into the checkout (.hypothesis/); runs stay reproducible by seed.
SETTINGS = settings(max_examples=60, deadline=None, database=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow])
SCRATCH = Path(tempfile.mkdtemp(prefix="coopbench-properties-"))

scalars = st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=12)
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=10), inner, max_size=4), max_leaves=20)
SUITE_KEYS = sorted(SuiteFile.model_fields)
suite_key = st.sampled_from(SUITE_KEYS) | st.text(min_size=1, max_size=10)


def one_line_error(call) -> object:
    """call() -> its value, or None when it raised CoopbenchError (checked to be one line); anything else fails."""
    try:
        return call()
    except CoopbenchError as err:
        text = str(err)
        assert text and "\n" not in text and "Traceback" not in text, text
        return None


@SETTINGS
@given(st.integers(-(2**80), 2**80) | st.booleans() | st.floats() | st.text(max_size=5))
def test_seeds_are_integers_in_range(seed):
    value = one_line_error(lambda: check_seed(seed))
    valid = isinstance(seed, int) and not isinstance(seed, bool) and 0 <= seed < SEED_LIMIT
    assert (value == seed) if valid else value is None


@SETTINGS
@given(st.text(max_size=20))
def test_suite_names_match_the_one_pattern(name):
    value = one_line_error(lambda: check_suite_name(name))
    if value is not None:  # an accepted name is a safe folder name and a single shell word
        assert "/" not in name and " " not in name and "'" not in name and not name.startswith((".", "-"))


@SETTINGS
@given(st.dictionaries(suite_key, json_values, max_size=6) | json_values)
def test_any_suite_file_is_a_suite_or_one_error(data):
    path = SCRATCH / "suite.yaml"
    path.write_text(yaml.safe_dump(data))
    suite = one_line_error(lambda: load_yaml(path, SuiteFile, "suite 'p'"))
    if suite is not None:
        assert all(0 <= s < SEED_LIMIT for s in suite.seeds)
        assert all(0 <= s < SEED_LIMIT for o in suite.overrides for s in (o.seeds or []))


@SETTINGS
@given(st.sampled_from(SUITE_KEYS), st.text(alphabet="abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=2))
def test_a_misspelled_suite_key_is_named_with_its_correction(key, typo):
    misspelled = key + typo
    path = SCRATCH / "typo.yaml"
    path.write_text(yaml.safe_dump({"description": "d", "experiments": ["acpo/*"], misspelled: []}))
    try:
        load_yaml(path, SuiteFile, "suite 'typo'")
    except CoopbenchError as err:
        assert f"unknown key typo.yaml.{misspelled} " in str(err)
        if len(key) >= 4:  # a close match exists (difflib ratio >= 0.8): it is suggested
            assert "(fix: did you mean '" in str(err)
    else:
        raise AssertionError(f"{misspelled} accepted")


@SETTINGS
@given(st.lists(st.text(max_size=30), max_size=4))
def test_any_set_argument_is_parsed_or_one_error(items):
    parsed = one_line_error(lambda: parse_set(items))
    if parsed is not None:
        assert set(parsed) == {"env", "algo", "run"}


@SETTINGS
@given(st.dictionaries(st.sampled_from(["lr_actor", "hidden_sizes", "gamma", "n_envs", "ppo_epochs", "nope"]),
                       scalars | st.lists(scalars, max_size=3), max_size=3),
       st.dictionaries(st.sampled_from(["total_env_steps", "eval_interval", "device", "seed"]), scalars, max_size=2))
def test_any_override_resolves_or_is_one_error(algo, run):
    config = one_line_error(lambda: resolve("mappo", "matrix/acpo-3x3", {"env": {}, "algo": algo, "run": run}))
    if config is not None:
        assert config.run["total_env_steps"] > 0 and len(config.hash) == 12


@SETTINGS
@given(st.binary(max_size=200))
def test_any_bytes_as_a_json_result_file(data):
    path = SCRATCH / "result.json"
    path.write_bytes(data)
    one_line_error(lambda: read_json(path))


@SETTINGS
@given(st.binary(max_size=200))
def test_any_bytes_as_a_parquet_result_file(data):
    path = SCRATCH / "result.parquet"
    path.write_bytes(data)
    one_line_error(lambda: read_parquet(path, ["env"]))


VALID_STATS = {
    "schema_version": 2, "scores": "s", "settings": {"confidence": 0.95, "reps": 10}, "head_to_head": [],
    "comparisons": {"suite:x": {
        "algorithms": ["a"], "envs": ["e"], "tasks": ["e"], "dropped_tasks": {}, "excluded_runs": [],
        "seeds_per_algorithm": {"a": 1},
        "aggregate": {"a": {"iqm": {"point": 0.5, "ci_low": 0.4, "ci_high": None}}},
        "performance_profile": {"tau": [0.0, 1.0], "profiles": {"a": {"point": [1.0, 0.0], "ci_low": [1.0, 0.0],
                                                                         "ci_high": [1.0, 0.0]}}},
        "probability_of_improvement": [],
        "per_env": [{"env": "e", "algo": "a", "config_hash": "h", "n_seeds": 1, "seeds": [0],
                     "return_mean": {"point": 1.0, "ci_low": 1.0, "ci_high": 1.0},
                     "normalized_mean": {"point": 1.0, "ci_low": 1.0, "ci_high": 1.0},
                     "normalized_iqm": {"point": 1.0, "ci_low": 1.0, "ci_high": 1.0}}],
        "sample_efficiency": {"env_steps": [1], "iqm": {"a": {"point": [0.5], "ci_low": [0.5], "ci_high": [0.5]}}},
        "env_curves": {"e": {"a": {"env_steps": [1], "point": [1.0], "ci_low": [1.0], "ci_high": [1.0]}}},
    }},
}
VALID_RUNS = {"schema_version": 2, "suite": "x", "skipped": [{"comparison": "c", "env": "e", "algo": "a",
                                                              "reason": "r"}],
              "runs": [{"env": "e", "algo": "a", "config_hash": "h", "seed": 0, "comparisons": ["c"],
                        "status": "completed", "reason": "", "run_dir": "r"}]}


def paths(value, prefix=()):
    """Every path (tuple of keys and indices) into a JSON value."""
    yield prefix
    if isinstance(value, dict):
        for key, inner in value.items():
            yield from paths(inner, (*prefix, key))
    elif isinstance(value, list):
        for i, inner in enumerate(value):
            yield from paths(inner, (*prefix, i))


def mutate(value, path, replacement, delete):
    value = json.loads(json.dumps(value))
    if not path:
        return replacement
    holder = value
    for part in path[:-1]:
        holder = holder[part]
    if delete:
        del holder[path[-1]]
    else:
        holder[path[-1]] = replacement
    return value


def mutated(valid):
    all_paths = list(paths(valid))
    return st.builds(mutate, st.just(valid), st.sampled_from(all_paths), json_values, st.booleans())


@SETTINGS
@given(mutated(VALID_STATS) | json_values)
def test_stats_reader_accepts_the_shape_or_says_what_is_wrong(stats):
    path = SCRATCH / "stats.json"
    path.write_text(json.dumps(stats))
    read = one_line_error(lambda: read_stats(path))
    if read is not None:  # what the figures and the site index is there
        for cstats in read["comparisons"].values():
            for name in ("aggregate", "performance_profile", "sample_efficiency", "env_curves", "per_env"):
                assert name in cstats
            assert isinstance(cstats["sample_efficiency"]["iqm"], dict)
        assert isinstance(read["settings"]["confidence"], int | float)


def test_the_valid_stats_example_reads():
    path = SCRATCH / "valid-stats.json"
    path.write_text(json.dumps(VALID_STATS))
    assert read_stats(path) == VALID_STATS


@SETTINGS
@given(mutated(VALID_RUNS) | json_values)
def test_runs_reader_accepts_the_shape_or_says_what_is_wrong(runs):
    path = SCRATCH / "runs.json"
    path.write_text(json.dumps(runs))
    read = one_line_error(lambda: read_runs(path))
    if read is not None:
        assert all(r["status"] in ("completed", "not_run", "failed") for r in read["runs"])


@SETTINGS
@given(json_values)
def test_manifest_reader_takes_any_json(manifest):
    run_dir = SCRATCH / "run"
    run_dir.mkdir(exist_ok=True)
    (run_dir / "manifest.json").write_text(json.dumps(manifest))
    read = one_line_error(lambda: read_manifest(run_dir))
    assert read is None or isinstance(read, dict)


def test_a_key_with_a_newline_is_named_on_one_line():
    path = SCRATCH / "newline.yaml"
    path.write_text(yaml.safe_dump({"description": "d", "bad\nkey": 1}))
    with pytest.raises(CoopbenchError) as err:
        load_yaml(path, SuiteFile, "suite 'p'")
    assert "\n" not in str(err.value) and "'bad\\nkey'" in str(err.value)
