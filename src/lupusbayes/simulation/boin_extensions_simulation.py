"""Fast, vectorised simulators of two BOIN extensions: BOIN12 and TITE-BOIN.

Each simulator runs many trials at once with NumPy arrays over trials, looping over cohorts and
patient slots only, and replays the decision rules of the decisions layer:

* :func:`simulate_boin12` follows :func:`~lupusbayes.decisions.boin12.boin12_next_dose` cohort
  by cohort and selects the OBD with :func:`~lupusbayes.decisions.boin12.boin12_select_dose`;
* :func:`simulate_tite_boin` follows :func:`~lupusbayes.decisions.tite_boin.tite_boin_next_dose`
  in calendar time (patients arrive, are dosed while others are still followed, and wait when
  accrual is suspended) and selects the MTD with BOIN's ``select.mtd``
  (:func:`~lupusbayes.decisions.boin.boin_select_mtd`) once every window has ended.
  **TITE-BOIN doses while earlier patients are inside their DLT window, by design** (see
  :mod:`lupusbayes.decisions.tite_boin`).

Both return the fields of :class:`~lupusbayes.simulation.rule_based.RuleBasedSimulation` (and its
``summary()``), plus their own. Common random numbers, as in
:func:`~lupusbayes.simulation.rule_based.simulate_boin`: patient ``j`` of trial ``t`` has a DLT
at level ``d`` exactly when ``uniforms[t, j] < p_true[d]``, and a response exactly when
``response_uniforms[t, j] < p_response[d]``. Levels are 0-based; ``-1`` stands for no level.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from lupusbayes.decisions.boin import BoinBoundaries
from lupusbayes.decisions.boin12 import (
    Boin12Settings,
    boin12_desirability,
    boin12_futile,
    boin12_posterior_mean_utility,
    boin12_quasi_events,
    boin12_too_toxic,
)
from lupusbayes.decisions.level_counts import check_level, check_positive_int
from lupusbayes.decisions.tite_boin import DEFAULT_MAX_PENDING_FRACTION, METHODS, tite_boin_effective_counts
from lupusbayes.simulation.rule_based import (
    RuleBasedSimulation,
    TimeToEventSimulation,
    check_patient_days,
    check_probabilities,
    check_uniforms,
    select_mtd_rows,
)

__all__ = ["Boin12Simulation", "TiteBoinSimulation", "simulate_boin12", "simulate_tite_boin"]

#: Codes of the vectorised decisions (levels are >= 0).
_STOP = -1
_SUSPEND = -2
#: DLT vectors given to the safeguard's rule at once (bounds the memory of long trials with many DLTs).
_SAFEGUARD_BATCH = 100_000


# ---- results --------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Boin12Simulation(RuleBasedSimulation):
    """Per-trial results of :func:`simulate_boin12` (read-only arrays).

    The fields of :class:`~lupusbayes.simulation.rule_based.RuleBasedSimulation`, where
    ``selected_level`` is the OBD (-1: none) and ``stopped_early`` marks trials stopped because
    no level was admissible (the lowest too toxic, or every level eliminated); plus:

    Attributes
    ----------
    n_responses : numpy.ndarray of int, shape (n_trials, n_levels)
        Patients with a response at each level.
    """

    n_responses: np.ndarray


#: The results of :func:`simulate_tite_boin` (:class:`~lupusbayes.simulation.rule_based.TimeToEventSimulation`).
TiteBoinSimulation = TimeToEventSimulation


# ---- BOIN12 ---------------------------------------------------------------------------------


def simulate_boin12(
    tox_uniforms: np.ndarray,
    response_uniforms: np.ndarray,
    p_true: Sequence[float],
    p_response: Sequence[float],
    *,
    settings: Boin12Settings,
    cohort_size: int,
    n_cohorts: int,
    start_level: int = 0,
    safeguard: bool = False,
    min_patients_at_selection: int = 0,
) -> Boin12Simulation:
    """Simulate many BOIN12 trials at once (Lin et al. 2020; the rules of :mod:`lupusbayes.decisions.boin12`).

    Patient ``j`` of trial ``t`` at level ``d`` has a DLT when ``tox_uniforms[t, j] < p_true[d]``
    and a response when ``response_uniforms[t, j] < p_response[d]`` (independent outcomes when
    the two arrays are independent). After every cohort but the last, the next level follows
    :func:`~lupusbayes.decisions.boin12.boin12_next_dose`; a trial stops early when it says
    stop. Trials not stopped for lack of an admissible level select the OBD with
    :func:`~lupusbayes.decisions.boin12.boin12_select_dose`.

    Parameters
    ----------
    tox_uniforms, response_uniforms : numpy.ndarray, shape (n_trials, n_columns)
        Latent U(0, 1) per patient, ``n_columns >= cohort_size * n_cohorts``.
    p_true, p_response : sequence of float
        True DLT and response probabilities at each level.
    settings : Boin12Settings
    cohort_size, n_cohorts : int
    start_level : int, default 0
    safeguard : bool, default False
        lupusbayes' safeguard (:func:`~lupusbayes.decisions.boin12.boin12_next_dose_safeguarded` and
        :func:`~lupusbayes.decisions.boin12.boin12_select_dose_safeguarded`): each decision and the
        selection are the lowest over the observed DLT counts and every smaller count (additive
        utilities only).
    min_patients_at_selection : int, default 0
        Select only among levels given to at least this many patients.

    Returns
    -------
    Boin12Simulation

    Examples
    --------
    >>> from lupusbayes.decisions.boin12 import Boin12Settings
    >>> rng = np.random.default_rng(12)
    >>> simulation = simulate_boin12(rng.random((2000, 30)), rng.random((2000, 30)),
    ...                              [0.05, 0.10, 0.15, 0.30, 0.45], [0.10, 0.30, 0.55, 0.60, 0.62],
    ...                              settings=Boin12Settings(0.35, 0.25), cohort_size=3, n_cohorts=10)
    >>> int(simulation.summary().selection_probability.argmax())  # the third level: best utility
    2
    """
    cohort_size = check_positive_int(cohort_size, "cohort_size")
    n_cohorts = check_positive_int(n_cohorts, "n_cohorts")
    planned = cohort_size * n_cohorts
    tox_uniforms = check_uniforms(tox_uniforms, planned, "tox_uniforms")
    response_uniforms = check_uniforms(response_uniforms, planned, "response_uniforms")
    if response_uniforms.shape[0] != tox_uniforms.shape[0]:
        raise ValueError("tox_uniforms and response_uniforms must have the same number of trials (rows)")
    p_true = check_probabilities(p_true, "p_true")
    p_response = check_probabilities(p_response, "p_response")
    if p_response.size != p_true.size:
        raise ValueError(f"p_response must have one probability per level ({p_true.size}), got {p_response.size}")
    n_levels = p_true.size
    start_level = check_level(start_level, n_levels, "start_level")
    tables = _Boin12Tables(settings, planned)

    n_trials = tox_uniforms.shape[0]
    level = np.full(n_trials, start_level, dtype=np.int64)
    counts = {name: np.zeros((n_trials, n_levels), dtype=np.int64) for name in ("n", "dlt", "response", "both")}
    desirability = np.full((n_trials, n_levels), tables.prior_desirability)
    running = np.ones(n_trials, dtype=bool)
    stopped_early = np.zeros(n_trials, dtype=bool)
    patient_level = np.full((n_trials, planned), -1, dtype=np.int64)

    for cohort in range(n_cohorts):
        trials = np.flatnonzero(running)
        if trials.size == 0:
            break
        at = level[trials]
        columns = slice(cohort * cohort_size, (cohort + 1) * cohort_size)
        dlt = tox_uniforms[trials, columns] < p_true[at, None]
        response = response_uniforms[trials, columns] < p_response[at, None]
        counts["n"][trials, at] += cohort_size
        counts["dlt"][trials, at] += dlt.sum(axis=1)
        counts["response"][trials, at] += response.sum(axis=1)
        counts["both"][trials, at] += (dlt & response).sum(axis=1)
        patient_level[trials, columns] = at[:, None]
        current = {name: counts[name][trials, at] for name in counts}
        desirability[trials, at] = tables.desirability(current["n"], current["dlt"], current["response"],
                                                       current["both"])
        if cohort == n_cohorts - 1:
            break  # as in get.oc: no decision after the final cohort
        n_now, dlt_now, response_now = counts["n"][trials], counts["dlt"][trials], counts["response"][trials]
        next_level, stop, no_selection = _boin12_decide_rows(settings, tables, at, n_now, dlt_now, response_now,
                                                             desirability[trials])
        if safeguard:  # a row going to level 0 can go no lower: left out
            next_level = _lowest_over_fewer_dlts(
                dlt_now, next_level, ~stop & (next_level > 0),
                lambda rows, fewer: _boin12_decide_rows(
                    settings, tables, at[rows], n_now[rows], fewer, response_now[rows],
                    _desirability_rows(tables, n_now[rows], fewer, response_now[rows])),
                context=np.column_stack([at, n_now, response_now]))
        level[trials] = np.where(stop, at, next_level)
        running[trials[stop]] = False
        stopped_early[trials[stop & no_selection]] = True

    selected_level = np.full(n_trials, -1, dtype=np.int64)
    finished = ~stopped_early
    n_final, response_final = counts["n"][finished], counts["response"][finished]
    selected_level[finished] = _boin12_select_rows(settings, tables, n_final, counts["dlt"][finished], response_final,
                                                   counts["both"][finished], min_patients_at_selection)
    if safeguard:  # the lowest selection over fewer DLTs; a state with none selected (-1, the lowest) selects none
        chosen = selected_level[finished]
        selected_level[finished] = _lowest_over_fewer_dlts(
            counts["dlt"][finished], chosen, chosen >= 0,
            lambda rows, fewer: (_boin12_select_rows(settings, tables, n_final[rows], fewer, response_final[rows],
                                                     np.zeros_like(fewer), min_patients_at_selection),
                                 np.zeros(rows.size, dtype=bool)),
            context=np.column_stack([n_final, response_final]))
    arrays = (selected_level, counts["n"], counts["dlt"], stopped_early, patient_level, counts["response"])
    return Boin12Simulation(*_read_only(arrays))


class _Boin12Tables:
    """Lookup tables of one BOIN12 design for up to ``max_patients`` patients at a level.

    The Beta tail probabilities cost microseconds each, so the simulator reads eliminations
    from (n, count) tables and evaluates desirability only for the distinct (n, x) of a cohort,
    with the very functions the scalar decisions call (the same numbers, bit for bit). The
    safeguard's desirability (no joint counts) is tabulated by (n, DLTs, responses) as it is
    first needed.
    """

    def __init__(self, settings: Boin12Settings, max_patients: int) -> None:
        self.settings = settings
        self.boundaries = settings.boundaries(max_patients)
        n = np.arange(max_patients + 1)[:, None]
        count = np.arange(max_patients + 1)[None, :]
        feasible = count <= n
        self.too_toxic = feasible & boin12_too_toxic(settings, n, np.minimum(count, n))
        self.futile = feasible & boin12_futile(settings, n, np.minimum(count, n))
        # indexed by n = 0..max_patients; n = 0 never acts
        self.escalate_at_most = np.array((-1, *self.boundaries.escalate_at_most))
        self.deescalate_at_least = np.array((1, *self.boundaries.deescalate_at_least))
        self.mtd_eliminate_at_least = np.array((1, *self.boundaries.eliminate_at_least))
        self.prior_desirability = float(boin12_desirability(settings, 0, 0.0))
        self.max_patients = max_patients
        self._without_joint: tuple[np.ndarray, np.ndarray] | None = None  # made by the safeguard, on first use

    def desirability_without_joint(self) -> tuple[np.ndarray, np.ndarray]:
        """The safeguard's desirability table, indexed by (n, dlt, response), and where it is known so far
        (``(max_patients + 1) ** 3`` entries: 30,000 for 30 patients, made only when the safeguard runs)."""
        if self._without_joint is None:
            shape = (self.max_patients + 1,) * 3
            self._without_joint = (np.zeros(shape), np.zeros(shape, dtype=bool))
        return self._without_joint

    def desirability(self, n, dlt, response, both) -> np.ndarray:
        x = boin12_quasi_events(self.settings, n, dlt, response, both)
        keys, inverse = np.unique(np.stack([n.astype(float), x], axis=1), axis=0, return_inverse=True)
        return boin12_desirability(self.settings, keys[:, 0], keys[:, 1])[inverse.ravel()]


def _boin12_decide_rows(settings, tables, at, n, dlt, response, desirability):
    """:func:`~lupusbayes.decisions.boin12.boin12_next_dose` for each row.

    Returns the next level, whether the trial stops, and whether it stops with no selection.
    """
    n_rows, n_levels = n.shape
    rows = np.arange(n_rows)
    index = np.arange(n_levels)
    too_toxic = np.logical_or.accumulate(tables.too_toxic[n, dlt], axis=1)
    eliminated = too_toxic | tables.futile[n, response]
    n_at, dlt_at = n[rows, at], dlt[rows, at]
    eliminated_at = eliminated[rows, at]

    below = ~eliminated & (index < at[:, None])
    has_lower = below.any(axis=1)
    lower = np.where(has_lower, n_levels - 1 - np.argmax(below[:, ::-1], axis=1), -1)
    above = ~eliminated & (index > at[:, None])
    has_upper = above.any(axis=1)
    upper = np.where(has_upper, np.argmax(above, axis=1), -1)

    # de-escalation zone
    deescalation_zone = dlt_at >= tables.deescalate_at_least[n_at]
    deescalated = np.where(has_lower, lower, np.where(eliminated_at, _STOP, at))
    # otherwise the most desirable admissible candidate, the highest on ties
    upper_allowed = (dlt_at <= tables.escalate_at_most[n_at]) | (n_at < settings.stay_patients)
    candidate = np.zeros((n_rows, n_levels), dtype=bool)
    candidate[rows[has_lower], lower[has_lower]] = True
    candidate[rows, at] |= ~eliminated_at
    with_upper = has_upper & upper_allowed
    candidate[rows[with_upper], upper[with_upper]] = True
    has_candidate = candidate.any(axis=1)
    value = np.where(candidate, desirability, -np.inf)
    best = candidate & (value == value.max(axis=1, keepdims=True))
    chosen = np.where(has_candidate, n_levels - 1 - np.argmax(best[:, ::-1], axis=1), _STOP)
    if settings.exploration_patients is not None:
        untreated_upper = n[rows, np.maximum(upper, 0)] == 0
        explore = has_candidate & has_upper & untreated_upper & (n_at >= settings.exploration_patients)
        chosen = np.where(explore, upper, chosen)
    next_level = np.where(deescalation_zone, deescalated, chosen)

    no_admissible = too_toxic[:, 0] | eliminated.all(axis=1)
    at_limit = np.zeros(n_rows, dtype=bool)
    if settings.max_patients_per_level is not None:
        at_limit = ~no_admissible & (n_at >= settings.max_patients_per_level)
    no_selection = no_admissible | (~at_limit & (next_level == _STOP))
    return next_level, no_selection | at_limit, no_selection


def _desirability_rows(tables: _Boin12Tables, n, dlt, response) -> np.ndarray:
    """The desirability of every level of every row (additive utilities: no joint counts needed), read from
    ``tables.desirability_without_joint()`` after computing the (n, dlt, response) not yet there."""
    table, known = tables.desirability_without_joint()
    missing = ~known[n, dlt, response]
    if missing.any():
        n_new, dlt_new, response_new = np.unique(np.stack([n[missing], dlt[missing], response[missing]]), axis=1)
        table[n_new, dlt_new, response_new] = tables.desirability(n_new, dlt_new, response_new,
                                                                  np.zeros(n_new.size, dtype=np.int64))
        known[n_new, dlt_new, response_new] = True
    return table[n, dlt, response]


def _lowest_over_fewer_dlts(dlt: np.ndarray, chosen: np.ndarray, active: np.ndarray, rule,
                            context: np.ndarray) -> np.ndarray:
    """The safeguard, for many rows at once: for each row where ``active``, the lowest of ``chosen`` (the rule's level
    at the row's own DLT counts) and the levels ``rule`` gives at every smaller vector of DLT counts (at or below the
    row's own at each level, below at one at least); other rows keep ``chosen``.

    ``rule(rows, fewer_dlt)`` returns the levels and a stop flag for row ``rows[k]`` with DLT counts
    ``fewer_dlt[k]``; stops are left out. A level of -1 (nothing selected) is the lowest, so it wins.
    ``context[row]`` holds the other counts the rule reads: rows with equal context give the same level at the same
    DLT counts, so the rule is evaluated once per distinct (context, DLT counts) of a batch.

    The smaller vectors of a row with ``y`` DLTs by level are the numbers 0 to prod(y + 1) - 2 written with digits
    of radix y + 1 (the row's own vector is the last number, prod(y + 1) - 1). They are enumerated for all rows
    together, row after row (rows of equal context next to each other), in batches of at most
    ``_SAFEGUARD_BATCH`` vectors.
    """
    lowest = chosen.copy()
    rows = np.flatnonzero(active & np.any(dlt > 0, axis=1))  # the rows with a smaller vector
    if rows.size == 0:
        return lowest
    rows = rows[np.lexsort(context[rows].T)]  # rows of equal context next to each other
    sorted_context = context[rows]
    context_id = np.concatenate([[0], np.cumsum(np.any(sorted_context[1:] != sorted_context[:-1], axis=1))])
    radix = dlt[rows] + 1
    digit_value = _digit_values(radix)
    n_fewer = np.prod(radix, axis=1) - 1  # the smaller vectors of each row
    end = np.cumsum(n_fewer)  # the smaller vectors of rows[0], ..., rows[i]
    # a (context, vector) pair as one number: the context id, then the vector in the radix of all rows; when that
    # does not fit in int64, every vector counts as distinct
    common_radix = radix.max(axis=0)
    common_digit_value, common_size = _digit_values(common_radix), math.prod(common_radix.tolist())
    pairs_fit = (int(context_id[-1]) + 1) * common_size < 2 ** 63
    for first in range(0, int(end[-1]), _SAFEGUARD_BATCH):
        vector = np.arange(first, min(first + _SAFEGUARD_BATCH, int(end[-1])))  # numbered over all rows
        owner = np.searchsorted(end, vector, side="right")  # index into rows
        number_in_row = vector - (end[owner] - n_fewer[owner])
        fewer = number_in_row[:, None] // digit_value[owner] % radix[owner]
        pair = context_id[owner] * common_size + fewer @ common_digit_value if pairs_fit else vector
        distinct, copy_of = np.unique(pair, return_inverse=True)
        evaluated = np.empty(distinct.size, dtype=np.int64)
        evaluated[copy_of] = np.arange(pair.size)  # one vector of each distinct pair (any: they give the same level)
        levels, stops = rule(rows[owner[evaluated]], fewer[evaluated])[:2]
        kept = ~stops[copy_of]
        np.minimum.at(lowest, rows[owner[kept]], levels[copy_of][kept])
    return lowest


def _digit_values(radix: np.ndarray) -> np.ndarray:
    """The value of a one at each digit of mixed-radix numbers with these radices (the last digit the lowest)."""
    value = np.ones_like(radix)
    for digit in range(radix.shape[-1] - 2, -1, -1):
        value[..., digit] = value[..., digit + 1] * radix[..., digit + 1]
    return value


def _boin12_select_rows(settings, tables, n, dlt, response, both, min_patients: int = 0) -> np.ndarray:
    """:func:`~lupusbayes.decisions.boin12.boin12_select_dose` for each row (-1: none), among levels given to at
    least ``min_patients`` patients."""
    n_levels = n.shape[1]
    mtd = select_mtd_rows(n, dlt, settings.target_toxicity, tables.mtd_eliminate_at_least)
    utility = boin12_posterior_mean_utility(settings, n, boin12_quasi_events(settings, n, dlt, response, both))
    too_toxic = np.logical_or.accumulate(tables.too_toxic[n, dlt], axis=1)
    eligible = ((n > 0) & (n >= min_patients) & ~too_toxic & ~tables.futile[n, response]
                & (np.arange(n_levels) <= mtd[:, None]) & (mtd >= 0)[:, None])
    best = np.argmax(np.where(eligible, utility, -np.inf), axis=1)  # the lowest level on ties
    return np.where(eligible.any(axis=1), best, -1)


# ---- TITE-BOIN ------------------------------------------------------------------------------


def simulate_tite_boin(
    uniforms: np.ndarray,
    onset_days: np.ndarray,
    arrival_days: np.ndarray,
    p_true: Sequence[float],
    *,
    boundaries: BoinBoundaries,
    window_days: float,
    cohort_size: int,
    n_cohorts: int,
    max_pending_fraction: float = DEFAULT_MAX_PENDING_FRACTION,
    start_level: int = 0,
    method: str = "imputation",
) -> TiteBoinSimulation:
    """Simulate many TITE-BOIN trials at once, in calendar days (Yuan et al. 2018).

    **TITE-BOIN doses patients while earlier patients are still inside their DLT window; that
    is the design** (see :mod:`lupusbayes.decisions.tite_boin`).

    Timing. Patient ``j`` of trial ``t`` arrives on ``arrival_days[t, j]`` and is dosed when
    ready: on arrival, or when the patient before was dosed, or when a suspension ends. At level
    ``d`` the patient has a DLT when ``uniforms[t, j] < p_true[d]``, seen ``onset_days[t, j]``
    days after dosing (0 < onset <= window); a patient without a DLT is complete when the
    window ends. The first cohort starts at ``start_level``. For each later cohort, the
    decision (:func:`~lupusbayes.decisions.tite_boin.tite_boin_next_dose`, with the eliminations
    of earlier decisions) is taken on the day its first patient is ready, with the data known
    that day; while it says "suspend", the patient waits until the next event (a pending
    patient's window ends or a DLT is seen, at any level) and the decision is taken again.
    The cohort's patients are then dosed at that level as they become ready. No decision
    follows the last cohort; a "stop" ends the trial (no level selected). The MTD is selected
    by BOIN's ``select.mtd`` on the complete data of every enrolled patient.

    Parameters
    ----------
    uniforms, onset_days, arrival_days : numpy.ndarray, shape (n_trials, n_columns)
        Latent U(0, 1) per patient; days from dosing to a DLT (used only for patients with a
        DLT, but every value must be in (0, window_days]); arrival days (non-decreasing along
        each row, the first normally 0). ``n_columns >= cohort_size * n_cohorts``.
    p_true : sequence of float
        True probability of a DLT within the window at each level.
    boundaries : BoinBoundaries
        From :func:`~lupusbayes.decisions.boin.boin_boundaries`, covering
        ``cohort_size * n_cohorts`` patients.
    window_days : float
        Length of the DLT window.
    cohort_size, n_cohorts : int
    max_pending_fraction : float, default 0.5
    start_level : int, default 0
    method : {"imputation", "effective_sample_size"}, default "imputation"

    Returns
    -------
    TiteBoinSimulation

    Examples
    --------
    >>> from lupusbayes.decisions.boin import boin_boundaries
    >>> rng = np.random.default_rng(2018)
    >>> n_trials, n_patients = 2000, 30
    >>> arrivals = np.cumsum(rng.exponential(10.0, (n_trials, n_patients)), axis=1)  # a patient every 10 days
    >>> arrivals -= arrivals[:, :1]
    >>> simulation = simulate_tite_boin(rng.random((n_trials, n_patients)), rng.uniform(1, 28, (n_trials, n_patients)),
    ...                                 arrivals, [0.05, 0.12, 0.30, 0.45, 0.60],
    ...                                 boundaries=boin_boundaries(0.3, max_patients=30), window_days=28,
    ...                                 cohort_size=3, n_cohorts=10)
    >>> int(simulation.summary().selection_probability.argmax())
    2
    >>> bool(np.median(simulation.duration_days) < 30 * 10 + 28 * 10)  # faster than waiting out every window
    True
    """
    cohort_size = check_positive_int(cohort_size, "cohort_size")
    n_cohorts = check_positive_int(n_cohorts, "n_cohorts")
    planned = cohort_size * n_cohorts
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS} (got {method!r})")
    if not 0 <= max_pending_fraction < 1:
        raise ValueError(f"max_pending_fraction must be in [0, 1) (got {max_pending_fraction})")
    window_days = float(window_days)
    if not (np.isfinite(window_days) and window_days > 0):
        raise ValueError(f"window_days must be a positive number of days (got {window_days})")
    uniforms = check_uniforms(uniforms, planned, "uniforms")
    onset, arrival = check_patient_days(onset_days, arrival_days, uniforms.shape[0], planned, window_days)
    p_true = check_probabilities(p_true, "p_true")
    n_levels = p_true.size
    start_level = check_level(start_level, n_levels, "start_level")
    if boundaries.max_patients < planned:
        raise ValueError(f"boundaries must cover cohort_size * n_cohorts = {planned} patients "
                         f"(they cover {boundaries.max_patients})")

    n_trials = uniforms.shape[0]
    trial = _TiteTrials(n_trials, planned, n_levels, boundaries, window_days, max_pending_fraction, method)
    level = np.full(n_trials, start_level, dtype=np.int64)
    running = np.ones(n_trials, dtype=bool)
    stopped_early = np.zeros(n_trials, dtype=bool)

    for cohort in range(n_cohorts):
        trials = np.flatnonzero(running)
        if trials.size == 0:
            break
        first = cohort * cohort_size
        if cohort == 0:
            ready = arrival[trials, 0]
        else:
            ready = np.maximum(arrival[trials, first], trial.dose_day[trials, first - 1])
            decision, ready = trial.decide_until_not_suspended(trials, first, level[trials], ready)
            stop = decision == _STOP
            running[trials[stop]] = False
            stopped_early[trials[stop]] = True
            level[trials[~stop]] = decision[~stop]
            trials, ready = trials[~stop], ready[~stop]
        at = level[trials]
        for offset in range(cohort_size):
            patient = first + offset
            if offset > 0:
                ready = np.maximum(arrival[trials, patient], trial.dose_day[trials, patient - 1])
            trial.dose(trials, patient, at, ready, uniforms[trials, patient] < p_true[at], onset[trials, patient])

    n_patients, n_dlt = trial.final_counts()
    selected_level = np.full(n_trials, -1, dtype=np.int64)
    finished = ~stopped_early
    selected_level[finished] = select_mtd_rows(
        n_patients[finished], n_dlt[finished], boundaries.target, trial.eliminate_at_least
    )
    enrolled = trial.level >= 0
    last = np.where(enrolled.any(axis=1), planned - 1 - np.argmax(enrolled[:, ::-1], axis=1), 0)
    duration = trial.dose_day[np.arange(n_trials), last] + window_days
    arrays = (selected_level, n_patients, n_dlt, stopped_early, trial.level, trial.dose_day, duration)
    return TiteBoinSimulation(*_read_only(arrays))


class _TiteTrials:
    """Patient-level state of many TITE-BOIN trials and the vectorised decision rule."""

    def __init__(self, n_trials, max_patients, n_levels, boundaries, window_days, max_pending_fraction, method):
        self.level = np.full((n_trials, max_patients), -1, dtype=np.int64)
        self.dose_day = np.full((n_trials, max_patients), np.nan)
        self.has_dlt = np.zeros((n_trials, max_patients), dtype=bool)
        self.known_day = np.full((n_trials, max_patients), np.inf)  # day the outcome is known
        self.window_end = np.full((n_trials, max_patients), np.inf)
        self.eliminated = np.zeros((n_trials, n_levels), dtype=bool)
        self.n_levels = n_levels
        self.boundaries = boundaries
        self.window_days = window_days
        self.max_pending_fraction = max_pending_fraction
        self.method = method
        # indexed by n = 0..max_patients; n = 0 never acts
        self.eliminate_at_least = np.array((1, *boundaries.eliminate_at_least))
        self.escalate_at_most = np.array((-1, *boundaries.escalate_at_most))
        self.deescalate_at_least = np.array((1, *boundaries.deescalate_at_least))

    def dose(self, trials, patient, level, day, has_dlt, onset) -> None:
        self.level[trials, patient] = level
        self.dose_day[trials, patient] = day
        self.has_dlt[trials, patient] = has_dlt
        self.window_end[trials, patient] = day + self.window_days
        self.known_day[trials, patient] = np.where(has_dlt, day + onset, day + self.window_days)

    def final_counts(self) -> tuple[np.ndarray, np.ndarray]:
        n_patients = np.stack([(self.level == level).sum(axis=1) for level in range(self.n_levels)], axis=1)
        n_dlt = np.stack([((self.level == level) & self.has_dlt).sum(axis=1) for level in range(self.n_levels)], axis=1)
        return n_patients, n_dlt

    def decide_until_not_suspended(self, trials, n_enrolled, current, day):
        """Decide for ``trials`` on ``day``; re-decide suspended ones at their next event. Returns (decision, day)."""
        decision = np.empty(trials.size, dtype=np.int64)
        day = day.copy()
        waiting = np.arange(trials.size)
        while waiting.size:
            rows = trials[waiting]
            outcome = self.decide(rows, n_enrolled, current[waiting], day[waiting])
            decision[waiting] = outcome
            suspended = outcome == _SUSPEND
            waiting = waiting[suspended]
            if waiting.size:
                known = self.known_day[trials[waiting], :n_enrolled]
                day[waiting] = np.where(known > day[waiting, None], known, np.inf).min(axis=1)
        return decision, day

    def decide(self, rows, n_enrolled, current, day) -> np.ndarray:
        """:func:`~lupusbayes.decisions.tite_boin.tite_boin_next_dose` for each row (level, _STOP or _SUSPEND)."""
        boundaries = self.boundaries
        n_rows, n_levels = rows.size, self.n_levels
        index = np.arange(n_rows)
        level = self.level[rows, :n_enrolled]
        known = self.known_day[rows, :n_enrolled] <= day[:, None]
        dlt_seen = known & self.has_dlt[rows, :n_enrolled]
        pending = ~known
        complete = np.zeros((n_rows, n_levels), dtype=np.int64)
        dlt = np.zeros((n_rows, n_levels), dtype=np.int64)
        for each in range(n_levels):
            at_level = level == each
            complete[:, each] = (at_level & known).sum(axis=1)
            dlt[:, each] = (at_level & dlt_seen).sum(axis=1)
        self.eliminated[rows] = np.logical_or.accumulate(
            self.eliminated[rows] | (dlt >= self.eliminate_at_least[complete]), axis=1
        )
        eliminated = self.eliminated[rows]

        at_current = level == current[:, None]
        pending_here = pending & at_current
        n_pending = pending_here.sum(axis=1)
        followup = np.where(pending_here, (day[:, None] - self.dose_day[rows, :n_enrolled]) / self.window_days, 0.0)
        total_followup = followup.sum(axis=1)
        m, y = complete[index, current], dlt[index, current]
        n = m + n_pending

        # BOIN when nothing is pending at the current level
        top = current == n_levels - 1
        next_eliminated = eliminated[index, np.minimum(current + 1, n_levels - 1)]
        escalate = (y <= self.escalate_at_most[m]) & ~top
        boin = np.where(escalate, np.where(next_eliminated, current, current + 1),
                        np.where((y >= self.deescalate_at_least[m]) & (current > 0), current - 1, current))
        # the time-to-event estimate otherwise
        effective_n, effective_dlt = tite_boin_effective_counts(
            boundaries.target, m, y, n_pending, total_followup, self.method
        )
        with np.errstate(divide="ignore", invalid="ignore"):
            rate = effective_dlt / effective_n
        observed = y / n
        coherent = self.method == "imputation"
        escalate_signal = rate <= boundaries.lambda_escalate
        deescalate_signal = ~escalate_signal & (rate >= boundaries.lambda_deescalate)
        escalate_ok = (observed < boundaries.target) if coherent else np.ones(n_rows, dtype=bool)
        deescalate_ok = (observed > boundaries.target) if coherent else np.ones(n_rows, dtype=bool)
        tite = np.where(
            escalate_signal,
            np.where(escalate_ok & ~top & ~next_eliminated, current + 1, current),
            np.where(deescalate_signal & deescalate_ok, np.where(current > 0, current - 1, _SUSPEND), current),
        )
        decision = np.where(n_pending == 0, boin, tite)
        suspend = (n_pending / n > self.max_pending_fraction) & (y < self.deescalate_at_least[n])
        decision = np.where(suspend, _SUSPEND, decision)
        first_eliminated = np.where(eliminated.any(axis=1), np.argmax(eliminated, axis=1), n_levels)
        decision = np.where(eliminated[index, current], first_eliminated - 1, decision)
        return np.where(eliminated[:, 0], _STOP, decision)


# ---- shared -----------------------------------------------------------------------------------


def _read_only(arrays):
    for array in arrays:
        array.setflags(write=False)
    return arrays
