"""Trust on bad input, tampered files and the newcomer's rough edges (issue 8), by class.

Every command of the command line, given any of the broken inputs below, exits 2 with one line
on stderr and leaves no file behind; the classes are: derived and computed columns, numbers
that are infinite, absurd or overflow, unprintable text, delimiters and encodings, tampered fit
files, seeds and settings, output paths.
"""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

import arviz as az
import numpy as np
import pandas as pd
import pytest
from conftest import ROOT

import lupusbayes as lb
from lupusbayes.cli import main
from lupusbayes.cohort import EXAMPLE_COHORTS, example_cohort_text, parse_cohort_text

HEADER = "patient_id,age_years,sex,dose,crs_grade,follow_up_months,sledai_baseline,sledai_latest"
GOOD = "P1,14,F,3e9,0,3,12,4"


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
    assert stderr.count("field '") <= 1, f"a prefix is repeated: {stderr}"


# ---- cohort files --------------------------------------------------------------------------

BROKEN_COHORTS = [
    ("derived column disagrees", f"{HEADER},dose_cells\n{GOOD},1000\n", ["dose_cells", "disagrees", ":2:"]),
    ("derived per-kg column without a weight", f"{HEADER},dose_cells_per_kg\n{GOOD},5e7\n", ["dose_cells_per_kg", "weight_kg"]),
    ("computed column", f"{HEADER},sri4_sledai_component\n{GOOD},yes\n", ["sri4_sledai_component", "computed by lupusbayes"]),
    ("long follow-up disagrees with the visits",
     "patient_id,age_years,sex,dose,crs_grade,visit_month,sledai,follow_up_months\nP1,14,F,3e9,0,0,12,6\nP1,14,F,3e9,0,3,6,6\n",
     ["follow_up_months", "latest visit_month"]),
    ("dose that overflows", f"{HEADER}\nP1,14,F,3*10^400,0,3,12,4\n", ["'dose'", "too large", ":2:"]),
    ("dose that is infinite", f"{HEADER}\nP1,14,F,1e400,0,3,12,4\n", ["'dose'", "too large"]),
    ("absurd dose", f"{HEADER}\nP1,14,F,3e15,0,3,12,4\n", ["'dose'", "not a plausible dose"]),
    ("NUL byte in an id", f"{HEADER}\nP\x001,14,F,3e9,0,3,12,4\n", ["patient_id", "control character U+0000", ":2:"]),
    ("semicolon-delimited", HEADER.replace(",", ";") + "\nP1;14;F;3e9;0;3;12;4\n", ["semicolon-separated", ":1:"]),
    ("tab-delimited", HEADER.replace(",", "\t") + "\nP1\t14\tF\t3e9\t0\t3\t12\t4\n", ["tab-separated"]),
    ("unclosed quote", f'{HEADER}\n{GOOD}\n"P2,15,F,3e9,0,3,12,4\nP3,15,F,3e9,0,3,12,4\n', [":3:", "closing quote"]),
    ("age that is infinite", f"{HEADER}\nP1,inf,F,3e9,0,3,12,4\n", ["age_years", "finite"]),
]


def _cohort_commands(path: Path, out: Path) -> list[list[str]]:
    return [
        ["data", "check", str(path)],
        ["data", "show", str(path)],
        ["data", "screen", str(path), "--spec", "axa_nk02"],
        ["fit", "kn5601", "--data", str(path), "--model", "crs", "--out", str(out), "--seed", "1"],
        ["prior", "kn5601", "--data", str(path), "--model", "blrm", "--seed", "1"],
    ]


@pytest.mark.parametrize(("name", "text", "expected"), BROKEN_COHORTS, ids=[c[0] for c in BROKEN_COHORTS])
def test_every_command_refuses_a_broken_cohort_with_one_line(name, text, expected, tmp_path, capsys):
    path = tmp_path / "cohort.csv"
    path.write_text(text)
    for argv in _cohort_commands(path, tmp_path / "fit.nc"):
        code, _, stderr = _run(capsys, argv)
        _one_line_error(code, stderr)
        assert str(path) in stderr
        for fragment in expected:
            assert fragment in stderr, (argv, fragment, stderr)
        assert sorted(p.name for p in tmp_path.iterdir()) == ["cohort.csv"]  # nothing written


