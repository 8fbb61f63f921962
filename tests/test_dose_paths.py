"""Dose paths (every outcome of the next cohorts) and the levels no path can reach."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from conftest import axa_text_before_calibration

import lupusbayes as lb
from lupusbayes.cli import main
from lupusbayes.decisions import design_for, state_from_outcomes
from lupusbayes.decisions.paths import MAX_PATHS, dlt_free_run, dose_paths
from lupusbayes.workflow import decision_inputs, reachability

ROOT = Path(__file__).resolve().parents[1]
#: AXA-NK02 before its calibration: no path of 9 patients reaches its top dose (the calibrated spec: below)
AXA_TEXT = axa_text_before_calibration((ROOT / "src" / "lupusbayes" / "data" / "specs" / "axa_nk02.toml").read_text(encoding="utf-8"))


def _axa_without_borrowing() -> lb.TrialSpec:
    """AXA-NK02 with its own DLT prior and no co-data (``[model.blrm] hierarchy = "none"``): exact."""
    return lb.parse_spec(_axa_without_borrowing_text(), source="axa_nk02 without co-data")


def _paths(spec, design: str, n_cohorts: int, outcomes: str = ""):
    inputs = decision_inputs(spec, state_from_outcomes(spec, outcomes), design=design)
    return inputs, dose_paths(inputs.context, inputs.design, n_cohorts)


@pytest.mark.parametrize("design", ["3+3", "boin", "blrm_ewoc"])
def test_every_path_recommends_what_decide_recommends_for_its_outcomes(design):
    spec = lb.load_spec("kn5601")
    _, paths = _paths(spec, design, 3)
    assert paths[0].outcomes == "" and paths[0].recommendation.action == "start"
    for path in paths:
        again = lb.recommend(spec, path.outcomes, design=design, transitions=False).recommendation
        assert (again.action, again.next_level, again.n_next) == (path.recommendation.action,
                                                                   path.recommendation.next_level,
                                                                   path.recommendation.n_next), path.outcomes


def test_the_3_plus_3_tree_is_the_textbook_one():
    """Storer's 3+3 (as ``escalation::get_dose_paths`` shows it): 0/3 escalate, 1/3 three more at the
    same level, 2/3 or more stop (below the first level: no dose)."""
    _, paths = _paths(lb.load_spec("kn5601"), "3+3", 2)
    after = {path.outcomes: path.recommendation for path in paths}
    assert set(after) == {"", "1NNN", "1NNT", "1NTT", "1TTT", "1NNN 2NNN", "1NNN 2NNT", "1NNN 2NTT", "1NNN 2TTT",
                          "1NNT 1NNN", "1NNT 1NNT", "1NNT 1NTT", "1NNT 1TTT"}
    assert (after["1NNN"].action, after["1NNN"].next_level) == ("escalate", 2)
    assert (after["1NNT"].action, after["1NNT"].next_level, after["1NNT"].n_next) == ("hold", 1, 3)
    assert after["1NTT"].action == "stop" and after["1NTT"].selection.level is None
    assert (after["1NNN 2NTT"].action, after["1NNN 2NTT"].selection.level) == ("stop", 1)
    assert (after["1NNT 1NNN"].action, after["1NNT 1NNN"].next_level) == ("escalate", 2)


@pytest.mark.parametrize(("spec_name", "design"), [("kn5601", "blrm_ewoc"), ("kn5601", "boin"), ("axa", "lupusbayes")])
def test_more_dlts_in_a_cohort_never_lead_higher_on_any_path(spec_name, design):
    spec = lb.load_spec("kn5601") if spec_name == "kn5601" else _axa_without_borrowing()
    _, paths = _paths(spec, design, 3)
    siblings: dict[tuple, list] = {}
    for path in paths[1:]:
        siblings.setdefault((path.steps[:-1], path.steps[-1].level_index), []).append(path)
    for group in siblings.values():
        group.sort(key=lambda path: path.steps[-1].n_dlt)
        levels = [path.recommendation.next_level or 0 for path in group]
        assert levels == sorted(levels, reverse=True), [path.outcomes for path in group]


def test_the_shipped_axa_nk02_prior_closes_the_top_dose_and_says_why():
    """The issue's finding: after 0/3 and 0/6 below it, P(P(DLT) >= 0.2) at 2.5e8 cells/kg stays above 0.25."""
    spec = _axa_without_borrowing()
    reach = reachability(spec, design="blrm_ewoc")
    assert not reach.ok and reach.unreachable == (3,)
    assert reach.run.outcomes == "1NNN 2NNN 2NNN" and reach.levels_given == (1, 2)
    message = reach.message()
    assert "level 3 (2.5e8 cells/kg) cannot be reached" in message and "9 patients" in message
    assert "[EWOC]" in message and re.search(r"P\(excessive\) 0\.\d+ \(limit 0\.25\)", message)
    # BOIN and the 3+3 climb to the top without DLTs
    assert reachability(spec, design="boin").ok and reachability(spec, design="3+3").ok
    assert reachability(lb.load_spec("kn5601")).ok


