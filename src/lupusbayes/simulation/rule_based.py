"""Fast, vectorised simulators of the rule-based designs: BOIN and the 3+3.

Each simulator runs many trials at once, one cohort at a time, with NumPy arrays over trials.
The rules are those of the decisions layer, replayed without building a trial state:

* :func:`simulate_boin` follows BOIN 2.7.2's ``get.oc`` (Liu & Yuan 2015; Yan, Pan, Zhang,
  Liu & Yuan 2020), cohort by cohort with
  :func:`~lupusbayes.decisions.boin.boin_next_dose` and, at the end,
  :func:`~lupusbayes.decisions.boin.boin_select_mtd`;
* :func:`simulate_three_plus_three` follows the 3+3 of the R package ``escalation``
  (``get_three_plus_three``), cohort by cohort with
  :func:`~lupusbayes.decisions.three_plus_three.three_plus_three_next`.

Both return a :class:`RuleBasedSimulation` (per-trial results), whose
:meth:`~RuleBasedSimulation.summary` gives the :class:`OperatingCharacteristics` with Monte
Carlo standard errors.

Common random numbers: patient ``j`` of trial ``t`` has a DLT at level ``d`` exactly when
``uniforms[t, j] < p_true[d]``, the convention of the latent toxicity uniforms
(:mod:`lupusbayes.simulation.patients`) that the general engine in
:mod:`lupusbayes.simulation.engine` uses for every design. Given the same uniforms, these
simulators and the engine treat the same patients, so designs differ by their choices, not
by their luck.

Levels are 0-based; ``-1`` stands for no level (none selected, or a patient never enrolled).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from lupusbayes.decisions.boin import TIE_BREAK_STEP, BoinBoundaries
from lupusbayes.decisions.level_counts import check_level, check_positive_int
from lupusbayes.decisions.three_plus_three import COHORT_SIZE, MAX_PATIENTS_PER_LEVEL

__all__ = [
    "OperatingCharacteristics",
    "RuleBasedSimulation",
    "TimeToEventSimulation",
    "check_uniforms",
    "check_probabilities",
    "check_patient_days",
    "select_mtd_rows",
    "simulate_boin",
    "simulate_three_plus_three",
]


# ---- results --------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class OperatingCharacteristics:
    """Operating characteristics of a simulated design, with Monte Carlo standard errors.

    Probabilities are on the 0-1 scale (BOIN's ``get.oc`` prints percentages). Per-level
    arrays are indexed by 0-based level. Each ``*_se`` is the Monte Carlo standard error of
    the quantity before it.

    Attributes
    ----------
    n_trials : int
    selection_probability, selection_probability_se : numpy.ndarray
        Fraction of trials that selected each level.
    no_selection_probability, no_selection_probability_se : float
        Fraction of trials that selected no level (``get.oc``'s ``percentstop`` / 100).
    early_stop_probability, early_stop_probability_se : float
        Fraction of trials stopped before their planned end with no level selected.
    mean_patients, mean_patients_se : numpy.ndarray
        Mean number of patients treated at each level.
    mean_dlt, mean_dlt_se : numpy.ndarray
        Mean number of DLTs at each level.
    mean_total_patients, mean_total_patients_se, mean_total_dlt, mean_total_dlt_se : float
    """

    n_trials: int
    selection_probability: np.ndarray
    selection_probability_se: np.ndarray
    no_selection_probability: float
    no_selection_probability_se: float
    early_stop_probability: float
    early_stop_probability_se: float
    mean_patients: np.ndarray
    mean_patients_se: np.ndarray
    mean_dlt: np.ndarray
    mean_dlt_se: np.ndarray
    mean_total_patients: float
    mean_total_patients_se: float
    mean_total_dlt: float
    mean_total_dlt_se: float


@dataclass(frozen=True, eq=False)
class RuleBasedSimulation:
    """Per-trial results of simulating a rule-based design (BOIN or 3+3).

    All arrays are read-only; levels are 0-based.

    Attributes
    ----------
    selected_level : numpy.ndarray of int, shape (n_trials,)
        Level selected at the end of each trial; -1 when no level was selected.
    n_patients, n_dlt : numpy.ndarray of int, shape (n_trials, n_levels)
        Patients treated and DLTs observed at each level.
    stopped_early : numpy.ndarray of bool, shape (n_trials,)
        True where the design stopped the trial before its planned end because the lowest
        level was too toxic (so no level was selected).
    patient_level : numpy.ndarray of int, shape (n_trials, max_patients)
        Level given to each patient in order of enrolment; -1 for patients never enrolled.
        With an accrual model this gives each trial's duration.
    """

    selected_level: np.ndarray
    n_patients: np.ndarray
    n_dlt: np.ndarray
    stopped_early: np.ndarray
    patient_level: np.ndarray

    @property
    def n_trials(self) -> int:
        return int(self.selected_level.size)

    @property
    def n_levels(self) -> int:
        return int(self.n_patients.shape[1])

    def summary(self) -> OperatingCharacteristics:
        """Selection probabilities, patients and DLTs per level, and stopping, with MC errors.

        Examples
        --------
        >>> rng = np.random.default_rng(1)
        >>> from lupusbayes.decisions.boin import boin_boundaries
        >>> boundaries = boin_boundaries(0.3, max_patients=30)
        >>> simulation = simulate_boin(rng.random((2000, 30)), [0.05, 0.15, 0.3, 0.45, 0.6],
        ...                            boundaries=boundaries, cohort_size=3, n_cohorts=10)
        >>> summary = simulation.summary()
        >>> int(summary.selection_probability.argmax())  # the third level, p = 0.3
        2
        >>> round(summary.mean_total_patients)  # a few trials stop early
        30
        """
        n_trials = self.n_trials
        selected = self.selected_level[:, None] == np.arange(self.n_levels)
        total_patients = self.n_patients.sum(axis=1)
        total_dlt = self.n_dlt.sum(axis=1)
        no_selection = self.selected_level < 0
        return OperatingCharacteristics(
            n_trials=n_trials,
            selection_probability=selected.mean(axis=0),
            selection_probability_se=_standard_error(selected),
            no_selection_probability=float(no_selection.mean()),
            no_selection_probability_se=float(_standard_error(no_selection)),
            early_stop_probability=float(self.stopped_early.mean()),
            early_stop_probability_se=float(_standard_error(self.stopped_early)),
            mean_patients=self.n_patients.mean(axis=0),
            mean_patients_se=_standard_error(self.n_patients),
            mean_dlt=self.n_dlt.mean(axis=0),
            mean_dlt_se=_standard_error(self.n_dlt),
            mean_total_patients=float(total_patients.mean()),
            mean_total_patients_se=float(_standard_error(total_patients)),
            mean_total_dlt=float(total_dlt.mean()),
            mean_total_dlt_se=float(_standard_error(total_dlt)),
        )


@dataclass(frozen=True, eq=False)
class TimeToEventSimulation(RuleBasedSimulation):
    """Per-trial results of a time-to-event design's simulator (the TITE-CRM, TITE-BOIN): those of a
    :class:`RuleBasedSimulation`, with time (read-only arrays).

    Attributes
    ----------
    patient_dose_day : numpy.ndarray of float, shape (n_trials, max_patients)
        Day each patient was dosed (its arrival day, or later when it waited for a suspension to end);
        NaN for patients never enrolled.
    duration_days : numpy.ndarray of float, shape (n_trials,)
        Day the last enrolled patient's DLT window ends.
    """

    patient_dose_day: np.ndarray
    duration_days: np.ndarray


# ---- BOIN -----------------------------------------------------------------------------------


def simulate_boin(
    uniforms: np.ndarray,
    p_true: Sequence[float],
    *,
    boundaries: BoinBoundaries,
    cohort_size: int,
    n_cohorts: int,
    start_level: int = 0,
) -> RuleBasedSimulation:
    """Simulate many BOIN trials at once (Liu & Yuan 2015; BOIN 2.7.2 ``get.oc``).

    Patient ``j`` of trial ``t`` has a DLT at level ``d`` exactly when
    ``uniforms[t, j] < p_true[d]``, so designs and scenarios can share random numbers. Each
    cohort follows :func:`~lupusbayes.decisions.boin.boin_next_dose`; as in ``get.oc``, there
    is no elimination or dose decision after the final cohort, and a trial stops early (no
    level selected) when the lowest level is eliminated. Trials that run to the end select a
    level with :func:`~lupusbayes.decisions.boin.boin_select_mtd` on their final data (with
    ``boundaries.target`` and ``boundaries.cutoff_eliminate``).

    Parameters
    ----------
    uniforms : numpy.ndarray, shape (n_trials, n_columns)
        Latent U(0, 1) per patient, with ``n_columns >= cohort_size * n_cohorts`` (extra
        columns are not used).
    p_true : sequence of float
        True DLT probability at each level.
    boundaries : BoinBoundaries
        From :func:`~lupusbayes.decisions.boin.boin_boundaries`, covering
        ``cohort_size * n_cohorts`` patients.
    cohort_size, n_cohorts : int
    start_level : int, default 0
        0-based level of the first cohort.

    Returns
    -------
    RuleBasedSimulation

    Examples
    --------
    >>> rng = np.random.default_rng(6)
    >>> from lupusbayes.decisions.boin import boin_boundaries
    >>> boundaries = boin_boundaries(0.3, max_patients=30)
    >>> simulation = simulate_boin(rng.random((1000, 30)), [0.5, 0.6, 0.7, 0.8, 0.9],
    ...                            boundaries=boundaries, cohort_size=3, n_cohorts=10)
    >>> bool(simulation.stopped_early.mean() > 0.5)
    True
    """
    cohort_size = check_positive_int(cohort_size, "cohort_size")
    n_cohorts = check_positive_int(n_cohorts, "n_cohorts")
    planned = cohort_size * n_cohorts
    uniforms, p_true = _check_simulation_inputs(uniforms, p_true, planned)
    n_levels = p_true.size
    start_level = check_level(start_level, n_levels, "start_level")
    if boundaries.max_patients < planned:
        raise ValueError(
            f"boundaries must cover cohort_size * n_cohorts = {planned} patients (they cover {boundaries.max_patients})"
        )
    escalate_at_most, deescalate_at_least, eliminate_at_least = _counts_indexed_by_n(boundaries)

    n_trials = uniforms.shape[0]
    level_index = np.arange(n_levels)
    level = np.full(n_trials, start_level)
    n_patients = np.zeros((n_trials, n_levels), dtype=np.int64)
    n_dlt = np.zeros((n_trials, n_levels), dtype=np.int64)
    eliminated = np.zeros((n_trials, n_levels), dtype=bool)
    stopped_early = np.zeros(n_trials, dtype=bool)
    patient_level = np.full((n_trials, planned), -1, dtype=np.int64)

    for cohort in range(n_cohorts):
        trials = np.flatnonzero(~stopped_early)
        at = level[trials]
        columns = slice(cohort * cohort_size, (cohort + 1) * cohort_size)
        n_patients[trials, at] += cohort_size
        n_dlt[trials, at] += (uniforms[trials, columns] < p_true[at, None]).sum(axis=1)
        patient_level[trials, columns] = at[:, None]
        if cohort == n_cohorts - 1:
            break  # get.oc makes no elimination or dose decision after the final cohort

        n, y = n_patients[trials, at], n_dlt[trials, at]
        eliminate = y >= eliminate_at_least[n]
        eliminated[trials] |= eliminate[:, None] & (level_index >= at[:, None])
        stop = eliminate & (at == 0)
        escalate_branch = (y <= escalate_at_most[n]) & (at < n_levels - 1)
        escalate = escalate_branch & ~eliminated[trials, np.minimum(at + 1, n_levels - 1)]
        deescalate = ~escalate_branch & (y >= deescalate_at_least[n]) & (at > 0)
        level[trials] = at + escalate - deescalate
        stopped_early[trials[stop]] = True

    selected_level = np.full(n_trials, -1, dtype=np.int64)
    finished = ~stopped_early
    selected_level[finished] = select_mtd_rows(
        n_patients[finished], n_dlt[finished], boundaries.target, eliminate_at_least
    )
    return _read_only_simulation(selected_level, n_patients, n_dlt, stopped_early, patient_level)


def _counts_indexed_by_n(boundaries: BoinBoundaries) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The boundary counts as arrays indexed by n = 0..max_patients (n = 0 never acts)."""
    escalate_at_most = np.array((-1, *boundaries.escalate_at_most))
    deescalate_at_least = np.array((1, *boundaries.deescalate_at_least))
    eliminate_at_least = np.array((1, *boundaries.eliminate_at_least))
    return escalate_at_most, deescalate_at_least, eliminate_at_least


def select_mtd_rows(
    n_patients: np.ndarray, n_dlt: np.ndarray, target: float, eliminate_at_least: np.ndarray
) -> np.ndarray:
    """:func:`~lupusbayes.decisions.boin.boin_select_mtd` for each row of (n_trials, n_levels) counts.

    Returns the selected level of each row; -1 for no selection. Elimination uses the
    precomputed counts (``eliminate_at_least`` indexed by n), which equal select.mtd's
    posterior rule because Pr(p > target | y, n) increases with y.
    """
    eliminated = np.logical_or.accumulate(n_dlt >= eliminate_at_least[n_patients], axis=1)
    admissible = (n_patients > 0) & ~eliminated
    y, n = n_dlt, n_patients
    estimate = (y + 0.05) / (n + 0.1)
    weight = (n + 0.1) ** 2 * (n + 1.1) / ((y + 0.05) * (n - y + 0.05))
    isotonic = _isotonic_rows(estimate, weight, admissible)
    jitter = TIE_BREAK_STEP * np.cumsum(admissible, axis=1)
    distance = np.where(admissible, np.abs(isotonic + jitter - target), np.inf)
    selected = np.argmin(distance, axis=1)
    return np.where(admissible.any(axis=1) & ~eliminated[:, 0], selected, -1)


def _isotonic_rows(values: np.ndarray, weights: np.ndarray, included: np.ndarray) -> np.ndarray:
    """Weighted isotonic regression of each row over its ``included`` entries (others: nan).

    Uses the max-min formula (Robertson, Wright & Dykstra 1988, Theorem 1.4.4): the fit at i is
    the max over a <= i of the min over b >= i of the weighted mean of entries a..b, with a and
    b included. It gives the same fit as :func:`~lupusbayes.decisions.boin.pava` and vectorises
    over rows; the loops run over the (few) levels only.
    """
    n_rows, n_levels = values.shape
    weights = np.where(included, weights, 0.0)
    weighted = np.where(included, values, 0.0) * weights
    # interval_mean[:, a, b]: weighted mean of included entries a..b (used only for included a, b)
    interval_mean = np.full((n_rows, n_levels, n_levels), np.nan)
    with np.errstate(invalid="ignore", divide="ignore"):
        for first in range(n_levels):
            total_weight = np.zeros(n_rows)
            total_weighted = np.zeros(n_rows)
            for last in range(first, n_levels):
                total_weight = total_weight + weights[:, last]
                total_weighted = total_weighted + weighted[:, last]
                interval_mean[:, first, last] = total_weighted / total_weight
    fitted = np.full((n_rows, n_levels), np.nan)
    for level in range(n_levels):
        ends = np.where(included[:, None, level:], interval_mean[:, : level + 1, level:], np.inf)
        smallest = ends.min(axis=2)
        starts = np.where(included[:, : level + 1], smallest, -np.inf)
        fitted[:, level] = np.where(included[:, level], starts.max(axis=1), np.nan)
    return fitted



# ---- 3+3 ------------------------------------------------------------------------------------


def simulate_three_plus_three(
    uniforms: np.ndarray,
    p_true: Sequence[float],
    *,
    max_patients: int | None = None,
    allow_deescalate: bool = False,
    min_patients_at_selection: int = COHORT_SIZE,
) -> RuleBasedSimulation:
    """Simulate many 3+3 trials at once, starting at the lowest level (``escalation`` rules).

    Patient ``j`` of trial ``t`` has a DLT at level ``d`` exactly when
    ``uniforms[t, j] < p_true[d]`` (common random numbers, as in
    :func:`~lupusbayes.simulation.rule_based.simulate_boin`). Every cohort follows
    :func:`~lupusbayes.decisions.three_plus_three.three_plus_three_next`.

    Parameters
    ----------
    uniforms : numpy.ndarray, shape (n_trials, n_columns)
        Latent U(0, 1) per patient, with at least ``max_patients`` columns (extra columns are
        not used).
    p_true : sequence of float
        True DLT probability at each level.
    max_patients : int, optional
        Cap on the sample size, a multiple of 3. A trial that reaches it while the 3+3 would
        continue stops and selects by the classical rule
        (:func:`~lupusbayes.decisions.three_plus_three.classical_three_plus_three_mtd`: never a
        level no patient received, unlike ``escalation``'s ``stop_at_n``, which selects the level
        the 3+3 would give next). Default ``6 * n_levels``, which the 3+3 never exceeds.
    allow_deescalate : bool, default False
        Korn et al.'s variant.
    min_patients_at_selection : int, default 3
        No level given to fewer patients is selected (the 3+3's own choice included; the
        classical rule then selects).

    Returns
    -------
    RuleBasedSimulation
        ``stopped_early`` marks trials the 3+3 stopped with no level selected.

    Examples
    --------
    >>> rng = np.random.default_rng(3)
    >>> simulation = simulate_three_plus_three(rng.random((1000, 30)), [0.05, 0.1, 0.2, 0.35, 0.5])
    >>> bool(simulation.n_patients.sum(axis=1).max() <= 30)
    True
    """
    p_true = check_probabilities(p_true, "p_true")
    n_levels = p_true.size
    if max_patients is None:
        max_patients = MAX_PATIENTS_PER_LEVEL * n_levels
    whole = isinstance(max_patients, (int, np.integer)) and not isinstance(max_patients, bool)
    if not whole or max_patients < 3 or max_patients % 3:
        raise ValueError(f"max_patients must be a positive multiple of 3 (got {max_patients!r})")
    uniforms = check_uniforms(uniforms, max_patients)

    n_trials = uniforms.shape[0]
    level = np.zeros(n_trials, dtype=np.int64)
    n_patients = np.zeros((n_trials, n_levels), dtype=np.int64)
    n_dlt = np.zeros((n_trials, n_levels), dtype=np.int64)
    running = np.ones(n_trials, dtype=bool)
    selected_level = np.full(n_trials, -1, dtype=np.int64)
    stopped_early = np.zeros(n_trials, dtype=bool)
    patient_level = np.full((n_trials, max_patients), -1, dtype=np.int64)

    n_cohorts = max_patients // COHORT_SIZE
    for cohort in range(n_cohorts):
        trials = np.flatnonzero(running)
        if trials.size == 0:
            break
        at = level[trials]
        columns = slice(cohort * COHORT_SIZE, (cohort + 1) * COHORT_SIZE)
        n_patients[trials, at] += COHORT_SIZE
        n_dlt[trials, at] += (uniforms[trials, columns] < p_true[at, None]).sum(axis=1)
        patient_level[trials, columns] = at[:, None]

        next_level_index, stop, selected = _decide_rows(n_patients[trials], n_dlt[trials], at, allow_deescalate)
        classical = _classical_rows(n_patients[trials], n_dlt[trials], min_patients_at_selection)
        too_few = (selected >= 0) & (n_patients[trials, np.maximum(selected, 0)] < min_patients_at_selection)
        selected = np.where(stop & too_few, classical, selected)
        if cohort == n_cohorts - 1:  # sample size reached before the 3+3's own end: the classical rule
            selected = np.where(stop, selected, classical)
            stop = np.ones_like(stop)
        level[trials] = np.where(stop, at, next_level_index)
        selected_level[trials[stop]] = selected[stop]
        stopped_early[trials[stop]] = selected[stop] < 0
        running[trials[stop]] = False

    return _read_only_simulation(selected_level, n_patients, n_dlt, stopped_early, patient_level)


def _classical_rows(n_patients: np.ndarray, n_dlt: np.ndarray, min_patients: int) -> np.ndarray:
    """:func:`~lupusbayes.decisions.three_plus_three.classical_three_plus_three_mtd` for many trials (-1: none)."""
    n_levels = n_patients.shape[1]
    toxic = n_dlt >= 2
    below_toxic = ~np.logical_or.accumulate(toxic, axis=1)
    qualifies = (below_toxic & (n_patients >= max(min_patients, COHORT_SIZE))
                 & ((n_dlt == 0) | ((n_patients >= MAX_PATIENTS_PER_LEVEL) & (n_dlt <= 1))))
    return np.where(qualifies.any(axis=1), n_levels - 1 - np.argmax(qualifies[:, ::-1], axis=1), -1)


def _decide_rows(n_patients: np.ndarray, n_dlt: np.ndarray, level: np.ndarray, allow_deescalate: bool):
    """:func:`~lupusbayes.decisions.three_plus_three.three_plus_three_next` for many trials at once.

    Called just after a complete cohort, so the last level has 3 or 6 patients. Returns the
    next level, whether the trial stops, and the selected level when it stops (-1 for none).
    """
    n_rows, n_levels = n_patients.shape
    rows = np.arange(n_rows)
    n, t = n_patients[rows, level], n_dlt[rows, level]
    above = np.minimum(level + 1, n_levels - 1)
    below = np.maximum(level - 1, 0)

    treat_more = (n == 3) & (t == 1)
    acceptable = (t == 0) | ((n == 6) & (t == 1))
    too_toxic = ~treat_more & ~acceptable
    next_closed = (level == n_levels - 1) | (n_patients[rows, above] >= 6) | (n_dlt[rows, above] >= 2)
    stop_here = acceptable & next_closed
    escalate = acceptable & ~next_closed

    if allow_deescalate:
        deescalate = too_toxic & (level > 0) & (n_patients[rows, below] < 6)
        safe = (n_patients >= 6) & (n_dlt <= 1)
        highest_safe = np.where(safe.any(axis=1), n_levels - 1 - np.argmax(safe[:, ::-1], axis=1), -1)
        too_toxic_selection = np.where(level > 0, highest_safe, -1)
    else:
        deescalate = np.zeros(n_rows, dtype=bool)
        too_toxic_selection = level - 1  # -1 (none) at the lowest level
    stop = stop_here | (too_toxic & ~deescalate)
    next_level_index = level + escalate - deescalate
    selected = np.where(stop_here, level, np.where(stop, too_toxic_selection, -1))
    return next_level_index, stop, selected



# ---- shared helpers -------------------------------------------------------------------------


def _read_only_simulation(selected_level, n_patients, n_dlt, stopped_early, patient_level) -> RuleBasedSimulation:
    for array in (selected_level, n_patients, n_dlt, stopped_early, patient_level):
        array.setflags(write=False)
    return RuleBasedSimulation(selected_level, n_patients, n_dlt, stopped_early, patient_level)


def _check_simulation_inputs(uniforms, p_true, planned: int) -> tuple[np.ndarray, np.ndarray]:
    uniforms = check_uniforms(uniforms, planned)
    return uniforms, check_probabilities(p_true, "p_true")


def check_uniforms(uniforms, planned: int, name: str = "uniforms") -> np.ndarray:
    """Latent uniforms as a float array (n_trials, n_patients) with at least ``planned`` columns, or a
    ``ValueError`` naming ``name``."""
    uniforms = np.asarray(uniforms, dtype=float)
    if uniforms.ndim != 2 or uniforms.shape[1] < planned:
        raise ValueError(
            f"{name} must be a 2-D array (n_trials, n_patients) with at least {planned} columns "
            f"(got shape {uniforms.shape})"
        )
    return uniforms


def check_probabilities(values, name: str) -> np.ndarray:
    """One probability per level (``p_true``, ``p_response``) as a float array, or a ``ValueError`` naming ``name``."""
    values = np.asarray(values, dtype=float)
    if values.ndim != 1 or values.size == 0 or np.any((values < 0) | (values > 1)):
        raise ValueError(f"{name} must be a non-empty 1-D sequence of probabilities between 0 and 1")
    return values


def check_patient_days(onset_days, arrival_days, n_trials: int, columns: int,
                       window_days: float) -> tuple[np.ndarray, np.ndarray]:
    """The time-to-event simulators' days, as float arrays of their first ``columns`` patients: each DLT's onset
    after dosing, in (0, ``window_days``], and each patient's arrival, >= 0 and non-decreasing along a trial (the
    patients in order of arrival); ``n_trials`` rows. A ``ValueError`` names the array otherwise."""
    checked = []
    for name, days in (("onset_days", onset_days), ("arrival_days", arrival_days)):
        days = np.asarray(days, dtype=float)
        if days.ndim != 2 or days.shape[0] != n_trials or days.shape[1] < columns:
            raise ValueError(f"{name} must have shape (n_trials = {n_trials}, at least {columns}) (got {days.shape})")
        checked.append(days[:, :columns])
    onset, arrival = checked
    if not np.all((onset > 0) & (onset <= window_days)):
        raise ValueError(f"onset_days must lie in (0, window_days = {window_days:g}] for every patient")
    if not np.all(np.isfinite(arrival)) or np.any(arrival < 0) or np.any(np.diff(arrival, axis=1) < 0):
        raise ValueError("arrival_days must be finite, >= 0 and non-decreasing along each trial (patients in order of "
                         "arrival)")
    return onset, arrival



def _standard_error(values: np.ndarray) -> np.ndarray:
    """Monte Carlo standard error of the mean over trials (axis 0)."""
    values = np.asarray(values, dtype=float)
    n_trials = values.shape[0]
    if n_trials < 2:
        return np.full(values.shape[1:], np.nan) if values.ndim > 1 else np.float64(np.nan)
    return values.std(axis=0, ddof=1) / np.sqrt(n_trials)
