"""Every malformed input gives one line naming file, row and field, exit code 2, and no output."""

from __future__ import annotations

import pytest

from lupusbayes.cli import main

HEADER = "patient_id,age_years,sex,dose,crs_grade,follow_up_months,sledai_baseline,sledai_latest"
GOOD_ROW = "P1,14,F,3*10^9,/,3,12,4"
LONG_HEADER = "patient_id,age_years,sex,dose,crs_grade,visit_month,sledai"


def wide(*rows: str) -> str:
    return "\n".join([HEADER, GOOD_ROW, *rows]) + "\n"


# (name, file text, substrings the message must contain)
BAD_COHORTS = [
    ("sledai above 105", wide("P2,15,F,3e9,0,3,106,4"), [":3:", "sledai_baseline", "between 0 and 105"]),
    ("sledai below 0", wide("P2,15,F,3e9,0,3,12,-1"), [":3:", "sledai_latest", "between 0 and 105"]),
    ("sledai not whole", wide("P2,15,F,3e9,0,3,12,7.5"), [":3:", "sledai_latest", "whole number"]),
    ("negative dose", wide("P2,15,F,-3e9,0,3,12,4"), [":3:", "'dose'", "positive"]),
    ("unparseable dose", wide("P2,15,F,three billion,0,3,12,4"), [":3:", "'dose'", "cannot read dose"]),
    ("zero dose", wide("P2,15,F,0,0,3,12,4"), [":3:", "'dose'", "positive"]),
    ("unknown CRS grade VI", wide("P2,15,F,3e9,VI,3,12,4"), [":3:", "crs_grade", "unknown CRS grade 'VI'"]),
    ("unknown CRS grade word", wide("P2,15,F,3e9,severe,3,12,4"), [":3:", "crs_grade", "unknown CRS grade"]),
    ("empty CRS grade", wide("P2,15,F,3e9,,3,12,4"), [":3:", "crs_grade", "empty"]),
    ("duplicate patient", wide("P1,15,F,3e9,0,3,12,4"), [":3:", "patient_id", "duplicate patient_id 'P1'"]),
    ("missing column", "patient_id,age_years,sex,dose,follow_up_months,sledai_baseline,sledai_latest\nP1,14,F,3e9,3,12,4\n",
     ["missing required column 'crs_grade'"]),
    ("negative follow-up", wide("P2,15,F,3e9,0,-1,12,4"), [":3:", "follow_up_months", ">= 0"]),
    ("unknown sex", wide("P2,15,X,3e9,0,3,12,4"), [":3:", "'sex'", "F or M"]),
    ("age not a number", wide("P2,fifteen,F,3e9,0,3,12,4"), [":3:", "age_years", "not a number"]),
    ("bad biopsy class", HEADER + ",biopsy_class\nP1,14,F,3e9,0,3,12,4,VII\n", [":2:", "biopsy_class", "ISN/RPS"]),
    ("bad dose unit", HEADER + ",dose_unit\nP1,14,F,3e9,0,3,12,4,mg\n", [":2:", "dose_unit", "unknown dose unit 'mg'"]),
    ("ragged row", wide("P2,15,F,3e9,0,3,12"), [":3:", "7 cells", "8 columns"]),
    ("empty file", "", ["empty"]),
    ("long layout without baseline", f"{LONG_HEADER}\nP1,14,F,3e9,0,1,8\nP1,14,F,3e9,0,3,6\n",
     [":2:", "visit_month", "no baseline visit"]),
    ("long layout with changing dose", f"{LONG_HEADER}\nP1,14,F,3e9,0,0,12\nP1,14,F,4.5e9,0,3,6\n",
     [":3:", "'dose'", "differs from line 2"]),
    ("mixed layouts", "patient_id,age_years,sex,dose,crs_grade,visit_month,sledai,sledai_baseline\nP1,14,F,3e9,0,0,12,12\n",
     ["mixes layouts"]),
    ("DLT day not whole", f"{HEADER},dlt,dlt_day\nP1,14,F,3e9,0,3,12,4,yes,5\nP2,15,F,3e9,0,3,12,4,yes,2.5\n",
     [":3:", "dlt_day", "whole number of days"]),
    ("DLT day without a DLT", f"{HEADER},dlt,dlt_day\nP1,14,F,3e9,0,3,12,4,yes,5\nP2,15,F,3e9,0,3,12,4,no,3\n",
     [":3:", "dlt_day", "dlt is 'no'"]),
]


def _run(capsys, argv):
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize(("name", "text", "expected"), BAD_COHORTS, ids=[c[0] for c in BAD_COHORTS])
def test_bad_cohort_file(name, text, expected, write, tmp_path, capsys):
    path = write("cohort.csv", text)
    out = tmp_path / "fit.nc"
    code, stdout, stderr = _run(capsys, ["fit", "kn5601", "--data", str(path), "--out", str(out), "--seed", "1"])
    assert code == 2
    assert stderr.count("\n") == 1 and stderr.startswith("lupusbayes: error: ")
    assert "Traceback" not in stderr
    assert str(path) in stderr
    for fragment in expected:
        assert fragment in stderr, (fragment, stderr)
    assert not out.exists()
    assert list(tmp_path.iterdir()) == [path]  # no partial or temporary output either
    # `data check` agrees
    code, _, stderr_check = _run(capsys, ["data", "check", str(path)])
    assert code == 2 and stderr_check == stderr


SPEC = """\
[trial]
id = "T1"
[dosing]
unit = "cells/kg"
levels = [2.5e7, 7.5e7, 2.5e8]
reference_dose = 7.5e7
[dlt]
window_days = 28
definition = ["CRS grade >= 3"]
crs_grade_at_least = 3
"""