def test_a_latin1_file_names_its_line(tmp_path, capsys):
    path = tmp_path / "latin.csv"
    path.write_bytes(f"{HEADER}\n{GOOD}\nP\xe9,14,F,3e9,0,3,12,4\n".encode("latin-1"))
    code, _, stderr = _run(capsys, ["data", "check", str(path)])
    _one_line_error(code, stderr)
    assert f"{path}:3:" in stderr and "UTF-8" in stderr and "0xE9" in stderr


def test_a_derived_column_that_agrees_is_accepted_and_supplies_the_dose(capsys):
    agreeing = parse_cohort_text(f"{HEADER},dose_cells\n{GOOD},3e9\n", source="a.csv", default_study_id="S")
    assert agreeing.patients["dose_cells"].iloc[0] == 3e9
    export = f"{HEADER.replace('dose,', 'dose_cells,')}\nP1,14,F,3e9,0,3,12,4\n"
    assert parse_cohort_text(export, source="b.csv", default_study_id="S").patients["dose_cells"].iloc[0] == 3e9


@pytest.mark.parametrize("layout", ["wide", "long"])
def test_what_the_package_writes_it_reads_back(layout, kn5601):
    columns = [c for c in kn5601.patients.columns if c not in ("source_line", "source_file")]
    back = parse_cohort_text(kn5601.to_csv(layout=layout), source="x", default_study_id="KN5601")
    pd.testing.assert_frame_equal(back.patients[columns], kn5601.patients[columns])


def test_data_show_json_patients_read_back(capsys, kn5601, tmp_path):
    assert main(["data", "show", "kn5601", "--json"]) == 0
    frame = pd.DataFrame(json.loads(capsys.readouterr().out)["patients"])
    path = tmp_path / "from_json.csv"
    frame.to_csv(path, index=False)
    assert main(["data", "check", str(path)]) == 0
    columns = [c for c in kn5601.patients.columns if c not in ("source_line", "source_file")]
    back = lb.load_cohort(path, study_id="KN5601")
    pd.testing.assert_frame_equal(back.patients[columns], kn5601.patients[columns])


def test_patients_outside_the_weight_reference_are_said_once_at_load(tmp_path, capsys, axa_spec):
    path = tmp_path / "adults.csv"
    path.write_text(f"{HEADER},n_infusions\n{GOOD},4\nP2,40,F,3e9,0,3,12,4,4\n")
    assert main(["data", "check", str(path)]) == 0
    out = capsys.readouterr().out
    assert out.count("note: patient P2") == 1 and f"{path}:3" in out and "age 40" in out and "40.5" not in out
    assert main(["data", "show", str(path)]) == 0
    assert "patient P2" in capsys.readouterr().out
    with pytest.raises(lb.ModelSetupError, match=rf"{re.escape(str(path))}:3: patient P2 .*age 40 is outside"):
        lb.CRSModel(lb.load_cohort(path), axa_spec)


# ---- specs ---------------------------------------------------------------------------------

SPEC = (ROOT / "models" / "axa_nk02.toml").read_text()
BROKEN_SPECS = [
    ("infinite dose level", SPEC.replace("levels = [2.5e7, 7.5e7, 2.5e8]", "levels = [2.5e7, 7.5e7, inf]"),
     ["dosing.levels", "finite"]),
    ("absurd reference dose", SPEC.replace("reference_dose = 7.5e7", "reference_dose = 1e300"),
     ["dosing.reference_dose", "implausible"]),
    ("number that overflows", SPEC.replace("reference_dose = 7.5e7", "reference_dose = 1e400"),
     ["dosing.reference_dose", "finite", "overflows"]),
    ("NUL byte in the trial id", SPEC.replace('id = "AXA-NK02"', 'id = "AXA\\u0000NK02"'),
     ["trial.id", "control character U+0000"]),
    ("deeply nested TOML", "x = " + "[" * 20000 + "]" * 20000 + "\n" + SPEC, ["nested too deeply"]),
    ("a sampler setting out of range", SPEC.replace("target_accept = 0.9", "target_accept = 0.2"),
     ["fitting.target_accept", ">= 0.5"]),
    ("an unknown sampler", SPEC.replace('sampler = "nutpie"                   # see', 'sampler = "stan"   # see'),
     ["fitting.sampler", "pymc, nutpie"]),
]


