"""TITE-BOIN, the time-to-event BOIN design: dosing while earlier patients are still followed.

**TITE-BOIN doses new patients while earlier patients are still inside their DLT window. That
is its purpose, and it is the one explicit exception to this package's rule that no new cohort
is dosed while a patient is inside the window.** Every output says so: a decision that doses
while patients are pending has ``doses_during_window`` True and a reason sentence that states
how many patients are inside the window. Use it only where the protocol adopts TITE-BOIN.

The rules (Yuan, Lin, Li, Nie & Warren 2018, Clin Cancer Res 24:4921-4930; its decision table,
Supplementary Table S1; the time-to-event model-assisted designs of Lin & Yuan 2020,
Biostatistics 21:807-824):

* Each patient at a level is **complete** (the window ended, or a DLT was seen, which completes
  the patient at once) or **pending** (inside the window with no DLT yet, followed for a
  fraction u of the window). For a level with m complete patients, y DLTs and c pending patients
  whose follow-up fractions sum to S (the standardised total follow-up time, STFT):

  - ``method="imputation"`` (Yuan et al. 2018, the default): each pending patient's DLT is
    imputed from the posterior mean p_hat = (y + phi/2) / (m + 1) of the complete data under a
    Beta(phi/2, 1 - phi/2) prior, as y + p_hat / (1 - p_hat) (c - S) DLTs in n = m + c
    patients (the paper's first-order approximation of p (1 - u) / (1 - p u) per patient,
    which makes its decision table a threshold on STFT, :func:`tite_boin_followup_thresholds`);
  - ``method="effective_sample_size"`` (Lin & Yuan 2020; R package TITEgBOIN): y DLTs in an
    effective sample size m + S.

  The ratio is compared with BOIN's lambda_e and lambda_d (:func:`~lupusbayes.decisions.boin.boin_boundaries`).
* **No escalation unless** the observed DLT rate y / n is below the target, and **no
  de-escalation unless** it is above it (imputation method; the paper's coherence rules, also in
  its decision table); with no pending patient at the level the decision is BOIN's
  (:func:`~lupusbayes.decisions.boin.boin_next_dose`).
* **Accrual suspension**: when more than ``max_pending_fraction`` (default 0.5, the paper's
  50 %) of the patients at the current level are pending, the next patient waits for more
  follow-up ("suspend"), unless the observed DLTs already reach BOIN's de-escalation count for
  the n patients treated (then it de-escalates at once). At the lowest level, a de-escalation
  signal while patients are pending also suspends accrual (nothing lower to go to; TITEgBOIN and
  the authors' backfill code), instead of treating more patients there.
* **Elimination** uses complete data only: a level with m >= 3 complete patients and
  Pr(p > phi | y, m) > ``boundaries.cutoff_eliminate`` is eliminated with every higher level;
  the trial stops if the lowest level is eliminated, and leaves an eliminated current level for
  the highest level below the eliminated ones.
* The final selection is BOIN's ``select.mtd`` on complete data
  (:func:`~lupusbayes.decisions.boin.boin_select_mtd`), once every patient's window has ended.

Differences among sources, and the choices here: the current MD Anderson application (v2.5.x)
suspends below 51 % complete data and also delays an escalation until the most recently dosed
pending patient has 25 % follow-up; the paper's 50 % rule is used here (``max_pending_fraction``
covers the first), and the follow-up delay is not implemented. TITEgBOIN applies the
elimination rule to all enrolled patients (pending ones counted as DLT-free); the complete-data
rule used here is the stricter one.

Levels are 0-based in the API and counted from 1 in reason sentences.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy import special

from lupusbayes.decisions.boin import BoinBoundaries, boin_next_dose
from lupusbayes.decisions.level_counts import check_eliminated, check_level, check_level_counts, plural

__all__ = [
    "TiteBoinDecision",
    "TiteBoinThresholds",
    "tite_boin_effective_counts",
    "tite_boin_followup_thresholds",
    "tite_boin_next_dose",
]

Action = Literal["escalate", "stay", "deescalate", "suspend", "stop"]
Method = Literal["imputation", "effective_sample_size"]
METHODS = ("imputation", "effective_sample_size")
#: The paper's suspension threshold: more than half the patients at the level pending.
DEFAULT_MAX_PENDING_FRACTION = 0.5
#: Weight of the Beta prior behind the imputation (Beta(phi/2, 1 - phi/2): one patient's worth).
IMPUTATION_PRIOR_SIZE = 1.0


# ---- effective counts (vectorised: any array shape) -------------------------------------------


def tite_boin_effective_counts(
    target: float,
    n_complete,
    n_dlt,
    n_pending,
    total_followup,
    method: Method = "imputation",
) -> tuple[np.ndarray, np.ndarray]:
    """Effective patients and DLTs of levels with pending patients, for arrays of counts.

    Parameters
    ----------
    target : float
        phi, the target DLT probability.
    n_complete, n_dlt, n_pending : array_like of int
        Complete patients (window over, or a DLT seen), DLTs, and pending patients.
    total_followup : array_like of float
        S, the pending patients' follow-up fractions summed (each in [0, 1]).
    method : {"imputation", "effective_sample_size"}

    Returns
    -------
    effective_n, effective_dlt : numpy.ndarray of float
        Imputation: m + c and y + p_hat / (1 - p_hat) (c - S), p_hat = (y + phi/2) / (m + 1).
        Effective sample size: m + S and y. Their ratio is the estimate compared with lambda_e
        and lambda_d; with no pending patient both reduce to m and y.

    Examples
    --------
    Yuan et al. (2018), Table S1, 3 patients, 1 DLT, 1 pending:

    >>> n, dlt = tite_boin_effective_counts(0.3, 2, 1, 1, 0.5)
    >>> float(n), round(float(dlt), 4)  # p_hat = 1.15 / 3
    (3.0, 1.3108)
    """
    _check_method(method)
    m = np.asarray(n_complete, dtype=float)
    y = np.asarray(n_dlt, dtype=float)
    c = np.asarray(n_pending, dtype=float)
    s = np.asarray(total_followup, dtype=float)
    if method == "effective_sample_size":
        return m + s, y + 0 * c
    p_hat = (y + target / 2) / (m + IMPUTATION_PRIOR_SIZE)
    return m + c, y + p_hat / (1 - p_hat) * (c - s)


@dataclass(frozen=True)
class TiteBoinThresholds:
    """Yuan et al.'s (2018) decision table entry: thresholds on the standardised total follow-up.

    Attributes
    ----------
    escalate_if_followup_at_least : float
        Escalate when STFT >= this (``inf``: escalation impossible, the observed rate is not
        below the target; below 0: escalate whatever the follow-up).
    deescalate_if_followup_at_most : float
        De-escalate when STFT <= this (``-inf``: impossible, the observed rate is not above the
        target; at least the number pending: de-escalate whatever the follow-up).
    """

    escalate_if_followup_at_least: float
    deescalate_if_followup_at_most: float


def tite_boin_followup_thresholds(
    boundaries: BoinBoundaries, n_patients: int, n_dlt: int, n_pending: int
) -> TiteBoinThresholds:
    """STFT thresholds of the imputation method for ``n_dlt`` DLTs and ``n_pending`` pending of ``n_patients``.

    With c pending, m = n - c complete and odds r = p_hat / (1 - p_hat), the imputed rate
    (y + r (c - S)) / n is <= lambda_e when S >= c - (lambda_e n - y) / r and >= lambda_d when
    S <= c - (lambda_d n - y) / r (Yuan et al. 2018, Supplementary Table S1, whose entries for
    a target of 0.3 are reproduced in the tests).

    Examples
    --------
    >>> from lupusbayes.decisions.boin import boin_boundaries
    >>> thresholds = tite_boin_followup_thresholds(boin_boundaries(0.3, max_patients=12), 6, 1, 2)
    >>> round(thresholds.escalate_if_followup_at_least, 2), thresholds.deescalate_if_followup_at_most
    (0.6, -inf)
    """
    n, y, c = int(n_patients), int(n_dlt), int(n_pending)
    if not (1 <= n and 0 <= y and 0 <= c and y + c <= n):
        raise ValueError(f"need 1 <= n_patients and n_dlt + n_pending <= n_patients (got {n}, {y}, {c})")
    target = boundaries.target
    p_hat = (y + target / 2) / (n - c + IMPUTATION_PRIOR_SIZE)
    odds = p_hat / (1 - p_hat)
    escalate = c - (boundaries.lambda_escalate * n - y) / odds if y / n < target else math.inf
    deescalate = c - (boundaries.lambda_deescalate * n - y) / odds if y / n > target else -math.inf
    return TiteBoinThresholds(float(escalate), float(deescalate))


# ---- the next dose --------------------------------------------------------------------------


@dataclass(frozen=True)
class TiteBoinDecision:
    """What to do for the next patient under TITE-BOIN (see :func:`tite_boin_next_dose`).

    Attributes
    ----------
    action : {"escalate", "stay", "deescalate", "suspend", "stop"}
        ``"suspend"``: the next patient waits for more follow-up (decide again at the next
        event: a pending patient's window ends or a DLT is seen).
    next_level_index : int or None
        0-based level for the next patient; None for "suspend" and "stop".
    reason : str
        One sentence with the numbers behind the decision (levels counted from 1); it says how
        many patients are inside the DLT window when the decision doses during it.
    eliminated : tuple of bool
        Levels eliminated (on complete data, or earlier).
    n_pending_by_level : tuple of int
    effective_n_by_level, effective_dlt_by_level : tuple of float
        From :func:`tite_boin_effective_counts` with the decision's method.
    """

    action: Action
    next_level_index: int | None
    reason: str
    eliminated: tuple[bool, ...]
    n_pending_by_level: tuple[int, ...]
    effective_n_by_level: tuple[float, ...]
    effective_dlt_by_level: tuple[float, ...]

    @property
    def doses_during_window(self) -> bool:
        """True when this decision doses a patient while others are inside their DLT window (TITE-BOIN's design)."""
        return self.action in ("escalate", "stay", "deescalate") and sum(self.n_pending_by_level) > 0

    @property
    def estimated_rate_by_level(self) -> tuple[float, ...]:
        """Effective DLTs / effective patients at each level (nan where there is no information)."""
        return tuple(dlt / n if n > 0 else math.nan
                     for n, dlt in zip(self.effective_n_by_level, self.effective_dlt_by_level, strict=True))


def tite_boin_next_dose(
    boundaries: BoinBoundaries,
    current_level_index: int,
    n_complete_by_level: Sequence[int],
    n_dlt_by_level: Sequence[int],
    pending_followup_by_level: Sequence[Sequence[float]],
    *,
    max_pending_fraction: float = DEFAULT_MAX_PENDING_FRACTION,
    method: Method = "imputation",
    eliminated_by_level: Sequence[bool] | None = None,
) -> TiteBoinDecision:
    """The next patient's level under TITE-BOIN (Yuan et al. 2018), doses allowed during the DLT window.

    In this order, at the current level ``d`` with m complete patients, y DLTs and c pending:

    1. eliminate, on complete data, the lowest level with m >= 3 and Pr(p > phi | y, m) above
       the cutoff, and every level above it (and keep ``eliminated_by_level``); stop if level 1
       is eliminated; if ``d`` is eliminated, de-escalate to the highest level below;
    2. suspend if c / (m + c) > ``max_pending_fraction``, unless y already reaches BOIN's
       de-escalation count for m + c patients;
    3. with c = 0, BOIN's decision (:func:`~lupusbayes.decisions.boin.boin_next_dose`);
    4. otherwise the estimate of :func:`tite_boin_effective_counts`: escalate if <= lambda_e
       (imputation: and y / (m + c) < phi), unless ``d`` is the highest level or the next is
       eliminated; de-escalate if >= lambda_d (imputation: and y / (m + c) > phi), or suspend at
       the lowest level; stay otherwise.

    Parameters
    ----------
    boundaries : BoinBoundaries
        From :func:`~lupusbayes.decisions.boin.boin_boundaries`; phi is ``boundaries.target``.
        Must cover the patients at every level.
    current_level_index : int
        0-based level of the most recent patients; it must have patients.
    n_complete_by_level, n_dlt_by_level : sequence of int
        Complete patients and DLTs at each level (a patient with a DLT is complete).
    pending_followup_by_level : sequence of sequences of float
        For each level, the follow-up of each pending patient as a fraction of the DLT window,
        in [0, 1) (1 is accepted, for a patient whose window ends as the decision is taken).
    max_pending_fraction : float, default 0.5
        Suspend accrual when more than this fraction of the current level's patients are
        pending; in [0, 1).
    method : {"imputation", "effective_sample_size"}, default "imputation"
    eliminated_by_level : sequence of bool, optional
        Levels eliminated earlier; once a level is, every higher level must be too.

    Returns
    -------
    TiteBoinDecision

    Examples
    --------
    >>> from lupusbayes.decisions.boin import boin_boundaries
    >>> boundaries = boin_boundaries(0.3, max_patients=30)
    >>> decision = tite_boin_next_dose(boundaries, 1, [3, 4, 0], [0, 0, 0], [[], [0.5, 0.25], []])
    >>> decision.action, decision.next_level_index, decision.doses_during_window
    ('escalate', 2, True)
    >>> decision.reason
    '0 DLTs in 6 patients at level 2, 2 pending with 0.75 windows of follow-up: imputed DLTs 0.04 of 6 (rate 0.006) <= lambda_e 0.236: escalate to level 3. (2 patients are still inside the DLT window; TITE-BOIN doses without waiting for them, by design.)'
    >>> decision = tite_boin_next_dose(boundaries, 1, [3, 2, 0], [0, 0, 0], [[], [0.5, 0.25, 0.1], []])
    >>> decision.action, decision.next_level_index
    ('suspend', None)
    """
    _check_method(method)
    if not 0 <= max_pending_fraction < 1:
        raise ValueError(f"max_pending_fraction must be in [0, 1) (got {max_pending_fraction})")
    n_complete, n_dlt = check_level_counts(n_complete_by_level, n_dlt_by_level)
    n_levels = n_complete.size
    followup = _check_followup(pending_followup_by_level, n_levels)
    d = check_level(current_level_index, n_levels, "current_level_index")
    n_pending = np.array([len(fractions) for fractions in followup], dtype=np.int64)
    total_followup = np.array([math.fsum(fractions) for fractions in followup])
    n_patients = n_complete + n_pending
    if np.any(n_patients > boundaries.max_patients):
        raise ValueError(f"boundaries cover {boundaries.max_patients} patients per level; a level has "
                         f"{int(n_patients.max())}")
    if n_patients[d] < 1:
        raise ValueError(f"the current level {d} (level {d + 1} counted from 1) has no patients")
    previously = check_eliminated(eliminated_by_level, n_levels)
    target = boundaries.target
    effective_n, effective_dlt = tite_boin_effective_counts(
        target, n_complete, n_dlt, n_pending, total_followup, method
    )

    eliminate_now = np.array([m >= 1 and boundaries.eliminates(int(m), int(y)) for m, y in zip(n_complete, n_dlt)])
    eliminated = np.logical_or.accumulate(previously | eliminate_now)
    window_note = _window_note(n_pending)

    def decide(action: Action, next_level: int | None, sentence: str) -> TiteBoinDecision:
        if action in ("escalate", "stay", "deescalate"):
            sentence += window_note
        return TiteBoinDecision(action, next_level, sentence, tuple(map(bool, eliminated)), tuple(map(int, n_pending)),
                                tuple(map(float, effective_n)), tuple(map(float, effective_dlt)))

    first = int(np.argmax(eliminated)) if eliminated.any() else n_levels
    if first == 0:
        return decide("stop", None, f"{_elimination_sentence(boundaries, n_complete, n_dlt, previously, 0)}: every "
                      "level is eliminated; stop the trial with no level selected.")
    shown = d + 1
    if eliminated[d]:
        why = _elimination_sentence(boundaries, n_complete, n_dlt, previously, first)
        return decide("deescalate", first - 1, f"{why}: level {shown} is eliminated; de-escalate to level {first}.")

    m, y, c, n = int(n_complete[d]), int(n_dlt[d]), int(n_pending[d]), int(n_patients[d])
    deescalate_count = boundaries.deescalate_at_least[n - 1]
    if c / n > max_pending_fraction and y < deescalate_count:
        return decide("suspend", None, f"{c} of {plural(n, 'patient')} at level {shown} are pending ({c / n:.2f} > "
                      f"{max_pending_fraction:g}) and the {plural(y, 'DLT')} seen stay below the de-escalation count "
                      f"{deescalate_count} for {n} patients: suspend accrual until more follow-up is in.")
    if c == 0:
        boin = boin_next_dose(d, n_complete, n_dlt, boundaries, eliminated_by_level=eliminated)
        return decide(boin.action, boin.next_level_index,
                      f"No patient at level {shown} is pending; BOIN: {boin.reason}")

    rate = float(effective_dlt[d] / effective_n[d])
    observed = (f"{plural(y, 'DLT')} in {plural(n, 'patient')} at level {shown}, {c} pending with "
                f"{total_followup[d]:.2f} windows of follow-up")
    if method == "imputation":
        estimate = f"imputed DLTs {effective_dlt[d]:.2f} of {n} (rate {rate:.3f})"
    else:
        estimate = f"effective sample size {effective_n[d]:.2f} (rate {rate:.3f})"
    head = f"{observed}: {estimate}"
    observed_rate = y / n
    coherence = method == "imputation"
    if rate <= boundaries.lambda_escalate:
        why = f"{head} <= lambda_e {boundaries.lambda_escalate:.3f}"
        if coherence and not observed_rate < target:
            return decide("stay", d, f"{why}, but the observed rate {observed_rate:.2f} is not below the target "
                          f"{target:.2f}: stay at level {shown}.")
        if d == n_levels - 1:
            return decide("stay", d, f"{why}, but level {shown} is the highest: stay at level {shown}.")
        if eliminated[d + 1]:
            return decide("stay", d, f"{why}, but level {shown + 1} is eliminated: stay at level {shown}.")
        return decide("escalate", d + 1, f"{why}: escalate to level {shown + 1}.")
    if rate >= boundaries.lambda_deescalate:
        why = f"{head} >= lambda_d {boundaries.lambda_deescalate:.3f}"
        if coherence and not observed_rate > target:
            return decide("stay", d, f"{why}, but the observed rate {observed_rate:.2f} is not above the target "
                          f"{target:.2f}: stay at level {shown}.")
        if d == 0:
            return decide("suspend", None, f"{why}, but level 1 is the lowest and {c} of its {plural(n, 'patient')} "
                          f"{'is' if c == 1 else 'are'} pending: "
                          "suspend accrual until more follow-up is in.")
        return decide("deescalate", d - 1, f"{why}: de-escalate to level {shown - 1}.")
    return decide("stay", d, f"{head} is between lambda_e {boundaries.lambda_escalate:.3f} and lambda_d "
                  f"{boundaries.lambda_deescalate:.3f}: stay at level {shown}.")


# ---- helpers --------------------------------------------------------------------------------


def _check_method(method) -> None:
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS} (got {method!r})")


def _check_followup(pending_followup_by_level, n_levels: int) -> list[list[float]]:
    if isinstance(pending_followup_by_level, (str, bytes)) or len(pending_followup_by_level) != n_levels:
        raise ValueError(f"pending_followup_by_level must hold {n_levels} sequences, one per level")
    followup = []
    for level, fractions in enumerate(pending_followup_by_level):
        values = [float(value) for value in np.atleast_1d(np.asarray(fractions, dtype=float))] if len(fractions) else []
        if any(not (0 <= value <= 1) for value in values):
            raise ValueError(f"pending follow-up fractions must be in [0, 1] (level {level}: {values})")
        followup.append(values)
    return followup


def _elimination_sentence(boundaries: BoinBoundaries, n_complete, n_dlt, previously, first: int) -> str:
    m, y = int(n_complete[first]), int(n_dlt[first])
    if previously[first]:
        return f"Level {first + 1} was eliminated earlier"
    tail = float(special.betaincc(1 + y, 1 + m - y, boundaries.target))
    return (f"Level {first + 1} is eliminated on complete data: {plural(y, 'DLT')} in {plural(m, 'complete patient')} "
            f"(Pr(p > {boundaries.target:.2f}) = {tail:.3f} > {boundaries.cutoff_eliminate})")


def _window_note(n_pending: np.ndarray) -> str:
    total = int(n_pending.sum())
    if total == 0:
        return ""
    verb = "is" if total == 1 else "are"
    return (f" ({plural(total, 'patient')} {verb} still inside the DLT window; TITE-BOIN doses without waiting for "
            f"{'it' if total == 1 else 'them'}, by design.)")
