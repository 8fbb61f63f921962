"""Untrusted input for decide, simulate, report and plot (issue 16), by class.

Every file and option a user hands over is refused, when it is wrong, with one line naming the
file (line, field or option), exit 2, and nothing written: counts files, trial states and their
dates, BOIN settings, Dask addresses, checkpoint folders and chunks, scenario files, and the
text a figure shows. Next to each refusal, the valid extreme that must still work (BOIN beyond
100 patients at a level, Mac line endings, thousands of patients outside the weight reference).
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from conftest import ROOT, spec_text_with
from matplotlib.text import Text

import lupusbayes as lb
from lupusbayes.cli import main
from lupusbayes.decisions import DecisionContext, decide, design_for, load_state, state_from_outcomes
from lupusbayes.report.simulation_plots import plot_operating_characteristics
from lupusbayes.simulation import load_scenarios

SPEC_TEXT = (ROOT / "models" / "kn5601.toml").read_text()


def _run(capsys, argv):
    try:
        code = main(argv)
    except SystemExit as stop:  # argparse usage errors
        code = stop.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _one_line_error(code, stderr):
    assert code == 2, stderr
    assert stderr.count("\n") == 1 and "Traceback" not in stderr, stderr


# ---- counts files ---------------------------------------------------------------------------------------

COUNTS_HEADER = "dose,n_patients,n_dlt,current\n"
BROKEN_COUNTS = [
    ("a unicode digit", "1e9,\u00b3,0,yes\n", ["n_patients", "whole number", ":2:"]),
    ("an overflowing count", "1e9,1000000000000000000000000000000,0,yes\n", ["n_patients", "whole number"]),
    ("a count in scientific notation", "1e9,1e30,0,yes\n", ["n_patients", "whole number"]),
    ("an overflowing dose", "1e400,3,0,yes\n", ["dose", "not a dose"]),
    ("a dose that is not a level", "1e30,3,0,yes\n", ["dose", "not a dose level"]),
    ("a 200,000-character cell", "1e9,3," + "0" * 200_000 + ",yes\n", ["characters"]),
    ("two current rows", "1e9,3,0,yes\n2e9,3,0,yes\n", ["current", ":3:", "already the current dose"]),
    ("current = maybe", "1e9,3,0,maybe\n", ["current", "yes or no", "maybe"]),
    ("a dose twice", "1e9,3,0,\n2e9,3,1,yes\n1e9,3,0,\n", ["dose", ":4:", "also on line 2"]),
    ("more DLTs than patients", "1e9,3,4,yes\n", ["n_dlt", "exceeds"]),
    ("an unknown column", None, ["curent", "unknown column"]),
    ("a control character", "1e9,3\x00,0,yes\n", ["control character U+0000"]),
]


@pytest.mark.parametrize(("name", "rows", "expected"), BROKEN_COUNTS, ids=[b[0] for b in BROKEN_COUNTS])
def test_a_broken_counts_file_is_one_line_for_decide_and_report(name, rows, expected, tmp_path, capsys):
    path = tmp_path / "counts.csv"
    text = "dose,n_patients,n_dlt,curent\n1e9,3,0,yes\n" if rows is None else COUNTS_HEADER + rows
    path.write_text(text)
    for argv in (["decide", "kn5601", "--design", "boin", "--state", str(path)],
                 ["report", "kn5601", "--design", "boin", "--state", str(path), "--out", str(tmp_path / "r.html")]):
        code, _, stderr = _run(capsys, argv)
        _one_line_error(code, stderr)
        assert str(path) in stderr
        for fragment in expected:
            assert fragment in stderr, (argv, fragment, stderr)
        assert sorted(p.name for p in tmp_path.iterdir()) == ["counts.csv"]


def test_a_latin1_counts_file_names_its_line_and_byte(tmp_path, capsys):
    path = tmp_path / "counts.csv"
    path.write_bytes((COUNTS_HEADER + "1e9,3,0,oui\xe9\n").encode("latin-1"))
    code, _, stderr = _run(capsys, ["decide", "kn5601", "--design", "boin", "--state", str(path)])
    _one_line_error(code, stderr)
    assert f"{path}:2:" in stderr and "0xE9" in stderr


def test_boin_decides_beyond_100_patients_at_one_level(tmp_path, capsys):
    path = tmp_path / "counts.csv"
    path.write_text(COUNTS_HEADER + "2e9,1000,100,yes\n")
    code, out, _ = _run(capsys, ["decide", "kn5601", "--design", "boin", "--state", str(path), "--json"])
    assert code == 0 and json.loads(out)["action"] == "escalate"  # 100 / 1000 = 0.10 <= lambda_e 0.118
    spec = lb.parse_spec(spec_text_with(SPEC_TEXT, "decision", 'design = "boin"'))
    many = state_from_outcomes(spec, " ".join(["1NNN"] * 200) + " 1NTT")  # 603 patients at level 1
    assert decide(DecisionContext(spec, many), design_for(spec)).action == "escalate"
    code, _, stderr = _run(capsys, ["decide", "kn5601", "--design", "boin", "--outcomes",
                                    " ".join(["1NNN"] * 3400)])
    _one_line_error(code, stderr)
    assert "at most 10,000" in stderr and len(stderr) < 300


# ---- dates -------------------------------------------------------------------------------------------------

STATE_HEADER = ("study_id,patient_id,age_years,sex,dose,dose_unit,weight_kg,crs_grade,infusion_date,"
                "follow_up_months,sledai_baseline,sledai_latest")


@pytest.mark.parametrize(("when", "expected"), [
    ("2026-13-18", "is not a date"), ("0001-01-01", "not plausible"), ("2150-01-01", "not plausible"),
    ("18/05/2026", "is not a date"),
])
def test_a_bad_infusion_date_is_refused_by_every_command(when, expected, tmp_path, capsys):
    path = tmp_path / "state.csv"
    path.write_text(f"{STATE_HEADER}\nAXA-NK02,S1,22,F,2.5e7,cells/kg,54,0,{when},1,12,8\n")
    for argv in (["data", "check", str(path)], ["data", "show", str(path)],
                 ["decide", "axa_nk02", "--design", "3+3", "--state", str(path), "--as-of", "2026-06-01"]):
        code, _, stderr = _run(capsys, argv)
        _one_line_error(code, stderr)
        assert f"{path}:2:" in stderr and "infusion_date" in stderr and expected in stderr, (argv, stderr)


@pytest.mark.parametrize("cut_off", ["9999-12-31", "1899-01-01", "2026-02-30", "yesterday"])
def test_a_bad_cut_off_is_one_line(cut_off, capsys):
    state = str(ROOT / "src" / "lupusbayes" / "data" / "examples" / "axa_patients.csv")
    for command in ("decide", "report"):
        argv = [command, "axa_nk02", "--state", state, "--as-of", cut_off, "--codata", "kn5601"]
        code, _, stderr = _run(capsys, argv + (["--out", "never.html"] if command == "report" else []))
        assert code == 2 and "--as-of" in stderr and "Traceback" not in stderr
    assert not Path("never.html").exists()


def test_safety_days_and_an_infusion_date_must_agree(tmp_path, capsys):
    path = tmp_path / "state.csv"
    path.write_text(f"{STATE_HEADER},safety_days\nAXA-NK02,S1,22,F,2.5e7,cells/kg,54,0,2026-05-01,1,12,8,20\n")
    code, _, stderr = _run(capsys, ["decide", "axa_nk02", "--design", "3+3", "--state", str(path),
                                    "--as-of", "2026-06-01"])
    _one_line_error(code, stderr)
    assert "safety_days 20 disagrees" in stderr and "31 days" in stderr


@pytest.mark.parametrize(("columns", "row", "as_of", "expected"), [
    ("crs_grade,dlt,dlt_day,follow_up_months", "1,,3,1", None,
     "field 'dlt_day' (patient S1): dlt_day 3 is given but the patient has no DLT (none recorded in dlt, and none by "
     "the spec's DLT definition from the CRS / ICANS grades)"),
    ("crs_grade,dlt,infusion_date,dlt_date,follow_up_months", "0,yes,2026-05-01,2026-06-05,1", "2026-06-01",
     "field 'dlt_date' (patient S1): dlt_date 2026-06-05 (day 35) is after the cut-off 2026-06-01 (day 31)"),
    ("crs_grade,dlt,dlt_day,follow_up_months", "0,yes,31,1", None,
     "field 'dlt_day' (patient S1): dlt_day 31 is after the patient's follow-up (30 days, from follow_up_months)"),
], ids=["no DLT by the spec", "after the cut-off", "after follow_up_months"])
def test_a_dlt_day_the_state_contradicts_is_one_line(columns, row, as_of, expected, tmp_path, capsys):
    """What the cohort loader cannot see alone (a DLT derived from grades, follow-up from a cut-off or from months)
    is checked when the state is read, with the same one-line form."""
    path = tmp_path / "state.csv"
    path.write_text(f"study_id,patient_id,age_years,sex,dose,dose_unit,weight_kg,{columns},sledai_baseline,sledai_latest\n"
                    f"AXA-NK02,S1,22,F,2.5e7,cells/kg,54,{row},12,8\n")
    code, _, stderr = _run(capsys, ["decide", "axa_nk02", "--design", "tite_crm", "--state", str(path)]
                           + (["--as-of", as_of] if as_of else []))
    _one_line_error(code, stderr)
    assert f"{path}:2: {expected}" in stderr, stderr


def test_a_dlt_date_gives_the_dlt_day_and_a_derived_dlt_may_have_one(tmp_path):
    path = tmp_path / "state.csv"
    path.write_text(f"{STATE_HEADER},dlt_date\nAXA-NK02,S1,22,F,2.5e7,cells/kg,54,0,2026-05-01,1,12,8,\n"
                    "AXA-NK02,S2,22,F,2.5e7,cells/kg,54,4,2026-05-20,1,12,8,2026-05-24\n")  # CRS 4: a DLT by the spec
    state = load_state(path, lb.load_spec("axa_nk02"), as_of=pd.Timestamp("2026-06-01").date())
    assert [(p.patient_id, p.dlt, p.dlt_day, p.safety_days) for p in state.patients] == [
        ("S1", False, None, 31), ("S2", True, 4, 12)]


# ---- [decision.boin] ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("setting", "field"), [("p_tox = 0.15", "p_tox"), ("p_saf = 0.149", "p_saf"),
                                                 ("p_tox = 0.16", "p_tox"), ("p_saf = 0.14", "p_saf")])
def test_boin_settings_that_cannot_give_boundaries_fail_spec_check(setting, field, tmp_path, capsys):
    path = tmp_path / "spec.toml"
    path.write_text(spec_text_with(SPEC_TEXT, "decision.boin", setting))
    code, _, stderr = _run(capsys, ["spec", "check", str(path)])
    _one_line_error(code, stderr)
    assert f"decision.boin.{field}" in stderr


def test_boin_settings_at_the_limits_decide(tmp_path, capsys):
    path = tmp_path / "spec.toml"
    path.write_text(spec_text_with(SPEC_TEXT, "decision.boin", "p_saf = 0.135\np_tox = 0.165"))
    code, _, _ = _run(capsys, ["decide", str(path), "--design", "boin", "--outcomes", "1NNN"])
    assert code == 0


# ---- --dask and --checkpoint ----------------------------------------------------------------------------------


@pytest.mark.parametrize("address", ["local:abc", "tcp://localhost", "local:0", "", "tcp://localhost:99999",
                                     "local:-1", "tcp://host name:8786"])
def test_a_malformed_dask_address_is_one_line_at_once(address, tmp_path, capsys):
    code, _, stderr = _run(capsys, ["simulate", "axa_nk02", "--seed", "1", "--n-trials", "2", "--dask", address,
                                    "--out", str(tmp_path / "oc")])
    assert code == 2 and "--dask" in stderr and "Traceback" not in stderr and stderr.count("\n") == 1
    assert not (tmp_path / "oc").exists()


@pytest.mark.parametrize("where", ["same", "inside", "around"])
def test_a_checkpoint_in_the_output_folder_is_refused_before_any_work(where, tmp_path, capsys):
    out = tmp_path / "oc"
    checkpoint = {"same": out, "inside": out / "chunks", "around": tmp_path}[where]
    if where == "around":
        out = tmp_path / "run" / "oc"
        (tmp_path / "run").mkdir()
    code, _, stderr = _run(capsys, ["simulate", "axa_nk02", "--seed", "1", "--n-trials", "2",
                                    "--checkpoint", str(checkpoint), "--out", str(out)])
    _one_line_error(code, stderr)
    assert "two separate folders" in stderr and not out.exists()


# ---- scenarios and the text in figures -----------------------------------------------------------------------


def test_user_text_in_figures_is_literal(tmp_path, capsys):
    scenarios = (ROOT / "src" / "lupusbayes" / "data" / "scenarios" / "axa_nk02.toml").read_text()
    path = tmp_path / "scenarios.toml"
    path.write_text(scenarios.replace('name = "target in the middle"', 'name = "costs $\\\\frac{1}{2}$ of $x^2"', 1))
    code, out, stderr = _run(capsys, ["simulate", "axa_nk02", "--scenarios", str(path), "--designs", "3+3",
                                      "--seed", "1", "--n-trials", "4", "--out", str(tmp_path / "oc")])
    assert code == 0, stderr
    assert "$\\frac{1}{2}$" in out and (tmp_path / "oc" / "operating_characteristics.png").stat().st_size > 10_000
    spec = lb.load_spec("axa_nk02")
    figure = plot_operating_characteristics(pd.read_csv(tmp_path / "oc" / "operating_characteristics.csv"),
                                            load_scenarios(path, spec), spec)
    texts = figure.findobj(Text)
    assert any("$\\frac{1}{2}$" in t.get_text() for t in texts) and not any(t.get_parse_math() for t in texts)


# ---- cohort files: line endings and notes at scale -------------------------------------------------------------


def test_classic_mac_line_endings_are_read(tmp_path, capsys):
    path = tmp_path / "mac.csv"
    path.write_bytes(b"patient_id,age_years,sex,dose,crs_grade,follow_up_months,sledai_baseline,sledai_latest\r"
                     b"P1,14,F,3e9,0,3,12,4\rP2,15,M,3e9,1,3,10,2\r")
    code, out, _ = _run(capsys, ["data", "check", str(path)])
    assert code == 0 and "2 patients" in out


def test_thousands_of_patients_outside_the_weight_reference_are_one_note(tmp_path, capsys):
    rows = "".join(f"P{i},{30 + i % 20},F,3e9,0,3,12,4\n" for i in range(3000))
    path = tmp_path / "adults.csv"
    path.write_text("patient_id,age_years,sex,dose,crs_grade,follow_up_months,sledai_baseline,sledai_latest\n" + rows)
    code, out, _ = _run(capsys, ["data", "check", str(path)])
    notes = [line for line in out.splitlines() if line.startswith("note:")]
    assert code == 0 and len(notes) == 1
    assert "3,000 patients" in notes[0] and f"{path}:2" in notes[0] and "2,997 more" in notes[0]


@pytest.mark.parametrize(("layout", "text"), [
    ("cells", "patient_id,age_years,sex,dose,dose_cells,crs_grade,follow_up_months,sledai_baseline,sledai_latest\n"
              "P1,14,F,3e9,3*10^8,0,3,12,4\n"),
    ("cells/kg", "patient_id,age_years,sex,dose,dose_unit,weight_kg,dose_cells,crs_grade,follow_up_months,"
                 "sledai_baseline,sledai_latest\nP1,22,F,2.5e7,cells/kg,54,3*10^9,0,3,12,4\n"),
    ("per kg in cells", "patient_id,age_years,sex,dose,dose_unit,weight_kg,dose_cells_per_kg,crs_grade,"
                        "follow_up_months,sledai_baseline,sledai_latest\nP1,22,F,3e9,cells,54,3*10^9,0,3,12,4\n"),
    ("long", "patient_id,age_years,sex,dose,dose_cells,crs_grade,visit_month,sledai\n"
             "P1,14,F,3e9,3e9,0,0,12\nP1,14,F,3e9,3*10^8,0,1,8\n"),
    ("text", "patient_id,age_years,sex,dose,dose_cells,crs_grade,follow_up_months,sledai_baseline,sledai_latest\n"
             "P1,14,F,3e9,three billion,0,3,12,4\n"),
])
def test_a_derived_dose_column_that_disagrees_is_refused_everywhere(layout, text, tmp_path, capsys):
    path = tmp_path / "cohort.csv"
    path.write_text(text)
    for argv in (["data", "check", str(path)], ["decide", "kn5601", "--design", "3+3", "--state", str(path)]):
        code, _, stderr = _run(capsys, argv)
        _one_line_error(code, stderr)
        assert "dose_cells" in stderr, (layout, argv, stderr)


def test_load_state_refuses_a_state_of_more_than_10000_patients(tmp_path):
    rows = "".join(f"KN5601,P{i},14,F,3e9,0,3,12,4\n" for i in range(10_001))
    path = tmp_path / "big.csv"
    path.write_text("study_id,patient_id,age_years,sex,dose,crs_grade,follow_up_months,sledai_baseline,"
                    "sledai_latest\n" + rows)
    with pytest.raises(lb.CohortError, match="at most 10,000"):
        load_state(path, lb.load_spec("kn5601"))
