"""Decision safety: the protocol's DLT, the sentinel, pending patients and the selection, for every design.

Two parts. First, every example of the decision-safety review as a test (each failed on the main
branch before the fix). Second, the safety invariants as properties over random trial histories
(hypothesis), for every design (docs/decisions.md, "Safety invariants", lists them with these tests):

* more toxicity (one more DLT, a higher CRS or ICANS grade, one more patient still inside the DLT
  window) never gives a higher next level, a shorter wait, a larger next cohort at the same level,
  dosing where there was none, or a higher selected dose;
* the recommended level is one every rule allows, and a selected level was given to at least
  ``min_patients_at_selection`` patients;
* outcome strings, a counts file and a patient file with the same evaluable counts give the same
  recommendation.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from conftest import ROOT, spec_text_with
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import lupusbayes as lb
from lupusbayes.cli import main
from lupusbayes.decisions import (
    DecisionContext,
    decide,
    design_for,
    exact_blrm,
    load_state,
    state_from_outcomes,
    transition_table,
)
from lupusbayes.decisions.recommend import min_patients_at_selection
from lupusbayes.spec import TIME_TO_EVENT_DESIGNS
from lupusbayes.decisions.state import PatientRecord, TrialState
from lupusbayes.errors import DecisionError
from lupusbayes.simulation import SimulationPlan, load_scenarios, simulate
from lupusbayes.workflow import decision_inputs, expected_toxicity_model

AXA_TEXT = (ROOT / "models" / "axa_nk02.toml").read_text()
KN5601_TEXT = (ROOT / "models" / "kn5601.toml").read_text()
DESIGNS = ("lupusbayes", "blrm_ewoc", "blrm_loss", "boin", "3+3", "crm", "tite_crm", "boin12", "tite_boin")
#: Random histories per design and invariant; ``LUPUSBAYES_SAFETY_EXAMPLES=600`` for the long run in docs/decisions.md.
EXAMPLES = int(os.environ.get("LUPUSBAYES_SAFETY_EXAMPLES", "60"))


def spec_with(base: str, decision: str, *, hierarchy_none: bool = False) -> lb.TrialSpec:
    text = spec_text_with(base, "decision", decision)
    if hierarchy_none:  # one study: the exact BLRM, so these tests need no MCMC
        text = text.replace('[model.blrm]\noutcome = "dlt"\nhierarchy = "exnex"', '[model.blrm]\noutcome = "dlt"\nhierarchy = "none"')
    return lb.parse_spec(text)


SPECS = {name: spec_with(AXA_TEXT, f'design = "{name}"', hierarchy_none=True) for name in DESIGNS}
#: The TITE-CRM with the adaptive weights, which read each DLT's day (the invariants hold for it too)
SPECS["tite_crm_adaptive"] = lb.parse_spec(spec_text_with(SPECS["tite_crm"].text, "decision.crm",
                                                          'tite_weights = "adaptive"'))
#: The same designs with CRS grade 2 named as a pausing event, for the invariants (a higher grade may then pause)
PAUSING_SPECS = {name: lb.parse_spec(spec.text.replace("max_patients = 9", "max_patients = 9\npause_crs_grade_at_least = 2"))
                 for name, spec in SPECS.items()}
AXA = SPECS["lupusbayes"]
HEADER = ("study_id,patient_id,age_years,sex,dose,dose_unit,weight_kg,crs_grade,icans_grade,dlt,safety_days,"
          "follow_up_months,sledai_baseline,sledai_latest\n")


def patient_row(patient_id, dose, *, crs=0, icans=0, dlt="", days=60, months=2):
    return f"AXA-NK02,{patient_id},22,F,{dose},cells/kg,54,{crs},{icans},{dlt},{days},{months},12,8\n"


# ---- 1. every recorded DLT counts, whatever caused it ----------------------------------------------------


def test_icans_driven_dlts_stop_a_blrm_design_that_once_escalated(tmp_path, capsys):
    """3 at the lowest dose, two DLTs from ICANS (CRS 0-1), past the window: never ESCALATE."""
    path = tmp_path / "state.csv"
    path.write_text(HEADER + patient_row("S1", 2.5e7, icans=2) + patient_row("S2", 2.5e7, crs=1, icans=3)
                    + patient_row("S3", 2.5e7))
    spec_path = tmp_path / "axa.toml"
    spec_path.write_text(SPECS["blrm_ewoc"].text)
    assert main(["decide", str(spec_path), "--state", str(path), "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["action"] == "stop" and payload["stop_reasons"] == ["no level is admissible"]
    ewoc = next(v for v in payload["verdicts"] if v["rule"] == "EWOC")
    assert ewoc["checks"][0]["estimate"]["value"] > 0.25


def test_the_lupusbayes_design_reads_the_protocol_dlt_with_codata():
    """With KN5601 as co-data the model fitted is the BLRM on each patient's DLT status (ICANS DLTs included)."""
    spec = lb.load_spec("axa_nk02")
    state = load_state(_state_file(
        patient_row("S1", 2.5e7, icans=2) + patient_row("S2", 2.5e7, crs=1, icans=3) + patient_row("S3", 2.5e7)), spec)
    model = expected_toxicity_model(spec, design_for(spec), state, [lb.load_kn5601()])
    assert model.kind == "blrm" and model.hierarchy == "exnex"
    outcomes = dict(zip(model.labels, model.outcome.tolist(), strict=True))
    assert [outcomes[f"AXA-NK02/S{i}"] for i in (1, 2, 3)] == [1, 1, 0]
    assert sum(outcomes[label] for label in outcomes if label.startswith("KN5601/")) == 0  # no CRS >= 3 in KN5601


