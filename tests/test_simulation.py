"""The trial simulator: scenarios, the engine against the vectorised reference designs, the timing
rules, metrics, seeds (1 or 2 processes, Dask), checkpoints, and the command line."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import axa_text_before_calibration, spec_text_with

import lupusbayes as lb
from lupusbayes.cli import main
from lupusbayes.decisions import design_for
from lupusbayes.decisions.boin import boin_boundaries
from lupusbayes.errors import SpecError
from lupusbayes.simulation import (
    CheckpointError,
    PosteriorBank,
    Scenario,
    SimulationPlan,
    TrialResults,
    draw_latent_patients,
    load_scenarios,
    operating_characteristics,
    parse_scenarios,
    simulate,
    simulate_trials,
)
from lupusbayes.simulation import runner
from lupusbayes.simulation.rule_based import simulate_boin, simulate_three_plus_three

FIVE_LEVELS = """
[trial]
id = "SIM-5"
title = "five dose levels, cohorts of three, 30 patients"

[dosing]
unit = "cells/kg"
levels = [1e6, 2e6, 4e6, 8e6, 1.6e7]
reference_dose = 4e6

[dlt]
window_days = 28
definition = ["CRS grade >= 3"]
crs_grade_at_least = 3

[escalation]
group_size = 3
max_patients = 30

