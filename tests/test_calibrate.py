"""Design calibration: the grid of settings on the same simulated patients, paired with the current spec;
the keys that may and may not be varied; the spec edits; the command line and its files."""

from __future__ import annotations

import json
import tomllib
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import lupusbayes as lb
from lupusbayes.calibration import (
    CORRECT_SELECTION,
    CalibrationError,
    calibratable_key,
    calibrate,
    calibration_grid,
    dump_toml,
    parse_vary,
    setting_text,
)
from lupusbayes.cli import main
from lupusbayes.simulation import QUANTITIES, SimulationPlan, load_scenarios, parse_scenarios, simulate

KN5601 = lb.load_spec("kn5601")  # borrows from nothing: its BLRM decisions are exact, no MCMC
AXA = lb.load_spec("axa_nk02")
#: Truths for KN5601's four levels: every level safe, and one where the top two are toxic.
KN5601_SCENARIOS = """
[simulation]
accrual_gap_days = 14
max_patients = 12                # KN5601 states no sample size

[[scenario]]
name = "safe"
p_crs_at_least = [[0.1, 0.02, 0.0], [0.1, 0.02, 0.0], [0.15, 0.03, 0.0], [0.2, 0.04, 0.0]]
p_other_dlt = [0.01, 0.02, 0.03, 0.04]
p_response = [0.3, 0.4, 0.55, 0.6]

[[scenario]]
name = "toxic at the top"
p_crs_at_least = [[0.1, 0.02, 0.0], [0.2, 0.05, 0.02], [0.6, 0.4, 0.3], [0.8, 0.6, 0.5]]
p_other_dlt = [0.02, 0.04, 0.1, 0.15]
p_response = [0.3, 0.55, 0.6, 0.7]
"""
EWOC = "decision.max_overdose_probability"


def kn5601_scenarios(spec=KN5601):
    return parse_scenarios(KN5601_SCENARIOS, spec, source="kn5601 test scenarios")


def design_only(spec):
    return replace(spec, text="", source="")


# ---- the grid on the same patients, paired with the current spec -------------------------------------------


@pytest.fixture(scope="module")
def ewoc_grid():
    """blrm_ewoc on KN5601 at four EWOC limits (0.25 is the spec's own), 60 trials, chunks of 20."""
    return calibrate(KN5601, kn5601_scenarios(), {EWOC: [0.15, 0.25, 0.35, 0.45]}, designs=("blrm_ewoc",),
                     n_trials=60, seed=3, chunk_size=20)


def test_the_reference_setting_reproduces_simulate_exactly(ewoc_grid):
    plan = SimulationPlan(KN5601, kn5601_scenarios(), ("blrm_ewoc",), n_trials=60, seed=3, chunk_size=20)
    alone = simulate(plan)
    pd.testing.assert_frame_equal(ewoc_grid.results["current"].trials, alone.trials)
    mine = ewoc_grid.summary[(ewoc_grid.summary["setting"] == "current")
                             & ewoc_grid.summary["quantity"].isin(QUANTITIES)].reset_index(drop=True)
    assert len(mine) == len(alone.summary)
    for column in ("scenario", "design", "quantity", "level", "value", "mcse", "trials"):
        assert mine[column].tolist() == alone.summary[column].tolist(), column


def test_every_setting_runs_on_the_same_patients(ewoc_grid):
    """Common random numbers: the trials are numbered alike, and where every design agrees (the first cohort:
    3 patients at level 1, whatever the limit) the DLTs are the same patients'."""
    frames = {label: result.trials for label, result in ewoc_grid.results.items()}
    for frame in frames.values():
        assert frame["trial"].tolist() == frames["current"]["trial"].tolist()
    strict, loose = frames["max_overdose_probability=0.15"], frames["max_overdose_probability=0.45"]
    assert (strict["n_patients_level_1"] >= 3).all() and (loose["n_patients_level_1"] >= 3).all()
    first = (strict["n_patients_level_1"] == 3) & (loose["n_patients_level_1"] == 3)
    assert first.sum() > 10
    np.testing.assert_array_equal(strict.loc[first, "n_dlt_level_1"], loose.loc[first, "n_dlt_level_1"])


