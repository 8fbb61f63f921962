"""The fitting layer: DataTree, gate, retry, MCSE, checks, LOO, comparison, save / load."""

from __future__ import annotations

import json
import warnings
from types import SimpleNamespace

import arviz as az
import numpy as np
import pytest
import xarray as xr
from conftest import FAST, MOCK, mock_run_sampler

import lupusbayes as lb
from lupusbayes import fitting
from lupusbayes.fitting import sample as sampling
from lupusbayes.report import text

GROUPS = {"posterior", "sample_stats", "prior", "prior_predictive", "posterior_predictive", "log_likelihood",
          "observed_data", "constant_data", "dose_response", "prior_dose_response"}


@pytest.mark.mcmc
def test_fit_returns_the_full_datatree_and_a_passed_gate(crs_fit):
    assert GROUPS <= set(crs_fit.tree.children)
    assert crs_fit.converged
    names = [check.name for check in crs_fit.diagnostics.checks]
    assert names == ["max R-hat", "min bulk ESS", "min tail ESS", "divergences", "min BFMI"]
    assert crs_fit.tree["log_likelihood"]["toxicity_outcome"].sizes["observation"] == 11
    mcse = crs_fit.diagnostics.decision_mcse
    assert set(mcse["quantity"]) >= {"P(CRS >= 1)", "P(DLT)", "P(excessive)"}
    assert (mcse["mcse"] >= 0).all() and (mcse["mcse"] < 0.02).all()
    assert "Convergence gate: PASSED" in text.fit_text(crs_fit)


@pytest.mark.mcmc
def test_dose_summary_has_intervals_and_mcse(crs_fit, sledai_fit):
    table = crs_fit.dose_summary(interval=0.9)
    assert {"P(CRS>=1) mean", "P(CRS>=1) q5", "P(CRS>=1) q95", "P(CRS>=1) mcse_mean", "P(excessive) mcse"} <= set(table.columns)
    assert (table["P(CRS>=1) q5"] <= table["P(CRS>=1) mean"]).all()
    sledai = sledai_fit.dose_summary()
    assert set(sledai["month"]) == {1.0, 3.0, 6.0}
    six = sledai[sledai["month"] == 6.0]
    # responses build up over months
    assert (sledai.groupby("dose")["reduction mean"].apply(lambda s: s.is_monotonic_increasing)).all()
    assert (six["P(SRI-4 SLEDAI) mean"] > six["P(SLEDAI<=4) mean"]).all()
    assert (six["P(SLEDAI<=4) mean"] > six["P(SLEDAI=0) mean"]).all()


@pytest.mark.mcmc
def test_predictive_checks(crs_fit, sledai_fit):
    for result in (crs_fit, sledai_fit):
        for table in (result.ppc_table(), result.prior_predictive_table()):
            assert {"statistic", "observed", "replicated_mean", "p_value"} <= set(table.columns)
            assert table["p_value"].between(0, 1).all()
    crs = crs_fit.ppc_table().set_index("statistic")
    assert crs.loc["patients with CRS >= 1", "observed"] == 4
    assert 0.05 < crs.loc["patients with CRS >= 1", "p_value"] < 0.95  # the model reproduces the CRS count
    sledai = sledai_fit.ppc_table().set_index("statistic")
    assert sledai.loc["patients at SLEDAI-2K = 0 (latest)", "observed"] == 2


@pytest.mark.mcmc
def test_loo_is_per_patient_and_warns_about_pareto_k(sledai_fit):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loo = sledai_fit.loo()
    pareto_k = np.asarray(loo.pareto_k)
    assert pareto_k.size == 11  # one term per patient, the patient effect integrated out
    assert (pareto_k <= 0.7).sum() >= 10  # (conditional on the patient effect, most k exceed 0.7)
    flagged = [w for w in caught if issubclass(w.category, lb.errors.LupusBayesWarning)]
    assert len(flagged) == int((pareto_k > 0.7).any())


@pytest.mark.mcmc
def test_compare_models_and_refuse_different_outcomes(crs_fit, blrm_fit, kn5601, kn5601_spec):
    no_dose = lb.fit(lb.CRSModel(kn5601, kn5601_spec, kn5601_spec.models.crs.replace(dose_effect=False)), seed=21,
                     settings=FAST)
    table = lb.compare_models({"dose effect": crs_fit, "no dose effect": no_dose})
    assert set(table.index) == {"dose effect", "no dose effect"} and "elpd" in table.columns
    with pytest.raises(lb.ModelSetupError, match="different outcomes"):
        lb.compare_models({"ordinal": crs_fit, "binary": blrm_fit})


