"""NUTS for a BLRM on counts per dose: the MCMC fallback of the simulator's exact posteriors.

The simulator decides from exact posteriors of the two-parameter logistic model
``logit P(event at d) = log a + exp(log b) log(d / d*)`` on counts per dose
(:mod:`lupusbayes.models.exact`). Quadrature checks itself; when it cannot resolve a
posterior even on its widest grid, the simulator asks this module for the same posterior by
NUTS instead of stopping. The model here is the one the quadrature integrates: the same prior on
``(log a, log b)`` (a bivariate normal or a mixture of them, written as its log density so both
take one path), binomial counts. :class:`CountModelSampler` builds and compiles it once with
nutpie for a dose grid and prior; each new set of counts only swaps the data. A sample must pass
the spec's convergence gate (R-hat, bulk and tail ESS, divergences, BFMI; one retry at the
retry target acceptance after divergences), and the summaries carry their Monte Carlo errors,
with the ``3 / ESS`` bound where every draw agrees.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import xarray as xr

from lupusbayes.fitting.cache import compile_nutpie
from lupusbayes.fitting.diagnostics import convergence_table, gate_checks
from lupusbayes.fitting.quiet import quiet_pymc
from lupusbayes.fitting.sample import count_divergences, nutpie_draws
from lupusbayes.models.summaries import probability_with_mcse
from lupusbayes.spec import BivariateNormalMixture, BivariateNormalPrior, FitSettings

__all__ = ["CountPosteriorSample", "CountModelSampler"]


@dataclass(frozen=True)
class CountPosteriorSample:
    """What the simulator needs from one NUTS posterior on counts, with Monte Carlo errors.

    ``means`` and ``mean_errors`` are per dose; ``at_least[t]`` and ``at_least_errors[t]`` are
    P(probability >= t) per dose and its MCSE (or the ``3 / ESS`` bound where every draw agreed).
    ``gate_problems`` lists the convergence checks that failed (empty when the gate passed).
    """

    means: np.ndarray
    mean_errors: np.ndarray
    at_least: dict[float, np.ndarray]
    at_least_errors: dict[float, np.ndarray]
    gate_problems: tuple[str, ...]
    divergences: int
    target_accept: float

    @property
    def passed(self) -> bool:
        return not self.gate_problems


class CountModelSampler:
    """The logistic dose-response model on counts, compiled once, sampled for any counts.

    Parameters
    ----------
    doses
        Dose levels, in the unit of ``reference_dose``.
    reference_dose
        ``d*``: ``log a`` is the log-odds of the event there.
    prior
        Prior on ``(log a, log b)``.
    settings
        Draws, tuning, chains, target acceptance and the convergence gate (the spec's ``[fitting]``).
    """

    def __init__(self, doses, reference_dose: float, prior: BivariateNormalPrior | BivariateNormalMixture,
                 settings: FitSettings) -> None:
        self.doses = np.asarray(doses, dtype=float)
        self.reference_dose = float(reference_dose)
        self.prior = prior
        self.settings = settings
        self._compiled = None  # nutpie's compiled model, built on first use

    def _build(self):
        import pymc as pm

        log_dose = np.log(self.doses / self.reference_dose)
        zeros = np.zeros(self.doses.size, dtype=np.int64)
        with quiet_pymc(), pm.Model(coords={"dose": self.doses, "parameter": ["log_a", "log_b"]}) as model:
            n_patients = pm.Data("n_patients", zeros, dims="dose")
            n_events = pm.Data("n_events", zeros, dims="dose")
            theta = pm.Flat("theta", dims="parameter", initval=np.asarray(self.prior.mean, dtype=float))
            component_log_density = [
                np.log(weight) + pm.logp(pm.MvNormal.dist(mu=component.mean, cov=component.covariance), theta)
                for weight, component in zip(self.prior.weights, self.prior.components, strict=True)
            ]
            pm.Potential("prior", pm.math.logsumexp(pm.math.stack(component_log_density)))
            logit_p = theta[0] + pm.math.exp(theta[1]) * log_dose
            pm.Deterministic("p", pm.math.invlogit(logit_p), dims="dose")
            pm.Binomial("events", n=n_patients, logit_p=logit_p, observed=n_events, dims="dose")
        self._compiled = compile_nutpie(model)
        return self._compiled

    def sample(self, n_patients, n_events, thresholds, *, seed: int) -> CountPosteriorSample:
        """NUTS on these counts (one retry at the retry target acceptance after divergences, as a fit)."""
        compiled = (self._compiled or self._build()).with_data(
            n_patients=np.asarray(n_patients, dtype=np.int64), n_events=np.asarray(n_events, dtype=np.int64))
        settings = self.settings
        seeds = np.random.SeedSequence(int(seed)).generate_state(2, dtype=np.uint32)
        for attempt, target_accept in enumerate((settings.target_accept, settings.retry_target_accept)):
            result = self._sample_once(compiled, thresholds, int(seeds[attempt]), target_accept)
            if result.divergences <= settings.gate.divergences_max:
                break
        return result

    def _sample_once(self, compiled, thresholds, seed: int, target_accept: float) -> CountPosteriorSample:
        import arviz_stats

        with quiet_pymc():
            tree = nutpie_draws(compiled, self.settings, target_accept, seed)
        posterior = tree["posterior"].to_dataset()
        probability = posterior["p"]
        means = probability.mean(("chain", "draw")).to_numpy()
        mean_errors = arviz_stats.mcse(probability, method="mean").to_numpy()
        at_least, at_least_errors = {}, {}
        for threshold in thresholds:
            value, error, _ = probability_with_mcse(probability >= threshold, reference=probability)
            at_least[float(threshold)], at_least_errors[float(threshold)] = value.to_numpy(), error.to_numpy()
        divergences = count_divergences(tree)
        table = convergence_table(xr.Dataset({"theta": posterior["theta"], "p": probability}))
        problems = tuple(check.describe() for check in gate_checks(table, tree, divergences, self.settings.gate)
                         if not check.passed)
        return CountPosteriorSample(means, mean_errors, at_least, at_least_errors, problems, divergences, target_accept)