def test_the_paired_differences_of_the_reference_from_itself_are_exactly_zero(ewoc_grid):
    same = ewoc_grid.setting("max_overdose_probability=0.25")
    assert same.same_as_current and same.index == 2
    assert ewoc_grid.results[same.label] is ewoc_grid.results["current"]  # not simulated again
    summary = ewoc_grid.summary
    for label in ("current", same.label):
        rows = summary[summary["setting"] == label]
        assert len(rows) == len(summary) / 5
        assert (rows["difference"] == 0).all() and (rows["mcse_paired"] == 0).all()
    other = summary[summary["setting"] == "max_overdose_probability=0.45"]
    assert (other["difference"] != 0).any() and (other["mcse_paired"] > 0).any()
    current = summary[summary["setting"] == "current"].set_index(["scenario", "quantity", "level"])
    loose = other.set_index(["scenario", "quantity", "level"])
    np.testing.assert_allclose(loose["value"] - current["value"], loose["difference"], atol=1e-12)


def test_loosening_ewoc_never_reduces_the_patients_at_the_top_level_when_every_level_is_safe(ewoc_grid):
    """A higher EWOC limit admits every level a lower one admits: where all levels are safe it reaches the top
    at least as often, and (with the same patients) never treats fewer patients there on average."""
    summary = ewoc_grid.summary
    rows = summary[(summary["scenario"] == "safe") & (summary["quantity"] == "patients") & (summary["level"] == 4)]
    top = dict(zip(rows["setting"], rows["value"], strict=True))
    limits = [0.15, 0.25, 0.35, 0.45]
    series = [top[f"max_overdose_probability={limit}"] for limit in limits]
    assert series == sorted(series) and series[-1] > series[0]
    assert top["current"] == top["max_overdose_probability=0.25"]
    above = summary[(summary["scenario"] == "safe") & (summary["quantity"] == "selected above the true MTD")]
    assert (above["value"] == 0).all()  # every level is safe: nothing is above the MTD


def test_the_tables_the_trade_off_and_the_figure(ewoc_grid):
    table = ewoc_grid.table("toxic at the top")
    assert list(table.columns) == ["", "#0", "#1", "#2", "#3", "#4"]
    assert "selected correctly" in table[""].tolist() and table.iloc[0, 1].endswith(")")
    differences = ewoc_grid.differences("toxic at the top")
    assert list(differences.columns) == ["", "#1", "#2", "#3", "#4"]
    tradeoff = ewoc_grid.tradeoff_table("safe")
    assert tradeoff["setting"].tolist()[0] == "current" and tradeoff["correct: vs #0"].iloc[0] == ""
    text = ewoc_grid.text()
    assert "#2: max_overdose_probability=0.25 (= the current spec's design)" in text and "== toxic at the top ==" in text
    assert ewoc_grid.correct == {"safe": "selected a safe, efficacious dose",
                                 "toxic at the top": "selected a safe, efficacious dose"}
    correct = ewoc_grid.summary[ewoc_grid.summary["quantity"] == CORRECT_SELECTION]
    assert len(correct) == 5 * 2 and correct["value"].between(0, 1).all()
    import matplotlib.pyplot as plt

    figure = ewoc_grid.tradeoff_figure()
    try:
        assert len(figure.axes) == 2 and figure.axes[0].get_title() == "safe"
    finally:
        plt.close(figure)


