"""The CRM and the TITE-CRM as designs of a spec: ``[decision.crm]``, ``decide``, ``simulate``.

The rules themselves (dfcrm's numbers, Cheung 2011's example) are tested in tests/test_crm.py; here
the designs as the package runs them: the spec's settings and their errors, a decision with its
reasons, the time-to-event exception said in the output, and the simulator's vectorised path equal,
trial by trial, to the engine that calls ``decide`` at every step (the design that decides is the one
simulated).
"""

from __future__ import annotations

import json
from datetime import date
from dataclasses import fields

import numpy as np
import pytest
from conftest import spec_text_with

import lupusbayes as lb
from lupusbayes.cli import main
from lupusbayes.decisions import DecisionContext, decide, design_for, state_from_outcomes
from lupusbayes.decisions.crm import crm_next_dose, crm_skeleton
from lupusbayes.decisions.designs import crm_model
from lupusbayes.decisions.rules import crm_patients
from lupusbayes.decisions.state import PatientRecord, TrialState, load_state
from lupusbayes.simulation import load_scenarios
from lupusbayes.simulation.engine import TrialResults, simulate_trials
from lupusbayes.simulation.patients import draw_latent_patients
from lupusbayes.simulation.scenarios import Scenario, parse_scenarios

AXA = lb.load_spec("axa_nk02")


# ---- the spec --------------------------------------------------------------------------------------


def test_the_shipped_specs_state_the_crm_on_the_lupus_target():
    """target 0.15 with half-width 0.05: the indifference interval 0.10-0.20 is the spec's 'elevated' interval."""
    settings = AXA.decision.crm
    assert (settings.target, settings.model, settings.skeleton_halfwidth, settings.prior_mtd_level) == (0.15, "empiric",
                                                                                                        0.05, 2)
    model = crm_model(AXA)
    np.testing.assert_allclose(model.skeleton, crm_skeleton(0.05, 0.15, 2, 3))
    assert model.skeleton[1] == pytest.approx(0.15)  # getprior: the prior MTD's skeleton value is the target
    assert model.prior_sd == pytest.approx(np.sqrt(1.34))  # dfcrm's prior variance 1.34


@pytest.mark.parametrize(("keys", "message"), [
    ("skeleton = [0.1, 0.2]", "'decision.crm.skeleton': give one prior P(DLT) per dose level (3; got 2)"),
    ("skeleton = [0.1, 0.3, 0.2]", "'decision.crm.skeleton': must increase strictly"),
    ('model = "logistic"\nintercept = 0.5\nskeleton = [0.1, 0.2, 0.7]', "below the intercept"),
    ("skeleton_halfwidth = 0.2", "decision.crm.skeleton_halfwidth"),
    ("prior_mtd_level = 4", "decision.crm.prior_mtd_level"),
    ('tite_weights = "exponential"', "'decision.crm.tite_weights': must be one of linear, adaptive (got 'exponential')"),
    ("stop_probability = 0.3", "decision.crm.stop_probability"),
])
def test_bad_crm_settings_are_one_line_errors_naming_the_key(keys, message):
    with pytest.raises(lb.SpecError) as error:
        lb.parse_spec(spec_text_with(AXA.text, "decision.crm", keys), source="axa.toml")
    text = str(error.value)
    assert "\n" not in text and text.startswith("axa.toml") and message in text


def test_a_given_skeleton_is_used_as_written_and_stopping_can_be_switched_off():
    spec = lb.parse_spec(spec_text_with(AXA.text, "decision.crm", "skeleton = [0.05, 0.12, 0.25]\nstop_probability = false"))
    assert crm_model(spec).skeleton == (0.05, 0.12, 0.25)
    assert spec.decision.crm.stop_probability is None


# ---- decide ----------------------------------------------------------------------------------------


