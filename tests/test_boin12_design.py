"""BOIN12 as a design of a spec: ``[decision.boin12]``, its safeguard, ``decide`` and ``simulate``.

The published rules and their reference values are tested in tests/test_boin12.py; here the design as
the package runs it. The published BOIN12 can move *up* after a DLT (a DLT lowers the current level's
desirability); the design applies the safeguard that one more DLT never gives a higher level or a higher
selected dose, tested here by enumeration as well as by the property tests of tests/test_decision_safety.py.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from conftest import spec_text_with

import lupusbayes as lb
from lupusbayes.cli import main
from lupusbayes.decisions import DecisionContext, decide, design_for, transition_table
from lupusbayes.decisions.boin12 import (
    Boin12Settings,
    boin12_next_dose,
    boin12_next_dose_safeguarded,
    boin12_select_dose_safeguarded,
)
from lupusbayes.decisions.designs import boin12_settings
from lupusbayes.decisions.state import PatientRecord, TrialState
from lupusbayes.simulation import load_scenarios
from lupusbayes.simulation.engine import simulate_trials
from lupusbayes.simulation.patients import draw_latent_patients

AXA = lb.load_spec("axa_nk02")
PAPER = Boin12Settings(0.35, 0.25)


# ---- the safeguard -----------------------------------------------------------------------------------


def test_the_published_rule_moves_up_after_a_dlt_and_the_safeguard_does_not():
    """9 patients at level 1, 5 responses: 1 DLT stays, 2 DLTs escalate (level 1's desirability falls below level
    2's prior one); with the safeguard 2 DLTs stay, and the reason says why."""
    assert boin12_next_dose(PAPER, 0, [9, 0, 0], [1, 0, 0], [5, 0, 0]).next_level_index == 0
    assert boin12_next_dose(PAPER, 0, [9, 0, 0], [2, 0, 0], [5, 0, 0]).next_level_index == 1
    guarded = boin12_next_dose_safeguarded(PAPER, 0, [9, 0, 0], [2, 0, 0], [5, 0, 0])
    assert guarded.next_level_index == 0 and guarded.action == "stay"
    assert "Safeguard (more toxicity never gives a higher level): with fewer DLTs (" in guarded.reason
    assert guarded.reason.endswith("so stay at level 1, not level 2.")


@pytest.mark.parametrize("settings", [PAPER, Boin12Settings(0.20, 0.30)])
def test_one_more_dlt_never_gives_a_higher_level_or_selection(settings):
    """States of 2 levels (9 + 0, 6 + 3, 3 + 6 patients), every DLT count, none, half, all (and 5) responses per
    level, the current level 1 or 2: the safeguarded next level and selection never rise with one more DLT (the
    published rule's do, in some of these states)."""
    raised = 0
    for n in ((9, 0), (6, 3), (3, 6)):
        for r in itertools.product(*(sorted({0, k // 2, k, min(5, k)}) for k in n)):
            for current in (0, 1) if n[1] else (0,):
                for y in itertools.product(*(range(k + 1) for k in n)):
                    for level in range(2):
                        if y[level] == n[level]:
                            continue
                        more = tuple(v + (i == level) for i, v in enumerate(y))
                        before = boin12_next_dose_safeguarded(settings, current, n, y, r)
                        after = boin12_next_dose_safeguarded(settings, current, n, more, r)
                        if after.action != "stop":
                            assert before.action != "stop" and after.next_level_index <= before.next_level_index
                        published = (boin12_next_dose(settings, current, n, y, r), boin12_next_dose(settings, current, n,
                                                                                                 more, r))
                        raised += (published[1].action != "stop" and published[0].action != "stop"
                                   and published[1].next_level_index > published[0].next_level_index)
                        chosen = [boin12_select_dose_safeguarded(settings, n, counts, r).selected_level_index
                                  for counts in (y, more)]
                        assert (-1 if chosen[1] is None else chosen[1]) <= (-1 if chosen[0] is None else chosen[0])
    assert raised > 0  # the published rule does move up after a DLT in some of these states


# ---- the spec ------------------------------------------------------------------------------------------


def test_the_shipped_specs_state_boin12_on_the_lupus_limits():
    settings = boin12_settings(AXA)
    assert (settings.target_toxicity, settings.efficacy_lower_limit) == (0.20, 0.30)
    assert (settings.utility_response_no_dlt, settings.utility_no_response_no_dlt, settings.utility_response_and_dlt,
            settings.utility_dlt_no_response) == (100, 40, 60, 0)


@pytest.mark.parametrize(("keys", "message"), [
    ("utility_response_and_dlt = 50", "'decision.boin12.utility_response_and_dlt': the utilities must be additive"),
    ("utility_no_response_no_dlt = 120", "'decision.boin12.utility_no_response_no_dlt'"),
    ("target_toxicity = 0.8", "'decision.boin12.target_toxicity'"),
    ("stay_patients = 0", "'decision.boin12.stay_patients'"),
])
def test_bad_boin12_settings_are_one_line_errors_naming_the_key(keys, message):
    with pytest.raises(lb.SpecError) as error:
        lb.parse_spec(spec_text_with(AXA.text, "decision.boin12", keys), source="axa.toml")
    assert "\n" not in str(error.value) and message in str(error.value)


# ---- decide --------------------------------------------------------------------------------------------


def _state(*patients) -> TrialState:
    return TrialState(AXA, tuple(patients), "t")


def test_boin12_waits_for_the_responses_and_reads_them():
    """Dosed 29 days ago: the DLT window is complete, the month-1 response (day 31) is not: wait 2 days."""
    waiting = decide(DecisionContext(AXA, _state(*(PatientRecord(f"a{i}", 0, 29, False) for i in range(3)))),
                     design_for(AXA, "boin12"))
    assert waiting.paused and waiting.wait_days == 2
    assessed = decide(DecisionContext(AXA, _state(*(PatientRecord(f"a{i}", 0, 40, False, responder=i < 2)
                                                    for i in range(3)))), design_for(AXA, "boin12"))
    assert assessed.action in ("escalate", "hold") and "desirability" in assessed.verdicts[-1].verdict


def test_a_patient_past_the_response_day_without_an_assessment_is_said_to_count_as_a_non_responder():
    records = [PatientRecord(f"a{i}", 0, 40, False, responder=True) for i in range(2)] + [
        PatientRecord("a3", 0, 40, False)]
    recommendation = decide(DecisionContext(AXA, _state(*records)), design_for(AXA, "boin12"))
    assert any("a3" in warning and "counts them as non-responders" in warning for warning in recommendation.warnings)


def test_outcome_strings_are_refused_for_boin12_in_one_line(capsys):
    assert main(["decide", "axa_nk02", "--design", "boin12", "--outcomes", "1NNN"]) == 2
    err = capsys.readouterr().err
    assert "BOIN12 reads each patient's response" in err and len(err.strip().splitlines()) == 1


def test_the_transition_table_enumerates_dlts_and_responders():
    state = _state(*(PatientRecord(f"a{i}", 0, 40, False, responder=i < 2) for i in range(3)))
    context = DecisionContext(AXA, state)
    table = transition_table(context, design_for(AXA, "boin12"))
    assert len(table) == 16 and {t.n_responders for t in table} == {0, 1, 2, 3}
    assert not any(t.recommendation.paused for t in table)  # the hypothetical patients' responses are assessed


# ---- simulate: the vectorised path is the engine's ------------------------------------------------------


def test_the_vectorised_boin12_equals_the_engine_that_calls_decide():
    for scenario in load_scenarios("axa_nk02", AXA).scenarios:
        latent = draw_latent_patients(np.random.SeedSequence(7), 100, 9)
        fast = simulate_trials(AXA, design_for(AXA, "boin12"), scenario, latent)
        engine = simulate_trials(AXA, design_for(AXA, "boin12"), scenario, latent, vectorised=False)
        for field in ("selected_level", "n_patients", "n_dlt", "n_responders", "duration_days", "stop_reason",
                      "n_decisions"):
            np.testing.assert_array_equal(getattr(fast, field), getattr(engine, field), err_msg=f"{scenario.name}: {field}")


def test_simulate_runs_boin12_next_to_the_others(tmp_path):
    assert main(["simulate", "axa_nk02", "--designs", "boin,crm,boin12", "--n-trials", "50", "--seed", "1",
                 "--out", str(tmp_path / "oc"), "--no-progress"]) == 0
    assert "boin12" in (tmp_path / "oc" / "trials.csv").read_text()