def test_a_checkpoint_resumes_with_identical_results(tmp_path):
    scenarios = kn5601_scenarios()
    arguments = dict(designs=("blrm_ewoc",), n_trials=40, seed=8, chunk_size=20, checkpoint=tmp_path / "chunks")
    first = calibrate(KN5601, scenarios, {EWOC: [0.35]}, **arguments)
    folders = sorted(p.name for p in (tmp_path / "chunks").iterdir())
    assert folders == sorted(f"setting-{s.spec.sha256[:12]}-plan-{first.results[s.label].plan.fingerprint[:12]}"
                             for s in first.settings)
    again = calibrate(KN5601, scenarios, {EWOC: [0.35]}, **arguments)
    assert first.chunks_resumed == 0 and again.chunks_resumed == 2 * 2 * 2  # settings x scenarios x chunks
    pd.testing.assert_frame_equal(again.summary, first.summary)
    for label, result in first.results.items():
        pd.testing.assert_frame_equal(again.results[label].trials, result.trials)
    other_seed = calibrate(KN5601, scenarios, {EWOC: [0.35]}, **{**arguments, "seed": 9})  # its own chunks, beside
    assert other_seed.chunks_resumed == 0 and len(list((tmp_path / "chunks").iterdir())) == 4


def test_workers_do_not_change_the_numbers(ewoc_grid):
    parallel = calibrate(KN5601, kn5601_scenarios(), {EWOC: [0.45]}, designs=("blrm_ewoc",), n_trials=60, seed=3,
                         chunk_size=20, workers=2)
    for label in ("current", "max_overdose_probability=0.45"):
        mine = parallel.summary[parallel.summary["setting"] == label].drop(columns="index").reset_index(drop=True)
        serial = ewoc_grid.summary[ewoc_grid.summary["setting"] == label].drop(columns="index").reset_index(drop=True)
        pd.testing.assert_frame_equal(mine, serial)


# ---- which keys, which values --------------------------------------------------------------------------


@pytest.mark.parametrize("key", ["escalation.group_size", "escalation.sentinel_patients", "escalation.max_patients",
                                 "escalation.allow_skipping", "dlt.intervals.edges", "dosing.levels",
                                 "decision.max_overdose_probabilty", "model.crs.prior.sd_log_b"])
def test_a_key_that_is_not_calibratable_is_refused_naming_it(key):
    with pytest.raises(CalibrationError) as error:
        calibratable_key(key)
    message = str(error.value)
    assert message.startswith(f"{key}: not calibratable") and "decision.max_overdose_probability" in message
    assert "\n" not in message


def test_the_calibratable_keys_and_the_values_of_a_vary():
    assert calibratable_key("model.blrm.p_exchangeable.AXA-NK02").borrowing
    assert parse_vary("decision.loss.losses=[1, 0, 1, 2],[1,0,2,2]") == ("decision.loss.losses",
                                                                          [[1, 0, 1, 2], [1, 0, 2, 2]])
    assert parse_vary("model.blrm.heterogeneity=moderate,\"large\"") == ("model.blrm.heterogeneity",
                                                                          ["moderate", "large"])
    assert parse_vary(f"{EWOC}=0.2, 0.3") == (EWOC, [0.2, 0.3])
    for bad in (EWOC, f"{EWOC}=", f"{EWOC}=0.2,(0.3)"):
        with pytest.raises(CalibrationError):
            parse_vary(bad)
    with pytest.raises(CalibrationError, match="given twice"):
        calibration_grid(KN5601, {EWOC: [0.2, 0.2]})
    with pytest.raises(lb.LupusBayesError, match="max_overdose_probability"):  # the spec refuses a probability of 1.5
        calibration_grid(KN5601, {EWOC: [1.5]})


def test_a_grid_no_simulated_design_reads_is_refused_before_any_work():
    with pytest.raises(CalibrationError, match="read only by boin"):
        calibrate(KN5601, kn5601_scenarios(), {"decision.boin.target": [0.2]}, designs=("blrm_ewoc",), n_trials=5,
                  seed=1)
    with pytest.raises(CalibrationError, match="--codata"):
        calibrate(KN5601, kn5601_scenarios(), {"model.blrm.p_exchangeable.KN5601": [0.8]}, designs=("blrm_ewoc",),
                  n_trials=5, seed=1)


