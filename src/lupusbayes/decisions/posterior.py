"""One posterior interface for decisions: per-dose quantities, each with its error.

Decision rules ask few questions of a posterior: the mean of P(DLT) at a dose, the probability
that P(DLT) is at least a threshold, the probability that the response rate at a dose is below
a rate. Two kinds of posterior answer them:

* :class:`DrawsPosterior`: weighted draws of per-dose quantities, from an MCMC fit (its
  ``dose_response`` group, equal weights, chains kept for the Monte Carlo error) or from
  importance reweighting (:meth:`DrawsPosterior.updated`: a hypothetical next cohort, the
  transition table and the simulator's fast path);
* :class:`ExactPosterior`: the single-study BLRM by quadrature
  (:mod:`lupusbayes.models.exact`), whose error is numerical, not Monte Carlo.

Every answer is an :class:`Estimate`: the value, its error, and what kind of error it is. A
probability on which every draw agrees gets a bound (``3 / ESS``, the bulk ESS of the quantity it
is read from; Kish's ESS of the weights for reweighted draws), never an error of 0.

Plain NumPy (and xarray for reading a fit's ``dose_response``): no PyMC, no fitting layer.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np
import xarray as xr

from lupusbayes.errors import QuadratureError
from lupusbayes.models.exact import REFINED_GRIDS, blrm_exact_posterior
from lupusbayes.models.exact import ExactPosterior as ExactBLRM
from lupusbayes.spec import BivariateNormalMixture, BivariateNormalPrior

__all__ = ["Estimate", "DrawsPosterior", "ExactPosterior", "draws_from_dose_response", "exact_blrm",
           "QUADRATURE_ERROR"]

#: Error bound of the exact BLRM's probabilities (measured: 1.6e-3 at the default 41 x 41 grid;
#: docs/validation.md), reported instead of a Monte Carlo error.
QUADRATURE_ERROR = 2e-3
#: Importance weights with a Pareto k above this are not trusted (Vehtari et al. 2024).
PARETO_K_LIMIT = 0.7


@dataclass(frozen=True)
class Estimate:
    """A posterior number with its error: ``value +/- error`` (``error_kind`` says which error).

    ``error_kind`` is ``"mcse"`` (Monte Carlo standard error), ``"mcse bound"`` (every draw
    agreed: an upper bound, 3 / ESS), ``"importance"`` (the standard error of a reweighted
    estimate) or ``"quadrature"`` (a numerical error bound).
    """

    value: float
    error: float
    error_kind: str = "mcse"

    def distance_in_errors(self, threshold: float) -> float:
        """How many errors the value is from ``threshold`` (infinite with no error)."""
        return abs(self.value - threshold) / self.error if self.error > 0 else float("inf")

    def text(self, digits: int = 3) -> str:
        bound = "<" if self.error_kind == "mcse bound" else ""
        return f"{self.value:.{digits}f} +/- {bound}{self.error:.{digits}g}"


def _mcse_of_mean(values: np.ndarray, chains: int) -> float:
    """MCSE of the mean of MCMC draws (chain-major, equal weights), as ArviZ computes it."""
    from arviz_stats.base import array_stats

    with np.errstate(invalid="ignore", divide="ignore"):
        return float(array_stats.mcse(values.reshape(chains, -1), method="mean", chain_axis=0, draw_axis=1))


@dataclass(frozen=True)
class DrawsPosterior:
    """Per-dose quantities as weighted draws: ``values[name]`` has shape ``(draws, doses)``.

    Names used by the rules: ``p_dlt`` (P(DLT) at each dose), ``p_response`` (the response
    probability at the decision month), ``p_response_final`` (at the final-selection month),
    ``expected_reduction``. Build one with :func:`draws_from_dose_response`.
    """

    doses: np.ndarray
    values: dict[str, np.ndarray]
    weights: np.ndarray
    chains: int = 1
    reweighted: bool = False
    pareto_k: float = float("nan")
    source: str = ""
    dlt_basis: str = ""
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def effective_draws(self) -> float:
        """Kish's effective sample size of the weights (the draw count for equal weights)."""
        return float(1.0 / np.sum(self.weights**2))

    def has(self, name: str) -> bool:
        return name in self.values

    def _ess(self, reference: np.ndarray | None) -> float:
        """The effective sample size behind a bound: the bulk ESS of ``reference`` (the continuous quantity
        an indicator is read from) for MCMC draws, Kish's ESS of the weights for reweighted ones."""
        if self.reweighted or reference is None or np.all(reference == reference[0]):
            return self.effective_draws
        from arviz_stats.base import array_stats

        with np.errstate(invalid="ignore", divide="ignore"):
            ess = float(array_stats.ess(reference.reshape(self.chains, -1), method="bulk", chain_axis=0, draw_axis=1))
        return ess if np.isfinite(ess) and ess > 0 else self.effective_draws

    def _estimate(self, draws: np.ndarray, reference: np.ndarray | None = None) -> Estimate:
        value = float(self.weights @ draws)
        if np.all(draws == draws[0]):  # every draw agrees: the rule of three, 3 / ESS
            return Estimate(value, min(1.0, 3.0 / self._ess(reference if reference is not None else draws)),
                            "mcse bound")
        if self.reweighted:
            error = float(np.sqrt(np.sum(self.weights**2 * (draws - value) ** 2)))
            return Estimate(value, error, "importance")
        error = _mcse_of_mean(draws, self.chains)
        if not np.isfinite(error):
            return Estimate(value, min(1.0, 3.0 / self._ess(reference)), "mcse bound")
        return Estimate(value, error, "mcse")

    def mean(self, name: str) -> list[Estimate]:
        """Posterior mean of ``name`` at each dose."""
        return [self._estimate(column, column) for column in self.values[name].T]

    def probability(self, name: str, event: Callable[[np.ndarray], np.ndarray]) -> list[Estimate]:
        """Posterior probability of ``event(values[name])`` at each dose (a bound of 3 / ESS when every draw
        agrees, the ESS being the bulk ESS of ``values[name]`` at that dose)."""
        return [self._estimate(event(column).astype(float), column) for column in self.values[name].T]

    def probability_at_least(self, name: str, threshold: float) -> list[Estimate]:
        """Posterior probability that ``name`` (a probability per dose) is at least ``threshold``."""
        return self.probability(name, lambda p: p >= threshold)

    def updated(self, level: int, n_patients: int, *, n_dlt: int | None = None,
                n_responders: int | None = None) -> DrawsPosterior:
        """The posterior after a hypothetical cohort at ``level``: importance reweighting.

        Each draw's weight is multiplied by the likelihood of ``n_dlt`` DLTs (from ``p_dlt``)
        and ``n_responders`` responses (from ``p_response``) among ``n_patients`` new patients
        at that dose; the draws themselves do not move. Valid because new patients are
        conditionally independent of the old given the parameters. The Pareto k of the
        weights says whether the reweighted draws can be trusted (``pareto_k``).
        """
        from arviz_stats.base import array_stats

        log_weights = np.log(np.maximum(self.weights, 1e-300))
        for name, count in (("p_dlt", n_dlt), ("p_response", n_responders)):
            if count is None:
                continue
            p = np.clip(self.values[name][:, level], 1e-12, 1 - 1e-12)
            log_weights = log_weights + count * np.log(p) + (n_patients - count) * np.log1p(-p)
        # arviz-stats' psislw takes log-likelihood-like input and smooths its negation (the LOO
        # convention), so it is given minus the log weights
        smoothed, khat = array_stats.psislw(-(log_weights - log_weights.max()))
        weights = np.exp(smoothed - smoothed.max())
        return replace(self, weights=weights / weights.sum(), reweighted=True,
                       pareto_k=float(np.nanmax([khat, self.pareto_k if self.reweighted else -np.inf])))


