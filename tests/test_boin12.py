"""BOIN12 (lupusbayes.decisions.boin12 and its simulator) against published reference values.

Sources of the values:

* Lin, Zhou, Yan, Li & Yuan (2020), JCO Precision Oncology 4:1393 ("the paper"): the utility
  benchmark and toxicity boundaries at phi_T = 0.35, phi_E = 0.25 (recomputed here from the
  paper's formulas by plain arithmetic), the rank-based desirability scores of its Table 3 as
  recorded by the R package escalation (``tests/testthat/test_boin12_rds.R``), its worked
  example on p.1396 and the dose path of its Data Supplement Figure S2 (both recorded in
  escalation's ``tests/testthat/test_boin12.R``);
* the reference web application (MD Anderson BOIN12, www.trialdesign.org): the next dose after
  one cohort for two parameterisations, as recorded in escalation's ``test_boin12.R`` ("BOIN12
  matches MDAnderson Shiny app - parameterisation 1 / 2").

Outcome strings follow escalation: "2NET" is a cohort of three at dose 2 (counted from 1) with
outcomes N (neither), E (response only), T (DLT only) and B (both).
"""

from __future__ import annotations

import doctest
import re

import numpy as np
import pytest

from lupusbayes.decisions import boin12
from lupusbayes.decisions.boin import boin_select_mtd
from lupusbayes.decisions.boin12 import (
    Boin12Settings,
    boin12_desirability_table,
    boin12_next_dose,
    boin12_select_dose,
)
from lupusbayes.simulation import boin_extensions_simulation
from lupusbayes.simulation.boin_extensions_simulation import simulate_boin12

PAPER = Boin12Settings(target_toxicity=0.35, efficacy_lower_limit=0.25)  # utilities 100, 40, 60, 0; N* = 6
APP_PARAMETERISATION_2 = Boin12Settings(
    target_toxicity=0.15, efficacy_lower_limit=0.4, utility_no_response_no_dlt=50, utility_response_and_dlt=30,
    toxicity_cutoff=0.9, futility_cutoff=0.8,
)


def counts_from_outcomes(outcomes: str, n_levels: int = 5):
    """(current level index, patients, DLTs, responses, both) from an escalation outcome string."""
    n, dlt, response, both = (np.zeros(n_levels, dtype=int) for _ in range(4))
    current = None
    for cohort in outcomes.split():
        match = re.fullmatch(r"(\d+)([NETB]+)", cohort)
        current = int(match.group(1)) - 1
        for outcome in match.group(2):
            n[current] += 1
            dlt[current] += outcome in "TB"
            response[current] += outcome in "EB"
            both[current] += outcome == "B"
    return current, n, dlt, response, both


def next_dose_from_outcomes(settings: Boin12Settings, outcomes: str):
    current, n, dlt, response, both = counts_from_outcomes(outcomes)
    return boin12_next_dose(settings, current, n, dlt, response, n_dlt_and_response_by_level=both)


def test_docstring_examples_run():
    assert doctest.testmod(boin12).failed == 0
    assert doctest.testmod(boin_extensions_simulation).failed == 0


# ---- design numbers -------------------------------------------------------------------------


def test_benchmark_and_boundaries_at_the_papers_limits():
    # The paper's formulas, by plain arithmetic: u_bar = 100 x .25 x .65 + 40 x .65 x .75 + 60 x .35 x .25 = 41,
    # u_b = 41 + (100 - 41) / 2 = 70.5; BOIN's boundaries at phi_T = 0.35 (p_saf 0.21, p_tox 0.49): 0.276 and 0.419.
    assert PAPER.highest_unacceptable_utility == pytest.approx(100 * 0.25 * 0.65 + 40 * 0.65 * 0.75 + 60 * 0.35 * 0.25)
    assert PAPER.utility_benchmark == pytest.approx(70.5)
    lambda_e = np.log(0.79 / 0.65) / np.log(0.35 * 0.79 / (0.21 * 0.65))
    lambda_d = np.log(0.65 / 0.51) / np.log(0.49 * 0.65 / (0.35 * 0.51))
    boundaries = PAPER.boundaries(12)
    assert boundaries.lambda_escalate == pytest.approx(lambda_e)
    assert boundaries.lambda_deescalate == pytest.approx(lambda_d)
    assert (round(boundaries.lambda_escalate, 3), round(boundaries.lambda_deescalate, 3)) == (0.276, 0.419)
    assert PAPER.additive_utility and not APP_PARAMETERISATION_2.additive_utility