@pytest.mark.parametrize("changes", [{EWOC: 0.3}, {"model.blrm.prior.sd_log_b": 0.5},
                                     {"model.blrm.p_exchangeable.AXA-NK02": 0.8},
                                     {"model.blrm.heterogeneity.median_tau_log_b": 0.5},
                                     {"model.blrm.heterogeneity": "moderate"}, {"decision.loss.losses": [1, 0, 2, 3]},
                                     {"model.blrm.nex_prior.sd_log_b": 2.0},
                                     {"decision.efficacy.insufficient_probability": 0.6, "decision.boin.target": 0.2}],
                         ids=lambda changes: ",".join(changes))
def test_a_setting_is_the_spec_with_only_its_keys_changed_and_its_comments_kept(changes):
    text = setting_text(AXA, changes)
    assert not text.startswith("# written")  # edited in place: comments kept
    assert text.count("# calibrated") == len(changes)
    expected = tomllib.loads(AXA.text)
    for key, value in changes.items():
        node = expected
        *tables, name = key.split(".")
        for table in tables:
            if isinstance(node.get(table), str):  # a heterogeneity preset becomes its table
                node[table] = {"median_tau_log_a": 0.5, "median_tau_log_b": 0.25}
            node = node.setdefault(table, {})
        node[name] = value
    assert tomllib.loads(text) == expected
    lb.parse_spec(text)


def test_the_toml_writer_round_trips_both_shipped_specs():
    for spec in (KN5601, AXA):
        data = tomllib.loads(spec.text)
        again = lb.parse_spec(dump_toml(data), source=spec.source)
        assert tomllib.loads(dump_toml(data)) == data
        assert again.to_dict() == spec.to_dict() | {"sha256": again.sha256}
        assert design_only(again) == design_only(spec)


# ---- the command line -----------------------------------------------------------------------------------------


def test_a_key_that_is_not_calibratable_is_one_line_exit_2_and_no_output(tmp_path, capsys):
    out = tmp_path / "calib"
    code = main(["calibrate", "axa_nk02", "--designs", "boin", "--vary", "escalation.group_size=3,6", "--n-trials",
                 "10", "--seed", "1", "--out", str(out)])
    error = capsys.readouterr().err
    assert code == 2 and error.count("\n") == 1 and not out.exists()
    assert "escalation.group_size: not calibratable" in error and "decision.boin." in error


