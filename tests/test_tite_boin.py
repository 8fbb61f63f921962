"""TITE-BOIN (lupusbayes.decisions.tite_boin and its simulator) against published reference values.

Sources of the values:

* Yuan, Lin, Li, Nie & Warren (2018), Clin Cancer Res 24:4921, Supplementary Table S1: the
  decision table's thresholds on the standardised total follow-up time (STFT) for a target of
  0.3, as transcribed in the tests of the Python project mdanderson-stats
  (``tests/test_tite_boin.py``, "test_published_table_s1_thresholds"; we could not read the
  supplement itself);
* BOIN's ``get.boundary`` decision table for a target of 0.3 and cohorts of 3 (printed by
  ``summary(get.boundary(0.3, 10, 3))`` and quoted in escalation's issue #6), which TITE-BOIN
  must follow when no patient is pending;
* the TITEgBOIN 0.4.0 manual's example of ``next_TITE_QuasiBOIN`` for TITE-BOIN (the manual
  prints no output: the expected decision is computed here by hand from Lin & Yuan's (2020)
  effective-sample-size formula, an independent route);
* the imputation formula of Yuan et al. (2018), recomputed with exact rational arithmetic.
"""

from __future__ import annotations

import doctest
import math
from fractions import Fraction

import numpy as np
import pytest

from lupusbayes.decisions import tite_boin
from lupusbayes.decisions.boin import boin_boundaries, boin_next_dose, boin_select_mtd
from lupusbayes.decisions.tite_boin import (
    tite_boin_effective_counts,
    tite_boin_followup_thresholds,
    tite_boin_next_dose,
)
from lupusbayes.simulation.boin_extensions_simulation import simulate_tite_boin
from lupusbayes.simulation.rule_based import simulate_boin

BOUNDARIES_30 = boin_boundaries(0.3, max_patients=30)


def test_docstring_examples_run():
    assert doctest.testmod(tite_boin).failed == 0


# ---- the published decision table -----------------------------------------------------------

# (patients, DLTs, pending) -> STFT threshold; escalation threshold when DLTs / patients < 0.3, else de-escalation
TABLE_S1 = [
    (3, 1, 1, 0.88), (6, 1, 2, 0.60), (6, 1, 3, 1.96), (6, 2, 1, 0.73), (6, 2, 2, 1.80), (6, 2, 3, 2.87),
    (9, 2, 1, 0.59), (9, 2, 2, 1.65), (9, 3, 1, 0.58), (12, 2, 4, 1.33), (12, 2, 5, 2.72), (12, 4, 1, 0.43),
]


@pytest.mark.parametrize(("n", "dlt", "pending", "published"), TABLE_S1)
def test_followup_thresholds_reproduce_table_s1(n, dlt, pending, published):
    thresholds = tite_boin_followup_thresholds(BOUNDARIES_30, n, dlt, pending)
    if dlt / n < 0.3:
        value, impossible = thresholds.escalate_if_followup_at_least, thresholds.deescalate_if_followup_at_most
        assert impossible == -math.inf
    else:
        value, impossible = thresholds.deescalate_if_followup_at_most, thresholds.escalate_if_followup_at_least
        assert impossible == math.inf
    assert round(value, 2) == pytest.approx(published, abs=1e-9)


@pytest.mark.parametrize(("n", "dlt", "pending", "published"), TABLE_S1)
def test_decisions_change_at_the_table_s1_thresholds(n, dlt, pending, published):
    """Just above / below the threshold (spread equally over the pending patients) the decision flips."""
    thresholds = tite_boin_followup_thresholds(BOUNDARIES_30, n, dlt, pending)
    escalating = dlt / n < 0.3
    threshold = thresholds.escalate_if_followup_at_least if escalating else thresholds.deescalate_if_followup_at_most
    for stft, moves in ((threshold + 0.01, escalating), (threshold - 0.01, not escalating)):
        if not 0 <= stft < pending:
            continue
        decision = tite_boin_next_dose(BOUNDARIES_30, 1, [3, n - pending, 0], [0, dlt, 0],
                                       [[], [stft / pending] * pending, []], max_pending_fraction=0.99)
        expected = ("escalate" if escalating else "deescalate") if moves else "stay"
        assert decision.action == expected, (stft, decision.reason)


