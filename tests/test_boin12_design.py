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
    fewer_dlt_counts,
)
from lupusbayes.decisions.designs import boin12_settings
from lupusbayes.decisions.state import PatientRecord, TrialState
from lupusbayes.simulation import boin_extensions_simulation as boin_extensions
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


# ---- the simulator's safeguard: the fast enumeration equals the straightforward one ------------------------------


def _lowest_over_fewer_dlts_row_by_row(dlt, chosen, active, rule):
    """The safeguard as written down: for each active row, the lowest of ``chosen`` and the rule's non-stop levels at
    every smaller DLT vector of that row (the scalar ``fewer_dlt_counts``, the observed vector left out); -1 wins."""
    lowest = chosen.copy()
    for row in np.flatnonzero(active):
        smaller = np.array(list(fewer_dlt_counts(dlt[row]))[1:], dtype=np.int64).reshape(-1, dlt.shape[1])
        if smaller.size:
            levels, stops = rule(np.full(len(smaller), row), smaller)[:2]
            lowest[row] = levels[~stops].min(initial=lowest[row])
    return lowest


def _desirability_computed_each_time(tables, n, dlt, response):
    """The safeguard's desirability computed for every row and level, without the simulator's table."""
    return tables.desirability(n.ravel(), dlt.ravel(), response.ravel(), np.zeros(n.size, dtype=np.int64)).reshape(
        n.shape)


def _thirty_patient_states(rng, n_rows, n_levels=5):
    """Random states of 30-patient trials in cohorts of 3: patients, DLTs and responses by level, the current level."""
    n = 3 * rng.multinomial(10, rng.dirichlet(np.ones(n_levels)), size=n_rows)
    dlt = rng.binomial(n, np.sort(rng.uniform(0.0, 0.5, (n_rows, n_levels)), axis=1))
    response = rng.binomial(n, rng.uniform(0.05, 0.6, (n_rows, n_levels)))
    at = np.array([rng.choice(np.flatnonzero(row)) for row in n])
    return n, dlt, response, at


@pytest.mark.parametrize("batch", [100_000, 37])  # 37: the rows' vectors split across many batches
def test_the_fast_safeguard_equals_the_lowest_over_every_smaller_dlt_vector_row_by_row(monkeypatch, batch):
    """_lowest_over_fewer_dlts (vectors numbered over all rows, each distinct (context, vector) evaluated once) gives
    the levels of a row-by-row enumeration with the scalar fewer_dlt_counts, for the next dose and the selection,
    on 300 random states of 30-patient, 5-level trials, several with equal context (patients, responses, level)."""
    monkeypatch.setattr(boin_extensions, "_SAFEGUARD_BATCH", batch)
    rng = np.random.default_rng(20)
    n, dlt, response, at = _thirty_patient_states(rng, 250)
    repeated = rng.integers(0, 250, 50)  # the same context with other DLT counts: shared vectors
    n, response, at = (np.concatenate([values, values[repeated]]) for values in (n, response, at))
    dlt = np.concatenate([dlt, rng.binomial(n[250:], 0.3)])
    assert max(np.prod(dlt + 1, axis=1)) > 100  # long trials with many DLTs, not only small lattices
    for settings in (PAPER, Boin12Settings(0.20, 0.30, exploration_patients=9, max_patients_per_level=12)):
        tables = boin_extensions._Boin12Tables(settings, 30)

        def decide(rows, fewer):
            return boin_extensions._boin12_decide_rows(
                settings, tables, at[rows], n[rows], fewer, response[rows],
                _desirability_computed_each_time(tables, n[rows], fewer, response[rows]))

        def select(rows, fewer):
            levels = boin_extensions._boin12_select_rows(settings, tables, n[rows], fewer, response[rows],
                                                         np.zeros_like(fewer), 6)
            return levels, np.zeros(rows.size, dtype=bool)

        def arbitrary(rows, fewer):  # not BOIN12: levels -1 to 4 and stops, to check that -1 wins, stops do not
            code = fewer @ np.array([1, 3, 5, 7, 11]) + at[rows]
            return code % 6 - 1, code % 4 == 0

        everyone = np.arange(len(n))
        next_level, stop, _ = decide(everyone, dlt)
        selected, _ = select(everyone, dlt)
        for rule, chosen, active, context in (
            (decide, next_level, ~stop, np.column_stack([at, n, response])),
            (select, selected, selected >= 0, np.column_stack([n, response])),
            (arbitrary, arbitrary(everyone, dlt)[0], rng.random(len(n)) < 0.9, at[:, None]),
        ):
            fast = boin_extensions._lowest_over_fewer_dlts(dlt, chosen, active, rule, context)
            np.testing.assert_array_equal(fast, _lowest_over_fewer_dlts_row_by_row(dlt, chosen, active, rule))
            assert (fast < chosen).any()  # the safeguard does act on these states


def test_the_simulated_boin12_with_its_safeguard_equals_the_simulation_with_the_straightforward_safeguard(
        monkeypatch):
    """simulate_boin12(safeguard=True) on 30-patient, 5-level trials (rising toxicity, exploration, a cap, at least 6
    patients at the selected level) gives the paths and selections of the same simulation with the row-by-row
    safeguard and the desirability computed each time (no table). The reference takes every row, so a row the
    simulator leaves out (a stop, a move to level 0) is checked too: there the safeguard must change nothing that
    counts."""
    rng = np.random.default_rng(2020)
    tox, response = rng.random((150, 30)), rng.random((150, 30))
    settings = Boin12Settings(0.35, 0.25, exploration_patients=9, max_patients_per_level=15)

    def simulate(safeguard=True):
        return boin_extensions.simulate_boin12(tox, response, [0.10, 0.25, 0.40, 0.50, 0.60],
                                               [0.20, 0.40, 0.50, 0.55, 0.60], settings=settings, cohort_size=3,
                                               n_cohorts=10, safeguard=safeguard, min_patients_at_selection=6)

    fast, unguarded = simulate(), simulate(safeguard=False)
    monkeypatch.setattr(boin_extensions, "_lowest_over_fewer_dlts",
                        lambda dlt, chosen, active, rule, context: _lowest_over_fewer_dlts_row_by_row(
                            dlt, chosen, np.ones_like(active), rule))
    monkeypatch.setattr(boin_extensions, "_desirability_rows", _desirability_computed_each_time)
    reference = simulate()
    for field in ("selected_level", "patient_level", "n_patients", "n_dlt", "n_responses", "stopped_early"):
        np.testing.assert_array_equal(getattr(fast, field), getattr(reference, field), err_msg=field)
    assert (unguarded.patient_level != fast.patient_level).any()  # the safeguard changes some paths here
