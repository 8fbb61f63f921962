"""BOIN (lupusbayes.decisions.boin) against BOIN 2.7.2 reference values.

Reference numbers come from /work/notes/escalation_facts.md: the boundaries and decision
tables of ``get.boundary`` (section 1.2-1.4), the ``select.mtd`` worked examples (1.6) and
operating characteristics computed with ``get.oc`` over 50,000 trials (section 6).
"""

from __future__ import annotations

import doctest

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import optimize

from lupusbayes.decisions import boin
from lupusbayes.decisions.boin import (
    boin_boundaries,
    boin_decision_table,
    boin_next_dose,
    boin_select_mtd,
    pava,
)
from lupusbayes.simulation import rule_based
from lupusbayes.simulation.rule_based import simulate_boin

BOUNDARIES_30 = boin_boundaries(0.30, max_patients=30)


def test_docstring_examples_run():
    assert doctest.testmod(boin).failed == 0
    assert doctest.testmod(rule_based).failed == 0  # the simulator's examples


# ---- boundaries -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("target", "lambda_escalate", "lambda_deescalate"),
    [(0.30, 0.236491, 0.358519), (0.25, 0.196801, 0.298392), (0.20, 0.157242, 0.238462)],
)
def test_interval_boundaries_match_boin(target, lambda_escalate, lambda_deescalate):
    boundaries = boin_boundaries(target, max_patients=3)
    assert boundaries.p_saf == pytest.approx(0.6 * target)
    assert boundaries.p_tox == pytest.approx(1.4 * target)
    assert boundaries.lambda_escalate == pytest.approx(lambda_escalate, abs=5e-7)
    assert boundaries.lambda_deescalate == pytest.approx(lambda_deescalate, abs=5e-7)
    assert round(boundaries.lambda_escalate, 4) == round(lambda_escalate, 4)
    assert round(boundaries.lambda_deescalate, 4) == round(lambda_deescalate, 4)


NA = "NA"
DECISION_TABLES = {
    # target: (escalate if DLT <=, de-escalate if DLT >=, eliminate if DLT >=), n = 1, 2, ...
    0.30: (
        [0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 4, 5, 5, 5, 5, 6, 6, 6, 6, 7],
        [1, 1, 2, 2, 2, 3, 3, 3, 4, 4, 4, 5, 5, 6, 6, 6, 7, 7, 7, 8, 8, 8, 9, 9, 9, 10, 10, 11, 11, 11],
        [NA, NA, 3, 3, 4, 4, 5, 5, 5, 6, 6, 7, 7, 8, 8, 8, 9, 9, 9, 10, 10, 11, 11, 11, 12, 12, 12, 13, 13, 14],
    ),
    0.25: (
        [0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 4, 4, 4, 4, 4, 5, 5, 5, 5, 5, 6, 6, 6, 6, 6, 7],
        [1, 1, 1, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 5, 5, 5, 6, 6, 6, 6, 7, 7, 7, 8, 8, 8, 9, 9, 9, 9, 10, 10, 10, 11, 11, 11],
        [NA, NA, 3, 3, 3, 4, 4, 4, 5, 5, 6, 6, 6, 7, 7, 7, 8, 8, 8, 9, 9, 9, 10, 10, 10, 11, 11, 11, 12, 12, 12, 12, 13, 13, 13, 14],
    ),
    1 / 3: (
        [0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3],
        [1, 1, 2, 2, 2, 3, 3, 4, 4, 4, 5, 5],
        [NA, NA, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7],
    ),
    0.20: (
        [0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1],
        [1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3],
        [NA, NA, 2, 3, 3, 3, 4, 4, 4, 5, 5, 5],
    ),
}


@pytest.mark.parametrize("target", list(DECISION_TABLES), ids=lambda target: f"{target:.3f}")
def test_decision_table_matches_boin(target):
    escalate, deescalate, eliminate = DECISION_TABLES[target]
    boundaries = boin_boundaries(target, max_patients=len(escalate))
    table = boundaries.table()
    assert [row["n_patients"] for row in table] == list(range(1, len(escalate) + 1))
    assert [row["escalate_if_dlt_at_most"] for row in table] == escalate
    assert [row["deescalate_if_dlt_at_least"] for row in table] == deescalate
    assert [row["eliminate_if_dlt_at_least"] for row in table] == eliminate
    assert list(boundaries.can_eliminate) == [value != NA for value in eliminate]


