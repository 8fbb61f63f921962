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
again on wider, finer grids (:data:`lupusbayes.models.exact.REFINED_GRIDS`). One that fails on the widest grid falls back to MCMC: NUTS on the same
model and prior (:class:`lupusbayes.fitting.counts.CountModelSampler`, compiled once per model,
the spec's ``[fitting]`` draws and convergence gate, a seed derived from the simulation's seed
and the counts, so the result does not depend on which trial or worker reached the counts
first). Its numbers carry their Monte Carlo errors, the decisions made from it are counted per
trial (``n_mcmc_decisions``), and a fallback that fails its own gate stops the simulation with a
:class:`~lupusbayes.errors.QuadratureError` naming the counts, rather than deciding from it.
``mcmc_fallback=False`` makes an unresolved quadrature an error at once.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from lupusbayes.decisions.posterior import QUADRATURE_ERROR, Estimate
from lupusbayes.errors import QuadratureError
from lupusbayes.models.exact import REFINED_GRIDS, blrm_exact_posterior
from lupusbayes.spec import BivariateNormalMixture, BivariateNormalPrior, FitSettings, TrialSpec

__all__ = ["SummaryPosterior", "FastPosteriors", "MCMC_FALLBACK_SOURCE"]


#: The source of a posterior computed by the MCMC fallback (what the decision's evidence says).
MCMC_FALLBACK_SOURCE = "NUTS (simulation fallback: the quadrature did not resolve these counts)"


@dataclass(frozen=True)
class SummaryPosterior:
    """The answers a design needs from one posterior: means and P(>= t) per dose for fixed ``t``.

    Without ``mean_errors`` / ``at_least_errors`` the numbers are quadrature values with the
    quadrature's error bound; with them (the MCMC fallback) each number has its Monte Carlo error.
    """

    quantity: str
    means: np.ndarray  # (doses,)
    at_least: dict[float, np.ndarray]  # threshold -> (doses,)
    source: str = "exact (quadrature, simulation)"
    dlt_basis: str = ""
    notes: tuple[str, ...] = field(default_factory=tuple)
    mean_errors: np.ndarray | None = None
    at_least_errors: dict[float, np.ndarray] | None = None

    @property
    def from_mcmc(self) -> bool:
        return self.mean_errors is not None

    def has(self, name: str) -> bool:
        return name == self.quantity or (self.quantity == "p_response" and name == "p_response_final")

    def mean(self, name: str) -> list[Estimate]:
        return self._estimates(self.means, self.mean_errors)

    def probability_at_least(self, name: str, threshold: float) -> list[Estimate]:
        if threshold <= 0.0:
            return [Estimate(1.0, QUADRATURE_ERROR, "quadrature") for _ in self.means]
        errors = None if self.at_least_errors is None else self.at_least_errors[float(threshold)]
        return self._estimates(self.at_least[float(threshold)], errors)

    @staticmethod
    def _estimates(values: np.ndarray, errors: np.ndarray | None) -> list[Estimate]:
        if errors is None:
            return [Estimate(float(v), QUADRATURE_ERROR, "quadrature") for v in values]
        return [Estimate(float(v), float(e), "mcse") for v, e in zip(values, errors, strict=True)]


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
    mcmc_fallback
        Sample by NUTS what the quadrature cannot resolve (``False``: raise at once).
    fallback_seed
        Seeds the fallback's NUTS runs, together with the counts.
    """

    def __init__(self, spec: TrialSpec, prior: BivariateNormalPrior | BivariateNormalMixture, quantity: str,
                 thresholds, *, mcmc_fallback: bool = True, fallback_seed: int = 0) -> None:
        self.doses = np.asarray(spec.dosing.levels, dtype=float)
        self.reference_dose = float(spec.dosing.reference_dose)
        self.prior = prior
        self.quantity = quantity
        self.thresholds = tuple(sorted({float(t) for t in thresholds if 0.0 < t < 1.0}))
        self.cache: dict[tuple, SummaryPosterior] = {}
        self.mcmc_fallbacks = 0
        self.dlt_basis = "P(DLT) from simulated DLT counts" if quantity == "p_dlt" else ""
        self.mcmc_fallback = bool(mcmc_fallback)
        self.fallback_seed = int(fallback_seed)
        self.fit_settings: FitSettings = spec.fitting
        self._sampler = None  # the fallback's compiled NUTS model, built on first need

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
            bad[rows] = still_bad
        sampled = {int(row): self._sample(n[row], y[row]) for row in np.flatnonzero(bad)}
        for row, key in enumerate(missing):
            self.cache[key] = sampled[row] if row in sampled else SummaryPosterior(
                self.quantity, summaries["mean"][row],
                {t: summaries[("at_least", t)][row] for t in self.thresholds}, dlt_basis=self.dlt_basis)

    def _sample(self, n: np.ndarray, y: np.ndarray) -> SummaryPosterior:
        """The MCMC fallback for counts the quadrature did not resolve (see the module docstring)."""
        counts = f"{n.astype(int).tolist()} patients and {y.astype(int).tolist()} events per level"
        if not self.mcmc_fallback:
            raise QuadratureError(f"the exact {self.quantity} posterior for {counts} is not resolved on the widest grid "
                                  f"({REFINED_GRIDS[-1]}) and the MCMC fallback is off; check the [model] prior")
        if self._sampler is None:
            from lupusbayes.fitting.counts import CountModelSampler  # PyMC only when a fallback is needed

            self._sampler = CountModelSampler(self.doses, self.reference_dose, self.prior, self.fit_settings)
        quantity_code = {"p_dlt": 0, "p_response": 1}.get(self.quantity, 2)
        seed = np.random.SeedSequence(self.fallback_seed, spawn_key=(quantity_code, *self.key(n, y)))
        sample = self._sampler.sample(n, y, self.thresholds, seed=int(seed.generate_state(1, dtype=np.uint32)[0]))
        if not sample.passed:
            raise QuadratureError(f"the exact {self.quantity} posterior for {counts} is not resolved on the widest grid "
                                  f"and its MCMC fallback failed the convergence gate ({'; '.join(sample.gate_problems)}); "
                                  "check the [model] prior or raise [fitting] draws")
        self.mcmc_fallbacks += 1
        return SummaryPosterior(self.quantity, sample.means, sample.at_least, source=MCMC_FALLBACK_SOURCE,
                                dlt_basis=self.dlt_basis, mean_errors=sample.mean_errors,
                                at_least_errors=sample.at_least_errors,
                                notes=(f"NUTS at target_accept {sample.target_accept:g}, {sample.divergences} divergences, "
                                       "convergence gate passed",))

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
