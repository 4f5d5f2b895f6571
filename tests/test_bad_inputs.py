"""The catalogue of bad inputs and faults (issue 19): each gets one clear line, its exit code, and leaves every
file as it was, nothing written and nothing lost.

`CASES` is the table: a command (`coopbench ...`, `python -m leaderboard ...`), what to put on disk first, the
exit code and the words its one line must contain. Commands run in-process (the same `main` the console
scripts call; a subprocess would cost a torch import per case); the workflow and the lock, which need other
processes, run as processes. Faults (a full disk, NaN losses, two processes on one run) follow the table.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from coopbench.base import io as cio
from coopbench.base.errors import CoopbenchError, NonFiniteError, StorageError
from coopbench.base.schema import METRICS_COLUMNS, SCORES_COLUMNS
from coopbench.cli import main as coopbench_main
from coopbench.config import parse_set, resolve
from leaderboard.__main__ import main as leaderboard_main

REPO = Path(__file__).resolve().parent.parent
TINY = ["--set", "run.total_env_steps=256", "--set", "run.eval_interval=128", "--set", "run.eval_episodes=2",
        "--set", "algo.rollout_length=16", "--set", "algo.ppo_epochs=1"]
RUN = ["run", "mappo", "matrix/acpo-3x3", *TINY]
SUITE = "description: bad\nenvironments: [matrix/acpo-3x3]\nalgorithms: [mappo]\n"


def tiny_run_dir(results: Path, seed: int = 0) -> Path:
    return resolve("mappo", "matrix/acpo-3x3", parse_set(TINY[1::2])).run_dir(results, seed)


# -- what a case puts on disk first (`root` holds config/, claims/ and results/)

def suite(name: str, text: str) -> Callable[[Path], None]:
    return lambda root: (root / "config" / "suites" / f"{name}.yaml").write_text(text)


def file_at(relative: str, content: bytes | str) -> Callable[[Path], None]:
    def setup(root: Path) -> None:
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return setup


def checkpoint(content: Callable[[], bytes]) -> Callable[[Path], None]:
    def setup(root: Path) -> None:
        path = tiny_run_dir(root / "results") / "checkpoint.pt"
        path.parent.mkdir(parents=True)
        path.write_bytes(content())
    return setup


def torch_bytes(obj) -> bytes:
    import io

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def scores_with(**values) -> Callable[[Path], None]:
    row = {"comparison": "suite:x", "env": "matrix/acpo-3x3", "algo": "mappo", "config_hash": "0" * 12, "seed": 0,
           "iteration": 1, "env_steps": 128, "eval_return_mean": 1.0, "eval_return_std": 0.0, "eval_win_rate": np.nan,
           "normalized_score": 0.5, "normalization": "min_max", "is_final": True, "run_dir": "r", **values}

    def setup(root: Path) -> None:
        (root / "results").mkdir(exist_ok=True)
        pd.DataFrame([row], columns=SCORES_COLUMNS).to_parquet(root / "results" / "scores.parquet", index=False)
    return setup


def both(*setups: Callable[[Path], None]) -> Callable[[Path], None]:
    return lambda root: [s(root) for s in setups]


STATS_OK = {"schema_version": 2, "settings": {"confidence": 0.95, "reps": 10}, "comparisons": {}, "head_to_head": []}


@dataclass(frozen=True)
class Case:
    id: str
    command: list[str]  # "{results}" and "{root}" are replaced by the case's folders
    message: str  # the one line must contain this
    code: int = 2
    setup: Callable[[Path], None] | None = None
    tool: str = "coopbench"  # or "leaderboard": python -m leaderboard


CASES = [
    # -- the command line
    Case("seed-negative", [*RUN, "--seed", "-1", "--results-dir", "{results}"], "seed -1 is out of range [0, 2**32)"),
    Case("seed-2**40", [*RUN, "--seed", str(2**40), "--results-dir", "{results}"], "out of range [0, 2**32)"),
    Case("seed-2**32", [*RUN, "--seed", str(2**32), "--results-dir", "{results}"], "seed 4294967296 is out of range"),
    Case("seed-not-int", [*RUN, "--seed", "1.5", "--results-dir", "{results}"], "invalid int value"),
    Case("threads-0", [*RUN, "--seed", "0", "--threads", "0", "--results-dir", "{results}"], "--threads 0"),
    Case("checkpoint-interval-0", [*RUN, "--seed", "0", "--checkpoint-interval", "0", "--results-dir", "{results}"],
         "--checkpoint-interval 0"),
    Case("results-dir-is-a-file", [*RUN, "--seed", "0", "--results-dir", "{results}"],
         "results directory {results} is a file", setup=file_at("results", "not a folder\n")),
    Case("results-dir-under-a-file", [*RUN, "--seed", "0", "--results-dir", "{results}/sub"],
         "which is a file", setup=file_at("results", "not a folder\n")),
    Case("plan-results-dir-is-a-file", ["plan", "smoke", "--results-dir", "{results}"], "is a file",
         setup=file_at("results", "x")),
    Case("unknown-algorithm", ["run", "mapo", "matrix/acpo-3x3", "--seed", "0", "--results-dir", "{results}"],
         "unknown algorithm 'mapo' (fix: did you mean 'mappo'?"),
    Case("unknown-environment", ["run", "mappo", "matrix/acpo-3x4", "--seed", "0", "--results-dir", "{results}"],
         "did you mean 'matrix/acpo-3x3'?"),
    Case("set-unknown-key", [*RUN, "--seed", "0", "--set", "algo.lr_actr=0.1", "--results-dir", "{results}"],
         "unknown key algo.lr_actr for algorithm 'mappo' (fix: did you mean 'lr_actor'?"),
    Case("set-unknown-run-key", [*RUN, "--seed", "0", "--set", "run.total_env_step=5", "--results-dir", "{results}"],
         "did you mean 'total_env_steps'?"),
    Case("set-bad-value", [*RUN, "--seed", "0", "--set", "algo.lr_actor=-1", "--results-dir", "{results}"],
         "bad value algo.lr_actor=-1"),
    Case("set-garbage", [*RUN, "--seed", "0", "--set", "garbage", "--results-dir", "{results}"], "bad --set"),
    Case("set-bad-yaml", [*RUN, "--seed", "0", "--set", "algo.lr_actor=[1", "--results-dir", "{results}"],
         "bad --set value"),
    Case("expect-hash", [*RUN, "--seed", "0", "--expect-hash", "0" * 12, "--results-dir", "{results}"], "differs"),
    # -- config files
    Case("env-file-a-list", [*RUN, "--seed", "0", "--results-dir", "{results}"], "holds a YAML list, not a mapping",
         setup=file_at("config/environments/matrix/acpo-3x3.yaml", "- a\n- b\n")),
    Case("algo-file-bad-yaml", [*RUN, "--seed", "0", "--results-dir", "{results}"], "is not valid YAML",
         setup=file_at("config/algorithms/mappo.yaml", "hparams: {lr_actor: [\n")),
    Case("algo-file-binary", [*RUN, "--seed", "0", "--results-dir", "{results}"], "cannot be read",
         setup=file_at("config/algorithms/mappo.yaml", b"\xff\xfe\x00garbage")),
    Case("suite-a-list", ["plan", "l"], "holds a YAML list, not a mapping", setup=suite("l", "- a\n- b\n")),
    Case("suite-a-scalar", ["plan", "s"], "holds a YAML str, not a mapping", setup=suite("s", "just words\n")),
    Case("suite-empty", ["plan", "e"], "missing key e.yaml.description", setup=suite("e", "")),
    Case("suite-bad-yaml", ["plan", "y"], "is not valid YAML", setup=suite("y", "seeds: [0\n")),
    Case("suite-seed-negative", ["plan", "n"], "seed -1 is out of range", setup=suite("n", SUITE + "seeds: [-1]\n")),
    Case("suite-seed-2**32", ["plan", "b"], "seed 4294967296 is out of range",
         setup=suite("b", SUITE + f"seeds: [{2**32}]\n")),
    Case("suite-seed-not-int", ["plan", "f"], "bad value f.yaml.seeds.0='x'", setup=suite("f", SUITE + "seeds: [x]\n")),
    Case("suite-override-seed", ["plan", "o"], "o.yaml.overrides.0.seeds=[-3]",
         setup=suite("o", SUITE + "seeds: [0]\noverrides: [{seeds: [-3]}]\n")),
    Case("suite-misspelled-key", ["plan", "k"], "unknown key k.yaml.seedz for suite 'k' (fix: did you mean 'seeds'?",
         setup=suite("k", SUITE + "seedz: [0]\n")),
    Case("suite-misspelled-nested-key", ["plan", "k2"], "unknown key k2.yaml.overrides.0.seedz",
         setup=suite("k2", SUITE + "seeds: [0]\noverrides: [{seedz: [1]}]\n")),
    Case("suite-misspelled-selection-key", ["plan", "k3"], "unknown key k3.yaml.algorithms.0.env for suite 'k3' "
         "(fix: did you mean 'envs'?", setup=suite("k3", SUITE.replace("[mappo]", "[{name: mappo, env: ['*']}]")
                                                    + "seeds: [0]\n")),
    Case("suite-misspelled-run-key", ["plan", "r"], "did you mean 'total_env_steps'?",
         setup=suite("r", SUITE + "seeds: [0]\nrun: {total_env_step: 5}\n")),
    Case("suite-needs-seeds", ["plan", "m"], "also needs `algorithms` and `seeds`", setup=suite("m", SUITE)),
    Case("suite-unknown-experiment", ["plan", "x"], "no experiment matches 'acpo/nope'",
         setup=suite("x", "description: x\nexperiments: [acpo/nope]\n")),
    Case("suite-unknown", ["plan", "smok"], "unknown suite 'smok' (fix: did you mean 'smoke'?"),
    Case("suite-name-space", ["plan", "a b"], "bad suite name 'a b'"),
    Case("suite-name-quote", ["plan", "a'b"], "bad suite name"),
    Case("suite-name-angle", ["plan", "<x"], "bad suite name"),
    Case("suite-name-dots", ["plan", "../smoke"], "bad suite name"),
    # -- checkpoints (the run refuses and keeps the file)
    Case("checkpoint-random-bytes", [*RUN, "--seed", "0", "--results-dir", "{results}"],
         "not a checkpoint coopbench wrote (torch cannot read it", setup=checkpoint(lambda: os.urandom(4096))),
    Case("checkpoint-empty", [*RUN, "--seed", "0", "--results-dir", "{results}"], "corrupt checkpoint",
         setup=checkpoint(lambda: b"")),
    Case("checkpoint-foreign", [*RUN, "--seed", "0", "--results-dir", "{results}"], "does not fit this run",
         setup=checkpoint(lambda: torch_bytes({"algorithm": {"nope": torch.zeros(2)}}))),
    # -- result files
    Case("stats-not-json", ["figures", "--stats", "{results}/stats.json", "--out-dir", "{results}/figures"],
         "corrupt result file", tool="leaderboard", setup=file_at("results/stats.json", "{nope")),
    Case("stats-a-list", ["figures", "--stats", "{results}/stats.json", "--out-dir", "{results}/figures"],
         "is not a stats.json of this coopbench: a JSON list", tool="leaderboard",
         setup=file_at("results/stats.json", "[1, 2]")),
    Case("stats-old-shape", ["figures", "--stats", "{results}/stats.json", "--out-dir", "{results}/figures"],
         "has schema_version None", tool="leaderboard",
         setup=file_at("results/stats.json", json.dumps({"comparisons": {}, "settings": {}}))),
    Case("stats-comparison-incomplete", ["figures", "--stats", "{results}/stats.json", "--out-dir", "{results}/f"],
         "comparisons.x.algorithms: Field required", tool="leaderboard",
         setup=file_at("results/stats.json", json.dumps({**STATS_OK, "comparisons": {"x": {}}}))),
    Case("stats-wrong-type", ["figures", "--stats", "{results}/stats.json", "--out-dir", "{results}/f"],
         "settings.confidence", tool="leaderboard",
         setup=file_at("results/stats.json", json.dumps({**STATS_OK, "settings": {"confidence": "high", "reps": 1}}))),
    Case("stats-missing", ["figures", "--stats", "{results}/stats.json", "--out-dir", "{results}/f"],
         "result file missing", tool="leaderboard"),
    Case("stats-is-a-folder", ["figures", "--stats", "{results}", "--out-dir", "{root}/f"],
         "is a directory", tool="leaderboard", setup=file_at("results/x", "")),
    Case("scores-non-finite", ["stats", "--scores", "{results}/scores.parquet", "--out", "{results}/stats.json"],
         "non-finite eval_return_mean", tool="leaderboard", setup=scores_with(eval_return_mean=np.nan)),
    Case("scores-random-bytes", ["stats", "--scores", "{results}/scores.parquet", "--out", "{results}/stats.json"],
         "corrupt result file", tool="leaderboard", setup=file_at("results/scores.parquet", b"PAR1" + b"\0" * 64)),
    Case("runs-json-wrong-shape", ["claims", "--suite", "x", "--scores", "{results}/scores.parquet", "--runs",
                                   "{results}/runs.json", "--analyses", "{results}", "--out-dir", "{results}/c"],
         "is not a runs.json of the aggregate stage: runs.0.status", tool="leaderboard",
         setup=both(scores_with(), file_at("results/runs.json", json.dumps(
             {"schema_version": 2, "suite": "x", "skipped": [], "runs": [
                 {"env": "e", "algo": "a", "config_hash": "h", "seed": 0, "comparisons": [], "status": "done",
                  "reason": "", "run_dir": "r"}]})))),
    Case("runs-json-a-number", ["claims", "--suite", "x", "--scores", "{results}/scores.parquet", "--runs",
                                "{results}/runs.json", "--analyses", "{results}", "--out-dir", "{results}/c"],
         "a JSON int, not an object", tool="leaderboard",
         setup=both(scores_with(), file_at("results/runs.json", "3"))),
    Case("manifest-not-an-object", ["aggregate", "--suite", "x", "--out", "{results}/s.parquet", "{results}/run"],
         "not a JSON object", tool="leaderboard", setup=file_at("results/run/manifest.json", "[]")),
    Case("manifest-other-version", ["aggregate", "--suite", "x", "--out", "{results}/s.parquet", "{results}/run"],
         "has schema_version 1", tool="leaderboard",
         setup=file_at("results/run/manifest.json", json.dumps({"schema_version": 1}))),
]


def tree(root: Path) -> dict[str, str]:
    """Every file and folder under `root` with a digest of its bytes: equal trees mean nothing written or lost."""
    out = {}
    for path in sorted(root.rglob("*")):
        key = str(path.relative_to(root))
        out[key] = "dir" if path.is_dir() else hashlib.sha256(path.read_bytes()).hexdigest()
    return out


@pytest.fixture
def root(tmp_path, monkeypatch):
    """A private copy of config/ and claims/ (cases break files in it), used through COOPBENCH_CONFIG_DIR."""
    shutil.copytree(REPO / "config", tmp_path / "config")
    shutil.copytree(REPO / "claims", tmp_path / "claims")
    monkeypatch.setenv("COOPBENCH_CONFIG_DIR", str(tmp_path / "config"))
    return tmp_path


def run_main(tool: str, argv: list[str], capsys) -> tuple[int, str]:
    main = coopbench_main if tool == "coopbench" else leaderboard_main
    try:
        code = main(argv)
    except SystemExit as exit_:  # argparse's own errors
        code = exit_.code
    return code, capsys.readouterr().err


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case: Case, root: Path, capsys):
    results = root / "results"
    if case.setup is not None:
        case.setup(root)
    before = tree(root)
    fill = {"{results}": str(results), "{root}": str(root)}
    argv = [fill.get(a, a) if a in fill else a.replace("{results}", str(results)) for a in case.command]
    code, err = run_main(case.tool, argv, capsys)
    assert code == case.code, err
    lines = err.strip().splitlines()
    if case.message.startswith("invalid int"):  # argparse: usage, then its one error line
        lines = lines[-1:]
    assert len(lines) == 1, err
    assert case.message.replace("{results}", str(results)) in lines[0], lines[0]
    if case.tool == "coopbench" and not case.message.startswith("invalid int"):
        assert "(fix: " in lines[0]
    assert "Traceback" not in err
    assert tree(root) == before, "the failed command wrote, changed or removed files"


def test_the_catalogue_is_large_and_its_ids_unique():
    assert len(CASES) >= 50
    assert len({c.id for c in CASES}) == len(CASES)


# -- the workflow: a config error is the CLI's one line; every shell word is quoted

def snakemake(*args: str, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    bin_dir = Path(sys.executable).parent
    return subprocess.run([str(bin_dir / "snakemake"), "-s", str(REPO / "Snakefile"), *args], cwd=cwd,
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "PYTHONPATH": str(REPO),
                               **(env or {})})


def test_snakemake_config_error_is_the_cli_line(root):
    (root / "config" / "suites" / "k.yaml").write_text(SUITE + "seedz: [0]\n")
    work = root / "work"
    work.mkdir()
    proc = snakemake("-n", "--cores", "1", "--config", "suite=k", cwd=work,
                     env={"COOPBENCH_CONFIG_DIR": str(root / "config")})
    assert proc.returncode == 2, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if "error" in line.lower()]
    assert errors == ["coopbench: error: unknown key k.yaml.seedz for suite 'k' (fix: did you mean 'seeds'? "
                      "valid keys: algorithms, analyses, description, environments, experiments, overrides, run, "
                      "seeds)"], proc.stderr
    assert "Traceback" not in proc.stderr and "File " not in proc.stderr
    proc = snakemake("-n", "--cores", "1", "--config", "suite=a b", cwd=work)
    assert proc.returncode == 2 and "coopbench: error: bad suite name 'a b'" in proc.stderr
    assert list(work.iterdir()) == []


def test_every_shell_command_quotes_its_paths(tmp_path):
    """Results and site folders with a space, a quote and `<`: every command the DAG would run splits back into
    exactly the intended words."""
    results, site = "r e's<ults", 's "i" te'
    proc = snakemake("-n", "-p", "--cores", "1", "--config", "suite=smoke", f"results_dir={results}",
                     f"site_dir={site}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    commands = [line.split("Shell command: ", 1)[1] for line in proc.stdout.splitlines()
                if line.startswith("Shell command: ") and line != "Shell command: None"]  # None: rule all
    # the check that a packed run wrote its files, where a target names the run itself (the suite's stages wait
    # on the jobs' markers)
    checks = [shlex.split(c) for c in commands if c.startswith("test -f ")]
    assert all(w[2].startswith(results + "/runs/") and w[5].startswith(results + "/runs/")
                          and w[7].startswith(results + "/logs/") for w in checks)
    commands = [c for c in commands if not c.startswith("test -f ")]
    stages = {words[3] if words[0] == "python" else words[1] for words in map(shlex.split, commands)}
    assert stages == {"run-job", "aggregate", "stats", "figures", "claims", "analysis", "animations", "site"}
    for command in commands:
        words = shlex.split(command)
        if words[1] == "run-job":  # `... > LOG 2>&1 && touch MARKER`
            assert words[-4:-1] == ["2>&1", "&&", "touch"], command
            assert words[2].startswith(results + "/jobs/") and words[-1].startswith(results + "/jobs/"), command
        else:
            assert words[-2:] == ["2>&1"] or words[-1] == "2>&1"
        log = words[words.index(">") + 1]
        assert log.startswith(results + "/logs/"), command
        for flag in ("--results-dir", "--scores", "--stats", "--runs", "--out", "--out-dir", "--analyses"):
            if flag in words:
                value = words[words.index(flag) + 1]
                assert value == site or value.startswith(results), command


# -- faults: a lock held by another process, a full disk, NaN, bitwise files

HOLDER = """
import fcntl, json, os, sys, time
path = sys.argv[1]
fd = os.open(path, os.O_RDWR | os.O_CREAT)
fcntl.flock(fd, fcntl.LOCK_EX)
os.write(fd, json.dumps({"pid": os.getpid(), "host": "holder-host", "since": "then"}).encode())
print("locked", flush=True)
time.sleep(60)
"""


def test_second_process_on_a_run_directory_is_told_who_holds_it(root, capsys):
    run_dir = tiny_run_dir(root / "results")
    run_dir.mkdir(parents=True)
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(run_dir / cio.LOCK_NAME)], stdout=subprocess.PIPE,
                              text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        before = tree(root)
        code, err = run_main("coopbench", [*RUN, "--seed", "0", "--results-dir", str(root / "results")], capsys)
        assert code == 2
        assert f"is in use by pid {holder.pid} on host holder-host" in err and len(err.strip().splitlines()) == 1
        assert tree(root) == before
    finally:
        holder.kill()
        holder.wait()
    code, err = run_main("coopbench", [*RUN, "--seed", "0", "--results-dir", str(root / "results")], capsys)
    assert code == 0, err  # released by the holder's death: the run goes ahead
    assert not (run_dir / cio.LOCK_NAME).exists()
    assert (run_dir / "manifest.json").exists()


def test_the_lock_excludes_another_process_and_is_reentrant_within_one(tmp_path):
    with cio.run_lock(tmp_path / "run"):
        with cio.run_lock(tmp_path / "run"):  # the CLI and execute both take it
            pass
        assert (tmp_path / "run" / cio.LOCK_NAME).exists()
        probe = subprocess.run([sys.executable, "-c", "import sys; from coopbench.base.io import run_lock\n"
                                "with run_lock(sys.argv[1]): pass", str(tmp_path / "run")],
                               capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
        assert probe.returncode != 0 and f"in use by pid {os.getpid()}" in probe.stderr
    assert not (tmp_path / "run").exists()  # created for the lock, left empty: removed


def full_disk_after(monkeypatch, n_ok: int) -> list[int]:
    """Every fsync after the first `n_ok` fails with ENOSPC (as a full disk reports a write it cannot keep)."""
    calls = [0]
    real = os.fsync

    def fsync(fd):
        calls[0] += 1
        if calls[0] > n_ok:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    return calls


def test_full_disk_keeps_the_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "stats.json"
    cio.write_json(path, {"old": 1})
    full_disk_after(monkeypatch, 0)
    with pytest.raises(StorageError) as err:
        cio.write_json(path, {"new": 2})
    message = str(err.value)
    assert "No space left on device (ENOSPC)" in message and "the previous stats.json is intact" in message
    assert json.loads(path.read_text()) == {"old": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["stats.json"]  # no temporary left


@pytest.mark.parametrize("fail_at", ["checkpoint", "metrics"])
def test_full_disk_during_a_run_keeps_the_last_checkpoint_then_resumes_bitwise(tmp_path, monkeypatch, capsys,
                                                                               fail_at):
    from coopbench import run as run_module

    reference = tmp_path / "reference"
    assert run_main("coopbench", [*RUN, "--seed", "0", "--results-dir", str(reference)], capsys)[0] == 0
    results = tmp_path / "results"
    run_dir = tiny_run_dir(results)
    saved = []
    real_save = run_module.save_checkpoint

    def save(path, *args):  # keep the bytes of every checkpoint that reached the disk
        real_save(path, *args)
        saved.append(path.read_bytes())

    monkeypatch.setattr(run_module, "save_checkpoint", save)
    # 64 steps an iteration, evaluations at 0, 128, 256 steps: checkpoints after 128 and 256, then metrics, model,
    # manifest
    calls = full_disk_after(monkeypatch, 1 if fail_at == "checkpoint" else 2)
    code, err = run_main("coopbench", [*RUN, "--seed", "0", "--results-dir", str(results)], capsys)
    assert code == 2 and calls[0] >= 2
    [line] = [line for line in err.splitlines() if not line.startswith("[")]  # minus the progress lines
    assert "No space left on device (ENOSPC)" in line and "free space on the disk" in line
    assert "the previous checkpoint.pt is intact" in line or "metrics.parquet" in line
    assert (run_dir / "checkpoint.pt").read_bytes() == saved[0 if fail_at == "checkpoint" else 1]
    assert sorted(p.name for p in run_dir.iterdir()) == ["checkpoint.pt"]  # no temporary, no lock, no manifest
    monkeypatch.undo()
    assert run_main("coopbench", [*RUN, "--seed", "0", "--results-dir", str(results)], capsys)[0] == 0
    for name in ("metrics.parquet", "model.pt"):  # the resumed run ends where the uninterrupted one did
        assert (run_dir / name).read_bytes() == (tiny_run_dir(reference) / name).read_bytes(), name


def test_model_and_metrics_are_bitwise_equal_between_identical_runs(tmp_path, capsys):
    for name in ("a", "b"):
        assert run_main("coopbench", [*RUN, "--seed", "3", "--results-dir", str(tmp_path / name)], capsys)[0] == 0
    for name in ("metrics.parquet", "model.pt"):
        a, b = (tiny_run_dir(tmp_path / d, 3) / name for d in ("a", "b"))
        assert a.read_bytes() == b.read_bytes(), name


@pytest.mark.parametrize("where", ["loss", "train_return", "evaluation"])
def test_nan_stops_the_run_keeping_the_last_good_checkpoint(tmp_path, monkeypatch, capsys, where):
    from algorithms.mappo import MAPPO
    from coopbench import run as run_module

    results = tmp_path / "results"
    run_dir = tiny_run_dir(results)
    iterations = [0]
    real_train, real_evaluate = MAPPO.train_iteration, run_module.evaluate

    def train(self, env, timestep):
        result = real_train(self, env, timestep)
        iterations[0] += 1
        if iterations[0] >= 3:  # past the first checkpoint (iteration 2 of 64 steps)
            if where == "loss":
                result.losses["policy_loss"] = float("nan")
            elif where == "train_return":
                result.episode_returns[:] = float("inf")
        return result

    def evaluate(*args):
        out = real_evaluate(*args)
        if where == "evaluation" and iterations[0] >= 3:
            out["eval_return_mean"] = float("nan")
        return out

    monkeypatch.setattr(MAPPO, "train_iteration", train)
    monkeypatch.setattr(run_module, "evaluate", evaluate)
    with pytest.raises(NonFiniteError) as err:
        run_module.execute(resolve("mappo", "matrix/acpo-3x3", parse_set(TINY[1::2])), 0, results)
    message = str(err.value)
    assert "non-finite" in message and "the last good checkpoint" in message and "\n" not in message
    assert {"loss": "policy_loss=nan", "train_return": "train_return=inf",
            "evaluation": "eval_return_mean=nan"}[where] in message
    assert sorted(p.name for p in run_dir.iterdir()) == ["checkpoint.pt"]
    state = torch.load(run_dir / "checkpoint.pt", weights_only=True)
    assert state["progress"]["env_steps"] == 128 and all(np.isfinite(r["eval_return_mean"])
                                                         for r in state["progress"]["rows"])
    # Under the workflow a NaN is recorded at once (a retry would meet it again), as a failed run.
    code, err_text = run_main("coopbench", [*RUN, "--seed", "0", "--results-dir", str(results),
                                            "--record-failure-after", "3"], capsys)
    assert code == 0 and "non-finite" in err_text
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["status"] == "failed" and "non-finite" in manifest["reason"]


def test_aggregate_excludes_non_finite_runs_loudly(tmp_path, capsys):
    from coopbench.base.schema import SCHEMA_VERSION
    from leaderboard.aggregate import aggregate, read_runs

    good_manifest = {"schema_version": SCHEMA_VERSION, "env": "matrix/acpo-3x3", "algo": "mappo", "seed": 0,
                     "env_family": "matrix", "algo_family": "on_policy", "config": {}, "config_hash": "a" * 12,
                     "normalization": {"method": "min_max", "low": 0.0, "high": 1.0, "rule": "r"},
                     "status": "completed", "code": {}, "packages": {}, "host": "h", "device": "cpu",
                     "torch_threads": 1, "container_image": "none", "slurm_job_id": None, "started_at": "",
                     "finished_at": "", "wall_time_s": 1.0, "env_steps": 2, "env_steps_per_s": 1.0, "resumes": 0,
                     "final": {}}
    dirs = []
    for seed, returns in ((0, [0.1, 0.5]), (1, [0.2, float("nan")])):
        run_dir = tmp_path / f"seed-{seed}"
        run_dir.mkdir()
        (run_dir / "manifest.json").write_text(json.dumps({**good_manifest, "seed": seed}))
        metrics = pd.DataFrame({c: [0.0, 0.0] for c in METRICS_COLUMNS})
        metrics["env_steps"], metrics["iteration"], metrics["eval_return_mean"] = [0, 2], [0, 1], returns
        metrics.to_parquet(run_dir / "metrics.parquet", index=False)
        dirs.append(run_dir)
    scores = aggregate(dirs, tmp_path / "scores.parquet", "x")
    assert set(scores["seed"]) == {0}
    err = capsys.readouterr().err
    assert f"{dirs[1]} excluded from the scores: non-finite eval_return_mean in 1 of 2 evaluations" in err
    runs = read_runs(tmp_path / "runs.json")["runs"]
    assert [(r["seed"], r["status"]) for r in runs] == [(0, "completed"), (1, "failed")]
    assert runs[1]["reason"].startswith("excluded by aggregate: non-finite")


def test_a_run_killed_while_holding_the_lock_leaves_no_stale_lock(tmp_path):
    """flock dies with its process: after kill -9 the next run is not refused."""
    run_dir = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time\nfrom coopbench.base.io import run_lock\n"
                               "with run_lock(sys.argv[1]):\n print('locked', flush=True); time.sleep(60)",
                               str(run_dir)], stdout=subprocess.PIPE, text=True,
                              env={**os.environ, "PYTHONPATH": str(REPO)})
    assert holder.stdout.readline().strip() == "locked"
    holder.kill()
    holder.wait()
    deadline = time.monotonic() + 5
    while True:
        try:
            with cio.run_lock(run_dir):
                break
        except CoopbenchError:
            assert time.monotonic() < deadline
            time.sleep(0.05)
