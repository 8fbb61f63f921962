"""Decision rules: small pieces, each answering one question with its numbers.

Every rule reads a :class:`DecisionContext` (the spec, the trial state, the posteriors) and
returns a :class:`RuleVerdict`. A verdict can

* restrict the levels the next cohort may be given (``allowed``: EWOC, no skipping, BOIN's
  elimination, a failed convergence gate);
* ask to wait before dosing at some levels (``wait_days``: sentinel, group window) or limit
  how many patients are enrolled next (``max_enrol``: sentinel);
* hold all dosing for some days and decide again then (``hold_days``: the DLT window, while
  patients are inside it; ``hold_exempt_level`` is the one level whose open cohort may still be
  filled meanwhile);
* stop the trial (``stop``: sample size reached, the dose range done, the 3+3's stop);
* rank the levels in order of preference (``preference``): the one *proposal* rule of a design.

:func:`~lupusbayes.decisions.recommend.decide` combines verdicts only with operations that do
not depend on order (intersection of allowed sets, the longest wait, the smallest enrolment,
any stop, the longest hold), then gives the next cohort the most preferred allowed level. So no list of rules,
in any order, can recommend a level a rule forbids, and shuffling the list changes nothing.

Levels are 0-based in the code; sentences count them from 1, as protocols do.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import numpy as np

from lupusbayes.decisions.boin import BoinBoundaries, boin_boundaries, boin_next_dose
from lupusbayes.decisions.boin12 import Boin12Settings, boin12_next_dose_safeguarded
from lupusbayes.decisions.crm import CrmModel, crm_next_dose, tite_weights
from lupusbayes.decisions.tite_boin import TiteBoinDecision, tite_boin_next_dose
from lupusbayes.decisions.posterior import DrawsPosterior, Estimate, ExactPosterior
from lupusbayes.decisions.state import TrialState
from lupusbayes.decisions.three_plus_three import MAX_PATIENTS_PER_LEVEL, three_plus_three_next
from lupusbayes.dosing import dose_label
from lupusbayes.errors import DecisionError
from lupusbayes.spec import LossSettings, TrialSpec

__all__ = [
    "DecisionContext", "RuleVerdict", "DoseCheck", "Rule",
    "Ewoc", "NoSkipping", "Sentinel", "GroupWindow", "DltWindow", "SampleSize", "ConvergenceGate", "EndOfDoseRange",
    "LupusbayesEscalation", "HighestAdmissible", "LossBased", "BoinRule", "ThreePlusThreeRule", "CrmRule",
    "TimeToEventWindow", "STOP_CRM_LOWEST_TOO_TOXIC", "TOXICITY_STOPS", "crm_patients", "Boin12Rule",
    "ResponseAssessment", "STOP_BOIN12_TOO_TOXIC", "STOP_BOIN12_NO_ADMISSIBLE", "boin12_counts", "TiteBoinRule", "unassessed_responses",
    "probability_at_least", "efficacy_insufficient",
    "STOP_BOIN_ELIMINATED_LOWEST", "STOP_THREE_PLUS_THREE", "STOP_NO_LEVEL_ADMISSIBLE", "sample_size_stop",
]

#: Stop reasons that other code recognises (the recommendation's safe-end logic, the simulator's
#: vectorised path): named once here so a rewording cannot silently break them.
STOP_BOIN_ELIMINATED_LOWEST = "BOIN eliminated the lowest level"
STOP_THREE_PLUS_THREE = "the 3+3 stops"
STOP_NO_LEVEL_ADMISSIBLE = "no level is admissible"
STOP_CRM_LOWEST_TOO_TOXIC = "the CRM finds the lowest level too toxic"
STOP_BOIN12_TOO_TOXIC = "BOIN12 finds the lowest level too toxic"
STOP_BOIN12_NO_ADMISSIBLE = "BOIN12 has no admissible level (too toxic or futile)"
#: The stops for toxicity (no dose is then selected); the 3+3's own stop is one when it selects nothing
TOXICITY_STOPS = (STOP_NO_LEVEL_ADMISSIBLE, STOP_BOIN_ELIMINATED_LOWEST, STOP_CRM_LOWEST_TOO_TOXIC,
                  STOP_BOIN12_TOO_TOXIC)


def sample_size_stop(enrolled: int, max_patients: int) -> str:
    """The stop reason of :class:`SampleSize`."""
    return f"the sample size is reached ({enrolled} of {max_patients} patients)"

ToxicityPosterior = DrawsPosterior | ExactPosterior  # anything with has / mean / probability_at_least / updated


@dataclass(frozen=True)
class DecisionContext:
    """Everything a rule may read. ``failed_gates`` names fits that failed their convergence gate;
    ``alerts`` are said in the recommendation's headline (e.g. DLTs the toxicity model cannot see)."""

    spec: TrialSpec
    state: TrialState
    toxicity: ToxicityPosterior | None = None
    efficacy: DrawsPosterior | ExactPosterior | None = None
    failed_gates: tuple[str, ...] = ()
    forced: bool = False
    alerts: tuple[str, ...] = ()

    @property
    def n_levels(self) -> int:
        return len(self.spec.dosing.levels)

    def label(self, level: int) -> str:
        """``level 2 (7.5e7 cells/kg)``."""
        return f"level {level + 1} ({dose_label(self.spec.dosing.levels[level], self.spec.dosing.unit.value)})"


@dataclass(frozen=True)
class DoseCheck:
    """One row of a rule's table: a quantity at a level (``level_index`` counts from 0) against a threshold."""

    level_index: int
    quantity: str
    estimate: Estimate | None
    threshold: float | None
    passed: bool