def draws_from_dose_response(dose_response: xr.Dataset, *, response: str | None = None,
                             month: float | None = None, final_month: float | None = None,
                             source: str = "", notes: tuple[str, ...] = ()) -> DrawsPosterior:
    """A :class:`DrawsPosterior` from a fit's ``dose_response`` group (dims chain, draw, dose, ...).

    A toxicity fit gives ``p_dlt`` (and ``p_crs_at_least_<g>``); a SLEDAI-2K fit gives
    ``p_response`` (``response`` at ``month``), ``p_response_final`` (at ``final_month``) and
    ``expected_reduction`` (at ``month``). Draws are kept chain by chain for the MCSE.
    """
    chains, draws = dose_response.sizes["chain"], dose_response.sizes["draw"]

    def per_dose(array: xr.DataArray) -> np.ndarray:
        return array.transpose("chain", "draw", "dose").to_numpy().reshape(chains * draws, -1)

    values: dict[str, np.ndarray] = {}
    dlt_basis = ""
    if "p_dlt" in dose_response:
        values["p_dlt"] = per_dose(dose_response["p_dlt"])
        dlt_basis = str(dose_response["p_dlt"].attrs.get("definition", ""))
    if "p_crs_at_least" in dose_response:
        for grade in dose_response["grade"].to_numpy():
            values[f"p_crs_at_least_{int(grade)}"] = per_dose(dose_response["p_crs_at_least"].sel(grade=grade, drop=True))
    if response is not None:
        variable = {"sri4_sledai_component": "p_sri4_sledai_component", "lldas_sledai_proxy": "p_lldas_sledai_proxy",
                    "doris_sledai_proxy": "p_doris_sledai_proxy"}[response]
        months = dose_response["month"].to_numpy()
        for key, wanted in (("p_response", month), ("p_response_final", final_month)):
            if wanted is None:
                continue
            if not np.any(np.isclose(months, wanted)):
                raise ValueError(f"the fit has no month {wanted:g} (months: {', '.join(f'{m:g}' for m in months)})")
            values[key] = per_dose(dose_response[variable].sel(month=wanted, method="nearest", drop=True))
        values["expected_reduction"] = per_dose(dose_response["expected_reduction"].sel(month=month, method="nearest",
                                                                                        drop=True))
    weights = np.full(chains * draws, 1.0 / (chains * draws))
    return DrawsPosterior(doses=dose_response["dose"].to_numpy(), values=values, weights=weights, chains=chains,
                          source=source, dlt_basis=dlt_basis, notes=tuple(notes))