@pytest.mark.parametrize(("name", "text", "expected"), BROKEN_SPECS, ids=[c[0] for c in BROKEN_SPECS])
def test_every_command_refuses_a_broken_spec_with_one_line(name, text, expected, tmp_path, capsys):
    path = tmp_path / "spec.toml"
    path.write_text(text)
    for argv in (["spec", "check", str(path)], ["data", "screen", "kn5601", "--spec", str(path)],
                 ["fit", str(path), "--data", "kn5601", "--out", str(tmp_path / "x.nc"), "--seed", "1"],
                 ["prior", str(path), "--data", "kn5601", "--seed", "1"]):
        code, _, stderr = _run(capsys, argv)
        _one_line_error(code, stderr)
        assert str(path) in stderr
        for fragment in expected:
            assert fragment in stderr, (argv, fragment, stderr)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["spec.toml"]


def test_a_spec_with_a_byte_order_mark_is_read(tmp_path, capsys):
    path = tmp_path / "bom.toml"
    path.write_bytes("\ufeff".encode() + SPEC.encode())
    assert main(["spec", "check", str(path)]) == 0


def test_the_documented_open_last_weight_tier_is_accepted():
    tiers = ('[[dosing.weight_tiers]]\nmin_weight_kg = 0\nmax_weight_kg = 40\ndose_cells = 1e9\n'
             '[[dosing.weight_tiers]]\nmin_weight_kg = 40\nmax_weight_kg = inf\ndose_cells = 2e9\n\n[efficacy]')
    spec = lb.parse_spec(SPEC.replace("[efficacy]", tiers, 1))
    assert spec.dosing.weight_tiers.bands[-1].max_weight_kg == float("inf")