def test_a_spec_that_borrows_needs_its_codata_to_say_what_can_be_reached():
    assert reachability(lb.load_spec("axa_nk02")) is None


def test_decide_prints_the_paths_and_the_unreachable_levels(tmp_path, capsys):
    spec_file = tmp_path / "axa.toml"
    spec_file.write_text(_axa_without_borrowing_text(), encoding="utf-8")
    assert main(["decide", str(spec_file), "--design", "blrm_ewoc", "--outcomes", "1NNN", "--paths", "2"]) == 0
    out = capsys.readouterr().out
    assert "Warning: UNREACHABLE: level 3" in out and "Dose paths of the next 2 cohort(s) from the current state" in out
    assert re.search(r"\n  2NNN 2NNN +STOP, select 7\.5e7 cells/kg \(level 2\)", out)  # after the state's 1NNN
    assert main(["decide", str(spec_file), "--design", "blrm_ewoc", "--outcomes", "1NNN", "--paths", "2", "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["reachability"]["unreachable_levels"] == [3] and payload["reachability"]["ok"] is False
    rows = {row["outcomes"]: row for row in payload["dose_paths"]}
    assert rows[""]["action"] == "escalate" and rows[""]["next_level"] == 2
    assert rows["2NNN 2NNN"]["selected_level"] == 2 and rows["2NNT"]["action"] == "hold"
    assert main(["spec", "check", str(spec_file)]) == 0
    assert "warning: UNREACHABLE: level 3" in capsys.readouterr().out
    assert main(["spec", "check", "axa_nk02", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["reachability"]["ok"] is None  # borrows: needs --codata


def _axa_without_borrowing_text() -> str:
    return re.sub(r'(\[model\.blrm\][^\[]*?hierarchy\s*=\s*)"exnex"', r'\1"none"', AXA_TEXT, count=1, flags=re.S)


def test_a_tree_too_large_is_refused_in_one_line(capsys):
    spec = lb.load_spec("kn5601")
    inputs = decision_inputs(spec, state_from_outcomes(spec, ""), design=design_for(spec, "3+3"))
    with pytest.raises(lb.DecisionError, match="paths, more than"):
        dose_paths(inputs.context, inputs.design, 20)
    assert MAX_PATHS >= 4 ** 8
    with pytest.raises(SystemExit) as stop:
        main(["decide", "kn5601", "--outcomes", "1NNN", "--paths", "9"])
    assert stop.value.code == 2
    assert "--paths" in capsys.readouterr().err


def test_the_dlt_free_run_starts_from_the_current_state():
    spec = lb.load_spec("kn5601")
    inputs = decision_inputs(spec, state_from_outcomes(spec, "1NNN 2NNN"), design="3+3")
    reach = dlt_free_run(inputs.context, inputs.design)
    assert reach.ok and reach.run.outcomes == "3NNN 4NNN"


def test_the_src_report_carries_the_unreachable_levels(tmp_path):
    spec = _axa_without_borrowing()
    html_text = lb.src_report(spec, "1NNN", design="blrm_ewoc", out=tmp_path / "r.html")
    assert "UNREACHABLE: level 3 (2.5e8 cells/kg) cannot be reached" in html_text


def test_a_trial_paused_for_patients_at_two_levels_still_decides_and_says_what_it_can():
    """The pending outcomes of patients at several levels are not enumerated: the run stops there."""
    from lupusbayes.decisions import TrialState
    from lupusbayes.decisions.state import PatientRecord

    spec = lb.load_spec("kn5601")
    patients = (PatientRecord("a", 0, 40, False), PatientRecord("b", 0, 40, False), PatientRecord("c", 0, 40, False),
                PatientRecord("d", 1, 10, False), PatientRecord("e", 0, 5, False))
    state = TrialState(spec, patients, "two levels pending")
    decision = lb.recommend(spec, state, design="blrm_ewoc", paths=2)
    assert decision.recommendation.paused and decision.reachability is not None
    assert [path.outcomes for path in decision.paths] == [""]  # nothing to enumerate while paused at two levels