def test_imputation_by_exact_rational_arithmetic():
    """(y + r (c - S)) / n with r = p / (1 - p), p = (y + phi/2) / (m + 1), recomputed with fractions."""
    target = Fraction(3, 10)
    for n in range(1, 13):
        for dlt in range(n + 1):
            for pending in range(n - dlt + 1):
                complete = n - pending
                followup = Fraction(pending, 3)
                p_hat = (dlt + target / 2) / (complete + 1)
                expected = (dlt + p_hat / (1 - p_hat) * (pending - followup)) / n
                effective_n, effective_dlt = tite_boin_effective_counts(0.3, complete, dlt, pending, float(followup))
                assert float(effective_dlt / effective_n) == pytest.approx(float(expected), rel=1e-13, abs=1e-15)


# ---- no pending patient: BOIN's table ---------------------------------------------------------

# summary(get.boundary(target = 0.3, ncohort = 10, cohortsize = 3)) from BOIN, n = 3, 6, ..., 30
BOIN_TABLE_03 = {
    "escalate_at_most": [0, 1, 2, 2, 3, 4, 4, 5, 6, 7],
    "deescalate_at_least": [2, 3, 4, 5, 6, 7, 8, 9, 10, 11],
    "eliminate_at_least": [3, 4, 5, 7, 8, 9, 10, 11, 12, 14],
}


@pytest.mark.parametrize("row", range(10))
def test_without_pending_patients_the_decisions_are_boins_table(row):
    n = 3 * (row + 1)
    for dlt in range(n + 1):
        decision = tite_boin_next_dose(BOUNDARIES_30, 1, [3, n, 0], [0, dlt, 0], [[], [], []])
        if dlt >= BOIN_TABLE_03["eliminate_at_least"][row]:
            expected = "deescalate"
            assert decision.eliminated == (False, True, True)
        elif dlt >= BOIN_TABLE_03["deescalate_at_least"][row]:
            expected = "deescalate"
        elif dlt <= BOIN_TABLE_03["escalate_at_most"][row]:
            expected = "escalate"
        else:
            expected = "stay"
        assert decision.action == expected, (n, dlt, decision.reason)
        assert not decision.doses_during_window
        assert decision.action == boin_next_dose(1, [3, n, 0], [0, dlt, 0], BOUNDARIES_30).action


# ---- the effective-sample-size variant: TITEgBOIN's manual example ----------------------------


def test_titegboin_manual_example_by_hand():
    # next_TITE_QuasiBOIN(target = 0.3, n = c(3,3,4,4,4,0), npend = c(0,0,0,1,2,0), y = c(0,0,1,1,1,0),
    #                     ft = c(0,0,0,14,28,0), d = 5, maxt = 28, maxpen = 0.5): at level 5, 2 of 4 pending
    # (not more than half), ESS = 2 + 28 / 28 = 3, rate 1 / 3 = 0.333 between 0.236 and 0.359: stay at level 5.
    arguments = (4, [3, 3, 4, 3, 2, 0], [0, 0, 1, 1, 1, 0], [[], [], [], [0.5], [0.5, 0.5], []])
    decision = tite_boin_next_dose(BOUNDARIES_30, *arguments, method="effective_sample_size")
    assert (decision.action, decision.next_level_index) == ("stay", 4)
    assert decision.effective_n_by_level[4] == pytest.approx(3.0)
    assert decision.estimated_rate_by_level[4] == pytest.approx(1 / 3)
    # Yuan et al.'s imputation: p_hat = 1.15 / 3, 1 + 0.622 x (2 - 1) = 1.62 DLTs of 4 = 0.405 >= 0.359, but the
    # observed rate 1 / 4 is not above the target: the coherence rule keeps the trial at level 5.
    imputed = tite_boin_next_dose(BOUNDARIES_30, *arguments)
    assert imputed.estimated_rate_by_level[4] == pytest.approx((1 + (1.15 / 3) / (1 - 1.15 / 3)) / 4)
    assert imputed.action == "stay" and "not above the target" in imputed.reason


