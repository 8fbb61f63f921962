"""The decision module: hand-computable cases, invariants (hypothesis), the gate, the command line."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
from conftest import ROOT, spec_text_with
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy.special import expit

import lupusbayes as lb
from lupusbayes.cli import main
from lupusbayes.decisions import (
    DecisionContext,
    DrawsPosterior,
    decide,
    design_for,
    draws_from_dose_response,
    exact_blrm,
    load_state,
    state_from_counts,
    state_from_outcomes,
    transition_table,
)
from lupusbayes.decisions.state import PatientRecord, TrialState

KN5601 = (ROOT / "models" / "kn5601.toml").read_text()
AXA = (ROOT / "models" / "axa_nk02.toml").read_text()


def spec_with(base: str, decision: str) -> lb.TrialSpec:
    return lb.parse_spec(spec_text_with(base, "decision", decision))


THREE_PLUS_THREE = spec_with(KN5601, 'design = "3+3"')
# BOIN at oncology's target 0.3, where Liu & Yuan's published boundaries are the reference
BOIN_TEXT = spec_text_with(spec_text_with(KN5601, "decision.boin", "target = 0.3"), "decision", 'design = "boin"')
BOIN = lb.parse_spec(BOIN_TEXT)


# ---- hand-computable cases -----------------------------------------------------------------------


@pytest.mark.parametrize(("outcomes", "action", "next_level_index", "selected"), [
    ("1NNN", "escalate", 1, None),
    ("1NNN 2NNN 3NNT", "hold", 2, None),
    ("1NNN 2NNN 3NNT 3NTN", "stop", None, 1),
])
def test_three_plus_three_paths_of_the_escalation_readme(outcomes, action, next_level_index, selected):
    recommendation = decide(DecisionContext(THREE_PLUS_THREE, state_from_outcomes(THREE_PLUS_THREE, outcomes)))
    assert (recommendation.action, recommendation.next_level_index) == (action, next_level_index)
    if selected is not None:
        assert recommendation.selection.level_index == selected and recommendation.selection.dose_label == "2.0e9 cells"


def test_boin_through_the_framework_follows_its_boundaries():
    cases = {"1NNN": ("escalate", 1), "1NNN 2NNT": ("hold", 1), "1NNN 2NTT": ("de-escalate", 0),
             "1NNN 2NNN 3NNN 3NNN 3NNT": ("escalate", 3)}
    for outcomes, expected in cases.items():
        recommendation = decide(DecisionContext(BOIN, state_from_outcomes(BOIN, outcomes)))
        assert (recommendation.action, recommendation.next_level_index) == expected, outcomes
    stopped = decide(DecisionContext(BOIN, state_from_outcomes(BOIN, "1TTT")))
    assert stopped.action == "stop" and stopped.selection.level_index is None


def _draws(p_dlt: np.ndarray, **extra) -> DrawsPosterior:
    draws = p_dlt.shape[0]
    return DrawsPosterior(doses=np.array([1e9, 2e9, 3e9, 4.5e9]), values={"p_dlt": p_dlt, **extra},
                          weights=np.full(draws, 1.0 / draws), chains=4, source="test draws")


def test_ewoc_reads_known_interval_probabilities():
    """P(excessive) = share of draws with P(DLT) >= 0.2: known by construction, 0.10 / 0.30 at levels 3 / 4."""
    rng = np.random.default_rng(0)
    p = np.zeros((4000, 4)) + 0.05
    p[:400, 2] = 0.25  # 10% of draws put level 3 in 'excessive'
    p[:1200, 3] = 0.25  # 30% for level 4
    rng.shuffle(p, axis=0)
    context = DecisionContext(spec_with(KN5601, 'design = "blrm_ewoc"'), state_from_outcomes(THREE_PLUS_THREE, "1NNN 2NNN 3NNN"),
                              toxicity=_draws(p))
    recommendation = decide(context)
    ewoc = next(v for v in recommendation.verdicts if v.rule == "EWOC")
    values = [check.estimate.value for check in ewoc.checks]
    assert values == pytest.approx([0.0, 0.0, 0.10, 0.30])
    assert ewoc.allowed == frozenset({0, 1, 2})
    assert ewoc.checks[0].estimate.error_kind == "mcse bound" and ewoc.checks[0].estimate.error > 0
    assert (recommendation.action, recommendation.next_level_index) == ("hold", 2)  # level 4 is EWOC-inadmissible


def test_a_close_call_is_flagged():
    p = np.zeros((400, 4)) + 0.05
    p[:98, 3] = 0.25  # P(excessive) at level 4 = 0.245, within 2 MCSE of 0.25
    context = DecisionContext(spec_with(KN5601, 'design = "blrm_ewoc"'), state_from_outcomes(THREE_PLUS_THREE, "3NNN"),
                              toxicity=_draws(p))
    assert any("close call" in warning and "level 4" in warning for warning in decide(context).warnings)


def test_loss_based_choice_matches_a_hand_computation():
    start, end = KN5601.index("[decision.loss]"), KN5601.index("[decision.boin]")
    crmpack = spec_with(KN5601[:start] + KN5601[end:], 'design = "blrm_loss"')  # crmPack's default intervals
    p = np.tile([0.05, 0.25, 0.45, 0.7], (1000, 1))  # each level sits in one interval with certainty
    recommendation = decide(DecisionContext(crmpack, state_from_outcomes(crmpack, "1NNN 2NNN"), toxicity=_draws(p)))
    losses = {c.level_index: c.estimate.value for v in recommendation.verdicts for c in v.checks if c.quantity == "expected loss"}
    assert losses == pytest.approx({0: 1.0, 1: 0.0, 2: 1.0, 3: 2.0})  # crmPack losses 1 / 0 / 1 / 2
    assert recommendation.next_level_index == 1
    lupus = spec_with(KN5601, 'design = "blrm_loss"')  # the shipped lupus intervals: 5-10% is the target
    p = np.tile([0.03, 0.07, 0.15, 0.3], (1000, 1))
    recommendation = decide(DecisionContext(lupus, state_from_outcomes(lupus, "1NNN 2NNN"), toxicity=_draws(p)))
    losses = {c.level_index: c.estimate.value for v in recommendation.verdicts for c in v.checks if c.quantity == "expected loss"}
    assert losses == pytest.approx({0: 1.0, 1: 0.0, 2: 1.0, 3: 2.0}) and recommendation.next_level_index == 1


# ---- the lupusbayes design: sentinel, windows, efficacy-driven escalation ---------------------------

AXA_SPEC = lb.parse_spec(AXA)


def _patient(level, days, dlt=False, pid=None):
    return PatientRecord(pid or f"p{random.random():.6f}", level, days, dlt)


def _state(*patients) -> TrialState:
    return TrialState(AXA_SPEC, tuple(patients), "test")


def _axa_toxicity(n=(0, 0, 0), y=(0, 0, 0)):
    return exact_blrm(AXA_SPEC.dosing.levels, n, y, prior=AXA_SPEC.models.blrm.prior,
                      reference_dose=AXA_SPEC.dosing.reference_dose)


def _efficacy(p_response_level_0: float) -> DrawsPosterior:
    rng = np.random.default_rng(1)
    p = np.clip(rng.normal([p_response_level_0, 0.5, 0.6], 0.05, size=(2000, 3)), 0, 1)
    return DrawsPosterior(doses=np.array(AXA_SPEC.dosing.levels), values={"p_response": p, "p_response_final": p},
                          weights=np.full(2000, 1 / 2000), chains=4)


def test_the_sentinel_waits_28_days_and_its_response_before_the_rest_of_its_group():
    context = DecisionContext(AXA_SPEC, _state(_patient(0, 10)), toxicity=_axa_toxicity())
    recommendation = decide(context)
    assert (recommendation.action, recommendation.next_level_index, recommendation.n_next) == ("hold", 0, 2)
    assert recommendation.wait_days == 21  # day 31: the 28-day window and the month-1 response (30.4 days)
    no_wait = lb.parse_spec(spec_text_with(AXA, "decision.efficacy", "wait_for_response = false"))
    assert decide(DecisionContext(no_wait, TrialState(no_wait, (_patient(0, 10),), "t"),
                                  toxicity=_axa_toxicity())).wait_days == 18


def test_a_new_dose_opens_with_one_sentinel_after_the_group_window():
    group = [_patient(0, 40), _patient(0, 30), _patient(0, 20)]
    context = DecisionContext(AXA_SPEC, _state(*group), toxicity=_axa_toxicity((3, 0, 0)))
    recommendation = decide(context)
    # patient 3 is inside the DLT window: nobody is dosed for 8 days, then the design decides again
    assert recommendation.paused and recommendation.wait_days == 8 and recommendation.next_level_index is None
    group[-1] = _patient(0, 25)
    later = decide(DecisionContext(AXA_SPEC, _state(_patient(0, 40), _patient(0, 30), _patient(0, 28)),
                                   toxicity=_axa_toxicity((3, 0, 0))))
    assert (later.action, later.next_level_index, later.n_next, later.wait_days) == ("escalate", 1, 1, 0)


def test_efficacy_driven_escalation_after_a_safe_inefficacious_sentinel():
    unseen = decide(DecisionContext(AXA_SPEC, _state(_patient(0, 31)), toxicity=_axa_toxicity((1, 0, 0)),
                                    efficacy=_efficacy(0.1)))
    assert (unseen.action, unseen.next_level_index) == ("hold", 0)  # its response is not observed: no shortcut
    assert any("not yet observable" in v.verdict for v in unseen.verdicts)
    state = _state(PatientRecord("S1", 0, 31, False, responder=False))
    insufficient = decide(DecisionContext(AXA_SPEC, state, toxicity=_axa_toxicity((1, 0, 0)), efficacy=_efficacy(0.1)))
    assert (insufficient.action, insufficient.next_level_index) == ("escalate", 1)
    assert any("efficacy-driven" in v.verdict for v in insufficient.verdicts)
    promising = decide(DecisionContext(AXA_SPEC, state, toxicity=_axa_toxicity((1, 0, 0)), efficacy=_efficacy(0.6)))
    assert (promising.action, promising.next_level_index) == ("hold", 0)


def test_the_trial_ends_when_the_top_group_is_complete_and_selects_the_best_utility():
    patients = [_patient(level, 60) for level in (0, 0, 0, 1, 1, 1, 2, 2, 2)]
    context = DecisionContext(AXA_SPEC, _state(*patients), toxicity=_axa_toxicity((3, 3, 3)), efficacy=_efficacy(0.1))
    recommendation = decide(context)
    assert recommendation.action == "stop" and "the highest dose's group is complete" in recommendation.stop_reasons
    rows = recommendation.selection.rows
    assert [row["level_index"] for row in rows] == [0, 1, 2]
    penalty = AXA_SPEC.decision.efficacy.dlt_penalty  # 1 in the calibrated spec
    for row in rows:  # utility = P(response) - penalty x P(DLT), posterior means
        assert row["utility"] == pytest.approx(row["P(response)"].value - penalty * row["P(DLT)"].value)
    assert recommendation.selection.level_index == max(rows, key=lambda row: row["utility"])["level_index"]


# ---- the gate -------------------------------------------------------------------------------------


def test_a_failed_gate_withholds_escalation_unless_forced():
    group = [_patient(0, 60), _patient(0, 60), _patient(0, 60)]
    failed = DecisionContext(AXA_SPEC, _state(*group), toxicity=_axa_toxicity((3, 0, 0)), failed_gates=("crs",))
    recommendation = decide(failed)
    assert recommendation.action == "hold" and any("failed its convergence gate" in w for w in recommendation.warnings)
    forced = decide(DecisionContext(AXA_SPEC, _state(*group), toxicity=_axa_toxicity((3, 0, 0)), failed_gates=("crs",),
                                    forced=True))
    assert forced.action == "escalate" and forced.forced and any("FORCED" in w for w in forced.warnings)


# ---- invariants (hypothesis) ------------------------------------------------------------------------

outcome_letters = st.lists(st.booleans(), min_size=1, max_size=3)


@st.composite
def cohort_histories(draw, n_levels=3, max_cohorts=6):
    """A plausible sequence of cohorts: each at most one level above the last."""
    level, cohorts = 0, []
    for _ in range(draw(st.integers(1, max_cohorts))):
        cohorts.append((level, tuple(draw(outcome_letters))))
        level = max(0, min(n_levels - 1, level + draw(st.integers(-1, 1))))
    return cohorts


def _state_of(spec, cohorts, extra_dlt_at=None):
    records = []
    for number, (level, dlts) in enumerate(cohorts):
        for position, dlt in enumerate(dlts):
            flip = extra_dlt_at == (number, position)
            records.append(PatientRecord(f"c{number}p{position}", level, 60, dlt or flip))
    return TrialState(spec, tuple(records), "hypothesis")


def _context(spec, state, design):
    if design.needs_toxicity_model:
        n, y = state.evaluable_counts()
        toxicity = exact_blrm(spec.dosing.levels, n, y, prior=spec.models.blrm.prior,
                              reference_dose=spec.dosing.reference_dose)
        return DecisionContext(spec, state, toxicity=toxicity)
    return DecisionContext(spec, state)


def _aggressiveness(recommendation) -> int:
    return -1 if recommendation.action == "stop" else recommendation.next_level_index


DESIGN_SPECS = {
    name: spec_with(AXA, f'design = "{name}"\ntoxicity_model = "blrm"')
    for name in ("lupusbayes", "blrm_ewoc", "blrm_loss", "boin")
}


@pytest.mark.parametrize("name", sorted(DESIGN_SPECS))
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(history=cohort_histories(), data=st.data())
def test_invariants_of_every_design(name, history, data):
    spec = DESIGN_SPECS[name]
    design = design_for(spec)
    state = _state_of(spec, history)
    recommendation = decide(_context(spec, state, design))
    current = state.current_level_index
    if recommendation.action != "stop":
        # never a skip, never above a level a rule forbids (EWOC, BOIN elimination, no skipping)
        assert recommendation.next_level_index <= current + 1
        assert recommendation.next_level_index in recommendation.allowed_levels
    ewoc = next((v for v in recommendation.verdicts if v.rule == "EWOC"), None)
    if ewoc is not None and recommendation.action != "stop":
        assert recommendation.next_level_index in ewoc.allowed
    # shuffling the rules changes nothing
    shuffled = list(design.rules)
    data.draw(st.randoms(use_true_random=False)).shuffle(shuffled)
    again = decide(_context(spec, state, design), design.with_rules(shuffled))
    assert (again.action, again.next_level_index, again.n_next, again.wait_days, again.stop_reasons,
            set(again.warnings)) == (recommendation.action, recommendation.next_level_index, recommendation.n_next,
                                     recommendation.wait_days, recommendation.stop_reasons, set(recommendation.warnings))
    assert (again.selection and again.selection.level_index) == (recommendation.selection and recommendation.selection.level_index)
    # one more DLT never makes the recommendation more aggressive
    candidates = [(c, p) for c, (_, dlts) in enumerate(history) for p, dlt in enumerate(dlts) if not dlt]
    if candidates:
        flip = data.draw(st.sampled_from(candidates))
        worse = decide(_context(spec, _state_of(spec, history, extra_dlt_at=flip), design))
        assert _aggressiveness(worse) <= _aggressiveness(recommendation)


@settings(max_examples=60, deadline=None)
@given(days=st.lists(st.integers(0, 60), min_size=1, max_size=3), level=st.integers(0, 2))
def test_sentinel_and_group_windows_are_respected(days, level):
    spec = DESIGN_SPECS["lupusbayes"]
    patients = [PatientRecord(f"p{i}", level, d, False) for i, d in enumerate(days)]
    state = TrialState(spec, tuple(patients), "hypothesis")
    n, y = state.evaluable_counts()
    recommendation = decide(DecisionContext(spec, state, toxicity=exact_blrm(
        spec.dosing.levels, n, y, prior=spec.models.blrm.prior, reference_dose=spec.dosing.reference_dose)))
    if recommendation.action == "stop":
        return
    sentinel = days[0]
    if len(days) == 1 and recommendation.next_level_index == level:  # the rest of the sentinel's group
        assert recommendation.wait_days >= max(0, 28 - sentinel)
    if recommendation.next_level_index != level or len(days) == 3:  # a new group
        assert recommendation.wait_days >= max(0, 28 - min(days))
    if recommendation.paused:  # nobody dosed until every patient has completed the DLT window
        assert recommendation.wait_days >= max(0, 28 - min(days))  # (a sentinel also waits for its response)
        return
    if recommendation.next_level_index > level:  # a new dose opens with its sentinel
        assert recommendation.n_next == 1


# ---- counts, states and the command line -------------------------------------------------------------


def test_counts_only_states_work_for_count_designs(tmp_path, capsys):
    path = tmp_path / "counts.csv"
    path.write_text("dose,n_patients,n_dlt\n1e9,3,0\n2e9,3,1\n")
    state = load_state(path, BOIN)
    assert state.counts_only and state.current_level_index == 1
    assert decide(DecisionContext(BOIN, state)).next_level_index == 1
    spec = BOIN_TEXT
    spec_path = tmp_path / "boin.toml"
    spec_path.write_text(spec)
    assert main(["decide", str(spec_path), "--state", str(path), "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["action"] == "hold" and payload["next_level"] == 2 and payload["design"] == "boin"  # level 2, counted from 1


def test_the_cli_reproduces_the_three_plus_three_paths(capsys):
    assert main(["decide", "kn5601", "--design", "3+3", "--outcomes", "1NNN 2NNN 3NNT 3NTN"]) == 0
    out = capsys.readouterr().out
    assert "STOP" in out and "selected: 2.0e9 cells" in out and "2 DLTs in 6 patients at level 3" in out


def test_the_cli_prints_the_boin_decision_table_with_the_transitions(tmp_path, capsys):
    spec_path = tmp_path / "boin.toml"
    spec_path.write_text(BOIN_TEXT)
    assert main(["decide", str(spec_path), "--outcomes", "1NNN 2NNT", "--transitions"]) == 0
    out = capsys.readouterr().out
    rows = {line.split("  ")[1].strip(): line.split()[-12:] for line in out.splitlines() if "DLTs" in line and "if" in line}
    assert rows["escalate if DLTs <="] == "0 0 0 0 1 1 1 1 2 2 2 2".split()  # Liu & Yuan 2015, phi = 0.3
    assert rows["de-escalate if DLTs >="] == "1 1 2 2 2 3 3 3 4 4 4 5".split()
    assert rows["eliminate if DLTs >="] == "NA NA 3 3 4 4 5 5 5 6 6 7".split()


BAD_STATES = [
    ("a dose that is not a level", "2.0e7", "", ["is not a dose level of AXA-NK02"]),
    ("a date that is not one", "2.5e7", "2026-13-01", ["infusion_date", "not a date"]),
    ("an infusion after the cut-off", "2.5e7", "2026-07-01", ["after the cut-off"]),
]


@pytest.mark.parametrize(("name", "dose", "when", "expected"), BAD_STATES, ids=[b[0] for b in BAD_STATES])
def test_bad_state_files_get_one_line_and_exit_2(name, dose, when, expected, tmp_path, capsys):
    path = tmp_path / "state.csv"
    path.write_text("study_id,patient_id,age_years,sex,dose,dose_unit,weight_kg,crs_grade,infusion_date,"
                    "follow_up_months,sledai_baseline,sledai_latest\n"
                    f"AXA-NK02,S1,22,F,{dose},cells/kg,54,0,{when or '2026-05-01'},1,12,8\n")
    code = main(["decide", "axa_nk02", "--state", str(path), "--as-of", "2026-06-01"])
    stderr = capsys.readouterr().err
    assert code == 2 and stderr.count("\n") == 1 and str(path) in stderr
    for fragment in expected:
        assert fragment in stderr


def test_infusion_dates_need_a_cut_off(tmp_path, capsys):
    path = tmp_path / "state.csv"
    path.write_text(lb.cohort.example_cohort_text("axa_patients"))
    code = main(["decide", "axa_nk02", "--state", str(path)])
    assert code == 2 and "--as-of" in capsys.readouterr().err


@pytest.mark.mcmc
def test_decide_fits_what_it_needs_and_the_gate_governs_the_exit_code(tmp_path, capsys, kn5601_spec):
    assert main(["decide", "kn5601", "--state", "kn5601", "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["design"] == "lupusbayes" and payload["action"] in {"hold", "escalate", "stop"}
    assert any(v["rule"] == "EWOC" for v in payload["verdicts"])
    strict = tmp_path / "strict.toml"
    strict.write_text(KN5601.replace("ess_bulk_min = 400", "ess_bulk_min = 1000000"))
    code = main(["decide", str(strict), "--state", "kn5601"])
    captured = capsys.readouterr()
    assert code == 3 and "FAILED its convergence gate" in captured.err and "escalation withheld" in captured.out
    assert main(["decide", str(strict), "--state", "kn5601", "--force"]) == 0
    assert "FORCED" in capsys.readouterr().out


def test_transitions_from_draws_reweight_and_flag_unreliable_rows():
    rng = np.random.default_rng(2)
    a, b = rng.normal(-3, 0.5, 2000), rng.normal(0, 0.3, 2000)
    x = np.log(np.array(AXA_SPEC.dosing.levels) / AXA_SPEC.dosing.reference_dose)
    toxicity = DrawsPosterior(doses=np.array(AXA_SPEC.dosing.levels), values={"p_dlt": expit(a[:, None] + np.exp(b)[:, None] * x)},
                              weights=np.full(2000, 1 / 2000), chains=4, source="draws")
    state = _state(_patient(0, 60), _patient(0, 60), _patient(0, 60))
    rows = transition_table(DecisionContext(AXA_SPEC, state, toxicity=toxicity))
    assert [row.n_dlt for row in rows] == [0, 1]  # the next cohort is a sentinel of 1
    assert rows[0].recommendation.next_level_index >= rows[1].recommendation.next_level_index
    updated = toxicity.updated(1, 1, n_dlt=1)
    assert updated.reweighted and np.isfinite(updated.pareto_k)
    assert updated.mean("p_dlt")[1].value > toxicity.mean("p_dlt")[1].value  # a DLT raises P(DLT)
