import json

import pytest


@pytest.mark.parametrize(
    "args, message",
    [
        (["run", "nope", "matrix/acpo-3x3", "--seed", "0"], "unknown algorithm 'nope'"),
        (["run", "mappo", "nope/game", "--seed", "0"], "unknown environment 'nope/game'"),
        (["run", "mappo", "matrix/acpo-3x3", "--seed", "0", "--set", "algo.lr_actor=-1"], "algo.lr_actor"),
        (["run", "mappo", "matrix/acpo-3x3", "--seed", "0", "--set", "algo.nope=1"], "unknown key algo.nope"),
        (["run", "mappo", "matrix/acpo-3x3", "--seed", "0", "--set", "garbage"], "bad --set"),
        (["run", "mappo", "matrix/acpo-3x3", "--seed", "0", "--expect-hash", "000000000000"], "differs"),
    ],
)
def test_bad_input_exits_nonzero_with_one_line_and_no_files(cli, tmp_path, args, message):
    results = tmp_path / "results"
    proc = cli(*args, "--results-dir", str(results))
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert message in lines[0] and "fix:" in lines[0]
    assert not results.exists()


def test_list_prints_every_entry_with_family(cli):
    proc = cli("list")
    assert proc.returncode == 0
    lines = proc.stdout.splitlines()
    assert "matrix/acpo-3x3\tmatrix\t" in "\n".join(lines)
    assert any(line.startswith("mappo\ton_policy") for line in lines)
    assert any(line.startswith("ippo\ton_policy") for line in lines)


def test_run_writes_metrics_and_manifest_with_provenance(cli, tmp_path):
    proc = cli("run", "ippo", "matrix/cora-mtg", "--seed", "3", "--results-dir", str(tmp_path),
               "--set", "run.total_env_steps=640", "--set", "run.eval_interval=320", "--set", "algo.rollout_length=16")
    assert proc.returncode == 0, proc.stderr
    run_dir = tmp_path / proc.stdout.strip().split(str(tmp_path) + "/")[1]
    manifest = json.loads((run_dir / "manifest.json").read_text())
    for key in ("code", "packages", "host", "config_hash", "wall_time_s", "env_steps_per_s", "started_at",
                "finished_at", "device", "container_image"):
        assert key in manifest
    assert manifest["status"] == "completed" and manifest["seed"] == 3
    assert manifest["config"]["algo"]["hparams"]["rollout_length"] == 16
    assert manifest["packages"]["torch"].startswith("2.13.0")
    assert manifest["torch_threads"] == 1
    assert run_dir.name == "seed-3" and run_dir.parent.name == manifest["config_hash"]
    assert not (run_dir / "checkpoint.pt").exists()
    assert not [p for p in run_dir.iterdir() if p.name.endswith(".tmp")]
    # plain log lines (not a tty): one per evaluation
    assert proc.stderr.count("eval_return=") == 2
    again = cli("run", "ippo", "matrix/cora-mtg", "--seed", "3", "--results-dir", str(tmp_path),
                "--set", "run.total_env_steps=640", "--set", "run.eval_interval=320", "--set", "algo.rollout_length=16")
    assert again.returncode == 0 and "already complete" in again.stderr
