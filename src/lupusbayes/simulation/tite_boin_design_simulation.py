"""A fast, vectorised simulator of the ``tite_boin`` design as the package runs it: many trials at once.

**TITE-BOIN doses new patients while earlier patients are still inside their DLT window; that is
the design** (see :mod:`lupusbayes.decisions.tite_boin`).

:func:`~lupusbayes.simulation.boin_extensions_simulation.simulate_tite_boin` replays the published
rule (Yuan et al. 2018). This module replays the *design* of :func:`~lupusbayes.decisions.design_for`
(``"tite_boin"``) on the timeline of the engine that calls ``decide``
(:func:`~lupusbayes.simulation.engine.simulate_trials` with ``vectorised=False``), so that its results
equal the engine's trial by trial (tested):

* the rule is :class:`~lupusbayes.decisions.rules.TiteBoinRule`: the published decision
  (:func:`~lupusbayes.decisions.tite_boin.tite_boin_next_dose`, imputation method, elimination on the
  complete data of the moment, nothing remembered), with the safeguard that a DLT never lifts a
  suspension or raises the level: the most conservative (suspend, then the lowest level) of the
  published decisions on the data and on the data with any subset of the DLTs seen inside the window
  not (yet) seen, a stop of the published rule on the data themselves stopping the trial;
* a suspension holds accrual until the current level's patients inside the window have completed it
  (the rule's ``hold_days``), and the trial decides again then;
* the first cohort is dosed at the starting level as its patients arrive; each later cohort is decided
  on the day its first patient arrives (or the last patient was dosed, if later), from what is known that day: a
  DLT on the day it occurs (``onset_days`` after dosing), a DLT-free patient when the window ends,
  follow-up in whole days (a data cut-off's count); the cohort's patients are dosed at that level as
  they arrive;
* the trial stops when the sample size is reached (decided when the last window ends, or when the
  next patient would arrive if the latent patients have a column for one) or when the published rule
  eliminates the lowest level; the final
  analysis comes when the last patient has completed the window and selects with BOIN's
  ``select.mtd`` (:func:`~lupusbayes.decisions.boin.boin_select_mtd`) among levels given to at least
  ``min_patients_at_selection`` patients. A stop for elimination that the complete data no longer
  support is kept (with its selection, none) and flagged ``final_analysis_changed``, as the engine does.

The loops run over cohorts, suspensions and the subsets of the safeguard, never over trials. A trial
whose decision would compare more DLTs inside the window than the safeguard allows
(:data:`~lupusbayes.decisions.rules.MAX_SAFEGUARD_DLTS_IN_WINDOW`, where ``decide`` refuses) is not
simulated: ``needs_engine`` marks it, and :func:`~lupusbayes.simulation.engine.simulate_trials` runs
it through the engine instead.

Common random numbers, as in the other simulators: patient ``j`` of trial ``t`` has a DLT at level
``d`` exactly when ``uniforms[t, j] < p_true[d]``. Levels are 0-based; ``-1`` stands for no level.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from lupusbayes.decisions.boin import BoinBoundaries
from lupusbayes.decisions.level_counts import check_level, check_min_patients, check_positive_int
from lupusbayes.decisions.rules import MAX_SAFEGUARD_DLTS_IN_WINDOW
from lupusbayes.decisions.tite_boin import DEFAULT_MAX_PENDING_FRACTION, tite_boin_effective_counts
from lupusbayes.simulation.rule_based import (
    TimeToEventSimulation,
    check_patient_days,
    check_probabilities,
    check_uniforms,
    select_mtd_rows,
)

__all__ = ["TiteBoinDesignSimulation", "simulate_tite_boin_design"]

#: Codes of a decision (levels are >= 0); a suspension ranks below every level in the safeguard.
_SUSPEND = -1
_STOP = -2
#: Follow-up is counted as the engine counts it: whole days, with this tolerance.
_EPSILON = 1e-9
#: Decisions again after a suspension before a trial is left to the engine (one always suffices: the
#: suspension lasts until the last patient dosed, at the current level, has completed the window).
_MAX_SUSPENSIONS = 8


@dataclass(frozen=True, eq=False)
class TiteBoinDesignSimulation(TimeToEventSimulation):
    """Per-trial results of :func:`simulate_tite_boin_design` (read-only arrays).

    The fields of :class:`~lupusbayes.simulation.rule_based.TimeToEventSimulation`, where
    ``stopped_early`` marks trials whose stop the published rule's elimination of the lowest level
    gave (the engine's first stop reason; at any decision, the one when the sample size is reached
    included, where the final analysis on complete data may still select a level) and
    ``duration_days`` is the day of the final analysis (the last patient's window end); plus:

    Attributes
    ----------
    n_decisions : numpy.ndarray of int, shape (n_trials,)
        Decisions, as the engine counts them: the first, one per cohort, one more per suspension, the
        stop, and the final analysis.
    final_analysis_changed : numpy.ndarray of bool, shape (n_trials,)
        The trial stopped for elimination, but the final analysis on complete data no longer eliminates
        the lowest level (the stop and its selection, none, are kept).
    needs_engine : numpy.ndarray of bool, shape (n_trials,)
        Trials not simulated here (see the module docstring); their other fields are meaningless.
    """

    n_decisions: np.ndarray
    final_analysis_changed: np.ndarray
    needs_engine: np.ndarray


def simulate_tite_boin_design(
    uniforms: np.ndarray,
    onset_days: np.ndarray,
    arrival_days: np.ndarray,
    p_true: Sequence[float],
    *,
    boundaries: BoinBoundaries,
    window_days: int,
    cohort_size: int,
    n_cohorts: int,
    max_pending_fraction: float = DEFAULT_MAX_PENDING_FRACTION,
    start_level: int = 0,
    min_patients_at_selection: int = 0,
) -> TiteBoinDesignSimulation:
    """Simulate many trials of the ``tite_boin`` design at once, on the engine's timeline (module docstring).

    Parameters
    ----------
    uniforms, onset_days, arrival_days : numpy.ndarray, shape (n_trials, n_columns)
        Latent U(0, 1) per patient; the day after dosing a DLT occurs, in (0, window_days]
        (:meth:`~lupusbayes.simulation.scenarios.Scenario.onset_days`); the day each patient arrives
        (:func:`~lupusbayes.simulation.patients.arrival_days`: non-decreasing, the first on day 0).
        ``n_columns >= cohort_size * n_cohorts``; a column after the sample size only times the decision
        that stops for it, as in the engine.
    p_true : sequence of float
        True P(DLT) at each level.
    boundaries : BoinBoundaries
        The design's (:class:`~lupusbayes.decisions.rules.TiteBoinRule`), covering the sample size.
    window_days : int
        The DLT window (whole days).
    cohort_size, n_cohorts : int
        The sample size is ``cohort_size * n_cohorts`` patients, in full cohorts.
    max_pending_fraction : float, default 0.5
    start_level : int, default 0
    min_patients_at_selection : int, default 0
        The final selection is among levels given to at least this many patients.

    Returns
    -------
    TiteBoinDesignSimulation

    Examples
    --------
    >>> from lupusbayes.decisions.boin import boin_boundaries
    >>> rng = np.random.default_rng(2018)
    >>> n_trials, n_patients = 1000, 30
    >>> arrivals = np.tile(np.arange(n_patients) * 7.0, (n_trials, 1))  # a patient every 7 days
    >>> simulation = simulate_tite_boin_design(rng.random((n_trials, n_patients)),
    ...                                        rng.uniform(1, 28, (n_trials, n_patients)), arrivals,
    ...                                        [0.05, 0.12, 0.30, 0.45, 0.60],
    ...                                        boundaries=boin_boundaries(0.3, max_patients=100), window_days=28,
    ...                                        cohort_size=3, n_cohorts=10)
    >>> int(simulation.summary().selection_probability.argmax())
    2
    """
    cohort_size = check_positive_int(cohort_size, "cohort_size")
    n_cohorts = check_positive_int(n_cohorts, "n_cohorts")
    planned = cohort_size * n_cohorts
    uniforms = check_uniforms(uniforms, planned, "uniforms")
    if isinstance(window_days, bool) or int(window_days) != window_days or window_days < 1:
        raise ValueError(f"window_days must be a whole number of days >= 1 (got {window_days})")
    window = int(window_days)
    # every column: one after the sample size times the decision that stops for it
    onset, arrival = check_patient_days(onset_days, arrival_days, uniforms.shape[0], uniforms.shape[1], window)
    p_true = check_probabilities(p_true, "p_true")
    if not 0 <= max_pending_fraction < 1:
        raise ValueError(f"max_pending_fraction must be in [0, 1) (got {max_pending_fraction})")
    if boundaries.max_patients < planned:
        raise ValueError(f"boundaries must cover cohort_size * n_cohorts = {planned} patients "
                         f"(they cover {boundaries.max_patients})")
    start_level = check_level(start_level, p_true.size, "start_level")
    min_patients = check_min_patients(min_patients_at_selection)

    trials = _Trials(uniforms, onset, arrival, p_true, boundaries, window, max_pending_fraction, planned)
    return trials.run(cohort_size, n_cohorts, start_level, min_patients)


class _Trials:
    """Patient-level state of many trials of the design, and the design's rule for many rows at once."""

    def __init__(self, uniforms, onset, arrival, p_true, boundaries: BoinBoundaries, window: int,
                 max_pending_fraction: float, planned: int) -> None:
        n_trials = uniforms.shape[0]
        self.uniforms, self.onset, self.arrival, self.p_true = uniforms, onset, arrival, p_true
        self.slots = uniforms.shape[1]
        self.window = window
        self.max_pending_fraction = max_pending_fraction
        self.target = boundaries.target
        self.lambda_escalate, self.lambda_deescalate = boundaries.lambda_escalate, boundaries.lambda_deescalate
        # the boundary counts indexed by n = 0..max_patients (n = 0 never acts)
        self.escalate_at_most = np.array((-1, *boundaries.escalate_at_most))
        self.deescalate_at_least = np.array((1, *boundaries.deescalate_at_least))
        self.eliminate_at_least = np.array((1, *boundaries.eliminate_at_least))
        self.n_levels = p_true.size
        self.level = np.full((n_trials, planned), -1, dtype=np.int64)
        self.day = np.full((n_trials, planned), np.nan)
        self.dlt = np.zeros((n_trials, planned), dtype=bool)
        self.clock = np.zeros(n_trials)
        self.decisions = np.zeros(n_trials, dtype=np.int64)
        self.needs_engine = np.zeros(n_trials, dtype=bool)

    # ---- the timeline ------------------------------------------------------------------------

    def run(self, cohort_size: int, n_cohorts: int, start_level: int, min_patients: int) -> TiteBoinDesignSimulation:
        n_trials = self.level.shape[0]
        stopped = np.zeros(n_trials, dtype=bool)  # by the published rule's elimination of the lowest level
        running = np.ones(n_trials, dtype=bool)
        all_rows = np.arange(n_trials)
        self.decisions += 1  # the first decision: the starting level
        self.dose(all_rows, 0, cohort_size, np.full(n_trials, start_level, dtype=np.int64))
        for cohort in range(1, n_cohorts + 1):
            enrolled = cohort * cohort_size
            waiting = np.flatnonzero(running)
            for _ in range(_MAX_SUSPENSIONS + 1):
                if waiting.size == 0:
                    break
                decision, hold, too_many = self.decide(waiting, enrolled)
                self.decisions[waiting] += 1
                self.needs_engine[waiting[too_many]] = True
                running[waiting[too_many]] = False
                waiting, decision, hold = waiting[~too_many], decision[~too_many], hold[~too_many]
                if cohort == n_cohorts:  # the sample size is reached: stop, whatever the rule says
                    stopped[waiting[decision == _STOP]] = True
                    running[waiting] = False
                    break
                stop = decision == _STOP
                stopped[waiting[stop]] = True
                running[waiting[stop]] = False
                suspend = decision == _SUSPEND
                dose = ~stop & ~suspend
                if dose.any():
                    self.dose(waiting[dose], enrolled, cohort_size, decision[dose])
                waiting = waiting[suspend]
                self.clock[waiting] += hold[suspend]
            else:  # never reached (one suspension suffices); the engine decides these trials
                self.needs_engine[waiting] = True
                running[waiting] = False
            if not running.any():
                break
        return self.results(stopped, min_patients)

    def dose(self, rows: np.ndarray, first: int, cohort_size: int, level: np.ndarray) -> None:
        """Dose a cohort at ``level``, each patient on the later of the clock and its arrival; then move the
        clock to the next patient's arrival (or, when none is left, to the end of the last window)."""
        clock = self.clock[rows]
        for slot in range(first, first + cohort_size):
            clock = np.maximum(clock, self.arrival[rows, slot])
            self.day[rows, slot] = clock
            self.level[rows, slot] = level
            self.dlt[rows, slot] = self.uniforms[rows, slot] < self.p_true[level]
        following = first + cohort_size
        if following < self.slots:
            self.clock[rows] = np.maximum(clock, self.arrival[rows, following])
        else:
            self.clock[rows] = self.day[rows, following - 1] + self.window

    def results(self, stopped: np.ndarray, min_patients: int) -> TiteBoinDesignSimulation:
        n_trials, planned = self.level.shape
        enrolled = self.level >= 0
        n_patients = _counts(self.level, enrolled, self.n_levels)
        n_dlt = _counts(self.level, self.dlt, self.n_levels)
        last = enrolled.sum(axis=1) - 1
        duration = self.day[np.arange(n_trials), np.maximum(last, 0)] + self.window
        # the final analysis, on complete data, selects; a stop for elimination it does not confirm (the sample
        # size not reached, the lowest level no longer eliminated) is kept with the stop's selection: none, since
        # select.mtd eliminates as the rule does
        full = last + 1 >= planned
        lowest_eliminated = n_dlt[:, 0] >= self.eliminate_at_least[n_patients[:, 0]]
        changed = stopped & ~full & ~lowest_eliminated
        selected = np.full(n_trials, -1, dtype=np.int64)
        rows = np.flatnonzero(~changed)
        selected[rows] = self.select(n_patients[rows], n_dlt[rows], min_patients)
        patient_dose_day = np.where(enrolled, self.day, np.nan)
        arrays = (selected, n_patients, n_dlt, stopped, self.level, patient_dose_day, duration,
                  self.decisions + 1, changed, self.needs_engine)  # + the final analysis
        for array in arrays:
            array.setflags(write=False)
        return TiteBoinDesignSimulation(*arrays)

    def select(self, n_patients: np.ndarray, n_dlt: np.ndarray, min_patients: int) -> np.ndarray:
        """BOIN's ``select.mtd`` on complete data among levels given to at least ``min_patients`` patients
        (as ``decide``'s final selection: the levels given to fewer masked when its choice is one)."""
        selected = select_mtd_rows(n_patients, n_dlt, self.target, self.eliminate_at_least)
        eligible = n_patients >= min_patients
        rows = np.flatnonzero((selected >= 0) & ~eligible[np.arange(selected.size), np.maximum(selected, 0)])
        if rows.size:
            n, y = n_patients[rows], n_dlt[rows]
            keep = eligible[rows] & ~np.logical_or.accumulate(y >= self.eliminate_at_least[n], axis=1)
            selected[rows] = select_mtd_rows(np.where(keep, n, 0), np.where(keep, y, 0), self.target,
                                             self.eliminate_at_least)
        return selected

    # ---- the decision -----------------------------------------------------------------------

    def decide(self, rows: np.ndarray, enrolled: int):
        """:class:`~lupusbayes.decisions.rules.TiteBoinRule` for ``rows`` (``enrolled`` patients each) at their
        clock: the decision code, the hold of a suspension, and the rows the safeguard cannot compare."""
        window = self.window
        level = self.level[rows, :enrolled]
        followed = self.clock[rows, None] - self.day[rows, :enrolled]
        safety_days = np.floor(followed + _EPSILON)
        window_over = followed + _EPSILON >= window
        seen = self.dlt[rows, :enrolled] & (window_over | (followed + _EPSILON >= self.onset[rows, :enrolled]))
        complete = seen | window_over
        fraction = safety_days / window
        current = level[:, -1]
        at_current = level == current[:, None]
        decision = self.published(level, complete, seen, fraction, at_current, current)

        # the safeguard: the lowest of the published decisions without any subset of the DLTs inside the window
        in_window = seen & ~window_over
        n_in_window = in_window.sum(axis=1)
        too_many = n_in_window > MAX_SAFEGUARD_DLTS_IN_WINDOW
        compared = np.flatnonzero((n_in_window > 0) & (decision != _STOP) & ~too_many)
        if compared.size:
            order = np.argsort(~in_window[compared], axis=1, kind="stable")  # each row's DLTs in the window first
            most = int(n_in_window[compared].max())
            which = order[:, :most]
            local = np.arange(compared.size)
            for subset in range(1, 1 << most):
                members = [bit for bit in range(most) if subset >> bit & 1]
                take = np.flatnonzero(n_in_window[compared] > members[-1])
                if take.size == 0:
                    continue
                sub = compared[take]
                reverted = np.zeros((take.size, enrolled), dtype=bool)
                for bit in members:
                    reverted[local[: take.size], which[take, bit]] = True
                other = self.published(level[sub], complete[sub] & ~reverted, seen[sub] & ~reverted,
                                       fraction[sub], at_current[sub], current[sub])
                lower = (other != _STOP) & (other < decision[sub])
                decision[sub[lower]] = other[lower]

        # a suspension holds until the current level's patients inside the window have completed it
        inside = at_current & (safety_days < window)
        hold = np.maximum(1, np.where(inside, window - safety_days, 0).max(axis=1))
        return decision, hold, too_many

    def published(self, level, complete, seen, fraction, at_current, current) -> np.ndarray:
        """:func:`~lupusbayes.decisions.tite_boin.tite_boin_next_dose` (imputation, no earlier elimination) for
        each row: a level, ``_SUSPEND`` or ``_STOP``."""
        n_rows, n_levels = level.shape[0], self.n_levels
        index = np.arange(n_rows)
        m = _counts(level, complete, n_levels)
        y = _counts(level, seen, n_levels)
        eliminated = np.logical_or.accumulate(y >= self.eliminate_at_least[m], axis=1)
        pending_here = at_current & ~complete
        c = pending_here.sum(axis=1)
        total_followup = _exact_sum(np.where(pending_here, fraction, 0.0))
        m_d, y_d = m[index, current], y[index, current]
        n = m_d + c
        top = current == n_levels - 1
        next_eliminated = eliminated[index, np.minimum(current + 1, n_levels - 1)]

        # no patient pending at the current level: BOIN (its elimination already applied)
        escalate = (y_d <= self.escalate_at_most[m_d]) & ~top
        boin = np.where(escalate, np.where(next_eliminated, current, current + 1),
                        np.where((y_d >= self.deescalate_at_least[m_d]) & (current > 0), current - 1, current))
        # otherwise the imputed rate, with the coherence rules
        effective_n, effective_dlt = tite_boin_effective_counts(self.target, m_d, y_d, c, total_followup)
        with np.errstate(divide="ignore", invalid="ignore"):
            rate = effective_dlt / effective_n
        observed = y_d / n
        escalate_signal = rate <= self.lambda_escalate
        deescalate_signal = ~escalate_signal & (rate >= self.lambda_deescalate)
        tite = np.where(
            escalate_signal,
            np.where((observed < self.target) & ~top & ~next_eliminated, current + 1, current),
            np.where(deescalate_signal & (observed > self.target), np.where(current > 0, current - 1, _SUSPEND),
                     current),
        )
        decision = np.where(c == 0, boin, tite)
        suspend = (c / n > self.max_pending_fraction) & (y_d < self.deescalate_at_least[n])
        decision = np.where(suspend, _SUSPEND, decision)
        first_eliminated = np.where(eliminated.any(axis=1), np.argmax(eliminated, axis=1), n_levels)
        decision = np.where(eliminated[index, current], first_eliminated - 1, decision)
        return np.where(eliminated[:, 0], _STOP, decision).astype(np.int64)


def _counts(level: np.ndarray, include: np.ndarray, n_levels: int) -> np.ndarray:
    """Per row, the included patients at each level: shape (n_rows, n_levels)."""
    return np.stack([((level == each) & include).sum(axis=1) for each in range(n_levels)], axis=1)


def _exact_sum(values: np.ndarray) -> np.ndarray:
    """The correctly rounded sum of each row, as :func:`math.fsum` gives it (the decision sums the follow-up
    fractions with it): Knuth's error-free two-sum; the rounding errors of a few fractions of the window sum
    exactly, so the last addition rounds the exact total once."""
    total = np.zeros(values.shape[0])
    error = np.zeros(values.shape[0])
    for column in values.T:
        summed = total + column
        part = summed - total
        error += (total - (summed - part)) + (column - part)
        total = summed
    return total + error