def test_decision_table_in_cohorts_of_three_at_030():
    rows = boin_decision_table(BOUNDARIES_30)[2::3]
    assert [row["escalate_if_dlt_at_most"] for row in rows] == [0, 1, 2, 2, 3, 4, 4, 5, 6, 7]
    assert [row["deescalate_if_dlt_at_least"] for row in rows] == [2, 3, 4, 5, 6, 7, 8, 9, 10, 11]
    assert [row["eliminate_if_dlt_at_least"] for row in rows] == [3, 4, 5, 7, 8, 9, 10, 11, 12, 14]


def test_decision_table_can_stop_early_and_not_beyond_the_boundaries():
    assert len(boin_decision_table(BOUNDARIES_30, 12)) == 12
    with pytest.raises(ValueError, match="n_max must be at most"):
        boin_decision_table(BOUNDARIES_30, 31)


def test_no_elimination_boundary_at_a_high_target():
    # phi = 0.5, n = 3: Pr(p > 0.5 | 3/3) = 0.9375 < 0.95, so no count eliminates.
    boundaries = boin_boundaries(0.5, max_patients=4)
    assert boundaries.can_eliminate == (False, False, False, True)
    assert boundaries.eliminate_at_least[2] == 4  # n + 1: never reached
    assert boundaries.table()[2]["eliminate_if_dlt_at_least"] == "NA"
    assert not boundaries.eliminates(3, 3)


def test_observed_rate_equal_to_lambda_d_stays():
    """BOIN 2.7.2: when lambda_d * n is the integer k, de-escalate only at k + 1 DLTs."""
    target = 0.3

    def lambda_d_minus(p_tox):
        return boin_boundaries(target, max_patients=1, p_tox=p_tox).lambda_deescalate - 0.4

    p_tox = optimize.brentq(lambda_d_minus, 0.4, 0.6, xtol=1e-15)
    boundaries = boin_boundaries(target, max_patients=10, p_tox=p_tox)
    assert abs(boundaries.lambda_deescalate * 5 - 2) < 1e-12
    assert boundaries.deescalate_at_least[4] == 3  # 2/5 = lambda_d: stay
    assert boundaries.decision_for(5, 2) == "stay"
    assert boundaries.deescalate_at_least[9] == 5  # 4/10 = lambda_d: stay
    assert boundaries.deescalate_at_least[5] == 3  # ceiling(2.4)


def test_deescalation_is_capped_at_elimination():
    # With the defaults the cap never binds; a wide p_tox and a low cutoff make it bind.
    boundaries = boin_boundaries(0.3, max_patients=12, p_tox=0.6, cutoff_eliminate=0.6)
    assert boundaries.lambda_deescalate == pytest.approx(0.4467, abs=1e-4)
    assert boundaries.deescalate_at_least[4] == 2  # ceiling(0.4467 * 5) = 3, capped at elimination (2)
    assert boundaries.eliminate_at_least[4] == 2
    for target in (0.1, 0.3, 0.6):
        boundaries = boin_boundaries(target, max_patients=40, cutoff_eliminate=0.6)
        assert all(d <= e for d, e in zip(boundaries.deescalate_at_least, boundaries.eliminate_at_least))


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"target": 0.04}, "target must be between 0.05 and 0.6"),
        ({"target": 0.61}, "target must be between 0.05 and 0.6"),
        ({"target": 0.3, "p_saf": 0.28}, "p_saf must be above 0 and at most"),
        ({"target": 0.3, "p_saf": 0.0}, "p_saf must be above 0"),
        ({"target": 0.3, "p_tox": 0.32}, "p_tox must be at least"),
        ({"target": 0.3, "p_tox": 1.0}, "p_tox must be at least"),
        ({"target": 0.3, "cutoff_eliminate": 1.0}, "cutoff_eliminate"),
        ({"target": 0.3, "max_patients": 0}, "max_patients must be a positive integer"),
        ({"target": 0.3, "max_patients": 2.5}, "max_patients must be a positive integer"),
    ],
)
def test_boundaries_reject_bad_arguments(arguments, message):
    arguments = {"max_patients": 12} | arguments
    with pytest.raises(ValueError, match=message):
        boin_boundaries(**arguments)


def test_decision_for_and_eliminates():
    assert [BOUNDARIES_30.decision_for(6, y) for y in range(7)] == ["escalate"] * 2 + ["stay"] + ["deescalate"] * 4
    assert [BOUNDARIES_30.eliminates(6, y) for y in range(7)] == [False] * 4 + [True] * 3
    with pytest.raises(ValueError, match="n_dlt must be between 0 and n_patients"):
        BOUNDARIES_30.decision_for(3, 4)
    with pytest.raises(ValueError, match="n_patients must be between 1 and 30"):
        BOUNDARIES_30.eliminates(31, 0)