@pytest.mark.mcmc
def test_same_seed_same_numbers_and_other_seed_other_draws(kn5601, kn5601_spec, blrm_fit):
    again = lb.fit(lb.BLRM(kn5601, kn5601_spec), seed=12, settings=FAST)
    xr.testing.assert_identical(again.dose_response, blrm_fit.dose_response)
    other = lb.fit(lb.BLRM(kn5601, kn5601_spec), seed=99, settings=FAST)
    assert not np.array_equal(other.dose_response["p_dlt"].to_numpy(), blrm_fit.dose_response["p_dlt"].to_numpy())


@pytest.mark.mcmc
def test_pymc_sampler_agrees_with_nutpie(kn5601, kn5601_spec, blrm_fit):
    result = lb.fit(lb.BLRM(kn5601, kn5601_spec), seed=5, settings=FAST.replace(sampler="pymc"))
    assert result.converged
    assert result.tree["sample_stats"].attrs.get("inference_library") == "pymc"
    a = result.dose_summary().set_index("dose_label")
    b = blrm_fit.dose_summary().set_index("dose_label")
    tolerance = 4 * np.hypot(a["P(DLT) mcse_mean"], b["P(DLT) mcse_mean"]) + 0.003
    assert (abs(a["P(DLT) mean"] - b["P(DLT) mean"]) < tolerance).all()


def _diverging_tree(real: xr.DataTree, divergences: int) -> xr.DataTree:
    stats = real["sample_stats"].to_dataset().copy()
    flags = np.zeros(stats["diverging"].shape, dtype=bool)
    flags.flat[:divergences] = True
    stats["diverging"] = (stats["diverging"].dims, flags)
    return xr.DataTree.from_dict({"posterior": real["posterior"].to_dataset(), "sample_stats": stats})


def test_divergences_trigger_one_retry_at_higher_target_accept(monkeypatch, kn5601, kn5601_spec):
    model = lb.BLRM(kn5601, kn5601_spec)
    real = mock_run_sampler(model, fitting.DEFAULT_CACHE.get(model), MOCK, 0.9, seed=1)
    calls = []

    def fake(model, design, settings, target_accept, seed, progress=None):
        calls.append(target_accept)
        return _diverging_tree(real, 3 if len(calls) == 1 else 0)

    monkeypatch.setattr(sampling, "run_sampler", fake)
    result = lb.fit(lb.BLRM(kn5601, kn5601_spec), seed=1, settings=MOCK)
    assert calls == [0.9, 0.99]
    assert [a.divergences for a in result.diagnostics.attempts] == [3, 0]
    assert result.converged
    assert any("first run diverged" in line for line in text.diagnostics_lines(result.diagnostics))

    calls.clear()
    monkeypatch.setattr(sampling, "run_sampler", lambda *a, **k: (calls.append(a[3]), _diverging_tree(real, 2))[1])
    failed = lb.fit(lb.BLRM(kn5601, kn5601_spec), seed=1, settings=MOCK)
    assert calls == [0.9, 0.99] and not failed.converged
    with pytest.raises(lb.ConvergenceGateError, match="divergences"):
        failed.require_converged()
    with pytest.warns(lb.errors.LupusBayesWarning, match="FAILED its convergence gate"):
        failed.require_converged(force=True)


def test_gate_thresholds_are_settings(mock_blrm_fit):
    strict = mock_blrm_fit.settings.replace(gate=lb.ConvergenceGate(ess_bulk_min=1e9))
    diagnostics = fitting.diagnose(mock_blrm_fit.model, mock_blrm_fit.tree, strict, mock_blrm_fit.diagnostics.attempts)
    assert not diagnostics.passed
    assert [c.name for c in diagnostics.checks if not c.passed] == ["min bulk ESS"]


