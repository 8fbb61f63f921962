"""Simulation from a model, parameter recovery and simulation-based calibration (SBC).

* :func:`simulate_from` turns chosen parameter values into outcomes on a model's design and
  returns the model refitted to them (same design, so no recompilation).
* :func:`prior_draw` draws one parameter set from the model's own prior.
* :func:`run_sbc` repeats *prior draw -> simulate -> fit -> rank of the truth among the
  posterior draws* (Talts et al. 2018); every replicate's seed is spawned up front from one
  master seed, so any replicate can be re-run alone.
* :func:`model_fingerprint` identifies the model a stored calibration was run on, and
  :meth:`SBCResult.binomial_band_check` tests stored ranks for uniformity, so the test suite
  can tell when the stored results no longer describe the shipped model.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
import xarray as xr

from lupusbayes.fitting.cache import DEFAULT_CACHE, DesignCache
from lupusbayes.fitting.sample import fit, sample_prior
from lupusbayes.models.base import BayesianModel
from lupusbayes.spec import FitSettings

__all__ = ["simulate_from", "prior_draw", "run_sbc", "SBCResult", "BandCheck", "draws_from_values", "model_fingerprint"]


def draws_from_values(values: dict[str, np.ndarray | float], coords: dict[str, list] | None = None,
                      dims: dict[str, tuple[str, ...]] | None = None) -> xr.Dataset:
    """One 'draw' (chain 1, draw 1) holding the given parameter values."""
    variables = {}
    for name, value in values.items():
        array = np.asarray(value, dtype=float)
        names = ("chain", "draw") + tuple((dims or {}).get(name, [f"{name}_dim_{i}" for i in range(array.ndim)]))
        variables[name] = (names, array[None, None, ...])
    dataset = xr.Dataset(variables, coords={"chain": [0], "draw": [0], **(coords or {})})
    return dataset


def prior_draw(model: BayesianModel, seed: int) -> xr.Dataset:
    """One draw of the free parameters (and deterministics) from the model's prior."""
    return sample_prior(model, 1, seed)


def simulate_from(model: BayesianModel, truth: xr.Dataset, seed: int) -> tuple[BayesianModel, xr.Dataset]:
    """Outcomes simulated at ``truth`` (raw parameters, one draw) on ``model``'s design.

    Returns the model with those outcomes and the completed truth (with ``log_a``, etc.).
    """
    rng = np.random.default_rng(seed)
    completed = model.complete_draws(truth, rng, prior=True)
    outcomes = model.simulate_outcomes(completed, rng)
    values = next(iter(outcomes.data_vars.values())).to_numpy()[0, 0]
    return model.with_outcomes(values), completed


@dataclass(frozen=True)
class SBCResult:
    """Ranks of the true values among ``n_draws`` posterior draws, one row per replicate."""

    ranks: pd.DataFrame
    n_draws: int
    failed_gate: int

    def uniformity_p_values(self, bins: int = 10) -> pd.Series:
        """Chi-square test of uniform ranks per quantity (large p-values = calibrated)."""
        from scipy.stats import chisquare

        out = {}
        for column in self.ranks.columns.drop("replicate"):
            counts, _ = np.histogram(self.ranks[column], bins=bins, range=(0, self.n_draws + 1))
            out[column] = float(chisquare(counts).pvalue)
        return pd.Series(out, name="p_value")

    def binomial_band_check(self, *, bins: int = 20, level: float = 0.99) -> BandCheck:
        """Count rank-histogram bins outside their binomial band (see :class:`BandCheck`)."""
        from scipy.stats import binom

        n = len(self.ranks)
        low, high = binom.ppf([(1 - level) / 2, (1 + level) / 2], n, 1 / bins)
        outliers = {}
        for column in self.ranks.columns.drop("replicate"):
            counts, _ = np.histogram(self.ranks[column], bins=bins, range=(0, self.n_draws + 1))
            outliers[column] = int(((counts < low) | (counts > high)).sum())
        total = bins * len(outliers)
        allowed = int(binom.ppf(0.999, total, 1 - level))
        return BandCheck(pd.Series(outliers, name="outliers"), total, allowed)


@dataclass(frozen=True)
class BandCheck:
    """Rank histograms against the binomial band of a uniform histogram.

    With ``bins`` bins and ``n`` replicates, each bin count is Binomial(n, 1/bins) under
    uniformity; a bin outside its ``level`` band is an *outlier*. Over all quantities the number
    of outliers is itself about Binomial(total bins, 1 - level); the check passes when it is at
    most that distribution's 99.9% quantile (OncoBayes2 checks its stored SBC runs the same way).
    """

    outliers: pd.Series  # per quantity
    total_bins: int
    allowed_outliers: int

    @property
    def passed(self) -> bool:
        return int(self.outliers.sum()) <= self.allowed_outliers


def run_sbc(
    model: BayesianModel,
    quantities: dict[str, Callable[[xr.Dataset], np.ndarray]],
    *,
    replicates: int,
    seed: int,
    settings: FitSettings,
    thin_to: int = 100,
    progress: Callable[[int], None] = lambda replicate: None,
) -> SBCResult:
    """Simulation-based calibration of ``model`` for scalar ``quantities``.

    Each quantity is a function of (completed) draws returning one value per draw. Posterior
    draws are thinned to ``thin_to`` (evenly) to reduce autocorrelation in the ranks.
    """
    streams = np.random.SeedSequence(seed).spawn(replicates)
    rows = []
    failed = 0
    for replicate, stream in enumerate(streams):
        prior_seed, simulation_seed, fit_seed = (int(s.generate_state(1)[0]) for s in stream.spawn(3))
        truth = prior_draw(model, prior_seed)
        simulated, completed_truth = simulate_from(model, truth, simulation_seed)
        result = fit(simulated, seed=fit_seed, settings=settings, prior_draws=10)
        failed += not result.converged
        posterior = result.posterior
        total = posterior.sizes["chain"] * posterior.sizes["draw"]
        keep = np.linspace(0, total - 1, thin_to).astype(int)
        row = {"replicate": replicate}
        for name, function in quantities.items():
            true_value = float(np.asarray(function(completed_truth)).reshape(-1)[0])
            draws = np.asarray(function(posterior)).reshape(-1)[keep]
            row[name] = int((draws < true_value).sum())
        rows.append(row)
        progress(replicate)
    return SBCResult(ranks=pd.DataFrame(rows), n_draws=thin_to, failed_gate=failed)


def model_fingerprint(model: BayesianModel, *, cache: DesignCache | None = None) -> dict[str, float]:
    """What identifies a model for a stored calibration: its joint log density at three points.

    The points are PyMC's deterministic initial point and two fixed shifts of it (on the
    sampler's unconstrained scale). The log density there changes whenever a prior, the
    likelihood's code or the design (doses, baselines, months) does, and not when only a
    setting is renamed or added with a default that keeps the model as it was.
    """
    graph = (cache or DEFAULT_CACHE).get(model).graph_with_outcomes(model)
    logp = graph.compile_logp()
    start = graph.initial_point(0)
    fingerprint = {}
    for name, shift in (("logp_at_initial_point", 0.0), ("logp_shifted_up", 0.3), ("logp_shifted_down", -0.2)):
        point = {key: np.asarray(value) + shift for key, value in start.items()}
        fingerprint[name] = round(float(logp(point)), 6)
    return fingerprint
