"""Priors for a new study from its co-data: what the simulator's exact posteriors need to decide as the trial does.

A real AXA-NK02 decision fits the BLRM on the protocol DLT with KN5601 as co-data through EXNEX
(MCMC). For a new study A whose data depend only on its own parameters theta_A,

    p(theta_A | co-data D, A's data)  is proportional to  p(A's data | theta_A) p(theta_A | D),

so A's posterior is the exact (quadrature) BLRM posterior with the prior ``p(theta_A | D)``, and
that prior is, under EXNEX with A's prior exchangeability weight w,

    p(theta_A | D) = w p_EX(theta_A | D) + (1 - w) p_NEX(theta_A):

the robust meta-analytic-predictive (MAP) prior of RBesT and OncoBayes2, here derived from the
model instead of chosen. ``p_EX`` is the posterior predictive of a new exchangeable study,
sampled by NUTS (A's ``theta_ex`` in an EXNEX fit of D alone, where A has no patients); it is
summarised by a mixture of bivariate normals fitted by EM (1 to 3 components, chosen by BIC).
``p_NEX`` is the spec's NEX prior itself, so the mixture is exact there. The approximation is
the EM summary alone, and :class:`CodataPriors` reports how well it reproduces the draws
(P(P(DLT) >= t) per dose).

Efficacy: real decisions read the response from the SLEDAI-2K model; the simulator reads a
logistic model on responder counts (exact by quadrature), one at the decision month (the
efficacy-driven rule) and one at the final month (the final selection's utility), each updated
with the same responder counts. Each prior is matched to the SLEDAI-2K
model fitted to the co-data: per posterior draw, P(response at the decision month) for a new
patient of A at each dose (A's study effect drawn from its predictive), a logistic curve
through those probabilities (least squares on the logit scale) gives a draw of (log a, log b),
and the draws are summarised the same way. The SLEDAI-2K model's dose-group deviations cannot
be expressed by two parameters: the reported checks say how far the matched prior's
P(response rate < r) per dose is from the SLEDAI-2K model's.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.special import expit, logit

from lupusbayes.cohort import Cohort, combine_cohorts
from lupusbayes.spec import BivariateNormalMixture, BivariateNormalPrior, CodataPriors, TrialSpec

__all__ = ["CodataPriors", "codata_priors", "CodataPredictive", "codata_predictive_draws", "fit_normal_mixture",
           "MAX_MIXTURE_COMPONENTS"]

#: The most components the EM summary of a predictive distribution may use.
MAX_MIXTURE_COMPONENTS = 3
#: Slopes of the response curve at or below this are taken as this (log b = log 0.05) in the matching.
MIN_RESPONSE_SLOPE = 0.05


def fit_normal_mixture(points: np.ndarray, *, seed: int, max_components: int = MAX_MIXTURE_COMPONENTS,
                       iterations: int = 500) -> tuple[BivariateNormalMixture, int]:
    """A mixture of bivariate normals fitted to ``points`` (n, 2) by EM; the number of components by BIC.

    Deterministic given ``seed`` (k-means++ starts). Returns the mixture and its number of components.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> points = np.vstack([rng.normal([-3, 0], 0.5, (3000, 2)), rng.normal([0, 1], 0.3, (1000, 2))])
    >>> mixture, k = fit_normal_mixture(points, seed=1)
    >>> k, [round(w, 2) for w in sorted(mixture.weights)]
    (2, [0.25, 0.75])
    """
    points = np.asarray(points, dtype=float)
    best, best_bic = None, np.inf
    rng = np.random.default_rng(seed)
    for k in range(1, max_components + 1):
        weights, means, covariances, log_likelihood = _em(points, k, rng, iterations)
        parameters = (k - 1) + 2 * k + 3 * k
        bic = -2.0 * log_likelihood + parameters * np.log(len(points))
        if bic < best_bic - 1e-9:
            best, best_bic = (weights, means, covariances, k), bic
    weights, means, covariances, k = best
    components = []
    for mean, covariance in zip(means, covariances, strict=True):
        sd = np.sqrt(np.diag(covariance))
        correlation = float(np.clip(covariance[0, 1] / (sd[0] * sd[1]), -0.99, 0.99))
        components.append(BivariateNormalPrior(float(mean[0]), float(mean[1]), float(sd[0]), float(sd[1]), correlation))
    weights = tuple(float(w) for w in np.asarray(weights) / np.sum(weights))
    return BivariateNormalMixture(weights, tuple(components)), k


def _log_normal_density(points, mean, covariance):
    difference = points - mean
    inverse = np.linalg.inv(covariance)
    _, log_det = np.linalg.slogdet(covariance)
    return -0.5 * (np.einsum("ni,ij,nj->n", difference, inverse, difference) + log_det + 2 * np.log(2 * np.pi))


def _em(points, k, rng, iterations):
    n = len(points)
    centres = [points[rng.integers(n)]]
    for _ in range(1, k):  # k-means++ start
        distance = np.min([np.sum((points - c) ** 2, axis=1) for c in centres], axis=0)
        centres.append(points[rng.choice(n, p=distance / distance.sum())])
    means = np.array(centres)
    covariances = np.array([np.cov(points.T) for _ in range(k)])
    weights = np.full(k, 1.0 / k)
    previous = -np.inf
    floor = 0.1**2 * np.eye(2)  # no component narrower than an SD of 0.1: a spike would defeat the quadrature grids
    for _ in range(iterations):
        log_density = np.stack([np.log(weights[j]) + _log_normal_density(points, means[j], covariances[j])
                                for j in range(k)], axis=1)
        top = log_density.max(axis=1, keepdims=True)
        log_total = top[:, 0] + np.log(np.exp(log_density - top).sum(axis=1))
        responsibility = np.exp(log_density - log_total[:, None])
        log_likelihood = float(log_total.sum())
        mass = responsibility.sum(axis=0) + 1e-12
        weights = mass / n
        means = (responsibility.T @ points) / mass[:, None]
        covariances = np.array([((responsibility[:, j, None] * (points - means[j])).T @ (points - means[j])) / mass[j]
                                + floor for j in range(k)])
        if log_likelihood - previous < 1e-8 * abs(log_likelihood):
            break
        previous = log_likelihood
    return weights, means, covariances, log_likelihood


def _mixture_draws(prior: BivariateNormalMixture, n: int, rng: np.random.Generator) -> np.ndarray:
    which = rng.choice(len(prior.weights), size=n, p=np.asarray(prior.weights))
    out = np.empty((n, 2))
    for index, component in enumerate(prior.components):
        rows = which == index
        out[rows] = rng.multivariate_normal(component.mean, component.covariance, size=int(rows.sum()))
    return out


def _probabilities(theta: np.ndarray, x: np.ndarray) -> np.ndarray:
    """P(event) per draw (rows) and dose (columns) for (log a, log b) draws."""
    return expit(theta[:, :1] + np.exp(theta[:, 1:2]) * x[None, :])


def _largest_difference(draws: np.ndarray, mixture: BivariateNormalMixture, x: np.ndarray, thresholds,
                        rng: np.random.Generator) -> float:
    """Largest |P(p >= t)| difference between ``draws`` and ``mixture`` over doses and thresholds."""
    sampled = _probabilities(_mixture_draws(mixture, 200_000, rng), x)
    return float(max(abs(np.mean(draws >= t, axis=0) - np.mean(sampled >= t, axis=0)).max() for t in thresholds))


def _robust(ex: BivariateNormalMixture, nex: BivariateNormalPrior, weight: float) -> BivariateNormalMixture:
    if weight >= 1.0:
        return ex
    if weight <= 0.0:
        return BivariateNormalMixture((1.0,), (nex,))
    return BivariateNormalMixture(tuple(weight * w for w in ex.weights) + (1.0 - weight,), ex.components + (nex,))


@dataclass(frozen=True)
class CodataPredictive:
    """Draws of the target study's ``(log a, log b)`` given the co-data alone, from an MCMC fit of the DLT BLRM.

    ``draws`` (n, 2) are the exchangeable study's predictive (``theta_ex`` of the target, which has no
    patients: the meta-analytic-predictive (MAP) prior before any summary), or with ``hierarchy = "none"``
    the pooled ``mu``; ``exchangeable_weight`` is the target's prior probability of being exchangeable
    (1 unless EXNEX) and ``nex`` the prior of its non-exchangeable component.
    """

    draws: np.ndarray
    exchangeable_weight: float
    nex: BivariateNormalPrior | BivariateNormalMixture
    fit_name: str
    hierarchy: str
    source: str


def codata_predictive_draws(spec: TrialSpec, codata: Sequence[Cohort], *, seed: int, progress=None, cache=None,
                            settings=None) -> CodataPredictive:
    """The target study's predictive draws given ``codata`` (see :class:`CodataPredictive`).

    One MCMC fit of the BLRM on the co-data (``settings``: a
    :class:`~lupusbayes.spec.ToxicityModelSettings` instead of the spec's ``[model.blrm]``), seeded by
    ``seed`` and read from ``cache`` when made before.

    Raises
    ------
    ConvergenceGateError
        The fit failed its convergence gate (no prior is derived from it).
    """
    from lupusbayes.errors import ConvergenceGateError
    from lupusbayes.fitting.fitcache import cached_fit
    from lupusbayes.models.toxicity import BLRM

    cohort = combine_cohorts(list(codata))
    target = spec.trial.id
    blrm = BLRM(cohort, spec, settings)
    toxicity_fit = cached_fit(blrm, seed=seed, progress=progress, cache=cache)
    if not toxicity_fit.converged:
        raise ConvergenceGateError(f"the {blrm.hierarchy} BLRM fit of the co-data ({cohort.source}) failed its "
                                   "convergence gate: no prior is derived from it; refit with more draws ([fitting] draws)")
    posterior = toxicity_fit.posterior
    if blrm.hierarchy == "none":
        draws = posterior["mu"].values.reshape(-1, 2)
        weight = 1.0
    else:
        draws = posterior["theta_ex"].sel(study=target).values.reshape(-1, 2)
        weight = 1.0 if blrm.hierarchy == "exchangeable" else blrm.settings.exchangeability(target)
    return CodataPredictive(draws, float(weight), blrm.settings.nex, blrm.name, blrm.hierarchy,
                            f"{', '.join(cohort.study_ids)} ({cohort.n_patients} patients)")


def codata_priors(spec: TrialSpec, codata: Sequence[Cohort], *, seed: int, progress=None, cache=None) -> CodataPriors:
    """The target study's toxicity and response priors given ``codata`` (see the module docstring).

    Two MCMC fits of the co-data alone (the EXNEX BLRM on the DLT status, the SLEDAI-2K model) with the
    spec's ``[fitting]`` settings, seeded by ``seed`` (read from ``cache``, a
    :class:`~lupusbayes.fitting.fitcache.FitCache`, when made before).

    Raises
    ------
    ConvergenceGateError
        A fit behind a prior failed its convergence gate (a prior is never derived from it).
    """
    from lupusbayes.errors import ConvergenceGateError
    from lupusbayes.fitting.fitcache import cached_fit
    from lupusbayes.models.sledai import SledaiModel

    cohort = combine_cohorts(list(codata))
    x = np.log(np.asarray(spec.dosing.levels) / spec.dosing.reference_dose)
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(7,)))
    checks: dict = {}

    predictive = codata_predictive_draws(spec, codata, seed=seed, progress=progress, cache=cache)
    draws, weight = predictive.draws, predictive.exchangeable_weight
    ex, components = fit_normal_mixture(draws, seed=seed)
    toxicity = _robust(ex, predictive.nex, weight)
    edges = [edge for edge in spec.dlt.intervals.edges if 0.0 < edge < 1.0]
    checks["toxicity"] = {
        "fit": f"{predictive.fit_name}, seed {seed}, gate passed", "exchangeable_weight": weight,
        "ex_components": components,
        "largest_difference_p_dlt_at_least": round(_largest_difference(_probabilities(draws, x), ex, x, edges, rng), 4),
    }

    sledai = SledaiModel(cohort, spec)
    efficacy_fit = cached_fit(sledai, seed=seed, progress=progress, cache=cache)
    if not efficacy_fit.converged:
        raise ConvergenceGateError(f"the SLEDAI-2K fit of the co-data ({cohort.source}) failed its convergence gate: "
                                   "no prior is derived from it; refit with more draws ([fitting] draws)")
    efficacy = spec.decision.efficacy
    variable = {"sri4_sledai_component": "p_sri4_sledai_component", "lldas_sledai_proxy": "p_lldas_sledai_proxy",
                "doris_sledai_proxy": "p_doris_sledai_proxy"}[efficacy.response]
    months = sorted({efficacy.month, efficacy.final_month})
    response = sledai.dose_response(efficacy_fit.posterior, rng, months=months)[variable]
    matched = {}
    for month in months:
        p = np.clip(response.sel(month=month).transpose("chain", "draw", "dose").values.reshape(-1, x.size),
                    1e-6, 1 - 1e-6)
        slope, intercept = np.polyfit(x, logit(p).T, 1)
        flat = slope <= MIN_RESPONSE_SLOPE
        theta = np.column_stack([intercept, np.log(np.maximum(slope, MIN_RESPONSE_SLOPE))])
        prior, components = fit_normal_mixture(theta, seed=seed + 1)
        fitted = _probabilities(theta, x)
        matched[month] = prior
        checks[f"response_month_{month:g}"] = {
            "fit": f"{sledai.name}, seed {seed}, gate passed", "components": components,
            "draws_with_a_flat_or_falling_curve": round(float(flat.mean()), 4),
            "median_largest_curve_error": round(float(np.median(np.abs(fitted - p).max(axis=1))), 4),
            "largest_difference_p_rate_below": round(_largest_difference(  # |P(rate < r)| difference = |P(rate >= r)|'s
                p, prior, x, [efficacy.insufficient_rate], rng), 4),
        }
    response_prior, response_final = matched[efficacy.month], matched[efficacy.final_month]
    source = (f"co-data {', '.join(cohort.study_ids)} ({cohort.n_patients} patients): EXNEX MAP prior for the DLT "
              f"BLRM (weight {weight:g} exchangeable) and the SLEDAI-2K model's {efficacy.response} at month "
              f"{efficacy.month:g}, seed {seed}")
    return CodataPriors(toxicity, response_prior, source, checks,
                        None if efficacy.final_month == efficacy.month else response_final)
