"""The analyses of leaderboard/analyses.py (ACPO Table 1, CORA Fig. 9, ACPO Fig. 5) and their job `run_analysis`."""

import json
import math

import pytest

from coopbench.base.errors import CoopbenchError
from coopbench.base.io import read_json
from coopbench.claims import ANALYSES
from leaderboard.analyses import CORA_FIG9_M, acpo_fig5, acpo_table1, cora_fig9, run_analysis


def flat_numbers(values: dict) -> None:
    """Every value is a number or a list of numbers (what the claims stage reads), and JSON-serialisable."""
    json.dumps(values, allow_nan=False)
    for key, value in values.items():
        items = value if isinstance(value, list) else [value]
        assert all(isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in items), key


def check_shape(result: dict, name: str) -> None:
    assert result["analysis"] == name
    assert set(result) >= {"analysis", "description", "settings", "values", "details"}
    flat_numbers(result["values"])
    json.dumps(result, allow_nan=False)


@pytest.fixture(scope="module")
def table1() -> dict:
    return acpo_table1()


@pytest.fixture(scope="module")
def fig9_quick() -> dict:
    return cora_fig9(quick=True)


def test_every_registered_analysis_resolves_to_a_function_here():
    for entry in ANALYSES.entries():
        assert callable(entry.load()), entry.name


# --- ACPO Table 1 ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("planner", "expected", "label"), [
    ("acpi", 20.0, "(C, C)"), ("simultaneous", 5.0, "(A, A)"), ("iterative_br", 5.0, "(A, A)"),
    ("haspi_alpha1", 5.0, "(A, A)"),
    ("haspi_alpha5", 5.0, "(A, A)"),  # the paper says (C, C): not reproduced by the faithful HASPI
])
def test_acpo_table1_converged_joint_actions(table1, planner, expected, label):
    assert table1["values"][f"{planner}.return"] == pytest.approx(expected, abs=1e-9)
    assert table1["values"][f"{planner}.converged"] == 1.0
    assert table1["details"]["planners"][planner]["joint_action"] == label


def test_acpo_table1_records_its_start_and_policies(table1):
    check_shape(table1, "acpo-table1")
    assert table1["settings"]["first_action_prob"] == 0.6
    assert table1["settings"]["initial_distribution"] == pytest.approx([0.6, 0.2, 0.2])
    acpi = table1["details"]["planners"]["acpi"]["policies"]
    assert acpi[0] == [0.0, 0.0, 1.0] and acpi[1] == [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]
    haspi5 = table1["details"]["planners"]["haspi_alpha5"]["policies"]
    assert all(pi[0] == pytest.approx(0.9849, abs=1e-4) for pi in haspi5)  # the quantal response eq. at A
    assert table1["values"]["haspi_alpha5.expected_return"] < 5.0
    assert table1["details"]["haspi_from_0.6_0.1_0.3"] == {"alpha1": "(A, A)", "alpha5": "(C, C)"}


# --- CORA Fig. 9 -----------------------------------------------------------------------------------------------
def test_cora_fig9_quick(fig9_quick):
    check_shape(fig9_quick, "cora-fig9")
    values, settings = fig9_quick["values"], fig9_quick["settings"]
    assert values["m"] == list(CORA_FIG9_M) and settings["agents"] == 7 and settings["trials"] == 5
    for prefix in ("", "lam0."):
        for key in ("violation_ratio", "objective_gap", "time_s"):
            assert len(values[prefix + key]) == len(CORA_FIG9_M), prefix + key
        assert values[prefix + "violation_ratio.full"] == 0.0
        assert values[prefix + "objective_gap.full"] == pytest.approx(0.0, abs=1e-9)
        assert values[prefix + "violation_ratio"][0] > values[prefix + "violation_ratio"][-1]
        assert all(gap >= -1e-9 for gap in values[prefix + "objective_gap"])  # J* is the full optimum
        assert all(0 < t < 1 for t in values[prefix + "time_s"])
    assert settings["lam"] == 1.0


# --- the job ---------------------------------------------------------------------------------------------------
def test_run_analysis_writes_the_result_with_provenance(tmp_path):
    out = tmp_path / "analyses" / "acpo-table1.json"
    returned = run_analysis("acpo-table1", out, quick=True)
    written = read_json(out)
    assert written == json.loads(json.dumps(returned))
    assert written["values"]["acpi.return"] == 20.0
    provenance = written["provenance"]
    assert set(provenance) >= {"code", "packages", "host", "started_at", "finished_at", "wall_time_s"}
    assert provenance["wall_time_s"] >= 0 and "torch" in provenance["packages"]
    assert not list(out.parent.glob(".*.tmp"))  # atomic: no temporary left behind


@pytest.mark.parametrize("name", ["no-such-analysis", "a-planned-analysis"])
def test_run_analysis_refuses_an_unknown_or_planned_name(tmp_path, monkeypatch, name):
    from coopbench.claims import PLANNED_ANALYSES

    monkeypatch.setitem(PLANNED_ANALYSES, "a-planned-analysis", "a future issue")
    out = tmp_path / "x.json"
    with pytest.raises(CoopbenchError, match=name):
        run_analysis(name, out)
    assert not out.exists()


# --- ACPO Fig. 5 -----------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_acpo_fig5_smoke():
    result = acpo_fig5(quick=True, agents=[2], repeats=1)
    check_shape(result, "acpo-fig5")
    values = result["values"]
    assert values["agents"] == [2]
    for method in ("acpo", "happo", "hatrpo"):
        assert len(values[f"ratios.{method}"]) == 1
        assert values[f"ratio.{method}.2"] == values[f"ratios.{method}"][0] > 0
    assert result["settings"]["repeats"] == 1
    with pytest.raises(CoopbenchError, match="repeat"):
        acpo_fig5(agents=[2], repeats=0)
