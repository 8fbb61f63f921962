"""TITE-BOIN as a design of a spec: ``[decision.tite_boin]``, its suspension, its safeguard, ``decide`` and
``simulate``.

The published rules and Yuan et al.'s thresholds are tested in tests/test_tite_boin.py; here the design as the
package runs it: it doses with patients inside the window (the explicit exception to the DLT window rule, said
in its output), suspends while more than half of the current level is pending, and never lets a DLT lift a
suspension (the safeguard; the invariants are property-tested in tests/test_decision_safety.py).
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import spec_text_with

import lupusbayes as lb
from lupusbayes.cli import main
from lupusbayes.decisions import DecisionContext, decide, design_for
from lupusbayes.decisions.state import PatientRecord, TrialState
from lupusbayes.simulation import load_scenarios
from lupusbayes.simulation.engine import simulate_trials
from lupusbayes.simulation.patients import draw_latent_patients

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