@pytest.mark.parametrize(
    "changes",
    [dict(target_toxicity=0.7), dict(efficacy_lower_limit=0), dict(utility_response_no_dlt=120),
     dict(utility_no_response_no_dlt=-1), dict(stay_patients=0), dict(exploration_patients=0),
     dict(toxicity_cutoff=1.0), dict(prior_alpha=0)],
)
def test_settings_reject_values_out_of_range(changes):
    with pytest.raises(ValueError):
        Boin12Settings(**{"target_toxicity": 0.35, "efficacy_lower_limit": 0.25, **changes})


def test_non_additive_utilities_need_joint_counts():
    with pytest.raises(ValueError, match="not additive"):
        boin12_next_dose(APP_PARAMETERISATION_2, 0, [3, 0], [0, 0], [1, 0])
    with pytest.raises(ValueError, match="additive"):
        boin12_desirability_table(APP_PARAMETERISATION_2, [3])


# ---- the rank-based desirability table (the paper's Table 3) --------------------------------

# (patients, DLTs, responses) -> RDS, from escalation's test_boin12_rds.R ("Recreate Table 3 of Lin et al.")
PAPER_TABLE_3 = {
    (0, 0, 0): 60, (3, 0, 3): 91, (6, 1, 5): 87, (6, 5, 1): "E", (9, 0, 8): 99,
    (9, 2, 3): 32.5, (9, 5, 5): 32.5, (9, 3, 1): 7, (9, 4, 0): "E", (9, 6, 9): "E",
}


def test_desirability_table_reproduces_the_papers_table_3():
    table = boin12_desirability_table(PAPER, [0, 3, 6, 9])
    scores = {(row["n_patients"], row["n_dlt"], row["n_responses"]): row["desirability_score"] for row in table}
    assert len(table) == 1 + 16 + 49 + 100
    for key, expected in PAPER_TABLE_3.items():
        assert scores[key] == expected, key
    # 9/2/3 and 9/5/5 tie: both have 4.6 quasi-events (60 x 3 + 40 x 7 = 60 x 5 + 40 x 4 = 460)
    admissible = [row for row in table if row["admissible"]]
    assert sorted(row["desirability_score"] for row in admissible)[-1] == len(admissible)


def test_other_utilities_change_the_ranks():
    # escalation's test: with u(neither) = 50 and u(both) = 55 the ranks change (here the utilities stay additive
    # only if they sum to 100, so use 45 and 55)
    table = boin12_desirability_table(
        Boin12Settings(0.35, 0.25, utility_no_response_no_dlt=45, utility_response_and_dlt=55), [0, 3, 6, 9]
    )
    scores = {(row["n_patients"], row["n_dlt"], row["n_responses"]): row["desirability_score"] for row in table}
    assert scores[(0, 0, 0)] != 60 and scores[(3, 0, 3)] != 91


# ---- next dose: the paper and the reference application --------------------------------------


def test_papers_worked_example_p1396():
    decision = next_dose_from_outcomes(PAPER, "1NNN 2ENT 3ETT 2EEN")
    assert (decision.action, decision.next_level_index) == ("stay", 1)  # dose 2
    assert decision.candidate_level_indices == (0, 1, 2)
    assert "level 2 has the highest desirability" in decision.reason


