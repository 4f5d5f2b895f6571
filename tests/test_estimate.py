"""`coopbench estimate` and the run jobs' resources: the rates table, its lookup, the precedence, the bill."""

import shutil

import pytest
import yaml

from coopbench import estimate as est
from coopbench.base.errors import CoopbenchError
from coopbench.config import Plan, PlannedRun, ResolvedConfig, SkippedPair, plan_suite
from tests.conftest import REPO

FLOOR = {"runtime": 10, "mem_mb": 2000, "cpus_per_task": 1, "gpus": 0}
MEASURED = {"chunks": 3, "iterations": 9, "warmup_env_steps": 64, "config_hash": "0" * 12,
            "measured": {"date": "2026-12-04", "host": "test", "torch_threads": 1}}
TABLE = {
    "runtime": {"margin": 1.5, "startup_s": 60, "unmeasured_minutes": 60},
    "memory": {"margin": 1.5},
    "assumed": [{"envs": ["smac/*"], "env_steps_per_s": 20, "eval_s": 30, "why": "StarCraft II is not here"}],
    "rates": [
        {"env": "matrix/cora-mtg", "algo": "mappo", "env_steps_per_s": {"min": 100, "median": 200, "max": 300},
         "eval_s": 2, "build_s": 1, **MEASURED},
        {"env": "matrix/cora-mtg", "algo": "cora", "env_steps_per_s": {"min": 50, "median": 100, "max": 120},
         "eval_s": 4, "build_s": 0, **MEASURED},
        {"env": "matrix/cora-mtg", "algo": "happo", "env_steps_per_s": {"min": 400, "median": 500, "max": 600},
         "eval_s": 0, "build_s": 0, "peak_rss_mb": 3001, **MEASURED},
        # measured on a loaded machine: the CPU-time rate is the one a job with its own core gets
        {"env": "differential/cora-2agent", "algo": "mappo", "env_steps_per_s": {"min": 10, "median": 20, "max": 30},
         "env_steps_per_cpu_s": {"min": 40, "median": 50, "max": 60}, "eval_s": 0, "build_s": 0, **MEASURED},
    ],
}


def table(data=None, tmp_path=None) -> est.RatesTable:
    return est.RatesTable(est.RatesFile(**(data or TABLE)), tmp_path or REPO / "config" / "rates.yaml")


def run(env, algo, seed=0, comparisons=("acpo/x",), total=36_000, interval=12_000, resources=None, device="cpu"):
    config = ResolvedConfig(env, algo, {}, {}, {"total_env_steps": total, "eval_interval": interval,
                                                "eval_episodes": 4, "device": device},
                            {}, "on_policy", env.split("/")[0], resources=resources or {})
    return PlannedRun(config, seed, (), comparisons)


# --- the lookup and a job's time ----------------------------------------------------------------------------


def test_rate_lookup_order():
    rates = table()
    assert rates.rate("matrix/cora-mtg", "mappo").source == "measured"
    variant = rates.rate("matrix/cora-mtg", "cora_m10")  # same class as cora (algorithms.cora:CORA)
    assert (variant.source, variant.slowest, variant.detail) == ("same method class", 50, "matrix/cora-mtg cora")
    neighbour = rates.rate("matrix/acpo-3x3", "happo")  # happo measured on another matrix task
    assert (neighbour.source, neighbour.typical) == ("same family", 500)
    assumed = rates.rate("smac/3m", "qmix")
    assert (assumed.source, assumed.slowest, assumed.eval_s) == ("assumed", 20, 30)
    assert rates.rate("vmas/navigation", "mappo") is None  # another family, nothing assumed
    assert rates.rate("matrix/cora-mtg", "mappo", "cuda") is None  # a CPU rate says nothing of a GPU run
    loaded = rates.rate("differential/cora-2agent", "mappo")
    assert (loaded.slowest, loaded.typical) == (40, 50)  # per CPU second, not the loaded wall clock


def test_time_limit_by_hand():
    # slowest: 60 startup + 1 build + 36000 / 100 + (36000/12000 + 1) evaluations x 2 s = 429 s; x 1.5 = 643.5 s
    # -> 10.725 min -> 11; typical: 60 + 1 + 180 + 8 = 249 s
    rates, planned = table(), run("matrix/cora-mtg", "mappo")
    assert rates.limit_minutes(planned) == 11
    assert rates.seconds(planned, rates.run_rate(planned), slowest=False) == 249
    # an eval_interval that does not divide the budget: ceil(36000 / 10000) + 1 = 5 evaluations
    assert rates.seconds(run("matrix/cora-mtg", "mappo", interval=10_000), rates.run_rate(planned), True) == 431