def test_save_and_load(mock_blrm_fit, tmp_path, kn5601_spec, axa_spec):
    blrm_fit = mock_blrm_fit
    path = blrm_fit.save(tmp_path / "blrm.nc")
    opened = az.from_netcdf(path)  # plain ArviZ opens it
    assert GROUPS <= set(opened.children)
    assert opened.attrs["spec_sha256"] == kn5601_spec.sha256
    assert json.loads(opened.attrs["diagnostics"])["passed"] is True
    loaded = lb.load_fit(path, spec=kn5601_spec)
    assert loaded.dose_summary().equals(blrm_fit.dose_summary())
    assert loaded.model.n_observations == 11 and loaded.converged and loaded.seed == blrm_fit.seed
    with pytest.raises(lb.FitFileError, match="another spec"):
        lb.load_fit(path, spec=axa_spec)
    with pytest.raises(lb.OutputExistsError):
        blrm_fit.save(path)
    blrm_fit.save(path, overwrite=True)


def test_loading_a_file_from_another_version_or_not_a_fit_fails_clearly(mock_blrm_fit, tmp_path):
    blrm_fit = mock_blrm_fit
    path = blrm_fit.save(tmp_path / "blrm.nc")
    tree = az.from_netcdf(path)
    tree.attrs["lupusbayes_version"] = "0.1.0"
    old = tmp_path / "old.nc"
    tree.to_netcdf(old, engine="h5netcdf")
    with pytest.raises(lb.FitFileError, match="written by lupusbayes 0.1.0"):
        lb.load_fit(old)
    plain = tmp_path / "plain.nc"
    xr.DataTree.from_dict({"posterior": xr.Dataset({"a": (("chain", "draw"), np.zeros((1, 5)))})}).to_netcdf(plain, engine="h5netcdf")
    with pytest.raises(lb.FitFileError, match="not a lupusbayes fit"):
        lb.load_fit(plain)
    junk = tmp_path / "junk.nc"
    junk.write_text("not netcdf")
    with pytest.raises(lb.FitFileError, match="not a readable netCDF"):
        lb.load_fit(junk)


def test_seed_is_required_and_validated(kn5601, kn5601_spec):
    with pytest.raises(TypeError):
        lb.fit(lb.BLRM(kn5601, kn5601_spec))  # no default seed: every number is reproducible
    with pytest.raises(lb.ModelSetupError, match="seed"):
        lb.fit(lb.BLRM(kn5601, kn5601_spec), seed=-1)


def test_prior_sampler_is_compiled_once_reproducible_and_the_models_prior(kn5601, kn5601_spec):
    import pymc as pm

    model = lb.CRSModel(kn5601, kn5601_spec)
    cache = lb.DesignCache()
    first = fitting.sample_prior(model, 2000, seed=7, cache=cache)
    compiled = cache.get(model).prior_function()
    again = fitting.sample_prior(lb.CRSModel(kn5601, kn5601_spec), 2000, seed=7, cache=cache)
    assert cache.get(model).prior_function() is compiled and len(cache) == 1  # reused, not recompiled
    xr.testing.assert_equal(first, again)  # same values (the creation timestamps differ)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reference = pm.sample_prior_predictive(draws=2000, model=model.build_pymc_model(), random_seed=7)["prior"]
    for name in ("mu", "grade_gap"):
        ours, theirs = first[name].to_numpy(), reference[name].to_numpy()
        standard_error = np.hypot(ours.std(axis=(0, 1)), theirs.std(axis=(0, 1))) / np.sqrt(2000)
        assert np.all(np.abs(ours.mean(axis=(0, 1)) - theirs.mean(axis=(0, 1))) < 4 * standard_error)


def test_compact_table_reads_mean_interval_and_mcse(mock_crs_fit):
    compact = text.compact_table(mock_crs_fit.dose_summary())
    assert list(compact.columns[:2]) == ["dose", "P(CRS>=1)"]
    assert compact["P(CRS>=1)"].str.fullmatch(r"\d\.\d{3} \[\d\.\d{3}, \d\.\d{3}\]").all()
    assert compact["P(excessive)"].str.fullmatch(r"\d\.\d{3} \+/- <?0\.\d+").all()


def test_compiled_code_uses_ieee_arithmetic_so_seeds_reproduce_with_a_cold_or_warm_cache(mock_blrm_fit):
    """fastmath lets a freshly compiled function and its disk-cached copy round differently; the
    same seed then gave different draws depending on whether PyTensor's cache was warm."""
    import pytensor

    assert pytensor.config.numba__fastmath is False


