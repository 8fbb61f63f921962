"""3+3 (lupusbayes.decisions.three_plus_three) against the R package ``escalation``.

Expected decisions come from escalation's README and ``tests/testthat/test_three_plus_three.R``
(see /work/notes/escalation_facts.md, section 2). Levels in outcome strings count from 1;
the API's levels count from 0.
"""

from __future__ import annotations

import doctest

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lupusbayes.decisions import three_plus_three
from lupusbayes.decisions.three_plus_three import (
    CohortOutcome,
    classical_three_plus_three_mtd,
    format_outcomes,
    parse_outcomes,
    three_plus_three_from_outcomes,
    three_plus_three_next,
)
from lupusbayes.simulation import rule_based
from lupusbayes.simulation.rule_based import simulate_three_plus_three


def test_docstring_examples_run():
    assert doctest.testmod(three_plus_three).failed == 0
    assert doctest.testmod(rule_based).failed == 0  # the simulator's examples


# ---- outcome strings ------------------------------------------------------------------------


def test_parse_outcomes():
    assert parse_outcomes("1NNN 2NNT") == (
        CohortOutcome(0, (False, False, False)),
        CohortOutcome(1, (False, False, True)),
    )
    assert parse_outcomes("  2NNT\t1NN ") == (CohortOutcome(1, (False, False, True)), CohortOutcome(0, (False, False)))
    assert parse_outcomes("1NNN2T") == parse_outcomes("1NNN 2T")  # escalation's pattern allows no space
    assert parse_outcomes("") == ()
    cohort = parse_outcomes("12TNT")[0]
    assert (cohort.dose_level, cohort.n_patients, cohort.n_dlt) == (11, 3, 2)


@pytest.mark.parametrize("text", ["1NNN 2NNT", "1N", "3TTT 2NTN 2NNN", ""])
def test_format_outcomes_reverses_parse(text):
    assert format_outcomes(parse_outcomes(text)) == text


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("1nnn", "not a valid outcome string"),  # upper case only
        ("NNN", "not a valid outcome string"),
        ("1", "not a valid outcome string"),
        ("1NNN, 2NNT", "not a valid outcome string"),
        ("1.2NNN", "not a valid outcome string"),  # dose combinations are not supported
        ("1NXN", "not a valid outcome string"),
        ("   ", "not a valid outcome string"),  # as in escalation: only "" means no patients
        ("0NNN", "dose levels in outcome strings start at 1"),
        ("1NNN 00T", "dose levels in outcome strings start at 1"),
    ],
)
def test_parse_outcomes_rejects_bad_strings(text, message):
    with pytest.raises(ValueError, match=message):
        parse_outcomes(text)


def test_parse_outcomes_rejects_non_strings():
    with pytest.raises(ValueError, match="must be a str"):
        parse_outcomes(None)


# ---- decisions ------------------------------------------------------------------------------


def test_readme_examples():
    first = three_plus_three_from_outcomes("1NNN", 5)
    assert (first.action, first.next_level_index, first.selected_level_index) == ("escalate", 1, None)

    third_level = three_plus_three_from_outcomes("1NNN 2NNN 3NNT", 5)
    assert (third_level.action, third_level.next_level_index) == ("stay", 2)

    stop = three_plus_three_from_outcomes("1NNN 2NNN 3NNT 3NTN", 5)
    assert (stop.action, stop.next_level_index, stop.selected_level_index) == ("stop", None, 1)
    assert stop.reason == "2 DLTs in 6 patients at level 3 (at least 2 DLTs): stop and select level 2."

    assert three_plus_three_from_outcomes("2NTN", 5).next_level_index == 1
    deescalate = three_plus_three_from_outcomes("2NTT", 5, allow_deescalate=True)
    assert (deescalate.action, deescalate.next_level_index) == ("deescalate", 0)


def test_too_toxic_second_level_selects_the_first_even_with_three_patients():
    decision = three_plus_three_from_outcomes("1NNN 2NNT 2NNT", 5)
    assert (decision.action, decision.selected_level_index) == ("stop", 0)


def test_top_level_without_dlts_stops_and_selects_it():
    decision = three_plus_three_from_outcomes("1NNN 2NNN 3NNN 4NNN 5NNN", 5)
    assert (decision.action, decision.next_level_index, decision.selected_level_index) == ("stop", None, 4)
    assert "highest level" in decision.reason