BAD_SPECS = [
    ("unsorted dose levels", SPEC.replace("[2.5e7, 7.5e7, 2.5e8]", "[7.5e7, 2.5e7, 2.5e8]"), ["dosing.levels", "strictly increasing"]),
    ("zero dose level", SPEC.replace("[2.5e7, 7.5e7, 2.5e8]", "[0, 7.5e7, 2.5e8]"), ["dosing.levels", "positive"]),
    ("negative dose level", SPEC.replace("[2.5e7, 7.5e7, 2.5e8]", "[-2.5e7, 7.5e7, 2.5e8]"), ["dosing.levels", "positive"]),
    ("unknown top-level key", "colour = 'blue'\n" + SPEC, ["field 'colour'", "unknown key"]),
    ("typo in a key", SPEC.replace("levels =", "level ="), ["dosing.levels", "required key is missing"]),
    ("unknown key in a table", SPEC.replace("reference_dose = 7.5e7", "reference_dose = 7.5e7\nrefrence = 1"),
     ["dosing.refrence", "unknown key", "did you mean 'reference_dose'"]),
    ("wrong dose unit", SPEC.replace('unit = "cells/kg"', 'unit = "mg/kg"'), ["dosing.unit", "wrong unit 'mg/kg'"]),
    ("implausible unit for the doses", SPEC.replace("[2.5e7, 7.5e7, 2.5e8]", "[1e9, 2e9, 4.5e9]"), ["dosing.levels", "is the unit 'cells'"]),
    ("wrong unit in a criterion", SPEC + '[[eligibility.criteria]]\nid = "age"\nfield = "age_years"\nunit = "months"\nmin = 5\n',
     ["eligibility.criteria[0].unit", "wrong unit 'months'", "'years'"]),
    ("missing reference dose", SPEC.replace("reference_dose = 7.5e7\n", ""), ["dosing.reference_dose", "required"]),
    ("not TOML", SPEC + "this is not toml\n", ["not valid TOML"]),
    ("DLT window not positive", SPEC.replace("window_days = 28", "window_days = 0"), ["dlt.window_days", ">= 1"]),
    ("sentinel as large as the group", SPEC + "[escalation]\ngroup_size = 3\nsentinel_patients = 3\nsentinel_safety_days = 28\n",
     ["escalation.sentinel_patients", "smaller than group_size"]),
    ("exchangeability above 1", SPEC + '[model.crs]\np_exchangeable = { T1 = 1.5 }\n', ["model.crs.p_exchangeable.T1", "between 0 and 1"]),
    ("levels of the wrong type", SPEC.replace("[2.5e7, 7.5e7, 2.5e8]", '"2.5e7"'), ["dosing.levels", "list of numbers"]),
    ("toxicity intervals not increasing", SPEC + '[dlt.intervals]\nedges = [0, 0.33, 0.16, 1]\nnames = ["a", "b", "c"]\n',
     ["dlt.intervals.edges", "increase"]),
    ("toxicity intervals without names", SPEC + '[dlt.intervals]\nedges = [0, 0.2, 1]\n', ["dlt.intervals.names", "name the 2 intervals"]),
    ("toxicity interval names do not match", SPEC + '[dlt.intervals]\nedges = [0, 0.2, 1]\nnames = ["ok"]\n',
     ["dlt.intervals.names", "2 intervals need 2 names"]),
    ("unknown overdose interval", SPEC + '[dlt.intervals]\nedges = [0, 0.2, 1]\nnames = ["ok", "too toxic"]\noverdose = "bad"\n',
     ["dlt.intervals.overdose", "not one of the names"]),
]


@pytest.mark.parametrize(("name", "text", "expected"), BAD_SPECS, ids=[c[0] for c in BAD_SPECS])
def test_bad_spec_file(name, text, expected, write, tmp_path, capsys):
    path = write("trial.toml", text)
    out = tmp_path / "fit.nc"
    code, stdout, stderr = _run(capsys, ["fit", str(path), "--out", str(out), "--seed", "1"])
    assert code == 2
    assert stderr.count("\n") == 1 and "Traceback" not in stderr
    assert str(path) in stderr
    for fragment in expected:
        assert fragment in stderr, (fragment, stderr)
    assert not out.exists()
    code, _, stderr_check = _run(capsys, ["spec", "check", str(path)])
    assert code == 2 and stderr_check == stderr


def test_the_good_spec_used_above_is_valid(write, capsys):
    code, stdout, _ = _run(capsys, ["spec", "check", str(write("trial.toml", SPEC))])
    assert code == 0 and stdout.startswith("ok:")


def test_existing_output_is_not_overwritten(tmp_path, capsys):
    out = tmp_path / "fit.nc"
    out.write_text("precious")
    code, _, stderr = _run(capsys, ["fit", "kn5601", "--out", str(out), "--seed", "1"])
    assert code == 2 and "exists" in stderr and "--overwrite" in stderr
    assert out.read_text() == "precious"


def test_usage_errors_exit_2_on_one_line(capsys):
    code = None
    with pytest.raises(SystemExit) as stop:
        main(["fit", "kn5601"])
    code = stop.value.code
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "--out" in err


def test_missing_files(tmp_path, capsys):
    code, _, stderr = _run(capsys, ["data", "check", str(tmp_path / "nope.csv")])
    assert code == 2 and "nope.csv: file not found" in stderr
    code, _, stderr = _run(capsys, ["spec", "check", str(tmp_path / "nope.toml")])
    assert code == 2 and "nope.toml: file not found" in stderr