def test_decide_prints_the_crm_estimates_and_the_rule(capsys):
    assert main(["decide", "axa_nk02", "--design", "crm", "--outcomes", "1NNN 2NNT"]) == 0
    out = capsys.readouterr().out
    assert "[CRM] What does the CRM say?" in out and "closest to the target 0.15" in out
    assert main(["decide", "axa_nk02", "--design", "crm", "--outcomes", "1NNN 2NNT", "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["design"] == "crm" and payload["next_level"] in (1, 2)


def test_the_crm_stops_when_the_lowest_level_is_too_toxic_and_selects_nothing():
    decision = decide(DecisionContext(AXA, state_from_outcomes(AXA, "1TTT")), design_for(AXA, "crm"))
    assert decision.action == "stop" and decision.stop_reasons == ("the CRM finds the lowest level too toxic",)
    assert decision.selection.level_index is None


def test_coherent_escalation_holds_after_a_cohort_at_the_target_rate():
    """dfcrm's restrict: no escalation right after a cohort whose DLT fraction is >= the target; without it the
    CRM may escalate (skeleton chosen so the estimates call for it)."""
    text = spec_text_with(spec_text_with(AXA.text, "decision.crm", "skeleton = [0.02, 0.04, 0.10]"), "escalation",
                          "max_patients = 12")
    coherent = lb.parse_spec(text)
    free = lb.parse_spec(spec_text_with(text, "decision.crm", "coherent_escalation = false"))
    outcomes = "1NNN 1NNN 1NNT"
    assert decide(DecisionContext(free, state_from_outcomes(free, outcomes)), design_for(free, "crm")).next_level_index == 1
    held = decide(DecisionContext(coherent, state_from_outcomes(coherent, outcomes)), design_for(coherent, "crm"))
    assert held.next_level_index == 0


def test_tite_crm_weights_pending_patients_where_the_crm_waits():
    records = [PatientRecord(f"a{i}", 0, 60, False) for i in range(3)] + [PatientRecord("b1", 1, 14, False)]
    state = TrialState(AXA, tuple(records), "t")
    crm = decide(DecisionContext(AXA, state), design_for(AXA, "crm"))
    assert crm.paused and crm.wait_days == 14
    tite = decide(DecisionContext(AXA, state), design_for(AXA, "tite_crm"))
    assert not tite.paused and tite.next_level_index is not None
    assert "0.50" in tite.verdicts[-1].verdict  # 14 of 28 days: linear weight 0.5
    assert any("its own rule" in warning for warning in tite.warnings)


# ---- the adaptive weights (Cheung & Chappell 2000), from each DLT's day -------------------------------------

ADAPTIVE = lb.parse_spec(spec_text_with(AXA.text, "decision.crm", 'tite_weights = "adaptive"'))


def test_the_spec_accepts_the_adaptive_weights_and_the_design_uses_them():
    assert AXA.decision.crm.tite_weights == "linear"  # the default
    assert ADAPTIVE.decision.crm.tite_weights == "adaptive"
    assert design_for(ADAPTIVE, "tite_crm").rules[-1].tite_weights == "adaptive"
    assert design_for(ADAPTIVE, "crm").rules[-1].tite_weights is None  # the CRM reads complete patients only


def _window_180(weights: str) -> lb.TrialSpec:
    """dfcrm's example window (180 days), so the state below has dfcrm's follow-up (178, 24, 42, 3)."""
    text = spec_text_with(spec_text_with(AXA.text, "dlt", "window_days = 180"), "decision.crm", f'tite_weights = "{weights}"')
    return lb.parse_spec(spec_text_with(text, "decision", 'design = "tite_crm"'))


def _dfcrm_state(spec, *, dlt_day: int | None = 24) -> TrialState:
    """3 complete at level 1; at level 2, one complete, then follow-up 178, a DLT on day 24 (100 days of follow-up),
    42 and 3 days: the last four are the example of ``tite_weights``' docstring (dfcrm ``titecrm``)."""
    records = ([PatientRecord(f"a{i}", 0, 200, False) for i in (1, 2, 3)] + [PatientRecord("b1", 1, 200, False)]
               + [PatientRecord("b2", 1, 178, False), PatientRecord("b3", 1, 100, True, dlt_day=dlt_day, source_line=7),
                  PatientRecord("b4", 1, 42, False), PatientRecord("b5", 1, 3, False)])
    return TrialState(spec, tuple(records), "state.csv")


def test_decide_with_adaptive_weights_reproduces_dfcrm_and_changes_the_recommendation():
    """tite_weights([178, 24, 42, 3], 180, [0, 1, 0, 0], scheme="adaptive") = 0.994, 1, 0.558, 0.062 (dfcrm): the
    pending patients weigh more than by their follow-up alone (0.989, 0.233, 0.017), because the one DLT came on
    day 24 of 180, so the TITE-CRM holds at level 2 where the linear weights de-escalate."""
    adaptive, linear = _window_180("adaptive"), _window_180("linear")
    decision = decide(DecisionContext(adaptive, _dfcrm_state(adaptive)), design_for(adaptive))
    proposal = decision.verdicts[-1].verdict
    assert "adaptive weights from the DLT day(s) 24: 0.99, 0.56, 0.06" in proposal
    assert (decision.action, decision.next_level_index) == ("hold", 1)
    # by hand (dfcrm titecrm): one DLT time t_1 = 24 in W = 180, so w = (1 + (u - 24) / 156) / 2 past day 24 and
    # u / 24 / 2 before it; complete patients and the DLT weigh 1. The same decision, word for word.
    by_hand = [1, 1, 1, 1, (1 + 154 / 156) / 2, 1, (1 + 18 / 156) / 2, 3 / 24 / 2]
    np.testing.assert_allclose(by_hand[4:], [0.994, 1, 0.558, 0.062], atol=5e-4)  # crm.py's docstring (dfcrm)
    _, _, weights = crm_patients(_dfcrm_state(adaptive), weights="adaptive")
    np.testing.assert_allclose(weights, by_hand, rtol=1e-12)
    expected = crm_next_dose(crm_model(adaptive), [0, 0, 0, 1, 1, 1, 1, 1], [False] * 5 + [True, False, False],
                             patient_weight=by_hand, current_level_index=1,
                             stop_probability=adaptive.decision.crm.stop_probability)
    assert expected.next_level_index == 1 and proposal.startswith(expected.reason)
    before = decide(DecisionContext(linear, _dfcrm_state(linear)), design_for(linear))
    assert "linear weights: 0.99, 0.23, 0.02" in before.verdicts[-1].verdict
    assert (before.action, before.next_level_index) == ("de-escalate", 0)
    # the linear weights do not read the DLT's day: the same decision without it
    undated = decide(DecisionContext(linear, _dfcrm_state(linear, dlt_day=None)), design_for(linear))
    assert (undated.action, undated.next_level_index, undated.verdicts[-1]) == ("de-escalate", 0, before.verdicts[-1])


def test_adaptive_weights_refuse_a_dlt_without_its_day_naming_the_patient():
    spec = _window_180("adaptive")
    with pytest.raises(lb.DecisionError) as error:
        decide(DecisionContext(spec, _dfcrm_state(spec, dlt_day=None)), design_for(spec))
    text = str(error.value)
    assert "\n" not in text and text.startswith("state.csv: ") and "patient b3 (line 7)" in text and "dlt_day" in text
    assert 'tite_weights = \"linear\"' in text or 'tite_weights = "linear"' in text
    # with nobody inside the window every weight is 1 whatever the days: the decision needs no DLT day
    complete = decide(DecisionContext(spec, state_from_outcomes(spec, "1NNN 2NNT")), design_for(spec))
    assert complete.next_level_index is not None


def test_decide_reads_dlt_days_from_a_state_file(tmp_path, capsys):
    """The same trial as a file: dlt_day (or dlt_date with the infusion date) reaches the adaptive weights; without
    it, exit 2 and one line naming the file, the patient and the field."""
    spec_path = tmp_path / "tite.toml"
    spec_path.write_text(_window_180("adaptive").text)
    header = "study_id,patient_id,age_years,sex,dose,dose_unit,weight_kg,crs_grade,dlt,safety_days,dlt_day,visit_month,sledai\n"
    rows = [("a1", 2.5e7, "no", 200, ""), ("a2", 2.5e7, "no", 200, ""), ("a3", 2.5e7, "no", 200, ""),
            ("b1", 7.5e7, "no", 200, ""), ("b2", 7.5e7, "no", 178, ""), ("b3", 7.5e7, "yes", 100, "24"),
            ("b4", 7.5e7, "no", 42, ""), ("b5", 7.5e7, "no", 3, "")]
    text = header + "".join(f"AXA-NK02,{pid},22,F,{dose},cells/kg,54,0,{dlt},{days},{day},0,12\n"
                            for pid, dose, dlt, days, day in rows)
    state = tmp_path / "state.csv"
    state.write_text(text)
    assert main(["decide", str(spec_path), "--state", str(state), "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["action"] == "hold" and payload["next_level"] == 2
    assert "adaptive weights from the DLT day(s) 24: 0.99, 0.56, 0.06" in payload["verdicts"][-1]["verdict"]
    window = next(v for v in payload["verdicts"] if v["rule"] == "DLT window (time-to-event)")
    assert "b3 (level 2 (7.5e7 cells/kg), day 100, DLT on day 24)" in window["verdict"]
    state.write_text(text.replace(",yes,100,24,", ",yes,100,,"))
    assert main(["decide", str(spec_path), "--state", str(state)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(state) in err and "patient b3 (line 7)" in err and "dlt_day" in err


def test_a_dlt_day_after_the_dlt_window_is_refused_not_capped(tmp_path, capsys):
    """A toxicity after the DLT window is not a DLT by the protocol: its day is refused, in a state file (day or
    date; one line naming the file, line, field and patient, exit 2) and in a state built in Python, never read as
    the window's last day."""
    spec = _window_180("adaptive")
    spec_path = tmp_path / "tite.toml"
    spec_path.write_text(spec.text)
    header = "study_id,patient_id,age_years,sex,dose,dose_unit,weight_kg,crs_grade,dlt,safety_days,dlt_day,visit_month,sledai\n"
    rows = [("a1", "no", ""), ("a2", "no", ""), ("a3", "yes", "{day}")]
    text = header + "".join(f"AXA-NK02,{pid},22,F,2.5e7,cells/kg,54,0,{dlt},200,{day},0,12\n" for pid, dlt, day in rows)
    state = tmp_path / "state.csv"
    for day in (180, 181):
        state.write_text(text.replace("{day}", str(day)))
        if day == 180:  # the window's last day is inside it
            assert load_state(state, spec).patients[2].dlt_day == 180
            continue
        assert main(["decide", str(spec_path), "--state", str(state)]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and f"{state}:4: field 'dlt_day' (patient a3)" in err
        assert "dlt_day 181 is after the DLT window (180 days, [dlt] window_days)" in err
    dated = ("study_id,patient_id,age_years,sex,dose,dose_unit,weight_kg,crs_grade,dlt,infusion_date,dlt_date,visit_month,"
             "sledai\nAXA-NK02,a1,22,F,2.5e7,cells/kg,54,0,yes,2026-01-01,2026-07-01,0,12\n")
    state.write_text(dated)
    with pytest.raises(lb.CohortError, match=r"dlt_date 2026-07-01 \(day 181\) is after the DLT window"):
        load_state(state, spec, as_of=date(2026, 7, 20))
    with pytest.raises(lb.DecisionError, match=r"patient b3's dlt_day 190 is outside the DLT window \(0 to 180 days\)"):
        decide(DecisionContext(spec, _dfcrm_state(spec, dlt_day=190)), design_for(spec))


# ---- simulate: the vectorised path is the engine's, trial by trial -----------------------------------


@pytest.mark.parametrize("design", ["crm", "tite_crm", "tite_crm adaptive"])
@pytest.mark.parametrize("gap_days", [None, 7.0])
def test_the_vectorised_crm_equals_the_engine_that_calls_decide(design, gap_days):
    """100 trials per shipped scenario (and with a patient every 7 days, where the TITE-CRM doses with patients
    pending): every field of the results is the same. The adaptive weights read each DLT's
    day, in whole days after dosing in both (the engine's states record it as ``dlt_day``)."""
    spec = ADAPTIVE if design.endswith("adaptive") else AXA
    design = design.split()[0]
    for scenario in load_scenarios("axa_nk02", spec).scenarios:
        if gap_days is not None:
            scenario = Scenario(scenario.name, "", scenario.p_crs_at_least, scenario.p_other_dlt, scenario.p_response,
                                gap_days, None)
        latent = draw_latent_patients(np.random.SeedSequence(7), 100, 9)
        fast = simulate_trials(spec, design_for(spec, design), scenario, latent)
        engine = simulate_trials(spec, design_for(spec, design), scenario, latent, vectorised=False)
        for field in fields(TrialResults):
            np.testing.assert_array_equal(getattr(fast, field.name), getattr(engine, field.name),
                                          err_msg=f"{scenario.name}: {field.name}")


@pytest.mark.parametrize("weights", ["linear", "adaptive"])
def test_a_tite_crm_stop_the_complete_data_no_longer_support_is_flagged_as_the_engine_flags_it(weights):
    """With a patient every 2 days the TITE-CRM can stop on the weighted data of patients inside the window; the
    final analysis, on complete data, may no longer stop: the engine keeps the stop and its selection (none) and sets
    ``final_analysis_changed``, and so does the vectorised path (it used to leave the flag unset)."""
    spec = lb.parse_spec(spec_text_with(AXA.text, "decision.crm", f'tite_weights = "{weights}"'))
    toxic = next(scenario for scenario in load_scenarios("axa_nk02", spec).scenarios if scenario.name == "all toxic")
    scenario = Scenario(toxic.name, "", toxic.p_crs_at_least, toxic.p_other_dlt, toxic.p_response, 2.0, None)
    latent = draw_latent_patients(np.random.SeedSequence(31337), 300, 9)
    fast = simulate_trials(spec, design_for(spec, "tite_crm"), scenario, latent)
    engine = simulate_trials(spec, design_for(spec, "tite_crm"), scenario, latent, vectorised=False)
    for field in fields(TrialResults):
        np.testing.assert_array_equal(getattr(fast, field.name), getattr(engine, field.name), err_msg=field.name)
    assert fast.final_analysis_changed.sum() >= 3 and np.all(fast.selected_level[fast.final_analysis_changed] == -1)


@pytest.mark.parametrize("dlt_onset_beta", [(1.0, 1.0), (1.0, 3.0)])
def test_the_vectorised_adaptive_tite_crm_equals_the_engine_patient_by_patient(dlt_onset_beta):
    """dfcrm's titesim setting (a decision for every patient, 18 patients, one every 3 days), where the adaptive
    weights change most trials and the DLT day's convention matters (the onset itself instead of its whole days
    changes about one trial in ten): the engine that calls ``decide`` and the vectorised path agree, trial by trial."""
    text = spec_text_with(ADAPTIVE.text, "escalation", "group_size = 1\nsentinel_patients = 0\nmax_patients = 18")
    adaptive = lb.parse_spec(text)
    linear = lb.parse_spec(spec_text_with(text, "decision.crm", 'tite_weights = "linear"'))
    scenario = Scenario("fast accrual", "", np.zeros((3, 4)), np.array([0.05, 0.15, 0.30]), np.full(3, 0.5), 3.0, None,
                        dlt_onset_beta=dlt_onset_beta)
    latent = draw_latent_patients(np.random.SeedSequence(7), 100, 18)
    fast = simulate_trials(adaptive, design_for(adaptive, "tite_crm"), scenario, latent)
    engine = simulate_trials(adaptive, design_for(adaptive, "tite_crm"), scenario, latent, vectorised=False)
    for field in fields(TrialResults):
        np.testing.assert_array_equal(getattr(fast, field.name), getattr(engine, field.name), err_msg=field.name)
    by_linear = simulate_trials(linear, design_for(linear, "tite_crm"), scenario, latent)
    assert np.sum(np.any(fast.n_patients != by_linear.n_patients, axis=1)) > 30  # the weights really differ


def test_with_fast_accrual_the_tite_crm_is_shorter_than_the_crm_on_the_same_patients():
    scenario = Scenario("fast", "", np.zeros((3, 4)), np.array([0.05, 0.15, 0.3]), np.full(3, 0.5), 7.0, None)
    latent = draw_latent_patients(np.random.SeedSequence(11), 300, 9)
    crm = simulate_trials(AXA, design_for(AXA, "crm"), scenario, latent)
    tite = simulate_trials(AXA, design_for(AXA, "tite_crm"), scenario, latent)
    # a patient every 7 days: the TITE-CRM doses them as they come (the ninth on day 56, its window ends on day
    # 84); the CRM waits for each cohort's window (98 days when no trial stops)
    assert tite.duration_days.max() == 56 + 28 and crm.duration_days.max() == 98
    assert np.mean(tite.duration_days < crm.duration_days) > 0.9


def test_the_scenario_file_states_the_dlt_onset_distribution():
    text = (lb.__file__.replace("__init__.py", "data/scenarios/axa_nk02.toml"))
    base = open(text, encoding="utf-8").read()
    scenarios = parse_scenarios(base, AXA, source="s.toml")
    assert all(s.dlt_onset_beta == (1.0, 1.0) for s in scenarios.scenarios)  # uniform over the window by default
    early = parse_scenarios(base.replace("[simulation]", "[simulation]\ndlt_onset_beta = [1, 3]", 1), AXA, source="s.toml")
    days = early.scenarios[0].onset_days(28, np.linspace(0.01, 0.99, 99))
    assert days.max() <= 28 and np.median(days) < 14 * 0.6  # Beta(1, 3): most DLTs early in the window
    with pytest.raises(lb.SpecError, match="dlt_onset_beta"):
        parse_scenarios(base.replace("[simulation]", "[simulation]\ndlt_onset_beta = [1]", 1), AXA, source="s.toml")


def test_simulate_runs_the_crm_designs_next_to_boin(tmp_path, capsys):
    assert main(["simulate", "axa_nk02", "--designs", "boin,crm,tite_crm", "--n-trials", "50", "--seed", "1",
                 "--out", str(tmp_path / "oc"), "--no-progress"]) == 0
    trials = (tmp_path / "oc" / "trials.csv").read_text()
    assert "tite_crm" in trials and "crm" in trials


def test_prior_sensitivity_varies_the_crm_prior_and_says_when_a_design_reads_none():
    from lupusbayes.sensitivity import prior_sensitivity, sensitivity_text

    crm = prior_sensitivity(AXA, "1NNN", design="crm")
    assert [row.alternative.changes for row in crm.rows] == [{"decision.crm.prior_sd": pytest.approx(2 * np.sqrt(1.34),
                                                                                                   abs=1e-5)},
                                                          {"decision.crm.prior_sd": pytest.approx(np.sqrt(1.34) / 2,
                                                                                                  abs=1e-5)}]
    boin = prior_sensitivity(AXA, "1NNN", design="boin")
    assert boin.rows == () and "not applicable: the boin design reads no prior" in sensitivity_text(boin)


def test_the_crm_settings_are_calibratable(tmp_path):
    assert main(["calibrate", "axa_nk02", "--designs", "crm,tite_crm", "--vary", "decision.crm.prior_sd=0.8,1.6",
                 "--n-trials", "20", "--seed", "1", "--out", str(tmp_path / "cal"), "--no-progress"]) == 0
    assert "#1: prior_sd=0.8" in (tmp_path / "cal" / "calibration.txt").read_text()  # keys shortened to their last part