# ---- suspension, safety and elimination rules --------------------------------------------------


def test_accrual_is_suspended_when_more_than_half_are_pending():
    half = tite_boin_next_dose(BOUNDARIES_30, 1, [3, 3, 0], [0, 0, 0], [[], [0.5, 0.5, 0.5], []])
    assert half.action == "escalate" and half.doses_during_window  # 3 of 6 pending: not more than half
    more = tite_boin_next_dose(BOUNDARIES_30, 1, [3, 2, 0], [0, 0, 0], [[], [0.9, 0.9, 0.9], []])
    assert (more.action, more.next_level_index) == ("suspend", None)
    assert not more.doses_during_window
    stricter = tite_boin_next_dose(BOUNDARIES_30, 1, [3, 3, 0], [0, 0, 0], [[], [0.5, 0.5, 0.5], []],
                                   max_pending_fraction=0.49)  # the application's 51 % complete data
    assert stricter.action == "suspend"


def test_observed_dlts_at_the_deescalation_count_override_suspension():
    # 2 DLTs seen among 5 patients (3 pending): BOIN's de-escalation count for 5 is 2 -> de-escalate at once
    decision = tite_boin_next_dose(BOUNDARIES_30, 1, [3, 2, 0], [0, 2, 0], [[], [0.0, 0.0, 0.0], []])
    assert (decision.action, decision.next_level_index) == ("deescalate", 0)
    assert "inside the DLT window" in decision.reason


def test_lowest_level_deescalation_signal_with_pending_patients_suspends():
    decision = tite_boin_next_dose(BOUNDARIES_30, 0, [4, 0], [2, 0], [[0.3], []])
    assert decision.action == "suspend" and "level 1 is the lowest" in decision.reason
    complete = tite_boin_next_dose(BOUNDARIES_30, 0, [5, 0], [2, 0], [[], []])  # nothing pending: BOIN stays
    assert complete.action == "stay"


def test_no_deescalation_unless_the_observed_rate_is_above_the_target():
    # 2 DLTs in 10 patients, 8 of them pending and just dosed: the imputation (p_hat = 2.15 / 3) gives
    # 2 + 2.53 x 8 = 22.2 "DLTs" (rate 2.2, the approximation is not a probability), but the observed rate 0.2 is
    # below the target, so the trial does not de-escalate. (The matching escalation rule never binds: the imputed
    # count is at least the observed one, so an imputed rate <= lambda_e has an observed rate below the target.)
    decision = tite_boin_next_dose(BOUNDARIES_30, 1, [3, 2, 0], [0, 2, 0], [[], [0.0] * 8, []],
                                   max_pending_fraction=0.9)
    assert decision.estimated_rate_by_level[1] == pytest.approx((2 + (2.15 / 3) / (1 - 2.15 / 3) * 8) / 10)
    assert decision.action == "stay" and "not above the target" in decision.reason


def test_elimination_uses_complete_data_only():
    # 3 DLTs in 3 complete patients (and 3 pending) eliminate level 2 and above: Pr(p > 0.3 | 3/3) = 0.992;
    # counting the pending patients as DLT-free (3/6, TITEgBOIN's rule) would not: Pr = 0.90
    decision = tite_boin_next_dose(BOUNDARIES_30, 1, [3, 3, 0], [0, 3, 0], [[], [0.2, 0.2, 0.2], []])
    assert decision.eliminated == (False, True, True)
    assert (decision.action, decision.next_level_index) == ("deescalate", 0)
    stop = tite_boin_next_dose(BOUNDARIES_30, 0, [3, 0], [3, 0], [[0.1], []])
    assert (stop.action, stop.next_level_index) == ("stop", None)
    kept = tite_boin_next_dose(BOUNDARIES_30, 0, [6, 0], [1, 0], [[], []], eliminated_by_level=[False, True])
    assert kept.eliminated == (False, True) and kept.action == "stay"  # 1/6 would escalate, but level 2 is out


