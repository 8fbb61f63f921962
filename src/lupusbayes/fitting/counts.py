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

from lupusbayes.fitting.quiet import quiet_pymc
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
        import nutpie
        import pymc as pm

        components = self.prior.components if isinstance(self.prior, BivariateNormalMixture) else (self.prior,)
        weights = self.prior.weights if isinstance(self.prior, BivariateNormalMixture) else (1.0,)
        log_dose = np.log(self.doses / self.reference_dose)
        zeros = np.zeros(self.doses.size, dtype=np.int64)
        with quiet_pymc(), pm.Model(coords={"dose": self.doses, "parameter": ["log_a", "log_b"]}) as model:
            n_patients = pm.Data("n_patients", zeros, dims="dose")
            n_events = pm.Data("n_events", zeros, dims="dose")
            theta = pm.Flat("theta", dims="parameter", initval=np.asarray(self.prior.mean, dtype=float))
            component_log_density = [
                np.log(weight) + pm.logp(pm.MvNormal.dist(mu=component.mean, cov=component.covariance), theta)
                for weight, component in zip(weights, components, strict=True)
            ]
            pm.Potential("prior", pm.math.logsumexp(pm.math.stack(component_log_density)))
            logit_p = theta[0] + pm.math.exp(theta[1]) * log_dose
            pm.Deterministic("p", pm.math.invlogit(logit_p), dims="dose")
            pm.Binomial("events", n=n_patients, logit_p=logit_p, observed=n_events, dims="dose")
            self._compiled = nutpie.compile_pymc_model(model, backend="numba", freeze_model=False)
        return self._compiled

    def sample(self, n_patients, n_events, thresholds, *, seed: int) -> CountPosteriorSample:
        """NUTS on these counts (one retry at the retry target acceptance after divergences)."""
        compiled = self._compiled or self._build()
        data = {"n_patients": np.asarray(n_patients, dtype=np.int64), "n_events": np.asarray(n_events, dtype=np.int64)}
        settings = self.settings
        seeds = np.random.SeedSequence(int(seed)).generate_state(2, dtype=np.uint32)
        target_accepts = (settings.target_accept, settings.retry_target_accept)
        for attempt, target_accept in enumerate(target_accepts):
            result = self._sample_once(compiled.with_data(**data), thresholds, int(seeds[attempt]), target_accept)
            if result.divergences == 0:
                break
        return result

    def _sample_once(self, compiled, thresholds, seed: int, target_accept: float) -> CountPosteriorSample:
        import arviz as az
        import nutpie

        settings = self.settings
        with quiet_pymc():
            tree = nutpie.sample(compiled, draws=settings.draws, tune=settings.tune, chains=settings.chains,
                                 cores=settings.cores or min(settings.chains, 2), seed=seed, progress_bar=False,
                                 target_accept=target_accept, save_warmup=False)
        posterior = tree["posterior"].to_dataset()
        probability = posterior["p"]
        means = probability.mean(("chain", "draw")).to_numpy()
        mean_errors = az.mcse(probability, method="mean").to_numpy()
        at_least, at_least_errors = {}, {}
        for threshold in thresholds:
            value, error, _ = probability_with_mcse(probability >= threshold, reference=probability)
            at_least[float(threshold)], at_least_errors[float(threshold)] = value.to_numpy(), error.to_numpy()
        divergences = int(tree["sample_stats"]["diverging"].sum())
        problems = _gate_problems(xr.Dataset({"theta": posterior["theta"], "p": probability}), tree, divergences,
                                  settings)
        return CountPosteriorSample(means, mean_errors, at_least, at_least_errors, problems, divergences, target_accept)


def _gate_problems(draws: xr.Dataset, tree: xr.DataTree, divergences: int, settings: FitSettings) -> tuple[str, ...]:
    """The spec's convergence gate on ``(log a, log b)`` and the probabilities: what failed, in words."""
    import arviz as az

    gate = settings.gate
    with np.errstate(invalid="ignore", divide="ignore"):
        rhat = max(float(az.rhat(draws)[name].max()) for name in draws.data_vars)
        ess_bulk = min(float(az.ess(draws, method="bulk")[name].min()) for name in draws.data_vars)
        ess_tail = min(float(az.ess(draws, method="tail")[name].min()) for name in draws.data_vars)
        stats = tree["sample_stats"].to_dataset()
        bfmi = float(np.min(az.bfmi(tree)["energy"])) if "energy" in stats else float("nan")
    problems = []
    if not rhat <= gate.rhat_max:  # NaN fails
        problems.append(f"max R-hat {rhat:.3f} > {gate.rhat_max}")
    if not ess_bulk >= gate.ess_bulk_min:
        problems.append(f"min bulk ESS {ess_bulk:.0f} < {gate.ess_bulk_min:g}")
    if not ess_tail >= gate.ess_tail_min:
        problems.append(f"min tail ESS {ess_tail:.0f} < {gate.ess_tail_min:g}")
    if divergences > gate.divergences_max:
        problems.append(f"{divergences} divergences > {gate.divergences_max}")
    if not bfmi >= gate.bfmi_min:
        problems.append(f"min BFMI {bfmi:.2f} < {gate.bfmi_min:g}")
    return tuple(problems)
