"""The continual reassessment method (CRM) and its time-to-event variant (TITE-CRM).

One-parameter CRM (O'Quigley, Pepe & Fisher 1990) with a normal prior on the log-slope, as in
the R package dfcrm 0.2-2.1 (Cheung 2011, *Dose Finding by the Continual Reassessment Method*),
function by function:

* :func:`crm_skeleton` calibrates a skeleton by the indifference interval (Lee & Cheung 2009,
  Clin Trials 6:227-238; dfcrm ``getprior``);
* :class:`CrmModel` holds the working model and its prior (the arguments ``prior``, ``target``,
  ``model``, ``intcpt`` and ``scale`` of dfcrm ``crm``);
* :func:`crm_posterior` and :func:`crm_posterior_batch` compute the exact posterior of the
  log-slope by quadrature (dfcrm ``crm`` and ``titecrm`` with ``method="bayes"``, whose
  integrands are ``crmh``/``crmht`` and ``crmhlgt``/``crmhtlgt``);
* :func:`crm_next_dose` chooses the level for the next patient or cohort: dfcrm's recommendation
  (``crm(...)$mtd``), the restrictions of dfcrm ``crmsim(restrict=TRUE)`` and ``escalation``'s
  ``dont_skip_doses``, and ``escalation``'s ``stop_when_too_toxic(dose = 1)``;
* :func:`crm_select_mtd` selects the dose at the end (the final ``crm(...)$mtd`` of ``crmsim``
  and ``titesim``);
* :func:`tite_weights` weighs patients still in their DLT window (Cheung & Chappell 2000,
  Biometrics 56:1177-1182; dfcrm ``titecrm``, ``scheme="linear"`` or ``"adaptive"``).

The vectorised simulators, :func:`~lupusbayes.simulation.crm_simulation.simulate_crm` and
:func:`~lupusbayes.simulation.crm_simulation.simulate_tite_crm`, live in the simulation layer
and call :func:`crm_posterior_batch`, so they compute the same numbers as the scalar path.

The model
---------
With skeleton s_1 < ... < s_K and log-slope beta ~ N(0, ``prior_sd`` ** 2):

* empiric (power) model: p_d(beta) = s_d ** exp(beta);
* logistic model: logit p_d(beta) = a + exp(beta) * x_d, with the intercept a fixed
  (``intercept``, dfcrm's ``intcpt``, default 3) and the dose labels x_d = logit(s_d) - a, so
  that p_d(0) = s_d. dfcrm requires every x_d < 0.

**Prior scale.** ``prior_sd`` is a standard deviation, like dfcrm's ``scale``; dfcrm's default
``scale = sqrt(1.34)`` is a prior *variance* of 1.34 (:data:`DEFAULT_PRIOR_VARIANCE`).

A patient at level d with DLT indicator y and weight w contributes p_d^y (1 - w p_d)^(1 - y) to
the likelihood (Cheung & Chappell 2000); w = 1 for a complete patient, and a patient with a DLT
always counts with w = 1 (dfcrm ``titecrm`` sets ``weights[tox == 1] <- 1``).

**Which estimate decides.** dfcrm estimates beta by its posterior mean and reports the plug-in
curve ptox_d = p_d(E[beta | data]), not the posterior mean E[p_d | data]; the recommendation is
the level whose plug-in estimate is closest to the target. So do :func:`crm_next_dose` and
:func:`crm_select_mtd`. :class:`CrmPosterior` also reports E[p_d | data], which can differ in
close calls.

Numerics
--------
The posterior of the single parameter beta is integrated on a fixed Gauss-Legendre grid over
+/- 10 prior SDs, split at the values of beta where each level's DLT probability crosses the
target, so that P(p_d > target | data) = P(beta < threshold_d | data) is a sum over whole
pieces. Nodes are at most 0.1 apart on the beta axis, with at least 16 on each piece (about 280
nodes for dfcrm's prior and 5 levels). Against adaptive quadrature (``scipy.integrate.quad``,
tests/test_crm.py) the posterior mean of beta, the plug-in estimates and P(p_d > target | data)
agree to better than 1e-8 for trials of up to 30 patients; against a grid ten times finer they
agree to about 1e-9 for trials of 1,000 patients.

Conventions
-----------
Dose levels are **0-based indices** in the API (``patient_level_index``, ``*_level_index``);
sentences meant for people count levels **from 1**, as dfcrm and ``escalation`` do (dfcrm's
``nu`` is also counted from 1: ``prior_mtd_level``).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy import special

from lupusbayes.decisions.level_counts import check_level, check_min_patients, check_positive_int, plural

__all__ = [
    "DEFAULT_PRIOR_VARIANCE",
    "CrmDecision",
    "CrmModel",
    "CrmPosterior",
    "CrmPosteriorBatch",
    "CrmSelection",
    "closest_level_to_target",
    "crm_next_dose",
    "crm_posterior",
    "crm_posterior_batch",
    "crm_select_mtd",
    "crm_skeleton",
    "tite_weights",
]

WorkingModel = Literal["empiric", "logistic"]
WeightScheme = Literal["linear", "adaptive"]
Action = Literal["escalate", "stay", "deescalate", "stop"]

#: dfcrm's default prior variance of beta; its ``scale`` argument is the SD, sqrt(1.34).
DEFAULT_PRIOR_VARIANCE = 1.34
#: The quadrature grid covers beta in +/- this many prior SDs.
GRID_HALF_WIDTH_IN_PRIOR_SD = 10.0
#: Largest distance between neighbouring quadrature nodes on the beta axis.
NODE_SPACING = 0.1
#: Fewest Gauss-Legendre nodes on each piece of the grid (pieces end at the level thresholds); the
#: short pieces between thresholds hold most of the posterior mass once there are many patients.
MIN_NODES_PER_PIECE = 16
#: Largest prior SD of beta accepted: the grid's +/- 10 SD must keep exp(beta) within floating point.
MAX_PRIOR_SD = 10.0


# ---- the skeleton ---------------------------------------------------------------------------


def crm_skeleton(
    halfwidth: float,
    target: float,
    prior_mtd_level: int,
    n_levels: int,
    *,
    model: WorkingModel = "empiric",
    intercept: float = 3.0,
) -> np.ndarray:
    """A skeleton calibrated by the indifference interval (Lee & Cheung 2009; dfcrm ``getprior``).

    The prior MTD gets the target, ``s_nu = target``. Walking outwards from it, each pair of
    neighbouring levels (k - 1, k) is spaced so that at the slope b_k where level k has DLT
    probability ``target + halfwidth``, level k - 1 has ``target - halfwidth``. At b_k the two
    levels are equally far from the target, so the CRM switches between them there, and it
    eventually selects a level whose DLT probability lies in the indifference interval
    ``target +/- halfwidth``. For the empiric model, with p_k(b) = s_k ** exp(b)::

        exp(b_k) = log(target + halfwidth) / log(s_k),     s_(k-1) = (target - halfwidth) ** (1 / exp(b_k))

    (downwards from nu) and symmetrically upwards. For the logistic model the same holds on the
    logit scale with the dose labels x_k = logit(s_k) - intercept.

    Parameters
    ----------
    halfwidth : float
        Half-width delta of the indifference interval, with 0 < delta < min(target, 1 - target).
    target : float
        Target DLT probability, strictly between 0 and 1.
    prior_mtd_level : int
        The prior guess of the MTD, **counted from 1** as dfcrm's ``nu``.
    n_levels : int
        Number of dose levels.
    model : {"empiric", "logistic"}, default "empiric"
    intercept : float, default 3.0
        The logistic model's fixed intercept; it must exceed logit(target + halfwidth) so that
        every dose label is negative (dfcrm's requirement).

    Returns
    -------
    numpy.ndarray
        The skeleton, strictly increasing, one DLT probability per level.

    Examples
    --------
    >>> crm_skeleton(0.05, 0.3, 5, 10).round(2)  # dfcrm::getprior(0.05, 0.3, 5, 10)
    array([0.03, 0.06, 0.12, 0.2 , 0.3 , 0.4 , 0.5 , 0.59, 0.67, 0.74])
    """
    target = _check_probability(target, "target")
    halfwidth = float(halfwidth)
    if not 0 < halfwidth < min(target, 1 - target):
        raise ValueError(
            f"halfwidth must be above 0 and below min(target, 1 - target) = {min(target, 1 - target):.4g} "
            f"(got {halfwidth})"
        )
    n_levels = check_positive_int(n_levels, "n_levels")
    if isinstance(prior_mtd_level, bool) or not isinstance(prior_mtd_level, (int, np.integer)) \
            or not 1 <= prior_mtd_level <= n_levels:
        raise ValueError(
            f"prior_mtd_level is counted from 1 and must be between 1 and {n_levels} (got {prior_mtd_level!r})")
    model = _check_model_name(model)
    below, above = target - halfwidth, target + halfwidth
    nu = int(prior_mtd_level) - 1
    if model == "empiric":
        # on the scale log(s): exp(b) = log(above) / log(s_k) fixes the spacing
        log_skeleton = np.empty(n_levels)
        log_skeleton[nu] = math.log(target)
        for k in range(nu, 0, -1):
            slope = math.log(above) / log_skeleton[k]
            log_skeleton[k - 1] = math.log(below) / slope
        for k in range(nu, n_levels - 1):
            slope = math.log(below) / log_skeleton[k]
            log_skeleton[k + 1] = math.log(above) / slope
        return np.exp(log_skeleton)
    intercept = float(intercept)
    if not math.isfinite(intercept) or intercept <= special.logit(above):
        raise ValueError(
            f"intercept must exceed logit(target + halfwidth) = {special.logit(above):.4g} so that every dose "
            f"label is negative, as dfcrm requires (got {intercept})"
        )
    labels = np.empty(n_levels)
    labels[nu] = special.logit(target) - intercept
    for k in range(nu, 0, -1):
        slope = (special.logit(above) - intercept) / labels[k]
        labels[k - 1] = (special.logit(below) - intercept) / slope
    for k in range(nu, n_levels - 1):
        slope = (special.logit(below) - intercept) / labels[k]
        labels[k + 1] = (special.logit(above) - intercept) / slope
    return special.expit(intercept + labels)


# ---- the model ------------------------------------------------------------------------------


@dataclass(frozen=True)
class CrmModel:
    """A one-parameter CRM working model with a normal prior on the log-slope beta (dfcrm ``crm``).

    Attributes
    ----------
    skeleton : tuple of float
        Prior guesses of the DLT probability per level (dfcrm's ``prior``), strictly increasing,
        each strictly between 0 and 1. Any sequence is accepted and stored as a tuple.
    target : float
        Target DLT probability, strictly between 0 and 1.
    model : {"empiric", "logistic"}, default "empiric"
        Empiric: p_d = skeleton_d ** exp(beta). Logistic: logit p_d = intercept + exp(beta) x_d
        with x_d = logit(skeleton_d) - intercept.
    prior_sd : float, default sqrt(1.34)
        Prior **standard deviation** of beta, dfcrm's ``scale``; the default is dfcrm's, a prior
        variance of 1.34.
    intercept : float, default 3.0
        The logistic model's fixed intercept (dfcrm's ``intcpt``); unused by the empiric model.
        Every logit(skeleton_d) must be below it (dfcrm stops otherwise).

    Examples
    --------
    >>> model = CrmModel([0.05, 0.12, 0.25, 0.40, 0.55], target=0.25, model="logistic")
    >>> model.dose_labels.round(2)
    array([-5.94, -4.99, -4.1 , -3.41, -2.8 ])
    >>> model.dlt_probability(0.0).round(2)  # beta = 0 gives back the skeleton
    array([0.05, 0.12, 0.25, 0.4 , 0.55])
    """

    skeleton: tuple[float, ...]
    target: float
    model: WorkingModel = "empiric"
    prior_sd: float = math.sqrt(DEFAULT_PRIOR_VARIANCE)
    intercept: float = 3.0

    def __post_init__(self) -> None:
        try:
            skeleton = np.asarray(self.skeleton, dtype=float)
        except (TypeError, ValueError):
            raise ValueError(f"skeleton must be a sequence of probabilities (got {self.skeleton!r})") from None
        if skeleton.ndim != 1 or skeleton.size == 0:
            raise ValueError(f"skeleton must be a non-empty 1-D sequence of probabilities (got {self.skeleton!r})")
        if not np.all((skeleton > 0) & (skeleton < 1)):
            raise ValueError(f"every skeleton value must be strictly between 0 and 1 (got {skeleton.tolist()})")
        if np.any(np.diff(skeleton) <= 0):
            raise ValueError(f"skeleton must be strictly increasing (got {skeleton.tolist()})")
        object.__setattr__(self, "skeleton", tuple(map(float, skeleton)))
        object.__setattr__(self, "target", _check_probability(self.target, "target"))
        object.__setattr__(self, "model", _check_model_name(self.model))
        prior_sd = float(self.prior_sd)
        if not 0 < prior_sd <= MAX_PRIOR_SD:
            raise ValueError(
                f"prior_sd (a standard deviation, dfcrm's scale) must be above 0 and at most {MAX_PRIOR_SD} "
                f"(got {self.prior_sd})")
        object.__setattr__(self, "prior_sd", prior_sd)
        intercept = float(self.intercept)
        if not math.isfinite(intercept):
            raise ValueError(f"intercept must be finite (got {self.intercept})")
        object.__setattr__(self, "intercept", intercept)
        if self.model == "logistic" and np.any(special.logit(skeleton) >= intercept):
            raise ValueError(
                f"the logistic model needs logit(skeleton) < intercept at every level, so that every dose label is "
                f"negative (dfcrm: 'intercept parameter in logit model is too small'); the highest level has "
                f"logit {special.logit(skeleton[-1]):.3g} and the intercept is {intercept}"
            )

    @property
    def n_levels(self) -> int:
        return len(self.skeleton)

    @property
    def dose_labels(self) -> np.ndarray:
        """dfcrm's ``dosescaled``: the skeleton (empiric) or logit(skeleton) - intercept (logistic)."""
        skeleton = np.array(self.skeleton)
        return skeleton if self.model == "empiric" else special.logit(skeleton) - self.intercept

    def dlt_probability(self, beta) -> np.ndarray:
        """p_d(beta) for every level; shape ``(*numpy.shape(beta), n_levels)``."""
        slope = np.exp(np.asarray(beta, dtype=float))[..., None]
        if self.model == "empiric":
            return np.exp(slope * np.log(self.skeleton))
        return special.expit(self.intercept + slope * self.dose_labels)

    def beta_thresholds(self) -> np.ndarray:
        """For each level, the beta below which its DLT probability exceeds the target.

        p_d(beta) decreases in beta, so P(p_d > target | data) = P(beta < threshold_d | data).
        Empiric: threshold_d = log(log(target) / log(skeleton_d)). Logistic:
        log((logit(target) - intercept) / x_d), or -inf when target >= expit(intercept) (then no
        level can exceed the target). The thresholds increase with the level.
        """
        if self.model == "empiric":
            return np.log(math.log(self.target) / np.log(self.skeleton))
        gap = special.logit(self.target) - self.intercept
        if gap >= 0:
            return np.full(self.n_levels, -np.inf)
        return np.log(gap / self.dose_labels)


@dataclass(frozen=True, eq=False)
class _Quadrature:
    """Gauss-Legendre nodes over beta, with everything the posterior needs tabulated once per model."""

    nodes: np.ndarray  # (n_nodes,)
    log_weight: np.ndarray  # log(Gauss-Legendre weight) + log prior density, up to a constant
    dlt_probability: np.ndarray  # (n_levels, n_nodes)
    log_dlt_probability: np.ndarray  # (n_levels, n_nodes): log p_d
    log_no_dlt_probability: np.ndarray  # (n_levels, n_nodes): log(1 - p_d), computed without cancellation
    below_threshold: np.ndarray  # (n_levels, n_nodes): 1.0 where p_d > target


@functools.lru_cache(maxsize=64)  # one table per model; simulations reuse it for every decision
def _quadrature(model: CrmModel) -> _Quadrature:
    half_width = GRID_HALF_WIDTH_IN_PRIOR_SD * model.prior_sd
    thresholds = model.beta_thresholds()
    edges = np.unique(np.concatenate([[-half_width], np.clip(thresholds, -half_width, half_width), [half_width]]))
    nodes, weights = [], []
    for start, end in zip(edges[:-1], edges[1:], strict=True):
        n_nodes = max(MIN_NODES_PER_PIECE, math.ceil((end - start) / NODE_SPACING))
        unit_nodes, unit_weights = np.polynomial.legendre.leggauss(n_nodes)
        nodes.append((start + end) / 2 + (end - start) / 2 * unit_nodes)
        weights.append((end - start) / 2 * unit_weights)
    beta = np.concatenate(nodes)
    slope = np.exp(beta)
    if model.model == "empiric":
        log_p = slope * np.log(model.skeleton)[:, None]
        log_no_dlt = np.log(-np.expm1(log_p))
    else:
        linear = model.intercept + slope * model.dose_labels[:, None]
        log_p = -np.logaddexp(0.0, -linear)
        log_no_dlt = -np.logaddexp(0.0, linear)
    return _Quadrature(
        nodes=beta,
        log_weight=np.log(np.concatenate(weights)) - beta**2 / (2 * model.prior_sd**2),
        dlt_probability=np.exp(log_p),
        log_dlt_probability=log_p,
        log_no_dlt_probability=log_no_dlt,
        below_threshold=(beta[None, :] < thresholds[:, None]).astype(float),
    )


# ---- the posterior --------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class CrmPosteriorBatch:
    """The CRM posterior for many data sets at once (rows), on the quadrature grid.

    Build it with :func:`crm_posterior_batch`. Arrays are indexed by row first.

    Attributes
    ----------
    model : CrmModel
    beta_nodes : numpy.ndarray, shape (n_nodes,)
        Quadrature nodes on the beta axis.
    node_weight : numpy.ndarray, shape (n_rows, n_nodes)
        Posterior mass at each node; each row sums to 1.
    beta_mean : numpy.ndarray, shape (n_rows,)
        Posterior mean of beta (dfcrm's ``estimate`` with ``method="bayes"``).
    dlt_probability_plug_in : numpy.ndarray, shape (n_rows, n_levels)
        p_d(posterior mean of beta): dfcrm's ``ptox``, the estimate the recommendation uses.
    """

    model: CrmModel
    beta_nodes: np.ndarray
    node_weight: np.ndarray
    beta_mean: np.ndarray
    dlt_probability_plug_in: np.ndarray

    def beta_variance(self) -> np.ndarray:
        """Posterior variance of beta, E[beta^2] - E[beta]^2 (dfcrm's ``post.var``)."""
        return (self.node_weight * self.beta_nodes**2).sum(axis=1) - self.beta_mean**2

    def dlt_probability_mean(self) -> np.ndarray:
        """Posterior mean E[p_d | data] per row and level, shape (n_rows, n_levels)."""
        table = _quadrature(self.model).dlt_probability
        return np.stack([(self.node_weight * row).sum(axis=1) for row in table], axis=1)

    def probability_above_target(self, level_index: int) -> np.ndarray:
        """P(p_level > target | data) per row: the posterior mass below the level's beta threshold."""
        level_index = check_level(level_index, self.model.n_levels, "level_index")
        return (self.node_weight * _quadrature(self.model).below_threshold[level_index]).sum(axis=1)


def crm_posterior_batch(
    model: CrmModel,
    n_patients: np.ndarray,
    n_dlt: np.ndarray,
    *,
    pending_row: np.ndarray | None = None,
    pending_level: np.ndarray | None = None,
    pending_weight: np.ndarray | None = None,
) -> CrmPosteriorBatch:
    """The exact CRM posterior of beta for many data sets (rows) at once, by quadrature.

    Complete data enter as counts per level (sufficient statistics): ``n_patients[r, d]``
    patients with full weight at level d, ``n_dlt[r, d]`` of them with a DLT. The log-likelihood
    of row r at each node beta is::

        sum_d  n_dlt[r, d] log p_d(beta) + (n_patients[r, d] - n_dlt[r, d]) log(1 - p_d(beta))
          + sum over its pending patients j of  log(1 - w_j p_(d_j)(beta))

    where the pending patients (no DLT so far, weight 0 < w < 1; TITE-CRM) are given as flat
    arrays ``pending_row``, ``pending_level``, ``pending_weight``, sorted by row. The posterior
    weights are prior x likelihood x quadrature weight at each node, normalised per row.

    Parameters
    ----------
    model : CrmModel
    n_patients, n_dlt : array_like of int, shape (n_rows, n_levels)
    pending_row, pending_level, pending_weight : array_like, shape (n_pending,), optional
        Row (non-decreasing), 0-based level and weight of each pending patient.

    Returns
    -------
    CrmPosteriorBatch

    Examples
    --------
    >>> model = CrmModel([0.05, 0.12, 0.25, 0.40, 0.55], target=0.25)
    >>> batch = crm_posterior_batch(model, [[0, 0, 3, 0, 0], [0, 0, 3, 0, 0]], [[0, 0, 0, 0, 0], [0, 0, 2, 0, 0]])
    >>> batch.dlt_probability_plug_in[:, 2].round(3)  # 0/3 and 2/3 DLTs at level 3
    array([0.04 , 0.571])
    """
    quadrature = _quadrature(model)
    n_patients = np.asarray(n_patients, dtype=float)
    n_dlt = np.asarray(n_dlt, dtype=float)
    if n_patients.ndim != 2 or n_patients.shape != n_dlt.shape or n_patients.shape[1] != model.n_levels:
        raise ValueError(
            f"n_patients and n_dlt must both have shape (n_rows, {model.n_levels}) "
            f"(got {n_patients.shape} and {n_dlt.shape})"
        )
    n_rows = n_patients.shape[0]
    log_likelihood = np.zeros((n_rows, quadrature.nodes.size))
    n_no_dlt = n_patients - n_dlt
    for level in range(model.n_levels):  # elementwise, so a row's numbers do not depend on the other rows
        if n_dlt[:, level].any():
            log_likelihood += n_dlt[:, level, None] * quadrature.log_dlt_probability[level]
        if n_no_dlt[:, level].any():
            log_likelihood += n_no_dlt[:, level, None] * quadrature.log_no_dlt_probability[level]
    if pending_row is not None and np.size(pending_row):
        pending_row = np.asarray(pending_row, dtype=np.int64)
        pending_level = np.asarray(pending_level, dtype=np.int64)
        pending_weight = np.asarray(pending_weight, dtype=float)
        if not pending_row.shape == pending_level.shape == pending_weight.shape or pending_row.ndim != 1:
            raise ValueError("pending_row, pending_level and pending_weight must be 1-D and of the same length")
        if np.any(np.diff(pending_row) < 0):
            raise ValueError("pending_row must be sorted (non-decreasing)")
        # add each row's pending patients one at a time, in the order given: rank r = its r-th pending patient
        first_of_row = np.flatnonzero(np.r_[True, pending_row[1:] != pending_row[:-1]])
        rank = np.arange(pending_row.size) - np.repeat(first_of_row, np.diff(np.r_[first_of_row, pending_row.size]))
        for r in range(int(rank.max()) + 1):
            patients = np.flatnonzero(rank == r)
            log_likelihood[pending_row[patients]] += np.log1p(
                -pending_weight[patients, None] * quadrature.dlt_probability[pending_level[patients]])
    log_posterior = log_likelihood + quadrature.log_weight
    log_posterior -= log_posterior.max(axis=1, keepdims=True)
    node_weight = np.exp(log_posterior)
    node_weight /= node_weight.sum(axis=1, keepdims=True)
    beta_mean = (node_weight * quadrature.nodes).sum(axis=1)
    return CrmPosteriorBatch(
        model=model,
        beta_nodes=quadrature.nodes,
        node_weight=node_weight,
        beta_mean=beta_mean,
        dlt_probability_plug_in=model.dlt_probability(beta_mean),
    )


@dataclass(frozen=True)
class CrmPosterior:
    """The CRM posterior after one trial's data (see :func:`crm_posterior`).

    Per-level tuples are indexed by 0-based level.

    Attributes
    ----------
    model : CrmModel
    beta_mean, beta_variance : float
        Posterior mean and variance of beta (dfcrm's ``estimate`` and ``post.var``).
    dlt_probability_plug_in : tuple of float
        p_d(beta_mean), dfcrm's ``ptox``: the estimate the recommendation uses.
    dlt_probability_mean : tuple of float
        The posterior mean E[p_d | data].
    probabilities_above_target : tuple of float
        P(p_d > target | data) per level; see :meth:`probability_above_target`.
    """

    model: CrmModel
    beta_mean: float
    beta_variance: float
    dlt_probability_plug_in: tuple[float, ...]
    dlt_probability_mean: tuple[float, ...]
    probabilities_above_target: tuple[float, ...]

    def probability_above_target(self, level_index: int) -> float:
        """P(p_level > target | data), exact to quadrature accuracy (0-based level).

        ``escalation``'s ``prob_tox_exceeds`` for dfcrm fits uses a normal approximation of the
        posterior of beta instead; this is the exact posterior probability.
        """
        return self.probabilities_above_target[check_level(level_index, self.model.n_levels, "level_index")]


def crm_posterior(
    model: CrmModel,
    patient_level_index: Sequence[int],
    patient_dlt: Sequence[bool],
    patient_weight: Sequence[float] | None = None,
) -> CrmPosterior:
    """The exact CRM (or TITE-CRM) posterior after one trial's patients (dfcrm ``crm``, ``titecrm``).

    Parameters
    ----------
    model : CrmModel
    patient_level_index : sequence of int
        0-based level of each patient.
    patient_dlt : sequence of bool
        Whether each patient had a DLT (observed so far).
    patient_weight : sequence of float, optional
        TITE-CRM weight of each patient, between 0 and 1 (see :func:`tite_weights`); default 1
        for everyone (plain CRM). Patients with a DLT always count with weight 1.

    Returns
    -------
    CrmPosterior

    Examples
    --------
    >>> model = CrmModel([0.05, 0.12, 0.25, 0.40, 0.55], target=0.25, model="logistic")
    >>> posterior = crm_posterior(model, [2, 4, 4, 2, 3], [0, 0, 1, 0, 0])  # Cheung (2011) p.21
    >>> [float(f"{p:.3g}") for p in posterior.dlt_probability_plug_in]  # dfcrm's ptox
    [0.00768, 0.0265, 0.0817, 0.182, 0.331]
    """
    levels, dlt, weight = _check_patients(model, patient_level_index, patient_dlt, patient_weight)
    batch = _batch_for_patients(model, levels, dlt, weight)
    return CrmPosterior(
        model=model,
        beta_mean=float(batch.beta_mean[0]),
        beta_variance=float(batch.beta_variance()[0]),
        dlt_probability_plug_in=tuple(map(float, batch.dlt_probability_plug_in[0])),
        dlt_probability_mean=tuple(map(float, batch.dlt_probability_mean()[0])),
        probabilities_above_target=tuple(
            float(batch.probability_above_target(level)[0]) for level in range(model.n_levels)
        ),
    )


def closest_level_to_target(estimates, target: float, *, eligible=None) -> np.ndarray:
    """dfcrm's recommendation rule, for one row of estimates or many (``crm(...)$mtd``).

    Among the eligible levels (default: all): the highest if every estimate is <= target, the
    lowest if every estimate is >= target, otherwise the level whose estimate is closest to the
    target; **ties go to the lower level** (R's ``order`` is stable, so dfcrm takes the first).
    Rows with no eligible level get -1.

    Parameters
    ----------
    estimates : array_like, shape (n_levels,) or (n_rows, n_levels)
    target : float
    eligible : array_like of bool, same shape as ``estimates``, optional

    Returns
    -------
    numpy.ndarray of int
        0-based level per row (a 0-d array for a single row).

    Examples
    --------
    >>> int(closest_level_to_target([0.05, 0.2, 0.3], 0.25))  # 0.2 and 0.3 tie: the lower level
    1
    """
    estimates = np.asarray(estimates, dtype=float)
    rows = np.atleast_2d(estimates)
    eligible_rows = np.ones(rows.shape, bool) if eligible is None else np.atleast_2d(np.asarray(eligible, bool))
    n_levels = rows.shape[1]
    level_index = np.arange(n_levels)
    highest = np.where(eligible_rows, level_index, -1).max(axis=1)
    lowest = np.where(eligible_rows, level_index, n_levels).min(axis=1)
    all_at_most = np.all(~eligible_rows | (rows <= target), axis=1)
    all_at_least = np.all(~eligible_rows | (rows >= target), axis=1)
    closest = np.argmin(np.where(eligible_rows, np.abs(rows - target), np.inf), axis=1)
    chosen = np.where(all_at_most, highest, np.where(all_at_least, lowest, closest))
    chosen = np.where(eligible_rows.any(axis=1), chosen, -1)
    return chosen.reshape(estimates.shape[:-1])


# ---- the next dose --------------------------------------------------------------------------


@dataclass(frozen=True)
class CrmDecision:
    """The dose for the next patient or cohort (see :func:`crm_next_dose`).

    Attributes
    ----------
    action : {"escalate", "stay", "deescalate", "stop"}
        Relative to the current level.
    next_level_index : int or None
        0-based level for the next patient or cohort; None when the trial stops.
    recommended_level_index : int
        dfcrm's recommendation before any restriction (the level closest to the target).
    reason : str
        One sentence with the numbers behind the decision (levels counted from 1).
    posterior : CrmPosterior
    """

    action: Action
    next_level_index: int | None
    recommended_level_index: int
    reason: str
    posterior: CrmPosterior


def crm_next_dose(
    model: CrmModel,
    patient_level_index: Sequence[int],
    patient_dlt: Sequence[bool],
    *,
    patient_weight: Sequence[float] | None = None,
    current_level_index: int | None = None,
    no_skipping: bool = True,
    coherent_escalation: bool = False,
    last_cohort_size: int = 1,
    stop_probability: float | None = None,
) -> CrmDecision:
    """The level for the next patient or cohort under the CRM or, with weights, the TITE-CRM.

    In this order:

    1. **Stop** (``escalation``'s ``stop_when_too_toxic(dose = 1, tox_threshold = target,
       confidence = stop_probability)``): if ``stop_probability`` is given and
       P(p_1 > target | data) >= ``stop_probability`` at the lowest level, stop with no level.
       (``escalation`` computes this probability from a normal approximation of the posterior
       of beta; here it is exact.)
    2. **Recommend** (dfcrm ``crm``/``titecrm``, ``$mtd``): the level whose plug-in estimate
       p_d(E[beta | data]) is closest to the target, by :func:`closest_level_to_target` (all
       estimates below the target: the highest level; all above: the lowest; ties: the lower).
    3. **No skipping** (``no_skipping``; dfcrm ``crmsim``/``titesim`` with ``restrict=TRUE`` and
       ``escalation``'s ``dont_skip_doses(when_escalating = TRUE)``): at most one level above the
       **current** level, the level of the most recent patient, not the highest level tried.
    4. **Coherent escalation** (``coherent_escalation``; the other half of dfcrm ``crmsim``'s
       ``restrict=TRUE``, Cheung 2005): no escalation when the DLT fraction in the last cohort
       (the last ``last_cohort_size`` patients) is >= target. dfcrm's ``titesim`` does not apply
       it; ``escalation``'s ``dont_skip_doses`` does not either.

    Parameters
    ----------
    model : CrmModel
    patient_level_index : sequence of int
        0-based level of each patient so far, in order of enrolment (at least one patient).
    patient_dlt : sequence of bool
        DLT observed so far for each patient.
    patient_weight : sequence of float, optional
        TITE-CRM weights (:func:`tite_weights`); default 1 for everyone (plain CRM).
    current_level_index : int, optional
        The level of the most recent patient or cohort; default the last patient's level.
    no_skipping : bool, default True
    coherent_escalation : bool, default False
    last_cohort_size : int, default 1
        How many of the last patients form the cohort that ``coherent_escalation`` looks at.
    stop_probability : float, optional
        Stop when P(p_1 > target | data) >= this; default: never stop.

    Returns
    -------
    CrmDecision

    Examples
    --------
    >>> model = CrmModel([0.05, 0.12, 0.25, 0.40, 0.55], target=0.25, model="logistic")
    >>> decision = crm_next_dose(model, [2, 4, 4, 2, 3], [0, 0, 1, 0, 0])  # Cheung (2011) p.21
    >>> decision.action, decision.next_level_index
    ('stay', 3)
    >>> print(decision.reason)  # doctest: +NORMALIZE_WHITESPACE
    Posterior mean of beta 0.279: estimated DLT probabilities 0.008, 0.027, 0.082, 0.182, 0.331 at
    levels 1-5; level 4 (0.182) is the closest to the target 0.25: stay at level 4.
    """
    levels, dlt, weight = _check_patients(model, patient_level_index, patient_dlt, patient_weight)
    current = int(levels[-1]) if current_level_index is None else check_level(
        current_level_index, model.n_levels, "current_level_index")
    last_cohort_size = check_positive_int(last_cohort_size, "last_cohort_size")
    if last_cohort_size > levels.size:
        raise ValueError(f"last_cohort_size ({last_cohort_size}) exceeds the number of patients ({levels.size})")
    stop_probability = _check_stop_probability(stop_probability)
    posterior = crm_posterior(model, levels, dlt, weight)
    estimates = posterior.dlt_probability_plug_in
    recommended = int(closest_level_to_target(estimates, model.target))

    if stop_probability is not None and posterior.probability_above_target(0) >= stop_probability:
        return CrmDecision("stop", None, recommended, _stop_sentence(model, posterior, stop_probability), posterior)

    pending = ~dlt & (weight < 1)
    tite_note = (f" (TITE-CRM: {plural(int(pending.sum()), 'patient')} still in the DLT window, "
                 f"total weight {weight[pending].sum():.2f})") if pending.any() else ""
    why = f"{_estimates_phrase(posterior, tite_note)}; {_recommendation_phrase(model, estimates, recommended)}"
    next_level = recommended
    if no_skipping and next_level > current + 1:
        next_level = current + 1
        why += f", but no skipping allows at most one level above the current level {current + 1}"
    cohort_dlt = int(dlt[-last_cohort_size:].sum())
    if coherent_escalation and next_level > current and cohort_dlt / last_cohort_size >= model.target:
        next_level = current
        why += (f", but the last cohort had {plural(cohort_dlt, 'DLT')} in {plural(last_cohort_size, 'patient')} "
                f"(rate {cohort_dlt / last_cohort_size:.2f} >= target): no escalation after a toxic cohort")
    action: Action = "escalate" if next_level > current else "deescalate" if next_level < current else "stay"
    verb = {"escalate": "escalate to", "deescalate": "de-escalate to", "stay": "stay at"}[action]
    return CrmDecision(action, next_level, recommended, f"{why}: {verb} level {next_level + 1}.", posterior)


# ---- selecting the MTD ----------------------------------------------------------------------


@dataclass(frozen=True)
class CrmSelection:
    """The dose selected at the end of a CRM trial (see :func:`crm_select_mtd`).

    Attributes
    ----------
    selected_level_index : int or None
        0-based selected level; None when no level is selected.
    reason : str
        One sentence with the numbers behind the selection (levels counted from 1).
    posterior : CrmPosterior
    """

    selected_level_index: int | None
    reason: str
    posterior: CrmPosterior


def crm_select_mtd(
    model: CrmModel,
    patient_level_index: Sequence[int],
    patient_dlt: Sequence[bool],
    *,
    min_patients_at_selection: int = 0,
    stop_probability: float | None = None,
    treated_by_level: Sequence[int] | None = None,
) -> CrmSelection:
    """Select the MTD at the end of a CRM or TITE-CRM trial, on complete data.

    dfcrm's ``crmsim`` and ``titesim`` select ``crm(...)$mtd`` on the final data, every patient
    with weight 1: the level whose plug-in estimate is closest to the target, **among all
    levels, tried or not**, and without the no-skipping restriction. ``min_patients_at_selection``
    (default 0, dfcrm's rule) restricts the choice to levels given to at least that many patients
    (1: only levels tried); no level is selected if none qualifies. With ``stop_probability``,
    nothing is selected when P(p_1 > target | data) >= ``stop_probability``, as ``escalation``'s
    ``stop_when_too_toxic`` then recommends no dose.

    Parameters
    ----------
    model : CrmModel
    patient_level_index : sequence of int
        0-based level of each patient.
    patient_dlt : sequence of bool
        Whether each patient had a DLT.
    min_patients_at_selection : int, default 0
    stop_probability : float, optional
    treated_by_level : sequence of int, optional
        Patients given each level, those still inside the window included, for
        ``min_patients_at_selection`` (default: the patients given here). A pending patient then
        never makes a level ineligible, so never moves the selection up.

    Returns
    -------
    CrmSelection

    Examples
    --------
    >>> model = CrmModel([0.05, 0.12, 0.25, 0.40, 0.55], target=0.25)
    >>> crm_select_mtd(model, [0, 0, 0, 1, 1, 1], [0, 0, 0, 0, 0, 0]).selected_level_index  # level 5, untried
    4
    >>> crm_select_mtd(model, [0, 0, 0, 1, 1, 1], [0] * 6, min_patients_at_selection=1).selected_level_index
    1
    """
    levels, dlt, _ = _check_patients(model, patient_level_index, patient_dlt, None)
    min_patients_at_selection = check_min_patients(min_patients_at_selection)
    stop_probability = _check_stop_probability(stop_probability)
    posterior = crm_posterior(model, levels, dlt)
    if stop_probability is not None and posterior.probability_above_target(0) >= stop_probability:
        reason = _stop_sentence(model, posterior, stop_probability, ending="no level selected")
        return CrmSelection(None, reason, posterior)

    n_patients = (np.bincount(levels, minlength=model.n_levels) if treated_by_level is None
                  else np.asarray(treated_by_level, dtype=int))
    eligible = n_patients >= min_patients_at_selection
    estimates = posterior.dlt_probability_plug_in
    selected = int(closest_level_to_target(estimates, model.target, eligible=eligible))
    if selected < 0:
        return CrmSelection(
            None,
            f"No level has at least {plural(int(min_patients_at_selection), 'patient')}: no level selected.",
            posterior,
        )
    among = "" if eligible.all() else f" among levels with at least {plural(int(min_patients_at_selection), 'patient')}"
    return CrmSelection(
        selected,
        f"{_estimates_phrase(posterior)}; {_recommendation_phrase(model, estimates, selected, eligible)}{among}: "
        f"select level {selected + 1}.",
        posterior,
    )


# ---- TITE-CRM weights -----------------------------------------------------------------------


def tite_weights(follow_up_days, window_days: float, dlt, scheme: WeightScheme = "linear") -> np.ndarray:
    """TITE-CRM weights of patients in their DLT window (Cheung & Chappell 2000; dfcrm ``titecrm``).

    A patient with a DLT has weight 1; a patient without has, with follow-up u (capped at the
    window W):

    * ``"linear"``: w = u / W;
    * ``"adaptive"`` (dfcrm ``scheme="adaptive"``): with the z DLT times observed so far sorted,
      t_1 <= ... <= t_z, and t_0 = 0, t_(z+1) = W, a patient whose follow-up has passed m of
      them (t_m <= u < t_(m+1)) gets w = (m + (u - t_m) / (t_(m+1) - t_m)) / (z + 1): the
      empirical distribution of the DLT times, interpolated linearly. With no DLT yet it is the
      linear weight.

    A patient whose follow-up has reached the window has weight 1 (dfcrm would divide 0 by 0
    when the last DLT time equals the window). The follow-up of a patient with a DLT is the time
    to the DLT, as dfcrm reads it: the adaptive scheme takes the DLT times from there.

    Parameters
    ----------
    follow_up_days : array_like, shape (..., n_patients)
        Days of follow-up (time to the DLT for a patient with one); >= 0.
    window_days : float
        Length W of the DLT window, > 0.
    dlt : array_like of bool, same shape
        Whether each patient has had a DLT so far.
    scheme : {"linear", "adaptive"}, default "linear"

    Returns
    -------
    numpy.ndarray
        Weights between 0 and 1, shaped like ``follow_up_days``. Leading axes are independent
        sets of patients (trials), so a simulator can weigh many trials at once.

    Examples
    --------
    >>> tite_weights([178, 24, 42, 3], 180, [0, 1, 0, 0]).round(3)
    array([0.989, 1.   , 0.233, 0.017])
    >>> tite_weights([178, 24, 42, 3], 180, [0, 1, 0, 0], scheme="adaptive").round(3)
    array([0.994, 1.   , 0.558, 0.062])
    """
    follow_up = np.asarray(follow_up_days, dtype=float)
    dlt = np.asarray(dlt)
    window_days = float(window_days)
    if not (math.isfinite(window_days) and window_days > 0):
        raise ValueError(f"window_days must be positive and finite (got {window_days})")
    if follow_up.shape != dlt.shape or follow_up.ndim == 0:
        raise ValueError(f"follow_up_days and dlt must have the same shape (got {follow_up.shape} and {dlt.shape})")
    if np.any(np.isnan(follow_up) | (follow_up < 0)):
        raise ValueError("follow_up_days must be >= 0 (no missing values)")
    if not np.all((dlt == 0) | (dlt == 1)):
        raise ValueError("dlt must hold booleans or 0/1")
    dlt = dlt.astype(bool)
    follow_up = np.minimum(follow_up, window_days)
    if scheme == "linear":
        weight = follow_up / window_days
    elif scheme == "adaptive":
        weight = _adaptive_weights(follow_up, window_days, dlt)
    else:
        raise ValueError(f"scheme must be 'linear' or 'adaptive' (got {scheme!r})")
    return np.where(dlt | (follow_up >= window_days), 1.0, np.minimum(weight, 1.0))


def _adaptive_weights(follow_up: np.ndarray, window_days: float, dlt: np.ndarray) -> np.ndarray:
    """dfcrm's adaptive weights before the DLT and complete patients are set to 1 (see :func:`tite_weights`)."""
    dlt_times = np.sort(np.where(dlt, follow_up, np.inf), axis=-1)  # the z DLT times first, then inf
    n_dlt = dlt.sum(axis=-1, keepdims=True)
    passed = (dlt_times[..., None, :] <= follow_up[..., :, None]).sum(axis=-1)  # m per patient
    padded = np.concatenate([np.zeros_like(dlt_times[..., :1]), dlt_times], axis=-1)  # t_0 = 0, t_1, ...
    lower = np.take_along_axis(padded, passed, axis=-1)
    next_time = np.take_along_axis(padded, np.minimum(passed + 1, padded.shape[-1] - 1), axis=-1)
    upper = np.where(passed == n_dlt, window_days, next_time)  # t_(m+1), or W once every DLT time is passed
    with np.errstate(invalid="ignore", divide="ignore"):  # only complete patients can give 0 / 0; they get 1
        return (passed + (follow_up - lower) / (upper - lower)) / (n_dlt + 1)


# ---- helpers --------------------------------------------------------------------------------


def _batch_for_patients(model: CrmModel, levels: np.ndarray, dlt: np.ndarray, weight: np.ndarray) -> CrmPosteriorBatch:
    """One trial's patients as counts of complete patients plus pending ones, as the simulators pass them."""
    complete = dlt | (weight >= 1)
    n_patients = np.bincount(levels[complete], minlength=model.n_levels)[None, :]
    n_dlt = np.bincount(levels[dlt], minlength=model.n_levels)[None, :]
    pending = ~complete & (weight > 0)
    return crm_posterior_batch(
        model, n_patients, n_dlt,
        pending_row=np.zeros(int(pending.sum()), dtype=np.int64),
        pending_level=levels[pending],
        pending_weight=weight[pending],
    )


def _check_patients(model: CrmModel, patient_level_index, patient_dlt, patient_weight):
    levels = np.asarray(patient_level_index)
    dlt = np.asarray(patient_dlt)
    if levels.ndim != 1 or levels.size == 0 or levels.shape != dlt.shape:
        raise ValueError(
            "patient_level_index and patient_dlt must be non-empty 1-D sequences of the same length (one entry per "
            "patient); before the first patient, give the start level"
        )
    if levels.dtype == bool or not np.all(np.mod(levels, 1) == 0) or np.any((levels < 0) | (levels >= model.n_levels)):
        raise ValueError(
            f"patient_level_index must hold 0-based levels from 0 to {model.n_levels - 1} (got {levels.tolist()})")
    if not np.all((dlt == 0) | (dlt == 1)):
        raise ValueError(f"patient_dlt must hold booleans or 0/1 (got {dlt.tolist()})")
    if patient_weight is None:
        weight = np.ones(levels.size)
    else:
        weight = np.asarray(patient_weight, dtype=float)
        if weight.shape != levels.shape or np.any(np.isnan(weight) | (weight < 0) | (weight > 1)):
            raise ValueError("patient_weight must hold one weight between 0 and 1 per patient")
    return levels.astype(np.int64), dlt.astype(bool), weight


def _check_probability(value, name: str) -> float:
    value = float(value)
    if not 0 < value < 1:
        raise ValueError(f"{name} must be strictly between 0 and 1 (got {value})")
    return value


def _check_model_name(model) -> str:
    if model not in ("empiric", "logistic"):
        raise ValueError(f"model must be 'empiric' or 'logistic' (got {model!r})")
    return model


def _check_stop_probability(stop_probability) -> float | None:
    if stop_probability is None:
        return None
    return _check_probability(stop_probability, "stop_probability")


def _estimates_phrase(posterior: CrmPosterior, note: str = "") -> str:
    estimates = ", ".join(f"{p:.3f}" for p in posterior.dlt_probability_plug_in)
    n_levels = posterior.model.n_levels
    shown = "level 1" if n_levels == 1 else f"levels 1-{n_levels}"
    return f"Posterior mean of beta {posterior.beta_mean:.3f}{note}: estimated DLT probabilities {estimates} at {shown}"


def _recommendation_phrase(model: CrmModel, estimates: Sequence[float], level: int, eligible=None) -> str:
    """Why :func:`closest_level_to_target` chose ``level`` (its three cases)."""
    considered = [p for p, keep in zip(estimates, np.ones(len(estimates), bool) if eligible is None else eligible,
                                       strict=True) if keep]
    if all(p <= model.target for p in considered):
        return f"all are at most the target {model.target:.2f}, so the highest level {level + 1}"
    if all(p >= model.target for p in considered):
        return f"all are at least the target {model.target:.2f}, so the lowest level {level + 1}"
    return f"level {level + 1} ({estimates[level]:.3f}) is the closest to the target {model.target:.2f}"


def _stop_sentence(model: CrmModel, posterior: CrmPosterior, stop_probability: float,
                   ending: str = "stop the trial with no level selected") -> str:
    return (
        f"P(DLT probability at level 1 > {model.target:.2f} | data) = {posterior.probability_above_target(0):.3f} "
        f">= {stop_probability}: the lowest level is too toxic; {ending}."
    )
