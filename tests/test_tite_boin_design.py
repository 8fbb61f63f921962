"""TITE-BOIN as a design of a spec: ``[decision.tite_boin]``, its suspension, its safeguard, ``decide`` and
``simulate``.

The published rules and Yuan et al.'s thresholds are tested in tests/test_tite_boin.py; here the design as the
package runs it: it doses with patients inside the window (the explicit exception to the DLT window rule, said
in its output), suspends while more than half of the current level is pending, and never lets a DLT lift a
suspension (the safeguard; the invariants are property-tested in tests/test_decision_safety.py). Its vectorised
simulator gives the results of the engine that calls ``decide``, trial by trial.
"""

from __future__ import annotations

from dataclasses import fields, replace

import numpy as np
import pytest
from conftest import spec_text_with

import lupusbayes as lb
from lupusbayes.cli import main
from lupusbayes.decisions import DecisionContext, decide, design_for
from lupusbayes.decisions.state import PatientRecord, TrialState
from lupusbayes.simulation import engine, load_scenarios
from lupusbayes.simulation import tite_boin_design_simulation as tite_boin_simulation
from lupusbayes.simulation.engine import TrialResults, simulate_trials
from lupusbayes.simulation.patients import draw_latent_patients
from lupusbayes.simulation.scenarios import Scenario

AXA = lb.load_spec("axa_nk02")
LEVEL_1_DONE = [PatientRecord(f"a{i}", 0, 90, False) for i in range(3)]


def _decide(*records, spec=AXA):
    return decide(DecisionContext(spec, TrialState(spec, (*LEVEL_1_DONE, *records), "t")), design_for(spec, "tite_boin"))


def test_it_doses_with_a_minority_pending_and_says_so():
    recommendation = _decide(PatientRecord("b0", 1, 40, False), PatientRecord("b1", 1, 35, False),
                             PatientRecord("b2", 1, 3, False))
    assert recommendation.action == "escalate" and recommendation.next_level == 3
    assert "TITE-BOIN doses without waiting for it, by design" in recommendation.verdicts[-1].verdict
    assert any("inside the DLT window" in warning for warning in recommendation.warnings)


def test_it_suspends_while_more_than_half_are_pending_until_they_complete():
    """2 of 3 at level 2 pending (dosed 10 and 5 days ago): suspend, and decide again when both have completed
    the 28-day window (23 days; one more pending patient never shortens a pause)."""
    recommendation = _decide(PatientRecord("b0", 1, 40, False), PatientRecord("b1", 1, 10, False),
                             PatientRecord("b2", 1, 5, False))
    assert recommendation.paused and recommendation.wait_days == 23
    assert "suspend" in recommendation.verdicts[-1].verdict
    looser = lb.parse_spec(spec_text_with(AXA.text, "decision.tite_boin", "max_pending_fraction = 0.7"))
    assert not _decide(PatientRecord("b0", 1, 40, False), PatientRecord("b1", 1, 10, False),
                       PatientRecord("b2", 1, 5, False), spec=looser).paused


def test_a_dlt_inside_the_window_never_lifts_the_suspension():
    """Published TITE-BOIN: b1's DLT completes b1, so only 1 of 3 is pending and it de-escalates at once; without
    the DLT it would suspend. The safeguard keeps the suspension and says why."""
    with_dlt = _decide(PatientRecord("b0", 1, 40, False), PatientRecord("b1", 1, 10, True),
                       PatientRecord("b2", 1, 5, False))
    assert with_dlt.paused and with_dlt.wait_days == 23
    verdict = with_dlt.verdicts[-1].verdict
    assert "de-escalate to level 1" in verdict and "Safeguard (a DLT never lifts a suspension" in verdict


def test_the_max_pending_fraction_is_checked_in_one_line():
    with pytest.raises(lb.SpecError) as error:
        lb.parse_spec(spec_text_with(AXA.text, "decision.tite_boin", "max_pending_fraction = 1.5"), source="axa.toml")
    assert "'decision.tite_boin.max_pending_fraction'" in str(error.value) and "\n" not in str(error.value)


def test_simulated_trials_run_decide_and_select_on_complete_data(tmp_path):
    scenario = load_scenarios("axa_nk02", AXA).scenarios[1]
    latent = draw_latent_patients(np.random.SeedSequence(3), 60, 9)
    results = simulate_trials(AXA, design_for(AXA, "tite_boin"), scenario, latent)
    assert np.all(results.n_patients.sum(axis=1) <= 9) and set(results.selected_level) <= {-1, 0, 1, 2}
    assert main(["simulate", "axa_nk02", "--designs", "boin,tite_boin", "--n-trials", "20", "--seed", "1",
                 "--out", str(tmp_path / "oc"), "--no-progress"]) == 0


