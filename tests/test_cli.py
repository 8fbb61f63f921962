"""The command line end to end: help, data, spec, fit, check, demo."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from lupusbayes.cli import main

ROOT = Path(__file__).resolve().parents[1]

COMMANDS = [[], ["data"], ["data", "show"], ["data", "check"], ["data", "screen"], ["spec"], ["spec", "check"],
            ["fit"], ["check"], ["demo"]]


@pytest.mark.parametrize("command", COMMANDS, ids=[" ".join(c) or "top" for c in COMMANDS])
def test_every_command_has_help(command, capsys):
    with pytest.raises(SystemExit) as stop:
        main([*command, "--help"])
    assert stop.value.code == 0
    assert "usage: lupusbayes" in capsys.readouterr().out


HEAVY = ("lupusbayes.fitting", "lupusbayes.decisions", "lupusbayes.simulation", "lupusbayes.report.plots",
         "matplotlib", "arviz", "pymc")


@pytest.mark.parametrize("arguments", [["--help"], ["data", "check", "kn5601"], ["spec", "check", "axa_nk02", "--json"],
                                       ["fit", "--help"]], ids=" ".join)
def test_a_command_imports_only_what_it_needs(arguments):
    """``lupusbayes --help`` or a data check does not pay seconds of model, plot and simulator imports;
    ``spec check`` reads the decision layer (which levels can be reached: exact, NumPy only), nothing heavier."""
    heavy = tuple(m for m in HEAVY if not (arguments[0] == "spec" and m == "lupusbayes.decisions"))
    script = ("import sys\nfrom lupusbayes.cli import main\ntry:\n    main(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
              f"print([m for m in {heavy!r} if m in sys.modules], file=sys.stderr)")
    run = subprocess.run([sys.executable, "-c", script, *arguments], capture_output=True, text=True)
    assert run.stderr.strip().splitlines()[-1] == "[]", run.stderr


def test_the_full_parser_has_every_command_with_its_help_line():
    from lupusbayes.cli import build_parser
    from lupusbayes.cli.commands import COMMANDS

    full, light = build_parser().format_help(), build_parser("data").format_help()
    assert full == light and all(name in full for name in COMMANDS)


def test_console_script_runs_without_a_traceback(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("patient_id\nP1\n")
    run = subprocess.run([sys.executable, "-m", "lupusbayes.cli", "data", "check", str(bad)], capture_output=True, text=True)
    assert run.returncode == 2 and "Traceback" not in run.stderr and run.stderr.count("\n") == 1


def test_the_command_exits_fast_with_its_output_files_and_exit_handlers_complete(tmp_path):
    """``run`` skips only the interpreter's teardown: the exit code, every line printed, the file written and
    the exit handlers registered while the command ran (as worker pools and Dask do) are all there."""
    marker, example = tmp_path / "exit-handler-ran", tmp_path / "axa_patients.csv"
    script = ("import atexit, sys\n"
              "import lupusbayes.cli as cli\n"
              "command = cli.main\n"
              "def main_registering_a_handler():\n"
              f"    atexit.register(lambda: open({str(marker)!r}, 'w').write('ran'))\n"
              "    return command()\n"
              "cli.main = main_registering_a_handler\n"
              f"sys.argv = ['lupusbayes', 'data', 'example', 'axa_patients', '--out', {str(example)!r}]\n"
              "cli.run()\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert str(example) in done.stdout  # the last line printed
    assert example.read_text(encoding="utf-8") == main_output_of_example() and marker.read_text() == "ran"
    bad = tmp_path / "bad.csv"
    bad.write_text("patient_id\nP1\n")
    failed = subprocess.run([sys.executable, "-m", "lupusbayes.cli", "data", "check", str(bad)], capture_output=True,
                            text=True)
    assert failed.returncode == 2 and failed.stderr.startswith("lupusbayes: error:")


def test_importing_the_command_line_registers_no_exit_handler_but_loggings():
    """``run`` exits from an exit handler registered before the command; it calls ``logging.shutdown``, the only
    handler registered before it. Another one registered at import time would be skipped: this says so."""
    script = ("import atexit, logging\nbefore = atexit._ncallbacks()\nimport lupusbayes.cli\n"
              "print(atexit._ncallbacks() - before)")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "0", done.stdout


def main_output_of_example() -> str:
    """The shipped example state, as ``data example`` writes it in this process."""
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "example.csv"
        assert main(["data", "example", "axa_patients", "--out", str(path)]) == 0
        return path.read_text(encoding="utf-8")


def test_data_show_and_json(capsys):
    assert main(["data", "show", "kn5601"]) == 0
    out = capsys.readouterr().out
    assert "CRS by ASTCT grade" in out and "SRI-4 (SLEDAI component)" in out and "cells/kg" in out
    assert main(["data", "show", "kn5601", "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["n_patients"] == 11 and len(payload["patients"]) == 11
    assert {row["crs_grade"]: row["n_patients"] for row in payload["crs_by_grade"]} == {0: 7, 1: 3, 2: 1}


def test_screen_and_spec_json(capsys):
    assert main(["data", "screen", "kn5601", "--spec", "axa_nk02", "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert sorted(f["patient_id"] for f in payload["failures"]) == ["001", "007", "010", "012"]
    assert main(["spec", "check", "axa_nk02", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["dose_levels"] == [2.5e7, 7.5e7, 2.5e8]


def test_fit_then_check(tmp_path, capsys, mock_sampling):
    out = tmp_path / "blrm.nc"
    code = main(["fit", "kn5601", "--data", "kn5601", "--model", "blrm", "--out", str(out), "--seed", "4", "--draws", "500",
                 "--tune", "500", "--json"])
    payload = json.loads(capsys.readouterr().out)
    assert code == 0 and out.exists() and payload["converged"] is True
    first = payload["dose_summary"][0]
    assert first["dose"] == 1e9 and first["dose_label"] == "1.0e9 cells"  # a number, and the label beside it
    assert main(["check", str(out)]) == 0
    text = capsys.readouterr().out
    assert "Convergence gate: PASSED" in text and "PSIS-LOO" in text and "Prior predictive checks" in text
    assert main(["check", str(out), "--spec", "axa_nk02"]) == 2
    assert "another spec" in capsys.readouterr().err


def test_failed_gate_exits_3_and_says_so(tmp_path, capsys, mock_sampling):
    from pathlib import Path

    spec_text = Path(__file__).resolve().parents[1].joinpath("models", "kn5601.toml").read_text()
    strict = tmp_path / "strict.toml"
    strict.write_text(spec_text.replace("ess_bulk_min = 400", "ess_bulk_min = 1000000"))
    out = tmp_path / "fit.nc"
    code = main(["fit", str(strict), "--data", "kn5601", "--model", "blrm", "--out", str(out), "--seed", "4", "--draws", "200",
                 "--tune", "300"])
    captured = capsys.readouterr()
    assert code == 3 and out.exists()
    assert "FAILED" in captured.out and "must not rest on it" in captured.err
    assert main(["check", str(out)]) == 3


def test_demo_writes_everything_to_one_folder(tmp_path, capsys, mock_sampling):
    folder = tmp_path / "demo"
    assert main(["demo", "--out", str(folder), "--seed", "7"]) == 0
    names = {path.name for path in folder.iterdir()}
    assert {"report.txt", "cohort_summary.txt", "crs.nc", "sledai.nc", "blrm.nc", "model_comparison_crs.csv",
            "model_comparison_sledai.csv", "screening_axa_nk02.csv", "axa_nk02_crs_borrowing_kn5601.nc",
            "src_report_kn5601.html", "operating_characteristics_axa_nk02.csv",
            "operating_characteristics_axa_nk02.png"} <= names
    assert "Safety Review Committee report: KN5601" in (folder / "src_report_kn5601.html").read_text()
    report = (folder / "report.txt").read_text()
    assert "Convergence gate" in report and "FAILED" not in report
    assert "The next KN5601 dose group" in report and "Operating characteristics of AXA-NK02" in report
    assert main(["demo", "--out", str(folder), "--seed", "7"]) == 2  # refuses to overwrite
    assert not any(p.name.endswith(".partial") for p in tmp_path.iterdir())


def test_the_makefile_demo_recipe_runs_on_a_fresh_clone(tmp_path, capsys, mock_sampling):
    """`make demo` as written: its output folder's parent (outputs/) does not exist on a fresh clone."""
    recipe = next(line.strip() for line in (ROOT / "Makefile").read_text().splitlines() if "lupusbayes demo" in line)
    arguments = recipe.split("lupusbayes", 1)[1].split()
    arguments = [str(tmp_path / "outputs" / "demo") if a == "$(DEMO_OUT)" else "7" if a == "$(SEED)" else a
                 for a in arguments]
    assert main(arguments) == 0
    assert (tmp_path / "outputs" / "demo" / "src_report_kn5601.html").exists()


def test_output_piped_into_head_is_not_an_error():
    run = subprocess.run(
        f"'{sys.executable}' -m lupusbayes.cli data show kn5601 --json | head -n 1",
        shell=True, capture_output=True, text=True,
    )
    assert run.stdout.strip() == "{" and "Traceback" not in run.stderr