# ---- select.mtd -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("n_patients", "n_dlt", "selected"),
    [
        ((3, 3, 15, 9, 0), (0, 0, 4, 4, 0), 2),  # help example: MTD = 3 (1-based)
        ((6, 6, 0, 0, 0), (1, 1, 0, 0, 0), 1),  # pooled tie below the target: the higher level
        ((6, 6, 0, 0, 0), (3, 3, 0, 0, 0), 0),  # pooled tie above the target: the lower level
        ((3, 3, 0, 0, 0), (3, 0, 0, 0, 0), None),  # level 1 eliminated: code 99
        ((3, 3, 3, 0, 0), (0, 3, 0, 0, 0), 0),  # level 2 eliminated, so level 3 too
        ((3, 6, 3, 0, 0), (1, 1, 2, 0, 0), 1),  # PAVA pools levels 1-2 to 0.22
        ((0, 3, 0, 0, 0), (0, 0, 0, 0, 0), 1),  # untreated level 1 skipped
        ((0, 0, 0, 0, 0), (0, 0, 0, 0, 0), None),  # nobody treated
    ],
)
def test_select_mtd_worked_examples(n_patients, n_dlt, selected):
    selection = boin_select_mtd(n_patients, n_dlt, target=0.3)
    assert selection.selected_level_index == selected
    assert str(selected + 1 if selected is not None else "no level") in selection.reason


def test_select_mtd_estimates_and_eliminated_levels():
    selection = boin_select_mtd((3, 3, 15, 9, 0), (0, 0, 4, 4, 0), target=0.3)
    assert np.round(selection.isotonic_estimates[:4], 2).tolist() == [0.02, 0.02, 0.27, 0.45]
    assert np.isnan(selection.isotonic_estimates[4])
    assert selection.eliminated == (False,) * 5

    pooled = boin_select_mtd((3, 6, 3, 0, 0), (1, 1, 2, 0, 0), target=0.3)
    assert np.round(pooled.isotonic_estimates[:3], 2).tolist() == [0.22, 0.22, 0.66]

    eliminated = boin_select_mtd((3, 3, 3, 0, 0), (0, 3, 0, 0, 0), target=0.3)
    assert eliminated.eliminated == (False, True, True, True, True)
    assert np.isnan(eliminated.isotonic_estimates[1:]).all()


def test_select_mtd_symmetric_distances_favour_the_lower_level():
    # Two levels at the same distance either side of the target (0/3 and 1/3 estimate
    # 0.05/3.1 and 1.05/3.1): the i * 1e-10 jitter favours the lower level.
    target = (0.05 / 3.1 + 1.05 / 3.1) / 2
    selection = boin_select_mtd((3, 3), (0, 1), target=target)
    assert selection.selected_level_index == 0


def test_select_mtd_rejects_bad_counts():
    with pytest.raises(ValueError, match="cannot exceed"):
        boin_select_mtd((3, 3), (4, 0), target=0.3)
    with pytest.raises(ValueError, match="same length"):
        boin_select_mtd((3, 3), (0,), target=0.3)
    with pytest.raises(ValueError, match="whole numbers"):
        boin_select_mtd((3, -1), (0, 0), target=0.3)
    with pytest.raises(ValueError, match="target must be strictly between"):
        boin_select_mtd((3,), (0,), target=1.2)


def test_pava():
    assert pava([0.1, 0.4, 0.2, 0.5], [1, 1, 3, 1]).tolist() == pytest.approx([0.1, 0.25, 0.25, 0.5])
    assert pava([0.3, 0.2, 0.1], [1, 1, 1]).tolist() == pytest.approx([0.2, 0.2, 0.2])
    assert pava([0.1, 0.2], [1, 1]).tolist() == [0.1, 0.2]


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.floats(0, 1), st.floats(0.01, 100)), min_size=1, max_size=8))
def test_pava_is_non_decreasing_and_keeps_the_weighted_mean(pairs):
    values, weights = np.array(pairs).T
    fitted = pava(values, weights)
    assert np.all(np.diff(fitted) >= -1e-12)
    assert np.sum(fitted * weights) == pytest.approx(np.sum(values * weights), rel=1e-9, abs=1e-9)


# ---- the next dose --------------------------------------------------------------------------