# ---- progress: the sampler bar counts divergences as the gate does ------------------------------


class _RecordingProgress:
    """A FitProgress that keeps every call (stage lines and sampler reports)."""

    def __init__(self) -> None:
        self.steps: list[str] = []
        self.reports: list[tuple[int, int, int, bool]] = []

    def step(self, message: str) -> None:
        self.steps.append(message)

    def sampling(self, finished_draws: int, total_draws: int, divergences: int, tuning: bool) -> None:
        self.reports.append((finished_draws, total_draws, divergences, tuning))


def _phases_are_monotone(reports) -> bool:
    """Tuning, then sampling, never back to tuning."""
    phases = [tuning for *_, tuning in reports]
    return phases == sorted(phases, reverse=True)


def _chain(finished: int, divergent_steps=(), tune: int = 10):
    """A snapshot of one chain as nutpie's progress callback gives it (``nutpie.ChainProgress``)."""
    return SimpleNamespace(finished_draws=finished, total_draws=30, divergences=len(divergent_steps),
                           divergent_draws=list(divergent_steps), tuning=finished < tune, started=finished > 0)


def test_progress_from_nutpie_snapshots_counts_only_divergences_after_tuning():
    # 2 chains on 1 core: chain 1 starts when chain 0 is done; 10 tuning steps and 20 draws each.
    # chain 0 diverges at step 3 (tuning) and 15 (kept); chain 1 at 5 (tuning) and 12, 29 (kept).
    stream = [
        [_chain(0), _chain(0)],
        [_chain(6, [3]), _chain(0)],
        [_chain(18, [3, 15]), _chain(0)],  # chain 0 samples, chain 1 has not started: still tuning
        [_chain(30, [3, 15]), _chain(8, [5])],
        [_chain(30, [3, 15]), _chain(21, [5, 12])],  # every chain past tuning: sampling from here on
        [_chain(30, [3, 15]), _chain(30, [5, 12, 29])],
    ]
    shown = _RecordingProgress()
    tally = sampling.SamplerProgress(shown, chains=2, tune=10, draws=20, interval=0.0)
    for snapshot in stream:
        tally.record_chains(snapshot)
    assert [report[3] for report in shown.reports] == [True, True, True, True, False, False]
    assert [report[2] for report in shown.reports] == [0, 0, 1, 1, 2, 3]
    assert shown.reports[-1] == (60, 60, 3, False)
    assert (tally.divergences, tally.tuning_divergences, tally.complete) == (3, 2, True)
    assert tally.summary() == "3 divergences after tuning (the gate counts these); 2 during tuning, not counted"


def test_progress_from_pymc_draws_is_monotone_and_leaves_tuning_divergences_out():
    # PyMC's callback: one step of one chain at a time, chains interleaved, each with its own tuning flag
    tune, draws = 3, 4
    steps = []  # (chain, step): chain 0 runs ahead of chain 1
    for step in range(tune + draws):
        steps.append((0, step))
        if step >= 2:
            steps.append((1, step - 2))
    steps += [(1, step) for step in range(tune + draws - 2, tune + draws)]
    diverging = {(0, 1), (1, 0), (1, 2), (0, 5)}  # three during tuning, one after
    shown = _RecordingProgress()
    tally = sampling.SamplerProgress(shown, chains=2, tune=tune, draws=draws, interval=0.0)
    for chain, step in steps:
        tally.record_draw(chain, tuning=step < tune, diverging=(chain, step) in diverging)
    assert _phases_are_monotone(shown.reports)  # chain 0 sampling while chain 1 tunes: still "tuning"
    assert shown.reports[0][3] and not shown.reports[-1][3]
    assert shown.reports[-1] == (14, 14, 1, False)
    assert tally.tuning_divergences == 3
    assert all(report[2] <= 1 for report in shown.reports)  # tuning divergences never shown as the count


def test_progress_reports_at_most_every_interval_but_always_the_end():
    shown = _RecordingProgress()
    tally = sampling.SamplerProgress(shown, chains=1, tune=5, draws=5, interval=3600.0)
    for step in range(10):
        tally.record_draw(0, tuning=step < 5, diverging=False)
    assert [report[0] for report in shown.reports] == [1, 10]
    silent = sampling.SamplerProgress(None, chains=1, tune=0, draws=2)
    silent.record_draw(0, tuning=False, diverging=True)
    assert silent.divergences == 1 and not silent.tuning  # no tuning steps: sampling from the start