def test_reasons_say_when_doses_are_given_inside_the_window():
    decision = tite_boin_next_dose(BOUNDARIES_30, 1, [3, 4, 0], [0, 0, 0], [[], [0.5, 0.25], []])
    assert decision.doses_during_window
    assert "2 patients are still inside the DLT window; TITE-BOIN doses without waiting for them, by design" in \
        decision.reason


def test_bad_inputs_are_rejected():
    with pytest.raises(ValueError, match="fractions"):
        tite_boin_next_dose(BOUNDARIES_30, 0, [3], [0], [[1.5]])
    with pytest.raises(ValueError, match="one per level"):
        tite_boin_next_dose(BOUNDARIES_30, 0, [3, 0], [0, 0], [[]])
    with pytest.raises(ValueError, match="method"):
        tite_boin_next_dose(BOUNDARIES_30, 0, [3], [0], [[]], method="bayes")
    with pytest.raises(ValueError, match="max_pending_fraction"):
        tite_boin_next_dose(BOUNDARIES_30, 0, [3], [0], [[]], max_pending_fraction=1.0)
    with pytest.raises(ValueError, match="no patients"):
        tite_boin_next_dose(BOUNDARIES_30, 1, [3, 0], [0, 0], [[], []])


# ---- monotonicity ------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["imputation", "effective_sample_size"])
def test_one_more_dlt_never_gives_a_higher_level(method):
    """A pending patient turning into a DLT, or a DLT-free complete patient recorded as a DLT instead, never gives a
    higher level among decisions that dose; a stop stays a stop. (A DLT can end a suspension, since it completes the
    patient: the next patient is then dosed, possibly higher than the suspended level. That is not compared.)"""
    rng = np.random.default_rng(2018 if method == "imputation" else 2020)
    doses = ("escalate", "stay", "deescalate")
    compared = 0
    for _ in range(1500):
        n = int(rng.integers(1, 31))
        pending = int(rng.integers(0, n + 1))
        complete = n - pending
        dlt = int(rng.integers(0, complete + 1))
        fractions = list(rng.random(pending) * 0.999)
        others = [3, complete, 0], [0, dlt, 0], [[], fractions, []]
        before = tite_boin_next_dose(BOUNDARIES_30, 1, *others, method=method)
        variants = []
        if pending:
            variants.append(([3, complete + 1, 0], [0, dlt + 1, 0], [[], fractions[1:], []]))
        if complete > dlt:
            variants.append(([3, complete, 0], [0, dlt + 1, 0], [[], fractions, []]))
        for variant in variants:
            after = tite_boin_next_dose(BOUNDARIES_30, 1, *variant, method=method)
            if before.action == "stop":
                assert after.action == "stop"
            if before.action in doses and after.action in doses:
                compared += 1
                assert after.next_level_index <= before.next_level_index, (before.reason, after.reason)
    assert compared > 1000


# ---- the vectorised simulator ---------------------------------------------------------------