def test_next_dose_escalates_deescalates_and_stays():
    escalate = boin_next_dose(0, [3, 0, 0], [0, 0, 0], BOUNDARIES_30)
    assert (escalate.action, escalate.next_level_index) == ("escalate", 1)
    stay = boin_next_dose(1, [3, 3, 0], [0, 1, 0], BOUNDARIES_30)
    assert (stay.action, stay.next_level_index) == ("stay", 1)
    assert "between the boundaries" in stay.reason
    deescalate = boin_next_dose(1, [3, 3, 0], [0, 2, 0], BOUNDARIES_30)
    assert (deescalate.action, deescalate.next_level_index) == ("deescalate", 0)
    assert deescalate.reason == (
        "2 DLTs in 3 patients at level 2 (rate 0.67) >= de-escalation boundary 2 (lambda_d 0.359): de-escalate to level 1."
    )
    assert deescalate.eliminated == (False, False, False)


def test_next_dose_does_not_escalate_to_an_eliminated_level():
    decision = boin_next_dose(1, [3, 3, 3], [0, 0, 3], BOUNDARIES_30, [False, False, True])
    assert (decision.action, decision.next_level_index) == ("stay", 1)
    assert "level 3 is eliminated" in decision.reason


def test_next_dose_stays_at_the_top_and_bottom():
    top = boin_next_dose(2, [3, 3, 3], [0, 0, 0], BOUNDARIES_30)
    assert (top.action, top.next_level_index) == ("stay", 2)
    assert "highest" in top.reason
    bottom = boin_next_dose(0, [3, 0, 0], [2, 0, 0], BOUNDARIES_30)  # 2/3: de-escalate signal, not elimination
    assert (bottom.action, bottom.next_level_index) == ("stay", 0)
    assert "lowest" in bottom.reason


def test_next_dose_eliminates_the_current_and_higher_levels():
    decision = boin_next_dose(1, [3, 3, 0, 0], [0, 3, 0, 0], BOUNDARIES_30)
    assert (decision.action, decision.next_level_index) == ("deescalate", 0)
    assert decision.eliminated == (False, True, True, True)
    assert "levels 2-4 are eliminated" in decision.reason


def test_next_dose_stops_when_the_lowest_level_is_eliminated():
    decision = boin_next_dose(0, [3, 0, 0], [3, 0, 0], BOUNDARIES_30)
    assert (decision.action, decision.next_level_index) == ("stop", None)
    assert decision.eliminated == (True, True, True)
    assert "Pr(p > 0.30) = 0.992 > 0.95" in decision.reason


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ((3, [3, 3], [0, 0]), "current_level_index must be a 0-based level from 0 to 1"),
        ((1, [3, 0], [0, 0]), "must have between 1 and"),
        ((0, [31, 0], [0, 0]), "must have between 1 and"),
        ((1, [3, 3], [0, 0], BOUNDARIES_30, [False, True]), "is eliminated"),
        ((0, [3, 3, 0], [0, 0, 0], BOUNDARIES_30, [False, True, False]), "every level above"),
        ((0, [3, 3], [0, 0], BOUNDARIES_30, [0, 0]), "booleans"),
    ],
)
def test_next_dose_rejects_bad_arguments(arguments, message):
    if len(arguments) == 3:
        arguments = (*arguments, BOUNDARIES_30)
    with pytest.raises(ValueError, match=message):
        boin_next_dose(*arguments)


@st.composite
def trial_states(draw):
    """Any counts at up to 6 levels, a treated current level, and eliminated levels above it."""
    n_levels = draw(st.integers(1, 6))
    current = draw(st.integers(0, n_levels - 1))
    n_patients = [draw(st.integers(1 if level == current else 0, 12)) for level in range(n_levels)]
    n_dlt = [draw(st.integers(0, n)) for n in n_patients]
    first_eliminated = draw(st.integers(current + 1, n_levels))
    eliminated = [level >= first_eliminated for level in range(n_levels)]
    return current, n_patients, n_dlt, eliminated


def _aggressiveness(decision) -> int:
    return -1 if decision.next_level_index is None else decision.next_level_index


@settings(max_examples=300, deadline=None)
@given(trial_states())
def test_next_dose_never_skips_and_one_more_dlt_is_never_more_aggressive(state):
    current, n_patients, n_dlt, eliminated = state
    decision = boin_next_dose(current, n_patients, n_dlt, BOUNDARIES_30, eliminated)
    if decision.next_level_index is not None:
        assert abs(decision.next_level_index - current) <= 1
        assert not decision.eliminated[decision.next_level_index]
    if n_dlt[current] < n_patients[current]:
        worse = list(n_dlt)
        worse[current] += 1
        worse_decision = boin_next_dose(current, n_patients, worse, BOUNDARIES_30, eliminated)
        assert _aggressiveness(worse_decision) <= _aggressiveness(decision)


