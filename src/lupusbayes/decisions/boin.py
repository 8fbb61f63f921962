"""BOIN, the Bayesian optimal interval design, for single-agent dose escalation.

The rules follow the R package BOIN 2.7.2 (Liu & Yuan 2015, JRSS-C 64:507-523; Yan, Pan,
Zhang, Liu & Yuan 2020, J Stat Softw 94(13)), function by function:

* :func:`boin_boundaries` builds the escalation, de-escalation and elimination counts for each
  number of patients (``get.boundary``);
* :func:`boin_next_dose` chooses the level for the next cohort, in the order that ``get.oc``
  applies the rules inside its simulation loop (BOIN 2.7.2 exports no single-agent next-dose
  function);
* :func:`boin_select_mtd` picks the dose at the end of a trial (``select.mtd``).

The fast simulator of many BOIN trials at once (``get.oc``),
:func:`~lupusbayes.simulation.rule_based.simulate_boin`, lives in the simulation layer, in
:mod:`lupusbayes.simulation.rule_based`; it replays these rules.

Conventions
-----------
* Dose levels are **0-based indices** in the API (``current_level_index=0`` is the lowest level and
  ``n_patients_by_level[0]`` its count). Text meant for people (reason sentences and the
  ``"NA"`` of decision tables) numbers levels **from 1**, as the R packages do.
* Options of ``get.oc`` not implemented here: ``n.earlystop`` (its default of 100 switches it
  off for trials of up to 100 patients), ``extrasafe``/``offset``, ``titration`` and
  ``boundMTD``.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy import stats

from lupusbayes.decisions.level_counts import (
    check_eliminated,
    check_level,
    check_level_counts,
    check_positive_int,
    plural,
)

__all__ = [
    "BoinBoundaries",
    "BoinDecision",
    "MtdSelection",
    "boin_boundaries",
    "boin_decision_table",
    "boin_next_dose",
    "boin_select_mtd",
    "check_level",
    "check_positive_int",
    "pava",
]

Signal = Literal["escalate", "stay", "deescalate"]
Action = Literal["escalate", "stay", "deescalate", "stop"]

#: BOIN 2.7.2 treats lambda_d * n as the integer k when it is this close, and then
#: de-escalates only at k + 1 DLTs (an observed rate equal to lambda_d stays).
INTEGER_TOLERANCE = 1e-12
#: Elimination needs at least this many patients at a level (BOIN get.boundary, select.mtd).
MIN_PATIENTS_TO_ELIMINATE = 3
#: select.mtd adds i * 1e-10 to the i-th admissible isotonic estimate to break ties.
TIE_BREAK_STEP = 1e-10


# ---- boundaries -----------------------------------------------------------------------------


@dataclass(frozen=True)
class BoinBoundaries:
    """BOIN decision counts for n = 1, ..., ``max_patients`` patients at a level.

    Build it with :func:`boin_boundaries`. The three count tuples are indexed by ``n - 1``:
    ``escalate_at_most[n - 1]`` is the largest number of DLTs in ``n`` patients that still
    escalates, and so on. Tuples keep the object immutable and comparable.

    Attributes
    ----------
    target : float
        Target DLT probability (phi).
    p_saf, p_tox : float
        Highest DLT probability deemed sub-therapeutic and lowest deemed overly toxic.
    cutoff_eliminate : float
        A level is eliminated when Pr(p > target | data) exceeds this (Beta(1, 1) prior).
    lambda_escalate, lambda_deescalate : float
        Interval boundaries on the observed DLT rate (lambda_e and lambda_d).
    escalate_at_most : tuple of int
        Escalate if the number of DLTs is <= this.
    deescalate_at_least : tuple of int
        De-escalate if the number of DLTs is >= this (capped at the elimination count).
    eliminate_at_least : tuple of int
        Eliminate the level and all higher levels if the number of DLTs is >= this. Where
        ``can_eliminate`` is False the entry is ``n + 1``, a count that can never be reached.
    can_eliminate : tuple of bool
        False for n < 3 and where no number of DLTs is enough (the R table's ``NA``).
    """

    target: float
    p_saf: float
    p_tox: float
    cutoff_eliminate: float
    lambda_escalate: float
    lambda_deescalate: float
    escalate_at_most: tuple[int, ...]
    deescalate_at_least: tuple[int, ...]
    eliminate_at_least: tuple[int, ...]
    can_eliminate: tuple[bool, ...]

    @property
    def max_patients(self) -> int:
        """The largest number of patients at one level that the table covers."""
        return len(self.escalate_at_most)

    def decision_for(self, n_patients: int, n_dlt: int) -> Signal:
        """The BOIN signal for ``n_dlt`` DLTs in ``n_patients`` patients at one level.

        This is the interval rule alone; :func:`boin_next_dose` also accounts for the lowest
        and highest level and for eliminated levels.

        Examples
        --------
        >>> boundaries = boin_boundaries(0.3, max_patients=12)
        >>> boundaries.decision_for(3, 0), boundaries.decision_for(3, 1), boundaries.decision_for(3, 2)
        ('escalate', 'stay', 'deescalate')
        """
        self._check_count(n_patients, n_dlt)
        if n_dlt <= self.escalate_at_most[n_patients - 1]:
            return "escalate"
        if n_dlt >= self.deescalate_at_least[n_patients - 1]:
            return "deescalate"
        return "stay"

    def eliminates(self, n_patients: int, n_dlt: int) -> bool:
        """True if ``n_dlt`` DLTs in ``n_patients`` patients eliminate the level.

        Examples
        --------
        >>> boundaries = boin_boundaries(0.3, max_patients=12)
        >>> boundaries.eliminates(3, 3), boundaries.eliminates(2, 2)
        (True, False)
        """
        self._check_count(n_patients, n_dlt)
        return n_dlt >= self.eliminate_at_least[n_patients - 1]

    def table(self) -> tuple[dict[str, int | str], ...]:
        """The decision table for every n the boundaries cover (see :func:`boin_decision_table`)."""
        return boin_decision_table(self)

    def _check_count(self, n_patients: int, n_dlt: int) -> None:
        if not 1 <= n_patients <= self.max_patients:
            raise ValueError(f"n_patients must be between 1 and {self.max_patients} (got {n_patients})")
        if not 0 <= n_dlt <= n_patients:
            raise ValueError(f"n_dlt must be between 0 and n_patients = {n_patients} (got {n_dlt})")


@functools.lru_cache(maxsize=64)  # a pure function of its numbers; simulations ask for the same table per chunk
def boin_boundaries(
    target: float,
    *,
    max_patients: int,
    p_saf: float | None = None,
    p_tox: float | None = None,
    cutoff_eliminate: float = 0.95,
) -> BoinBoundaries:
    """BOIN escalation, de-escalation and elimination counts (Liu & Yuan 2015; BOIN 2.7.2 ``get.boundary``).

    With phi = ``target``, phi1 = ``p_saf`` and phi2 = ``p_tox``::

        lambda_e = log((1 - phi1) / (1 - phi)) / log(phi (1 - phi1) / (phi1 (1 - phi)))
        lambda_d = log((1 - phi) / (1 - phi2)) / log(phi2 (1 - phi) / (phi (1 - phi2)))

    For ``n`` patients at a level: escalate if DLTs <= floor(lambda_e n); de-escalate if
    DLTs >= ceiling(lambda_d n), except that when lambda_d n is within 1e-12 of an integer k
    the count is k + 1 (BOIN 2.7.2); eliminate (n >= 3 only) at the smallest number of DLTs y
    with Pr(p > target | Beta(1 + y, 1 + n - y)) > ``cutoff_eliminate``. The de-escalation count
    is capped at the elimination count, so an eliminated level always de-escalates.

    Parameters
    ----------
    target : float
        Target DLT probability, between 0.05 and 0.6 (BOIN's limits).
    max_patients : int
        Build the table for n = 1, ..., max_patients patients at one level.
    p_saf : float, optional
        Highest sub-therapeutic DLT probability; default ``0.6 * target``. Must be above 0 and
        at most ``0.9 * target``.
    p_tox : float, optional
        Lowest overly toxic DLT probability; default ``1.4 * target``. Must be at least
        ``1.1 * target`` and below 1.
    cutoff_eliminate : float, default 0.95
        Posterior probability above which a level is eliminated; strictly between 0 and 1.

    Returns
    -------
    BoinBoundaries

    Raises
    ------
    ValueError
        For a target outside [0.05, 0.6], p_saf or p_tox too close to the target, or other
        values out of range.

    Examples
    --------
    >>> boundaries = boin_boundaries(0.3, max_patients=6)
    >>> round(boundaries.lambda_escalate, 4), round(boundaries.lambda_deescalate, 4)
    (0.2365, 0.3585)
    >>> boundaries.escalate_at_most, boundaries.deescalate_at_least
    ((0, 0, 0, 0, 1, 1), (1, 1, 2, 2, 2, 3))
    """
    target = float(target)
    if not 0.05 <= target <= 0.6:
        raise ValueError(f"target must be between 0.05 and 0.6, as in BOIN (got {target})")
    p_saf = 0.6 * target if p_saf is None else float(p_saf)
    p_tox = 1.4 * target if p_tox is None else float(p_tox)
    if p_saf <= 0 or target - p_saf < 0.1 * target - 1e-12:  # 1e-12: 0.9 x target written in decimal is allowed
        raise ValueError(f"p_saf must be above 0 and at most 0.9 * target = {0.9 * target:.4g} (got {p_saf})")
    if p_tox >= 1 or p_tox - target < 0.1 * target - 1e-12:
        raise ValueError(f"p_tox must be at least 1.1 * target = {1.1 * target:.4g} and below 1 (got {p_tox})")
    if not 0 < cutoff_eliminate < 1:
        raise ValueError(f"cutoff_eliminate must be strictly between 0 and 1 (got {cutoff_eliminate})")
    max_patients = check_positive_int(max_patients, "max_patients")

    lambda_escalate = math.log((1 - p_saf) / (1 - target)) / math.log(target * (1 - p_saf) / (p_saf * (1 - target)))
    lambda_deescalate = math.log((1 - target) / (1 - p_tox)) / math.log(p_tox * (1 - target) / (target * (1 - p_tox)))

    escalate_at_most, deescalate_at_least, eliminate_at_least, can_eliminate = [], [], [], []
    eliminations = _elimination_counts(max_patients, target, cutoff_eliminate)
    for n in range(1, max_patients + 1):
        deescalate = _deescalation_count(lambda_deescalate * n)
        eliminate = eliminations[n - 1]
        escalate_at_most.append(math.floor(lambda_escalate * n))
        deescalate_at_least.append(deescalate if eliminate is None else min(deescalate, eliminate))
        eliminate_at_least.append(n + 1 if eliminate is None else eliminate)
        can_eliminate.append(eliminate is not None)

    return BoinBoundaries(
        target=target,
        p_saf=p_saf,
        p_tox=p_tox,
        cutoff_eliminate=float(cutoff_eliminate),
        lambda_escalate=lambda_escalate,
        lambda_deescalate=lambda_deescalate,
        escalate_at_most=tuple(escalate_at_most),
        deescalate_at_least=tuple(deescalate_at_least),
        eliminate_at_least=tuple(eliminate_at_least),
        can_eliminate=tuple(can_eliminate),
    )


def boin_decision_table(boundaries: BoinBoundaries, n_max: int | None = None) -> tuple[dict[str, int | str], ...]:
    """Rows of the BOIN decision table for n = 1, ..., ``n_max`` (BOIN 2.7.2 ``full_boundary_tab``).

    Parameters
    ----------
    boundaries : BoinBoundaries
    n_max : int, optional
        Last number of patients to show; default ``boundaries.max_patients``.

    Returns
    -------
    tuple of dict
        One row per n with keys ``n_patients``, ``escalate_if_dlt_at_most``,
        ``deescalate_if_dlt_at_least`` and ``eliminate_if_dlt_at_least``; the last is ``"NA"``
        where no number of DLTs eliminates (always for n < 3), as in the R table.

    Examples
    --------
    >>> for row in boin_decision_table(boin_boundaries(0.3, max_patients=12), 3):
    ...     print(row)
    {'n_patients': 1, 'escalate_if_dlt_at_most': 0, 'deescalate_if_dlt_at_least': 1, 'eliminate_if_dlt_at_least': 'NA'}
    {'n_patients': 2, 'escalate_if_dlt_at_most': 0, 'deescalate_if_dlt_at_least': 1, 'eliminate_if_dlt_at_least': 'NA'}
    {'n_patients': 3, 'escalate_if_dlt_at_most': 0, 'deescalate_if_dlt_at_least': 2, 'eliminate_if_dlt_at_least': 3}
    """
    n_max = boundaries.max_patients if n_max is None else check_positive_int(n_max, "n_max")
    if n_max > boundaries.max_patients:
        raise ValueError(f"n_max must be at most boundaries.max_patients = {boundaries.max_patients} (got {n_max})")
    return tuple(
        {
            "n_patients": n,
            "escalate_if_dlt_at_most": boundaries.escalate_at_most[n - 1],
            "deescalate_if_dlt_at_least": boundaries.deescalate_at_least[n - 1],
            "eliminate_if_dlt_at_least": (
                boundaries.eliminate_at_least[n - 1] if boundaries.can_eliminate[n - 1] else "NA"
            ),
        }
        for n in range(1, n_max + 1)
    )


def _deescalation_count(lambda_times_n: float) -> int:
    """ceiling(lambda_d * n), or k + 1 when lambda_d * n is (within 1e-12) the integer k (BOIN 2.7.2)."""
    nearest = round(lambda_times_n)
    if abs(lambda_times_n - nearest) < INTEGER_TOLERANCE:
        return nearest + 1
    return math.ceil(lambda_times_n)


def _elimination_counts(max_patients: int, target: float, cutoff: float) -> list[int | None]:
    """For n = 1..``max_patients``: the smallest y in 1..n with Pr(p > target | y, n) > cutoff, or None
    (n < 3, or no such y). Pr(p > target | y, n) increases with y, so one vectorised bisection over all
    n finds every count in about log2(max_patients) steps (a table of 10,000 patients in milliseconds)."""
    n = np.arange(1, max_patients + 1)
    low, high = np.ones_like(n), n + 1  # the answer lies in [low, high]; high = n + 1 means none
    while np.any(low < high):
        middle = (low + high) // 2
        searching = low < high
        over = _probability_above_target(np.minimum(middle, n), n, target) > cutoff
        high = np.where(searching & over, middle, high)
        low = np.where(searching & ~over, middle + 1, low)
    return [None if (count < MIN_PATIENTS_TO_ELIMINATE or y > count) else int(y)
            for count, y in zip(n.tolist(), low.tolist(), strict=True)]


def _probability_above_target(n_dlt, n_patients, target: float):
    """Pr(p > target) under the posterior Beta(1 + n_dlt, 1 + n_patients - n_dlt) of a Beta(1, 1) prior."""
    return stats.beta.sf(target, 1 + n_dlt, 1 + n_patients - n_dlt)


# ---- the next dose --------------------------------------------------------------------------


@dataclass(frozen=True)
class BoinDecision:
    """The dose for the next cohort (see :func:`boin_next_dose`).

    Attributes
    ----------
    action : {"escalate", "stay", "deescalate", "stop"}
    next_level_index : int or None
        0-based level for the next cohort; None when the trial stops.
    eliminated : tuple of bool
        Eliminated levels after this decision.
    reason : str
        One sentence with the numbers behind the decision (levels counted from 1).
    """

    action: Action
    next_level_index: int | None
    eliminated: tuple[bool, ...]
    reason: str


def boin_next_dose(
    current_level_index: int,
    n_patients_by_level: Sequence[int],
    n_dlt_by_level: Sequence[int],
    boundaries: BoinBoundaries,
    eliminated_by_level: Sequence[bool] | None = None,
) -> BoinDecision:
    """The level for the next cohort under BOIN (Liu & Yuan 2015; BOIN 2.7.2 ``get.oc``).

    With ``n`` patients and ``y`` DLTs at the current level, the rules run in ``get.oc``'s order:

    1. if ``y`` reaches the elimination count, the current and all higher levels are
       eliminated, and the trial stops (no level selected) if that includes the lowest level;
    2. if ``y <= escalate_at_most`` and a higher level exists, escalate, unless that level is
       eliminated (then stay);
    3. otherwise, if ``y >= deescalate_at_least`` and a lower level exists, de-escalate;
    4. otherwise stay.

    Parameters
    ----------
    current_level_index : int
        0-based level of the cohort just treated; it must have patients.
    n_patients_by_level, n_dlt_by_level : sequence of int
        Cumulative patients and DLTs at each level (0-based).
    boundaries : BoinBoundaries
        From :func:`boin_boundaries`; must cover the patients at the current level.
    eliminated_by_level : sequence of bool, optional
        Levels eliminated earlier in the trial (default: none). Once a level is eliminated so
        is every higher level, and the current level cannot be eliminated.

    Returns
    -------
    BoinDecision

    Examples
    --------
    >>> boundaries = boin_boundaries(0.3, max_patients=30)
    >>> decision = boin_next_dose(1, [3, 3, 0], [0, 2, 0], boundaries)
    >>> decision.action, decision.next_level_index
    ('deescalate', 0)
    >>> decision.reason
    '2 DLTs in 3 patients at level 2 (rate 0.67) >= de-escalation boundary 2 (lambda_d 0.359): de-escalate to level 1.'
    """
    n_patients, n_dlt = check_level_counts(n_patients_by_level, n_dlt_by_level)
    n_levels = n_patients.size
    current_level_index = check_level(current_level_index, n_levels, "current_level_index")
    eliminated = check_eliminated(eliminated_by_level, n_levels)
    if eliminated[current_level_index]:
        raise ValueError(f"current_level {current_level_index} is eliminated; BOIN never returns to an eliminated level")
    n, y = int(n_patients[current_level_index]), int(n_dlt[current_level_index])
    if not 1 <= n <= boundaries.max_patients:
        raise ValueError(
            f"the current level must have between 1 and boundaries.max_patients = {boundaries.max_patients} "
            f"patients (got {n})"
        )

    shown = current_level_index + 1  # levels counted from 1 in sentences
    observed = f"{plural(y, 'DLT')} in {plural(n, 'patient')} at level {shown} (rate {y / n:.2f})"
    escalate_at_most = boundaries.escalate_at_most[n - 1]
    deescalate_at_least = boundaries.deescalate_at_least[n - 1]

    def decide(action: Action, next_level_index: int | None, sentence: str) -> BoinDecision:
        return BoinDecision(action, next_level_index, tuple(map(bool, eliminated)), sentence)

    if boundaries.eliminates(n, y):
        eliminated[current_level_index:] = True
        posterior = float(_probability_above_target(y, n, boundaries.target))
        why = (
            f"{observed} >= elimination boundary {boundaries.eliminate_at_least[n - 1]} "
            f"(Pr(p > {boundaries.target:.2f}) = {posterior:.3f} > {boundaries.cutoff_eliminate})"
        )
        if current_level_index == 0:
            return decide("stop", None, f"{why}: every level is eliminated; stop the trial with no level selected.")
        eliminated_levels = f"level {shown} is eliminated" if shown == n_levels else f"levels {shown}-{n_levels} are eliminated"
        return decide("deescalate", current_level_index - 1, f"{why}: {eliminated_levels}; de-escalate to level {shown - 1}.")

    if y <= escalate_at_most and current_level_index < n_levels - 1:
        why = f"{observed} <= escalation boundary {escalate_at_most} (lambda_e {boundaries.lambda_escalate:.3f})"
        if eliminated[current_level_index + 1]:
            return decide("stay", current_level_index, f"{why}, but level {shown + 1} is eliminated: stay at level {shown}.")
        return decide("escalate", current_level_index + 1, f"{why}: escalate to level {shown + 1}.")
    if y >= deescalate_at_least and current_level_index > 0:
        lambda_d = boundaries.lambda_deescalate
        why = f"{observed} >= de-escalation boundary {deescalate_at_least} (lambda_d {lambda_d:.3f})"
        return decide("deescalate", current_level_index - 1, f"{why}: de-escalate to level {shown - 1}.")
    if y <= escalate_at_most:
        why = f"{observed} <= escalation boundary {escalate_at_most}, but level {shown} is the highest"
    elif y >= deescalate_at_least:
        why = f"{observed} >= de-escalation boundary {deescalate_at_least}, but level {shown} is the lowest"
    else:
        why = (
            f"{observed} is between the boundaries "
            f"(escalate if <= {escalate_at_most}, de-escalate if >= {deescalate_at_least})"
        )
    return decide("stay", current_level_index, f"{why}: stay at level {shown}.")


# ---- selecting the MTD ----------------------------------------------------------------------


@dataclass(frozen=True)
class MtdSelection:
    """The dose selected at the end of a BOIN trial (see :func:`boin_select_mtd`).

    Attributes
    ----------
    selected_level_index : int or None
        0-based selected level; None when no level is selected (select.mtd's code 99).
    isotonic_estimates : tuple of float
        PAVA estimates of the DLT probability at admissible levels (treated and not
        eliminated); ``nan`` elsewhere. Without the tie-break jitter.
    eliminated : tuple of bool
        Levels eliminated by the final data.
    reason : str
        One sentence with the numbers behind the selection (levels counted from 1).
    """

    selected_level_index: int | None
    isotonic_estimates: tuple[float, ...]
    eliminated: tuple[bool, ...]
    reason: str


def boin_select_mtd(
    n_patients_by_level: Sequence[int],
    n_dlt_by_level: Sequence[int],
    *,
    target: float,
    cutoff_eliminate: float = 0.95,
) -> MtdSelection:
    """Select the MTD at the end of a BOIN trial (Liu & Yuan 2015; BOIN 2.7.2 ``select.mtd``).

    1. Scanning from the lowest level, the first level with n >= 3 and
       Pr(p > target | Beta(1 + y, 1 + n - y)) > ``cutoff_eliminate`` is eliminated, with
       every level above it. If the lowest level is eliminated, nothing is selected.
    2. Admissible levels are treated (n > 0) and not eliminated; if there are none, nothing is
       selected.
    3. At each admissible level, phat = (y + 0.05) / (n + 0.1) (posterior mean under
       Beta(0.05, 0.05)) with variance (y + 0.05)(n - y + 0.05) / ((n + 0.1)^2 (n + 1.1)).
    4. The estimates are made non-decreasing by weighted PAVA (weights 1 / variance), then
       i * 1e-10 is added to the i-th admissible estimate (i = 1, 2, ...): among tied levels
       below the target the highest wins, above the target the lowest.
    5. The admissible level whose estimate is closest to the target is selected.

    Parameters
    ----------
    n_patients_by_level, n_dlt_by_level : sequence of int
        Patients and DLTs at each level (0-based).
    target : float
        Target DLT probability, strictly between 0 and 1.
    cutoff_eliminate : float, default 0.95

    Returns
    -------
    MtdSelection

    Examples
    --------
    >>> selection = boin_select_mtd([3, 3, 15, 9, 0], [0, 0, 4, 4, 0], target=0.3)
    >>> selection.selected_level_index  # 0-based: the third level
    2
    >>> [round(estimate, 2) for estimate in selection.isotonic_estimates]
    [0.02, 0.02, 0.27, 0.45, nan]
    """
    n_patients, n_dlt = check_level_counts(n_patients_by_level, n_dlt_by_level)
    if not 0 < target < 1:
        raise ValueError(f"target must be strictly between 0 and 1 (got {target})")
    if not 0 < cutoff_eliminate < 1:
        raise ValueError(f"cutoff_eliminate must be strictly between 0 and 1 (got {cutoff_eliminate})")
    n_levels = n_patients.size
    nan_estimates = (math.nan,) * n_levels

    posterior = _probability_above_target(n_dlt, n_patients, target)
    over = (n_patients >= MIN_PATIENTS_TO_ELIMINATE) & (posterior > cutoff_eliminate)
    eliminated = np.logical_or.accumulate(over)
    eliminated_tuple = tuple(map(bool, eliminated))
    if eliminated[0]:
        posterior = float(_probability_above_target(n_dlt[0], n_patients[0], target))
        return MtdSelection(
            None,
            nan_estimates,
            eliminated_tuple,
            f"Level 1 is eliminated ({plural(int(n_dlt[0]), 'DLT')} in {plural(int(n_patients[0]), 'patient')}, "
            f"Pr(p > {target:.2f}) = {posterior:.3f} > {cutoff_eliminate}): no level selected.",
        )
    admissible = (n_patients > 0) & ~eliminated
    if not admissible.any():
        reason = "No level is both treated and not eliminated: no level selected."
        return MtdSelection(None, nan_estimates, eliminated_tuple, reason)

    levels = np.flatnonzero(admissible)
    y, n = n_dlt[levels], n_patients[levels]
    estimate = (y + 0.05) / (n + 0.1)
    variance = (y + 0.05) * (n - y + 0.05) / ((n + 0.1) ** 2 * (n + 1.1))
    isotonic = pava(estimate, 1 / variance)
    jittered = isotonic + TIE_BREAK_STEP * np.arange(1, levels.size + 1)
    best = int(np.argmin(np.abs(jittered - target)))
    selected = int(levels[best])

    estimates = np.full(n_levels, math.nan)
    estimates[levels] = isotonic
    shown_levels = ", ".join(str(level + 1) for level in levels)
    return MtdSelection(
        selected,
        tuple(map(float, estimates)),
        eliminated_tuple,
        f"Level {selected + 1} has isotonic estimate {isotonic[best]:.2f}, the closest to the target {target:.2f} "
        f"among treated, non-eliminated levels ({shown_levels}): select level {selected + 1}.",
    )


def pava(values: Sequence[float], weights: Sequence[float]) -> np.ndarray:
    """Weighted isotonic (non-decreasing) regression by the pool-adjacent-violators algorithm.

    Adjacent values that decrease are pooled into their weighted mean until the sequence is
    non-decreasing (Robertson, Wright & Dykstra 1988, section 1.2). Used by
    :func:`boin_select_mtd` as BOIN's ``select.mtd`` uses its ``pava``.

    Parameters
    ----------
    values : sequence of float
    weights : sequence of float
        Positive weights, one per value.

    Returns
    -------
    numpy.ndarray
        The fitted non-decreasing values, one per input value.

    Examples
    --------
    >>> pava([0.1, 0.4, 0.2, 0.5], [1, 1, 3, 1]).tolist()
    [0.1, 0.25, 0.25, 0.5]
    """
    values = np.asarray(values, dtype=float)
    weights = np.asarray(weights, dtype=float)
    if values.shape != weights.shape or values.ndim != 1:
        raise ValueError("values and weights must be 1-D and of the same length")
    if np.any(weights <= 0):
        raise ValueError("weights must all be positive")
    means: list[float] = []  # one entry per block of pooled values
    totals: list[float] = []
    sizes: list[int] = []
    for value, weight in zip(values, weights):
        means.append(float(value))
        totals.append(float(weight))
        sizes.append(1)
        while len(means) > 1 and means[-2] > means[-1]:
            mean, total, size = means.pop(), totals.pop(), sizes.pop()
            pooled = totals[-1] + total
            means[-1] = (means[-1] * totals[-1] + mean * total) / pooled
            totals[-1] = pooled
            sizes[-1] += size
    return np.repeat(means, sizes)