def test_the_command_writes_its_files_and_refuses_an_existing_folder(tmp_path, capsys):
    out = tmp_path / "calib"
    arguments = ["calibrate", "axa_nk02", "--designs", "boin,3+3", "--vary", "decision.boin.target=0.15,0.2",
                 "--vary", "decision.boin.cutoff_eliminate=0.9", "--n-trials", "40", "--seed", "2", "--out", str(out),
                 "--no-progress"]
    assert main(arguments) == 0
    printed = capsys.readouterr().out
    assert "#1: target=0.15, cutoff_eliminate=0.9" in printed and "== all toxic ==" in printed
    assert {p.name for p in out.iterdir()} == {"calibration.csv", "calibration.txt", "tradeoff.png", "plan.json"}
    table = pd.read_csv(out / "calibration.csv")
    assert list(table.columns[:4]) == ["setting", "index", "decision.boin.target", "decision.boin.cutoff_eliminate"]
    assert set(table["design"]) == {"boin", "3+3"} and set(table["index"]) == {0, 1, 2}
    current = table[table["setting"] == "current"]
    assert (current["decision.boin.target"] == 0.15).all() and (current["decision.boin.cutoff_eliminate"] == 0.95).all()
    three = table[table["design"] == "3+3"]
    assert (three["difference"] == 0).all()  # the 3+3 reads no BOIN setting
    plan = json.loads((out / "plan.json").read_text())
    assert plan["grid"] == {"decision.boin.target": [0.15, 0.2], "decision.boin.cutoff_eliminate": [0.9]}
    assert plan["seed"] == 2 and plan["n_trials"] == 40 and len(plan["settings"]) == 3
    assert plan["spec_sha256"] == AXA.sha256 and plan["command"].startswith("lupusbayes ")
    assert (out / "tradeoff.png").read_bytes()[:4] == b"\x89PNG"
    assert "-- 3+3: operating characteristics per setting" in (out / "calibration.txt").read_text()
    before = (out / "calibration.csv").read_text()
    assert main(arguments) == 2 and "exists" in capsys.readouterr().err
    assert (out / "calibration.csv").read_text() == before
    assert main([*arguments, "--overwrite", "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["plan"]["grid"] == plan["grid"] and len(payload["calibration"]) == len(table)


def test_write_spec_writes_the_chosen_setting_which_differs_only_in_its_key(tmp_path, capsys):
    written = tmp_path / "calibrated.toml"
    base = ["calibrate", "axa_nk02", "--designs", "boin", "--vary", "decision.boin.target=0.15,0.2", "--n-trials", "20",
            "--seed", "1", "--no-progress"]
    assert main([*base, "--out", str(tmp_path / "calib"), "--write-spec", str(written), "--choose", "2"]) == 0
    assert "written: " + str(written) in capsys.readouterr().out
    text = written.read_text()
    assert text.startswith("# Calibrated with lupusbayes") and "decision.boin.target = 0.15, 0.2" in text
    chosen = lb.load_spec(written)
    assert chosen.decision.boin.target == 0.2
    restored = replace(chosen, decision=replace(chosen.decision, boin=replace(chosen.decision.boin, target=0.15)))
    assert design_only(restored) == design_only(AXA)
    other = tmp_path / "other"
    # an existing file is refused before any work; --write-spec needs --choose; an unknown setting is named
    assert main([*base, "--out", str(other), "--write-spec", str(written), "--choose", "1"]) == 2
    assert "exists" in capsys.readouterr().err and not other.exists()
    assert main([*base, "--out", str(other), "--write-spec", str(tmp_path / "x.toml")]) == 2
    assert "--choose" in capsys.readouterr().err
    assert main([*base, "--out", str(other), "--write-spec", str(tmp_path / "x.toml"), "--choose", "target=0.3"]) == 2
    error = capsys.readouterr().err
    assert "no setting 'target=0.3'" in error and "#2 target=0.2" in error
    assert not (tmp_path / "x.toml").exists() and not other.exists()
    assert main([*base, "--out", str(other), "--write-spec", str(tmp_path / "x.toml"), "--choose", "current"]) == 0
    assert design_only(lb.load_spec(tmp_path / "x.toml")) == design_only(AXA)


def test_with_codata_a_prior_setting_derives_its_own_priors_and_the_others_reuse_the_specs(tmp_path, capsys,
                                                                                           mock_sampling):
    out = tmp_path / "calib"
    assert main(["calibrate", "axa_nk02", "--codata", "kn5601", "--designs", "blrm_ewoc", "--vary",
                 "model.blrm.prior.sd_log_b=0.5,0.8", "--vary", f"{EWOC}=0.3", "--n-trials", "10", "--seed", "1",
                 "--out", str(out), "--no-progress", "--checkpoint", str(tmp_path / "chunks")]) == 0
    capsys.readouterr()
    settings = json.loads((out / "plan.json").read_text())["settings"]
    priors = [json.dumps(setting["priors"]["toxicity"], sort_keys=True) for setting in settings]
    assert priors[0] == priors[2] != priors[1]  # #2 keeps the spec's sd_log_b (0.8), #1 has 0.5
    assert "KN5601" in settings[0]["priors"]["source"]
    assert len(list((tmp_path / "chunks").iterdir())) == 3


def test_the_help_lists_the_calibratable_keys_and_runnable_examples(capsys):
    with pytest.raises(SystemExit):
        main(["calibrate", "--help"])
    shown = capsys.readouterr().out
    assert "calibratable keys:" in shown and "model.blrm.prior.{mean_log_a,sd_log_a" in shown
    assert "--write-spec" in shown and "lupusbayes calibrate axa_nk02 --codata kn5601 --vary" in shown
    assert Path(__file__).parents[1].joinpath("docs", "calibration.md").exists()


def test_the_module_example_runs():
    import doctest

    from lupusbayes import calibration

    assert doctest.testmod(calibration).failed == 0