def test_data_supplement_figure_s2_dose_path():
    # With the extra exploration (9 patients) and the application's 12 patients per level; escalation's
    # test_boin12.R, "Section 6 and Figure S2 of Data Supplement" (doses counted from 1; None = stop).
    settings = Boin12Settings(0.35, 0.25, exploration_patients=9, max_patients_per_level=12)
    cohorts = "1NNN 2NNB 3NEE 3NTN 4ETE 4NBE 4BNN 5BEN 5NBT 4NEN".split()
    expected = [2, 3, 3, 4, 4, 4, 5, 5, 4, None]
    for end, dose in enumerate(expected, start=1):
        decision = next_dose_from_outcomes(settings, " ".join(cohorts[:end]))
        shown = None if decision.next_level_index is None else decision.next_level_index + 1
        assert shown == dose, cohorts[:end]
    assert decision.stopped_for == "patients_at_level"
    exploring = next_dose_from_outcomes(settings, " ".join(cohorts[:7]))
    assert "explore" in exploring.reason
    # without the extra exploration (this module's default) the rate 3/9 keeps the trial at level 4 (n >= N*)
    assert next_dose_from_outcomes(PAPER, " ".join(cohorts[:7])).next_level_index == 3
    _, n, dlt, response, both = counts_from_outcomes(" ".join(cohorts))
    selection = boin12_select_dose(settings, n, dlt, response, n_dlt_and_response_by_level=both)
    assert (selection.mtd_level_index, selection.selected_level_index) == (3, 3)


# escalation's test_boin12.R, "BOIN12 matches MDAnderson Shiny app - parameterisation 1" (outcomes -> dose)
APP_PARAMETERISATION_1_CASES = {
    "1EBB": 1, "1EEB": 1, "1EEE": 1, "1EET": 1, "1ETB": 1, "1ETT": 1, "1NBB": 1, "1NEB": 1, "1NEE": 1, "1NET": 2,
    "1NNB": 2, "1NNE": 2, "1NNN": 2, "1NNT": 2, "1NTB": 1, "1NTT": 1,
    "2BBB": 1, "2EBB": 1, "2EEB": 2, "2EEE": 2, "2EET": 2, "2ETB": 1, "2ETT": 1, "2NBB": 1, "2NEB": 2, "2NEE": 2,
    "2NET": 3, "2NNB": 3, "2NNE": 3, "2NNN": 3, "2NNT": 3, "2NTB": 1, "2NTT": 1, "2TBB": 1, "2TTB": 1, "2TTT": 1,
    "5BBB": 4, "5EBB": 4, "5EEB": 5, "5EEE": 5, "5EET": 5, "5ETB": 4, "5ETT": 4, "5NBB": 4, "5NEB": 5, "5NEE": 5,
    "5NET": 4, "5NNB": 4, "5NNE": 4, "5NNN": 4, "5NNT": 4, "5NTB": 4, "5NTT": 4, "5TBB": 4, "5TTB": 4, "5TTT": 4,
}
# "... parameterisation 2" (phi_T 0.15, phi_E 0.4, utilities 100/50/30/0, C_T 0.9, C_E 0.8); escalation leaves out
# the cases that "break the app" and 2NNE (levels 1 and 3 tie; the application chose 1, this module chooses 3)
APP_PARAMETERISATION_2_CASES = {
    "1EBB": 1, "1EEB": 1, "1EEE": 1, "1EET": 1, "1ETB": 1, "1ETT": 1, "1NBB": 1, "1NEB": 1, "1NEE": 1, "1NET": 1,
    "1NNB": 1, "1NNE": 2, "1NNN": 2, "1NTB": 1,
    "2BBB": 1, "2EBB": 1, "2EEB": 1, "2EEE": 2, "2EET": 1, "2ETB": 1, "2ETT": 1, "2NBB": 1, "2NEB": 1, "2NEE": 2,
    "2NET": 1, "2NNB": 1, "2NNN": 3, "2NNT": 1, "2NTB": 1, "2NTT": 1, "2TBB": 1, "2TTB": 1, "2TTT": 1,
    "5BBB": 4, "5EBB": 4, "5EEB": 4, "5EEE": 5, "5EET": 4, "5ETB": 4, "5ETT": 4, "5NBB": 4, "5NEB": 4, "5NEE": 5,
    "5NET": 4, "5NNB": 4, "5NNE": 4, "5NNN": 4, "5NNT": 4, "5NTB": 4, "5NTT": 4, "5TBB": 4, "5TTB": 4, "5TTT": 4,
}