@dataclass(frozen=True)
class RuleVerdict:
    """A rule's answer (see the module docstring for how verdicts combine)."""

    rule: str
    question: str
    verdict: str
    allowed: frozenset[int] | None = None
    preference: tuple[int, ...] | None = None
    wait_days: tuple[tuple[int, int], ...] = ()
    max_enrol: tuple[tuple[int, int], ...] = ()
    stop: str = ""
    checks: tuple[DoseCheck, ...] = ()
    close_calls: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    hold_days: int = 0
    hold_exempt_level: int | None = None


class Rule:
    """A decision rule: configuration (frozen) plus :meth:`evaluate`."""

    name: str = "rule"

    def evaluate(self, context: DecisionContext) -> RuleVerdict:  # pragma: no cover - interface
        raise NotImplementedError


def probability_at_least(posterior: ToxicityPosterior, threshold: float, name: str = "p_dlt") -> list[Estimate]:
    """P(``name`` >= threshold) at each level (P(DLT) by default), from any kind of posterior."""
    return posterior.probability_at_least(name, threshold)


def _close(estimate: Estimate, threshold: float, context: DecisionContext, what: str) -> tuple[str, ...]:
    k = context.spec.decision.close_call_mcse
    distance = estimate.distance_in_errors(threshold)
    if distance < k:
        return (f"close call: {what} = {estimate.text()} is within {distance:.1f} of its errors of {threshold:g} "
                f"(settled only beyond {k:g}); more draws, or a finer grid, decide it",)
    return ()


# ---- safety filters ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Ewoc(Rule):
    """Escalation with overdose control: P(P(DLT) in the overdose interval) < ``max_probability``.

    Babb, Rogatko & Zacks (1998); the 0.25 limit is OncoBayes2's default. The overdose interval
    is the spec's (``[dlt.intervals] overdose``).
    """

    max_probability: float = 0.25
    name: str = "EWOC"

    def evaluate(self, context: DecisionContext) -> RuleVerdict:
        intervals = context.spec.dlt.intervals
        overdose = [row[0] for row in interval_probabilities(context.toxicity,
                                                             intervals.edges[intervals.overdose_index:])]
        what = f"P({intervals.overdose})"
        checks, allowed, close = [], set(), []
        for level, estimate in enumerate(overdose):
            passed = estimate.value < self.max_probability
            checks.append(DoseCheck(level, what, estimate, self.max_probability, passed))
            allowed |= {level} if passed else set()
            close += _close(estimate, self.max_probability, context, f"{what} at {context.label(level)}")
        failing = [context.label(c.level_index) for c in checks if not c.passed]
        verdict = (f"{what} (P(DLT) in {intervals.label(intervals.overdose_index)}) is below {self.max_probability:g} at "
                   + (", ".join(context.label(level) for level in sorted(allowed)) or "no level")
                   + (f"; not at {', '.join(failing)}" if failing else ""))
        basis = getattr(context.toxicity, "dlt_basis", "")
        warnings = (f"DLT components missing: {basis}",) if " only" in basis else ()
        return RuleVerdict(self.name, f"Is the probability of overdosing below {self.max_probability:g}?", verdict,
                           allowed=frozenset(allowed), checks=tuple(checks), close_calls=tuple(close),
                           warnings=warnings)


@dataclass(frozen=True)
class NoSkipping(Rule):
    """At most ``max_step`` levels above the current one, and never above the highest level given + 1."""

    max_step: int = 1
    name: str = "no skipping"

    def evaluate(self, context: DecisionContext) -> RuleVerdict:
        state = context.state
        current, highest = state.current_level_index, state.highest_tried_level
        if current is None:
            start = context.spec.dosing.starting_level - 1
            return RuleVerdict(self.name, "Which levels can the first patients get?",
                               f"no patient yet: the trial starts at {context.label(start)} or below",
                               allowed=frozenset(range(start + 1)))
        ceiling = min(current + self.max_step, highest + self.max_step, context.n_levels - 1)
        return RuleVerdict(self.name, f"At most {self.max_step} level(s) above the current one?",
                           f"the current level is {current + 1} and the highest given {highest + 1}: "
                           f"the next cohort may go up to {context.label(ceiling)}",
                           allowed=frozenset(range(ceiling + 1)))


@dataclass(frozen=True)
class Sentinel(Rule):
    """A new dose opens with ``n_sentinels`` patient(s); nobody else there until they have ``days`` of safety data.

    The wait is the same with or without a DLT: a DLT in the sentinel is the case the wait exists
    for, and it is reviewed (by the SRC) at the end of the sentinel's window, never sooner.
    """

    n_sentinels: int = 1
    days: int = 28
    response_day: int = 0  # > 0: the rest of the group also waits for the sentinel's response (efficacy-driven rule)
    name: str = "sentinel"

    def evaluate(self, context: DecisionContext) -> RuleVerdict:
        state = context.state
        days = max(self.days, self.response_day)
        question = (f"Has the sentinel at a new dose had {self.days} days of safety follow-up"
                    + (f" and its response (day {self.response_day})?" if self.response_day > self.days else "?"))
        if state.counts_only:
            return RuleVerdict(self.name, question, "not assessable: the state holds counts only, no dates",
                               warnings=("sentinel rule not assessable from counts; check it by hand",))
        at_level = {level: [p for p in state.patients if p.level == level] for level in range(context.n_levels)}
        enrol = tuple((level, self.n_sentinels) for level, patients in at_level.items() if not patients)
        waits, sentences, warnings = [], [], []
        for level, patients in at_level.items():
            if not 0 < len(patients) <= self.n_sentinels:
                continue
            followed = [p.safety_days for p in patients if p.safety_days is not None]
            shortest = min(followed) if followed else days
            rules = context.spec.escalation
            with_dlt = [p.patient_id for p in patients if rules.pausing(p.dlt, p.crs_grade, p.icans_grade)]
            dlt_text = f" and a DLT or pausing event ({', '.join(with_dlt)})" if with_dlt else ""
            if shortest < days:
                waits.append((level, days - shortest))
                awaited = (" (its safety window, then its response)" if shortest < self.days < days
                           else " (for its response)" if self.days <= shortest < days else "")
                sentences.append(f"the sentinel at {context.label(level)} has {shortest} days{dlt_text}: the rest of "
                                 f"its group waits {days - shortest} more days{awaited}")
            elif len(patients) == self.n_sentinels:
                sentences.append(f"the sentinel at {context.label(level)} has {shortest} days of safety data{dlt_text}")
            if with_dlt:
                warnings.append(f"the sentinel at {context.label(level)} had a DLT or pausing event "
                                f"({', '.join(with_dlt)}): the SRC reviews it at the end of its window before anyone "
                                "else is dosed there")
        verdict = "; ".join(sentences) or "no dose is at its sentinel stage"
        if enrol:
            verdict += f"; a new dose opens with {self.n_sentinels} patient(s)"
        return RuleVerdict(self.name, question, verdict, wait_days=tuple(waits), max_enrol=enrol,
                           warnings=tuple(warnings))


