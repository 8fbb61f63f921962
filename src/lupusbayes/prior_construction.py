"""Constructing the DLT prior of the BLRM, each with what it implies per dose and its effective sample size.

The BLRM is ``logit P(DLT at d) = log a + exp(log b) log(d / d*)`` with a bivariate normal prior on
``(log a, log b)`` or a mixture of them (``[model.blrm.prior]``, docs/spec-format.md). Constructions:

* :func:`minimal_informative_prior`: Neuenschwander, Branson & Gsponer (2008, Stat Med 27:2420,
  appendix A.1), as crmPack's ``MinimalInformative`` (R/fromQuantiles.R) implements it. At the lowest
  dose ``d_1``, the minimal informative unimodal Beta with ``P(P(DLT) > q_1) = 1 - p_1`` (default
  ``q_1 = 0.2``, probability 0.05); at the highest ``d_J``, the one with ``P(P(DLT) < q_J) = p_J``
  (default 0.3, 0.05). Their medians are joined by a straight line on the logit / log-dose scale; at
  every dose the minimal informative Beta with that median gives a 95% interval; and a bivariate
  normal on ``(log a, log b)`` is fitted to all the medians and interval ends (crmPack's
  ``Quantiles2LogisticNormal`` with ``logNormal = TRUE``: the smallest largest absolute difference).
  **Pitfall**, by construction: ``P(P(DLT at d_J) > q_J) = 1 - p_J`` (0.95): the top dose's prior is
  pessimistic (median P(DLT) 0.76 with the defaults), and a straight line of medians leaves the slope
  almost nothing to be uncertain about, so its SD can collapse (0.07 on ``log b`` for AXA-NK02's doses).
  Both numbers are computed for the result and returned as its ``warnings``.
* :func:`robust_mixture_prior`: an informative bivariate normal (e.g. :func:`codata_map_prior`, the
  meta-analytic-predictive (MAP) prior of a new study given co-data, summarised by one bivariate
  normal) mixed with a weakly informative one of weight :data:`ROBUST_WEIGHT` (0.1), as RBesT's
  ``robustify`` does for one parameter (Schmidli et al. 2014, Biometrics 70:1023): under prior-data
  conflict the posterior moves to the weakly informative component.
* :func:`heterogeneity_classes_table`: for each OncoBayes2 heterogeneity class
  (:data:`~lupusbayes.spec.HETEROGENEITY_PRESETS`), the between-study SDs ``tau`` (median and 90%
  interval) and how much a new study can borrow: the ESS of its prior if co-data had fixed the
  population mean exactly (the ceiling), and with co-data the ESS of its MAP prior.

P(DLT) per dose is computed by Gauss-Hermite quadrature, not by sampling: given ``log b`` the linear
predictor ``eta = log a + exp(log b) x`` is normal, so ``P(eta <= t)`` is a one-dimensional integral of
a normal CDF over ``log b``; its quantiles are found by bisection; the mean and variance of P(DLT)
are two-dimensional integrals. A mixture's CDF and moments are the weighted sums of its components'.

Effective sample size (ESS), in patients, per dose: the moment-matched Beta
(:func:`~lupusbayes.decisions.prior_summary.moment_matched_beta_ess`, RBesT ``ess(method = "moment")``);
for a bivariate normal also the whole prior's by Morita, Thall & Mueller (2008)
(:func:`~lupusbayes.decisions.prior_summary.morita_thall_mueller_ess`). A mixture's ESS is ill-defined:
RBesT's ``ess()`` gives different numbers by method (``moment``, ``morita``, ``elir``), and the moment
method used here summarises the mixture by two moments, which hides the heavy tails its robustness
rests on.
"""

from __future__ import annotations

import math
import textwrap
import warnings as python_warnings
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd
from scipy.optimize import least_squares, minimize
from scipy.special import expit, logit, ndtr
from scipy.stats import beta as beta_distribution

from lupusbayes.decisions.prior_summary import (
    MOMENT_MATCHED_BETA_METHOD,
    MORITA_THALL_MUELLER_METHOD,
    MoritaThallMuellerESS,
    moment_matched_beta_ess,
    morita_thall_mueller_ess,
)
from lupusbayes.dosing import dose_label
from lupusbayes.errors import PriorConstructionError, PriorConstructionWarning
from lupusbayes.spec import HETEROGENEITY_PRESETS, BivariateNormalMixture, BivariateNormalPrior, Heterogeneity, TrialSpec

__all__ = ["ConstructedPrior", "constructed_prior", "minimal_informative_prior", "minimal_informative_beta",
           "median_line", "robust_mixture_prior", "weakly_informative_prior", "CodataMapPrior", "codata_map_prior",
           "heterogeneity_classes_table", "construct_prior", "METHODS", "ROBUST_WEIGHT", "WEAKLY_INFORMATIVE_SD",
           "SLOPE_SD_COLLAPSED", "MIXTURE_ESS_CAVEAT"]

