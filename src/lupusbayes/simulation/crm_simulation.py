"""Fast, vectorised simulators of the CRM and the TITE-CRM: many trials at once.

Each simulator runs all trials together, one cohort at a time, with NumPy arrays over trials
(no Python loop over trials). The rules are those of :mod:`lupusbayes.decisions.crm`, replayed
without building a trial state:

* :func:`simulate_crm` follows dfcrm's ``crmsim`` (Cheung 2011): after each cohort,
  :func:`~lupusbayes.decisions.crm.crm_next_dose`; at the end,
  :func:`~lupusbayes.decisions.crm.crm_select_mtd`;
* :func:`simulate_tite_crm` follows dfcrm's ``titesim`` (Cheung & Chappell 2000): patients
  arrive over time and each cohort's level is decided on the day its first patient arrives,
  from every earlier patient's data on that day (complete, DLT observed, or pending with its
  TITE weight).

Both compute their posteriors with :func:`~lupusbayes.decisions.crm.crm_posterior_batch`, the
function behind the scalar decisions, for all running trials in one call. With complete data
the posterior depends on the patients and DLTs per level only, so :func:`simulate_crm` (and
the final selection of both) computes it once per distinct state.

Common random numbers, as in :func:`~lupusbayes.simulation.rule_based.simulate_boin`: patient
``j`` of trial ``t`` has a DLT at level ``d`` exactly when ``uniforms[t, j] < p_true[d]``. Levels
are 0-based; ``-1`` stands for no level (none selected, or a patient never enrolled).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from lupusbayes.decisions.crm import CrmModel, closest_level_to_target, crm_posterior_batch, tite_weights
from lupusbayes.decisions.level_counts import check_level, check_min_patients, check_positive_int
from lupusbayes.simulation.rule_based import (
    RuleBasedSimulation,
    TimeToEventSimulation,
    check_patient_days,
    check_uniforms,
)

__all__ = ["TiteCrmSimulation", "simulate_crm", "simulate_tite_crm"]


#: The results of :func:`simulate_tite_crm` (:class:`~lupusbayes.simulation.rule_based.TimeToEventSimulation`).
TiteCrmSimulation = TimeToEventSimulation


def simulate_crm(
    uniforms: np.ndarray,
    p_true: Sequence[float],
    *,
    model: CrmModel,
    cohort_size: int,
    n_cohorts: int,
    start_level: int = 0,
    no_skipping: bool = True,
    coherent_escalation: bool = False,
    stop_probability: float | None = None,
    min_patients_at_selection: int = 0,
) -> RuleBasedSimulation:
    """Simulate many CRM trials at once (dfcrm ``crmsim``, one-stage design starting at ``start_level``).

    After each cohort but the last, every running trial takes
    :func:`~lupusbayes.decisions.crm.crm_next_dose` on its data so far (``last_cohort_size`` is
    the cohort size): it stops (no level selected, ``stopped_early``) or treats the next cohort
    at the level chosen. After the last cohort, the trial selects with
    :func:`~lupusbayes.decisions.crm.crm_select_mtd`, which also selects nothing when the
    stopping rule holds on the final data (then ``stopped_early`` stays False).

    Parameters
    ----------
    uniforms : numpy.ndarray, shape (n_trials, n_columns)
        Latent U(0, 1) per patient, with ``n_columns >= cohort_size * n_cohorts`` (extra columns
        are not used).
    p_true : sequence of float
        True DLT probability at each level; as many levels as ``model.skeleton``.
    model : CrmModel
    cohort_size, n_cohorts : int
    start_level : int, default 0
        0-based level of the first cohort.
    no_skipping, coherent_escalation, stop_probability :
        As in :func:`~lupusbayes.decisions.crm.crm_next_dose` (dfcrm's ``restrict=TRUE`` is
        ``no_skipping=True, coherent_escalation=True``).
    min_patients_at_selection : int, default 0
        As in :func:`~lupusbayes.decisions.crm.crm_select_mtd` (0: dfcrm, any level).

    Returns
    -------
    RuleBasedSimulation

    Examples
    --------
    >>> from lupusbayes.decisions.crm import CrmModel
    >>> model = CrmModel([0.10, 0.25, 0.40], target=0.25)
    >>> rng = np.random.default_rng(2)
    >>> simulation = simulate_crm(rng.random((2000, 30)), [0.05, 0.25, 0.60], model=model,
    ...                           cohort_size=3, n_cohorts=10)
    >>> int(simulation.summary().selection_probability.argmax())  # the second level, p = 0.25
    1
    """
    cohort_size = check_positive_int(cohort_size, "cohort_size")
    n_cohorts = check_positive_int(n_cohorts, "n_cohorts")
    planned = cohort_size * n_cohorts
    uniforms = check_uniforms(uniforms, planned)
    p_true = _check_p_true(p_true, model)
    start_level = check_level(start_level, model.n_levels, "start_level")
    min_patients_at_selection = check_min_patients(min_patients_at_selection)
    _check_stop_probability(stop_probability)

    n_trials, n_levels = uniforms.shape[0], model.n_levels
    level = np.full(n_trials, start_level)
    n_patients = np.zeros((n_trials, n_levels), dtype=np.int64)
    n_dlt = np.zeros((n_trials, n_levels), dtype=np.int64)
    running = np.ones(n_trials, dtype=bool)
    stopped_early = np.zeros(n_trials, dtype=bool)
    selected_level = np.full(n_trials, -1, dtype=np.int64)
    patient_level = np.full((n_trials, planned), -1, dtype=np.int64)

    for cohort in range(n_cohorts):
        trials = np.flatnonzero(running)
        if trials.size == 0:
            break
        at = level[trials]
        columns = slice(cohort * cohort_size, (cohort + 1) * cohort_size)
        cohort_dlt = (uniforms[trials, columns] < p_true[at, None]).sum(axis=1)
        n_patients[trials, at] += cohort_size
        n_dlt[trials, at] += cohort_dlt
        patient_level[trials, columns] = at[:, None]

        estimates, too_toxic = _estimates_by_state(model, n_patients[trials], n_dlt[trials], stop_probability)
        if cohort == n_cohorts - 1:
            eligible = n_patients[trials] >= min_patients_at_selection
            chosen = closest_level_to_target(estimates, model.target, eligible=eligible)
            selected_level[trials] = np.where(too_toxic, -1, chosen)
            break
        next_level = closest_level_to_target(estimates, model.target)
        if no_skipping:
            next_level = np.minimum(next_level, at + 1)
        if coherent_escalation:
            toxic_cohort = cohort_dlt / cohort_size >= model.target
            next_level = np.where(toxic_cohort, np.minimum(next_level, at), next_level)
        level[trials] = next_level
        stopped_early[trials[too_toxic]] = True
        running[trials[too_toxic]] = False

    return RuleBasedSimulation(*_read_only(selected_level, n_patients, n_dlt, stopped_early, patient_level))


def simulate_tite_crm(
    uniforms: np.ndarray,
    onset_days: np.ndarray,
    arrival_days: np.ndarray,
    p_true: Sequence[float],
    *,
    model: CrmModel,
    window_days: float,
    cohort_size: int,
    n_cohorts: int,
    weights: Literal["linear", "adaptive"] = "linear",
    start_level: int = 0,
    no_skipping: bool = True,
    stop_probability: float | None = None,
    min_patients_at_selection: int = 0,
) -> TiteCrmSimulation:
    """Simulate many TITE-CRM trials at once (Cheung & Chappell 2000; dfcrm ``titesim``).

    Patient ``j`` of trial ``t`` arrives and is dosed on day ``arrival_days[t, j]``; it has a
    DLT exactly when ``uniforms[t, j] < p_true[level]``, and then the DLT occurs
    ``onset_days[t, j]`` days after dosing (0 < onset <= ``window_days``).

    The first cohort gets ``start_level``. Each later cohort's level is decided on the day
    ``D`` its first patient arrives, by :func:`~lupusbayes.decisions.crm.crm_next_dose` on every
    earlier patient's data on day ``D`` (patients of the same cohort are dosed at that level as
    they arrive, even on later days):

    * a DLT is observed if it occurred by day ``D`` (``arrival + onset <= D``, as ``titesim``'s
      ``utox <= next.arrival``); such a patient counts as a DLT with weight 1;
    * any other patient counts as no DLT, with follow-up ``min(floor(D - arrival), window_days)``
      (whole days, as a data cut-off counts them and ``lupusbayes decide`` reads them) and
      its :func:`~lupusbayes.decisions.crm.tite_weights` (1 once the window is complete, 0 on
      the day of dosing); for the adaptive weights the follow-up of a patient with an
      observed DLT is its DLT day, the onset in whole days, ``floor(onset)`` (as a state's
      ``dlt_day`` records it and ``lupusbayes decide`` reads it).

    Nobody waits for a window to end before the next cohort is dosed: pending patients inform
    the decision through their weights, which is what makes the design time-to-event
    (Cheung & Chappell 2000). Only the final selection,
    :func:`~lupusbayes.decisions.crm.crm_select_mtd`, waits until the last patient has
    completed the window, and uses complete data. The stopping rule is checked at every
    decision (``stopped_early``) and on the final data.

    Parameters
    ----------
    uniforms, onset_days, arrival_days : numpy.ndarray, shape (n_trials, n_columns)
        Latent U(0, 1), DLT onset (days after dosing) and arrival day per patient, with
        ``n_columns >= cohort_size * n_cohorts``. Arrival days must not decrease along a row.
    p_true : sequence of float
        True DLT probability at each level.
    model : CrmModel
    window_days : float
        Length of the DLT window.
    cohort_size, n_cohorts : int
        ``cohort_size=1`` decides for every patient, as dfcrm's ``titesim``.
    weights : {"linear", "adaptive"}, default "linear"
    start_level : int, default 0
    no_skipping, stop_probability :
        As in :func:`~lupusbayes.decisions.crm.crm_next_dose` (dfcrm ``titesim``'s
        ``restrict=TRUE`` is ``no_skipping=True``; it has no coherence rule).
    min_patients_at_selection : int, default 0
        As in :func:`~lupusbayes.decisions.crm.crm_select_mtd`.

    Returns
    -------
    TiteCrmSimulation

    Examples
    --------
    >>> from lupusbayes.decisions.crm import CrmModel
    >>> model = CrmModel([0.10, 0.25, 0.40], target=0.25)
    >>> rng = np.random.default_rng(3)
    >>> n_trials, n_patients = 500, 18
    >>> gaps = rng.exponential(10.0, (n_trials, n_patients))  # about one patient every 10 days
    >>> arrivals = np.cumsum(gaps, axis=1) - gaps[:, :1]  # the first patient on day 0
    >>> simulation = simulate_tite_crm(rng.random((n_trials, n_patients)), rng.uniform(1, 28, (n_trials, n_patients)),
    ...                                arrivals, [0.05, 0.25, 0.60], model=model, window_days=28,
    ...                                cohort_size=1, n_cohorts=n_patients)
    >>> bool(np.all(simulation.duration_days >= 28))
    True
    """
    cohort_size = check_positive_int(cohort_size, "cohort_size")
    n_cohorts = check_positive_int(n_cohorts, "n_cohorts")
    planned = cohort_size * n_cohorts
    uniforms = check_uniforms(uniforms, planned)
    p_true = _check_p_true(p_true, model)
    start_level = check_level(start_level, model.n_levels, "start_level")
    min_patients_at_selection = check_min_patients(min_patients_at_selection)
    _check_stop_probability(stop_probability)
    window_days = float(window_days)
    if not (np.isfinite(window_days) and window_days > 0):
        raise ValueError(f"window_days must be positive and finite (got {window_days})")
    onset_days, arrival_days = check_patient_days(onset_days, arrival_days, uniforms.shape[0], planned, window_days)
    if weights not in ("linear", "adaptive"):
        raise ValueError(f"weights must be 'linear' or 'adaptive' (got {weights!r})")

    n_trials, n_levels = uniforms.shape[0], model.n_levels
    uniforms = uniforms[:, :planned]
    level = np.full(n_trials, start_level)
    running = np.ones(n_trials, dtype=bool)
    stopped_early = np.zeros(n_trials, dtype=bool)
    patient_level = np.full((n_trials, planned), -1, dtype=np.int64)

    for cohort in range(n_cohorts):
        first = cohort * cohort_size
        if cohort > 0:
            trials = np.flatnonzero(running)
            if trials.size == 0:
                break
            levels_so_far = patient_level[trials, :first]
            decision_day = arrival_days[trials, first]
            dlt = uniforms[trials, :first] < p_true[levels_so_far]
            observed = dlt & (arrival_days[trials, :first] + onset_days[trials, :first] <= decision_day[:, None])
            whole_days = np.floor(decision_day[:, None] - arrival_days[trials, :first] + 1e-9)  # as a cut-off counts them
            dlt_day = np.floor(onset_days[trials, :first] + 1e-9)  # whole days too, as a state's dlt_day
            follow_up = np.where(observed, dlt_day, np.minimum(whole_days, window_days))
            weight = tite_weights(follow_up, window_days, observed, scheme=weights)
            posterior = _tite_posterior(model, levels_so_far, observed, weight)
            too_toxic = _too_toxic(posterior, stop_probability)
            next_level = closest_level_to_target(posterior.dlt_probability_plug_in, model.target)
            if no_skipping:
                next_level = np.minimum(next_level, levels_so_far[:, -1] + 1)
            level[trials] = next_level
            stopped_early[trials[too_toxic]] = True
            running[trials[too_toxic]] = False
        patient_level[running, first:first + cohort_size] = level[running, None]

    enrolled = patient_level >= 0
    dlt = enrolled & (uniforms < p_true[np.maximum(patient_level, 0)])
    n_patients = _counts_by_level(patient_level, enrolled, n_levels)
    n_dlt = _counts_by_level(patient_level, dlt, n_levels)
    selected_level = np.full(n_trials, -1, dtype=np.int64)
    finished = np.flatnonzero(running)
    if finished.size:
        estimates, too_toxic = _estimates_by_state(model, n_patients[finished], n_dlt[finished], stop_probability)
        eligible = n_patients[finished] >= min_patients_at_selection
        chosen = closest_level_to_target(estimates, model.target, eligible=eligible)
        selected_level[finished] = np.where(too_toxic, -1, chosen)
    patient_dose_day = np.where(enrolled, arrival_days[:, :planned], np.nan)
    duration_days = np.nanmax(patient_dose_day, axis=1) + window_days
    return TiteCrmSimulation(*_read_only(selected_level, n_patients, n_dlt, stopped_early, patient_level,
                                         patient_dose_day, duration_days))


# ---- helpers --------------------------------------------------------------------------------


def _estimates_by_state(model: CrmModel, n_patients: np.ndarray, n_dlt: np.ndarray, stop_probability: float | None):
    """Plug-in estimates and the stopping rule per row of complete data, one posterior per distinct state.

    With complete data the posterior is a function of the patients and DLTs per level, and many
    trials share a state (all of them before the first DLT), so the quadrature runs once per
    distinct state; each row's numbers are the same as if it were computed alone.
    """
    states, state_of_row = np.unique(np.concatenate([n_patients, n_dlt], axis=1), axis=0, return_inverse=True)
    posterior = crm_posterior_batch(model, states[:, : model.n_levels], states[:, model.n_levels:])
    state_of_row = state_of_row.reshape(-1)
    return posterior.dlt_probability_plug_in[state_of_row], _too_toxic(posterior, stop_probability)[state_of_row]


def _tite_posterior(model: CrmModel, levels: np.ndarray, dlt: np.ndarray, weight: np.ndarray):
    """The posterior of each row (trial) of patients, as :func:`~lupusbayes.decisions.crm.crm_posterior` splits them:
    complete patients (a DLT, or weight 1) as counts per level, pending ones (0 < weight < 1) one by one."""
    complete = dlt | (weight >= 1)
    n_levels = model.n_levels
    pending_row, pending_column = np.nonzero(~complete & (weight > 0))  # row-major: sorted by row
    return crm_posterior_batch(
        model,
        _counts_by_level(levels, complete, n_levels),
        _counts_by_level(levels, dlt, n_levels),
        pending_row=pending_row,
        pending_level=levels[pending_row, pending_column],
        pending_weight=weight[pending_row, pending_column],
    )


def _counts_by_level(levels: np.ndarray, include: np.ndarray, n_levels: int) -> np.ndarray:
    """Per row, how many included patients are at each level: shape (n_rows, n_levels)."""
    return np.stack([((levels == level) & include).sum(axis=1) for level in range(n_levels)], axis=1)


def _too_toxic(posterior, stop_probability: float | None) -> np.ndarray:
    """Rows where P(p_1 > target | data) >= ``stop_probability`` (none when it is None)."""
    if stop_probability is None:
        return np.zeros(posterior.beta_mean.shape, dtype=bool)
    return posterior.probability_above_target(0) >= stop_probability


def _read_only(*arrays: np.ndarray) -> tuple[np.ndarray, ...]:
    for array in arrays:
        array.setflags(write=False)
    return arrays


def _check_p_true(p_true, model: CrmModel) -> np.ndarray:
    p_true = np.asarray(p_true, dtype=float)
    if p_true.shape != (model.n_levels,) or np.any((p_true < 0) | (p_true > 1)):
        raise ValueError(f"p_true must hold {model.n_levels} probabilities between 0 and 1, one per level of the model")
    return p_true


def _check_stop_probability(stop_probability) -> None:
    if stop_probability is not None and not 0 < stop_probability < 1:
        raise ValueError(f"stop_probability must be strictly between 0 and 1 (got {stop_probability})")