@dataclass(frozen=True)
class DltWindow(Rule):
    """No new cohort, at any level, while a patient is inside the DLT window (with or without a DLT).

    The one exception is the cohort being dosed: while every patient inside the window belongs to
    the open group at the current level and none of them had a DLT (or an event the spec names as
    pausing, ``[escalation] pause_*``), that group's remaining places may be filled (the sentinel
    rule still governs the sentinel's own group). Time-to-event
    designs, which model pending patients, would be the explicit exception; none is implemented.
    """

    name: str = "DLT window"

    def evaluate(self, context: DecisionContext) -> RuleVerdict:
        state, window = context.state, context.state.window_days
        question = f"Has every patient completed the {window}-day DLT window?"
        if state.counts_only or not state.patients:
            return RuleVerdict(self.name, question, "yes (counts and outcome strings hold DLT-evaluable patients)"
                               if state.counts_only else "no patient yet")
        inside = state.inside_window()
        unknown = sum(p.safety_days is None for p in state.patients)
        if not inside:
            verdict = "yes: every patient has completed the DLT window"
            if unknown:
                verdict += f" ({unknown} without follow-up dates, taken as complete)"
            return RuleVerdict(self.name, question, verdict)
        hold = max(p.days_to_window_end(window) for p in inside)
        group = state.current_group()
        open_group = 0 < len(group) < context.spec.escalation.group_size
        ids = {p.patient_id for p in group}
        rules = context.spec.escalation
        with_dlt = [p for p in inside if rules.pausing(p.dlt, p.crs_grade, p.icans_grade)]
        fill = open_group and all(p.patient_id in ids for p in inside) and not with_dlt
        who = ", ".join(f"{p.patient_id} ({context.label(p.level)}, day {p.safety_days}"
                        + (", DLT" if p.dlt else ", pausing event" if p in with_dlt else "") + ")" for p in inside)
        verdict = (f"no: {len(inside)} patient(s) inside the window: {who}; no new cohort for {hold} days, "
                   "then decide again with their outcomes")
        if fill:
            verdict += (f"; the open group at {context.label(state.current_level_index)} may take its remaining "
                        f"{context.spec.escalation.group_size - len(group)} place(s) meanwhile")
        return RuleVerdict(self.name, question, verdict, hold_days=hold,
                           hold_exempt_level=state.current_level_index if fill else None)


@dataclass(frozen=True)
class GroupWindow(Rule):
    """No new group until every patient of the current one has ``days`` of safety data (the SRC's review)."""

    days: int = 28
    name: str = "group window"

    def evaluate(self, context: DecisionContext) -> RuleVerdict:
        state = context.state
        question = f"Has every patient of the current group had {self.days} days of safety follow-up?"
        if state.counts_only:
            return RuleVerdict(self.name, question, "not assessable: the state holds counts only, no dates",
                               warnings=("group window not assessable from counts; check it by hand",))
        group = state.current_group()
        if not group:
            return RuleVerdict(self.name, question, "no group yet")
        followed = [p.safety_days for p in group if p.safety_days is not None]
        shortest = min(followed) if followed else self.days
        wait = max(0, self.days - shortest)
        complete = len(group) >= context.spec.escalation.group_size
        current = state.current_level_index
        # a complete group closes before any new group; an open one may still take its own patients
        levels = range(context.n_levels) if complete else [level for level in range(context.n_levels) if level != current]
        verdict = (f"the current group ({len(group)} patient(s) at {context.label(current)}) has at least "
                   f"{shortest} days of safety data" + (f": a new group waits {wait} more days" if wait else ""))
        return RuleVerdict(self.name, question, verdict,
                           wait_days=tuple((level, wait) for level in levels) if wait else ())


@dataclass(frozen=True)
class SampleSize(Rule):
    """Stop when ``max_patients`` have been enrolled."""

    max_patients: int
    name: str = "sample size"

    def evaluate(self, context: DecisionContext) -> RuleVerdict:
        enrolled = context.state.n_patients
        remaining = self.max_patients - enrolled
        stop = sample_size_stop(enrolled, self.max_patients) if remaining <= 0 else ""
        return RuleVerdict(self.name, f"Fewer than {self.max_patients} patients so far?",
                           stop or f"{enrolled} of {self.max_patients} patients enrolled",
                           max_enrol=tuple((level, max(remaining, 0)) for level in range(context.n_levels)),
                           stop=stop)


