"""Numerically stable building blocks, written once for two backends.

Each likelihood in lupusbayes is written a single time against a small ``ops`` namespace and
evaluated twice: with :data:`NUMPY_OPS` on posterior draws (pointwise log-likelihood,
predictive checks, derived probabilities) and with :func:`tensor_ops` inside the PyMC graph
that NUTS samples. One formula, two backends: the sampled model and the reported numbers
cannot drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np
from scipy import special

__all__ = ["sigmoid", "Ops", "NUMPY_OPS", "tensor_ops", "ordinal_logit_log_prob", "rounded_normal_log_prob"]


def sigmoid(x):
    """Logistic function, overflow-free (NumPy)."""
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def _np_log1mexp(x):
    """log(1 - exp(x)) for x <= 0 (Maechler 2012)."""
    x = np.minimum(x, -1e-300)
    with np.errstate(divide="ignore", invalid="ignore"):  # np.where evaluates both branches
        return np.where(x > -np.log(2.0), np.log(-np.expm1(x)), np.log1p(-np.exp(x)))


@dataclass(frozen=True)
class Ops:
    """The array functions the likelihoods use: an array module plus three special functions."""

    xp: ModuleType
    softplus: Any
    log1mexp: Any
    log_ndtr: Any

    def log_sigmoid(self, x):
        return -self.softplus(-x)


NUMPY_OPS = Ops(xp=np, softplus=lambda x: np.logaddexp(0.0, x), log1mexp=_np_log1mexp, log_ndtr=special.log_ndtr)


def tensor_ops() -> Ops:
    """The same operations for PyTensor graphs (imported lazily: PyMC is heavy)."""
    import pytensor.tensor as pt
    from pymc.distributions.dist_math import normal_lcdf

    return Ops(xp=pt, softplus=pt.softplus, log1mexp=pt.log1mexp, log_ndtr=lambda z: normal_lcdf(0.0, 1.0, z))


_OPEN_END = 1e6  # stands in for +/- infinity at the ends of the ordinal scale


def ordinal_logit_log_prob(outcome, eta, cutpoints, ops: Ops = NUMPY_OPS):
    """Log P(Y = y) under a cumulative logit model ``P(Y >= k) = sigmoid(eta - c_{k-1})``.

    ``cutpoints`` (last axis of length K, increasing, ``c_0`` usually 0) give K+1 categories
    0..K. Uses ``sigmoid(a) - sigmoid(b) = sigmoid(a) sigmoid(-b) (1 - exp(b - a))`` so that
    every category is computed in log space without cancellation. ``eta`` broadcasts against
    ``outcome``; ``cutpoints`` has one more trailing axis.
    """
    xp = ops.xp
    leading = cutpoints[..., :1] * 0.0
    padded = xp.concatenate([leading - _OPEN_END, cutpoints, leading + _OPEN_END], axis=-1)
    if xp is np:
        index = np.broadcast_to(np.asarray(outcome, dtype=int), np.shape(eta))
        lower, upper = _gather(padded, index), _gather(padded, index + 1)
    else:  # in the graph the cutpoints are shared: a plain gather
        lower, upper = padded[..., outcome], padded[..., outcome + 1]
    a = eta - lower  # eta - c_{y-1}
    b = eta - upper  # eta - c_y
    return ops.log_sigmoid(a) + ops.log_sigmoid(-b) + ops.log1mexp(b - a)


def _gather(padded: np.ndarray, index: np.ndarray) -> np.ndarray:
    """``padded[..., index]`` elementwise: padded (..., K+2) against index (..., n)."""
    padded = np.asarray(padded)
    batch = np.broadcast_shapes(padded.shape[:-1], index.shape[:-1])
    expanded = np.broadcast_to(padded[..., None, :], batch + index.shape[-1:] + padded.shape[-1:])
    return np.take_along_axis(expanded, np.broadcast_to(index, batch + index.shape[-1:])[..., None], axis=-1)[..., 0]


def rounded_normal_log_prob(score, mean, sd, maximum: int, ops: Ops = NUMPY_OPS):
    """Log P(Y = y) for ``Y = clip(round(X), 0, maximum)``, ``X ~ Normal(mean, sd)``.

    The interval ``[y - 1/2, y + 1/2)`` is opened to ``(-inf, 1/2)`` at 0 and
    ``[maximum - 1/2, inf)`` at the top, so the floor at 0 carries the mass below it. The
    difference of normal CDFs is taken in whichever tail keeps it accurate: P(lower < Z < upper)
    = P(-upper < Z < -lower), so an interval in the right tail is mirrored into the left one and
    only one pair of CDFs is computed (half the cost of computing both tails and choosing).
    """
    xp = ops.xp
    upper = xp.where(score >= maximum, _OPEN_END, (score + 0.5 - mean) / sd)
    lower = xp.where(score <= 0, -_OPEN_END, (score - 0.5 - mean) / sd)
    right = lower > 0
    near = xp.where(right, -lower, upper)
    far = xp.where(right, -upper, lower)
    log_near = ops.log_ndtr(near)
    return log_near + ops.log1mexp(ops.log_ndtr(far) - log_near)
