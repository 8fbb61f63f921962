"""The SLEDAI-2K model's parametrisation: the automatic choice, and that every choice is one model.

Long fits at scale are in ``scripts/benchmark_scale.py``; these checks need no MCMC.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.stats import multivariate_normal, norm

import lupusbayes as lb
from lupusbayes.fitting import DEFAULT_CACHE, sample_prior
from lupusbayes.fitting.calibration import prior_draw
from lupusbayes.models._math import rounded_normal_log_prob
from lupusbayes.models.base import draws_array
from lupusbayes.models.sledai import PATIENT_SCALE_POWER, EffectParametrisation

DOSES = (2.5e7, 7.5e7, 2.5e8)  # the AXA-NK02 levels, cells/kg


def _cohort(patients_per_study: dict[str, int], months=(1, 3, 6), seed: int = 0) -> lb.Cohort:
    """Long-layout cohort: doses in turn, weights given, scores falling from the baseline."""
    rng = np.random.default_rng(seed)
    rows = []
    for study, count in patients_per_study.items():
        for number in range(count):
            baseline = int(rng.integers(8, 21))
            patient = {"study_id": study, "patient_id": f"{study}-{number}", "age_years": 20, "sex": "F",
                       "dose": DOSES[number % 3], "dose_unit": "cells/kg", "n_infusions": 4, "weight_kg": 55,
                       "crs_grade": 0}
            rows.append({**patient, "visit_month": 0, "sledai": baseline})
            for month in months:
                rows.append({**patient, "visit_month": month, "sledai": int(rng.integers(0, baseline + 1))})
    return lb.cohort_from_frame(pd.DataFrame(rows))


RICH = {"AXA-NK02": 10, "STUDY-B": 10, "STUDY-C": 10}


@pytest.fixture(scope="module")
def rich_model(axa_spec) -> lb.SledaiModel:
    """Three studies of 10 patients with three follow-up visits each (sampled partially centred)."""
    return lb.SledaiModel(_cohort(RICH), axa_spec)


def test_parametrisation_follows_the_data(kn5601, kn5601_spec, axa_spec):
    sparse = EffectParametrisation()  # everything non-centred: the model as written
    rich = EffectParametrisation(patient="partially_centred", dose_group="marginalised", study="centred")
    assert lb.SledaiModel(kn5601, kn5601_spec).parametrisation == sparse  # one follow-up visit per patient
    assert lb.SledaiModel(_cohort(RICH), axa_spec).parametrisation == rich
    assert lb.SledaiModel(_cohort(RICH, months=(3,)), axa_spec).parametrisation == sparse
    small_study = lb.SledaiModel(_cohort({**RICH, "STUDY-C": 4}), axa_spec).parametrisation
    assert small_study == EffectParametrisation(patient="partially_centred", dose_group="marginalised",
                                                study="non_centred")
    # the target trial without patients has only its prior: its intercept stays non-centred
    no_target = lb.SledaiModel(_cohort({"STUDY-B": 12, "STUDY-C": 12}), axa_spec).parametrisation
    assert no_target.study == "non_centred" and no_target.patient == "partially_centred"
    with pytest.raises(lb.ModelSetupError):
        EffectParametrisation(patient="non_centred", dose_group="marginalised")


def test_parametrisations_are_separate_designs(rich_model, axa_spec):
    as_written = lb.SledaiModel(rich_model.cohort, axa_spec, parametrisation=EffectParametrisation())
    assert rich_model.design_key() != as_written.design_key()
    free = {variable.name for variable in DEFAULT_CACHE.get(rich_model).graph.free_RVs}
    assert {"patient_plateau_logit_scaled", "intercept_study"} <= free
    assert not {"z_patient", "z_dose_group", "z_study"} & free


def test_graph_likelihood_equals_the_numpy_likelihood_on_a_rich_design(rich_model):
    """As tests/test_models.py checks for KN5601, on a multi-visit, multi-study design."""
    model = rich_model
    draw = prior_draw(model, seed=5)
    graph = DEFAULT_CACHE.get(model).graph_with_outcomes(model)
    point = {}
    for variable in graph.free_RVs:
        value = draw[variable.name].to_numpy()[0, 0]
        transform = graph.rvs_to_transforms[variable]
        point[graph.rvs_to_values[variable].name] = transform.forward(value).eval() if transform is not None else value
    in_graph = float(graph.compile_logp(vars=graph.potentials, sum=True)(point))
    completed = model.complete_draws(draw, np.random.default_rng(0))
    sd = completed["residual_sd"].to_numpy()[..., None]
    in_numpy = float(rounded_normal_log_prob(model.score, model._visit_means(completed), sd, 105).sum())
    assert in_graph == pytest.approx(in_numpy, rel=1e-7)


@pytest.mark.parametrize("patient", ["centred", "partially_centred"])
def test_centring_and_integrating_out_the_dose_groups_keep_the_model(rich_model, axa_spec, patient):
    """The sampled coordinate's density is the logits' (groups integrated out) times the Jacobian,
    and p(logits) p(groups | logits) is the joint density of logits and groups."""
    parametrisation = EffectParametrisation(patient=patient, dose_group="marginalised", study="centred")
    model = lb.SledaiModel(rich_model.cohort, axa_spec, parametrisation=parametrisation)
    draws = model.complete_draws(prior_draw(model, seed=3), np.random.default_rng(4))
    logits = draws_array(draws, "patient_plateau_logit")[0, 0]
    curve = model._population_plateau_logit(draws, with_dose_groups=False)[0, 0]
    patient_sd, group_sd = (float(draws[name].squeeze()) for name in ("patient_sd", "dose_group_sd"))
    effects = draws_array(draws, "dose_group_effect")[0, 0]

    covariance = patient_sd**2 * np.eye(logits.size) + group_sd**2 * model.group_membership @ model.group_membership.T
    marginal = multivariate_normal(curve, covariance).logpdf(logits)
    graph = DEFAULT_CACHE.get(model).graph
    point = dict(graph.initial_point(0))
    point.update({"patient_plateau_logit_scaled": draws_array(draws, "patient_plateau_logit_scaled")[0, 0],
                  "intercept_study": draws_array(draws, "intercept_study")[0, 0],
                  **{f"{name}_log__": np.log(float(draws[name].squeeze()))
                     for name in ("patient_sd", "dose_group_sd", "slope")}})
    sampled_density = graph.compile_logp(vars=[graph["patient_plateau_logit_scaled"]], sum=True)(point)
    jacobian = logits.size * PATIENT_SCALE_POWER[patient] * np.log(patient_sd)
    assert float(sampled_density) == pytest.approx(marginal + jacobian, rel=1e-9)

    mean, sd = (values[0, 0] for values in model._dose_group_conditional(draws))
    joint = (norm.logpdf(logits, curve + effects[model.group_codes], patient_sd).sum()
             + norm.logpdf(effects, 0.0, group_sd).sum())
    assert joint == pytest.approx(marginal + norm.logpdf(effects, mean, sd).sum(), rel=1e-9)


def test_per_patient_log_likelihood_sums_each_patients_visits(axa_spec):
    """The leave-one-patient-out terms, against a plain loop over patients.

    Visits interleaved across patients, and the first patient without follow-up (a term of log 1).
    """
    model = lb.SledaiModel(_cohort({"AXA-NK02": 6, "STUDY-B": 6}, seed=3), axa_spec)
    kept = np.random.default_rng(0).permutation(np.flatnonzero(model.patient_position != 0))
    for name in ("patient_position", "month", "score"):
        setattr(model, name, getattr(model, name)[kept])
    model.labels = tuple(np.array(model.labels)[kept])
    draws = model.complete_draws(sample_prior(model, 3, seed=6), np.random.default_rng(1))
    values = model.pointwise_log_likelihood(draws)["sledai"].transpose("chain", "draw", "patient").to_numpy()

    nodes, weights = np.polynomial.hermite_e.hermegauss(12)
    population = model._population_plateau_logit(draws)[0]
    patient_sd, onset, residual_sd = (draws_array(draws, name)[0]
                                      for name in ("patient_sd", "onset_months", "residual_sd"))
    for patient in range(len(model.patient_labels)):
        visits = np.flatnonzero(model.patient_position == patient)
        for draw in range(3):
            logits = population[draw, patient] + patient_sd[draw] * nodes  # (node,)
            plateau = 1.0 / (1.0 + np.exp(-logits))
            build_up = 1.0 - np.exp(-model.month[visits, None] / onset[draw])
            mean = model.baseline[patient] * (1.0 - plateau * build_up)  # (visit, node)
            log_p = rounded_normal_log_prob(model.score[visits, None], mean, residual_sd[draw], 105).sum(axis=0)
            expected = np.log(np.sum(weights / weights.sum() * np.exp(log_p))) if visits.size else 0.0
            assert values[0, draw, patient] == pytest.approx(expected, rel=1e-10)
