"""The DLT prior before any patient: what the decisions' prior says per dose, and how much it weighs.

``lupusbayes prior SPEC`` without data prints this. Per dose of the spec: the prior mean, median
and 90% interval of P(DLT), the probability of each of the spec's toxicity intervals, EWOC's
verdict (the :class:`~lupusbayes.decisions.rules.Ewoc` rule itself, on a trial with no patient:
the verdict ``decide`` would give before the first cohort), and the prior effective sample size.

The prior is a :class:`~lupusbayes.decisions.ExactPosterior` with no patient (the spec's
bivariate normal prior by quadrature, as ``decide`` uses it for a one-study BLRM) or a
:class:`~lupusbayes.decisions.DrawsPosterior` (the trial's P(DLT) draws from the EXNEX fit of
co-data that ``decide`` makes when co-data are given and the trial has no patient yet).

Prior effective sample size (ESS), in patients:

* **per dose, moment-matched Beta**: the Beta distribution with the prior's mean ``m`` and variance
  ``v`` of P(DLT) at the dose has ``a + b = m (1 - m) / v - 1``. It describes the marginal prior at
  that dose alone: the doses share two parameters, so these numbers are not additive across doses,
  and a skewed or bimodal prior (a mixture) is summarised by two moments only.
* **whole prior, Morita, Thall & Mueller (2008)** (a bivariate normal prior only): the number of
  hypothetical patients ``m`` whose expected information about ``(log a, log b)``, added to a
  vague prior (the same prior with variances times :data:`MTM_VAGUE_FACTOR`), equals the prior's
  own information, both measured as the trace of minus the Hessian of the log density at the prior
  mean. The hypothetical patients' doses are spread evenly over the spec's levels, and their DLTs
  are averaged over the prior predictive distribution. The expected information is linear in
  ``m`` here, so the ESS is solved exactly (not rounded to an integer).

NumPy and SciPy only: nothing here imports PyMC or the fitting layer.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy.optimize import brentq
from scipy.special import expit

from lupusbayes.decisions.posterior import QUADRATURE_ERROR, DrawsPosterior, ExactPosterior, exact_blrm
from lupusbayes.decisions.rules import DecisionContext, Ewoc, RuleVerdict, interval_probabilities
from lupusbayes.decisions.state import state_from_counts
from lupusbayes.dosing import dose_label
from lupusbayes.spec import BivariateNormalPrior, TrialSpec

__all__ = ["DltPriorSummary", "MoritaThallMuellerESS", "dlt_prior_summary", "moment_matched_beta_ess",
           "morita_thall_mueller_ess", "interval_key", "SPEC_PRIOR", "MOMENT_MATCHED_BETA_METHOD",
           "MORITA_THALL_MUELLER_METHOD", "MTM_VAGUE_FACTOR", "QUANTILES"]

#: The source of the prior when it is the spec's ``[model.blrm.prior]``.
SPEC_PRIOR = "spec prior"
#: The quantiles of P(DLT) shown: 5%, median, 95% (a 90% interval).
QUANTILES = (0.05, 0.5, 0.95)
#: Variances of the Morita-Thall-Mueller vague prior: the prior's times this (RBesT's default, s = 100).
MTM_VAGUE_FACTOR = 100.0
MOMENT_MATCHED_BETA_METHOD = (
    "moment-matched Beta: a + b = m(1 - m)/v - 1 for the prior mean m and variance v of P(DLT) at the dose. "
    "It approximates the information in the marginal prior at that dose alone (not additive across doses; "
    "a skewed or mixture prior is summarised by two moments only); Morita, Thall & Mueller (2008) define "
    "the ESS of the whole prior on (log a, log b)")
MORITA_THALL_MUELLER_METHOD = (
    "Morita, Thall & Mueller (2008): patients whose expected information on (log a, log b), added to a vague "
    f"prior (variances x {MTM_VAGUE_FACTOR:g}), equals the prior's (trace of minus the Hessian at the prior mean); "
    "their doses spread evenly over the levels, their DLTs averaged over the prior predictive")


def moment_matched_beta_ess(mean, variance) -> np.ndarray:
    """``a + b`` of the Beta distribution with this mean and variance: ``m (1 - m) / v - 1``.

    A Beta(a, b) has mean ``a / (a + b)`` and variance ``m (1 - m) / (a + b + 1)``, so its own
    moments give back ``a + b``. NaN where the variance is not positive.

    Examples
    --------
    >>> a, b = 2.0, 18.0
    >>> mean, variance = a / (a + b), a * b / ((a + b) ** 2 * (a + b + 1))
    >>> float(moment_matched_beta_ess(mean, variance))
    20.0
    """
    mean, variance = np.asarray(mean, dtype=float), np.asarray(variance, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(variance > 0, mean * (1.0 - mean) / variance - 1.0, np.nan)


@dataclass(frozen=True)
class MoritaThallMuellerESS:
    """The Morita-Thall-Mueller ESS of a bivariate normal BLRM prior (see the module docstring).

    ``total`` is the ESS of ``(log a, log b)`` together; ``log_a`` and ``log_b`` are each parameter's
    own (its diagonal term of the prior's precision against its expected information per patient).
    """

    total: float
    log_a: float
    log_b: float
    information_per_patient: tuple[float, float]  # expected, per hypothetical patient: (log a, log b)
    prior_information: tuple[float, float]  # diagonal of the prior's precision: (log a, log b)
    vague_factor: float = MTM_VAGUE_FACTOR

    def to_dict(self) -> dict[str, Any]:
        return {"total": self.total, "log_a": self.log_a, "log_b": self.log_b,
                "information_per_patient": list(self.information_per_patient),
                "prior_information": list(self.prior_information), "vague_factor": self.vague_factor}


def morita_thall_mueller_ess(prior: BivariateNormalPrior, doses, reference_dose: float, *,
                             prior_mean_p_dlt, dose_weights=None,
                             vague_factor: float = MTM_VAGUE_FACTOR) -> MoritaThallMuellerESS:
    """ESS of a bivariate normal prior on ``(log a, log b)`` by Morita, Thall & Mueller (2008).

    Parameters
    ----------
    prior
        The prior of the BLRM ``logit P(DLT) = log a + exp(log b) log(dose / reference_dose)``.
    doses, reference_dose
        The doses the hypothetical patients get (the spec's levels), in the spec's unit.
    prior_mean_p_dlt
        The prior mean of P(DLT) at each dose: a hypothetical patient's expected DLT (the
        information about ``log b`` depends on the outcome, averaged over the prior predictive).
    dose_weights
        Share of the hypothetical patients at each dose (default: evenly spread).
    vague_factor
        The vague prior's variances are the prior's times this.

    Notes
    -----
    With ``theta = (log a, log b)`` at the prior mean, slope ``s = exp(log b)``, ``x = log(d / d*)``
    and ``p = P(DLT | theta, x)``, one patient with outcome ``y`` adds ``p (1 - p)`` to minus the
    second derivative in ``log a`` and ``p (1 - p) (s x)^2 - (y - p) s x`` in ``log b``; ``y`` is
    averaged over the prior predictive (its mean is the prior mean of P(DLT) at ``x``). A bivariate
    normal prior's information is its precision, the same everywhere.
    """
    x = np.log(np.asarray(doses, dtype=float) / float(reference_dose))
    weights = np.full(x.size, 1.0 / x.size) if dose_weights is None else np.asarray(dose_weights, dtype=float)
    weights = weights / weights.sum()
    log_a, log_b = prior.mean
    slope = np.exp(log_b)
    p_at_mean = expit(log_a + slope * x)
    expected_dlt = np.asarray(prior_mean_p_dlt, dtype=float)
    information_log_a = float(weights @ (p_at_mean * (1.0 - p_at_mean)))
    information_log_b = float(weights @ (p_at_mean * (1.0 - p_at_mean) * (slope * x) ** 2
                                         - (expected_dlt - p_at_mean) * slope * x))
    precision = np.diag(np.linalg.inv(prior.covariance))
    # the prior's information beyond the vague prior's: what the hypothetical patients must supply
    needed = precision * (1.0 - 1.0 / vague_factor)

    def ratio(numerator: float, denominator: float) -> float:
        return float(numerator / denominator) if denominator > 0 else float("inf")

    return MoritaThallMuellerESS(
        total=ratio(needed.sum(), information_log_a + information_log_b),
        log_a=ratio(needed[0], information_log_a), log_b=ratio(needed[1], information_log_b),
        information_per_patient=(information_log_a, information_log_b),
        prior_information=(float(precision[0]), float(precision[1])), vague_factor=vague_factor)


def interval_key(name: str) -> str:
    """The JSON key of a toxicity interval's probability: ``'excessive'`` -> ``'p_excessive'``."""
    return "p_" + (re.sub(r"[^0-9a-z]+", "_", name.lower()).strip("_") or "interval")


# ---- quantiles and variance of P(DLT), for either kind of prior -----------------------------------


def _exact_quantiles(posterior: ExactPosterior, probabilities) -> np.ndarray:
    """(doses, quantiles): each quantile solves P(P(DLT) >= t) = 1 - q on the cell-integrated
    quadrature (second-order accurate; the grid's node rule is first-order only)."""
    blrm = posterior.blrm
    out = np.empty((posterior.doses.size, len(probabilities)))
    for level, dose in enumerate(posterior.doses):
        def above_minus(z: float, q: float, dose=dose) -> float:
            return float(blrm.probability_at_least(np.array([dose]), float(expit(z)))[0]) - (1.0 - q)

        for k, q in enumerate(probabilities):
            out[level, k] = expit(brentq(above_minus, -40.0, 40.0, args=(q,), xtol=1e-9))
    return out


def _exact_variance(posterior: ExactPosterior) -> np.ndarray:
    """Prior variance of P(DLT) per dose from the quadrature's nodes and weights."""
    blrm = posterior.blrm
    p = blrm.p_dlt(posterior.doses)[0]  # (nodes, doses): one data set
    weights = blrm.weights[0]
    mean = weights @ p
    return weights @ p**2 - mean**2


def _weighted_quantiles(values: np.ndarray, weights: np.ndarray, probabilities) -> np.ndarray:
    """(doses, quantiles) of weighted draws ``values`` (draws, doses), midpoint rule."""
    out = np.empty((values.shape[1], len(probabilities)))
    for level in range(values.shape[1]):
        order = np.argsort(values[:, level])
        sorted_values, sorted_weights = values[order, level], weights[order]
        cumulative = np.cumsum(sorted_weights) - 0.5 * sorted_weights
        out[level] = np.interp(probabilities, cumulative, sorted_values)
    return out


def _quantiles_and_variance(posterior: ExactPosterior | DrawsPosterior) -> tuple[np.ndarray, np.ndarray]:
    if isinstance(posterior, ExactPosterior):
        return _exact_quantiles(posterior, QUANTILES), _exact_variance(posterior)
    values, weights = posterior.values["p_dlt"], posterior.weights
    mean = weights @ values
    return _weighted_quantiles(values, weights, QUANTILES), weights @ values**2 - mean**2


# ---- the summary ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class DltPriorSummary:
    """The DLT prior per dose before any patient (see the module docstring); ``rows`` has one row per level.

    Columns of ``rows``: ``level`` (from 1), ``dose``, ``dose_label``, ``p_dlt_mean``, ``p_dlt_sd``,
    ``p_dlt_median``, ``p_dlt_q5``, ``p_dlt_q95``, one ``p_<interval>`` per toxicity interval
    (:func:`interval_key`), ``p_overdose`` (the probability EWOC limits), ``ewoc_allows``,
    ``ess_moment_matched_beta``.
    """

    spec: TrialSpec
    rows: pd.DataFrame
    source: str
    computation: str
    probability_error: float
    probability_error_kind: str
    ewoc: RuleVerdict
    ewoc_limit: float
    ess_whole_prior: MoritaThallMuellerESS | None = None
    ess_whole_prior_missing: str = ""
    notes: tuple[str, ...] = field(default_factory=tuple)
    model: str = "blrm"
    seed: int | None = None

    @property
    def interval_keys(self) -> list[str]:
        return [interval_key(name) for name in self.spec.dlt.intervals.names]

    @property
    def from_spec_prior(self) -> bool:
        return self.source == SPEC_PRIOR

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: the rows (levels from 1), the prior's source, the methods, EWOC's verdict."""
        intervals = self.spec.dlt.intervals
        return {
            "model": self.model,
            "trial_id": self.spec.trial.id,
            "source": self.source,
            "seed": self.seed,
            "computation": self.computation,
            "probability_error": {"largest": self.probability_error, "kind": self.probability_error_kind},
            "methods": {
                "p_dlt": self.computation,
                "ewoc": f"EWOC rule: allowed when P({intervals.overdose}) < {self.ewoc_limit:g}",
                "ess_moment_matched_beta": MOMENT_MATCHED_BETA_METHOD,
                "ess_morita_thall_mueller": MORITA_THALL_MUELLER_METHOD,
            },
            "intervals": [{"name": name, "key": interval_key(name), "lower": low, "upper": high}
                          for name, (low, high) in zip(intervals.names, intervals.bounds, strict=True)],
            "overdose_interval": intervals.overdose,
            "ewoc": {"limit": self.ewoc_limit, "verdict": self.ewoc.verdict,
                     "allowed_levels": sorted(level + 1 for level in (self.ewoc.allowed or ())),
                     "close_calls": list(self.ewoc.close_calls)},
            "ess_morita_thall_mueller": None if self.ess_whole_prior is None else self.ess_whole_prior.to_dict(),
            "ess_morita_thall_mueller_missing": self.ess_whole_prior_missing or None,
            "doses": [{key: (value.item() if isinstance(value, np.generic) else value) for key, value in row.items()}
                      for row in self.rows.to_dict(orient="records")],
            "notes": list(self.notes),
            "levels_count_from": 1,
        }


def spec_prior_posterior(spec: TrialSpec) -> ExactPosterior:
    """The spec's DLT prior as ``decide`` reads it for a one-study BLRM: the exact BLRM with no patient."""
    zeros = np.zeros(len(spec.dosing.levels))
    return exact_blrm(spec.dosing.levels, zeros, zeros, prior=spec.models.blrm.prior,
                      reference_dose=spec.dosing.reference_dose, source="exact BLRM (quadrature)")


def dlt_prior_summary(spec: TrialSpec, prior: ExactPosterior | DrawsPosterior | None = None, *,
                      source: str = SPEC_PRIOR, notes: tuple[str, ...] = (),
                      seed: int | None = None) -> DltPriorSummary:
    """Per dose: the DLT prior's mean, median, 90% interval, interval probabilities, EWOC's verdict, ESS.

    Parameters
    ----------
    prior
        The trial's P(DLT) before any patient: None for the spec's ``[model.blrm.prior]`` by
        quadrature (:func:`spec_prior_posterior`), or the draws of a fit of co-data (the prior
        ``decide`` reads then).
    source
        What the prior is, said with the numbers: :data:`SPEC_PRIOR`, or e.g. ``"EXNEX given co-data: ..."``.

    Notes
    -----
    EWOC's verdict is the :class:`~lupusbayes.decisions.rules.Ewoc` rule with the spec's
    ``[decision] max_overdose_probability`` on a trial with no patient.

    Examples
    --------
    >>> import lupusbayes as lb
    >>> summary = dlt_prior_summary(lb.load_spec("kn5601"))
    >>> summary.rows[["level", "p_dlt_median", "ewoc_allows"]].round(3).values.tolist()[0]
    [1, 0.014, True]
    """
    posterior = spec_prior_posterior(spec) if prior is None else prior
    levels = np.asarray(spec.dosing.levels, dtype=float)
    intervals = spec.dlt.intervals
    limit = spec.decision.max_overdose_probability
    empty = state_from_counts(spec, np.zeros(levels.size, dtype=int), np.zeros(levels.size, dtype=int),
                              source="no patient yet")
    ewoc = Ewoc(limit).evaluate(DecisionContext(spec, empty, toxicity=posterior))
    means = [estimate.value for estimate in posterior.mean("p_dlt")]
    probabilities = interval_probabilities(posterior, intervals.edges)  # per level, per interval: as the rules
    quantiles, variance = _quantiles_and_variance(posterior)
    overdose = {check.level_index: check.estimate for check in ewoc.checks}
    rows = []
    for level, dose in enumerate(levels):
        row = {"level": level + 1, "dose": float(dose), "dose_label": dose_label(dose, spec.dosing.unit.value),
               "p_dlt_mean": means[level], "p_dlt_sd": float(np.sqrt(max(variance[level], 0.0))),
               "p_dlt_median": float(quantiles[level, 1]), "p_dlt_q5": float(quantiles[level, 0]),
               "p_dlt_q95": float(quantiles[level, 2])}
        row |= {interval_key(name): float(probabilities[level][k].value) for k, name in enumerate(intervals.names)}
        row |= {"p_overdose": float(overdose[level].value), "ewoc_allows": bool(level in ewoc.allowed),
                "ess_moment_matched_beta": float(moment_matched_beta_ess(means[level], variance[level]))}
        rows.append(row)
    table = pd.DataFrame(rows)
    errors = [estimate.error for row in probabilities for estimate in row]
    if isinstance(posterior, ExactPosterior):
        computation = "exact BLRM by quadrature (no MCMC)"
        error, error_kind = QUADRATURE_ERROR, "quadrature error bound"
    else:
        computation = f"{len(posterior.weights)} MCMC draws of the trial's P(DLT) from the fit {posterior.source}"
        error, error_kind = float(max(errors)), "largest Monte Carlo standard error"
    whole, missing = None, ""
    if isinstance(posterior, ExactPosterior) and isinstance(posterior.prior, BivariateNormalPrior):
        whole = morita_thall_mueller_ess(posterior.prior, levels, spec.dosing.reference_dose,
                                         prior_mean_p_dlt=table["p_dlt_mean"].to_numpy())
    else:
        missing = ("not computed: implemented for a bivariate normal prior on (log a, log b); this prior is "
                   + ("a mixture" if isinstance(posterior, ExactPosterior) else "held as MCMC draws, with no density"))
    design_notes = ()
    if spec.decision.design not in ("lupusbayes", "blrm_ewoc"):
        design_notes = (f"the spec's design ({spec.decision.design}) does not apply EWOC: its verdict is shown for "
                        "reference",)
    return DltPriorSummary(spec=spec, rows=table, source=source, computation=computation, probability_error=error,
                           probability_error_kind=error_kind, ewoc=ewoc, ewoc_limit=limit, ess_whole_prior=whole,
                           ess_whole_prior_missing=missing,
                           notes=tuple(notes) + tuple(posterior.notes) + design_notes + tuple(ewoc.close_calls),
                           seed=seed)