@pytest.mark.parametrize(
    ("settings", "outcomes", "dose"),
    [(PAPER, outcomes, dose) for outcomes, dose in APP_PARAMETERISATION_1_CASES.items()]
    + [(APP_PARAMETERISATION_2, outcomes, dose) for outcomes, dose in APP_PARAMETERISATION_2_CASES.items()],
    ids=[f"p1-{o}" for o in APP_PARAMETERISATION_1_CASES] + [f"p2-{o}" for o in APP_PARAMETERISATION_2_CASES],
)
def test_next_dose_matches_the_reference_application(settings, outcomes, dose):
    decision = next_dose_from_outcomes(settings, outcomes)
    assert decision.next_level_index is not None and decision.next_level_index + 1 == dose, decision.reason


def test_cases_that_break_the_application_stop_here():
    # escalation: "Breaks the app" — all levels too toxic (3/3 DLTs at level 1), or level 1 futile with a DLT rate
    # in the de-escalation zone and nothing lower
    for outcomes in ("1TBB", "1TTB", "1TTT"):
        decision = next_dose_from_outcomes(PAPER, outcomes)
        assert decision.action == "stop" and decision.stopped_for == "lowest_level_too_toxic"
    for outcomes in ("1NNT", "1NTT"):
        decision = next_dose_from_outcomes(APP_PARAMETERISATION_2, outcomes)
        assert decision.action == "stop" and decision.stopped_for == "no_admissible_level", decision.reason


def test_fewer_than_three_dlts_never_eliminate_for_toxicity():
    # parameterisation 2: 2 DLTs in 3 patients have Pr(p > 0.15) = 0.988 > 0.9 but continue at level 1 (the app)
    decision = next_dose_from_outcomes(APP_PARAMETERISATION_2, "1EBB")
    assert not decision.too_toxic[0] and decision.next_level_index == 0


def test_futile_levels_are_skipped_and_never_chosen():
    # level 2 futile (0 responses in 9); from level 1 with no DLT the nearest admissible level above is level 3
    settings = Boin12Settings(0.35, 0.25)
    decision = boin12_next_dose(settings, 0, [3, 9, 0], [0, 1, 0], [3, 0, 0])
    assert decision.futile == (False, True, False)
    assert 1 not in decision.candidate_level_indices
    assert decision.next_level_index in (0, 2)


def test_stay_if_n_reaches_n_star_removes_the_higher_level():
    # 2 DLTs in 6 (rate 0.33, between 0.276 and 0.419): with 6 >= N* = 6 patients only levels 1-2 are candidates
    decision = boin12_next_dose(PAPER, 1, [3, 6, 0], [0, 2, 0], [0, 6, 0])
    assert decision.candidate_level_indices == (0, 1)
    assert "N* = 6" in decision.reason
    fewer = boin12_next_dose(PAPER, 1, [3, 3, 0], [0, 1, 0], [0, 3, 0])  # 1 in 3: same rate, n < N*
    assert fewer.candidate_level_indices == (0, 1, 2)