@dataclass(frozen=True)
class ConvergenceGate(Rule):
    """No escalation from a fit that failed its convergence gate, unless forced (and then it says so)."""

    name: str = "convergence gate"

    def evaluate(self, context: DecisionContext) -> RuleVerdict:
        question = "Did every fit behind the decision pass its convergence gate?"
        if not context.failed_gates:
            return RuleVerdict(self.name, question, "yes")
        failed = ", ".join(context.failed_gates)
        if context.forced:
            return RuleVerdict(self.name, question, f"no ({failed}), FORCED by the user: the recommendation rests on a "
                               "fit that failed its convergence gate",
                               warnings=(f"FORCED: the {failed} fit failed its convergence gate",))
        current = context.state.current_level_index
        ceiling = context.spec.dosing.starting_level - 1 if current is None else current
        return RuleVerdict(self.name, question, f"no ({failed}): no escalation above {context.label(ceiling)}",
                           allowed=frozenset(range(ceiling + 1)),
                           warnings=(f"the {failed} fit failed its convergence gate: escalation withheld",))


@dataclass(frozen=True)
class EndOfDoseRange(Rule):
    """Stop when the highest level's group is complete and DLT-evaluable: the planned groups are done."""

    name: str = "end of the dose range"

    def evaluate(self, context: DecisionContext) -> RuleVerdict:
        state, top = context.state, context.n_levels - 1
        group = state.current_group()
        done = (state.current_level_index == top and len(group) >= context.spec.escalation.group_size
                and all(p.evaluable(state.window_days) for p in group))
        return RuleVerdict(self.name, "Is the highest dose's group complete?",
                           "yes: the planned dose groups are done" if done else "no",
                           stop="the highest dose's group is complete" if done else "")


# ---- proposals ----------------------------------------------------------------------------------


def _descending_from(level: int) -> tuple[int, ...]:
    return tuple(range(level, -1, -1))


def efficacy_insufficient(context: DecisionContext, level: int) -> tuple[bool | None, Estimate | None]:
    """Is efficacy at ``level`` clearly insufficient? (None: not assessable, no efficacy model.)"""
    settings = context.spec.decision.efficacy
    if context.efficacy is None or not context.efficacy.has("p_response"):
        return None, None
    at_least = context.efficacy.probability_at_least("p_response", settings.insufficient_rate)[level]
    estimate = Estimate(1.0 - at_least.value, at_least.error, at_least.error_kind)  # P(rate < insufficient_rate)
    return estimate.value >= settings.insufficient_probability, estimate


@dataclass(frozen=True)
class LupusbayesEscalation(Rule):
    """Escalate one level when the current group is complete, or (efficacy-driven) after a safe
    sentinel whose dose is clearly insufficient; otherwise hold. EWOC and the other filters decide
    whether the proposal can be followed; if not, the next admissible level below is given."""

    efficacy_driven: bool = True
    name: str = "escalation"

    def evaluate(self, context: DecisionContext) -> RuleVerdict:
        state, spec = context.state, context.spec
        current = state.current_level_index
        question = "Is the current group ready for the next dose?"
        if current is None:
            start = spec.dosing.starting_level - 1
            return RuleVerdict(self.name, question, f"no patient yet: start at {context.label(start)}",
                               preference=_descending_from(start))
        group = state.current_group()
        size, window = spec.escalation.group_size, state.window_days
        evaluable = [p for p in group if p.evaluable(window)]
        complete = len(group) >= size and len(evaluable) == len(group)
        insufficient, estimate = efficacy_insufficient(context, current) if self.efficacy_driven else (None, None)
        checks = ()
        if estimate is not None:
            settings = spec.decision.efficacy
            checks = (DoseCheck(current, f"P(response rate < {settings.insufficient_rate:g})", estimate,
                                settings.insufficient_probability, not insufficient),)
        sentinel_stage = (0 < len(group) <= spec.escalation.sentinel_patients and len(evaluable) == len(group)
                          and not any(p.dlt for p in group))
        unobserved = [p for p in group if p.responder is None]  # the shortcut never acts on an unseen response
        if sentinel_stage and unobserved and self.efficacy_driven and state.patients and not state.counts_only:
            insufficient = None
        up = _descending_from(current + 1) if current + 1 < context.n_levels else _descending_from(current)
        if complete:
            verdict = (f"the group at {context.label(current)} is complete: {len(group)} patients, "
                       f"{sum(p.dlt for p in group)} with a DLT; propose the next dose")
            return RuleVerdict(self.name, question, verdict, preference=up, checks=checks)
        if self.efficacy_driven and sentinel_stage and insufficient:
            settings = spec.decision.efficacy
            verdict = (f"efficacy-driven: the sentinel at {context.label(current)} is safe and efficacy there is clearly "
                       f"insufficient (P(response rate < {settings.insufficient_rate:g}) = {estimate.text()} >= "
                       f"{settings.insufficient_probability:g}); propose the next dose")
            return RuleVerdict(self.name, question, verdict, preference=up, checks=checks)
        pending = len(group) - len(evaluable)
        why = (f"{pending} patient(s) of the group are inside the DLT window" if pending
               else f"the group has {len(group)} of {size} patients")
        if sentinel_stage and insufficient is False:
            why += " and efficacy at the sentinel's dose is not clearly insufficient"
        elif sentinel_stage and unobserved and self.efficacy_driven:
            settings = spec.decision.efficacy
            known = min((settings.response_day - p.safety_days for p in unobserved if p.safety_days is not None),
                        default=None)
            why += (f" (efficacy not yet observable: the sentinel's month-{settings.month:g} response is known "
                    + (f"in {max(known, 0)} days)" if known is not None else "at its month-"
                       f"{settings.month:g} visit)"))
        elif sentinel_stage and insufficient is None and self.efficacy_driven:
            why += " (efficacy not assessable: no efficacy model)"
        return RuleVerdict(self.name, question, f"hold at {context.label(current)}: {why}",
                           preference=_descending_from(current), checks=checks)


