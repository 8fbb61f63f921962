"""BOIN12, the Bayesian optimal interval phase I/II design, for utility-based dose finding.

BOIN12 (Lin, Zhou, Yan, Li & Yuan 2020, JCO Precision Oncology 4:1393-1402) chooses doses by
toxicity (a dose-limiting toxicity, DLT) and efficacy (a response) together, and ends with an
optimal biological dose (OBD) rather than a maximum tolerated dose (MTD):

* toxicity is kept in bounds by BOIN's interval boundaries at the toxicity upper limit phi_T
  (:func:`~lupusbayes.decisions.boin.boin_boundaries`, lambda_e and lambda_d; for phi_T = 0.35
  they are 0.276 and 0.419);
* the four outcomes (response without DLT, neither, response with DLT, DLT without response)
  have utilities on a 0-100 scale (default 100, 40, 60, 0). The utilities of a level's patients
  divided by 100 are "quasi-events" x out of n, whose Beta(1 + x, 1 + n - x) posterior gives the
  **desirability** Pr(utility > u_b | data) of the level, where the benchmark
  u_b = u_bar + (100 - u_bar) / 2 is half-way between the utility u_bar of a level that just
  reaches the toxicity limit phi_T and the efficacy limit phi_E (toxicity and efficacy
  independent) and the best utility 100. The rank of this probability among all outcomes of a
  trial is the paper's rank-based desirability score (RDS, :func:`boin12_desirability_table`);
  comparing probabilities or ranks chooses the same level;
* a level is **admissible** while Pr(p_DLT > phi_T | data) <= 0.95 (otherwise it and every
  higher level are eliminated for toxicity) and Pr(p_response < phi_E | data) <= 0.90
  (otherwise it alone is eliminated as futile), with Beta(1, 1) priors and, as in the reference
  implementation's boundary table, only once 3 patients have been treated at the level (and,
  for toxicity, 3 DLTs observed).

The next cohort's level (:func:`boin12_next_dose`, the paper's Table 2): with ``n`` patients and
``y`` DLTs at the current level, de-escalate to the nearest admissible lower level if ``y``
reaches the de-escalation boundary; otherwise choose, among the admissible levels nearest below,
at and above the current one, the level with the highest desirability, where the level above
is left out when the DLT rate is between the boundaries and ``n >= N*`` (default 6: "stay if
n >= N*"). The trial stops with no level selected when the lowest level is too toxic or no
level is admissible. At the end (:func:`boin12_select_dose`), the MTD is chosen as BOIN's
``select.mtd`` chooses it (isotonic regression of the toxicity estimates, the admissible level
closest to phi_T; :func:`~lupusbayes.decisions.boin.boin_select_mtd`), and the OBD is the
admissible treated level at or below the MTD with the highest posterior-mean utility.

Where the sources differ, and what this module does
---------------------------------------------------
The reference is the authors' web application (www.trialdesign.org, MD Anderson's BOIN12) and
their simulation code; the R package ``escalation`` (K. Brock; ``get_boin12``,
``select_boin12_obd``, written by M. Sweeting) agrees with the application on the cases its
tests record (reproduced in ``tests/test_boin12.py``) but differs from it in ways its issue #8
documents:

* **Final selection.** ``select_boin12_obd`` picks the level with the highest *desirability*
  Pr(utility > u_b); the paper's Data Supplement (section 4) and the application pick the
  highest *posterior-mean* utility. This module uses the posterior mean,
  100 (1 + x) / (2 + n) under the same Beta posterior (with additive utilities and Beta(1, 1)
  priors it equals u(0,0)(1 - E[p_DLT]) + u(1,1) E[p_response] under independent Beta
  posteriors of the two rates).
* **Extra exploration.** ``escalation`` always escalates to an untreated higher level once more
  than 8 patients were treated at the current level (the Data Supplement's exploration rule);
  the application offers it as an option. Here it is an option, off by default
  (``exploration_patients=None``); ``exploration_patients=9`` reproduces the paper's worked
  example (Data Supplement Figure S2).
* **De-escalation and skipping.** ``escalation`` de-escalates to the level just below without
  checking admissibility; the reference code moves to the nearest *admissible* level below
  (and above), skipping a futile level. This module follows the reference code.
* **Ties** in desirability are broken at random by the reference code (a 1e-15 jitter) and
  towards the higher level by ``escalation`` (which matches most recorded application
  outputs); this module takes the highest tied level, deterministically.
  (``escalation``'s test of the application's parameterisation 2 leaves out "2NNE", where the
  application chose level 1 over the tied level 3; this module chooses 3.)
* **Toxicity elimination** needs 3 DLTs as well as 3 patients, as the reference code's boundary
  table does (``escalation`` applies the posterior rule at any count and then ignores it when
  de-escalating). The recorded application outputs need this: with phi_T = 0.15 and C_T = 0.9,
  2 DLTs in 3 patients at level 1 continue at level 1.
* **Final MTD.** The reference code pools (y + 0.05) / (n + 0.1) with weights n + 0.1 and
  ``escalation`` pools the empirical rates unweighted; this module reuses BOIN's ``select.mtd``
  (weights 1 / variance, the same estimates), so that BOIN and BOIN12 share one MTD rule. Its
  elimination (BOIN 2.7.2) has no 3-DLT floor, so for a low phi_T the final selection can be
  stricter than the decisions were.

Conventions
-----------
Levels are 0-based indices in the API (``current_level_index=0`` is the lowest); reason
sentences count levels from 1, as the papers and the R packages do. Counts are per level:
patients, patients with a DLT, patients with a response and, only for non-additive utilities,
patients with both.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
import itertools
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Literal

import numpy as np
from scipy import special, stats

from lupusbayes.decisions.boin import (
    MIN_PATIENTS_TO_ELIMINATE,
    BoinBoundaries,
    boin_boundaries,
    boin_select_mtd,
)
from lupusbayes.decisions.level_counts import (
    check_eliminated,
    check_level,
    check_level_counts,
    check_positive_int,
    plural,
)

__all__ = [
    "Boin12Decision",
    "Boin12Selection",
    "Boin12Settings",
    "boin12_desirability",
    "boin12_desirability_table",
    "boin12_futile",
    "boin12_next_dose",
    "boin12_next_dose_safeguarded",
    "boin12_posterior_mean_utility",
    "boin12_quasi_events",
    "boin12_select_dose",
    "boin12_select_dose_safeguarded",
    "fewer_dlt_counts",
    "boin12_too_toxic",
]

Action = Literal["escalate", "stay", "deescalate", "stop"]
StopReason = Literal["lowest_level_too_toxic", "no_admissible_level", "patients_at_level"]

#: Utilities must be on the paper's 0-100 scale (quasi-events x lie between 0 and n).
UTILITY_SCALE = 100.0
#: The reference code's boundary table searches elimination counts from 3 DLTs up
#: (``for (ntox in 3:n)``), so fewer than 3 DLTs never eliminate a level for toxicity; the
#: application behaves so (2 DLTs in 3 patients at phi_T = 0.15 continue at level 1).
MIN_DLT_TO_ELIMINATE = 3


# ---- settings -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Boin12Settings:
    """The numbers that define a BOIN12 design (Lin et al. 2020), validated on creation.

    Attributes
    ----------
    target_toxicity : float
        phi_T, the highest acceptable DLT probability; BOIN's boundaries are built at it.
        Between 0.05 and 0.6 (BOIN's limits). The paper's example uses 0.35.
    efficacy_lower_limit : float
        phi_E, the lowest acceptable response probability, strictly between 0 and 1 (paper: 0.25).
    utility_response_no_dlt, utility_no_response_no_dlt, utility_response_and_dlt, utility_dlt_no_response : float
        Utilities of the four outcomes on the 0-100 scale; defaults 100, 40, 60 and 0 (the paper).
        The middle two must lie between the last and the first. With marginal counts only, the
        utilities must be additive (first + last = middle two summed), as the defaults are.
    stay_patients : int, default 6
        N*: when the DLT rate is between the boundaries and the current level has at least this
        many patients, the level above is not a candidate ("stay if n >= N*").
    exploration_patients : int or None, default None
        The Data Supplement's extra exploration (off by default, see the module docstring):
        with at least this many patients at the current level, a DLT count below the
        de-escalation boundary and an untreated admissible level above, escalate to it. The
        paper and ``escalation`` use 9 ("more than 8").
    max_patients_per_level : int or None, default None
        Stop the trial (and select the OBD) once the current level has this many patients. The
        application's default is 12; None never stops for this.
    toxicity_cutoff : float, default 0.95
        C_T: a level (and every higher level) is too toxic when Pr(p_DLT > phi_T | data) > C_T.
    futility_cutoff : float, default 0.90
        C_E: a level is futile when Pr(p_response < phi_E | data) > C_E.
    prior_alpha, prior_beta : float, default 1
        Beta prior of the DLT and response probabilities and of the quasi-binomial utility.

    Examples
    --------
    >>> settings = Boin12Settings(target_toxicity=0.35, efficacy_lower_limit=0.25)
    >>> settings.highest_unacceptable_utility, settings.utility_benchmark
    (41.0, 70.5)
    """

    target_toxicity: float
    efficacy_lower_limit: float
    utility_response_no_dlt: float = 100.0
    utility_no_response_no_dlt: float = 40.0
    utility_response_and_dlt: float = 60.0
    utility_dlt_no_response: float = 0.0
    stay_patients: int = 6
    exploration_patients: int | None = None
    max_patients_per_level: int | None = None
    toxicity_cutoff: float = 0.95
    futility_cutoff: float = 0.90
    prior_alpha: float = 1.0
    prior_beta: float = 1.0

    def __post_init__(self) -> None:
        if not 0.05 <= self.target_toxicity <= 0.6:
            raise ValueError(f"target_toxicity must be between 0.05 and 0.6, as in BOIN (got {self.target_toxicity})")
        if not 0 < self.efficacy_lower_limit < 1:
            raise ValueError(f"efficacy_lower_limit must be strictly between 0 and 1 (got {self.efficacy_lower_limit})")
        best, worst = self.utility_response_no_dlt, self.utility_dlt_no_response
        for name in ("utility_response_no_dlt", "utility_no_response_no_dlt", "utility_response_and_dlt",
                     "utility_dlt_no_response"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and 0 <= value <= UTILITY_SCALE):
                raise ValueError(f"{name} must be a number between 0 and 100 (got {value!r})")
        if not worst < best:
            raise ValueError(f"utility_dlt_no_response ({worst}) must be below utility_response_no_dlt ({best})")
        for name in ("utility_no_response_no_dlt", "utility_response_and_dlt"):
            if not worst <= getattr(self, name) <= best:
                raise ValueError(f"{name} must lie between utility_dlt_no_response ({worst}) and "
                                 f"utility_response_no_dlt ({best}) (got {getattr(self, name)})")
        check_positive_int(self.stay_patients, "stay_patients")
        if self.exploration_patients is not None:
            check_positive_int(self.exploration_patients, "exploration_patients")
        if self.max_patients_per_level is not None:
            check_positive_int(self.max_patients_per_level, "max_patients_per_level")
        for name in ("toxicity_cutoff", "futility_cutoff"):
            if not 0 < getattr(self, name) < 1:
                raise ValueError(f"{name} must be strictly between 0 and 1 (got {getattr(self, name)})")
        for name in ("prior_alpha", "prior_beta"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and value > 0 and math.isfinite(value)):
                raise ValueError(f"{name} must be a positive number (got {value!r})")

    @property
    def additive_utility(self) -> bool:
        """True when u(response, no DLT) + u(DLT, no response) = u(neither) + u(both): marginal counts then suffice."""
        return math.isclose(self.utility_response_no_dlt + self.utility_dlt_no_response,
                            self.utility_no_response_no_dlt + self.utility_response_and_dlt, abs_tol=1e-9)

    @property
    def highest_unacceptable_utility(self) -> float:
        """u_bar: the mean utility of a level with p_DLT = phi_T and p_response = phi_E, independent."""
        p_t, p_e = self.target_toxicity, self.efficacy_lower_limit
        return (self.utility_response_no_dlt * (1 - p_t) * p_e + self.utility_no_response_no_dlt * (1 - p_t) * (1 - p_e)
                + self.utility_response_and_dlt * p_t * p_e + self.utility_dlt_no_response * p_t * (1 - p_e))

    @property
    def utility_benchmark(self) -> float:
        """u_b = u_bar + (100 - u_bar) / 2, the utility a desirable level should exceed."""
        u_bar = self.highest_unacceptable_utility
        return u_bar + (UTILITY_SCALE - u_bar) / 2

    def boundaries(self, max_patients: int) -> BoinBoundaries:
        """BOIN's boundaries at phi_T (with C_T as elimination cutoff), for up to ``max_patients`` at a level."""
        return boin_boundaries(self.target_toxicity, max_patients=max_patients, cutoff_eliminate=self.toxicity_cutoff)


# ---- posterior quantities (vectorised: any array shape) ---------------------------------------


def boin12_quasi_events(
    settings: Boin12Settings, n_patients, n_dlt, n_responses, n_dlt_and_response=None
) -> np.ndarray:
    """The quasi-event count x = sum of the patients' utilities / 100, for arrays of counts.

    Parameters
    ----------
    settings : Boin12Settings
    n_patients, n_dlt, n_responses : array_like of int
        Patients, patients with a DLT and patients with a response (same shape).
    n_dlt_and_response : array_like of int, optional
        Patients with both. Needed only when the utilities are not additive; with additive
        utilities every feasible value gives the same x and the smallest feasible is used.

    Returns
    -------
    numpy.ndarray of float

    Examples
    --------
    >>> settings = Boin12Settings(0.35, 0.25)
    >>> float(boin12_quasi_events(settings, 6, 1, 3))  # 3 x 60 + 5 x 40, divided by 100
    3.8
    """
    n = np.asarray(n_patients, dtype=float)
    y = np.asarray(n_dlt, dtype=float)
    e = np.asarray(n_responses, dtype=float)
    if n_dlt_and_response is None:
        if not settings.additive_utility:
            raise ValueError(
                "these utilities are not additive, so marginal counts do not determine the utility: "
                "give n_dlt_and_response (patients with both a DLT and a response)"
            )
        both = np.maximum(0.0, y + e - n)
    else:
        both = np.asarray(n_dlt_and_response, dtype=float)
    response_no_dlt = e - both
    dlt_no_response = y - both
    neither = n - y - e + both
    total = (settings.utility_response_no_dlt * response_no_dlt + settings.utility_no_response_no_dlt * neither
             + settings.utility_response_and_dlt * both + settings.utility_dlt_no_response * dlt_no_response)
    return total / UTILITY_SCALE


def boin12_desirability(settings: Boin12Settings, n_patients, quasi_events) -> np.ndarray:
    """Pr(utility > u_b | data) under the Beta(alpha + x, beta + n - x) posterior of the utility.

    Examples
    --------
    >>> settings = Boin12Settings(0.35, 0.25)
    >>> round(float(boin12_desirability(settings, 0, 0.0)), 3)  # an untreated level: 1 - 0.705
    0.295
    """
    n = np.asarray(n_patients, dtype=float)
    x = np.asarray(quasi_events, dtype=float)
    benchmark = settings.utility_benchmark / UTILITY_SCALE
    return special.betaincc(settings.prior_alpha + x, settings.prior_beta + n - x, benchmark)


def boin12_posterior_mean_utility(settings: Boin12Settings, n_patients, quasi_events) -> np.ndarray:
    """The posterior-mean utility 100 (alpha + x) / (alpha + beta + n), on the 0-100 scale.

    Examples
    --------
    >>> settings = Boin12Settings(0.35, 0.25)
    >>> float(boin12_posterior_mean_utility(settings, 6, 3.8))  # 100 x 4.8 / 8
    60.0
    """
    n = np.asarray(n_patients, dtype=float)
    x = np.asarray(quasi_events, dtype=float)
    return UTILITY_SCALE * (settings.prior_alpha + x) / (settings.prior_alpha + settings.prior_beta + n)


def boin12_too_toxic(settings: Boin12Settings, n_patients, n_dlt) -> np.ndarray:
    """True where Pr(p_DLT > phi_T | data) > C_T with at least 3 patients and 3 DLTs (this level only).

    The floor of 3 DLTs is the reference code's (see ``MIN_DLT_TO_ELIMINATE``); it matters only
    for low phi_T (at phi_T = 0.35 no fewer than 3 DLTs can exceed C_T = 0.95 anyway).

    A level that is too toxic eliminates every higher level too; take
    ``numpy.logical_or.accumulate`` along the levels for that.
    """
    n = np.asarray(n_patients, dtype=float)
    y = np.asarray(n_dlt, dtype=float)
    tail = special.betaincc(settings.prior_alpha + y, settings.prior_beta + n - y, settings.target_toxicity)
    return (n >= MIN_PATIENTS_TO_ELIMINATE) & (y >= MIN_DLT_TO_ELIMINATE) & (tail > settings.toxicity_cutoff)


def boin12_futile(settings: Boin12Settings, n_patients, n_responses) -> np.ndarray:
    """True where Pr(p_response < phi_E | data) > C_E with at least 3 patients (this level only)."""
    n = np.asarray(n_patients, dtype=float)
    e = np.asarray(n_responses, dtype=float)
    tail = special.betainc(settings.prior_alpha + e, settings.prior_beta + n - e, settings.efficacy_lower_limit)
    return (n >= MIN_PATIENTS_TO_ELIMINATE) & (tail > settings.futility_cutoff)


# ---- the next dose --------------------------------------------------------------------------


@dataclass(frozen=True)
class Boin12Decision:
    """The level for the next cohort under BOIN12 (see :func:`boin12_next_dose`).

    Attributes
    ----------
    action : {"escalate", "stay", "deescalate", "stop"}
    next_level_index : int or None
        0-based level for the next cohort; None when the trial stops.
    reason : str
        One sentence with the numbers behind the decision (levels counted from 1).
    desirability : tuple of float
        Pr(utility > u_b | data) at every level (untreated levels: the prior's value).
    too_toxic, futile : tuple of bool
        Levels eliminated by the data for toxicity (with every level above the lowest such) and
        for futility.
    eliminated : tuple of bool
        Levels that may not receive patients: too toxic, futile or eliminated earlier.
    candidate_level_indices : tuple of int
        The admissible levels the desirability was compared over (empty when it was not used).
    stopped_for : str or None
        Why the trial stops: ``"lowest_level_too_toxic"`` or ``"no_admissible_level"`` (no
        level is selected) or ``"patients_at_level"`` (select with :func:`boin12_select_dose`).
    """

    action: Action
    next_level_index: int | None
    reason: str
    desirability: tuple[float, ...]
    too_toxic: tuple[bool, ...]
    futile: tuple[bool, ...]
    eliminated: tuple[bool, ...]
    candidate_level_indices: tuple[int, ...] = ()
    stopped_for: StopReason | None = None


def boin12_next_dose(
    settings: Boin12Settings,
    current_level_index: int,
    n_patients_by_level: Sequence[int],
    n_dlt_by_level: Sequence[int],
    n_responses_by_level: Sequence[int],
    *,
    n_dlt_and_response_by_level: Sequence[int] | None = None,
    eliminated_by_level: Sequence[bool] | None = None,
) -> Boin12Decision:
    """The level for the next cohort under BOIN12 (Lin et al. 2020, Table 2; the reference application).

    With ``n`` patients and ``y`` DLTs at the current level ``d``, in this order:

    1. eliminations from the data at every level: too toxic (with every higher level) when
       Pr(p_DLT > phi_T) > C_T, futile when Pr(p_response < phi_E) > C_E, each with >= 3
       patients. Stop with no level selected if the lowest level is too toxic or no level is
       admissible;
    2. stop (then select with :func:`boin12_select_dose`) if ``settings.max_patients_per_level``
       patients have been treated at ``d``;
    3. if ``y`` reaches BOIN's de-escalation boundary: move to the nearest admissible level
       below; with none, stay at ``d`` if it is admissible, else stop;
    4. otherwise, among the admissible levels nearest below, at ``d`` and nearest above (the one
       above left out when ``y`` is above the escalation boundary and ``n >= N*``), take the
       highest desirability Pr(utility > u_b | data), the highest level on ties; stop if none;
    5. extra exploration (only with ``settings.exploration_patients``): if ``n`` reaches it and
       the nearest admissible level above is untreated, escalate to it.

    Parameters
    ----------
    settings : Boin12Settings
    current_level_index : int
        0-based level of the cohort just treated; it must have patients.
    n_patients_by_level, n_dlt_by_level, n_responses_by_level : sequence of int
        Cumulative patients, patients with a DLT and patients with a response at each level.
    n_dlt_and_response_by_level : sequence of int, optional
        Patients with both; required when the utilities are not additive.
    eliminated_by_level : sequence of bool, optional
        Levels eliminated earlier (kept eliminated). The data at every level are checked again
        anyway, which gives the same result when eliminated levels receive no more patients.

    Returns
    -------
    Boin12Decision

    Examples
    --------
    The paper's example (p.1396; ``escalation``'s ``fit('1NNN 2ENT 3ETT 2EEN')``: dose 2):

    >>> settings = Boin12Settings(target_toxicity=0.35, efficacy_lower_limit=0.25)
    >>> decision = boin12_next_dose(settings, 1, [3, 6, 3, 0, 0], [0, 1, 2, 0, 0], [0, 3, 1, 0, 0])
    >>> decision.action, decision.next_level_index
    ('stay', 1)
    >>> decision.reason
    '1 DLT in 6 patients at level 2 (rate 0.17) <= escalation boundary 1 (lambda_e 0.276): of the admissible levels 1-3, level 2 has the highest desirability Pr(utility > 70.5) (level 1: 0.113, level 2: 0.286, level 3: 0.080): stay at level 2.'
    """
    n_patients, n_dlt, n_responses, n_both = _check_outcome_counts(
        settings, n_patients_by_level, n_dlt_by_level, n_responses_by_level, n_dlt_and_response_by_level
    )
    n_levels = n_patients.size
    d = check_level(current_level_index, n_levels, "current_level_index")
    n, y = int(n_patients[d]), int(n_dlt[d])
    if n < 1:
        raise ValueError(f"the current level {d} (level {d + 1} counted from 1) has no patients")
    previously = check_eliminated(eliminated_by_level, n_levels, nested=False)
    if previously[d]:
        raise ValueError(f"current_level {d} is eliminated; BOIN12 never treats patients at an eliminated level")

    x = boin12_quasi_events(settings, n_patients, n_dlt, n_responses, n_both)
    desirability = boin12_desirability(settings, n_patients, x)
    too_toxic = np.logical_or.accumulate(boin12_too_toxic(settings, n_patients, n_dlt))
    futile = boin12_futile(settings, n_patients, n_responses)
    eliminated = too_toxic | futile | previously
    boundaries = settings.boundaries(max(n, MIN_PATIENTS_TO_ELIMINATE))
    escalate_at_most = boundaries.escalate_at_most[n - 1]
    deescalate_at_least = boundaries.deescalate_at_least[n - 1]
    shown = d + 1
    observed = f"{plural(y, 'DLT')} in {plural(n, 'patient')} at level {shown} (rate {y / n:.2f})"
    benchmark = f"Pr(utility > {settings.utility_benchmark:.4g})"

    def decide(action: Action, next_level: int | None, sentence: str, candidates=(), stopped_for=None):
        return Boin12Decision(action, next_level, sentence, tuple(map(float, desirability)),
                              tuple(map(bool, too_toxic)), tuple(map(bool, futile)), tuple(map(bool, eliminated)),
                              tuple(int(c) for c in candidates), stopped_for)

    if too_toxic[0]:
        lowest = _toxicity_sentence(settings, int(n_patients[0]), int(n_dlt[0]), 0)
        return decide("stop", None, f"{lowest}: level 1 and every level above are too toxic; stop the trial with no "
                      "level selected.", stopped_for="lowest_level_too_toxic")
    summary = _eliminated_summary(too_toxic, futile)
    if eliminated.all():
        return decide("stop", None, f"No level is admissible ({summary}): stop the trial with no level selected.",
                      stopped_for="no_admissible_level")
    if settings.max_patients_per_level is not None and n >= settings.max_patients_per_level:
        return decide("stop", None, f"{plural(n, 'patient')} at level {shown} reach the limit of "
                      f"{settings.max_patients_per_level} per level: stop the trial and select the dose with "
                      "boin12_select_dose.", stopped_for="patients_at_level")

    lower = _nearest_admissible(eliminated, d, -1)
    upper = _nearest_admissible(eliminated, d, +1)
    if y >= deescalate_at_least:
        why = (f"{observed} >= de-escalation boundary {deescalate_at_least} "
               f"(lambda_d {boundaries.lambda_deescalate:.3f})")
        if lower is not None:
            return decide("deescalate", lower, f"{why}: de-escalate to level {lower + 1}.")
        if not eliminated[d]:
            where = "the lowest level" if d == 0 else "the lowest admissible level"
            return decide("stay", d, f"{why}, but level {shown} is {where}: stay at level {shown}.")
        return decide("stop", None, f"{why} and no admissible level is lower ({summary}): stop the trial with no "
                      "level selected.", stopped_for="no_admissible_level")

    if y <= escalate_at_most:
        why = f"{observed} <= escalation boundary {escalate_at_most} (lambda_e {boundaries.lambda_escalate:.3f})"
        upper_allowed = True
    else:
        upper_allowed = n < settings.stay_patients
        why = (f"{observed} is between the boundaries (escalate if <= {escalate_at_most}, de-escalate if "
               f">= {deescalate_at_least})")
        if not upper_allowed and upper is not None:
            why += f" with {n} >= N* = {settings.stay_patients} patients, so no higher level is considered"
    candidates = sorted(
        level for level in (lower, None if eliminated[d] else d, upper if upper_allowed else None) if level is not None
    )
    if not candidates:
        return decide("stop", None, f"{why}, but no candidate level is admissible ({summary}): stop the trial with "
                      "no level selected.", stopped_for="no_admissible_level")
    values = desirability[candidates]
    best = candidates[int(np.flatnonzero(values == values.max())[-1])]  # the highest level on ties
    shown_candidates = _level_list(candidates)
    listing = ", ".join(f"level {level + 1}: {value:.3f}" for level, value in zip(candidates, values, strict=True))
    choice = (f"{why}: of the admissible {shown_candidates}, level {best + 1} has the highest desirability "
              f"{benchmark} ({listing})" if len(candidates) > 1 else
              f"{why}: level {best + 1} is the only admissible candidate ({benchmark} = {values[0]:.3f})")

    explore = settings.exploration_patients
    if explore is not None and n >= explore and upper is not None and n_patients[upper] == 0 and best != upper:
        return decide("escalate", upper, f"{choice}; but with {n} >= {explore} patients at level {shown} and level "
                      f"{upper + 1} untreated, explore it: escalate to level {upper + 1}.", candidates)
    return decide(_action(best, d), best, f"{choice}: {_move(best, d)}.", candidates)


# ---- the final selection --------------------------------------------------------------------


@dataclass(frozen=True)
class Boin12Selection:
    """The optimal biological dose at the end of a BOIN12 trial (see :func:`boin12_select_dose`).

    Attributes
    ----------
    selected_level_index : int or None
        0-based OBD; None when no level is selected.
    mtd_level_index : int or None
        0-based MTD from BOIN's ``select.mtd`` at phi_T; None when none.
    posterior_mean_utility : tuple of float
        100 (alpha + x) / (alpha + beta + n) at every level (the prior mean where untreated).
    isotonic_toxicity : tuple of float
        The isotonic DLT estimates behind the MTD (nan where not admissible).
    too_toxic, futile : tuple of bool
    reason : str
    """

    selected_level_index: int | None
    mtd_level_index: int | None
    posterior_mean_utility: tuple[float, ...]
    isotonic_toxicity: tuple[float, ...]
    too_toxic: tuple[bool, ...]
    futile: tuple[bool, ...]
    reason: str


def boin12_select_dose(
    settings: Boin12Settings,
    n_patients_by_level: Sequence[int],
    n_dlt_by_level: Sequence[int],
    n_responses_by_level: Sequence[int],
    *,
    n_dlt_and_response_by_level: Sequence[int] | None = None,
) -> Boin12Selection:
    """The OBD at the end of a BOIN12 trial (Lin et al. 2020 and its Data Supplement, section 4).

    1. The MTD is the level BOIN's ``select.mtd`` selects at phi_T with cutoff C_T
       (:func:`~lupusbayes.decisions.boin.boin_select_mtd`: isotonic regression of the DLT
       estimates of the treated, non-eliminated levels, the one closest to phi_T). No MTD, no OBD.
    2. The OBD is the level with the highest posterior-mean utility among the treated levels at
       or below the MTD that are neither too toxic nor futile (the lowest of tied levels).

    Examples
    --------
    The end of the paper's worked example (Data Supplement Figure S2; the trial stops with 12
    patients at level 4):

    >>> settings = Boin12Settings(0.35, 0.25)
    >>> selection = boin12_select_dose(settings, [3, 3, 6, 12, 6], [0, 1, 1, 3, 3], [0, 1, 2, 6, 3],
    ...                                n_dlt_and_response_by_level=[0, 1, 0, 2, 2])
    >>> selection.mtd_level_index, selection.selected_level_index
    (3, 3)
    """
    n_patients, n_dlt, n_responses, n_both = _check_outcome_counts(
        settings, n_patients_by_level, n_dlt_by_level, n_responses_by_level, n_dlt_and_response_by_level
    )
    x = boin12_quasi_events(settings, n_patients, n_dlt, n_responses, n_both)
    utility = boin12_posterior_mean_utility(settings, n_patients, x)
    too_toxic = np.logical_or.accumulate(boin12_too_toxic(settings, n_patients, n_dlt))
    futile = boin12_futile(settings, n_patients, n_responses)
    mtd = boin_select_mtd(n_patients, n_dlt, target=settings.target_toxicity, cutoff_eliminate=settings.toxicity_cutoff)

    def select(level: int | None, reason: str) -> Boin12Selection:
        return Boin12Selection(level, mtd.selected_level_index, tuple(map(float, utility)), mtd.isotonic_estimates,
                               tuple(map(bool, too_toxic)), tuple(map(bool, futile)), reason)

    if mtd.selected_level_index is None:
        return select(None, f"No MTD: {mtd.reason}")
    top = mtd.selected_level_index
    eligible = [level for level in range(top + 1)
                if n_patients[level] > 0 and not too_toxic[level] and not futile[level]]
    if not eligible:
        return select(None, f"The MTD is level {top + 1}, but every treated level up to it is futile or too toxic "
                      f"({_eliminated_summary(too_toxic, futile)}): no level selected.")
    values = utility[eligible]
    best = eligible[int(np.argmax(values))]  # the lowest level on ties
    listing = ", ".join(f"level {level + 1}: {value:.1f}" for level, value in zip(eligible, values, strict=True))
    return select(best, f"The MTD is level {top + 1} (isotonic DLT estimate {mtd.isotonic_estimates[top]:.2f}, closest "
                  f"to {settings.target_toxicity:.2f}); among the admissible treated levels up to it, level {best + 1} "
                  f"has the highest posterior-mean utility ({listing}): select level {best + 1}.")


# ---- the safeguard: more toxicity never gives a higher level -----------------------------------

#: The safeguard enumerates every DLT count at or below the observed one, level by level; beyond this
#: many combinations (a long trial with many DLTs) it refuses rather than run for minutes.
MAX_SAFEGUARD_STATES = 100_000


def fewer_dlt_counts(n_dlt_by_level: Sequence[int]) -> Iterator[tuple[int, ...]]:
    """Every vector of DLT counts at or below ``n_dlt_by_level``, level by level (the observed one first)."""
    counts = tuple(int(y) for y in n_dlt_by_level)
    states = math.prod(y + 1 for y in counts)
    if states > MAX_SAFEGUARD_STATES:
        raise ValueError(f"the safeguard would compare {states} DLT counts (more than {MAX_SAFEGUARD_STATES}); "
                         "BOIN12 with its safeguard is meant for small trials")
    yield counts
    for fewer in itertools.product(*(range(y + 1) for y in counts)):
        if fewer != counts:
            yield fewer


def boin12_next_dose_safeguarded(
    settings: Boin12Settings,
    current_level_index: int,
    n_patients_by_level: Sequence[int],
    n_dlt_by_level: Sequence[int],
    n_responses_by_level: Sequence[int],
) -> Boin12Decision:
    """BOIN12 with a safeguard: one more DLT never gives a higher level.

    The published rule (:func:`boin12_next_dose`) can move *up* after a DLT: a DLT lowers the current
    level's desirability, and an untried level above, at its prior desirability, can then be the most
    desirable (1 DLT in 9 patients at level 1 stays; 2 in 9 escalate to level 2, with the paper's
    settings and 5 responses). An SRC does not escalate because of a DLT, and lupusbayes holds every design to that
    (more toxicity never gives a more aggressive recommendation). So the next level is the **lowest**
    of the published rule's levels for the observed DLT counts and for every smaller count, level by
    level, with the same patients and responses: the smallest monotone rule at or below the published
    one. A stop is kept (fewer DLTs never stop BOIN12 where more do not). When the safeguard moves the
    level, the reason says from where, and with which counts the published rule goes lower.

    The utilities must be additive (the published defaults are), so that removing a DLT leaves the
    responses as they were.

    Examples
    --------
    >>> settings = Boin12Settings(0.35, 0.25)
    >>> boin12_next_dose(settings, 0, [9, 0, 0], [1, 0, 0], [5, 0, 0]).next_level_index  # 1 DLT: stay
    0
    >>> boin12_next_dose(settings, 0, [9, 0, 0], [2, 0, 0], [5, 0, 0]).next_level_index  # 2 DLTs: up
    1
    >>> boin12_next_dose_safeguarded(settings, 0, [9, 0, 0], [2, 0, 0], [5, 0, 0]).next_level_index
    0
    """
    if not settings.additive_utility:
        raise ValueError("the safeguard needs additive utilities (u(response, no DLT) + u(DLT, no response) = "
                         "u(neither) + u(both)), as the published defaults are")
    published = boin12_next_dose(settings, current_level_index, n_patients_by_level, n_dlt_by_level,
                                 n_responses_by_level)
    if published.action == "stop":
        return published
    lowest, lowest_counts = published.next_level_index, None
    for fewer in fewer_dlt_counts(n_dlt_by_level):
        decision = boin12_next_dose(settings, current_level_index, n_patients_by_level, fewer, n_responses_by_level)
        if decision.action != "stop" and decision.next_level_index < lowest:
            lowest, lowest_counts = decision.next_level_index, fewer
    if lowest_counts is None:
        return published
    action = _action(lowest, current_level_index)
    reason = (f"{published.reason} Safeguard (more toxicity never gives a higher level): with fewer DLTs "
              f"({', '.join(map(str, lowest_counts))} by level) BOIN12 gives level {lowest + 1}, so "
              f"{_move(lowest, current_level_index)}, not level {published.next_level_index + 1}.")
    return replace(published, action=action, next_level_index=lowest, reason=reason)


def boin12_select_dose_safeguarded(
    settings: Boin12Settings,
    n_patients_by_level: Sequence[int],
    n_dlt_by_level: Sequence[int],
    n_responses_by_level: Sequence[int],
    *,
    eligible_by_level: Sequence[bool] | None = None,
) -> Boin12Selection:
    """The OBD (:func:`boin12_select_dose`) with the same safeguard: the lowest selection over the
    observed DLT counts and every smaller count (no selection counts as the lowest), among the levels
    ``eligible_by_level`` allows (for instance, given to enough patients). A DLT can otherwise move the
    OBD up, by lowering a lower level's utility below a higher one's.

    Examples
    --------
    >>> settings = Boin12Settings(0.35, 0.25)
    >>> boin12_select_dose_safeguarded(settings, [6, 6, 0], [1, 1, 0], [2, 3, 0]).selected_level_index
    1
    """
    if not settings.additive_utility:
        raise ValueError("the safeguard needs additive utilities, as the published defaults are")
    eligible = (np.ones(len(n_patients_by_level), dtype=bool) if eligible_by_level is None
                else np.asarray(eligible_by_level, dtype=bool))
    observed = _eligible_selection(settings, n_patients_by_level, n_dlt_by_level, n_responses_by_level, eligible)
    if observed.selected_level_index is None:
        return observed
    lowest, lowest_counts = observed.selected_level_index, None
    for fewer in fewer_dlt_counts(n_dlt_by_level):
        level = _eligible_selection(settings, n_patients_by_level, fewer, n_responses_by_level,
                                    eligible).selected_level_index
        if level is None:
            return replace(observed, selected_level_index=None,
                           reason=f"{observed.reason} Safeguard: with fewer DLTs ({', '.join(map(str, fewer))} by "
                                  "level) no level would be selected, so none is.")
        if level < lowest:
            lowest, lowest_counts = level, fewer
    if lowest_counts is None:
        return observed
    return replace(observed, selected_level_index=lowest,
                   reason=f"{observed.reason} Safeguard (more toxicity never gives a higher dose): with fewer DLTs "
                          f"({', '.join(map(str, lowest_counts))} by level) the OBD is level {lowest + 1}: select "
                          f"level {lowest + 1}.")


def _eligible_selection(settings, n_patients, n_dlt, n_responses, eligible: np.ndarray) -> Boin12Selection:
    """:func:`boin12_select_dose`, the OBD chosen among ``eligible`` levels only (the same utility rule)."""
    selection = boin12_select_dose(settings, n_patients, n_dlt, n_responses)
    level = selection.selected_level_index
    if level is None or eligible[level]:
        return selection
    top = selection.mtd_level_index
    candidates = [lv for lv in range(top + 1) if eligible[lv] and n_patients[lv] > 0
                  and not selection.too_toxic[lv] and not selection.futile[lv]]
    if not candidates:
        return replace(selection, selected_level_index=None,
                       reason=f"{selection.reason} But level {level + 1} was given to too few patients, and no "
                              "admissible level at or below the MTD was given to enough: no level selected.")
    utility = np.asarray(selection.posterior_mean_utility)
    best = candidates[int(np.argmax(utility[candidates]))]
    return replace(selection, selected_level_index=best,
                   reason=f"{selection.reason} But level {level + 1} was given to too few patients: among those "
                          f"given to enough, level {best + 1} has the highest posterior-mean utility: select level "
                          f"{best + 1}.")


# ---- the desirability table -----------------------------------------------------------------


def boin12_desirability_table(settings: Boin12Settings, sample_sizes: Sequence[int]) -> tuple[dict[str, object], ...]:
    """The rank-based desirability score (RDS) table of Lin et al. (2020), Table 3.

    For every number of patients ``n`` in ``sample_sizes`` and every count of DLTs and of
    responses from 0 to ``n`` (marginal counts, so the utilities must be additive), the row
    gives admissibility and Pr(utility > u_b | data); the RDS is the rank of that probability
    among the admissible rows of the whole table (ties get their average rank, as R's
    ``rank``; ``escalation``'s ``boin12_rds``), and ``"E"`` (eliminated) for inadmissible rows.

    Parameters
    ----------
    settings : Boin12Settings
    sample_sizes : sequence of int
        Numbers of patients, each >= 0 (the paper: 0, 3, 6, 9).

    Returns
    -------
    tuple of dict
        Keys ``n_patients``, ``n_dlt``, ``n_responses``, ``admissible`` (bool),
        ``probability_above_benchmark`` (float) and ``desirability_score`` (float or ``"E"``).

    Examples
    --------
    >>> settings = Boin12Settings(0.35, 0.25)
    >>> table = boin12_desirability_table(settings, [0, 3, 6, 9])
    >>> [row["desirability_score"] for row in table if (row["n_patients"], row["n_dlt"], row["n_responses"])
    ...  in ((0, 0, 0), (3, 0, 3), (9, 2, 3), (9, 4, 0))]
    [60.0, 91.0, 32.5, 'E']
    """
    if not settings.additive_utility:
        raise ValueError("the desirability table uses marginal counts, which needs additive utilities")
    sizes = [int(size) for size in sample_sizes]
    if not sizes or any(size < 0 for size in sizes):
        raise ValueError(f"sample_sizes must be a non-empty sequence of whole numbers >= 0 (got {list(sample_sizes)})")
    keys = [(n, y, e) for n in sizes for y in range(n + 1) for e in range(n + 1)]
    n, y, e = (np.array(column, dtype=float) for column in zip(*keys, strict=True))
    probability = boin12_desirability(settings, n, boin12_quasi_events(settings, n, y, e))
    tail_dlt = special.betaincc(settings.prior_alpha + y, settings.prior_beta + n - y, settings.target_toxicity)
    tail_response = special.betainc(settings.prior_alpha + e, settings.prior_beta + n - e,
                                    settings.efficacy_lower_limit)
    # The published table (and escalation's boin12_rds) applies admissibility at every n, also below 3.
    admissible = (tail_dlt <= settings.toxicity_cutoff) & (tail_response <= settings.futility_cutoff)
    ranks = np.full(len(keys), np.nan)
    ranks[admissible] = stats.rankdata(probability[admissible], method="average")
    return tuple(
        {
            "n_patients": key[0],
            "n_dlt": key[1],
            "n_responses": key[2],
            "admissible": bool(ok),
            "probability_above_benchmark": float(p),
            "desirability_score": float(rank) if ok else "E",
        }
        for key, ok, p, rank in zip(keys, admissible, probability, ranks, strict=True)
    )


# ---- helpers --------------------------------------------------------------------------------


def _check_outcome_counts(settings, n_patients_by_level, n_dlt_by_level, n_responses_by_level, n_both_by_level):
    n_patients, n_dlt = check_level_counts(n_patients_by_level, n_dlt_by_level)
    _, n_responses = check_level_counts(n_patients, n_responses_by_level)
    if n_both_by_level is None:
        if not settings.additive_utility:
            raise ValueError("these utilities are not additive: give n_dlt_and_response_by_level (patients with both a "
                             "DLT and a response at each level)")
        return n_patients, n_dlt, n_responses, None
    _, n_both = check_level_counts(n_patients, n_both_by_level)
    if np.any(n_both > np.minimum(n_dlt, n_responses)) or np.any(n_dlt + n_responses - n_both > n_patients):
        raise ValueError(
            "n_dlt_and_response_by_level must be at most the DLTs and the responses at each level, and DLTs + "
            f"responses - both at most the patients (got {n_both.tolist()} with {n_dlt.tolist()} DLTs, "
            f"{n_responses.tolist()} responses in {n_patients.tolist()} patients)"
        )
    return n_patients, n_dlt, n_responses, n_both


def _nearest_admissible(eliminated: np.ndarray, level: int, step: int) -> int | None:
    """The nearest level below (step -1) or above (step +1) ``level`` that is not eliminated."""
    other = level + step
    while 0 <= other < eliminated.size:
        if not eliminated[other]:
            return other
        other += step
    return None


def _toxicity_sentence(settings: Boin12Settings, n: int, y: int, level: int) -> str:
    tail = float(special.betaincc(settings.prior_alpha + y, settings.prior_beta + n - y, settings.target_toxicity))
    return (f"{plural(y, 'DLT')} in {plural(n, 'patient')} at level {level + 1}: "
            f"Pr(p_DLT > {settings.target_toxicity:.2f}) = {tail:.3f} > {settings.toxicity_cutoff}")


def _eliminated_summary(too_toxic: np.ndarray, futile: np.ndarray) -> str:
    parts = []
    toxic = np.flatnonzero(too_toxic)
    if toxic.size:
        parts.append(f"{_level_list(toxic)} too toxic")
    useless = np.flatnonzero(futile & ~too_toxic)
    if useless.size:
        parts.append(f"{_level_list(useless)} futile")
    return "; ".join(parts) if parts else "none eliminated"


def _level_list(levels) -> str:
    """'level 2', 'levels 1-3' or 'levels 1, 3' (counted from 1)."""
    shown = [int(level) + 1 for level in levels]
    if len(shown) == 1:
        return f"level {shown[0]}"
    if shown == list(range(shown[0], shown[-1] + 1)):
        return f"levels {shown[0]}-{shown[-1]}"
    return "levels " + ", ".join(map(str, shown))


def _action(next_level: int, current: int) -> Action:
    return "escalate" if next_level > current else "deescalate" if next_level < current else "stay"


def _move(next_level: int, current: int) -> str:
    verb = {"escalate": "escalate to", "deescalate": "de-escalate to", "stay": "stay at"}[_action(next_level, current)]
    return f"{verb} level {next_level + 1}"