def test_one_more_dlt_never_opens_a_higher_level():
    """Across random states, one more DLT at the current level never lets the design go above the highest level
    it could choose before (its candidates, or the de-escalation target), and a stop stays a stop.

    It can change the choice *within* those levels, even upwards: the extra DLT lowers the current level's
    desirability (e.g. 1 DLT in 9 at level 1: stay; 2 DLTs in 9: escalate to the untreated level 2, whose
    prior desirability 0.295 now beats 0.290) — the published design trades toxicity against efficacy.
    """
    rng = np.random.default_rng(2020)
    upward_within = 0
    for _ in range(1500):
        n = rng.choice([0, 3, 6, 9, 12], 4)
        current = int(rng.integers(4))
        n[current] = max(n[current], 3)
        dlt = np.array([rng.integers(0, k + 1) for k in n])
        response = np.array([rng.integers(0, k + 1) for k in n])
        both = np.array([rng.integers(max(0, y + e - k), min(y, e) + 1) for k, y, e in zip(n, dlt, response)])
        if dlt[current] == n[current]:
            continue
        responder_without_dlt = response[current] - both[current] > 0
        more_dlt, more_both = dlt.copy(), both.copy()
        more_dlt[current] += 1
        more_both[current] += responder_without_dlt
        before = boin12_next_dose(PAPER, current, n, dlt, response, n_dlt_and_response_by_level=both)
        after = boin12_next_dose(PAPER, current, n, more_dlt, response, n_dlt_and_response_by_level=more_both)
        if before.action == "stop":
            assert after.action == "stop"
            continue
        ceiling = max(before.candidate_level_indices, default=before.next_level_index)
        if after.next_level_index is not None:
            assert after.next_level_index <= max(ceiling, before.next_level_index)
            upward_within += after.next_level_index > before.next_level_index
    assert upward_within > 0  # the published design does move up within its candidates after a DLT, rarely


def test_final_selection_takes_the_best_posterior_mean_utility_up_to_the_mtd():
    # levels 1-3 treated; MTD by BOIN's select.mtd at 0.35 is level 3; utilities 100 (1 + x) / (2 + n)
    n, dlt, response = [6, 6, 6, 3], [0, 1, 2, 3], [1, 4, 3, 3]
    selection = boin12_select_dose(PAPER, n, dlt, response)
    mtd = boin_select_mtd(n, dlt, target=0.35)
    assert selection.mtd_level_index == mtd.selected_level_index == 2
    x = [(60 * e + 40 * (k - y)) / 100 for k, y, e in zip(n, dlt, response)]
    expected = [100 * (1 + xi) / (2 + k) for xi, k in zip(x, n)]
    assert selection.posterior_mean_utility == pytest.approx(expected)
    assert selection.selected_level_index == int(np.argmax(expected[:3])) == 1
    # nothing selected when the lowest level is too toxic
    assert boin12_select_dose(PAPER, [3, 0], [3, 0], [0, 0]).selected_level_index is None


# ---- the vectorised simulator ----------------------------------------------------------------


def replay_boin12(settings, tox_uniforms, response_uniforms, p_true, p_response, cohort_size, n_cohorts, start_level):
    """One trial cohort by cohort with the scalar functions: (patient levels, counts, stopped early, selected)."""
    n_levels = len(p_true)
    n, dlt, response, both = (np.zeros(n_levels, dtype=int) for _ in range(4))
    levels = np.full(cohort_size * n_cohorts, -1)
    level, stopped_early = start_level, False
    for cohort in range(n_cohorts):
        for patient in range(cohort * cohort_size, (cohort + 1) * cohort_size):
            has_dlt = tox_uniforms[patient] < p_true[level]
            has_response = response_uniforms[patient] < p_response[level]
            n[level] += 1
            dlt[level] += has_dlt
            response[level] += has_response
            both[level] += has_dlt and has_response
            levels[patient] = level
        if cohort == n_cohorts - 1:
            break
        decision = boin12_next_dose(settings, level, n, dlt, response, n_dlt_and_response_by_level=both)
        if decision.action == "stop":
            stopped_early = decision.stopped_for != "patients_at_level"
            break
        level = decision.next_level_index
    selected = -1
    if not stopped_early:
        choice = boin12_select_dose(settings, n, dlt, response, n_dlt_and_response_by_level=both).selected_level_index
        selected = -1 if choice is None else choice
    return levels, n, dlt, response, stopped_early, selected