# ---- simulate: the vectorised path is the engine's, trial by trial -----------------------------------

#: AXA-NK02 with five levels and 30 patients: a longer trial, with more decisions, suspensions and safeguards
AXA_30 = lb.parse_spec(spec_text_with(spec_text_with(AXA.text, "dosing", "levels = [2.5e7, 5e7, 7.5e7, 1.5e8, 2.5e8]"),
                                      "escalation", "max_patients = 30"))


def _assert_equal_to_the_engine(spec, scenario, latent):
    design = design_for(spec, "tite_boin")
    fast = simulate_trials(spec, design, scenario, latent)
    slow = simulate_trials(spec, design, scenario, latent, vectorised=False)
    for field in fields(TrialResults):
        np.testing.assert_array_equal(getattr(fast, field.name), getattr(slow, field.name),
                                      err_msg=f"{scenario.name}: {field.name}")
    return slow


def _with_accrual(scenario, gap_days=None, per_month=None):
    return replace(scenario, accrual_gap_days=gap_days, accrual_patients_per_month=per_month)


@pytest.mark.parametrize("gap_days", [None, 7.0], ids=["registration accrual", "a patient every 7 days"])
def test_the_vectorised_tite_boin_equals_the_engine_that_calls_decide(gap_days):
    """200 trials per shipped scenario, at the registration's accrual (0.3 patients a month) and with a patient
    every 7 days (patients pending at every decision, suspended for them): every field of the results is the
    engine's, stops for elimination the final analysis does not confirm included."""
    latent = draw_latent_patients(np.random.SeedSequence(7), 200, 9)
    changed = 0
    for scenario in load_scenarios("axa_nk02", AXA).scenarios:
        scenario = scenario if gap_days is None else _with_accrual(scenario, gap_days)
        changed += _assert_equal_to_the_engine(AXA, scenario, latent).final_analysis_changed.sum()
    if gap_days is None:
        assert changed > 0  # stops for elimination that the final analysis's complete data no longer support


@pytest.mark.parametrize("accrual", [dict(gap_days=7.0), dict(per_month=3.0)], ids=["every 7 days", "3 a month"])
def test_the_vectorised_tite_boin_equals_the_engine_on_a_longer_trial(accrual):
    """Five levels, 30 patients, 80 trials under three truths (one toxic from the start); the safeguard changes
    a few dozen of their decisions (a DLT inside the window that would have lifted a suspension)."""
    latent = draw_latent_patients(np.random.SeedSequence(8), 80, 30)
    for name, p_dlt in (("rising", [0.02, 0.08, 0.15, 0.30, 0.45]), ("flat", [0.1] * 5),
                        ("toxic", [0.30, 0.40, 0.50, 0.60, 0.70])):
        scenario = _with_accrual(Scenario(name, "", np.zeros((5, 1)), np.array(p_dlt), np.full(5, 0.5), None, None),
                                 **accrual)
        _assert_equal_to_the_engine(AXA_30, scenario, latent)


def test_the_vectorised_tite_boin_does_not_call_decide_and_leaves_rare_trials_to_the_engine(monkeypatch):
    """The vectorised path runs without ``decide``; a trial it cannot compare (here: any DLT inside the window,
    where the real limit is MAX_SAFEGUARD_DLTS_IN_WINDOW) is run by the engine, and the results stay the engine's.
    A column after the sample size (the engine then stops as that patient arrives) changes nothing either."""
    scenario = _with_accrual(load_scenarios("axa_nk02", AXA).scenarios[2], 7.0)
    latent = draw_latent_patients(np.random.SeedSequence(9), 100, 12)
    with monkeypatch.context() as patched:
        patched.setattr(engine, "decide", None)
        simulate_trials(AXA, design_for(AXA, "tite_boin"), scenario, latent)
    monkeypatch.setattr(tite_boin_simulation, "MAX_SAFEGUARD_DLTS_IN_WINDOW", 0)
    simulations = []
    original = engine.simulate_tite_boin_design

    def recorded(*args, **kwargs):
        simulations.append(original(*args, **kwargs))
        return simulations[-1]

    monkeypatch.setattr(engine, "simulate_tite_boin_design", recorded)
    _assert_equal_to_the_engine(AXA, scenario, latent)
    assert simulations[0].needs_engine.sum() > 5


def test_the_simulators_example_runs():
    import doctest

    assert doctest.testmod(tite_boin_simulation).failed == 0