@dataclass(frozen=True)
class HighestAdmissible(Rule):
    """The BLRM with EWOC (Babb et al. 1998): the highest level the filters allow."""

    name: str = "highest admissible dose"

    def evaluate(self, context: DecisionContext) -> RuleVerdict:
        return RuleVerdict(self.name, "Which is the highest dose the safety rules allow?",
                           "prefer the highest allowed level", preference=_descending_from(context.n_levels - 1))


def interval_probabilities(posterior: ToxicityPosterior, edges) -> list[list[Estimate]]:
    """P(P(DLT) in [edge_k, edge_k+1)) per level and interval (the last closed at 1)."""
    at_least = [probability_at_least(posterior, edge) for edge in edges[:-1]]
    n_levels = len(at_least[0])
    out = []
    for level in range(n_levels):
        row = []
        for k in range(len(edges) - 1):
            upper = at_least[k + 1][level] if k + 1 < len(at_least) else Estimate(0.0, 0.0, "mcse")
            low = at_least[k][level]
            row.append(Estimate(low.value - upper.value, float(np.hypot(low.error, upper.error)), low.error_kind))
        out.append(row)
    return out


@dataclass(frozen=True)
class LossBased(Rule):
    """crmPack's loss-based choice (``NextBestNCRMLoss``): least posterior expected loss among levels
    whose overdose probability is at most the limit."""

    settings: LossSettings = field(default_factory=LossSettings)
    name: str = "expected loss"

    def evaluate(self, context: DecisionContext) -> RuleVerdict:
        s = self.settings
        probabilities = interval_probabilities(context.toxicity, s.edges)
        first_overdose = list(s.edges).index(s.overdose_from)
        checks, losses, allowed = [], [], set()
        for level, row in enumerate(probabilities):
            loss = sum(weight * p.value for weight, p in zip(s.losses, row, strict=True))
            loss_error = float(np.sqrt(sum((weight * p.error) ** 2 for weight, p in zip(s.losses, row, strict=True))))
            overdose = sum(p.value for p in row[first_overdose:])
            admissible = overdose <= s.max_overdose_probability
            allowed |= {level} if admissible else set()
            losses.append(Estimate(loss, loss_error, row[0].error_kind))
            checks.append(DoseCheck(level, "expected loss", losses[-1], None, admissible))
            checks.append(DoseCheck(level, f"P(P(DLT) > {s.overdose_from:g})",
                                    Estimate(overdose, row[first_overdose].error, row[0].error_kind),
                                    s.max_overdose_probability, admissible))
        order = tuple(sorted(range(len(losses)), key=lambda level: (round(losses[level].value, 12), level)))
        close = ()
        candidates = [level for level in order if level in allowed]
        if len(candidates) >= 2:
            best, second = losses[candidates[0]], losses[candidates[1]]
            if abs(best.value - second.value) < context.spec.decision.close_call_mcse * np.hypot(best.error, second.error):
                close = (f"close call: the expected losses of {context.label(candidates[0])} and "
                         f"{context.label(candidates[1])} ({best.text()} vs {second.text()}) are within their errors",)
        verdict = "expected loss " + ", ".join(f"{context.label(level)} {losses[level].value:.3f}" for level in order)
        return RuleVerdict(self.name, "Which dose has the least expected loss?", verdict, allowed=frozenset(allowed),
                           preference=order, checks=tuple(checks), close_calls=close)


def _covering(boundaries: BoinBoundaries, n_patients: int) -> BoinBoundaries:
    """``boundaries``, extended (cached) when a level has more patients than its table covers."""
    if n_patients <= boundaries.max_patients:
        return boundaries
    return boin_boundaries(boundaries.target, max_patients=n_patients, p_saf=boundaries.p_saf, p_tox=boundaries.p_tox,
                           cutoff_eliminate=boundaries.cutoff_eliminate)


@dataclass(frozen=True)
class BoinRule(Rule):
    """BOIN (Liu & Yuan 2015; BOIN 2.7.2): interval boundaries on the current level's DLT rate, with elimination."""

    boundaries: BoinBoundaries
    name: str = "BOIN"

    def evaluate(self, context: DecisionContext) -> RuleVerdict:
        state = context.state
        n, y = state.evaluable_counts()
        current = state.current_level_index
        if current is None or n[current] == 0:
            start = context.spec.dosing.starting_level - 1 if current is None else current
            return RuleVerdict(self.name, "What do the BOIN boundaries say?",
                               f"no evaluable patient at the current level: treat at {context.label(start)}",
                               preference=_descending_from(start))
        question = "What do the BOIN boundaries say?"
        boundaries = _covering(self.boundaries, int(n.max()))
        first = next((level for level in range(context.n_levels)
                      if n[level] and boundaries.eliminates(int(n[level]), int(y[level]))), None)
        if first is not None and first < current:  # a lower level's data eliminate the current one too
            reason = (f"{int(y[first])} DLTs in {int(n[first])} patients eliminate {context.label(first)} and above")
            if first == 0:
                return RuleVerdict(self.name, question, reason, allowed=frozenset(), stop=STOP_BOIN_ELIMINATED_LOWEST)
            return RuleVerdict(self.name, question, f"{reason}: de-escalate", allowed=frozenset(range(first)),
                               preference=_descending_from(first - 1))
        eliminated_above = np.zeros(context.n_levels, dtype=bool)
        if first is not None and first > current:
            eliminated_above[first:] = True
        decision = boin_next_dose(current, n, y, boundaries, eliminated_by_level=eliminated_above)
        allowed = frozenset(level for level, gone in enumerate(decision.eliminated) if not gone)
        if decision.action == "stop":
            return RuleVerdict(self.name, question, decision.reason, allowed=allowed,
                               stop=STOP_BOIN_ELIMINATED_LOWEST)
        return RuleVerdict(self.name, question, decision.reason, allowed=allowed,
                           preference=_descending_from(decision.next_level_index))