def test_no_patients_starts_at_the_lowest_level():
    decision = three_plus_three_from_outcomes("", 5)
    assert (decision.action, decision.next_level_index, decision.selected_level_index) == ("stay", 0, None)
    assert three_plus_three_next([0, 0], [0, 0], None).next_level_index == 0


# escalation's tests/testthat/test_three_plus_three.R: (outcomes, recommended dose counted from
# 1 or None, continue). While continuing the recommendation is the next level; when stopping
# it is the selected level.
WITHOUT_DEESCALATION = [
    ("1N", 1, True), ("1T", 1, True), ("1NN", 1, True), ("1NT", 1, True), ("1TT", 1, True),
    ("1NNN", 2, True), ("1NNT", 1, True), ("1NTT", None, False), ("1TTT", None, False),
    ("1NNN 2N", 2, True), ("1NNN 2TT", 2, True), ("1NNN 2NNN", 3, True), ("1NNN 2NNT", 2, True),
    ("1NNN 2NTT", 1, False), ("1NNN 2TTT", 1, False), ("1NNN 2NNT 2N", 2, True),
    ("1NNN 2NNT 2TT", 2, True), ("1NNN 2NNT 2NNN", 3, True), ("1NNN 2NNT 2NNT", 1, False),
    ("1NNN 2NNT 2NTT", 1, False), ("1NNN 2NNN 3NNN 4NNN 5N", 5, True),
    ("1NNN 2NNN 3NNN 4NNN 5NN", 5, True), ("1NNN 2NNN 3NNN 4NNN 5NNN", 5, False),
    # paths that left the algorithm (strict mode off)
    ("1NNN 1T", 1, True), ("1NNN 1NNT", 2, True), ("1NNN 1NTT", None, False), ("1NNN 1TTT", None, False),
]
WITH_DEESCALATION = [
    ("1NTT", None, False), ("1TTT", None, False), ("1NNN 2NTT", 1, True), ("1NNN 2TTT", 1, True),
    ("1NNN 2NNT 2NNT", 1, True), ("1NNN 2NNT 2NTT", 1, True), ("1NNN 2NNT 2NNN", 3, True),
    ("1NNN 2NNN 3NNN 4NNN 5NNN", 5, False), ("1NNN 2NNN 3NNN 4NNN 5NNT", 5, True),
    ("1NNN 2NNN 3NNN 4NNN 5NTT", 4, True), ("1NNN 2NNN 3NNN 4NNN 5NNT 5NNN", 5, False),
    ("1NNN 2NNN 3NNN 4NNN 5NNT 5NNT", 4, True), ("1NNN 2NNN 3NNN 4NNN 5NNT 5TTT 4NN", 4, True),
    ("1NNN 2NNN 3NNN 4NNN 5NNT 5TTT 4NNN", 4, False), ("1NNN 2NNN 3NNN 4NNN 5NNT 5TTT 4NNT", 4, False),
    ("1NNN 2NNN 3NNN 4NNN 5NNT 5TTT 4NTT", 3, True), ("1NNN 2NNN 3NNN 4NNN 5NNT 5TTT 4NTT 3NNN", 3, False),
    ("1NNN 2NNN 3NNN 4NNN 5NNT 5TTT 4NTT 3NTT", 2, True),
    ("1NNN 2NNN 3NNN 4NNN 5NNT 5TTT 4NTT 3TTT 2NNT", 2, False),
    ("1NNN 2NNN 3NNN 4NNN 5NNT 5TTT 4NTT 3TTT 2NTT", 1, True),
    ("1NTN 1NTN 2NTN 2NTN 3NTT", None, False),  # Korn: no level with 6 patients and <= 1 DLT
    ("2NNT 2NNN", 3, True), ("2NNT 2NNT", 1, True), ("2NNT 2NNT 1NT", 1, True),
]


def _recommended(decision):
    """escalation's (recommended dose counted from 1, continue) for a decision."""
    continuing = decision.action != "stop"
    level = decision.next_level_index if continuing else decision.selected_level_index
    return (None if level is None else level + 1), continuing


@pytest.mark.parametrize(("outcomes", "dose", "continuing"), WITHOUT_DEESCALATION)
def test_matches_escalation_without_deescalation(outcomes, dose, continuing):
    decision = three_plus_three_from_outcomes(outcomes, 5, strict=False)
    assert _recommended(decision) == (dose, continuing)