[decision.boin]
target = 0.3
"""
SIM5 = lb.parse_spec(FIVE_LEVELS)
AXA = lb.load_spec("axa_nk02")
#: AXA-NK02 before its calibration: EWOC keeps the top dose closed after 0/3 and 0/3 (fixed timelines below)
AXA_BEFORE_CALIBRATION = lb.parse_spec(axa_text_before_calibration(AXA.text), source="axa_nk02 before calibration")


def dlt_only_scenario(p_true, name="reference") -> Scenario:
    """A truth given by P(DLT) alone (no CRS), with a patient every 7 days."""
    p_true = np.asarray(p_true, dtype=float)
    return Scenario(name, "", np.zeros((p_true.size, 1)), p_true, np.zeros(p_true.size), 7.0, None)


# ---- scenarios ----------------------------------------------------------------------------------


def test_the_shipped_scenarios_load_and_combine_crs_and_other_dlts():
    scenarios = load_scenarios("axa_nk02", AXA)
    assert len(scenarios.scenarios) == 4 and scenarios.efficacious_response == 0.5
    first = scenarios.scenarios[0]
    expected = 1 - (1 - first.p_crs_at_least[:, 2]) * (1 - first.p_other_dlt)  # CRS >= 3 is AXA's DLT
    np.testing.assert_allclose(first.p_dlt(AXA), expected)
    assert first.accrual_patients_per_month == 0.3 and first.accrual_gap_days is None and len(scenarios.sha256) == 64


GOOD = """
[simulation]
accrual_gap_days = 14
[[scenario]]
name = "one"
p_crs_at_least = [[0.1, 0.01, 0.005], [0.2, 0.02, 0.01], [0.3, 0.03, 0.02]]
p_other_dlt = [0.0, 0.0, 0.0]
p_response = [0.2, 0.4, 0.6]
"""


@pytest.mark.parametrize(("change", "words"), [
    (("p_response = [0.2, 0.4, 0.6]", "p_response = [0.2, 0.4]"), ["p_response", "one value per dose level (3; got 2)"]),
    (("p_other_dlt = [0.0, 0.0, 0.0]", "p_other_dlt = [0.0, 1.5, 0.0]"), ["p_other_dlt", "between 0 and 1"]),
    (("[0.1, 0.01, 0.005]", "[0.01, 0.1, 0.005]"), ["p_crs_at_least", "do not increase with the grade"]),
    (("[0.2, 0.02, 0.01]", "[0.2]"), ["p_crs_at_least", "row 2"]),
    (("[[0.1, 0.01, 0.005], [0.2, 0.02, 0.01], [0.3, 0.03, 0.02]]", "[[0.1, 0.01], [0.2, 0.02], [0.3, 0.03]]"),
     ["p_crs_at_least", "a DLT is CRS >= 3", "up to at least grade 3"]),
    (('name = "one"', 'name = "one"\ndescription = "a\\u0007b"'), ["description", "printable"]),
    (("accrual_gap_days = 14", ""), ["accrual_gap_days", "exactly one"]),
    (('name = "one"', 'name = "one"\ncolour = "red"'), ["colour"]),
    (("[simulation]", "[simulation]\nefficacious_response = 2"), ["efficacious_response"]),
    (("[0.3, 0.03, 0.02]", "[nan, 0.03, 0.02]"), ["p_crs_at_least", "finite"]),
    (("p_other_dlt = [0.0, 0.0, 0.0]", "p_other_dlt = [0.0, inf, 0.0]"), ["p_other_dlt", "finite"]),
    (('name = "one"', 'name = "  "'), ["name", "printable"]),
    (('name = "one"', 'name = 5'), ["name", "text"]),
    (("[simulation]", "[simulation]\nmax_patients = 2.5"), ["max_patients", "whole number"]),
])
def test_bad_scenario_files_get_one_line_naming_the_key(change, words):
    with pytest.raises(SpecError) as caught:
        parse_scenarios(GOOD.replace(*change), AXA, source="my.toml")
    message = str(caught.value)
    assert "\n" not in message and "my.toml" in message
    for word in words:
        assert word in message


def test_duplicate_scenario_names_are_refused():
    second = GOOD.split("[[scenario]]")[1]
    with pytest.raises(SpecError, match="distinct"):
        parse_scenarios(GOOD + "[[scenario]]" + second, AXA, source="my.toml")


# ---- the engine replays the decision rules: identical to the vectorised reference designs ----------


@pytest.mark.parametrize("p_true", [[0.05, 0.15, 0.30, 0.45, 0.60], [0.50, 0.60, 0.70, 0.80, 0.90],
                                    [0.02, 0.05, 0.08, 0.12, 0.20]])
def test_boin_through_the_engine_equals_the_vectorised_get_oc_trial_by_trial(p_true):
    latent = draw_latent_patients(np.random.SeedSequence(11), 300, 30)
    engine = simulate_trials(SIM5, design_for(SIM5, "boin"), dlt_only_scenario(p_true), latent, vectorised=False)
    reference = simulate_boin(latent.toxicity, p_true, boundaries=boin_boundaries(0.3, max_patients=30), cohort_size=3,
                              n_cohorts=10)
    np.testing.assert_array_equal(engine.selected_level, reference.selected_level)
    np.testing.assert_array_equal(engine.n_patients, reference.n_patients)
    np.testing.assert_array_equal(engine.n_dlt, reference.n_dlt)


@pytest.mark.parametrize("p_true", [[0.05, 0.10, 0.20, 0.35, 0.50], [0.40, 0.50, 0.60, 0.70, 0.80],
                                    [0.0, 0.0, 0.0, 0.0, 0.0]])
def test_the_three_plus_three_through_the_engine_equals_the_vectorised_one_trial_by_trial(p_true):
    latent = draw_latent_patients(np.random.SeedSequence(12), 300, 30)
    engine = simulate_trials(SIM5, design_for(SIM5, "3+3"), dlt_only_scenario(p_true), latent, vectorised=False)
    reference = simulate_three_plus_three(latent.toxicity, p_true, max_patients=30)
    np.testing.assert_array_equal(engine.selected_level, reference.selected_level)
    np.testing.assert_array_equal(engine.n_patients, reference.n_patients)
    np.testing.assert_array_equal(engine.n_dlt, reference.n_dlt)


@pytest.mark.parametrize("design", ["boin", "3+3"])
@pytest.mark.parametrize("spec", [SIM5, AXA], ids=["five levels", "AXA-NK02"])
def test_the_vectorised_fast_path_gives_the_engines_results_field_by_field(design, spec):
    scenarios = [dlt_only_scenario(p[: len(spec.dosing.levels)]) for p in
                 ([0.05, 0.15, 0.30, 0.45, 0.60], [0.50, 0.60, 0.70, 0.80, 0.90], [0.0, 0.05, 0.1, 0.2, 0.3])]
    scenarios += list(load_scenarios("axa_nk02", AXA).scenarios) if spec is AXA else []
    latent = draw_latent_patients(np.random.SeedSequence(21), 200, spec.escalation.max_patients)
    for scenario in scenarios:
        engine = simulate_trials(spec, design_for(spec, design), scenario, latent, vectorised=False).to_frame()
        fast = simulate_trials(spec, design_for(spec, design), scenario, latent).to_frame()
        pd.testing.assert_frame_equal(fast, engine, check_dtype=False)


def test_the_lupusbayes_design_keeps_the_sentinel_and_group_windows():
    """No DLT, a patient every 14 days: sentinel day 0; its group on day 31 (the sentinel's 28-day window and
    its month-1 response, which the efficacy-driven rule reads); the next sentinel on day 59 (group window);
    its group on day 90; with the prior before calibration EWOC keeps the top dose closed, so a second group at level 2
    on day 118 (no sentinel at a dose already given). The final analysis is 3 months (the efficacy rule's
    final month) later."""
    safe = Scenario("safe", "", np.zeros((3, 1)), np.zeros(3), np.full(3, 0.5), 14.0, None)
    latent = draw_latent_patients(np.random.SeedSequence(3), 50, 9)
    spec = AXA_BEFORE_CALIBRATION
    results = simulate_trials(spec, design_for(spec), safe, latent)
    assert np.all(results.n_patients.sum(axis=1) == 9)
    np.testing.assert_allclose(results.duration_days, 118 + 3 * 30.4375)
    # without timing rules a cohort is dosed as patients arrive (days 0, 14, 28) and the next decision waits
    # for its DLT window: cohorts on days 0-28, 56-70, 98-112; the last is DLT-evaluable on day 140
    blrm = simulate_trials(AXA, design_for(AXA, "blrm_ewoc"), safe, latent)
    np.testing.assert_allclose(blrm.duration_days, 140.0)


def test_a_design_whose_posteriors_forbid_every_dose_stops_with_no_selection():
    toxic = Scenario("toxic", "", np.zeros((3, 1)), np.full(3, 0.95), np.zeros(3), 14.0, None)
    latent = draw_latent_patients(np.random.SeedSequence(4), 100, 9)
    results = simulate_trials(AXA, design_for(AXA, "blrm_ewoc"), toxic, latent)
    assert (results.selected_level == -1).mean() > 0.9
    assert np.all(results.n_patients[:, 1:].sum(axis=1) <= results.n_patients[:, 0])  # never escalated past safety


def test_batched_posteriors_do_not_depend_on_the_batch():
    keys = [(3, 3, 0, 0, 1, 0), (3, 0, 0, 1, 0, 0), (6, 3, 3, 0, 0, 2)]
    together = PosteriorBank.for_spec(AXA).toxicity
    together.prepare(keys)
    for key in keys:
        alone = PosteriorBank.for_spec(AXA).toxicity
        alone.prepare([key])
        np.testing.assert_array_equal(alone.cache[key].means, together.cache[key].means)
        for threshold, values in together.cache[key].at_least.items():
            np.testing.assert_array_equal(alone.cache[key].at_least[threshold], values)


# ---- metrics --------------------------------------------------------------------------------------


def test_operating_characteristics_by_hand():
    scenario = Scenario("s", "", np.zeros((3, 1)), np.array([0.05, 0.1, 0.4]), np.array([0.2, 0.6, 0.7]), 14.0, None)
    results = TrialResults(
        "d", "s", np.arange(4), np.array([1, 1, 2, -1]),
        np.array(["x", "x", "x", "no level is admissible"], dtype=object),
        np.array([[3, 6, 0], [3, 3, 3], [3, 3, 3], [3, 0, 0]]), np.array([[0, 1, 0], [0, 0, 1], [0, 0, 2], [2, 0, 0]]),
        np.zeros((4, 3), dtype=int), np.full(4, 30.4375 * 6), np.full(4, 5), np.zeros(4, dtype=bool))
    table = operating_characteristics(results, scenario, AXA, efficacious_response=0.5).set_index(["quantity", "level"])
    assert table.loc[("selected", 2), "value"] == 0.5 and table.loc[("no dose selected", 0), "value"] == 0.25
    assert table.loc[("selected a safe, efficacious dose", 0), "value"] == 0.5  # level 2: DLT 0.1 < 0.2, response 0.6
    assert table.loc[("selected above the true MTD", 0), "value"] == 0.25  # level 3: DLT 0.4 >= 0.2; the MTD is 2
    assert table.loc[("patients above the true MTD", 0), "value"] == 1.5
    assert table.loc[("stopped for toxicity", 0), "value"] == 0.25  # the last trial: no level admissible
    assert table.loc[("DLTs", 0), "value"] == 1.5 and table.loc[("duration (months)", 0), "value"] == 6.0
    np.testing.assert_allclose(table.loc[("selected", 2), "mcse"], np.sqrt(0.25 / 4))
    np.testing.assert_allclose(table.loc[("patients", 0), "mcse"], np.std([9, 9, 9, 3], ddof=1) / 2)


# ---- seeds, processes, Dask, checkpoints ----------------------------------------------------------------


@pytest.fixture(scope="module")
def plan() -> SimulationPlan:
    return SimulationPlan(AXA, load_scenarios("axa_nk02", AXA), ("lupusbayes", "boin"), n_trials=60, seed=5,
                          chunk_size=20)


@pytest.fixture(scope="module")
def serial(plan):
    return simulate(plan)


def test_the_same_seed_gives_the_same_trials_and_another_seed_others(plan, serial):
    again = simulate(plan)
    pd.testing.assert_frame_equal(again.trials, serial.trials)
    other = simulate(SimulationPlan(plan.spec, plan.scenarios, plan.designs, n_trials=60, seed=6, chunk_size=20))
    assert not other.trials.equals(serial.trials)
    assert set(serial.trials["design"]) == {"lupusbayes", "boin"} and len(serial.trials) == 60 * 2 * 4


@pytest.mark.parametrize("workers", [2, 4])
def test_two_or_four_processes_give_bit_identical_results(plan, serial, workers):
    parallel = simulate(plan, workers=workers)
    pd.testing.assert_frame_equal(parallel.trials, serial.trials)
    pd.testing.assert_frame_equal(parallel.summary, serial.summary)


def test_a_dask_cluster_gives_bit_identical_results(plan, serial):
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        on_dask = simulate(plan, dask_client=client)
    pd.testing.assert_frame_equal(on_dask.trials, serial.trials)


def test_a_checkpoint_resumes_and_refuses_another_plan_or_a_foreign_chunk(plan, serial, tmp_path):
    folder = tmp_path / "chunks"
    first = simulate(plan, checkpoint=folder)
    chunk_files = sorted(folder.glob("scenario-*.csv"))
    assert len(chunk_files) == 12 and (folder / "manifest.json").exists()
    chunk_files[3].unlink()  # as if interrupted before this chunk
    resumed = simulate(plan, checkpoint=folder)
    assert resumed.chunks_resumed == 11
    pd.testing.assert_frame_equal(resumed.trials, serial.trials)
    pd.testing.assert_frame_equal(first.trials, serial.trials)
    other = SimulationPlan(plan.spec, plan.scenarios, plan.designs, n_trials=60, seed=99, chunk_size=20)
    with pytest.raises(CheckpointError, match="another simulation plan.*seed"):
        simulate(other, checkpoint=folder)
    lines = chunk_files[0].read_text().splitlines()
    lines[2] = lines[2].replace(",0,", ",999,", 1)  # a trial number that is not this chunk's
    chunk_files[0].write_text("\n".join(lines) + "\n")
    with pytest.raises(CheckpointError, match="not a chunk of this plan: its contents do not match"):
        simulate(plan, checkpoint=folder)
    chunk_files[0].unlink()
    simulate(plan, checkpoint=folder)  # recomputed
    # a chunk copied in from a run with another seed (the same file name, other numbers)
    elsewhere = tmp_path / "other-seed"
    simulate(SimulationPlan(plan.spec, plan.scenarios, plan.designs, n_trials=plan.n_trials, seed=99,
                            chunk_size=plan.chunk_size), checkpoint=elsewhere)
    original = chunk_files[1].read_text()
    chunk_files[1].write_text((elsewhere / chunk_files[1].name).read_text())
    with pytest.raises(CheckpointError, match="computed for another plan \\(seed 99\\)"):
        simulate(plan, checkpoint=folder)
    chunk_files[1].write_text(original)
    store = runner._Checkpoint(folder, plan)
    chunk = plan.chunks()[1]
    for column, value, problem in (("n_dlt_level_1", None, "DLTs or responders"),
                                   ("n_decisions", 4.5, "not a whole number")):
        frame = pd.read_csv(io.StringIO(original.partition("\n")[2]))
        frame[column] = frame[column].astype(float)
        frame.loc[0, column] = frame.loc[0, "n_patients_level_1"] + 1 if value is None else value
        body = frame.to_csv(index=False)  # a forged chunk with a recomputed hash: the values are still checked
        chunk_files[1].write_text(store._provenance(chunk, body) + "\n" + body)
        with pytest.raises(CheckpointError, match=problem):
            simulate(plan, checkpoint=folder)
    chunk_files[1].write_text(original)
    not_ours = tmp_path / "busy"
    not_ours.mkdir()
    (not_ours / "notes.txt").write_text("mine")
    with pytest.raises(CheckpointError, match="not empty"):
        simulate(plan, checkpoint=not_ours)


def test_plans_are_checked():
    scenarios = load_scenarios("axa_nk02", AXA)
    for bad in ({"designs": ("efftox",)}, {"designs": ()}, {"n_trials": 0}, {"chunk_size": 0}, {"seed": -1}):
        arguments = {"designs": ("boin",), "n_trials": 10, "seed": 1, **bad}
        with pytest.raises(ValueError):
            SimulationPlan(AXA, scenarios, **arguments)


# ---- command line ---------------------------------------------------------------------------------------


def test_the_command_writes_the_tables_and_the_figure_and_refuses_to_overwrite(tmp_path, capsys, mock_sampling):
    out = tmp_path / "oc"
    assert main(["simulate", "axa_nk02", "--n-trials", "12", "--seed", "1", "--designs", "lupusbayes,3+3",
                 "--codata", "kn5601", "--out", str(out), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "== target in the middle ==" in printed and "selected: level 2" in printed and "lupusbayes" in printed
    assert {p.name for p in out.iterdir()} == {"trials.csv", "operating_characteristics.csv",
                                                "operating_characteristics.txt", "operating_characteristics.png",
                                                "paired_differences.csv", "plan.json"}
    assert "minus lupusbayes, on the same simulated patients (paired MCSE)" in printed
    plan = json.loads((out / "plan.json").read_text())
    assert plan["seed"] == 1 and plan["n_trials"] == 12 and plan["designs"] == ["lupusbayes", "3+3"]
    assert "KN5601" in plan["priors"]["source"] and len(plan["priors"]["toxicity"]["weights"]) >= 2
    assert len(pd.read_csv(out / "trials.csv")) == 12 * 2 * 4
    assert (out / "operating_characteristics.png").read_bytes()[:4] == b"\x89PNG"
    assert main(["simulate", "axa_nk02", "--n-trials", "12", "--seed", "1", "--out", str(out)]) == 2
    assert "exists" in capsys.readouterr().err


def test_a_design_that_borrows_is_simulated_with_the_codata_it_borrows_from(tmp_path, capsys):
    out = tmp_path / "oc"
    assert main(["simulate", "axa_nk02", "--n-trials", "4", "--seed", "1", "--designs", "blrm_ewoc", "--out",
                 str(out)]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "--codata" in error and "hierarchy 'exnex'" in error and not out.exists()
    assert main(["simulate", "axa_nk02", "--n-trials", "4", "--seed", "1", "--designs", "boin,3+3", "--out",
                 str(out), "--no-progress"]) == 0  # the rule-based designs read no posterior


@pytest.mark.parametrize(("arguments", "words"), [
    (["--designs", "efftox"], ["unknown design efftox"]),
    (["--n-trials", "0"], ["--n-trials"]),
    (["--scenarios", "missing.toml"], ["missing.toml", "not found"]),
])
def test_bad_command_lines_get_one_line_and_exit_2(arguments, words, tmp_path, capsys):
    try:
        code = main(["simulate", "axa_nk02", "--seed", "1", "--out", str(tmp_path / "oc"), *arguments])
    except SystemExit as exited:  # argparse's own checks
        code = exited.code
    error = capsys.readouterr().err.strip()
    assert code == 2 and len(error.splitlines()) == 1
    for word in words:
        assert word in error
    assert not (tmp_path / "oc").exists()


def test_a_spec_without_shipped_scenarios_needs_a_file(tmp_path, capsys):
    spec = tmp_path / "sim5.toml"
    spec.write_text(FIVE_LEVELS)
    assert main(["simulate", str(spec), "--seed", "1", "--out", str(tmp_path / "oc")]) == 2
    assert "give --scenarios" in capsys.readouterr().err


def test_help_names_every_option(capsys):
    with pytest.raises(SystemExit) as exited:
        main(["simulate", "--help"])
    assert exited.value.code == 0
    text = capsys.readouterr().out
    for option in ("--scenarios", "--designs", "--n-trials", "--seed", "--workers", "--dask", "--checkpoint",
                   "--chunk-size"):
        assert option in text


def test_the_shipped_scenario_file_is_package_data():
    root = Path(lb.__file__).parent / "data" / "scenarios" / "axa_nk02.toml"
    assert root.exists()


def test_more_trials_extend_a_checkpointed_run(plan, tmp_path):
    folder = tmp_path / "chunks"
    shorter = SimulationPlan(plan.spec, plan.scenarios, plan.designs, n_trials=50, seed=plan.seed, chunk_size=20)
    simulate(shorter, checkpoint=folder)  # chunks 1-40 and a partial 41-50
    longer = simulate(plan, checkpoint=folder)  # 60 trials: 1-40 reused, 41-60 computed
    assert longer.chunks_resumed == 2 * 4
    pd.testing.assert_frame_equal(longer.trials, simulate(plan).trials)


def test_the_scenario_file_can_change_the_sample_size_and_the_windows(tmp_path):
    text = (Path(lb.__file__).parent / "data" / "scenarios" / "axa_nk02.toml").read_text()
    shorter = text.replace("accrual_patients_per_month = 0.3", "accrual_gap_days = 14\nmax_patients = 6\n"
                           "sentinel_safety_days = 14\ngroup_safety_days_before_next = 14", 1)
    spec = AXA_BEFORE_CALIBRATION  # with the calibrated spec a DLT in the first patient may stop the trial at once
    scenarios = parse_scenarios(shorter, spec, source="shorter.toml")
    assert scenarios.applied_to(spec).escalation.max_patients == 6
    result = simulate(SimulationPlan(spec, scenarios, ("lupusbayes",), n_trials=20, seed=1))
    assert result.trials.filter(like="n_patients_level").sum(axis=1).max() == 6
    # sentinel day 0, group day 31 (its month-1 response, which the efficacy rule waits for), next sentinel day 45
    # (the 14-day group window), its group day 76; final analysis 3 months later
    safe = result.trials[result.trials["scenario"] == "shaped like KN5601"]
    assert (safe["duration_days"] >= 42 + 91.3).all() and (safe["duration_days"] < 112 + 91.3).all()
    with pytest.raises(SpecError, match="max_patients"):
        parse_scenarios(text.replace("accrual_patients_per_month = 0.3", "accrual_patients_per_month = 0.3\n"
                                     "max_patients = 0", 1), AXA,
                        source="bad.toml")


def test_the_extreme_posteriors_of_an_axa_trial_are_resolved_by_the_quadrature():
    """Every group count with no or only events (the posteriors most pushed to the grid's edge) passes the
    truncation check; scripts/benchmark_simulation.py checks all 5,005 reachable count states."""
    import itertools

    keys = [(*n, *y) for n in itertools.product(range(0, 10, 3), repeat=3) if sum(n) <= 9
            for y in itertools.product(*({0, count} for count in n))]
    bank = PosteriorBank.for_spec(AXA)
    bank.toxicity.prepare(keys)  # raises SimulationError if any posterior stays truncated
    bank.efficacy.prepare(keys)
    assert len(bank.toxicity.cache) == len(keys) == len(bank.efficacy.cache) > 50
    for posterior in (bank.toxicity.cache[keys[-1]], bank.efficacy.cache[keys[-1]]):
        assert np.all((posterior.means > 0) & (posterior.means < 1))


# ---- the MCMC fallback for a posterior the quadrature cannot resolve ------------------------------


def _unresolved(monkeypatch, keys, quantity="p_dlt"):
    """Make the quadrature report these count keys as unresolved on every grid (as a hard prior would)."""
    from lupusbayes.simulation.fast import FastPosteriors

    compute = FastPosteriors._compute

    def failing(self, n, y, **grid):
        out = compute(self, n, y, **grid)
        if self.quantity == quantity:
            rows = [FastPosteriors.key(n_row, y_row) in keys for n_row, y_row in zip(n, y, strict=True)]
            out["resolved"] = out["resolved"] & ~np.asarray(rows)
        return out

    monkeypatch.setattr(FastPosteriors, "_compute", failing)


@pytest.mark.mcmc
def test_an_unresolved_posterior_is_sampled_by_nuts_agrees_with_the_exact_one_and_is_reproducible(monkeypatch):
    from lupusbayes.simulation.fast import MCMC_FALLBACK_SOURCE

    unresolved, resolved = (3, 6, 0, 0, 2, 0), (3, 3, 0, 0, 1, 0)
    exact = PosteriorBank.for_spec(AXA).toxicity
    exact.prepare([unresolved])
    _unresolved(monkeypatch, {unresolved})
    bank = PosteriorBank.for_spec(AXA, fallback_seed=11)
    bank.toxicity.prepare([unresolved, resolved])
    sampled = bank.toxicity.cache[unresolved]
    assert sampled.from_mcmc and sampled.source == MCMC_FALLBACK_SOURCE and "gate passed" in sampled.notes[0]
    assert not bank.toxicity.cache[resolved].from_mcmc and bank.mcmc_fallbacks == 1
    truth = exact.cache[unresolved]
    for estimate, value in zip(sampled.mean("p_dlt"), truth.means, strict=True):
        assert estimate.error_kind == "mcse" and 0 < estimate.error < 0.01
        assert abs(estimate.value - value) < 4 * estimate.error + 2e-3
    for threshold in (0.1, 0.2):
        for estimate, value in zip(sampled.probability_at_least("p_dlt", threshold), truth.at_least[threshold],
                                   strict=True):
            assert abs(estimate.value - value) < 4 * estimate.error + 2e-3, (threshold, estimate, value)
    bank.toxicity.cache.clear()
    bank.toxicity.prepare([unresolved])  # the same seed and counts: the same draws
    np.testing.assert_array_equal(bank.toxicity.cache[unresolved].means, sampled.means)


@pytest.mark.mcmc
def test_decisions_from_the_fallback_are_counted_per_trial_and_said(monkeypatch, tmp_path, capsys):
    """The prior-only state (no patients yet) made unresolvable: every lupusbayes trial's first decision."""
    from lupusbayes.simulation.runner import clear_posterior_cache

    _unresolved(monkeypatch, {(0,) * 6})
    clear_posterior_cache()
    try:
        plan = SimulationPlan(AXA, load_scenarios("axa_nk02", AXA), ("lupusbayes", "boin"), n_trials=4, seed=2,
                              chunk_size=4)
        trials = simulate(plan, checkpoint=tmp_path / "chunks").trials
        by_design = trials.groupby("design")["n_mcmc_decisions"]
        assert by_design.min()["lupusbayes"] >= 1 and by_design.max()["boin"] == 0
        assert (trials["n_mcmc_decisions"] <= trials["n_decisions"]).all()
        again = simulate(plan, checkpoint=tmp_path / "chunks")  # read back from the checkpoint
        assert again.chunks_resumed == 4
        pd.testing.assert_frame_equal(again.trials, trials)
        out = tmp_path / "out"
        one_study = tmp_path / "axa_one_study.toml"  # no co-data: the prior-only state is the one made unresolvable
        one_study.write_text(AXA.text.replace('outcome = "dlt"\nhierarchy = "exnex"', 'outcome = "dlt"\nhierarchy = "none"'))
        assert main(["simulate", str(one_study), "--scenarios", "axa_nk02", "--n-trials", "2", "--designs",
                     "lupusbayes", "--seed", "2", "--out", str(out), "--no-progress"]) == 0
        assert "decisions in 8 trials were made from NUTS posteriors" in capsys.readouterr().out
        assert json.loads((out / "plan.json").read_text())["mcmc_fallback_decisions"] >= 8
    finally:
        clear_posterior_cache()


def test_without_the_fallback_or_when_it_fails_its_gate_the_simulation_stops_naming_the_counts(monkeypatch):
    from lupusbayes.errors import QuadratureError
    from lupusbayes.fitting.counts import CountModelSampler, CountPosteriorSample

    key = (3, 0, 0, 1, 0, 0)
    _unresolved(monkeypatch, {key})
    with pytest.raises(QuadratureError, match=r"\[3, 0, 0\] patients and \[1, 0, 0\] events.*fallback is off"):
        PosteriorBank.for_spec(AXA, mcmc_fallback=False).toxicity.prepare([key])

    def failed_gate(self, n_patients, n_events, thresholds, *, seed):
        zeros = np.zeros(3)
        return CountPosteriorSample(zeros, zeros, {}, {}, ("max R-hat 1.050 > 1.01",), 0, 0.9)

    monkeypatch.setattr(CountModelSampler, "sample", failed_gate)
    with pytest.raises(QuadratureError, match=r"\[3, 0, 0\] patients.*fallback failed the convergence gate "
                                              r"\(max R-hat 1.050 > 1.01\)"):
        PosteriorBank.for_spec(AXA).toxicity.prepare([key])


def test_a_checkpoint_claiming_more_fallback_decisions_than_decisions_is_refused(plan, tmp_path):
    folder = tmp_path / "chunks"
    simulate(plan, checkpoint=folder)
    chunk = sorted(folder.glob("scenario-*.csv"))[0]
    frame = pd.read_csv(chunk, skiprows=1)  # below the provenance line
    frame.loc[0, "n_mcmc_decisions"] = frame.loc[0, "n_decisions"] + 1
    body = frame.to_csv(index=False)  # forged with a recomputed hash: the values are still checked
    chunk.write_text(runner._Checkpoint(folder, plan)._provenance(plan.chunks()[0], body) + "\n" + body)
    with pytest.raises(CheckpointError, match="MCMC fallback"):
        simulate(plan, checkpoint=folder)


@pytest.mark.mcmc
def test_the_fallback_samples_a_mixture_prior_as_the_quadrature_integrates_it():
    from lupusbayes.fitting.counts import CountModelSampler
    from lupusbayes.models.exact import blrm_exact_posterior
    from lupusbayes.spec import BivariateNormalMixture, BivariateNormalPrior

    prior = BivariateNormalMixture((0.7, 0.3), (BivariateNormalPrior(-2.9, 0.0, 1.0, 0.7, 0.3),
                                                BivariateNormalPrior(-1.0, 0.5, 0.8, 0.5, -0.2)))
    doses, reference = np.asarray(AXA.dosing.levels, dtype=float), AXA.dosing.reference_dose
    n, y = np.array([3, 3, 3]), np.array([0, 1, 2])
    sample = CountModelSampler(doses, reference, prior, AXA.fitting).sample(n, y, (0.2,), seed=4)
    exact = blrm_exact_posterior(doses, n[None].astype(float), y[None].astype(float), prior=prior,
                                 reference_dose=reference)
    assert sample.passed
    assert np.all(np.abs(sample.means - exact.mean_p_dlt(doses)[0]) < 4 * sample.mean_errors + 2e-3)
    assert np.all(np.abs(sample.at_least[0.2] - exact.probability_at_least(doses, 0.2)[0])
                  < 4 * sample.at_least_errors[0.2] + 2e-3)


def test_the_efficacy_driven_rule_acts_in_simulation_when_its_condition_holds():
    """A safe sentinel that does not respond at level 1 gives P(response rate < 0.3) = 0.82 >= 0.8 under the
    [model.response] prior: the trial goes straight to level 2, because the sentinel's decision waits for its
    month-1 response (day 31). Without that wait the decision falls on day 28, the response is not yet
    observed, and the sentinel's group is completed at level 1."""
    one_study = lb.parse_spec(AXA.text.replace('outcome = "dlt"\nhierarchy = "exnex"', 'outcome = "dlt"\nhierarchy = "none"'))
    scenario = Scenario("level 1 inactive", "", np.zeros((3, 3)), np.zeros(3), np.array([0.0, 0.9, 0.9]), 14.0, None)
    latent = draw_latent_patients(np.random.SeedSequence(5), 20, 9)
    waiting = simulate_trials(one_study, design_for(one_study), scenario, latent)
    assert np.all(waiting.n_patients[:, 0] == 1)  # the sentinel alone: efficacy-driven escalation
    no_wait = lb.parse_spec(spec_text_with(one_study.text, "decision.efficacy", "wait_for_response = false"))
    not_seen = simulate_trials(no_wait, design_for(no_wait), scenario, latent)
    assert np.all(not_seen.n_patients[:, 0] == 3)


def test_paired_differences_are_the_trial_by_trial_differences_with_their_paired_mcse(plan, serial):
    scenario = plan.scenarios.scenarios[0]
    n_levels = len(AXA.dosing.levels)
    results = {name: serial.results(scenario.name, name) for name in plan.designs}
    table = serial.differences.set_index(["scenario", "design", "quantity", "level"])
    other = plan.designs[1]
    a = results[other].n_patients.sum(axis=1).astype(float)
    b = results[plan.designs[0]].n_patients.sum(axis=1).astype(float)
    row = table.loc[(scenario.name, other, "patients", 0)]
    assert row["difference"] == pytest.approx(np.mean(a - b))
    assert row["mcse"] == pytest.approx(np.std(a - b, ddof=1) / np.sqrt(a.size))
    # on common random numbers the designs' outcomes go together, so pairing mostly shrinks the error
    chosen = table.xs(other, level="design")
    varying = chosen[chosen["mcse_unpaired"] > 0]
    assert np.median(varying["mcse"] / varying["mcse_unpaired"]) < 1 and n_levels == 3


def test_a_copula_correlates_toxicity_and_response_and_leaves_every_dlt_as_it_was():
    latent = draw_latent_patients(np.random.SeedSequence(9), 4000, 9)
    correlated = latent.with_correlation(0.8)
    np.testing.assert_array_equal(correlated.toxicity, latent.toxicity)  # the DLTs do not move
    assert latent.with_correlation(0.0) is latent
    assert np.corrcoef(correlated.toxicity.ravel(), correlated.response.ravel())[0, 1] > 0.7
    assert abs(np.mean(correlated.response) - 0.5) < 0.01  # still uniform
    text = (Path(lb.__file__).parent / "data" / "scenarios" / "axa_nk02.toml").read_text()
    changed = parse_scenarios(text.replace("toxicity_response_correlation = 0.0", "toxicity_response_correlation = 0.5"),
                              AXA, source="c.toml")
    assert changed.toxicity_response_correlation == 0.5 and changed.sha256 != load_scenarios("axa_nk02", AXA).sha256
    with pytest.raises(SpecError, match="toxicity_response_correlation"):
        parse_scenarios(text.replace("toxicity_response_correlation = 0.0", "toxicity_response_correlation = 1.5"),
                        AXA, source="c.toml")


def test_non_evaluable_patients_are_replaced_and_leave_the_decisions():
    """A third of the patients leave the DLT window early without a DLT: each is replaced, counted among the
    patients treated, never among the DLTs or the sample size; every design (BOIN and the 3+3 on the engine)."""
    text = (Path(lb.__file__).parent / "data" / "scenarios" / "axa_nk02.toml").read_text()
    scenarios = parse_scenarios(text.replace("toxicity_response_correlation = 0.0",
                                             "toxicity_response_correlation = 0.0\np_not_evaluable = 0.3"),
                                AXA, source="dropouts.toml")
    assert all(s.p_not_evaluable == 0.3 for s in scenarios.scenarios)
    result = simulate(SimulationPlan(AXA, scenarios, ("lupusbayes", "boin", "3+3"), n_trials=40, seed=4))
    trials = result.trials
    treated = trials.filter(like="n_patients_level").sum(axis=1)
    assert (treated - trials["n_not_evaluable"] <= 9).all() and trials["n_not_evaluable"].mean() > 1.0
    full = trials[trials["stop_reason"].str.contains("sample size")]
    assert (full.filter(like="n_patients_level").sum(axis=1) - full["n_not_evaluable"] == 9).all()
    replaced = result.summary[result.summary["quantity"] == "not evaluable, replaced"]
    assert (replaced["value"] > 0.5).all()
    with pytest.raises(SpecError, match="p_not_evaluable"):
        parse_scenarios(text.replace("toxicity_response_correlation = 0.0", "p_not_evaluable = 0.9"), AXA,
                        source="d.toml")


def test_codata_priors_are_the_robust_map_prior_and_enter_the_plan(mock_sampling):
    """With mock sampling (prior draws): the structure, not the numbers (scripts/benchmark_codata_agreement.py
    measures those against the real decision)."""
    from lupusbayes.workflow import simulation_priors

    priors = simulation_priors(AXA, [lb.load_kn5601()], seed=3)
    weights = priors.toxicity.weights
    assert sum(weights) == pytest.approx(1.0) and weights[-1] == pytest.approx(0.5)  # the NEX component, 1 - w
    assert priors.toxicity.components[-1] == AXA.models.blrm.prior
    assert priors.response_final is not None and "KN5601" in priors.source
    assert {"toxicity", "response_month_1", "response_month_3"} <= set(priors.checks)
    scenarios = load_scenarios("axa_nk02", AXA)
    with_priors = SimulationPlan(AXA, scenarios, ("blrm_ewoc",), n_trials=4, seed=1, priors=priors)
    without = SimulationPlan(AXA, scenarios, ("blrm_ewoc",), n_trials=4, seed=1)
    assert with_priors.fingerprint != without.fingerprint and with_priors.describe()["priors"]["toxicity"]
    assert simulate(with_priors).trials["n_mcmc_decisions"].sum() == 0
    one_study = lb.parse_spec(AXA.text.replace('outcome = "dlt"\nhierarchy = "exnex"', 'outcome = "dlt"\nhierarchy = "none"'))
    assert simulation_priors(one_study, [], seed=3) is None
    with pytest.raises(lb.LupusBayesError, match="--codata"):
        simulation_priors(AXA, [], seed=3)


def test_the_mixture_summary_and_the_workflow_examples_run():
    import doctest

    from lupusbayes import workflow
    from lupusbayes.fitting import codata

    assert doctest.testmod(codata).failed == 0  # EM recovers a known two-component mixture
    assert doctest.testmod(workflow).failed == 0