def test_resource_precedence():
    rates = table()
    measured = run("matrix/cora-mtg", "mappo", total=360_000)  # 1.5 x (61 + 3600 + 31 x 2) / 60 -> 94 min
    assert est.job_resources(measured, rates, FLOOR) == {"runtime": 94, "mem_mb": 2000, "cpus_per_task": 1, "gpus": 0}
    # the config files' (or a suite override's) runtime wins over the rates, even when lower
    stated = run("matrix/cora-mtg", "mappo", total=360_000, resources={"runtime": 30, "mem_mb": 6000, "gpus": 1})
    assert est.job_resources(stated, rates, FLOOR) == {"runtime": 30, "mem_mb": 6000, "cpus_per_task": 1, "gpus": 1}
    # the floor is the least: a tiny budget's 2 minutes and a stated 5 minutes both become 10
    assert est.job_resources(run("matrix/cora-mtg", "mappo", total=100), rates, FLOOR)["runtime"] == 10
    assert est.job_resources(run("matrix/cora-mtg", "mappo", resources={"runtime": 5}), rates, FLOOR)["runtime"] == 10
    # no rate, no stated runtime: the table's unmeasured_minutes
    assert est.job_resources(run("vmas/navigation", "mappo"), rates, FLOOR)["runtime"] == 60
    # memory: 1.5 x the measured peak (3001 MB -> 4501.5 -> 4502), unless a config states it; the floor otherwise
    happo = run("matrix/cora-mtg", "happo")
    assert est.job_resources(happo, rates, FLOOR)["mem_mb"] == 4502
    stated = run("matrix/cora-mtg", "happo", resources={"mem_mb": 2500})
    assert est.job_resources(stated, rates, FLOOR)["mem_mb"] == 2500
    assert est.job_resources(run("matrix/cora-mtg", "mappo"), rates, FLOOR)["mem_mb"] == 2000  # no peak recorded


# --- the bill ------------------------------------------------------------------------------------------------


@pytest.fixture
def synthetic(monkeypatch):
    runs = [
        run("matrix/cora-mtg", "mappo", 0),  # acpo: 249 s, limit 11 min
        run("matrix/cora-mtg", "mappo", 1, comparisons=("acpo/x", "cora/y")),  # shared by acpo and cora
        run("matrix/cora-mtg", "cora_m10", 0, comparisons=("cora/y",), resources={"cpus_per_task": 4, "gpus": 1}),
        run("smac/3m", "qmix", 0, comparisons=("suite:mine",), total=72_000, interval=72_000),
    ]
    skipped = [SkippedPair("cora/y", "smacv2/protoss_5_vs_5", "mappo", "missing dependency")]
    monkeypatch.setattr(est, "plan", lambda suite: Plan(suite, runs, skipped))


def test_bill_against_a_hand_computation(synthetic):
    result = est.estimate("mine", table=table(), floor=FLOOR)
    # mappo: 249 s = 0.0691667 h, limit 11 min = 0.183333 h
    # cora_m10 (cora's rate: min 50, median 100, eval 4 s, build 0): typical 60 + 360 + 16 = 436 s = 0.121111 h on
    #   4 CPUs and 1 GPU: 0.484444 core-h, 0.121111 GPU-h; limit 1.5 x (60 + 720 + 16) = 1194 s -> 20 min -> 4 x 1/3 h
    # qmix on smac (assumed 20/s, eval 30 s, 2 evaluations): 60 + 3600 + 60 = 3720 s = 1.033333 h; limit 1.5 x 3720 s
    #   = 93 min = 1.55 h
    acpo, cora, mine = result.papers["acpo"], result.papers["cora"], result.papers["suite:mine"]
    assert (acpo.jobs, cora.jobs, mine.jobs, result.total.jobs) == (2, 2, 1, 4)
    assert acpo.core_hours == pytest.approx(2 * 249 / 3600)
    assert acpo.core_hours_limit == pytest.approx(2 * 11 / 60)
    assert cora.core_hours == pytest.approx(249 / 3600 + 4 * 436 / 3600)
    assert cora.core_hours_limit == pytest.approx(11 / 60 + 4 * 20 / 60)
    assert cora.gpu_hours == pytest.approx(436 / 3600)
    assert mine.core_hours == pytest.approx(3720 / 3600) and mine.core_hours_limit == pytest.approx(93 / 60)
    assert result.total.core_hours == pytest.approx((2 * 249 + 4 * 436 + 3720) / 3600)
    assert result.total.core_hours_limit == pytest.approx((2 * 11 + 4 * 20 + 93) / 60)
    assert result.total.gpu_hours == pytest.approx(436 / 3600)
    assert result.total.sources == {"measured": 2, "same method class": 1, "assumed": 1}
    assert (result.shared, result.skipped) == (1, 1)
    text = est.format_estimate(result, table())
    assert "total" in text and "1 jobs serve more than one paper" in text and "1 pairs not planned" in text
    total_line = next(line for line in text.splitlines() if line.startswith("total"))
    assert total_line.split() == ["total", "4", "1.7", "3.2", "0.1"]


def test_one_paper(synthetic):
    result = est.estimate("mine", paper="cora", table=table(), floor=FLOOR)
    assert list(result.papers) == ["cora"] and result.total.jobs == 2 and result.skipped == 1
    assert result.total.gpu_hours == pytest.approx(436 / 3600)


