"""The verdict rules on synthetic results whose verdict is known."""

import numpy as np
import pytest

from leaderboard.verdicts import (
    Z95,
    at_reduced_scale,
    judge_monotone,
    judge_number,
    judge_ordering,
    judge_outcome,
    judge_tie,
    published_interval,
)

REPS = 500


def seeds_around(mean: float, spread: float, n: int = 10, seed: int = 0) -> np.ndarray:
    return mean + spread * np.random.default_rng(seed).standard_normal(n)


def test_published_interval_turns_errors_into_95_percent_intervals():
    assert published_interval(10.0, 1.0, "se", None) == pytest.approx((10 - Z95, 10 + Z95))
    assert published_interval(10.0, 2.0, "std", 4) == pytest.approx((10 - Z95, 10 + Z95))
    assert published_interval(10.0, 3.0, "ci95", None) == (7.0, 13.0)
    assert published_interval(10.0, None, "none", None) == (10.0, 10.0)
    assert published_interval(0.5, None, "iqr", 10, error_low=0.3, error_high=0.8) == (0.3, 0.8)


@pytest.mark.parametrize("summary", ["mean", "median", "iqm"])
def test_number_inside_our_interval_is_reproduced(summary):
    ours = seeds_around(5.0, 0.5)
    judged = judge_number(ours, 5.0, (5.0, 5.0), summary, reps=REPS)
    assert judged.verdict == "reproduced"
    assert judged.estimate["ci_low"] < 5.0 < judged.estimate["ci_high"]


def test_number_far_from_ours_is_not_reproduced():
    judged = judge_number(seeds_around(5.0, 0.5), 9.0, published_interval(9.0, 0.2, "se", None), "mean", reps=REPS)
    assert judged.verdict == "not reproduced"
    assert judged.estimate["ci_high"] < judged.published_interval[0]


def test_number_overlapping_only_through_the_papers_error_is_reproduced():
    ours = seeds_around(5.0, 0.2, n=20)  # CI roughly 5 +- 0.1
    assert judge_number(ours, 5.6, (5.6, 5.6), "mean", reps=REPS).verdict == "not reproduced"
    assert judge_number(ours, 5.6, published_interval(5.6, 0.3, "se", None), "mean", reps=REPS).verdict == \
        "reproduced"


def test_number_from_one_seed_is_inconclusive():
    judged = judge_number(np.array([5.0]), 5.0, (5.0, 5.0), "mean", reps=REPS)
    assert judged.verdict == "inconclusive"
    assert "two seeds" in judged.note


def test_number_summarised_as_the_paper_reports():
    ours = np.array([1.0, 2.0, 3.0, 4.0])
    mean = judge_number(ours, 2.5, (2.5, 2.5), "mean", reps=REPS).details["as_published"]
    assert mean["mean"] == 2.5 and mean["se"] == pytest.approx(np.std(ours, ddof=1) / 2)
    median = judge_number(ours, 2.5, (2.5, 2.5), "median", reps=REPS).details["as_published"]
    assert (median["q1"], median["median"], median["q3"]) == (1.75, 2.5, 3.25)


def test_ordering_clear_winner_reproduced_and_reverse_not():
    better = [seeds_around(1.0, 0.1, seed=t) for t in range(3)]
    worse = [seeds_around(0.0, 0.1, seed=10 + t) for t in range(3)]
    forward = judge_ordering(better, worse, reps=REPS)
    assert forward.verdict == "reproduced" and forward.estimate["point"] == 1.0
    backward = judge_ordering(worse, better, reps=REPS)
    assert backward.verdict == "not reproduced" and backward.estimate["point"] == 0.0


def test_ordering_of_indistinguishable_methods_is_inconclusive():
    a = [seeds_around(0.0, 1.0, seed=1)]
    b = [seeds_around(0.0, 1.0, seed=2)]
    judged = judge_ordering(a, b, reps=REPS)
    assert judged.verdict == "inconclusive"
    assert judged.estimate["ci_low"] < 0.5 < judged.estimate["ci_high"]


def test_tie_within_margin_reproduced_clear_gap_not():
    a = [seeds_around(0.0, 1.0, n=40, seed=1)]
    b = [seeds_around(0.0, 1.0, n=40, seed=2)]
    assert judge_tie(a, b, 0.25, reps=REPS).verdict == "reproduced"
    far = [seeds_around(5.0, 1.0, n=40, seed=3)]
    assert judge_tie(far, b, 0.25, reps=REPS).verdict == "not reproduced"
    few = [seeds_around(0.0, 1.0, n=3, seed=4)]
    assert judge_tie(few, [seeds_around(0.5, 1.0, n=3, seed=5)], 0.25, reps=REPS).verdict == "inconclusive"


def test_outcome_exact_and_off():
    assert judge_outcome(np.array([20.0, 20.0, 20.0]), 20.0, 1e-6).verdict == "reproduced"
    off = judge_outcome(np.array([20.0, 5.0, 20.0]), 20.0, 1e-6)
    assert off.verdict == "not reproduced" and off.details["matching"] == 2
    assert off.details["distinct_values"] == [5.0, 20.0]


def test_monotone_outcomes():
    assert judge_monotone([0.3, 0.2, 0.1, 0.0], "decreasing", 0).verdict == "reproduced"
    assert judge_monotone([0.3, 0.2, 0.25, 0.0], "decreasing", 0).verdict == "not reproduced"
    assert judge_monotone([0.3, 0.2, 0.2001, 0.0], "nonincreasing", 1e-3).verdict == "reproduced"
    assert judge_monotone([1.0], "increasing", 0).verdict == "not reproduced"


def test_smaller_runs_are_only_inconclusive_and_say_what_the_rule_gave():
    judged = at_reduced_scale(judge_outcome(np.array([20.0, 20.0]), 20.0, 0), 1_000, 50_000, 2, 2)
    assert judged.verdict == "inconclusive"
    assert "2% of the paper's budget" in judged.note and "'reproduced'" in judged.note
    assert judged.details["verdict_at_this_scale"] == "reproduced"
    fewer = at_reduced_scale(judge_outcome(np.array([20.0]), 20.0, 0), 50_000, 50_000, 1, 5)
    assert fewer.verdict == "inconclusive" and "1 of the paper's 5 seeds" in fewer.note
    full = at_reduced_scale(judge_outcome(np.array([5.0]), 20.0, 0), 50_000, 50_000, 5, 5)
    assert full.verdict == "not reproduced" and full.note == ""