def replay_tite_boin(uniforms, onset, arrival, p_true, boundaries, window, cohort_size, n_cohorts,
                     max_pending_fraction, start_level, method):
    """One trial in calendar days with the scalar decision function (an event loop, patient by patient)."""
    n_levels = len(p_true)
    planned = cohort_size * n_cohorts
    levels = np.full(planned, -1)
    dose_day = np.full(planned, np.nan)
    has_dlt = np.zeros(planned, dtype=bool)
    known_day = np.full(planned, np.inf)
    eliminated, level, stopped = None, start_level, False

    def data_on(day, enrolled):
        complete, dlt = [0] * n_levels, [0] * n_levels
        followup = [[] for _ in range(n_levels)]
        for patient in range(enrolled):
            if known_day[patient] <= day:
                complete[levels[patient]] += 1
                dlt[levels[patient]] += bool(has_dlt[patient])
            else:
                followup[levels[patient]].append((day - dose_day[patient]) / window)
        return complete, dlt, followup

    for cohort in range(n_cohorts):
        first = cohort * cohort_size
        if cohort == 0:
            ready = arrival[0]
        else:
            ready = max(arrival[first], dose_day[first - 1])
            while True:
                decision = tite_boin_next_dose(boundaries, level, *data_on(ready, first),
                                               eliminated_by_level=eliminated,
                                               max_pending_fraction=max_pending_fraction, method=method)
                eliminated = decision.eliminated
                if decision.action != "suspend":
                    break
                ready = min(day for day in known_day[:first] if day > ready)
            if decision.action == "stop":
                stopped = True
                break
            level = decision.next_level_index
        for patient in range(first, first + cohort_size):
            if patient > first:
                ready = max(arrival[patient], dose_day[patient - 1])
            levels[patient], dose_day[patient] = level, ready
            has_dlt[patient] = uniforms[patient] < p_true[level]
            known_day[patient] = ready + (onset[patient] if has_dlt[patient] else window)
    n_patients = np.bincount(levels[levels >= 0], minlength=n_levels)
    n_dlt = np.bincount(levels[has_dlt & (levels >= 0)], minlength=n_levels)
    selected = -1
    if not stopped:
        choice = boin_select_mtd(n_patients, n_dlt, target=boundaries.target).selected_level_index
        selected = -1 if choice is None else choice
    last = np.flatnonzero(levels >= 0)[-1]
    return levels, dose_day, n_patients, n_dlt, stopped, selected, dose_day[last] + window


def latent_trials(seed, n_trials, n_patients, mean_gap, window):
    rng = np.random.default_rng(seed)
    arrival = np.cumsum(rng.exponential(mean_gap, (n_trials, n_patients)), axis=1)
    arrival -= arrival[:, :1]
    return rng.random((n_trials, n_patients)), rng.uniform(0.5, window, (n_trials, n_patients)), arrival


@pytest.mark.parametrize(
    ("p_true", "mean_gap", "method", "start_level"),
    [([0.05, 0.12, 0.30, 0.45, 0.60], 4.0, "imputation", 0),
     ([0.25, 0.40, 0.55], 2.0, "imputation", 1),
     ([0.10, 0.20, 0.35, 0.50], 8.0, "effective_sample_size", 0),
     ([0.45, 0.60], 3.0, "imputation", 0)],
    ids=["fast-accrual", "toxic-start-high", "ess", "too-toxic"],
)
def test_simulation_replays_the_scalar_rules_trial_by_trial(p_true, mean_gap, method, start_level):
    window, cohort_size, n_cohorts, n_trials = 28.0, 3, 8, 20
    uniforms, onset, arrival = latent_trials(int(mean_gap * 10) + start_level, n_trials, cohort_size * n_cohorts,
                                             mean_gap, window)
    boundaries = boin_boundaries(0.3, max_patients=cohort_size * n_cohorts)
    simulation = simulate_tite_boin(uniforms, onset, arrival, p_true, boundaries=boundaries, window_days=window,
                                    cohort_size=cohort_size, n_cohorts=n_cohorts, start_level=start_level,
                                    method=method)
    suspended = 0
    for t in range(n_trials):
        levels, days, n_patients, n_dlt, stopped, selected, duration = replay_tite_boin(
            uniforms[t], onset[t], arrival[t], p_true, boundaries, window, cohort_size, n_cohorts, 0.5, start_level,
            method,
        )
        np.testing.assert_array_equal(simulation.patient_level[t], levels)
        np.testing.assert_array_equal(simulation.patient_dose_day[t], days)
        np.testing.assert_array_equal(simulation.n_patients[t], n_patients)
        np.testing.assert_array_equal(simulation.n_dlt[t], n_dlt)
        assert simulation.stopped_early[t] == stopped
        assert simulation.selected_level[t] == selected
        assert simulation.duration_days[t] == duration
        enrolled = levels >= 0
        suspended += np.sum(days[enrolled] > arrival[t][enrolled])
    assert suspended > 0  # some patients waited