def crm_patients(state: TrialState, *, weights: str | None = None) -> tuple[list[int], list[bool], list[float]]:
    """The patients the CRM reads, in order of enrolment: levels, DLTs and weights.

    Without ``weights`` (the CRM) the DLT-evaluable patients, each with weight 1; with a TITE
    scheme (``"linear"`` or ``"adaptive"``) also the patients still inside the window without a DLT,
    weighted by their follow-up (:func:`~lupusbayes.decisions.crm.tite_weights`). A counts-only
    state lists its patients level by level, the current level last.

    The adaptive weights read the DLT times: the follow-up of a patient with a DLT is its
    ``dlt_day``. A DLT without its day is refused (:class:`DecisionError`) when a patient without
    a DLT is inside the window, the only case where the day changes a weight; with every other
    patient past the window all weights are 1 whatever the days. A DLT day after the window is
    refused too (a state file refuses it when read; this catches a state built in Python).
    """
    window = state.window_days
    if state.counts_only:
        n, y = state.evaluable_counts()
        order = [level for level in range(state.n_levels) if level != state.current_level_index]
        order += [state.current_level_index] if state.current_level_index is not None else []
        levels = [level for level in order for _ in range(int(n[level]))]
        # which patient had the DLT is not known: the DLTs taken as the most recent (as TrialState.current_group)
        dlts = [i >= int(n[level]) - int(y[level]) for level in order for i in range(int(n[level]))]
        return levels, dlts, [1.0] * len(levels)
    patients = [p for p in state.patients if weights is not None or p.evaluable(window)]
    levels = [p.level for p in patients]
    dlts = [bool(p.dlt) for p in patients]
    if weights is None or not patients:
        return levels, dlts, [1.0] * len(levels)
    follow_up = [float(window if p.safety_days is None else min(p.safety_days, window)) for p in patients]
    if weights == "adaptive":
        undated = [p for p in patients if p.dlt and p.dlt_day is None]
        if undated and any(not p.dlt and days < window for p, days in zip(patients, follow_up, strict=True)):
            p = undated[0]
            line = f" (line {p.source_line})" if p.source_line is not None else ""
            raise DecisionError(
                f"{state.source}: the TITE-CRM's adaptive weights read the day of each DLT, and patient {p.patient_id}"
                f"{line} has a DLT without its dlt_day (days from the first infusion to the DLT; or dlt_date): give "
                f"it, or set [decision.crm] tite_weights = \"linear\"")
        late = [p for p in patients if p.dlt and p.dlt_day is not None and not 0 <= p.dlt_day <= window]
        if late:
            p = late[0]
            raise DecisionError(f"{state.source}: patient {p.patient_id}'s dlt_day {p.dlt_day} is outside the DLT "
                                f"window (0 to {window} days): a toxicity after the window is not a DLT")
        follow_up = [float(p.dlt_day) if p.dlt and p.dlt_day is not None else days
                     for p, days in zip(patients, follow_up, strict=True)]
    return levels, dlts, [float(w) for w in tite_weights(follow_up, window, dlts, scheme=weights)]


@dataclass(frozen=True)
class CrmRule(Rule):
    """The CRM (O'Quigley, Pepe & Fisher 1990) or, with ``tite_weights``, the TITE-CRM (Cheung & Chappell
    2000), as dfcrm computes them: the level whose estimate is closest to the target."""

    model: CrmModel
    no_skipping: bool = True
    coherent_escalation: bool = False
    stop_probability: float | None = None
    tite_weights: str | None = None

    @property
    def name(self) -> str:  # type: ignore[override]
        return "TITE-CRM" if self.tite_weights else "CRM"

    def evaluate(self, context: DecisionContext) -> RuleVerdict:
        state = context.state
        question = f"What does the {self.name} say?"
        levels, dlts, weights = crm_patients(state, weights=self.tite_weights)
        current = state.current_level_index
        if not levels:
            start = context.spec.dosing.starting_level - 1 if current is None else current
            return RuleVerdict(self.name, question, f"no patient to read yet: treat at {context.label(start)}",
                               preference=_descending_from(start))
        last_cohort = sum(p.evaluable(state.window_days) for p in state.current_group())
        decision = crm_next_dose(self.model, levels, dlts, patient_weight=weights if self.tite_weights else None,
                                 current_level_index=current, no_skipping=self.no_skipping,
                                 coherent_escalation=self.coherent_escalation,
                                 last_cohort_size=max(last_cohort, 1), stop_probability=self.stop_probability)
        reason = decision.reason
        if self.tite_weights and any(w < 1.0 for w in weights):
            scheme = f"{self.tite_weights} weights"
            if self.tite_weights == "adaptive":
                days = sorted(p.dlt_day for p in state.patients if p.dlt and p.dlt_day is not None)
                scheme += (f" from the DLT day(s) {', '.join(map(str, days))}" if days
                           else " (no DLT yet: the linear ones)")
            reason += (f" (patients inside the DLT window weighted by their follow-up, {scheme}: "
                       + ", ".join(f"{w:.2f}" for w in weights if w < 1.0) + ")")
        if decision.action == "stop":
            return RuleVerdict(self.name, question, reason, allowed=frozenset(), stop=STOP_CRM_LOWEST_TOO_TOXIC)
        return RuleVerdict(self.name, question, reason, preference=_descending_from(decision.next_level_index))


