"""Fast posteriors for simulated trials: exact, batched over trials, and computed once per data.

Inside a simulation a decision must not run MCMC. The simulator decides with two models whose
posteriors are exact by quadrature (:mod:`lupusbayes.models.exact`): the BLRM on DLT counts
(the spec's ``[model.blrm]`` prior) and the same logistic model on responder counts
(``[model.response]``). A posterior depends on the data only through the counts per dose, so
it is computed once per distinct set of counts and shared by every trial and decision that
reaches them; the counts that are new at a step of the simulation are computed together, in
one batched quadrature.

What the rules ask of a posterior is precomputed into a :class:`SummaryPosterior`: the mean
per dose and P(quantity >= t) for the thresholds the design reads (the toxicity intervals'
edges, the loss intervals' edges, the efficacy rule's rate). The quadrature checks itself (the
mode search converged, little mass on the grid's outer ring); a posterior that fails is computed
again on wider, finer grids (:data:`lupusbayes.models.exact.REFINED_GRIDS`), and the number of
refinements is counted; one that fails on the widest grid stops the simulation with a
:class:`~lupusbayes.errors.QuadratureError` naming the counts, rather than deciding from it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from lupusbayes.decisions.posterior import QUADRATURE_ERROR, Estimate
from lupusbayes.errors import QuadratureError
from lupusbayes.models.exact import REFINED_GRIDS, blrm_exact_posterior
from lupusbayes.spec import BivariateNormalMixture, BivariateNormalPrior, TrialSpec

__all__ = ["SummaryPosterior", "FastPosteriors"]


@dataclass(frozen=True)
class SummaryPosterior:
    """The answers a design needs from one posterior: means and P(>= t) per dose for fixed ``t``."""

    quantity: str
    means: np.ndarray  # (doses,)
    at_least: dict[float, np.ndarray]  # threshold -> (doses,)
    source: str = "exact (quadrature, simulation)"
    dlt_basis: str = ""
    notes: tuple[str, ...] = field(default_factory=tuple)

    def has(self, name: str) -> bool:
        return name == self.quantity or (self.quantity == "p_response" and name == "p_response_final")

    def mean(self, name: str) -> list[Estimate]:
        return [Estimate(float(v), QUADRATURE_ERROR, "quadrature") for v in self.means]

    def probability_at_least(self, name: str, threshold: float) -> list[Estimate]:
        if threshold <= 0.0:
            return [Estimate(1.0, QUADRATURE_ERROR, "quadrature") for _ in self.means]
        return [Estimate(float(v), QUADRATURE_ERROR, "quadrature") for v in self.at_least[float(threshold)]]


class FastPosteriors:
    """Cached exact posteriors of one model (DLTs or responses) for one spec's doses.

    Parameters
    ----------
    spec
        Dose levels and reference dose.
    prior
        The model's prior on ``(log a, log b)``.
    quantity
        ``"p_dlt"`` or ``"p_response"``.
    thresholds
        The values ``t`` for which P(quantity >= t) is precomputed.
    """

    def __init__(self, spec: TrialSpec, prior: BivariateNormalPrior | BivariateNormalMixture, quantity: str,
                 thresholds) -> None:
        self.doses = np.asarray(spec.dosing.levels, dtype=float)
        self.reference_dose = float(spec.dosing.reference_dose)
        self.prior = prior
        self.quantity = quantity
        self.thresholds = tuple(sorted({float(t) for t in thresholds if 0.0 < t < 1.0}))
        self.cache: dict[tuple, SummaryPosterior] = {}
        self.refined = 0
        self.computed = 0
        self.dlt_basis = "P(DLT) from simulated DLT counts" if quantity == "p_dlt" else ""

    @staticmethod
    def key(n_patients, n_events) -> tuple:
        return tuple(int(v) for v in n_patients) + tuple(int(v) for v in n_events)

    def prepare(self, keys) -> None:
        """Compute, in one batch, the posteriors of the keys not yet cached."""
        missing = sorted({key for key in keys if key not in self.cache})
        if not missing:
            return
        counts = np.array(missing, dtype=float)
        n, y = counts[:, : self.doses.size], counts[:, self.doses.size:]
        summaries = self._compute(n, y)
        bad = ~summaries.pop("resolved")
        for grid in REFINED_GRIDS:
            if not bad.any():
                break
            rows = np.flatnonzero(bad)
            wider = self._compute(n[rows], y[rows], **grid)
            still_bad = ~wider.pop("resolved")
            for name, values in wider.items():
                summaries[name][rows] = values
            self.refined += rows.size
            bad[rows] = still_bad
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise QuadratureError(f"the exact {self.quantity} posterior for {n[row].astype(int).tolist()} patients and "
                                  f"{y[row].astype(int).tolist()} events per level is not resolved on the widest grid "
                                  f"({REFINED_GRIDS[-1]}); check the [model] prior")
        self.computed += len(missing)
        for row, key in enumerate(missing):
            self.cache[key] = SummaryPosterior(
                self.quantity, summaries["mean"][row],
                {t: summaries[("at_least", t)][row] for t in self.thresholds}, dlt_basis=self.dlt_basis)

    def _compute(self, n: np.ndarray, y: np.ndarray, **grid) -> dict:
        posterior = blrm_exact_posterior(self.doses, n, y, prior=self.prior, reference_dose=self.reference_dose, **grid)
        out = {"mean": np.atleast_2d(posterior.mean_p_dlt(self.doses)), "resolved": posterior.resolved}
        for threshold in self.thresholds:
            out[("at_least", threshold)] = np.atleast_2d(posterior.probability_at_least(self.doses, threshold))
        return out

    def get(self, n_patients, n_events) -> SummaryPosterior:
        key = self.key(n_patients, n_events)
        if key not in self.cache:
            self.prepare([key])
        return self.cache[key]