# ---- simulation -----------------------------------------------------------------------------


def simulate_one_trial_at_a_time(uniforms, p_true, boundaries, cohort_size, n_cohorts, start_level=0):
    """get.oc's loop written plainly with boin_next_dose and boin_select_mtd, one trial at a time."""
    n_levels = len(p_true)
    planned = cohort_size * n_cohorts
    results = {"selected_level": [], "n_patients": [], "n_dlt": [], "stopped_early": [], "patient_level": []}
    for trial_uniforms in uniforms:
        level, stopped = start_level, False
        n_patients, n_dlt = [0] * n_levels, [0] * n_levels
        eliminated = [False] * n_levels
        patient_level = [-1] * planned
        for cohort in range(n_cohorts):
            for patient in range(cohort * cohort_size, (cohort + 1) * cohort_size):
                n_patients[level] += 1
                n_dlt[level] += int(trial_uniforms[patient] < p_true[level])
                patient_level[patient] = level
            if cohort == n_cohorts - 1:
                break
            decision = boin_next_dose(level, n_patients, n_dlt, boundaries, eliminated)
            eliminated = list(decision.eliminated)
            if decision.action == "stop":
                stopped = True
                break
            level = decision.next_level_index
        selected = None
        if not stopped:
            selected = boin_select_mtd(
                n_patients, n_dlt, target=boundaries.target, cutoff_eliminate=boundaries.cutoff_eliminate
            ).selected_level_index
        results["selected_level"].append(-1 if selected is None else selected)
        results["n_patients"].append(n_patients)
        results["n_dlt"].append(n_dlt)
        results["stopped_early"].append(stopped)
        results["patient_level"].append(patient_level)
    return {name: np.array(values) for name, values in results.items()}


@pytest.mark.parametrize(
    ("target", "p_true", "cohort_size", "n_cohorts", "start_level"),
    [
        (0.30, [0.05, 0.15, 0.30, 0.45, 0.60], 3, 10, 0),  # scenario A
        (0.30, [0.50, 0.60, 0.70, 0.80, 0.90], 3, 10, 0),  # scenario D
        (0.25, [0.25, 0.35, 0.50, 0.60, 0.70, 0.80], 3, 12, 0),  # scenario C
        (0.30, [0.10, 0.20, 0.35, 0.50], 1, 20, 2),  # cohorts of one, start in the middle
        (0.25, [0.20, 0.30, 0.45], 2, 9, 1),
    ],
)
def test_vectorised_simulation_equals_one_trial_at_a_time(target, p_true, cohort_size, n_cohorts, start_level):
    uniforms = np.random.default_rng(2024).random((300, cohort_size * n_cohorts))
    boundaries = boin_boundaries(target, max_patients=cohort_size * n_cohorts)
    fast = simulate_boin(
        uniforms, p_true, boundaries=boundaries, cohort_size=cohort_size, n_cohorts=n_cohorts, start_level=start_level
    )
    slow = simulate_one_trial_at_a_time(uniforms, p_true, boundaries, cohort_size, n_cohorts, start_level)
    for name, expected in slow.items():
        np.testing.assert_array_equal(getattr(fast, name), expected, err_msg=name)


def test_same_uniforms_give_identical_results():
    uniforms = np.random.default_rng(7).random((500, 30))
    p_true = [0.05, 0.15, 0.30, 0.45, 0.60]
    first = simulate_boin(uniforms, p_true, boundaries=BOUNDARIES_30, cohort_size=3, n_cohorts=10)
    second = simulate_boin(uniforms.copy(), p_true, boundaries=BOUNDARIES_30, cohort_size=3, n_cohorts=10)
    for name in ("selected_level", "n_patients", "n_dlt", "stopped_early", "patient_level"):
        np.testing.assert_array_equal(getattr(first, name), getattr(second, name))
    with pytest.raises(ValueError):
        first.n_patients[0, 0] = 99  # results are read-only


