"""The single-study BLRM by deterministic quadrature, for one data set or thousands at once.

``logit p(d) = log a + exp(log b) * log(d / d*)`` with binomial DLT counts per dose and a prior
on ``theta = (log a, log b)``: a bivariate normal or a mixture of them (a meta-analytic
predictive prior from co-data is such a mixture). With two parameters the posterior is
integrated on a grid, with no Monte Carlo error:

1. **Centre and scale on the posterior.** The posterior mode is found by damped Newton steps
   and the grid is laid in the coordinates that whiten the Laplace approximation there:
   ``theta = mode + L z``, ``L L' = (-Hessian)^-1``, ``z`` on ``points x points`` nodes over
   ``[-span, span]^2``. A grid scaled to the *prior* wastes most nodes where the posterior has
   no mass once data arrive; one scaled to the posterior does not.
2. **Weights** are the posterior density at the nodes (the Jacobian is constant), normalised.
   Posterior means of smooth functions such as P(DLT) converge quickly in the number of nodes.
3. **Interval probabilities** such as P(P(DLT) >= 0.2) are integrals of an indicator; a node
   rule for them is only first-order accurate. Each node instead stands for its grid cell, the
   dose's linear predictor is taken as linear across the cell, and the exact fraction of the
   cell above the threshold is used (the CDF of a sum of two uniforms): second-order accurate.

Accuracy and speed are measured by ``scripts/benchmark_exact_blrm.py`` against a 1201 x 1201
reference grid and recorded in ``docs/validation.md``. Every function takes DLT counts for one
data set (shape ``(n_doses,)``) or a batch (``(n_sets, n_doses)``); results carry the same
leading batch dimension.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.special import expit, log_expit, logit

from lupusbayes.spec import BivariateNormalMixture, BivariateNormalPrior, ToxicityIntervals

__all__ = ["ExactPosterior", "blrm_exact_posterior", "TRUNCATION_LIMIT", "REFINED_GRIDS"]

_NEWTON_STEPS = 60
_MAX_STEP = 2.0  # longest Newton step in (log a, log b), the whole vector shortened together
#: A posterior with more weight than this on the grid's outer ring is truncated: use a wider grid.
TRUNCATION_LIMIT = 1e-3
#: The grids to try after the default (41 points over 10 Laplace SDs) when one is truncated.
REFINED_GRIDS = ({"points": 61, "span": 14.0}, {"points": 101, "span": 20.0})


def _prior_terms(prior: BivariateNormalPrior | BivariateNormalMixture, theta: np.ndarray):
    """log density, gradient and Hessian of the prior at ``theta`` (..., 2)."""
    log_weights = np.log(prior.weights)
    logs, grads, precisions = [], [], []
    for component in prior.components:
        precision = np.linalg.inv(component.covariance)
        delta = theta - component.mean
        quadratic = np.einsum("...i,ij,...j->...", delta, precision, delta)
        log_norm = -np.log(2 * np.pi) - 0.5 * np.log(np.linalg.det(component.covariance))
        logs.append(log_norm - 0.5 * quadratic)
        grads.append(-delta @ precision)
        precisions.append(precision)
    log_terms = np.stack(logs, axis=-1) + log_weights
    log_density = np.logaddexp.reduce(log_terms, axis=-1)
    responsibility = np.exp(log_terms - log_density[..., None])  # (..., k)
    gradient = np.einsum("...k,k...i->...i", responsibility, np.stack(grads))
    # Hessian of a mixture: sum_k r_k (g_k g_k' - P_k) - g g'
    outer = np.einsum("k...i,k...j->k...ij", np.stack(grads), np.stack(grads))
    within = outer - np.asarray(precisions)[:, *([None] * (theta.ndim - 1))]
    hessian = np.einsum("...k,k...ij->...ij", responsibility, within) - np.einsum("...i,...j->...ij", gradient, gradient)
    return log_density, gradient, hessian


def _log_posterior_terms(theta, x, n, y, prior):
    """log posterior (up to a constant), gradient and Hessian at ``theta`` (..., 2); data (..., D)."""
    log_a, log_b = theta[..., 0], theta[..., 1]
    slope = np.exp(log_b)
    eta = log_a[..., None] + slope[..., None] * x
    p = expit(eta)
    log_lik = (y * log_expit(eta) + (n - y) * log_expit(-eta)).sum(-1)
    residual = y - n * p  # d loglik / d eta
    curvature = n * p * (1 - p)  # -d2 loglik / d eta2
    d_eta_d_b = slope[..., None] * x  # d eta / d log b
    gradient = np.stack([residual.sum(-1), (residual * d_eta_d_b).sum(-1)], axis=-1)
    h_aa = -curvature.sum(-1)
    h_ab = -(curvature * d_eta_d_b).sum(-1)
    h_bb = (-curvature * d_eta_d_b**2 + residual * d_eta_d_b).sum(-1)
    hessian = np.stack([np.stack([h_aa, h_ab], -1), np.stack([h_ab, h_bb], -1)], -2)
    prior_log, prior_grad, prior_hess = _prior_terms(prior, theta)
    return log_lik + prior_log, gradient + prior_grad, hessian + prior_hess


def _mode_and_scale(x, n, y, prior):
    """Posterior mode by damped Newton (vectorised over data sets), the Laplace Cholesky factor, and
    whether the mode was found (the gradient vanishes there)."""
    batch = n.shape[:-1]
    start = prior.components[int(np.argmax(prior.weights))].mean
    theta = np.broadcast_to(start, batch + (2,)).astype(float).copy()
    value, gradient, hessian = _log_posterior_terms(theta, x, n, y, prior)
    # a data set stops moving once its own step is negligible, so its mode (and every number
    # computed from it) does not depend on which other data sets share the batch
    converged = np.zeros(batch, dtype=bool)
    for _ in range(_NEWTON_STEPS):
        # a Newton step where the Hessian is negative definite, else a gradient step: both go uphill.
        # A long step is shortened as a whole vector; clipping each coordinate on its own can turn
        # it downhill, and the search then never leaves its start.
        negative_definite = (hessian[..., 0, 0] < 0) & (np.linalg.det(hessian) > 0)
        safe = np.where(negative_definite[..., None, None], hessian, -np.eye(2))
        step = -np.linalg.solve(safe, gradient[..., None])[..., 0]
        longest = np.abs(step).max(axis=-1)
        step = step * np.minimum(1.0, _MAX_STEP / np.maximum(longest, 1e-300))[..., None]
        step = np.where(converged[..., None], 0.0, step)
        scale = np.ones(batch)
        for _ in range(40):  # halve the step until the log posterior does not fall
            candidate = theta + scale[..., None] * step
            new_value, new_gradient, new_hessian = _log_posterior_terms(candidate, x, n, y, prior)
            worse = ~(new_value >= value - 1e-12)
            if not worse.any():
                break
            scale = np.where(worse, scale / 2, scale)
        keep = worse  # no shorter step went uphill: stay (and stop) where the search is
        theta = np.where(keep[..., None], theta, candidate)
        value = np.where(keep, value, new_value)
        gradient = np.where(keep[..., None], gradient, new_gradient)
        hessian = np.where(keep[..., None, None], hessian, new_hessian)
        converged |= keep | np.all(np.abs(scale[..., None] * step) < 1e-10, axis=-1)
        if converged.all():
            break
    precision = -hessian
    positive = (precision[..., 0, 0] > 0) & (np.linalg.det(precision) > 0)
    prior_covariance = prior.components[0].covariance
    covariance = np.where(positive[..., None, None], np.linalg.inv(np.where(positive[..., None, None], precision,
                                                                             np.eye(2))), prior_covariance)
    # the mode: the gradient vanishes, relative to the curvature (a Newton step of at most 1e-6)
    newton_step = np.abs(np.einsum("...ij,...j->...i", covariance, gradient)).max(axis=-1)
    found = positive & (newton_step < 1e-6)
    return theta, np.linalg.cholesky(covariance), found


def _uniform_sum_cdf(s, a, b):
    """P(U + V <= s) for independent U ~ U(-a/2, a/2), V ~ U(-b/2, b/2), a, b >= 0 (the trapezoid CDF)."""
    wide, narrow = np.maximum(a, b), np.minimum(a, b)
    narrow = np.maximum(narrow, 1e-12 * np.maximum(wide, 1e-300))
    wide = np.maximum(wide, 1e-300)
    lower, flat_low, flat_high, upper = -(wide + narrow) / 2, -(wide - narrow) / 2, (wide - narrow) / 2, (wide + narrow) / 2
    rising = (s - lower) ** 2 / (2 * wide * narrow)
    middle = narrow / (2 * wide) + (s - flat_low) / wide
    falling = 1 - (upper - s) ** 2 / (2 * wide * narrow)
    return np.where(s <= lower, 0.0, np.where(s <= flat_low, rising, np.where(s <= flat_high, middle,
                                                                               np.where(s < upper, falling, 1.0))))


@dataclass(frozen=True)
class ExactPosterior:
    """A BLRM posterior on a grid: nodes, normalised weights, and the cells the nodes stand for.

    Arrays have a leading batch dimension (one row per data set); ``batched`` says whether the
    caller gave a batch, and results drop that dimension when not.
    """

    theta: np.ndarray  # (B, M, 2) nodes: log a, log b
    weights: np.ndarray  # (B, M), each row sums to 1
    cell_axes: np.ndarray  # (B, M, 2, 2): columns are each node's cell edge vectors in theta
    mode: np.ndarray  # (B, 2)
    boundary_mass: np.ndarray  # (B,): weight on the grid's outermost ring (truncation check)
    reference_dose: float
    batched: bool
    mode_found: np.ndarray | None = None  # (B,): the mode search converged (the grid is centred on the posterior)

    @property
    def resolved(self) -> np.ndarray:
        """(B,) the grid is centred on the posterior's mode and holds it (boundary mass <= the limit)."""
        found = np.ones(self.mode.shape[0], dtype=bool) if self.mode_found is None else self.mode_found
        return found & (self.boundary_mass <= TRUNCATION_LIMIT)

    def _out(self, array: np.ndarray) -> np.ndarray:
        return array if self.batched else array[0]

    def _eta(self, doses) -> np.ndarray:
        x = np.log(np.asarray(doses, dtype=float) / self.reference_dose)
        return self.theta[..., :1] + np.exp(self.theta[..., 1:]) * x  # (B, M, D)

    def p_dlt(self, doses) -> np.ndarray:
        """P(DLT) at each node and dose: (B, M, D)."""
        return expit(self._eta(doses))

    def mean_p_dlt(self, doses) -> np.ndarray:
        """Posterior mean of P(DLT) per dose: (B, D)."""
        return self._out(np.einsum("bm,bmd->bd", self.weights, self.p_dlt(doses)))

    def probability_at_least(self, doses, threshold: float) -> np.ndarray:
        """Posterior probability that P(DLT) >= ``threshold`` per dose: (B, D), cell-integrated."""
        if threshold <= 0.0:
            return self._out(np.ones((self.weights.shape[0], np.size(doses))))
        if threshold >= 1.0:
            return self._out(np.zeros((self.weights.shape[0], np.size(doses))))
        x = np.log(np.asarray(doses, dtype=float) / self.reference_dose)
        eta = self._eta(doses)
        slope = np.exp(self.theta[..., 1:])
        # gradient of eta in theta is (1, slope * x); across a cell it changes by these amounts:
        gradient = np.stack([np.ones_like(eta), slope * x], axis=-1)  # (B, M, D, 2)
        spans = np.abs(np.einsum("bmdi,bmij->bmdj", gradient, self.cell_axes))  # (B, M, D, 2)
        above = 1.0 - _uniform_sum_cdf(logit(threshold) - eta, spans[..., 0], spans[..., 1])
        return self._out(np.einsum("bm,bmd->bd", self.weights, above))

    def interval_probabilities(self, doses, intervals: ToxicityIntervals | None = None) -> np.ndarray:
        """Posterior probability of each toxicity interval per dose: (B, D, K)."""
        intervals = intervals or ToxicityIntervals.oncology()
        at_least = np.stack([np.atleast_2d(self.probability_at_least(doses, edge)) for edge in intervals.edges], -1)
        at_least[..., -1] = 0.0  # P(P(DLT) >= 1) = 0: the last interval is closed at 1
        return self._out(at_least[..., :-1] - at_least[..., 1:])

    def quantiles_p_dlt(self, doses, probabilities=(0.05, 0.5, 0.95)) -> np.ndarray:
        """Weighted quantiles of P(DLT) per dose (node rule): (B, D, Q)."""
        p = self.p_dlt(doses)  # (B, M, D)
        order = np.argsort(p, axis=1)
        sorted_p = np.take_along_axis(p, order, axis=1)
        sorted_w = np.take_along_axis(np.broadcast_to(self.weights[..., None], p.shape), order, axis=1)
        cumulative = np.cumsum(sorted_w, axis=1) - 0.5 * sorted_w
        out = np.empty(p.shape[:1] + p.shape[2:] + (len(probabilities),))
        for b in range(p.shape[0]):
            for d in range(p.shape[2]):
                out[b, d] = np.interp(probabilities, cumulative[b, :, d], sorted_p[b, :, d])
        return self._out(out)

    def summary(self, doses, intervals: ToxicityIntervals | None = None) -> pd.DataFrame:
        """One data set's per-dose table: mean, 5% / 50% / 95% quantiles, interval probabilities."""
        if self.batched:
            raise ValueError("summary() describes one data set; index the batch first or use the array methods")
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