SCENARIOS = [
    ([0.05, 0.10, 0.15, 0.30, 0.45], [0.10, 0.30, 0.55, 0.60, 0.62]),
    ([0.40, 0.50, 0.60], [0.30, 0.40, 0.50]),  # too toxic: early stops
    ([0.02, 0.05, 0.08, 0.10], [0.05, 0.08, 0.10, 0.12]),  # futile: eliminations for efficacy
]


@pytest.mark.parametrize(
    "settings",
    [PAPER, Boin12Settings(0.35, 0.25, exploration_patients=9, max_patients_per_level=9), APP_PARAMETERISATION_2],
    ids=["paper", "exploration-cap", "non-additive"],
)
@pytest.mark.parametrize("scenario", range(len(SCENARIOS)))
def test_simulation_replays_the_scalar_rules_trial_by_trial(settings, scenario):
    p_true, p_response = SCENARIOS[scenario]
    rng = np.random.default_rng(100 + scenario)
    n_trials, cohort_size, n_cohorts = 25, 3, 8
    start_level = 1 if scenario == 0 else 0
    tox = rng.random((n_trials, cohort_size * n_cohorts))
    resp = rng.random((n_trials, cohort_size * n_cohorts))
    simulation = simulate_boin12(tox, resp, p_true, p_response, settings=settings, cohort_size=cohort_size,
                                 n_cohorts=n_cohorts, start_level=start_level)
    for t in range(n_trials):
        levels, n, dlt, response, stopped, selected = replay_boin12(
            settings, tox[t], resp[t], p_true, p_response, cohort_size, n_cohorts, start_level
        )
        np.testing.assert_array_equal(simulation.patient_level[t], levels)
        np.testing.assert_array_equal(simulation.n_patients[t], n)
        np.testing.assert_array_equal(simulation.n_dlt[t], dlt)
        np.testing.assert_array_equal(simulation.n_responses[t], response)
        assert simulation.stopped_early[t] == stopped
        assert simulation.selected_level[t] == selected


def test_simulation_results_are_consistent_and_read_only():
    rng = np.random.default_rng(7)
    simulation = simulate_boin12(rng.random((500, 36)), rng.random((500, 36)), [0.3, 0.45, 0.6], [0.2, 0.3, 0.4],
                                 settings=PAPER, cohort_size=3, n_cohorts=12)
    assert simulation.n_patients.sum(axis=1).max() <= 36
    np.testing.assert_array_equal((simulation.patient_level >= 0).sum(axis=1), simulation.n_patients.sum(axis=1))
    assert np.all(simulation.n_dlt <= simulation.n_patients) and np.all(simulation.n_responses <= simulation.n_patients)
    assert np.all(simulation.selected_level[simulation.stopped_early] == -1)
    assert simulation.stopped_early.any()
    with pytest.raises(ValueError):
        simulation.n_responses[0, 0] = 1
    summary = simulation.summary()
    assert summary.selection_probability.sum() + summary.no_selection_probability == pytest.approx(1)


def test_simulation_rejects_bad_inputs():
    uniforms = np.random.default_rng(1).random((10, 9))
    with pytest.raises(ValueError, match="columns"):
        simulate_boin12(uniforms, uniforms, [0.1, 0.2], [0.3, 0.4], settings=PAPER, cohort_size=3, n_cohorts=4)
    with pytest.raises(ValueError, match="one probability per level"):
        simulate_boin12(uniforms, uniforms, [0.1, 0.2], [0.3], settings=PAPER, cohort_size=3, n_cohorts=3)