#: The weakly informative component's weight in :func:`robust_mixture_prior` (RBesT's examples use 0.1-0.2).
ROBUST_WEIGHT = 0.1
#: SDs of the weakly informative component on (log a, log b): OncoBayes2's weakly informative BLRM prior.
WEAKLY_INFORMATIVE_SD = (2.0, 1.0)
#: A prior SD of ``log b`` below this counts as collapsed: the median between-study SD of ``log b`` under
#: "substantial" heterogeneity, i.e. the slope is surer a priori than two studies' slopes are expected to agree.
SLOPE_SD_COLLAPSED = HETEROGENEITY_PRESETS["substantial"][1]
#: The construction methods of :func:`construct_prior` (and ``lupusbayes construct-prior --method``).
METHODS = ("minimal-informative", "robust-mixture")
#: The probabilities of the interval ends crmPack fits (a 95% interval) and of the interval shown (90%).
_FITTED_QUANTILES = (0.025, 0.5, 0.975)
_SHOWN_QUANTILES = (0.05, 0.5, 0.95)
#: crmPack's bounds on (mean log a, mean log b, SD log a, SD log b, correlation), the SDs kept positive.
_LOWER_BOUNDS = np.array([-10.0, -10.0, 1e-3, 1e-3, -0.95])
_UPPER_BOUNDS = np.array([10.0, 10.0, 10.0, 10.0, 0.95])
_DECIMALS = 4  # the constructed prior is rounded so that its TOML block is exactly the prior summarised
MIXTURE_ESS_CAVEAT = (
    "a mixture's ESS is ill-defined: RBesT's ess() gives different numbers by method (moment, morita, elir); "
    "the moment-matched Beta used here summarises the mixture by its mean and variance, which hides the heavy "
    "tails its robustness rests on")
_NODES, _NODE_WEIGHTS = np.polynomial.hermite_e.hermegauss(64)
_NODE_WEIGHTS = _NODE_WEIGHTS / _NODE_WEIGHTS.sum()  # E f(Z), Z ~ N(0, 1) = sum w f(z)
_NODES_2D, _NODE_WEIGHTS_2D = np.polynomial.hermite_e.hermegauss(40)
_NODE_WEIGHTS_2D = _NODE_WEIGHTS_2D / _NODE_WEIGHTS_2D.sum()


# ---- P(DLT) per dose under a prior, by Gauss-Hermite quadrature --------------------------------------


def _log_relative_dose(doses, reference_dose: float) -> np.ndarray:
    return np.log(np.asarray(doses, dtype=float) / float(reference_dose))


def _eta_cdf(prior: BivariateNormalPrior | BivariateNormalMixture, x: np.ndarray, t: np.ndarray) -> np.ndarray:
    """``P(eta <= t)`` for ``eta = log a + exp(log b) x``: ``x`` (D,), ``t`` (D, Q) -> (D, Q).

    Given ``log b = m_b + s_b z``, ``log a`` is normal with mean ``m_a + r s_a z`` and SD
    ``s_a sqrt(1 - r^2)``, so ``P(eta <= t) = E_z Phi((t - m_a - r s_a z - exp(m_b + s_b z) x) / (s_a sqrt(1 - r^2)))``.
    """
    total = np.zeros_like(t, dtype=float)
    for weight, c in zip(prior.weights, prior.components, strict=True):
        centre = c.mean_log_a + c.correlation * c.sd_log_a * _NODES[:, None] + np.exp(
            c.mean_log_b + c.sd_log_b * _NODES)[:, None] * x[None, :]  # (nodes, D)
        spread = c.sd_log_a * math.sqrt(1.0 - c.correlation**2)
        total += weight * np.einsum("n,ndq->dq", _NODE_WEIGHTS, ndtr((t[None] - centre[..., None]) / spread))
    return total


def _p_dlt_quantiles(prior, x: np.ndarray, probabilities) -> np.ndarray:
    """Quantiles of P(DLT) per dose: (D, Q), by bisection on the logit scale (to 1e-12 on [-40, 40])."""
    wanted = np.broadcast_to(np.asarray(probabilities, dtype=float), (x.size, len(probabilities)))
    low, high = np.full(wanted.shape, -40.0), np.full(wanted.shape, 40.0)
    for _ in range(46):
        middle = 0.5 * (low + high)
        below = _eta_cdf(prior, x, middle) < wanted
        low, high = np.where(below, middle, low), np.where(below, high, middle)
    return expit(0.5 * (low + high))


def _p_dlt_above(prior, x: np.ndarray, threshold: float) -> np.ndarray:
    """``P(P(DLT) > threshold)`` per dose."""
    return 1.0 - _eta_cdf(prior, x, np.full((x.size, 1), logit(threshold)))[:, 0]