def test_with_complete_data_at_every_decision_it_is_boin():
    """Arrivals 60 days apart and a 28-day window: every decision sees complete data, so TITE-BOIN is BOIN
    (get.oc's rules, :func:`simulate_boin`) on the same latent patients."""
    rng = np.random.default_rng(11)
    n_trials, cohort_size, n_cohorts = 400, 3, 10
    planned = cohort_size * n_cohorts
    uniforms = rng.random((n_trials, planned))
    arrival = np.tile(np.arange(planned) * 60.0, (n_trials, 1))
    onset = rng.uniform(1, 28, (n_trials, planned))
    for p_true in ([0.05, 0.15, 0.30, 0.45, 0.60], [0.35, 0.5, 0.6]):
        tite = simulate_tite_boin(uniforms, onset, arrival, p_true, boundaries=BOUNDARIES_30, window_days=28,
                                  cohort_size=cohort_size, n_cohorts=n_cohorts)
        boin = simulate_boin(uniforms, p_true, boundaries=BOUNDARIES_30, cohort_size=cohort_size, n_cohorts=n_cohorts)
        np.testing.assert_array_equal(tite.patient_level, boin.patient_level)
        np.testing.assert_array_equal(tite.selected_level, boin.selected_level)
        np.testing.assert_array_equal(tite.n_dlt, boin.n_dlt)
        np.testing.assert_array_equal(tite.stopped_early, boin.stopped_early)
        np.testing.assert_array_equal(tite.patient_dose_day[tite.patient_level >= 0], arrival[tite.patient_level >= 0])


def test_simulation_doses_inside_the_window_and_is_consistent():
    window = 28.0
    uniforms, onset, arrival = latent_trials(5, 1000, 30, 5.0, window)
    simulation = simulate_tite_boin(uniforms, onset, arrival, [0.05, 0.1, 0.2, 0.3, 0.5], boundaries=BOUNDARIES_30,
                                    window_days=window, cohort_size=3, n_cohorts=10)
    enrolled = simulation.patient_level >= 0
    days = simulation.patient_dose_day
    assert np.all(np.isnan(days[~enrolled])) and np.all(days[enrolled] >= arrival[enrolled])
    assert np.all(np.diff(days, axis=1)[enrolled[:, 1:]] >= 0)  # enrolled patients are a prefix, dosed in order
    # by design, many patients are dosed before the previous patient's window has ended
    inside = days[:, 1:] < days[:, :-1] + window
    assert inside[enrolled[:, 1:]].mean() > 0.5
    np.testing.assert_array_equal(enrolled.sum(axis=1), simulation.n_patients.sum(axis=1))
    assert np.all(simulation.duration_days == np.nanmax(days, axis=1) + window)
    assert np.all(simulation.selected_level[simulation.stopped_early] == -1)
    with pytest.raises(ValueError):
        simulation.duration_days[0] = 0.0


def test_simulation_rejects_bad_inputs():
    uniforms, onset, arrival = latent_trials(1, 5, 9, 5.0, 28.0)
    common = dict(boundaries=BOUNDARIES_30, window_days=28.0, cohort_size=3, n_cohorts=3)
    with pytest.raises(ValueError, match="onset_days"):
        simulate_tite_boin(uniforms, onset + 30, arrival, [0.1, 0.2], **common)
    with pytest.raises(ValueError, match="non-decreasing"):
        simulate_tite_boin(uniforms, onset, arrival[:, ::-1], [0.1, 0.2], **common)
    with pytest.raises(ValueError, match="cover"):
        simulate_tite_boin(uniforms, onset, arrival, [0.1, 0.2],
                           **{**common, "boundaries": boin_boundaries(0.3, max_patients=6)})
    with pytest.raises(ValueError, match="method"):
        simulate_tite_boin(uniforms, onset, arrival, [0.1, 0.2], **common, method="other")