def boin12_counts(state: TrialState) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Patients, DLTs and responders per level among the DLT-evaluable patients (a response not yet
    assessed counts as none; :class:`ResponseAssessment` waits for it). Refuses states without responses."""
    if state.counts_only or (state.patients and all(p.responder is None and p.safety_days is None
                                                    for p in state.patients)):
        raise DecisionError(f"{state.source}: BOIN12 reads each patient's response as well as the DLTs; outcome "
                            "strings and counts files carry DLTs only: give a cohort file with the SLEDAI-2K visits")
    n, y = state.evaluable_counts()
    r = np.zeros(state.n_levels, dtype=int)
    for patient in state.patients:
        if patient.evaluable(state.window_days) and patient.responder:
            r[patient.level] += 1
    return n, y, r


def unassessed_responses(state: TrialState, response_day: int) -> list:
    """Patients whose response is not assessed yet: no response and fewer than ``response_day`` days of follow-up."""
    return [p for p in state.patients if p.responder is None and p.safety_days is not None
            and p.safety_days < response_day]


@dataclass(frozen=True)
class ResponseAssessment(Rule):
    """Designs that read each patient's response (BOIN12) decide once the patients dosed have reached
    the day their response is assessed (``[decision.efficacy] month``), as they wait for the DLT window."""

    response_day: int
    name: str = "response assessment"

    def evaluate(self, context: DecisionContext) -> RuleVerdict:
        state = context.state
        question = f"Has every patient's response been assessed (day {self.response_day})?"
        waiting = unassessed_responses(state, self.response_day)
        if not waiting:
            return RuleVerdict(self.name, question, "yes" if state.patients else "no patient yet")
        hold = max(self.response_day - p.safety_days for p in waiting)
        who = ", ".join(f"{p.patient_id} (day {p.safety_days})" for p in waiting)
        return RuleVerdict(self.name, question, f"no: {who}; no new cohort for {hold} days, then decide again with "
                           "their responses", hold_days=hold)


@dataclass(frozen=True)
class Boin12Rule(Rule):
    """BOIN12 (Lin et al. 2020) with lupusbayes' safeguard that one more DLT never gives a higher level
    (:func:`~lupusbayes.decisions.boin12.boin12_next_dose_safeguarded`)."""

    settings: Boin12Settings
    name: str = "BOIN12"

    def evaluate(self, context: DecisionContext) -> RuleVerdict:
        state = context.state
        question = "What does BOIN12 say (toxicity and efficacy)?"
        current = state.current_level_index
        n, y, r = boin12_counts(state)
        response_day = context.spec.decision.efficacy.response_day
        unassessed = unassessed_responses(state, response_day)
        if unassessed and current is not None:  # never decide (or stop) on responses not yet assessed
            return RuleVerdict(self.name, question, f"waiting for {len(unassessed)} patient(s)' response (day "
                               f"{response_day}) before deciding", preference=_descending_from(current))
        if current is None or n[current] == 0:
            start = context.spec.dosing.starting_level - 1 if current is None else current
            return RuleVerdict(self.name, question, f"no evaluable patient at the current level: treat at "
                               f"{context.label(start)}", preference=_descending_from(start))
        try:
            decision = boin12_next_dose_safeguarded(self.settings, current, n, y, r)
        except ValueError as error:
            raise DecisionError(f"{state.source}: {error}") from None
        allowed = frozenset(level for level, gone in enumerate(decision.eliminated) if not gone)
        missing = [p.patient_id for p in state.patients if p.responder is None and p.evaluable(state.window_days)]
        warnings = ((f"{len(missing)} DLT-evaluable patient(s) without a response assessment ({', '.join(missing)}): "
                     "BOIN12 counts them as non-responders; record their SLEDAI-2K visit at the response month",)
                    if missing else ())
        if decision.action == "stop":
            stop = (STOP_BOIN12_TOO_TOXIC if decision.stopped_for == "lowest_level_too_toxic"
                    else STOP_BOIN12_NO_ADMISSIBLE)
            return RuleVerdict(self.name, question, decision.reason, allowed=frozenset(), stop=stop, warnings=warnings)
        return RuleVerdict(self.name, question, decision.reason, allowed=allowed, warnings=warnings,
                           preference=_descending_from(decision.next_level_index))


#: The TITE-BOIN safeguard reverts every subset of the DLTs seen inside the window: at most this many such DLTs.
MAX_SAFEGUARD_DLTS_IN_WINDOW = 12


@dataclass(frozen=True)
class TiteBoinRule(Rule):
    """TITE-BOIN (Yuan et al. 2018; :func:`~lupusbayes.decisions.tite_boin.tite_boin_next_dose`) on the state's
    patients, with the safeguard that a DLT never lifts a suspension or raises the level: the decision is the
    most conservative (stop, then suspend, then the lowest level) of the published rule's decisions on the
    state and on the state with any of the DLTs seen inside the window not (yet) seen. As published, a
    pending patient's DLT completes that patient, which can end a suspension that would otherwise hold."""

    boundaries: BoinBoundaries
    max_pending_fraction: float = 0.5
    name: str = "TITE-BOIN"

    def _published(self, state: TrialState, current: int, reverted: frozenset[str] = frozenset()) -> TiteBoinDecision:
        window = state.window_days
        complete, dlts = np.zeros(state.n_levels, dtype=int), np.zeros(state.n_levels, dtype=int)
        if state.counts_only:
            complete, dlts = state.evaluable_counts()
        pending: list[list[float]] = [[] for _ in range(state.n_levels)]
        for p in state.patients:
            dlt = p.dlt and p.patient_id not in reverted
            if dlt or p.safety_days is None or p.safety_days >= window:
                complete[p.level] += 1
                dlts[p.level] += int(dlt)
            else:
                pending[p.level].append(p.safety_days / window)
        most = int(max(complete[level] + len(pending[level]) for level in range(state.n_levels)))
        return tite_boin_next_dose(_covering(self.boundaries, most), current, complete, dlts, pending,
                                   max_pending_fraction=self.max_pending_fraction)

    def evaluate(self, context: DecisionContext) -> RuleVerdict:
        state = context.state
        question = "What does TITE-BOIN say (patients inside the window imputed from their follow-up)?"
        current = state.current_level_index
        if current is None:
            start = context.spec.dosing.starting_level - 1
            return RuleVerdict(self.name, question, f"no patient yet: treat at {context.label(start)}",
                               preference=_descending_from(start))
        published = self._published(state, current)
        if published.action == "stop":
            return RuleVerdict(self.name, question, published.reason, allowed=frozenset(),
                               stop=STOP_BOIN_ELIMINATED_LOWEST)
        window = state.window_days
        in_window = [p.patient_id for p in state.patients if p.dlt and p.safety_days is not None
                     and p.safety_days < window]
        if len(in_window) > MAX_SAFEGUARD_DLTS_IN_WINDOW:
            raise DecisionError(f"{state.source}: {len(in_window)} DLTs inside the window: more than the TITE-BOIN "
                                f"safeguard compares ({MAX_SAFEGUARD_DLTS_IN_WINDOW})")

        def rank(decision: TiteBoinDecision) -> int:  # stop, suspend, then the levels upwards
            return -1 if decision.action == "suspend" else decision.next_level_index

        chosen, why = published, ""
        for size in range(1, len(in_window) + 1):
            for subset in itertools.combinations(in_window, size):
                other = self._published(state, current, frozenset(subset))
                if other.action != "stop" and rank(other) < rank(chosen):
                    chosen = other
                    why = (f" Safeguard (a DLT never lifts a suspension or raises the level): without the DLT(s) of "
                           f"{', '.join(subset)}, still inside the window, TITE-BOIN would "
                           + ("suspend" if other.action == "suspend" else f"give level {other.next_level_index + 1}")
                           + ", so it does.")
        allowed = frozenset(level for level, gone in enumerate(published.eliminated) if not gone)
        if chosen.action == "suspend":
            waiting = [p for p in state.patients if p.level == current and p.safety_days is not None
                       and p.safety_days < window]
            # until the current level's pending patients have completed the window (a DLT seen sooner is read by
            # the next decision); published TITE-BOIN decides again at each completion, but one more pending
            # patient must never shorten a pause (the package's invariant)
            hold = max(1, max(window - p.safety_days for p in waiting)) if waiting else 1
            reason = published.reason + why if why else chosen.reason
            return RuleVerdict(self.name, question, f"{reason} Decide again in {hold} day(s), when the pending "
                               f"patients at {context.label(current)} have completed the window.", allowed=allowed,
                               hold_days=hold, preference=_descending_from(current))
        return RuleVerdict(self.name, question, published.reason + why, allowed=allowed,
                           preference=_descending_from(chosen.next_level_index))