def _p_dlt_moments(prior, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and variance of P(DLT) per dose, by a 40 x 40 Gauss-Hermite rule per component."""
    z = np.stack(np.meshgrid(_NODES_2D, _NODES_2D, indexing="ij"), axis=-1).reshape(-1, 2)
    w = np.outer(_NODE_WEIGHTS_2D, _NODE_WEIGHTS_2D).ravel()
    first, second = np.zeros(x.size), np.zeros(x.size)
    for weight, c in zip(prior.weights, prior.components, strict=True):
        theta = c.mean + z @ c.cholesky.T
        p = expit(theta[:, :1] + np.exp(theta[:, 1:]) * x[None, :])
        first += weight * (w @ p)
        second += weight * (w @ p**2)
    return first, second - first**2


# ---- the result ------------------------------------------------------------------------------------------


def _rounded(prior: BivariateNormalPrior) -> BivariateNormalPrior:
    return BivariateNormalPrior(*(round(float(v), _DECIMALS) for v in (
        prior.mean_log_a, prior.mean_log_b, prior.sd_log_a, prior.sd_log_b, prior.correlation)))


def _toml_keys(prior: BivariateNormalPrior) -> list[str]:
    return [f"mean_log_a = {prior.mean_log_a!r}", f"sd_log_a = {prior.sd_log_a!r}",
            f"mean_log_b = {prior.mean_log_b!r}", f"sd_log_b = {prior.sd_log_b!r}",
            f"correlation = {prior.correlation!r}"]


def _prior_dict(prior: BivariateNormalPrior | BivariateNormalMixture) -> dict[str, Any]:
    def keys(c: BivariateNormalPrior) -> dict[str, float]:
        return {"mean_log_a": c.mean_log_a, "sd_log_a": c.sd_log_a, "mean_log_b": c.mean_log_b,
                "sd_log_b": c.sd_log_b, "correlation": c.correlation}

    if isinstance(prior, BivariateNormalPrior):
        return keys(prior)
    return {"components": [{"weight": w} | keys(c) for w, c in zip(prior.weights, prior.components, strict=True)]}


@dataclass(frozen=True)
class ConstructedPrior:
    """A constructed DLT prior and what it implies per dose (see the module docstring).

    ``per_dose`` has one row per dose: ``level`` (from 1), ``dose``, ``p_dlt_mean``, ``p_dlt_sd``,
    ``p_dlt_q5``, ``p_dlt_median``, ``p_dlt_q95``, ``p_overdose`` (``P(P(DLT) >= overdose_threshold)``,
    when one is given) and ``ess_moment_matched_beta``; a minimal informative prior adds the quantiles
    it was fitted to (``required_*``) and its own (``fitted_*``). ``warnings`` are the construction's
    pitfalls, with their numbers; ``nex_prior`` is a bivariate normal NEX prior the spec needs next to
    a mixture (EXNEX cannot take a mixture there).
    """

    method: str
    prior: BivariateNormalPrior | BivariateNormalMixture
    doses: tuple[float, ...]
    reference_dose: float
    per_dose: pd.DataFrame
    ess_method: str
    ess_whole_prior: MoritaThallMuellerESS | None = None
    warnings: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    sources: tuple[str, ...] = ()
    details: dict = field(default_factory=dict, compare=False)
    overdose_threshold: float | None = None
    nex_prior: BivariateNormalPrior | None = None

    def toml(self) -> str:
        """The ``[model.blrm.prior]`` block (a mixture: ``[[model.blrm.prior.components]]`` tables) to paste
        into a spec in place of its own, and ``[model.blrm.nex_prior]`` when :attr:`nex_prior` is set."""
        if isinstance(self.prior, BivariateNormalPrior):
            lines = ["[model.blrm.prior]", *_toml_keys(self.prior)]
        else:
            lines = []
            for weight, component in zip(self.prior.weights, self.prior.components, strict=True):
                lines += ["[[model.blrm.prior.components]]", f"weight = {weight!r}", *_toml_keys(component), ""]
            lines = lines[:-1]
        if self.nex_prior is not None:
            lines += ["", "[model.blrm.nex_prior]", *_toml_keys(self.nex_prior)]
        return "\n".join(lines) + "\n"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: the prior's keys, its TOML block, the per-dose rows (levels from 1), the ESS and warnings."""
        return {
            "method": self.method, "prior": _prior_dict(self.prior),
            "nex_prior": None if self.nex_prior is None else _prior_dict(self.nex_prior), "toml": self.toml(),
            "reference_dose": self.reference_dose, "overdose_threshold": self.overdose_threshold,
            "per_dose": [{key: (value.item() if isinstance(value, np.generic) else value) for key, value in row.items()}
                         for row in self.per_dose.to_dict(orient="records")],
            "ess": {"per_dose_method": self.ess_method,
                    "morita_thall_mueller": None if self.ess_whole_prior is None else self.ess_whole_prior.to_dict(),
                    "morita_thall_mueller_method": MORITA_THALL_MUELLER_METHOD if self.ess_whole_prior else None},
            "warnings": list(self.warnings), "notes": list(self.notes), "sources": list(self.sources),
            "details": self.details, "levels_count_from": 1,
        }

    def text(self, *, dose_unit: str = "") -> str:
        """The TOML block, then everything else as TOML comments (the whole text is a spec fragment);
        ``dose_unit`` labels the doses (e.g. ``"cells/kg"``)."""
        table = self.per_dose
        shown = pd.DataFrame({
            "dose": [dose_label(dose, dose_unit) if dose_unit else f"{dose:g}" for dose in table["dose"]],
            "mean": table["p_dlt_mean"].map(lambda v: f"{v:.3f}"),
            "median": table["p_dlt_median"].map(lambda v: f"{v:.3f}"),
            "90% interval": [f"[{low:.2g}, {high:.2g}]"
                             for low, high in zip(table["p_dlt_q5"], table["p_dlt_q95"], strict=True)],
        })
        if self.overdose_threshold is not None:
            shown[f"P(>= {self.overdose_threshold:g})"] = table["p_overdose"].map(lambda v: f"{v:.3f}")
        shown["ESS"] = table["ess_moment_matched_beta"].map(lambda v: f"{v:.1f}")
        if "required_median" in table:
            for kind, name in (("required", "fitted to"), ("fitted", "fitted")):
                shown[f"{name}: 2.5/50/97.5%"] = [
                    "/".join(f"{v:.3f}" for v in row)
                    for row in table[[f"{kind}_q2_5", f"{kind}_median", f"{kind}_q97_5"]].to_numpy()]
        overdose = f", P(P(DLT) >= {self.overdose_threshold:g})" if self.overdose_threshold is not None else ""
        lines = [*_comment(self.method), *(line for source in self.sources for line in _comment(f"source: {source}")),
                 "# paste in place of the spec's [model.blrm.prior]", self.toml().rstrip("\n"), "",
                 *_comment(f"What it implies per dose: P(DLT) prior mean, median and 90% interval{overdose}, "
                           "prior effective sample size (ESS, patients)"),
                 *(f"#   {line}" for line in shown.to_string(index=False).splitlines()),
                 *_comment(f"ESS per dose: {self.ess_method}")]
        if self.ess_whole_prior is not None:
            whole = self.ess_whole_prior
            lines += _comment(f"ESS of the whole prior: {whole.total:.1f} patients (log a {whole.log_a:.1f}, log b "
                              f"{whole.log_b:.1f}), {MORITA_THALL_MUELLER_METHOD}")
        for kind, messages in (("warning", self.warnings), ("note", self.notes)):
            lines += [line for message in messages for line in _comment(f"{kind}: {message}")]
        return "\n".join(lines) + "\n"


def _comment(text: str) -> list[str]:
    """``text`` as TOML comment lines of at most 100 characters."""
    return textwrap.wrap(text, width=100, initial_indent="# ", subsequent_indent="#   ", break_long_words=False,
                         break_on_hyphens=False)


def constructed_prior(prior: BivariateNormalPrior | BivariateNormalMixture, doses, reference_dose: float, *,
                      method: str, overdose_threshold: float | None = None, warnings: Sequence[str] = (),
                      notes: Sequence[str] = (), sources: Sequence[str] = (), details: dict | None = None,
                      extra_columns: dict | None = None, nex_prior: BivariateNormalPrior | None = None
                      ) -> ConstructedPrior:
    """What ``prior`` implies at ``doses``: P(DLT) mean, SD, 5% / 50% / 95% quantiles, ``P(P(DLT) >= overdose_threshold)``
    and the ESS (moment-matched Beta per dose; Morita-Thall-Mueller for a bivariate normal), as a :class:`ConstructedPrior`.

    Examples
    --------
    >>> result = constructed_prior(BivariateNormalPrior(-2.944, 0.0, 1.5, 0.8), [2.5e7, 7.5e7, 2.5e8], 7.5e7,
    ...                            method="the shipped AXA-NK02 prior")
    >>> result.per_dose["p_dlt_median"].round(3).tolist()
    [0.014, 0.05, 0.185]
    """
    x = _log_relative_dose(doses, reference_dose)
    mean, variance = _p_dlt_moments(prior, x)
    quantiles = _p_dlt_quantiles(prior, x, _SHOWN_QUANTILES)
    table = pd.DataFrame({"level": np.arange(1, x.size + 1), "dose": np.asarray(doses, dtype=float),
                          "p_dlt_mean": mean, "p_dlt_sd": np.sqrt(np.maximum(variance, 0.0)),
                          "p_dlt_q5": quantiles[:, 0], "p_dlt_median": quantiles[:, 1], "p_dlt_q95": quantiles[:, 2]})
    if overdose_threshold is not None:
        table["p_overdose"] = _p_dlt_above(prior, x, overdose_threshold)
    table["ess_moment_matched_beta"] = moment_matched_beta_ess(mean, variance)
    for name, values in (extra_columns or {}).items():
        table[name] = values
    if isinstance(prior, BivariateNormalPrior):
        whole = morita_thall_mueller_ess(prior, doses, reference_dose, prior_mean_p_dlt=mean)
        ess_method = MOMENT_MATCHED_BETA_METHOD
    else:
        whole = None
        ess_method = ("moment-matched Beta of the mixture's P(DLT) at each dose (RBesT ess(method = 'moment')): "
                      f"a + b = m(1 - m)/v - 1; caveat: {MIXTURE_ESS_CAVEAT}")
    return _warned(ConstructedPrior(method, prior, tuple(float(d) for d in doses), float(reference_dose), table,
                                    ess_method, whole, tuple(warnings), tuple(notes), tuple(sources),
                                    dict(details or {}), overdose_threshold, nex_prior))


def _warned(result: ConstructedPrior) -> ConstructedPrior:
    """``result``, each of its warnings issued as a :class:`~lupusbayes.errors.PriorConstructionWarning`."""
    for message in result.warnings:
        python_warnings.warn(message, PriorConstructionWarning, stacklevel=3)
    return result


# ---- the minimal informative prior --------------------------------------------------------------------------


def minimal_informative_beta(probability: float, quantile: float) -> tuple[float, float]:
    """``(a, b)`` of the minimal informative unimodal Beta with ``P(X <= quantile) = probability``.

    Neuenschwander, Branson & Gsponer (2008), appendix A.1: ``Beta(a, 1)`` (CDF ``x^a``) with
    ``a = log p / log q`` when ``q > p``, else ``Beta(1, b)`` (CDF ``1 - (1 - x)^b``) with
    ``b = log(1 - p) / log(1 - q)``.

    Examples
    --------
    >>> [round(v, 4) for v in minimal_informative_beta(0.2, 0.5)]  # crmPack's test: a = 2.322, b = 1
    [2.3219, 1.0]
    >>> [round(v, 4) for v in minimal_informative_beta(0.7, 0.1)]  # a = 1, b = 11.4272
    [1.0, 11.4272]
    """
    if not (0 < probability < 1 and 0 < quantile < 1):
        raise PriorConstructionError(f"a probability and a quantile strictly between 0 and 1 are needed "
                                     f"(got {probability:g} and {quantile:g})")
    if quantile > probability:
        return math.log(probability) / math.log(quantile), 1.0
    return 1.0, math.log(1.0 - probability) / math.log(1.0 - quantile)


def median_line(doses, reference_dose: float, medians) -> tuple[float, float]:
    """``(log a, log b)`` of the BLRM curve through prior medians of P(DLT): least squares of
    ``logit(median)`` on ``log(dose / reference_dose)`` (crmPack's starting values).

    Examples
    --------
    >>> [round(v, 5) for v in median_line([1, 3, 5, 10], 5, [0.1, 0.2, 0.3, 0.4])]  # crmPack's test
    [-0.92619, -0.23208]
    """
    slope, intercept = np.polyfit(_log_relative_dose(doses, reference_dose), logit(np.asarray(medians, float)), 1)
    if not slope > 0:
        raise PriorConstructionError(f"the medians fall with dose (slope {slope:.3g} on the logit / log-dose scale): "
                                     "the BLRM's P(DLT) rises with dose")
    return float(intercept), float(math.log(slope))


def _fit_to_quantiles(x: np.ndarray, required: np.ndarray, start: np.ndarray) -> tuple[BivariateNormalPrior, float]:
    """The bivariate normal whose P(DLT) quantiles (2.5%, 50%, 97.5%) are nearest ``required`` (D, 3) in the largest
    absolute difference (crmPack's criterion): least squares first (smooth), then Nelder-Mead on the largest difference."""
    def prior_of(parameters) -> BivariateNormalPrior:
        return BivariateNormalPrior(*np.clip(parameters, _LOWER_BOUNDS, _UPPER_BOUNDS))

    def differences(parameters) -> np.ndarray:
        return (_p_dlt_quantiles(prior_of(parameters), x, _FITTED_QUANTILES) - required).ravel()

    smooth = least_squares(differences, np.clip(start, _LOWER_BOUNDS, _UPPER_BOUNDS),
                           bounds=(_LOWER_BOUNDS, _UPPER_BOUNDS))
    largest = minimize(lambda p: float(np.abs(differences(p)).max()), smooth.x, method="Nelder-Mead",
                       options={"maxiter": 4000, "xatol": 1e-6, "fatol": 1e-7})
    prior = _rounded(prior_of(largest.x))
    return prior, float(np.abs(differences([prior.mean_log_a, prior.mean_log_b, prior.sd_log_a, prior.sd_log_b,
                                            prior.correlation])).max())


def minimal_informative_prior(doses, reference_dose: float, *, threshold_lowest: float = 0.2,
                              threshold_highest: float = 0.3, probability_above_lowest: float = 0.05,
                              probability_below_highest: float = 0.05, overdose_threshold: float | None = None,
                              max_overdose_probability: float | None = None) -> ConstructedPrior:
    """The minimal informative BLRM prior of Neuenschwander, Branson & Gsponer (2008), as crmPack's ``MinimalInformative``.

    Parameters
    ----------
    doses, reference_dose
        The dose levels (at least two; only the lowest and highest set the prior) and ``d*``.
    threshold_lowest, probability_above_lowest
        At the lowest dose, ``P(P(DLT) > threshold_lowest) = probability_above_lowest`` (crmPack's
        ``threshmin``, ``probmin``; defaults 0.2 and 0.05).
    threshold_highest, probability_below_highest
        At the highest dose, ``P(P(DLT) < threshold_highest) = probability_below_highest`` (``threshmax``,
        ``probmax``; defaults 0.3 and 0.05).
    overdose_threshold, max_overdose_probability
        The spec's overdose edge and EWOC's limit: the per-dose ``P(P(DLT) >= overdose_threshold)`` is shown,
        and the levels whose prior EWOC closes are named in a warning.

    Returns
    -------
    ConstructedPrior
        Its ``warnings`` state the pitfall with this result's numbers: ``P(P(DLT at the top dose) >
        threshold_highest)`` (``1 - probability_below_highest`` by construction) and the slope's prior SD.

    Notes
    -----
    Medians: ``m_1``, ``m_J`` of the two Betas (:func:`minimal_informative_beta`), the line
    ``logit m(x) = logit m_1 + (logit m_J - logit m_1) (x - x_1) / (x_J - x_1)`` with ``x = log(d / d*)``;
    at each dose the minimal informative Beta with median ``m(x)`` gives the 2.5% and 97.5% quantiles.
    The fit starts where crmPack's does (:func:`median_line`, SDs 1, correlation 0) within crmPack's
    bounds (means within +/- 10, SDs up to 10, correlation within +/- 0.95). crmPack minimises the
    largest difference by simulated annealing on 10,000 Monte Carlo draws; here quadrature makes the
    criterion exact and deterministic, minimised by least squares then Nelder-Mead. The largest
    difference is returned in ``details["distance"]``.

    Examples
    --------
    >>> import warnings
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     result = minimal_informative_prior([2.5e7, 7.5e7, 2.5e8], 7.5e7)
    >>> len(caught), round(result.details["p_above_threshold_highest"], 3), result.prior.sd_log_b
    (2, 0.943, 0.0696)
    """
    doses = np.asarray(doses, dtype=float)
    if doses.ndim != 1 or doses.size < 2 or np.any(doses <= 0) or np.any(np.diff(doses) <= 0):
        raise PriorConstructionError("the minimal informative prior needs at least two positive, increasing doses")
    a_lowest, b_lowest = minimal_informative_beta(1.0 - probability_above_lowest, threshold_lowest)
    a_highest, b_highest = minimal_informative_beta(probability_below_highest, threshold_highest)
    median_lowest = float(beta_distribution.median(a_lowest, b_lowest))
    median_highest = float(beta_distribution.median(a_highest, b_highest))
    if not median_highest > median_lowest:
        raise PriorConstructionError(
            f"the thresholds put the median P(DLT) at the highest dose ({median_highest:.3g}) at or below the lowest "
            f"dose's ({median_lowest:.3g}): raise threshold_highest or lower threshold_lowest")
    x = _log_relative_dose(doses, reference_dose)
    slope = (logit(median_highest) - logit(median_lowest)) / (x[-1] - x[0])
    medians = expit(logit(median_lowest) + slope * (x - x[0]))
    required = np.empty((x.size, 3))
    for level, median in enumerate(medians):
        a, b = minimal_informative_beta(0.5, float(median))
        required[level] = (beta_distribution.ppf(0.025, a, b), median, beta_distribution.ppf(0.975, a, b))
    start = np.array([*median_line(doses, reference_dose, medians), 1.0, 1.0, 0.0])
    prior, distance = _fit_to_quantiles(x, required, start)
    fitted = _p_dlt_quantiles(prior, x, _FITTED_QUANTILES)
    top_above = float(_p_dlt_above(prior, x[-1:], threshold_highest)[0])
    lowest_above = float(_p_dlt_above(prior, x[:1], threshold_lowest)[0])
    columns = {f"{kind}_{name}": values[:, k] for kind, values in (("required", required), ("fitted", fitted))
               for k, name in enumerate(("q2_5", "median", "q97_5"))}
    result = constructed_prior(prior, doses, reference_dose, method="minimal informative prior (Neuenschwander, "
                               "Branson & Gsponer 2008, appendix A.1; crmPack MinimalInformative)",
                               overdose_threshold=overdose_threshold, extra_columns=columns)
    warnings = [
        f"pitfall: the top dose's prior is pessimistic by construction: P(P(DLT) > {threshold_highest:g}) = "
        f"{top_above:.3f} at the highest dose, {doses[-1]:g} (asked: {1 - probability_below_highest:g}), median "
        f"P(DLT) {fitted[-1, 1]:.3f}: the prior, not data, says the top dose is too toxic"]
    if overdose_threshold is not None and max_overdose_probability is not None:
        closed = result.per_dose[result.per_dose["p_overdose"] >= max_overdose_probability]
        if len(closed):
            warnings.append(
                f"before any data EWOC (limit {max_overdose_probability:g} on P(P(DLT) >= {overdose_threshold:g})) "
                "closes level " + ", ".join(f"{row.level} (P = {row.p_overdose:.3f})" for row in closed.itertuples())
                + ": only DLT-free patients below can open it")
    low, high = np.exp(prior.mean_log_b + np.array([-1.645, 1.645]) * prior.sd_log_b)
    collapsed = prior.sd_log_b < SLOPE_SD_COLLAPSED
    warnings.append(
        f"pitfall: the slope's prior SD on log b {'has collapsed to' if collapsed else 'is'} {prior.sd_log_b:.3g} (90% "
        f"range of b {low:.3g}-{high:.3g}; Morita-Thall-Mueller ESS of log b {result.ess_whole_prior.log_b:.0f} "
        f"patients, correlation {prior.correlation:g})"
        + (f": below {SLOPE_SD_COLLAPSED:g}, the median between-study SD of log b under 'substantial' heterogeneity, "
           "the prior fixes the dose-toxicity slope and the trial's data will hardly move it" if collapsed else ""))
    details = {"distance": distance, "median_lowest": median_lowest, "median_highest": median_highest,
               "beta_lowest": [a_lowest, b_lowest], "beta_highest": [a_highest, b_highest],
               "p_above_threshold_lowest": lowest_above, "p_above_threshold_highest": top_above,
               "start": start.tolist(), "slope_sd_collapsed": bool(collapsed),
               "settings": {"threshold_lowest": threshold_lowest, "threshold_highest": threshold_highest,
                            "probability_above_lowest": probability_above_lowest,
                            "probability_below_highest": probability_below_highest}}
    notes = (f"fitted to the 2.5%, 50% and 97.5% quantiles of P(DLT) at every dose: largest difference {distance:.3f}; "
             f"P(P(DLT) > {threshold_lowest:g}) = {lowest_above:.3f} at the lowest dose, {doses[0]:g} (asked: "
             f"{probability_above_lowest:g})",)
    sources = ("Neuenschwander B, Branson M, Gsponer T (2008) Stat Med 27:2420-2439, appendix A.1",
               "crmPack MinimalInformative and Quantiles2LogisticNormal (R/fromQuantiles.R)")
    return _warned(replace(result, warnings=tuple(warnings), notes=notes, sources=sources, details=details))


# ---- the robust mixture ----------------------------------------------------------------------------------


def weakly_informative_prior(informative: BivariateNormalPrior) -> BivariateNormalPrior:
    """The weakly informative component for ``informative``: its means, SDs :data:`WEAKLY_INFORMATIVE_SD`
    (2 on log a, 1 on log b: OncoBayes2's weakly informative BLRM prior), no correlation."""
    return BivariateNormalPrior(informative.mean_log_a, informative.mean_log_b, *WEAKLY_INFORMATIVE_SD)


def robust_mixture_prior(informative: BivariateNormalPrior, *, robust_weight: float = ROBUST_WEIGHT,
                         weakly_informative: BivariateNormalPrior | None = None) -> BivariateNormalMixture:
    """``(1 - robust_weight) x informative + robust_weight x weakly_informative``: a robust prior (RBesT's ``robustify``).

    Parameters
    ----------
    informative
        E.g. :func:`codata_map_prior`'s MAP prior, or the spec's ``[model.blrm.prior]``.
    robust_weight
        The weakly informative component's weight (default :data:`ROBUST_WEIGHT`, 0.1): the prior
        probability that the informative component does not apply.
    weakly_informative
        Default :func:`weakly_informative_prior` of ``informative`` (centred on it, SDs 2 and 1).

    Examples
    --------
    >>> mixture = robust_mixture_prior(BivariateNormalPrior(-2.9, 0.0, 0.5, 0.3))
    >>> mixture.weights, mixture.components[1].sd_log_a
    ((0.9, 0.1), 2.0)
    """
    if not isinstance(informative, BivariateNormalPrior):
        raise PriorConstructionError("the informative component must be one bivariate normal (the prior given is a "
                                     "mixture already)")
    if not 0 < robust_weight < 1:
        raise PriorConstructionError(f"robust_weight must be strictly between 0 and 1 (got {robust_weight:g})")
    weak = weakly_informative or weakly_informative_prior(informative)
    return BivariateNormalMixture((round(1.0 - robust_weight, 10), round(robust_weight, 10)),
                                  (_rounded(informative), _rounded(weak)))


@dataclass(frozen=True)
class CodataMapPrior:
    """The meta-analytic-predictive (MAP) prior of the trial given co-data, summarised by one bivariate normal.

    ``prior`` has the mean and covariance of the predictive draws of the trial's ``(log a, log b)``
    (``draws`` of them); ``largest_difference`` is the largest ``|P(P(DLT) >= t)|`` difference between the
    draws and ``prior`` over the spec's doses and interval edges (how well one normal summarises them).
    """

    prior: BivariateNormalPrior
    source: str
    draws: int
    largest_difference: float
    exchangeable_weight: float


def codata_map_prior(spec: TrialSpec, codata, *, seed: int, cache=None, progress=None, settings=None) -> CodataMapPrior:
    """The trial's MAP prior given ``codata`` (cohorts), from the MCMC fit :mod:`lupusbayes.fitting.codata` makes.

    The predictive draws of a new exchangeable study (``theta_ex`` of the spec's trial, which has no
    patients in the fit; :func:`~lupusbayes.fitting.codata.codata_predictive_draws`) summarised by one bivariate
    normal (:func:`~lupusbayes.fitting.codata.fit_normal_mixture` with one component). The simulator's co-data
    prior (:func:`~lupusbayes.fitting.codata.codata_priors`) keeps up to three components and mixes in the NEX
    prior with the EXNEX weight; here the robust part is :func:`robust_mixture_prior`'s, with a stated weight.

    Raises
    ------
    ConvergenceGateError
        The fit of the co-data failed its convergence gate.
    """
    from lupusbayes.fitting.codata import codata_predictive_draws, fit_normal_mixture

    predictive = codata_predictive_draws(spec, codata, seed=seed, progress=progress, cache=cache, settings=settings)
    mixture, _ = fit_normal_mixture(predictive.draws, seed=seed, max_components=1)
    prior = _rounded(mixture.components[0])
    x = _log_relative_dose(spec.dosing.levels, spec.dosing.reference_dose)
    p = expit(predictive.draws[:, :1] + np.exp(predictive.draws[:, 1:]) * x[None, :])
    edges = [edge for edge in spec.dlt.intervals.edges if 0.0 < edge < 1.0]
    largest = max(float(np.abs(np.mean(p > t, axis=0) - _p_dlt_above(prior, x, t)).max()) for t in edges)
    what = "pooled (log a, log b)" if predictive.hierarchy == "none" else f"{spec.trial.id}'s theta_ex"
    source = (f"MAP prior given co-data {predictive.source}: {what} from the fit {predictive.fit_name}, seed {seed}, "
              f"{len(p)} draws, summarised by one bivariate normal (largest P(P(DLT) >= t) difference {largest:.3f})")
    return CodataMapPrior(prior, source, len(p), largest, predictive.exchangeable_weight)


# ---- heterogeneity classes ------------------------------------------------------------------------------------


def _ceiling_ess(centre: np.ndarray, heterogeneity: Heterogeneity, x: np.ndarray) -> np.ndarray:
    """Moment-matched ESS per dose of ``theta ~ N(centre, diag(tau)^2)`` with ``tau_k ~ LogNormal`` (4-D Gauss-Hermite)."""
    nodes, weights = np.polynomial.hermite_e.hermegauss(16)
    weights = weights / weights.sum()
    grid = np.stack(np.meshgrid(nodes, nodes, nodes, nodes, indexing="ij"), axis=-1).reshape(-1, 4)
    w = np.einsum("i,j,k,l->ijkl", weights, weights, weights, weights).ravel()
    tau_a = heterogeneity.median_tau_log_a * np.exp(heterogeneity.log_sd * grid[:, 0])
    tau_b = heterogeneity.median_tau_log_b * np.exp(heterogeneity.log_sd * grid[:, 1])
    log_a, log_b = centre[0] + tau_a * grid[:, 2], centre[1] + tau_b * grid[:, 3]
    p = expit(log_a[:, None] + np.exp(log_b)[:, None] * x[None, :])
    mean = w @ p
    return moment_matched_beta_ess(mean, w @ p**2 - mean**2)


def heterogeneity_classes_table(spec: TrialSpec, *, codata=(), seed: int = 20251108, cache=None,
                                progress=None) -> pd.DataFrame:
    """Per OncoBayes2 heterogeneity class and dose of ``spec``: the between-study SDs and how much a new study borrows.

    Columns: ``heterogeneity`` (the preset), ``tau_log_a_median``, ``tau_log_a_q5``, ``tau_log_a_q95`` and the
    same for ``log b`` (the log-normal tau prior's median and 90% interval), ``level``, ``dose``,
    ``ess_ceiling`` and, with ``codata``, ``ess_codata_map``.

    * ``ess_ceiling``: the moment-matched Beta ESS of the new study's P(DLT) if the co-data had fixed the
      population mean exactly (at the spec prior's mean): ``theta_new ~ N(mu, diag(tau)^2)`` with tau from
      its prior. However many co-data patients there are, the new study borrows at most this much.
    * ``ess_codata_map``: the same ESS of the draws of the new study's exchangeable predictive given
      ``codata`` (one MCMC fit per class, the spec's ``[model.blrm]`` with that heterogeneity; under
      EXNEX the new study's prior mixes this with the NEX prior, which lowers it further).

    Examples
    --------
    >>> import lupusbayes as lb
    >>> table = heterogeneity_classes_table(lb.load_spec("axa_nk02"))
    >>> table[table["level"] == 2].set_index("heterogeneity")["ess_ceiling"].round(0).to_dict()
    {'small': 1015.0, 'moderate': 231.0, 'substantial': 43.0, 'large': 7.0}
    """
    x = _log_relative_dose(spec.dosing.levels, spec.dosing.reference_dose)
    centre = np.asarray(spec.models.blrm.prior.mean, dtype=float)
    rows = []
    for name in HETEROGENEITY_PRESETS:
        heterogeneity = Heterogeneity.preset(name)
        spread = math.exp(1.645 * heterogeneity.log_sd)
        taus = {}
        for parameter, median in (("log_a", heterogeneity.median_tau_log_a), ("log_b", heterogeneity.median_tau_log_b)):
            taus |= {f"tau_{parameter}_median": median, f"tau_{parameter}_q5": median / spread,
                     f"tau_{parameter}_q95": median * spread}
        ceiling = _ceiling_ess(centre, heterogeneity, x)
        borrowed = None
        if codata:
            from lupusbayes.fitting.codata import codata_predictive_draws

            settings = spec.models.blrm.replace(heterogeneity=heterogeneity)
            draws = codata_predictive_draws(spec, codata, seed=seed, cache=cache, progress=progress,
                                            settings=settings).draws
            p = expit(draws[:, :1] + np.exp(draws[:, 1:]) * x[None, :])
            borrowed = moment_matched_beta_ess(p.mean(axis=0), p.var(axis=0))
        for level, dose in enumerate(spec.dosing.levels):
            row = {"heterogeneity": name, **taus, "level": level + 1, "dose": float(dose),
                   "ess_ceiling": float(ceiling[level])}
            if borrowed is not None:
                row["ess_codata_map"] = float(borrowed[level])
            rows.append(row)
    return pd.DataFrame(rows)


# ---- from a spec: what `lupusbayes construct-prior` calls ---------------------------------------------


def construct_prior(spec: TrialSpec, method: str, *, codata=(), seed: int = 20251108,
                    robust_weight: float = ROBUST_WEIGHT, threshold_lowest: float = 0.2,
                    threshold_highest: float = 0.3, probability_above_lowest: float = 0.05,
                    probability_below_highest: float = 0.05, cache=None, progress=None) -> ConstructedPrior:
    """A DLT prior for ``spec``'s doses by ``method`` (:data:`METHODS`): ``lupusbayes construct-prior``.

    * ``"minimal-informative"``: :func:`minimal_informative_prior` at the spec's levels and reference
      dose, with the overdose edge of ``[dlt.intervals]`` and EWOC's limit ``[decision]
      max_overdose_probability`` in its warnings.
    * ``"robust-mixture"``: :func:`robust_mixture_prior` of the co-data MAP prior
      (:func:`codata_map_prior`, an MCMC fit, kept in ``cache``) with ``codata``, else of the spec's own
      ``[model.blrm.prior]``. When the spec's ``[model.blrm]`` may use EXNEX and has no ``nex_prior``, the
      spec's current prior is returned as one (EXNEX cannot take a mixture there).

    Examples
    --------
    >>> import lupusbayes as lb
    >>> result = construct_prior(lb.load_spec("axa_nk02"), "robust-mixture")
    >>> print(result.toml().splitlines()[0])
    [[model.blrm.prior.components]]
    """
    if method not in METHODS:
        raise PriorConstructionError(f"unknown method '{method}' (use one of {', '.join(METHODS)})")
    levels, reference = spec.dosing.levels, spec.dosing.reference_dose
    overdose = spec.dlt.intervals.overdose_threshold
    if method == "minimal-informative":
        return minimal_informative_prior(levels, reference, threshold_lowest=threshold_lowest,
                                         threshold_highest=threshold_highest,
                                         probability_above_lowest=probability_above_lowest,
                                         probability_below_highest=probability_below_highest,
                                         overdose_threshold=overdose,
                                         max_overdose_probability=spec.decision.max_overdose_probability)
    settings = spec.models.blrm
    notes = []
    if codata:
        informed = codata_map_prior(spec, codata, seed=seed, cache=cache, progress=progress)
        informative, source = informed.prior, informed.source
        notes.append("the MAP prior summarises the co-data: decide with it under hierarchy = 'none' and without "
                     "--codata, or the co-data count twice")
    else:
        informative, source = settings.prior, "the spec's [model.blrm.prior]"
        if isinstance(informative, BivariateNormalMixture):
            raise PriorConstructionError(f"{spec.source}: [model.blrm.prior] is a mixture already; robust-mixture "
                                         "needs one bivariate normal (or give --codata FILE for the co-data MAP prior)")
    mixture = robust_mixture_prior(informative, robust_weight=robust_weight)
    nex = None
    if settings.hierarchy in ("auto", "exnex") and settings.nex_prior is None and not codata:
        nex = _rounded(informative)
        notes.append("[model.blrm.nex_prior] is the spec's current prior: EXNEX's non-exchangeable component must "
                     "be a bivariate normal")
    weak = mixture.components[1]
    notes.append(f"weakly informative component (weight {robust_weight:g}): centred on the informative one, SD "
                 f"{weak.sd_log_a:g} on log a and {weak.sd_log_b:g} on log b (OncoBayes2's weakly informative scales)")
    warnings = []
    informative_sd = np.array([mixture.components[0].sd_log_a, mixture.components[0].sd_log_b])
    if np.any(informative_sd >= np.array([weak.sd_log_a, weak.sd_log_b])):
        warnings.append(f"the informative component (SDs {informative_sd[0]:g}, {informative_sd[1]:g}) is not firmer "
                        f"than the weakly informative one ({weak.sd_log_a:g}, {weak.sd_log_b:g}) in every parameter: "
                        "the mixture robustifies little")
    return constructed_prior(
        mixture, levels, reference, method=f"robust mixture prior (weight {robust_weight:g} on a weakly informative "
        "component; RBesT robustify, Schmidli et al. 2014)", overdose_threshold=overdose, warnings=warnings,
        notes=notes, sources=(f"informative component: {source}",), nex_prior=nex,
        details={"robust_weight": robust_weight, "informative": _prior_dict(mixture.components[0]),
                 "weakly_informative": _prior_dict(weak)})
