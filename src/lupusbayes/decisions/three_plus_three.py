"""The 3+3 design, as implemented by the R package ``escalation`` (``get_three_plus_three``).

Storer (1989) and Korn et al. (1994); rules as in ``escalation`` 0.2.3 (Brock 2019),
``R/three_plus_three.R``. Cohorts have three patients. The decision looks only at the **last
level given**, with its cumulative patients ``n`` and DLTs ``t``:

* fewer than 3, or 4 or 5 patients: the cohort is incomplete, stay;
* 0/3, or at most 1 DLT in 6: escalate; but stop and select this level if it is the highest,
  or if the next level already has 6 patients or at least 2 DLTs;
* 1/3: stay and treat three more;
* at least 2 DLTs (in 3 or in 6): stop and select the level below (none at the lowest level).
  With ``allow_deescalate=True`` (Korn et al.): at the lowest level stop with none; if the
  level below has fewer than 6 patients de-escalate to it; otherwise stop and select the
  highest level with at least 6 patients and at most 1 DLT (none if there is no such level).

Dose levels are **0-based** in the API; outcome strings (``"1NNN 2NNT"``) and reason
sentences number levels **from 1**, as ``escalation`` does.

The fast simulator of many 3+3 trials at once,
:func:`~lupusbayes.simulation.rule_based.simulate_three_plus_three`, lives in the simulation
layer, in :mod:`lupusbayes.simulation.rule_based`; it replays these rules.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from lupusbayes.decisions.level_counts import check_level_counts, check_positive_int, plural

__all__ = [
    "CohortOutcome",
    "ThreePlusThreeDecision",
    "format_outcomes",
    "parse_outcomes",
    "three_plus_three_from_outcomes",
    "three_plus_three_next",
    "classical_three_plus_three_mtd",
]

Action = Literal["escalate", "stay", "deescalate", "stop"]

COHORT_SIZE = 3
#: The 3+3 never treats more than this many patients at one level.
MAX_PATIENTS_PER_LEVEL = 6

# escalation's gate-keeper pattern, single-agent form: cohorts like "2NNT", separated by
# optional whitespace; leading and trailing whitespace allowed; "" means no patients.
_OUTCOME_STRING = re.compile(r"\s*(?:\d+[NT]+\s*)+", re.ASCII)
_COHORT = re.compile(r"(\d+)([NT]+)", re.ASCII)


# ---- outcome strings ------------------------------------------------------------------------


@dataclass(frozen=True)
class CohortOutcome:
    """One cohort of an outcome string: its 0-based level and a DLT flag per patient."""

    dose_level: int
    dlt: tuple[bool, ...]

    @property
    def n_patients(self) -> int:
        return len(self.dlt)

    @property
    def n_dlt(self) -> int:
        return sum(self.dlt)


def parse_outcomes(outcome_string: str) -> tuple[CohortOutcome, ...]:
    """Cohorts written as an ``escalation`` outcome string, e.g. ``"1NNN 2NNT"``.

    Each cohort is a dose level counted from 1, followed at once by one letter per patient:
    ``T`` for a DLT, ``N`` for none (upper case). Cohorts are separated by whitespace; the
    empty string means no patients (``escalation``, ``phase1_outcomes_to_cohorts``).

    Parameters
    ----------
    outcome_string : str

    Returns
    -------
    tuple of CohortOutcome
        In order of treatment, with 0-based ``dose_level``.

    Raises
    ------
    ValueError
        If the string does not follow the grammar, or a level is 0.

    Examples
    --------
    >>> cohorts = parse_outcomes("1NNN 2NNT")
    >>> [(cohort.dose_level, cohort.n_dlt) for cohort in cohorts]
    [(0, 0), (1, 1)]
    """
    if not isinstance(outcome_string, str):
        raise ValueError(f"outcome_string must be a str such as '1NNN 2NNT' (got {type(outcome_string).__name__})")
    if outcome_string == "":
        return ()
    if not _OUTCOME_STRING.fullmatch(outcome_string):
        raise ValueError(
            f"'{outcome_string}' is not a valid outcome string: write cohorts such as '1NNN 2NNT', "
            "a dose level from 1 followed by N (no DLT) or T (DLT) per patient, separated by spaces"
        )
    cohorts = []
    for level, letters in _COHORT.findall(outcome_string):
        if int(level) < 1:
            raise ValueError(f"dose levels in outcome strings start at 1 (got '{level}{letters}')")
        cohorts.append(CohortOutcome(int(level) - 1, tuple(letter == "T" for letter in letters)))
    return tuple(cohorts)


def format_outcomes(cohorts: Sequence[CohortOutcome]) -> str:
    """The outcome string of ``cohorts`` (the reverse of :func:`parse_outcomes`).

    Examples
    --------
    >>> format_outcomes([CohortOutcome(0, (False, False, False)), CohortOutcome(1, (False, False, True))])
    '1NNN 2NNT'
    """
    return " ".join(
        str(cohort.dose_level + 1) + "".join("T" if dlt else "N" for dlt in cohort.dlt) for cohort in cohorts
    )


# ---- the decision ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ThreePlusThreeDecision:
    """What the 3+3 does next (see :func:`three_plus_three_next`).

    Attributes
    ----------
    action : {"escalate", "stay", "deescalate", "stop"}
    next_level_index : int or None
        0-based level for the next cohort; None when the trial stops.
    selected_level_index : int or None
        When stopping, the 0-based level selected as the MTD (None if no level is safe);
        None while the trial continues.
    reason : str
        One sentence with the numbers behind the decision (levels counted from 1).
    """

    action: Action
    next_level_index: int | None
    selected_level_index: int | None
    reason: str


def three_plus_three_next(
    n_patients_by_level: Sequence[int],
    n_dlt_by_level: Sequence[int],
    last_level: int | None,
    *,
    allow_deescalate: bool = False,
) -> ThreePlusThreeDecision:
    """The 3+3 decision after the last patient (Storer 1989; Korn et al. 1994; ``escalation`` ``three_plus_three``).

    Parameters
    ----------
    n_patients_by_level, n_dlt_by_level : sequence of int
        Cumulative patients and DLTs at each level (0-based); at most 6 patients per level.
    last_level : int or None
        0-based level of the last patient treated; None when no patient has been treated
        (the trial starts at the lowest level).
    allow_deescalate : bool, default False
        Korn et al.'s variant: de-escalate to a level with fewer than 6 patients.

    Returns
    -------
    ThreePlusThreeDecision

    Examples
    --------
    >>> decision = three_plus_three_next([3, 3, 0], [0, 2, 0], last_level=1)
    >>> decision.action, decision.selected_level_index
    ('stop', 0)
    >>> decision.reason
    '2 DLTs in 3 patients at level 2 (at least 2 DLTs): stop and select level 1.'
    """
    n_patients, n_dlt = check_level_counts(n_patients_by_level, n_dlt_by_level)
    n_levels = n_patients.size
    if last_level is None:
        if n_patients.any():
            raise ValueError("last_level is required once patients have been treated")
        return ThreePlusThreeDecision("stay", 0, None, "No patients treated yet: treat the first cohort at level 1.")
    if isinstance(last_level, bool) or not isinstance(last_level, (int, np.integer)) or not 0 <= last_level < n_levels:
        raise ValueError(f"last_level must be a 0-based level from 0 to {n_levels - 1}, or None (got {last_level!r})")
    level = int(last_level)
    n, t = int(n_patients[level]), int(n_dlt[level])
    if n == 0:
        raise ValueError(f"last_level {level} has no patients; it must be the level of the last patient treated")
    if np.any(n_patients > MAX_PATIENTS_PER_LEVEL):
        raise ValueError(f"the 3+3 treats at most 6 patients per level (got {n_patients.tolist()})")

    shown = level + 1  # levels counted from 1 in sentences
    observed = f"{plural(t, 'DLT')} in {plural(n, 'patient')} at level {shown}"

    decide = ThreePlusThreeDecision  # (action, next_level_index, selected_level_index, reason)

    if n not in (3, 6):
        return decide("stay", level, None, f"{observed}: the cohort is incomplete; stay at level {shown}.")
    if n == 3 and t == 1:
        return decide("stay", level, None, f"{observed}: treat 3 more at level {shown}.")
    if t == 0 or (n == 6 and t == 1):
        if level == n_levels - 1:
            highest = f"{observed} and it is the highest level"
            return decide("stop", None, level, f"{highest}: stop and select level {shown}.")
        if n_patients[level + 1] >= 6 or n_dlt[level + 1] >= 2:
            n_above, t_above = int(n_patients[level + 1]), int(n_dlt[level + 1])
            above = f"level {shown + 1} has {plural(t_above, 'DLT')} in {plural(n_above, 'patient')}"
            return decide("stop", None, level, f"{observed}, and {above}: stop and select level {shown}.")
        return decide("escalate", level + 1, None, f"{observed}: escalate to level {shown + 1}.")

    too_toxic = f"{observed} (at least 2 DLTs)"
    if level == 0:
        return decide("stop", None, None, f"{too_toxic} and it is the lowest level: stop with no level selected.")
    if not allow_deescalate:
        return decide("stop", None, level - 1, f"{too_toxic}: stop and select level {shown - 1}.")
    if n_patients[level - 1] < 6:
        below = f"level {shown - 1} has fewer than 6 patients"
        return decide("deescalate", level - 1, None, f"{too_toxic}, and {below}: de-escalate to level {shown - 1}.")
    safe = np.flatnonzero((n_patients >= 6) & (n_dlt <= 1))
    if safe.size == 0:
        none_safe = "no level has 6 patients with at most 1 DLT"
        return decide("stop", None, None, f"{too_toxic}, and {none_safe}: stop with no level selected.")
    selected = int(safe[-1])
    highest = f"level {selected + 1} is the highest with 6 patients and at most 1 DLT"
    return decide("stop", None, selected, f"{too_toxic}; {highest}: stop and select level {selected + 1}.")


def classical_three_plus_three_mtd(n_patients_by_level: Sequence[int], n_dlt_by_level: Sequence[int],
                                   min_patients: int = COHORT_SIZE) -> tuple[int | None, str]:
    """The classical 3+3 MTD for a trial that stopped before the 3+3's own end (e.g. at the sample size).

    The highest level, below every level with at least 2 DLTs, that had at most 1 DLT in 6 or more
    patients, or no DLT in 3 to 5 patients where ``min_patients`` <= 3 allows a level given to 3;
    every candidate was given to at least ``min_patients`` patients. None when no level qualifies.
    Returns the 0-based level (or None) and the sentence that says which rule chose it.

    Examples
    --------
    >>> classical_three_plus_three_mtd([3, 6, 0], [0, 1, 0])
    (1, 'the classical rule selects level 2, the highest with at most 1 DLT in 6 (or 0 in 3) below any level with 2 DLTs')
    >>> classical_three_plus_three_mtd([3, 3, 0], [0, 0, 0], min_patients=6)[0] is None
    True
    """
    n_patients, n_dlt = check_level_counts(n_patients_by_level, n_dlt_by_level)
    toxic = np.flatnonzero(n_dlt >= 2)
    ceiling = int(toxic[0]) if toxic.size else n_patients.size
    rule = "at most 1 DLT in 6" + (" (or 0 in 3)" if min_patients <= COHORT_SIZE else "")
    candidates = [level for level in range(ceiling)
                  if n_patients[level] >= max(min_patients, COHORT_SIZE)
                  and (n_dlt[level] == 0 or (n_patients[level] >= MAX_PATIENTS_PER_LEVEL and n_dlt[level] <= 1))]
    if not candidates:
        return None, f"no level had {rule} below any level with 2 DLTs: no level is selected"
    level = candidates[-1]
    return level, (f"the classical rule selects level {level + 1}, the highest with {rule} below any level with "
                   "2 DLTs")


def three_plus_three_from_outcomes(
    outcome_string: str,
    n_levels: int,
    allow_deescalate: bool = False,
    *,
    strict: bool = True,
) -> ThreePlusThreeDecision:
    """The 3+3 decision for the trial written as an outcome string such as ``"1NNN 2NNT"``.

    Parameters
    ----------
    outcome_string : str
        See :func:`parse_outcomes`.
    n_levels : int
        Number of dose levels in the trial.
    allow_deescalate : bool, default False
        Korn et al.'s variant (see :func:`three_plus_three_next`).
    strict : bool, default True
        Reject paths the 3+3 cannot produce, as ``escalation``'s ``enforce_three_plus_three``
        does: more than 6 patients at a level; more than 3 patients at a level without DLTs
        (unless de-escalation is allowed); skipped levels; more than one incomplete cohort; an
        incomplete cohort at a level other than the last one given.

    Returns
    -------
    ThreePlusThreeDecision

    Examples
    --------
    >>> decision = three_plus_three_from_outcomes("1NNN 2NNN 3NNT 3NTN", n_levels=5)
    >>> decision.action, decision.selected_level_index  # 0-based: level 2 in the string's numbering
    ('stop', 1)
    """
    n_levels = check_positive_int(n_levels, "n_levels")
    cohorts = parse_outcomes(outcome_string)
    n_patients = np.zeros(n_levels, dtype=np.int64)
    n_dlt = np.zeros(n_levels, dtype=np.int64)
    for cohort in cohorts:
        if cohort.dose_level >= n_levels:
            raise ValueError(f"outcome string uses level {cohort.dose_level + 1}, but there are only {n_levels} levels")
        n_patients[cohort.dose_level] += cohort.n_patients
        n_dlt[cohort.dose_level] += cohort.n_dlt
    last_level = cohorts[-1].dose_level if cohorts else None
    if strict and cohorts:
        _enforce_three_plus_three(n_patients, n_dlt, last_level, allow_deescalate, outcome_string)
    return three_plus_three_next(n_patients, n_dlt, last_level, allow_deescalate=allow_deescalate)


def _enforce_three_plus_three(n_patients, n_dlt, last_level: int, allow_deescalate: bool, outcome_string: str) -> None:
    """The checks of ``escalation``'s ``enforce_three_plus_three``; ValueError on the first failure."""
    problem = None
    treated = np.flatnonzero(n_patients > 0)
    incomplete = n_patients % COHORT_SIZE != 0
    if np.any(n_patients > MAX_PATIENTS_PER_LEVEL):
        problem = "a level has more than 6 patients"
    elif not allow_deescalate and np.any((n_patients > 3) & (n_dlt == 0)):
        problem = "a level without DLTs has more than 3 patients"
    elif treated[-1] - treated[0] + 1 != treated.size:
        problem = "some levels were skipped"
    elif incomplete.sum() > 1:
        problem = "several cohorts are in progress"
    elif np.any(np.delete(incomplete, last_level)):
        problem = "a cohort at a level other than the last one given is incomplete"
    if problem:
        raise ValueError(f"'{outcome_string}' is not a 3+3 path: {problem} (pass strict=False to get advice anyway)")