@pytest.mark.parametrize(("paper", "message"), [
    ("nope", "unknown paper 'nope' (fix: choose one of: acpo, as, bn, cora, lan)"),
    ("lan", "suite 'mine' plans no run of paper 'lan' (fix: choose one of its papers: acpo, cora)"),
])
def test_paper_errors(synthetic, paper, message):
    with pytest.raises(CoopbenchError) as err:
        est.estimate("mine", paper=paper, table=table(), floor=FLOOR)
    assert " ".join(str(err.value).split()) == message


def test_missing_rates_name_the_pairs_and_how_to_measure(synthetic):
    data = {**TABLE, "assumed": [], "rates": TABLE["rates"][:1]}  # only mappo's
    with pytest.raises(CoopbenchError) as err:
        est.estimate("mine", table=table(data), floor=FLOOR)
    line = " ".join(str(err.value).split())
    assert line.startswith("no rate in config/rates.yaml for 2 (task, method) pairs of suite 'mine': "
                           "matrix/cora-mtg cora_m10, smac/3m qmix (fix: measure them with "
                           "`.venv/bin/python benchmarks/measure_rates.py --suite mine --pairs "
                           "matrix/cora-mtg:cora_m10 smac/3m:qmix`")


# --- the rates file ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("change", "message"), [
    (lambda d: d["runtime"].update(margin=0.5), "runtime.margin"),
    (lambda d: d["rates"][0]["env_steps_per_s"].update(min=500), "min <= median <= max"),
    (lambda d: d["rates"].append(dict(d["rates"][0])), "two rates entries for matrix/cora-mtg mappo"),
    (lambda d: d["assumed"][0].pop("why"), "assumed.0.why"),
    (lambda d: d["rates"][0].update(env_step_per_s=1), "env_step_per_s"),
])
def test_a_bad_rates_file_is_one_error_naming_the_key(tmp_path, change, message):
    data = yaml.safe_load(yaml.safe_dump(TABLE))
    change(data)
    path = tmp_path / "rates.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(CoopbenchError) as err:
        est.RatesTable.load(path)
    assert message in str(err.value) and "rates.yaml" in str(err.value)


def test_the_repository_rates_cover_every_planned_run_of_the_papers_suite():
    """The committed table sizes every job of `papers` (a pair added to a paper needs its rate measured)."""
    result = est.estimate("papers")
    assert result.total.jobs == len(plan_suite("papers"))
    assert result.total.core_hours > 0 and set(result.total.sources) <= {"measured", "same method class",
                                                                        "same family", "assumed"}


def test_suite_override_resources_win_and_keep_the_hash(tmp_path, monkeypatch):
    config = tmp_path / "config"
    shutil.copytree(REPO / "config", config)
    shutil.copytree(REPO / "claims", tmp_path / "claims")
    before = {r.key: r.resources for r in plan_suite("smoke")}
    suite = config / "suites" / "smoke.yaml"
    data = yaml.safe_load(suite.read_text())
    data["overrides"].append({"algos": ["ippo"], "resources": {"runtime": 7, "mem_mb": 3000}})
    data["overrides"].append({"algos": ["ippo"], "envs": ["matrix/cora-mtg"], "resources": {"runtime": 9}})
    suite.write_text(yaml.safe_dump(data))
    monkeypatch.setenv("COOPBENCH_CONFIG_DIR", str(config))
    after = {r.key: r.resources for r in plan_suite("smoke")}
    assert after.keys() == before.keys()  # resources are not hashed
    for key, resources in after.items():
        env, algo = key[:2]
        if algo == "ippo":
            assert resources == {"runtime": 9 if env == "matrix/cora-mtg" else 7, "mem_mb": 3000}
        else:
            assert resources == before[key]
    bad = yaml.safe_load(suite.read_text())
    bad["overrides"][-1]["resources"] = {"walltime": 9}
    suite.write_text(yaml.safe_dump(bad))
    with pytest.raises(CoopbenchError, match=r"smoke.yaml.*walltime"):
        plan_suite("smoke")


# --- the command line ----------------------------------------------------------------------------------------


def test_cli_estimate_prints_the_bill(cli):
    proc = cli("estimate", "papers", "--paper", "acpo")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[1].split() == ["paper", "jobs", "core-h", "core-h", "limit", "GPU-h"]
    assert lines[2].split()[0] == "acpo" and lines[3].split()[0] == "total"
    assert int(lines[2].split()[1]) == int(lines[3].split()[1]) > 0


@pytest.mark.parametrize(("args", "message"), [
    (["estimate", "nope"], "coopbench: error: unknown suite 'nope'"),
    (["estimate", "smoke", "--paper", "bn"], "coopbench: error: suite 'smoke' plans no run of paper 'bn'"),
    (["estimate", "smoke", "--paper", "xyz"], "coopbench: error: unknown paper 'xyz'"),
])
def test_cli_estimate_errors_are_one_line_exit_2(cli, args, message):
    proc = cli(*args)
    assert proc.returncode == 2 and proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(message) and "fix:" in lines[0], proc.stderr