def test_a_shipped_spec_path_from_another_folder_says_how(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    code, _, stderr = _run(capsys, ["spec", "check", "models/axa_nk02.toml"])
    _one_line_error(code, stderr)
    assert "'axa_nk02' names the shipped spec" in stderr and "spec export" in stderr
    assert main(["spec", "check", "axa_nk02"]) == 0


# ---- documentation snippets and examples -----------------------------------------------------

MINIMAL_SPEC = """\
[trial]
id = "DOC"
[dosing]
unit = "cells"
levels = [1e9, 2e9, 3e9]
reference_dose = 2e9
[dlt]
window_days = 28
definition = ["CRS grade >= 3"]
crs_grade_at_least = 3
"""


def _snippets(kind: str) -> list[tuple[str, str]]:
    """TOML blocks (```toml) or cohort CSV blocks (```text whose header names patient_id) of the docs."""
    language = "toml" if kind == "toml" else "text"
    found = []
    for page in sorted((ROOT / "docs").glob("*.md")):
        for match in re.finditer(rf"```{language}\n(.*?)```", page.read_text(), re.S):
            first = match.group(1).splitlines()[0] if match.group(1).strip() else ""
            if kind == "toml" or ("patient_id" in first and "," in first):
                found.append((f"{page.name}: {first}", match.group(1)))
    return found


@pytest.mark.parametrize(("where", "snippet"), _snippets("toml"), ids=lambda value: str(value)[:60])
def test_every_toml_snippet_in_the_docs_is_a_valid_spec_part(where, snippet):
    """Spec parts go into a minimal spec; scenario files (``[[scenario]]``) are read against it."""
    document = tomllib.loads(snippet)
    if "scenario" in document:
        from lupusbayes.simulation import parse_scenarios

        parse_scenarios(snippet, lb.parse_spec(MINIMAL_SPEC), source=where)
        return
    text = snippet if "trial" in document else f"{MINIMAL_SPEC}\n{snippet}"  # a part goes into a minimal spec
    lb.parse_spec(text, source=where)


@pytest.mark.parametrize(("where", "snippet"), _snippets("csv"), ids=lambda value: str(value)[:60])
def test_every_csv_snippet_in_the_docs_is_a_valid_cohort(where, snippet):
    parse_cohort_text(snippet, source=where, default_study_id="DOC")


@pytest.mark.parametrize("name", sorted(EXAMPLE_COHORTS))
def test_every_example_file_the_docs_name_ships_and_loads(name, capsys):
    assert main(["data", "example", name]) == 0
    text = capsys.readouterr().out
    assert text == example_cohort_text(name)
    parse_cohort_text(text, source=name, default_study_id="EXAMPLE")


def test_the_docs_csv_snippets_are_the_shipped_examples():
    shipped = {example_cohort_text(name).strip() for name in EXAMPLE_COHORTS}
    for where, snippet in _snippets("csv"):
        assert snippet.strip() in shipped, f"{where}: not the same as a shipped example"


def test_spec_export_writes_an_editable_copy(tmp_path, capsys):
    out = tmp_path / "my_trial.toml"
    assert main(["spec", "export", "axa_nk02", "--out", str(out)]) == 0
    assert lb.load_spec(out).trial.id == "AXA-NK02"
    assert main(["spec", "export", "axa_nk02", "--out", str(out)]) == 2  # not overwritten silently


# ---- fit files are untrusted input -------------------------------------------------------------


def _tampered(mock_blrm_fit, tmp_path, change) -> Path:
    original = mock_blrm_fit.save(tmp_path / "original.nc")
    tree = az.from_netcdf(original)
    tree = change(tree) or tree
    path = tmp_path / "tampered.nc"
    tree.to_netcdf(path, engine="h5netcdf")
    original.unlink()
    return path


def _set(name, value):
    def change(tree):
        tree.attrs[name] = value
    return change


def _drop_attribute(name):
    def change(tree):
        del tree.attrs[name]
    return change


def _drop_group(name):
    def change(tree):
        return tree.drop_nodes(name)
    return change


def _scale_group(name, variable):
    def change(tree):
        data = tree[name].to_dataset()
        data[variable] = data[variable] * 0.5
        tree[name] = data
    return change


def _edit_outcome(tree):
    data = tree["observed_data"].to_dataset()
    values = data["toxicity_outcome"].to_numpy().copy()
    values[0] = 1 - values[0]
    data["toxicity_outcome"] = ("observation", values)
    tree["observed_data"] = data


TAMPERED = [
    ("stored spec hash replaced", _set("spec_sha256", "0" * 64), ["does not match its stored hash"]),
    ("spec text edited", lambda tree: tree.attrs.update(spec_toml=tree.attrs["spec_toml"].replace("28", "21", 1)),
     ["does not match its stored hash"]),
    ("a group missing", _drop_group("dose_response"), ["group 'dose_response' is missing"]),
    ("an attribute missing", _drop_attribute("model_settings"), ["attribute 'model_settings' is missing"]),
    ("settings that are not JSON", _set("model_settings", "{not json"), ["'model_settings' is not valid JSON"]),
    ("an unknown setting", _set("fit_settings", json.dumps({"draws": 10, "rocket": 1})), ["unknown setting 'rocket'"]),
    ("a swapped model class", _set("model_class", "SledaiModel"), ["model_settings", "unknown setting"]),
    ("an unknown model class", _set("model_class", "os.system"), ["unknown model class"]),
    ("a non-numeric format version", _set("lupusbayes_file_format", "one"), ["'lupusbayes_file_format' must be a number"]),
    ("a seed that is not a number", _set("seed", "x"), ["'seed' must be a number"]),
    ("derived numbers edited", _scale_group("dose_response", "p_dlt"), ["does not follow from the posterior"]),
    ("outcomes edited", lambda tree: _edit_outcome(tree), ["does not match the stored cohort"]),
    ("a stored cohort that is invalid", lambda tree: tree.attrs.update(cohort_csv="patient_id\nP1\n"),
     ["stored cohort", "missing required column"]),
    ("a stored cohort that is inconsistent", lambda tree: tree.attrs.update(
        cohort_csv=tree.attrs["cohort_csv"].replace(",0,", ",3,", 1)), ["stored cohort:3:", "differs from line 2"]),
]


@pytest.mark.parametrize(("name", "change", "expected"), TAMPERED, ids=[t[0] for t in TAMPERED])
def test_a_tampered_fit_file_is_refused_with_one_line_naming_it(name, change, expected, mock_blrm_fit, tmp_path,
                                                                 capsys):
    path = _tampered(mock_blrm_fit, tmp_path, change)
    code, _, stderr = _run(capsys, ["check", str(path)])
    _one_line_error(code, stderr)
    assert stderr.startswith(f"lupusbayes: error: {path}")
    for fragment in expected:
        assert fragment in stderr, stderr


def test_a_replaced_hash_cannot_pass_as_another_spec(mock_blrm_fit, axa_spec, tmp_path, capsys):
    path = _tampered(mock_blrm_fit, tmp_path, _set("spec_sha256", axa_spec.sha256))
    code, _, stderr = _run(capsys, ["check", str(path), "--spec", "axa_nk02"])
    _one_line_error(code, stderr)
    assert "stored hash" in stderr


# ---- seeds, settings, output paths --------------------------------------------------------------

USAGE = [
    (["demo", "--out", "x", "--seed", "-3"], "--seed"),
    (["data", "show", "kn5601", "--seed", "-1"], "--seed"),
    (["fit", "kn5601", "--data", "kn5601", "--out", "x.nc", "--seed", "1.5"], "--seed"),
    (["prior", "kn5601", "--data", "kn5601", "--seed", "one"], "--seed"),
    (["fit", "kn5601", "--data", "kn5601", "--out", "x.nc", "--seed", "1", "--draws", "0"], "--draws"),
    (["fit", "kn5601", "--data", "kn5601", "--out", "x.nc", "--seed", "1", "--target-accept", "1"], "--target-accept"),
]


@pytest.mark.parametrize(("argv", "setting"), USAGE, ids=[" ".join(a[:1] + a[-2:]) for a, _ in USAGE])
def test_bad_seeds_and_settings_name_the_setting(argv, setting, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    code, _, stderr = _run(capsys, argv)
    _one_line_error(code, stderr)
    assert setting in stderr
    assert not list(tmp_path.iterdir())


def _no_sampling(*args, **kwargs):
    raise AssertionError("sampling started before the output path was checked")


@pytest.mark.parametrize("case", ["parent is a file", "missing folder", "existing folder", "empty", "read-only folder"])
def test_output_paths_are_checked_before_any_work(case, tmp_path, monkeypatch, capsys):
    from lupusbayes import _io
    from lupusbayes.fitting import sample

    monkeypatch.setattr(sample, "run_sampler", _no_sampling)
    blocker = tmp_path / "blocker"
    blocker.write_text("a file")
    out = {"parent is a file": blocker / "fit.nc", "missing folder": tmp_path / "typo" / "fit.nc",
           "existing folder": tmp_path, "empty": "", "read-only folder": tmp_path / "fit.nc"}[case]
    if case == "read-only folder":
        def refuse(*args, **kwargs):
            raise PermissionError(13, "Permission denied")
        monkeypatch.setattr(_io.tempfile, "mkstemp", refuse)
    code, _, stderr = _run(capsys, ["fit", "kn5601", "--data", "kn5601", "--out", str(out), "--seed", "1", "--overwrite"])
    _one_line_error(code, stderr)
    assert not (tmp_path / "typo").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["blocker"]


def test_mkdir_creates_a_missing_folder_when_asked(tmp_path, capsys, mock_sampling):
    out = tmp_path / "new" / "fit.nc"
    assert main(["fit", "kn5601", "--data", "kn5601", "--model", "blrm", "--out", str(out), "--seed", "1", "--mkdir"]) == 0
    assert out.exists()


# ---- feedback -----------------------------------------------------------------------------------


def test_progress_is_shown_when_asked_and_silent_otherwise(tmp_path, capsys, mock_sampling):
    out = tmp_path / "a.nc"
    assert main(["fit", "kn5601", "--data", "kn5601", "--model", "blrm", "--out", str(out), "--seed", "1", "--progress"]) == 0
    stderr = capsys.readouterr().err
    assert "building the model graph" in stderr or "reusing the model graph" in stderr
    assert "sampling 2 chains x 300 draws" not in stderr  # the spec's settings, not the mock's
    assert "sampling 4 chains x 2000 draws" in stderr and "predictive checks" in stderr
    assert main(["fit", "kn5601", "--data", "kn5601", "--model", "blrm", "--out", str(tmp_path / "b.nc"), "--seed", "1",
                 "--no-progress"]) == 0
    assert capsys.readouterr().err == ""


def test_the_terminal_progress_bar_draws_and_clears():
    import io

    from lupusbayes.cli.output import TerminalProgress

    stream = io.StringIO()
    progress = TerminalProgress(stream)
    progress.step("sampling")
    progress.sampling(500, 1000, 2, tuning=True)
    progress.sampling(1000, 1000, 2, tuning=False)
    shown = stream.getvalue()
    assert "sampling\n" in shown and "50% tuning, 2 divergences" in shown and shown.endswith("\r\033[K")


def test_results_print_readably(mock_crs_fit, kn5601, axa_spec):
    shown = repr(mock_crs_fit)
    assert shown.startswith("FitResult(crs") and "convergence gate PASSED" in shown and len(shown) < 500
    html = mock_crs_fit._repr_html_()
    assert "<table" in html and "P(CRS&gt;=1) mean" in html or "P(CRS>=1) mean" in html
    assert repr(axa_spec).startswith("TrialSpec(AXA-NK02: 3 dose levels")
    assert repr(lb.summarise_cohort(kn5601)).startswith("CohortSummary(11 patients")
    assert repr(lb.screen(kn5601.patients, axa_spec)).startswith("ScreeningReport(AXA-NK02: 11 patients")
    assert "Diagnostics(convergence gate PASSED" in repr(mock_crs_fit.diagnostics)