@pytest.mark.parametrize(("outcomes", "dose", "continuing"), WITH_DEESCALATION)
def test_matches_escalation_with_deescalation(outcomes, dose, continuing):
    decision = three_plus_three_from_outcomes(outcomes, 5, allow_deescalate=True, strict=False)
    assert _recommended(decision) == (dose, continuing)


def test_stops_when_the_next_level_is_already_closed():
    decision = three_plus_three_from_outcomes("1NNN 2NNN 3NNN 4NNN 5NNT 5TTT 4NNT", 5, allow_deescalate=True)
    assert (decision.action, decision.selected_level_index) == ("stop", 3)
    assert decision.reason == "1 DLT in 6 patients at level 4, and level 5 has 4 DLTs in 6 patients: stop and select level 4."


def test_korn_selects_the_highest_level_with_six_patients_and_at_most_one_dlt():
    # Level 3 (1-based) is too toxic and level 2 already has 6 patients: select level 2.
    decision = three_plus_three_next([3, 6, 3, 0], [0, 1, 2, 0], 2, allow_deescalate=True)
    assert (decision.action, decision.selected_level_index) == ("stop", 1)
    assert "level 2 is the highest with 6 patients and at most 1 DLT" in decision.reason
    without = three_plus_three_next([3, 6, 3, 0], [0, 1, 2, 0], 2)
    assert (without.action, without.selected_level_index) == ("stop", 1)


@pytest.mark.parametrize(
    ("outcomes", "message"),
    [
        ("1NNN 1N", "a level without DLTs has more than 3 patients"),
        ("1NNN 1NNN", "a level without DLTs has more than 3 patients"),
        ("1NNN 2NNT 2NNN 4N", "some levels were skipped"),
        ("1NNN 2TTT 1N", "a level without DLTs has more than 3 patients"),
        ("1NNT 1NNN 1T", "more than 6 patients"),
        ("1NNT 2N 1N", "several cohorts are in progress"),
        ("1NT 2NNN", "a cohort at a level other than the last one given is incomplete"),
    ],
)
def test_strict_mode_rejects_paths_the_three_plus_three_cannot_produce(outcomes, message):
    with pytest.raises(ValueError, match=message):
        three_plus_three_from_outcomes(outcomes, 5)


def test_from_outcomes_rejects_bad_arguments():
    with pytest.raises(ValueError, match="only 3 levels"):
        three_plus_three_from_outcomes("1NNN 2NNN 3NNN 4N", 3)
    with pytest.raises(ValueError, match="n_levels must be a positive integer"):
        three_plus_three_from_outcomes("1NNN", 0)


def test_next_rejects_bad_arguments():
    with pytest.raises(ValueError, match="last_level is required"):
        three_plus_three_next([3, 0], [0, 0], None)
    with pytest.raises(ValueError, match="has no patients"):
        three_plus_three_next([3, 0], [0, 0], 1)
    with pytest.raises(ValueError, match="at most 6 patients per level"):
        three_plus_three_next([9, 0], [1, 0], 0)
    with pytest.raises(ValueError, match="last_level must be a 0-based level"):
        three_plus_three_next([3, 0], [0, 0], 2)
    with pytest.raises(ValueError, match="cannot exceed"):
        three_plus_three_next([3, 0], [4, 0], 0)


@st.composite
def reachable_states(draw):
    """(n_levels, allow_deescalate, [(n_patients, n_dlt, last_level), ...]) along a 3+3 path."""
    n_levels = draw(st.integers(1, 5))
    allow_deescalate = draw(st.booleans())
    n_patients, n_dlt = [0] * n_levels, [0] * n_levels
    level, states = 0, []
    for _ in range(2 * n_levels):
        n_patients[level] += 3
        n_dlt[level] += draw(st.integers(0, 3))
        states.append((list(n_patients), list(n_dlt), level))
        decision = three_plus_three_next(n_patients, n_dlt, level, allow_deescalate=allow_deescalate)
        if decision.action == "stop":
            break
        level = decision.next_level_index
    return n_levels, allow_deescalate, states


def _dose_reached(decision) -> int:
    """The level the decision leads to: the next level, or the selected one (-1 for none)."""
    level = decision.next_level_index if decision.action != "stop" else decision.selected_level_index
    return -1 if level is None else level