def _state_file(rows: str):
    import tempfile
    from pathlib import Path

    folder = Path(tempfile.mkdtemp())
    path = folder / "state.csv"
    path.write_text(HEADER + rows)
    return path


def test_the_crs_model_refuses_a_dlt_it_cannot_see_unless_allowed(tmp_path, capsys):
    spec_path = tmp_path / "crs.toml"
    spec_path.write_text(spec_with(AXA_TEXT, 'design = "lupusbayes"\ntoxicity_model = "crs"').text)
    state = tmp_path / "state.csv"
    state.write_text(HEADER + patient_row("S1", 2.5e7, icans=2) + patient_row("S2", 2.5e7) + patient_row("S3", 2.5e7))
    code = main(["decide", str(spec_path), "--state", str(state), "--codata", "kn5601"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "AXA-NK02/S1" in err and "--allow-unmodelled-dlt" in err
    spec = lb.load_spec(spec_path)
    with pytest.raises(DecisionError, match="not explained by CRS >= 3"):
        decision_inputs(spec, load_state(state, spec), codata=[lb.load_kn5601()])


def test_dlt_components_missing_is_said_only_when_they_are_missing():
    spec = SPECS["blrm_ewoc"]
    recorded = load_state(_state_file(patient_row("S1", 2.5e7, dlt="no") + patient_row("S2", 2.5e7, dlt="yes")
                                      + patient_row("S3", 2.5e7, dlt="no")), spec)
    inputs = decision_inputs(spec, recorded)
    assert not any("DLT components missing" in w for w in decide(inputs.context, inputs.design).warnings)
    derived = load_state(_state_file("".join(patient_row(f"S{i}", 2.5e7, icans="") for i in (1, 2, 3))), spec)
    inputs = decision_inputs(spec, derived)
    warnings = decide(inputs.context, inputs.design).warnings
    assert any("DLT components missing" in w and "ICANS and other adverse events not recorded" in w for w in warnings)


# ---- 2. the sentinel ----------------------------------------------------------------------------------


def _record(pid, level, days, dlt=False, **extra):
    return PatientRecord(pid, level, days, dlt, **extra)


def _exact_context(spec, state, efficacy=None):
    n, y = state.evaluable_counts()
    toxicity = exact_blrm(spec.dosing.levels, n, y, prior=spec.models.blrm.prior,
                          reference_dose=spec.dosing.reference_dose)
    return DecisionContext(spec, state, toxicity=toxicity, efficacy=efficacy)


def test_a_dlt_in_the_sentinel_never_shortens_its_wait():
    group = [_record(f"S1-0{i}", 0, 60) for i in (1, 2, 3)]
    safe = decide(_exact_context(AXA, TrialState(AXA, (*group, _record("S2-01", 1, 5)), "t")))
    toxic = decide(_exact_context(AXA, TrialState(AXA, (*group, _record("S2-01", 1, 5, dlt=True)), "t")))
    assert (safe.action, safe.next_level_index, safe.n_next, safe.wait_days) == ("hold", 1, 2, 26)  # day 31: its response
    assert toxic.paused and toxic.wait_days == 26 and toxic.n_next == 0  # nobody is dosed before day 31
    assert any("SRC reviews it" in w for w in toxic.warnings)


# ---- 3. pending patients ------------------------------------------------------------------------------


@pytest.mark.parametrize("design", [name for name in DESIGNS if name not in TIME_TO_EVENT_DESIGNS])
def test_no_design_doses_while_the_last_cohort_is_inside_the_window(design):
    """3 evaluable at level 1, 3 dosed two days ago at level 2: every design waits 26 days (BOIN12, which reads
    each patient's response, 29: until day 31, when the month-1 response is assessed)."""
    spec = SPECS[design]
    patients = [_record(f"a{i}", 0, 60) for i in range(3)] + [_record(f"b{i}", 1, 2) for i in range(3)]
    recommendation = decide(_exact_context(spec, TrialState(spec, tuple(patients), "t")), design_for(spec))
    wait = spec.decision.efficacy.response_day - 2 if design_for(spec).reads_responses else 26
    assert recommendation.paused and recommendation.wait_days == wait and recommendation.next_level_index is None


@pytest.mark.parametrize("design", TIME_TO_EVENT_DESIGNS)
def test_a_time_to_event_design_doses_with_patients_pending_and_says_so(design):
    """The explicit exception: a patient dosed two days ago, and the design doses now, saying in its verdict and
    warnings that it doses with patients inside the window by its own rule (their follow-up read)."""
    spec = SPECS[design]
    patients = ([_record(f"a{i}", 0, 60) for i in range(3)] + [_record(f"b{i}", 1, 40) for i in range(2)]
                + [_record("b3", 1, 2)])
    recommendation = decide(_exact_context(spec, TrialState(spec, tuple(patients), "t")), design_for(spec))
    assert not recommendation.paused and recommendation.next_level_index is not None
    window = next(v for v in recommendation.verdicts if v.rule == "DLT window (time-to-event)")
    assert "1 patient(s) inside the window" in window.verdict and "exception to the DLT window rule" in window.verdict
    assert any("inside the DLT window" in warning and "its own rule" in warning for warning in recommendation.warnings)
    proposal = recommendation.verdicts[-1]
    assert "inside the DLT window" in proposal.verdict or "weighted by their follow-up" in proposal.verdict


def test_the_pause_has_a_date_and_its_transitions_are_the_pending_outcomes():
    spec = SPECS["blrm_ewoc"]
    patients = [_record(f"a{i}", 0, 60) for i in range(3)] + [_record(f"b{i}", 1, 2) for i in range(3)]
    from datetime import date

    state = TrialState(spec, tuple(patients), "t", as_of=date(2026, 6, 1))
    context = _exact_context(spec, state)
    recommendation = decide(context)
    assert recommendation.earliest_date == date(2026, 6, 27)
    rows = transition_table(context, recommendation=recommendation)
    assert [row.n_dlt for row in rows] == [0, 1, 2, 3]  # the outcomes of the 3 pending patients
    assert all(not row.recommendation.paused for row in rows)
    levels = [-1 if row.recommendation.next_level_index is None else row.recommendation.next_level_index for row in rows]
    assert levels[0] == 1 and levels == sorted(levels, reverse=True)  # 0/3: level 3 stays closed (EWOC)


def test_a_stop_with_patients_pending_selects_provisionally():
    spec = SPECS["blrm_ewoc"]
    patients = ([_record(f"a{i}", 0, 60) for i in range(3)] + [_record(f"b{i}", 1, 60) for i in range(3)]
                + [_record(f"c{i}", 1, 3) for i in range(3)])  # the 9th patient: the sample size is reached
    recommendation = decide(_exact_context(spec, TrialState(spec, tuple(patients), "t")))
    assert recommendation.action == "stop" and recommendation.selection.provisional
    assert recommendation.selection.n_pending == 3 and "PROVISIONAL" in recommendation.selection.reason
    assert any("PROVISIONAL" in w for w in recommendation.warnings)


def test_the_3_plus_3_waits_for_pending_patients_instead_of_raising():
    spec = SPECS["3+3"]
    patients = [_record(f"a{i}", 0, 60) for i in range(3)] + [_record(f"b{i}", 1, 2) for i in range(3)]
    recommendation = decide(DecisionContext(spec, TrialState(spec, tuple(patients), "t")), design_for(spec))
    assert recommendation.paused and recommendation.wait_days == 26


# ---- 4. selection -------------------------------------------------------------------------------------


def test_a_3_plus_3_stopped_by_the_sample_size_never_selects_an_untreated_level(capsys):
    assert main(["decide", "axa_nk02", "--design", "3+3", "--outcomes", "1NNN 2NTN 2NNN", "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["action"] == "stop" and payload["selection"]["level"] == 2 and payload["levels_count_from"] == 1
    assert payload["selection"]["dose_label"] == "7.5e7 cells/kg" and "classical rule" in payload["selection"]["reason"]


def test_simulated_3_plus_3_trials_select_only_levels_given_to_three_patients():
    spec = lb.load_spec("axa_nk02")
    scenarios = load_scenarios("axa_nk02", spec)
    result = simulate(SimulationPlan(spec, scenarios, ("3+3", "boin"), n_trials=400, seed=3))
    for trials in result.trials.groupby(["scenario", "design"]):
        frame = trials[1]
        selected = frame["selected_level"].to_numpy()
        for row, level in enumerate(selected):
            if level > 0:
                assert frame[f"n_patients_level_{level}"].to_numpy()[row] >= 3


# ---- 5. outcome strings with the shipped specs -----------------------------------------------------------


def test_outcome_strings_work_with_the_shipped_specs(capsys):
    assert main(["decide", "kn5601", "--design", "blrm_ewoc", "--outcomes", "1NNN 2NNT"]) == 0
    out = capsys.readouterr().out
    assert "HOLD" in out or "ESCALATE" in out or "DE-ESCALATE" in out


# ---- 6. a fit of other data never decides ---------------------------------------------------------------


@pytest.fixture(scope="module")
def kn5601_blrm_fit_file(tmp_path_factory, request):
    mock_blrm_fit = request.getfixturevalue("mock_blrm_fit")
    path = tmp_path_factory.mktemp("fits") / "blrm.nc"
    mock_blrm_fit.save(path)
    return path


@pytest.fixture(scope="module")
def kn5601_sledai_fit_file(tmp_path_factory, request):
    mock_sledai_fit = request.getfixturevalue("mock_sledai_fit")
    path = tmp_path_factory.mktemp("fits") / "sledai.nc"
    mock_sledai_fit.save(path)
    return path


KN5601_TOXIC = ("study_id,patient_id,age_years,sex,dose,crs_grade,follow_up_months,sledai_baseline,sledai_latest\n"
                "KN5601,001,13,F,1*10^9,3,6,14,0\nKN5601,002,13,F,1*10^9,3,6,14,2\nKN5601,004,17,F,1*10^9,4,4,10,8\n")


@pytest.mark.parametrize("state_kind", ["patients", "counts"])
@pytest.mark.parametrize("command", ["decide", "report", "plot"])
def test_a_fit_of_other_data_is_refused_naming_the_file(state_kind, command, kn5601_blrm_fit_file, tmp_path, capsys):
    state = tmp_path / "c.csv"
    state.write_text(KN5601_TOXIC if state_kind == "patients" else "dose,n_patients,n_dlt\n1e9,3,3\n")
    if command == "plot":
        args = ["plot", str(kn5601_blrm_fit_file), "--kind", "recommendation", "--state", str(state),
                "--out", str(tmp_path / "r.png")]
    else:
        args = [command, "kn5601", "--state", str(state), "--design", "blrm_ewoc", "--fit", str(kn5601_blrm_fit_file)]
        if command == "report":
            args += ["--out", str(tmp_path / "r.html")]
    code = main(args)
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and str(kn5601_blrm_fit_file) in err and "other data" in err
    assert not (tmp_path / "r.html").exists() and not (tmp_path / "r.png").exists()


def test_a_fit_of_the_wrong_kind_is_one_line(kn5601_blrm_fit_file, kn5601_sledai_fit_file, capsys):
    code = main(["decide", "kn5601", "--state", "kn5601", "--efficacy-fit", str(kn5601_blrm_fit_file)])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "BLRM (DLT) fit" in err and "SLEDAI-2K" in err
    code = main(["decide", "kn5601", "--state", "kn5601", "--fit", str(kn5601_sledai_fit_file)])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "SLEDAI-2K fit" in err


def test_the_fit_of_the_state_itself_is_accepted(kn5601_blrm_fit_file, capsys):
    assert main(["decide", "kn5601", "--state", "kn5601", "--design", "blrm_ewoc", "--fit",
                 str(kn5601_blrm_fit_file)]) in (0, 3)
    assert "Recommendation for KN5601" in capsys.readouterr().out


# ---- 7. enrolment order -----------------------------------------------------------------------------


def test_a_blank_infusion_date_is_refused_not_reordered(tmp_path, capsys):
    path = tmp_path / "state.csv"
    path.write_text("study_id,patient_id,age_years,sex,dose,dose_unit,weight_kg,crs_grade,infusion_date,"
                    "follow_up_months,sledai_baseline,sledai_latest\n"
                    "AXA-NK02,S1,22,F,2.5e7,cells/kg,54,0,2026-04-01,2,12,8\n"
                    "AXA-NK02,S2,22,F,7.5e7,cells/kg,54,0,,1,12,8\n"
                    "AXA-NK02,S3,22,F,2.5e7,cells/kg,54,0,2026-05-20,1,12,8\n")
    code = main(["decide", "axa_nk02", "--state", str(path), "--as-of", "2026-06-30", "--design", "3+3"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and ":3:" in err and "infusion_date" in err and "blank" in err


# ---- safety invariants over random trial histories ----------------------------------------------------------


@st.composite
def histories(draw, spec):
    """A trial history reached by the design itself: at every step the design's recommendation is carried out,
    with random outcomes (DLT recorded or derived from CRS / ICANS grades, responses); the last cohort may still
    be inside the DLT window."""
    design = design_for(spec)
    patients: list[dict] = []
    for _ in range(draw(st.integers(0, 5))):
        recommendation = decide(_context_of(spec, patients), design)
        if recommendation.action == "stop" or recommendation.paused:
            break
        for _ in range(recommendation.n_next):
            patients.append(_random_patient(draw, recommendation.next_level_index, len(patients)))
    if patients and draw(st.booleans()):  # the last cohort still inside the window
        cut = draw(st.integers(0, 27))
        size = draw(st.integers(1, min(3, len(patients))))
        for patient in patients[-size:]:
            patient["days"] = min(patient["days"], cut)
    return patients


def _random_patient(draw, level, number):
    source = draw(st.sampled_from(["recorded", "grades"]))
    return {"id": f"p{number + 1}", "level": level, "days": 60,
            "crs": draw(st.integers(0, 4)) if source == "grades" else draw(st.integers(0, 2)),
            "icans": draw(st.integers(0, 3)) if source == "grades" else 0,
            "recorded": draw(st.booleans()) if source == "recorded" else None,
            "responder": draw(st.booleans()),
            "dlt_day": draw(st.integers(0, 27))}  # the day of the DLT, if the patient has one (within the window)


def _has_dlt(spec, p) -> bool:
    return bool(spec.dlt.dlt_status([p["crs"]], [p["icans"]],
                                    [np.nan if p["recorded"] is None else float(p["recorded"])])[0])


def _records(spec, patients):
    records = []
    for p in patients:
        dlt = _has_dlt(spec, p)
        records.append(PatientRecord(p["id"], p["level"], p["days"], dlt, crs_grade=p["crs"],
                                     responder=p["responder"] if p["days"] >= 30 else None, icans_grade=p["icans"],
                                     dlt_day=min(p["dlt_day"], p["days"]) if dlt else None))
    return tuple(records)


def _context_of(spec, patients):
    state = TrialState(spec, _records(spec, patients), "hypothesis")
    n, y = state.evaluable_counts()
    toxicity = exact_blrm(spec.dosing.levels, n, y, prior=spec.models.blrm.prior,
                          reference_dose=spec.dosing.reference_dose)
    efficacy = None
    if design_for(spec).needs_efficacy_model:
        known = [r for r in state.patients if r.responder is not None]
        n_known = np.bincount([r.level for r in known], minlength=state.n_levels)
        responders = np.bincount([r.level for r in known if r.responder], minlength=state.n_levels)
        efficacy = exact_blrm(spec.dosing.levels, n_known, responders, prior=spec.models.response.prior,
                              reference_dose=spec.dosing.reference_dose, quantity="p_response")
    return DecisionContext(spec, state, toxicity=toxicity, efficacy=efficacy)


def _doses_now(recommendation) -> bool:
    return recommendation.action != "stop" and not recommendation.paused


def _selected(recommendation) -> int:
    selection = recommendation.selection
    return -1 if selection is None or selection.level_index is None else selection.level_index


def assert_at_most_as_aggressive(worse, better, what):
    """``worse`` (after more toxicity) is no more aggressive than ``better`` (see the module docstring)."""
    if _doses_now(worse):
        assert _doses_now(better), f"{what}: doses now where the less toxic history did not"
        assert worse.next_level_index <= better.next_level_index, f"{what}: a higher next level"
        assert worse.wait_days >= better.wait_days, f"{what}: a shorter wait"
        if worse.next_level_index == better.next_level_index:
            assert worse.n_next <= better.n_next, f"{what}: a larger next cohort"
    elif worse.paused and better.paused:
        assert worse.wait_days >= better.wait_days, f"{what}: a shorter pause"
    if worse.action == "stop" and better.action == "stop":
        assert _selected(worse) <= _selected(better), f"{what}: a higher selected dose"


def _more_toxic_variants(draw, patients, spec):
    """One more DLT, a higher CRS grade, a higher ICANS grade, one more patient inside the window (for the adaptive
    TITE-CRM a patient with a DLT keeps its DLT day: an earlier DLT is another comparison, see
    test_an_earlier_dlt_day_can_make_the_adaptive_tite_crm_more_aggressive)."""
    variants = []
    index = draw(st.integers(0, len(patients) - 1))
    patient = patients[index]
    dated = spec.decision.crm.tite_weights == "adaptive" and _has_dlt(spec, patient)
    if patient["recorded"] is False:
        variants.append(("one more (recorded) DLT", {**patient, "recorded": True}))
    if patient["recorded"] is None and patient["crs"] < 4:
        variants.append(("a higher CRS grade", {**patient, "crs": patient["crs"] + 1}))
    if patient["recorded"] is None and patient["icans"] < 4:
        variants.append(("a higher ICANS grade", {**patient, "icans": patient["icans"] + 1}))
    if patient["days"] >= 28:
        days = draw(st.integers(patient["dlt_day"] if dated else 0, 27))
        variants.append(("one more patient inside the window", {**patient, "days": days}))
    return [(what, patients[:index] + [changed] + patients[index + 1:]) for what, changed in variants]


@pytest.mark.parametrize("name", [*DESIGNS, "tite_crm_adaptive"])
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=st.data())
def test_more_toxicity_is_never_more_aggressive(name, data):
    spec = data.draw(st.sampled_from([SPECS[name], PAUSING_SPECS[name]]))
    design = design_for(spec)
    patients = data.draw(histories(spec))
    better = decide(_context_of(spec, patients), design)
    _check_allowed_and_selected(spec, better, _context_of(spec, patients).state)
    if not patients:
        return
    for what, changed in _more_toxic_variants(data.draw, patients, spec):
        worse = decide(_context_of(spec, changed), design)
        assert_at_most_as_aggressive(worse, better, what)


def test_an_earlier_dlt_day_can_make_the_adaptive_tite_crm_more_aggressive():
    """Not an invariant (docs/decisions.md says so): the adaptive weights read the DLT days as the time profile of
    the risk (Cheung & Chappell 2000), so the same DLT earlier in the window says a pending patient has passed more
    of the risk, and the pending patient weighs more. 3 complete at level 1; at level 2 a DLT, a complete patient and
    two patients 13 days into the 28-day window: a DLT on day 27 weighs them 0.24 (de-escalate to level 1), on day 3
    0.70 (stay at level 2). The linear weights do not read the day (0.46: level 1 either way)."""
    def decided(spec, dlt_day):
        patients = ([_record(f"a{i}", 0, 60) for i in (1, 2, 3)]
                    + [_record("b1", 1, 45, dlt=True, dlt_day=dlt_day), _record("b2", 1, 40), _record("c1", 1, 13),
                       _record("c2", 1, 13)])
        return decide(DecisionContext(spec, TrialState(spec, tuple(patients), "t")), design_for(spec))

    adaptive, linear = SPECS["tite_crm_adaptive"], SPECS["tite_crm"]
    late, early = decided(adaptive, 27), decided(adaptive, 3)
    assert (late.action, late.next_level_index) == ("de-escalate", 0) and "day(s) 27: 0.24, 0.24" in late.verdicts[-1].verdict
    assert (early.action, early.next_level_index) == ("hold", 1) and "day(s) 3: 0.70, 0.70" in early.verdicts[-1].verdict
    assert {decided(linear, day).next_level_index for day in (27, 3)} == {0}


def _check_allowed_and_selected(spec, recommendation, state):
    if _doses_now(recommendation):
        assert recommendation.next_level_index in recommendation.allowed_levels
        if state.current_level_index is not None:
            assert recommendation.next_level_index <= max(state.highest_tried_level, state.current_level_index) + 1
    if recommendation.action == "stop" and _selected(recommendation) >= 0:
        assert state.treated_counts()[_selected(recommendation)] >= min_patients_at_selection(spec)


@pytest.mark.parametrize("name", ["blrm_ewoc", "blrm_loss", "boin", "3+3", "crm", "tite_crm", "tite_crm_adaptive",
                                  "tite_boin"])
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=st.data())
def test_the_three_state_formats_give_one_answer(name, data, tmp_path_factory):
    """Outcome strings, a counts file and a patient file with the same (evaluable) counts: one recommendation."""
    spec = SPECS[name]
    patients = [p for p in data.draw(histories(spec)) if p["days"] >= 28]
    records = _records(spec, patients)
    cohorts, text = [], []
    for record in records:  # cohorts in the outcome-string sense: consecutive patients at one level
        if cohorts and cohorts[-1][0] == record.level and len(cohorts[-1][1]) < 3:
            cohorts[-1][1].append(record.dlt)
        else:
            cohorts.append((record.level, [record.dlt]))
    outcomes = " ".join(f"{level + 1}" + "".join("T" if dlt else "N" for dlt in dlts) for level, dlts in cohorts)
    folder = tmp_path_factory.mktemp("formats")
    counts = ["dose,n_patients,n_dlt,current"]
    n = np.bincount([r.level for r in records], minlength=3)
    y = np.bincount([r.level for r in records if r.dlt], minlength=3)
    current = records[-1].level if records else None
    for level, dose in enumerate(spec.dosing.levels):
        if n[level]:
            counts.append(f"{dose:g},{n[level]},{y[level]},{'yes' if level == current else ''}")
    (folder / "counts.csv").write_text("\n".join(counts) + "\n")
    rows = "".join(patient_row(r.patient_id, spec.dosing.levels[r.level], dlt="yes" if r.dlt else "no")
                   for r in records)
    (folder / "patients.csv").write_text(HEADER + rows)
    design = design_for(spec)
    answers = []
    states = [state_from_outcomes(spec, outcomes), load_state(folder / "counts.csv", spec)]
    if records:
        states.append(load_state(folder / "patients.csv", spec))
    for state in states:
        inputs = decision_inputs(spec, state, design=design)
        r = decide(inputs.context, inputs.design)
        answers.append((r.action, r.next_level_index, r.n_next, r.stop_reasons, _selected(r)))
    assert all(answer == answers[0] for answer in answers), (outcomes, answers)


def test_a_state_the_3_plus_3_cannot_read_is_one_line(tmp_path, capsys):
    code = main(["decide", "axa_nk02", "--design", "3+3", "--outcomes", "1NNN 1NNN 1NNN"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "at most 6 patients" in err


# ---- what the output says: only what applies ------------------------------------------------------------


def test_the_output_prints_only_the_rules_and_notes_that_apply(capsys):
    assert main(["decide", "kn5601", "--design", "3+3", "--outcomes", "1NNN 2NNN"]) == 0
    out = capsys.readouterr().out
    assert "Monte Carlo" not in out and "+/- <" not in out
    spec = spec_with(AXA_TEXT, 'design = "lupusbayes"', hierarchy_none=True)
    off = lb.parse_spec(spec.text.replace("efficacy_driven_escalation = true", "efficacy_driven_escalation = false"))
    state = TrialState(off, (_record("S1", 0, 30),), "t")
    from lupusbayes.report.text import recommendation_text

    efficacy_posterior = exact_blrm(off.dosing.levels, [1, 0, 0], [0, 0, 0], prior=off.models.response.prior,
                                    reference_dose=off.dosing.reference_dose, quantity="p_response")
    text = recommendation_text(decide(_exact_context(off, state, efficacy_posterior)), off)
    assert "response rate" not in text  # the efficacy-driven rule is off: its number is not printed
    on = decide(_exact_context(spec, TrialState(spec, (_record("S1", 0, 30),), "t"), efficacy_posterior))
    assert "response rate" in recommendation_text(on, spec)


def test_an_event_the_spec_names_as_pausing_pauses_like_a_dlt():
    spec = lb.parse_spec(AXA.text.replace("max_patients = 9", "max_patients = 9\npause_crs_grade_at_least = 2"))
    sentinel_done = _record("S1", 0, 60)
    for grade, paused in ((1, False), (2, True)):
        second = _record("S2", 0, 5, crs_grade=grade)  # the open group: its last place may be filled, unless paused
        recommendation = decide(_exact_context(spec, TrialState(spec, (sentinel_done, second), "t")))
        assert recommendation.paused == paused, grade
    assert lb.parse_spec(AXA.text).escalation.pause_crs_grade_at_least is None
    with pytest.raises(lb.SpecError, match="pause_icans_grade_at_least"):
        lb.parse_spec(AXA.text.replace("max_patients = 9", "max_patients = 9\npause_icans_grade_at_least = 7"))


def test_a_borrowing_model_without_codata_says_what_to_give(capsys):
    assert main(["decide", "axa_nk02", "--outcomes", "1NNN"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--codata" in err and "hierarchy 'exnex'" in err


def test_a_patient_who_is_not_dlt_evaluable_leaves_the_decisions_and_is_replaced(tmp_path):
    path = tmp_path / "state.csv"
    header = HEADER.rstrip("\n") + ",dlt_evaluable\n"
    path.write_text(header + patient_row("S1", 2.5e7).rstrip("\n") + ",yes\n"
                    + patient_row("S2", 2.5e7, days=9).rstrip("\n") + ",no\n"
                    + patient_row("S3", 2.5e7).rstrip("\n") + ",\n")
    spec = SPECS["lupusbayes"]
    state = load_state(path, spec)
    assert [p.patient_id for p in state.patients] == ["S1", "S3"]  # S2 left the window early without a DLT
    recommendation = decide(_exact_context(spec, state))
    assert (recommendation.action, recommendation.n_next) == ("hold", 1)  # S2's place is filled; nobody waits for S2
    assert any("not DLT-evaluable" in note and "S2" in note for note in recommendation.notes)
    path.write_text(path.read_text().replace(",no\n", ",maybe\n"))
    with pytest.raises(lb.CohortError, match="dlt_evaluable"):
        load_state(path, spec)


def test_a_second_decide_reads_its_fits_from_the_cache_and_gives_the_same_answer(tmp_path, capsys, mock_sampling):
    from lupusbayes.fitting.fitcache import FitCache

    argv = ["decide", "kn5601", "--state", "kn5601", "--json"]
    assert main(argv) in (0, 3)
    first = json.loads(capsys.readouterr().out)
    entries = FitCache().entries()
    assert len(entries) == 1 and "sledai" in entries[0].description  # the exact BLRM needs no fit
    assert main(argv) in (0, 3)
    assert json.loads(capsys.readouterr().out) == first
    assert main(["cache", "list"]) == 0 and "1 cached fit(s)" in capsys.readouterr().out
    entries[0].path.write_bytes(entries[0].path.read_bytes()[:1000])  # a truncated entry: refused, refitted
    assert main(argv) in (0, 3)
    captured = capsys.readouterr()
    assert json.loads(captured.out) == first and "was refused" in captured.err and "refitted" in captured.err
    assert main(argv + ["--no-cache"]) in (0, 3) and json.loads(capsys.readouterr().out) == first
    assert main(["cache", "clear"]) == 0 and "removed 1" in capsys.readouterr().out
    assert FitCache().entries() == []