@dataclass(frozen=True)
class TimeToEventWindow(Rule):
    """The time-to-event designs' replacement of the DLT window rule: they dose while patients are inside
    the window, reading each one's follow-up so far (the design's own rule, the one exception to "no new
    cohort while a patient is inside the DLT window"). Said in every output where it matters."""

    design: str = "TITE-CRM"
    name: str = "DLT window (time-to-event)"

    def evaluate(self, context: DecisionContext) -> RuleVerdict:
        state, window = context.state, context.state.window_days
        question = f"May the next cohort be dosed while patients are inside the {window}-day DLT window?"
        inside = state.inside_window()
        if not inside:
            return RuleVerdict(self.name, question, "no patient is inside the window")
        who = ", ".join(f"{p.patient_id} ({context.label(p.level)}, day {p.safety_days}"
                        + (", DLT" if p.dlt else "") + (f" on day {p.dlt_day}" if p.dlt and p.dlt_day is not None
                                                        else "") + ")" for p in inside)
        verdict = (f"yes, by the {self.design}'s own rule: {len(inside)} patient(s) inside the window ({who}) count "
                   "with the follow-up they have; the exception to the DLT window rule, which the other designs keep")
        warning = (f"{len(inside)} patient(s) inside the DLT window: the {self.design} decides with their follow-up "
                   "so far instead of waiting for them (its own rule; the other designs wait)")
        return RuleVerdict(self.name, question, verdict, warnings=(warning,))


@dataclass(frozen=True)
class ThreePlusThreeRule(Rule):
    """The 3+3 (Storer 1989), as the R package ``escalation`` implements it."""

    allow_deescalate: bool = False
    name: str = "3+3"

    def evaluate(self, context: DecisionContext) -> RuleVerdict:
        state = context.state
        question = "What does the 3+3 say?"
        current = state.current_level_index
        pending_here = [p for p in state.pending if p.level == current]
        if pending_here:  # the 3+3 reads complete cohorts: wait for them (the DLT window rule says how long)
            return RuleVerdict(self.name, question, f"{len(pending_here)} patient(s) at {context.label(current)} are "
                               "still inside the DLT window: the 3+3 decides when they have completed it",
                               preference=_descending_from(current))
        n, y = state.evaluable_counts()
        crowded = [level for level in range(context.n_levels) if n[level] > MAX_PATIENTS_PER_LEVEL]
        if crowded:
            raise DecisionError(f"{state.source}: the 3+3 treats at most {MAX_PATIENTS_PER_LEVEL} patients at a level; "
                                f"the state has {int(n[crowded[0]])} at {context.label(crowded[0])}: choose another design")
        evaluable_levels = [p.level for p in state.patients if p.evaluable(state.window_days)]
        last = (evaluable_levels[-1] if evaluable_levels else None) if not state.counts_only else current
        decision = three_plus_three_next(n, y, last if n.any() else None, allow_deescalate=self.allow_deescalate)
        if decision.action == "stop":
            return RuleVerdict(self.name, question, decision.reason, stop=STOP_THREE_PLUS_THREE,
                               preference=() if decision.selected_level_index is None else (decision.selected_level_index,))
        return RuleVerdict(self.name, question, decision.reason, preference=_descending_from(decision.next_level_index))