@dataclass(frozen=True)
class ExactPosterior:
    """A logistic dose-response posterior by quadrature (no Monte Carlo error), for decisions.

    The BLRM on DLT counts (``quantity = "p_dlt"``) or the same model on responder counts
    (``"p_response"``, which also answers for ``"p_response_final"``). Built by
    :func:`exact_blrm`; :meth:`updated` adds a cohort and recomputes, exactly.
    """

    doses: np.ndarray
    n_patients: np.ndarray
    n_events: np.ndarray
    prior: BivariateNormalPrior | BivariateNormalMixture
    reference_dose: float
    blrm: ExactBLRM = field(repr=False)
    quantity: str = "p_dlt"
    source: str = "exact BLRM (quadrature)"
    dlt_basis: str = ""
    notes: tuple[str, ...] = field(default_factory=tuple)

    def has(self, name: str) -> bool:
        return name == self.quantity or (self.quantity == "p_response" and name == "p_response_final")

    def _check(self, name: str) -> None:
        if not self.has(name):
            raise KeyError(f"this exact posterior holds {self.quantity} only (asked for {name})")

    def mean(self, name: str) -> list[Estimate]:
        self._check(name)
        return [Estimate(float(v), QUADRATURE_ERROR, "quadrature") for v in self.blrm.mean_p_dlt(self.doses)]

    def probability_at_least(self, name: str, threshold: float) -> list[Estimate]:
        """P(quantity >= threshold) at each dose, cell-integrated."""
        self._check(name)
        return [Estimate(float(v), QUADRATURE_ERROR, "quadrature")
                for v in self.blrm.probability_at_least(self.doses, threshold)]

    def updated(self, level: int, n_patients: int, *, n_dlt: int | None = None,
                n_responders: int | None = None) -> ExactPosterior:
        events = n_dlt if self.quantity == "p_dlt" else n_responders
        n, y = self.n_patients.copy(), self.n_events.copy()
        if events is not None:
            n[level] += n_patients
            y[level] += events
        return exact_blrm(self.doses, n, y, prior=self.prior, reference_dose=self.reference_dose,
                          quantity=self.quantity, dlt_basis=self.dlt_basis, notes=self.notes)


def exact_blrm(doses, n_patients, n_events, *, prior: BivariateNormalPrior | BivariateNormalMixture,
               reference_dose: float, quantity: str = "p_dlt", source: str = "exact BLRM (quadrature)",
               dlt_basis: str = "", notes: tuple[str, ...] = ()) -> ExactPosterior:
    """The exact logistic posterior for event counts per dose (DLTs, or responders), ready for decisions.

    The quadrature checks itself (mode found, grid not truncated) and moves to wider grids when it
    must (:data:`lupusbayes.models.exact.REFINED_GRIDS`).

    Raises
    ------
    QuadratureError
        No grid passes the checks: nothing is decided from the posterior.
    """
    doses = np.asarray(doses, dtype=float)
    n, y = np.asarray(n_patients, dtype=float), np.asarray(n_events, dtype=float)
    for grid in ({}, *REFINED_GRIDS):
        blrm = blrm_exact_posterior(doses, n, y, prior=prior, reference_dose=reference_dose, **grid)
        if bool(np.all(blrm.resolved)):
            break
    else:
        raise QuadratureError(f"the exact posterior for {n.astype(int).tolist()} patients and "
                              f"{y.astype(int).tolist()} events per dose is not resolved on any grid; check the prior")
    return ExactPosterior(doses, n, y, prior, float(reference_dose), blrm, quantity, source, dlt_basis, tuple(notes))