@settings(max_examples=300, deadline=None)
@given(reachable_states())
def test_never_skips_and_one_more_dlt_is_never_more_aggressive(path):
    _, allow_deescalate, states = path
    for n_patients, n_dlt, level in states:
        decision = three_plus_three_next(n_patients, n_dlt, level, allow_deescalate=allow_deescalate)
        if decision.next_level_index is not None:
            assert abs(decision.next_level_index - level) <= 1
        else:
            assert decision.action == "stop"
        if n_dlt[level] < n_patients[level]:
            worse = list(n_dlt)
            worse[level] += 1
            worse_decision = three_plus_three_next(n_patients, worse, level, allow_deescalate=allow_deescalate)
            assert _dose_reached(worse_decision) <= _dose_reached(decision)


# ---- simulation -----------------------------------------------------------------------------


def simulate_one_trial_at_a_time(uniforms, p_true, max_patients, allow_deescalate):
    """The 3+3 written plainly with three_plus_three_next, one trial at a time (the classical rule at the cap)."""
    n_levels = len(p_true)
    results = {"selected_level": [], "n_patients": [], "n_dlt": [], "stopped_early": [], "patient_level": []}
    for trial_uniforms in uniforms:
        n_patients, n_dlt = [0] * n_levels, [0] * n_levels
        patient_level = [-1] * max_patients
        level, selected, stopped_early, enrolled = 0, None, False, 0
        while True:
            for patient in range(enrolled, enrolled + 3):
                n_patients[level] += 1
                n_dlt[level] += int(trial_uniforms[patient] < p_true[level])
                patient_level[patient] = level
            enrolled += 3
            decision = three_plus_three_next(n_patients, n_dlt, level, allow_deescalate=allow_deescalate)
            if decision.action == "stop":
                selected, stopped_early = decision.selected_level_index, decision.selected_level_index is None
                break
            if enrolled >= max_patients:  # stopped by the sample size: the classical rule, never an untreated level
                selected, _ = classical_three_plus_three_mtd(n_patients, n_dlt)
                break
            level = decision.next_level_index
        results["selected_level"].append(-1 if selected is None else selected)
        results["n_patients"].append(n_patients)
        results["n_dlt"].append(n_dlt)
        results["stopped_early"].append(stopped_early)
        results["patient_level"].append(patient_level)
    return {name: np.array(values) for name, values in results.items()}


@pytest.mark.parametrize("allow_deescalate", [False, True])
@pytest.mark.parametrize(
    ("p_true", "max_patients"),
    [
        ([0.05, 0.10, 0.20, 0.35, 0.50], None),
        ([0.30, 0.40, 0.50], None),
        ([0.10, 0.25, 0.45, 0.60], 12),  # a sample-size cap that binds
        ([0.2], None),
    ],
)
def test_vectorised_simulation_equals_one_trial_at_a_time(p_true, max_patients, allow_deescalate):
    cap = 6 * len(p_true) if max_patients is None else max_patients
    uniforms = np.random.default_rng(5).random((400, cap + 3))  # an extra, unused column block
    fast = simulate_three_plus_three(uniforms, p_true, max_patients=max_patients, allow_deescalate=allow_deescalate)
    slow = simulate_one_trial_at_a_time(uniforms, p_true, cap, allow_deescalate)
    for name, expected in slow.items():
        np.testing.assert_array_equal(getattr(fast, name), expected, err_msg=name)


def test_simulation_summary_for_a_known_case():
    # Every level safe: each trial treats 3 at every level and selects the top one.
    uniforms = np.random.default_rng(0).random((200, 30))  # 6 per level: the most a 3+3 can treat
    summary = simulate_three_plus_three(uniforms, [0.0] * 5).summary()
    assert summary.selection_probability.tolist() == [0, 0, 0, 0, 1]
    assert summary.mean_patients.tolist() == [3] * 5
    # Every level toxic: 3 DLTs at the first level stop every trial.
    toxic = simulate_three_plus_three(uniforms[:, :15], [1.0] * 5, max_patients=15)
    assert toxic.stopped_early.all() and (toxic.selected_level == -1).all()
    assert (toxic.patient_level[:, 3:] == -1).all()


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"uniforms": np.zeros((4, 20))}, "at least 30 columns"),
        ({"max_patients": 10}, "max_patients must be a positive multiple of 3"),
        ({"p_true": []}, "p_true must be"),
    ],
)
def test_simulate_rejects_bad_arguments(arguments, message):
    call = {"uniforms": np.zeros((4, 30)), "p_true": [0.1, 0.2, 0.3, 0.4, 0.5]} | arguments
    with pytest.raises(ValueError, match=message):
        simulate_three_plus_three(call.pop("uniforms"), call.pop("p_true"), **call)