REFERENCE_TRIALS = 50_000
REFERENCE_SCENARIOS = {
    # name: target, p_true, n_cohorts, selection % by level, mean patients by level, % no MTD
    "A": (0.30, [0.05, 0.15, 0.30, 0.45, 0.60], 10, [1.14, 23.19, 54.96, 19.23, 1.44], [4.158, 9.133, 11.152, 4.755, 0.794], 0.03),
    "C": (0.25, [0.25, 0.35, 0.50, 0.60, 0.70, 0.80], 12, [63.53, 20.57, 1.54, 0.08, 0, 0], [22.626, 8.311, 1.738, 0.187, 0.011, 0], 14.28),
    "D": (0.30, [0.50, 0.60, 0.70, 0.80, 0.90], 10, [16.74, 0.38, 0.01, 0, 0], [13.242, 1.230, 0.084, 0.002, 0], 82.87),
}


@pytest.mark.parametrize("scenario", list(REFERENCE_SCENARIOS))
def test_operating_characteristics_match_boin_get_oc(scenario):
    """Within 4 combined Monte Carlo standard errors of BOIN 2.7.2 get.oc (50,000 trials, seed 6)."""
    target, p_true, n_cohorts, selection_percent, mean_patients, no_selection_percent = REFERENCE_SCENARIOS[scenario]
    n_trials = 20_000
    uniforms = np.random.default_rng(11).random((n_trials, 3 * n_cohorts))
    boundaries = boin_boundaries(target, max_patients=3 * n_cohorts)
    summary = simulate_boin(uniforms, p_true, boundaries=boundaries, cohort_size=3, n_cohorts=n_cohorts).summary()

    def check_proportion(ours, reference_percent, label):
        reference = reference_percent / 100
        pooled = (ours * n_trials + reference * REFERENCE_TRIALS) / (n_trials + REFERENCE_TRIALS)
        standard_error = np.sqrt(pooled * (1 - pooled) * (1 / n_trials + 1 / REFERENCE_TRIALS))
        assert abs(ours - reference) <= 4 * standard_error, f"{label}: {ours:.4f} vs {reference:.4f} (SE {standard_error:.4f})"

    for level, reference in enumerate(selection_percent):
        check_proportion(summary.selection_probability[level], reference, f"selection at level {level + 1}")
    check_proportion(summary.no_selection_probability, no_selection_percent, "no selection")
    combined = np.sqrt(1 + n_trials / REFERENCE_TRIALS)  # same per-trial spread in both runs
    for level, reference in enumerate(mean_patients):
        ours, standard_error = summary.mean_patients[level], summary.mean_patients_se[level] * combined
        assert abs(ours - reference) <= 4 * standard_error + 1e-9, f"patients at level {level + 1}: {ours:.3f} vs {reference:.3f}"


def test_summary_is_consistent():
    uniforms = np.random.default_rng(3).random((2000, 30))
    simulation = simulate_boin(uniforms, [0.5, 0.6, 0.7, 0.8, 0.9], boundaries=BOUNDARIES_30, cohort_size=3, n_cohorts=10)
    summary = simulation.summary()
    assert summary.n_trials == 2000
    assert summary.selection_probability.sum() + summary.no_selection_probability == pytest.approx(1)
    assert summary.mean_total_patients == pytest.approx(summary.mean_patients.sum())
    assert summary.mean_total_dlt == pytest.approx(summary.mean_dlt.sum())
    assert summary.early_stop_probability <= summary.no_selection_probability
    p = summary.early_stop_probability
    assert summary.early_stop_probability_se == pytest.approx(np.sqrt(p * (1 - p) / 1999), rel=1e-9)
    stopped = simulation.stopped_early
    assert np.all(simulation.selected_level[stopped] == -1)
    assert np.all((simulation.patient_level >= 0).sum(axis=1) == simulation.n_patients.sum(axis=1))


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"uniforms": np.zeros((5, 20))}, "at least 30 columns"),
        ({"p_true": [0.1, 1.2]}, "p_true must be"),
        ({"boundaries": boin_boundaries(0.3, max_patients=12)}, "boundaries must cover"),
        ({"cohort_size": 0}, "cohort_size must be a positive integer"),
        ({"start_level": 5}, "start_level must be a 0-based level"),
    ],
)
def test_simulate_rejects_bad_arguments(arguments, message):
    call = {"uniforms": np.zeros((5, 30)), "p_true": [0.1, 0.2, 0.3, 0.4, 0.5], "boundaries": BOUNDARIES_30,
            "cohort_size": 3, "n_cohorts": 10} | arguments
    with pytest.raises(ValueError, match=message):
        simulate_boin(call.pop("uniforms"), call.pop("p_true"), **call)