def blrm_exact_posterior(
    doses,
    n_patients,
    n_dlt,
    *,
    prior: BivariateNormalPrior | BivariateNormalMixture,
    reference_dose: float,
    points: int = 41,
    span: float = 10.0,
    stretch: float = 1.6,
) -> ExactPosterior:
    """Posterior of the single-study BLRM for DLT counts ``n_dlt`` of ``n_patients`` at ``doses``.

    ``n_patients`` and ``n_dlt`` are ``(n_doses,)`` for one data set or ``(n_sets, n_doses)`` for
    a batch (doses with no patients contribute nothing). See the module docstring for the method.

    Examples
    --------
    >>> prior = BivariateNormalPrior(0.0, 0.0, 2.0, 1.0)
    >>> posterior = blrm_exact_posterior([1, 2.5, 5, 10, 25], [3, 4, 5, 4, 2], [0, 0, 0, 0, 2],
    ...                                  prior=prior, reference_dose=50)
    >>> round(float(posterior.mean_p_dlt([25])[0]), 3)
    0.444
    """
    doses = np.asarray(doses, dtype=float)
    n = np.asarray(n_patients, dtype=float)
    y = np.asarray(n_dlt, dtype=float)
    batched = n.ndim == 2
    n, y = np.atleast_2d(n), np.atleast_2d(y)
    if doses.ndim != 1 or n.shape != y.shape or n.shape[-1] != doses.size:
        raise ValueError("doses must be 1-D and n_patients, n_dlt of shape (n_doses,) or (n_sets, n_doses)")
    if np.any(doses <= 0) or np.any(y < 0) or np.any(y > n) or points < 3 or span <= 0:
        raise ValueError("doses must be positive, 0 <= n_dlt <= n_patients, points >= 3 and span > 0")
    x = np.log(doses / reference_dose)
    mode, cholesky, mode_found = _mode_and_scale(x, n, y, prior)
    # nodes equally spaced in u, mapped to z = stretch * sinh(u / stretch): fine near the mode,
    # coarse in the tails, out to +/- span Laplace SDs (the posterior's tails are heavier than
    # the Laplace approximation's when few DLTs leave the slope loosely identified)
    u_max = stretch * np.arcsinh(span / stretch)
    u = np.linspace(-u_max, u_max, points)
    spacing = u[1] - u[0]
    z_axis, dz_du = stretch * np.sinh(u / stretch), np.cosh(u / stretch)
    index = np.stack(np.meshgrid(np.arange(points), np.arange(points), indexing="ij"), axis=-1).reshape(-1, 2)
    z = z_axis[index]  # (M, 2)
    jacobian = dz_du[index]  # (M, 2)
    theta = mode[:, None, :] + np.einsum("bij,mj->bmi", cholesky, z)  # (B, M, 2)
    log_post, _, _ = _log_posterior_terms(theta, x, n[:, None, :], y[:, None, :], prior)
    log_post = log_post + np.log(jacobian).sum(axis=1)
    weights = np.exp(log_post - log_post.max(axis=1, keepdims=True))
    weights /= weights.sum(axis=1, keepdims=True)
    edge = ((index == 0) | (index == points - 1)).any(axis=1)
    cell_axes = cholesky[:, None, :, :] * (jacobian * spacing)[None, :, None, :]  # (B, M, 2, 2)
    return ExactPosterior(
        theta=theta, weights=weights, cell_axes=cell_axes, mode=mode,
        boundary_mass=weights[:, edge].sum(axis=1), reference_dose=float(reference_dose), batched=batched,
        mode_found=mode_found,
    )
