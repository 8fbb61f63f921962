"""The single-study BLRM by deterministic 2-D quadrature (NumPy only, no MCMC).

``logit p(d) = log a + exp(log b) * log(d / d*)``, ``(log a, log b) ~ BVN(prior)``, binomial
DLT counts per dose. With two parameters the posterior can be integrated on a grid: the prior
is whitened (``theta = mean + L z``), ``z`` is laid on a square grid of ``points x points``
over ``[-span, span]^2`` standard deviations, and every posterior expectation is a weighted
sum. The result has no Monte Carlo error, so it is the reference the MCMC BLRM is tested
against, and (about a millisecond per posterior) the engine the planned trial simulator can
call thousands of times.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.special import expit, log_expit

from lupusbayes.spec import BivariateNormalPrior, ToxicityIntervals

__all__ = ["GridPosterior", "blrm_grid_posterior"]


@dataclass(frozen=True)
class GridPosterior:
    """Posterior of a single-study BLRM on a grid: nodes ``theta`` and normalised ``weights``."""

    theta: np.ndarray  # (n_nodes, 2): log a, log b
    weights: np.ndarray  # (n_nodes,), sums to 1
    reference_dose: float

    def p_dlt(self, doses) -> np.ndarray:
        """P(DLT) at each node and dose: (n_nodes, n_doses)."""
        x = np.log(np.asarray(doses, dtype=float) / self.reference_dose)
        return expit(self.theta[:, :1] + np.exp(self.theta[:, 1:]) * x)

    def mean_p_dlt(self, doses) -> np.ndarray:
        """Posterior mean of P(DLT) per dose."""
        return self.weights @ self.p_dlt(doses)

    def interval_probabilities(self, doses, intervals: ToxicityIntervals | None = None) -> np.ndarray:
        """Posterior probability of each toxicity interval per dose: (n_doses, n_intervals)."""
        intervals = intervals or ToxicityIntervals.oncology()
        return np.einsum("n,ndk->dk", self.weights, intervals.indicators(self.p_dlt(doses)))

    def quantiles_p_dlt(self, doses, probabilities=(0.05, 0.5, 0.95)) -> np.ndarray:
        """Weighted quantiles of P(DLT) per dose: (n_doses, n_probabilities)."""
        p = self.p_dlt(doses)
        out = np.empty((p.shape[1], len(probabilities)))
        for j in range(p.shape[1]):
            order = np.argsort(p[:, j])
            cumulative = np.cumsum(self.weights[order])
            out[j] = np.interp(probabilities, cumulative, p[order, j])
        return out

    def summary(self, doses, intervals: ToxicityIntervals | None = None) -> pd.DataFrame:
        intervals = intervals or ToxicityIntervals.oncology()
        probabilities = self.interval_probabilities(doses, intervals)
        quantiles = self.quantiles_p_dlt(doses)
        return pd.DataFrame(
            {
                "dose": np.asarray(doses, dtype=float),
                "mean": self.mean_p_dlt(doses),
                "q5": quantiles[:, 0],
                "median": quantiles[:, 1],
                "q95": quantiles[:, 2],
                **{f"P({name})": probabilities[:, k] for k, name in enumerate(intervals.names)},
            }
        )


def blrm_grid_posterior(
    doses,
    n_patients,
    n_dlt,
    *,
    prior: BivariateNormalPrior,
    reference_dose: float,
    points: int = 301,
    span: float = 7.0,
) -> GridPosterior:
    """Grid posterior of the BLRM for DLT counts ``n_dlt`` out of ``n_patients`` at ``doses``.

    Examples
    --------
    >>> prior = BivariateNormalPrior(0.0, 0.0, 2.0, 1.0)
    >>> posterior = blrm_grid_posterior([1, 2.5, 5, 10, 25], [3, 4, 5, 4, 2], [0, 0, 0, 0, 2],
    ...                                 prior=prior, reference_dose=50)
    >>> bool(0.0 < posterior.mean_p_dlt([25])[0] < 1.0)
    True
    """
    doses = np.asarray(doses, dtype=float)
    n = np.asarray(n_patients, dtype=float)
    y = np.asarray(n_dlt, dtype=float)
    if not (doses.shape == n.shape == y.shape) or np.any(y > n) or np.any(doses <= 0):
        raise ValueError("doses, n_patients and n_dlt must have equal length, positive doses and n_dlt <= n_patients")
    axis = np.linspace(-span, span, points)
    z = np.stack(np.meshgrid(axis, axis, indexing="ij"), axis=-1).reshape(-1, 2)
    theta = prior.mean + z @ prior.cholesky.T
    eta = theta[:, :1] + np.exp(theta[:, 1:]) * np.log(doses / reference_dose)
    log_lik = (y * log_expit(eta) + (n - y) * log_expit(-eta)).sum(axis=1)
    log_weight = log_lik - 0.5 * (z**2).sum(axis=1)  # the whitening Jacobian is constant
    weights = np.exp(log_weight - log_weight.max())
    return GridPosterior(theta=theta, weights=weights / weights.sum(), reference_dose=float(reference_dose))