def test_fit_closes_the_progress_with_the_gates_divergence_count(monkeypatch, kn5601, kn5601_spec):
    model = lb.BLRM(kn5601, kn5601_spec)
    real = mock_run_sampler(model, fitting.DEFAULT_CACHE.get(model), MOCK, 0.9, seed=1)
    # a sampler that says nothing while it runs (the mock tier): the bar still ends on the gate's number
    monkeypatch.setattr(sampling, "run_sampler", lambda *a, **k: _diverging_tree(real, 1))
    shown = _RecordingProgress()
    gate = lb.ConvergenceGate(divergences_max=1)
    result = lb.fit(model, seed=1, settings=MOCK.replace(gate=gate), progress=shown)
    gate_count = next(check.value for check in result.diagnostics.checks if check.name == "divergences")
    assert gate_count == 1
    assert shown.reports[-1] == (MOCK.chains * (MOCK.draws + MOCK.tune),) * 2 + (1, False)
    assert any(line.endswith("sampled, 1 divergence after tuning (the gate counts these)") for line in shown.steps)


@pytest.mark.mcmc
@pytest.mark.parametrize("sampler", ["nutpie", "pymc"])
def test_progress_of_a_real_fit_ends_on_the_gates_divergence_count(sampler, kn5601, kn5601_spec):
    # seed 99 of the CRS model is the fit: PyMC flags divergences while tuning, which the
    # progress bar used to count (ending "100% sampling, 3 divergences") while the gate saw 0
    shown = _RecordingProgress()
    settings = lb.FitSettings(draws=300, tune=300, chains=4, sampler=sampler)
    result = lb.fit(lb.CRSModel(kn5601, kn5601_spec), seed=99, settings=settings, progress=shown)
    gate_count = next(check.value for check in result.diagnostics.checks if check.name == "divergences")
    finished, total, divergences, tuning = shown.reports[-1]
    assert finished == total == settings.chains * (settings.draws + settings.tune) and not tuning
    assert divergences == gate_count == result.diagnostics.attempts[-1].divergences
    assert any(f"sampled, {int(gate_count)} divergence" in line for line in shown.steps)
    runs = _runs(shown.reports)
    assert len(runs) == len(result.diagnostics.attempts)  # a retry, if any, is a run of its own
    assert all(_phases_are_monotone(run) for run in runs)
    assert all(len(run) >= 2 for run in runs)  # the sampler reported as it ran, not only at the end


def _runs(reports):
    """The reports split into sampler runs (a run starts again from fewer finished draws)."""
    runs = [[reports[0]]]
    for previous, report in zip(reports, reports[1:], strict=False):
        if report[0] < previous[0]:
            runs.append([])
        runs[-1].append(report)
    return runs


def test_the_convergence_table_is_arvizs_rhat_and_ess_element_by_element(crs_fit):
    """The table computes every element at once (one call per statistic); the numbers are those of az.rhat and
    az.ess on each variable, bit for bit."""
    from lupusbayes.fitting import diagnostics

    model, tree = crs_fit.model, crs_fit.tree
    monitored, names = diagnostics._monitored(model, tree, model.decision_quantities(tree["dose_response"].to_dataset()))
    table = diagnostics.convergence_table(monitored, names).set_index("parameter")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # constant decision quantities: 0/0 in R-hat, as the table expects
        rhat, bulk, tail = az.rhat(monitored), az.ess(monitored, method="bulk"), az.ess(monitored, method="tail")
    checked = 0
    for name in monitored.data_vars:
        for index in np.ndindex(rhat[name].shape):
            coords = [rhat[name][d].to_numpy()[i] if d in rhat[name].coords else i
                      for d, i in zip(rhat[name].dims, index, strict=True)]
            row = table.loc[diagnostics.parameter_label(name, coords)]
            for column, reference in (("r_hat", rhat), ("ess_bulk", bulk), ("ess_tail", tail)):
                np.testing.assert_equal(row[column], float(reference[name].to_numpy()[index]))
            checked += 1
    assert checked == len(table)
