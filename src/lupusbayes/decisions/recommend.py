"""From rule verdicts to one recommendation, and the table of what comes after each outcome.

:func:`decide` evaluates a design's rules and combines their verdicts with order-free
operations (see :mod:`lupusbayes.decisions.rules`): the next cohort gets the most preferred level
that every rule allows, waits as long as the longest wait, and is no larger than the smallest
enrolment limit; any stop stops. At the end of the trial the design selects a dose.
:func:`transition_table` repeats the decision after every possible outcome of the next cohort
(DLTs x responders), as crmPack's ``examine()`` and BOIN's printed tables do.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from datetime import date, timedelta
from typing import Any

import numpy as np

from lupusbayes.decisions.boin import boin_select_mtd
from lupusbayes.decisions.designs import Design, design_for
from lupusbayes.decisions.posterior import PARETO_K_LIMIT, Estimate
from lupusbayes.decisions.boin12 import boin12_select_dose_safeguarded
from lupusbayes.decisions.crm import crm_select_mtd
from lupusbayes.decisions.rules import (
    STOP_NO_LEVEL_ADMISSIBLE,
    STOP_THREE_PLUS_THREE,
    TOXICITY_STOPS,
    Boin12Rule,
    CrmRule,
    DecisionContext,
    RuleVerdict,
    boin12_counts,
    crm_patients,
)
from lupusbayes.decisions.state import PatientRecord
from lupusbayes.decisions.three_plus_three import classical_three_plus_three_mtd
from lupusbayes.dosing import dose_label

__all__ = ["Recommendation", "Selection", "decide", "transition_table", "Transition", "min_patients_at_selection",
           "CohortOutcome", "next_cohort_outcomes"]


@dataclass(frozen=True)
class Selection:
    """The dose selected when the trial ends, with the numbers behind it.

    ``provisional`` is True when patients were still inside the DLT window without a DLT
    (``n_pending`` of them): the selection must be confirmed once they have completed it.
    """

    level_index: int | None
    dose_label: str
    reason: str
    rows: tuple[dict[str, Any], ...] = ()
    provisional: bool = False
    n_pending: int = 0

    @property
    def level(self) -> int | None:
        """The selected level counted from 1, as the text and the protocol count it (None: no dose)."""
        return None if self.level_index is None else self.level_index + 1


@dataclass(frozen=True)
class Recommendation:
    """What the next cohort gets, when, how many, and why (every rule's verdict), or why the trial stops.

    ``action`` is ``"start"``, ``"escalate"``, ``"hold"``, ``"de-escalate"`` or ``"stop"``.
    :attr:`current_level` and :attr:`next_level` count from 1, as the text, the JSON and the
    protocol do; ``current_level_index`` and ``next_level_index`` are the same levels counted
    from 0 (positions in ``spec.dosing.levels``), as every ``*_index`` is. ``wait_days`` counts
    from the data cut-off (``earliest_date`` when the state has one). A hold for patients inside
    the DLT window doses nobody: ``n_next`` is 0, ``next_level`` None, and the trial decides again
    after ``wait_days`` with their outcomes (:attr:`paused`). The rules' verdicts
    (:class:`~lupusbayes.decisions.rules.RuleVerdict`) are internals and hold indices.
    """

    design: str
    action: str
    current_level_index: int | None
    next_level_index: int | None
    next_dose_label: str
    n_next: int
    wait_days: int
    earliest_date: date | None
    verdicts: tuple[RuleVerdict, ...]
    warnings: tuple[str, ...]
    stop_reasons: tuple[str, ...] = ()
    selection: Selection | None = None
    forced: bool = False
    trial_id: str = ""
    state_source: str = ""
    posterior_sources: tuple[str, ...] = ()
    notes: tuple[str, ...] = field(default=(), repr=False)
    alerts: tuple[str, ...] = ()

    @property
    def current_level(self) -> int | None:
        """The level of the last cohort, counted from 1 (None before the first)."""
        return None if self.current_level_index is None else self.current_level_index + 1

    @property
    def next_level(self) -> int | None:
        """The next cohort's level, counted from 1 (None when nobody is dosed next)."""
        return None if self.next_level_index is None else self.next_level_index + 1

    @property
    def paused(self) -> bool:
        """True when nobody is dosed now: the trial waits for patients inside the DLT window."""
        return self.action == "hold" and self.n_next == 0

    @property
    def allowed_levels(self) -> frozenset[int]:
        allowed = frozenset(range(1000))
        for verdict in self.verdicts:
            if verdict.allowed is not None:
                allowed &= verdict.allowed
        return allowed

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: every field, verdicts with their checks (estimates as value / error / kind)."""

        def convert(value):
            if isinstance(value, Estimate):
                return {"value": value.value, "error": value.error, "error_kind": value.error_kind}
            if isinstance(value, frozenset | set):
                return sorted(value)
            if isinstance(value, date):
                return value.isoformat()
            if isinstance(value, dict):
                return {str(k): convert(v) for k, v in value.items()}
            if isinstance(value, list | tuple):
                return [convert(v) for v in value]
            if isinstance(value, np.generic):
                return value.item()
            return value

        def number(level):  # levels a user reads count from 1, as protocols and the R packages count them
            return None if level is None else int(level) + 1

        payload = {name: convert(getattr(self, name)) for name in
                   ("design", "action", "next_dose_label", "n_next", "wait_days", "earliest_date", "warnings",
                    "stop_reasons", "forced", "trial_id", "state_source", "posterior_sources", "notes", "alerts")}
        payload["current_level"], payload["next_level"] = self.current_level, self.next_level
        payload["paused"] = self.paused
        verdicts = []
        for verdict in self.verdicts:
            row = convert(asdict(verdict))
            row["allowed"] = None if verdict.allowed is None else sorted(number(level) for level in verdict.allowed)
            row["preference"] = None if verdict.preference is None else [number(level) for level in verdict.preference]
            row["wait_days"] = [[number(level), days] for level, days in verdict.wait_days]
            row["max_enrol"] = [[number(level), count] for level, count in verdict.max_enrol]
            row["hold_exempt_level"] = number(verdict.hold_exempt_level)
            for check, original in zip(row["checks"], verdict.checks, strict=True):
                check["level"] = number(original.level_index)
                del check["level_index"]
            verdicts.append(row)
        payload["verdicts"] = verdicts
        selection = None
        if self.selection is not None:
            selection = convert(asdict(self.selection))
            selection["level"] = number(selection.pop("level_index"))
            for row in selection["rows"]:
                row["level"] = number(row.pop("level_index"))
        payload["selection"] = selection
        payload["levels_count_from"] = 1
        return payload


def min_patients_at_selection(spec) -> int:
    """``[decision] min_patients_at_selection``, by default the group size."""
    return spec.decision.min_patients_at_selection or spec.escalation.group_size


def _select(context: DecisionContext, design: Design, allowed: frozenset[int], verdicts, *,
            stopped_by_design: bool) -> Selection:
    """The selected dose: only a level given to at least ``min_patients_at_selection`` patients.

    ``stopped_by_design`` says whether the design's own proposal rule stopped the trial (the
    3+3's own end) rather than another rule (the sample size).
    """
    spec, state = context.spec, context.state
    unit = spec.dosing.unit.value
    n, y = state.evaluable_counts()
    treated = state.treated_counts()
    minimum = min_patients_at_selection(spec)
    eligible = treated >= minimum
    too_few = f"levels given to fewer than {minimum} patients are not selected"
    tried = sorted(level for level in state.tried_levels() if level in allowed and eligible[level])
    pending = len(state.pending)

    def chosen(level, reason, rows=()):
        if level is not None and not eligible[level]:  # never: every branch below selects from eligible levels
            raise AssertionError(f"selection of level {level + 1}, given to {treated[level]} patients")
        if pending:
            reason = (f"PROVISIONAL ({pending} patient(s) still inside the DLT window without a DLT): "
                      f"{reason}")
        if level is None:
            return Selection(None, "", reason, tuple(rows), bool(pending), pending)
        return Selection(level, dose_label(spec.dosing.levels[level], unit), reason, tuple(rows), bool(pending), pending)

    if design.selection == "boin":
        boin = spec.decision.boin
        selection = boin_select_mtd(n, y, target=boin.target, cutoff_eliminate=boin.cutoff_eliminate)
        if selection.selected_level_index is None or eligible[selection.selected_level_index]:
            return chosen(selection.selected_level_index, selection.reason)
        keep = eligible & ~np.asarray(selection.eliminated)
        masked = boin_select_mtd(np.where(keep, n, 0), np.where(keep, y, 0), target=boin.target,
                                 cutoff_eliminate=boin.cutoff_eliminate)
        return chosen(masked.selected_level_index, f"{masked.reason} ({too_few})")
    if design.selection == "crm":  # dfcrm's MTD on complete data: the level closest to the target, among those given
        rule = next(rule for rule in design.rules if isinstance(rule, CrmRule))
        levels, dlts, _ = crm_patients(state)
        if not allowed:
            return chosen(None, "the trial stopped for toxicity: no dose is selected")
        if not levels:
            return chosen(None, "no DLT-evaluable patient: no dose is selected")
        selection = crm_select_mtd(rule.model, levels, dlts, min_patients_at_selection=minimum,
                                   stop_probability=rule.stop_probability, treated_by_level=treated)
        return chosen(selection.selected_level_index, selection.reason)
    if design.selection == "boin12":  # the OBD, with the safeguard; among levels given to enough patients
        rule = next(rule for rule in design.rules if isinstance(rule, Boin12Rule))
        if not allowed:
            return chosen(None, "the trial stopped: no dose is selected")
        n, y, r = boin12_counts(state)
        selection = boin12_select_dose_safeguarded(rule.settings, n, y, r, eligible_by_level=eligible)
        return chosen(selection.selected_level_index, selection.reason)
    if design.selection == "three_plus_three":
        verdict = next(v for v in verdicts if v.rule == "3+3")
        if stopped_by_design:
            level = verdict.preference[0] if verdict.preference else None
            if level is None or eligible[level]:
                return chosen(level, verdict.verdict)
        level, reason = classical_three_plus_three_mtd(n, y, minimum)
        why = ("the 3+3 stopped before its own end" if not stopped_by_design
               else f"the 3+3's own choice was given to fewer than {minimum} patients")
        return chosen(level, f"{why}: {reason}")
    if not tried:
        return chosen(None, "no dose that was given (to at least "
                      f"{minimum} patients) is admissible: no dose is selected")
    if design.selection == "least_loss":
        losses = {c.level_index: c.estimate.value for v in verdicts for c in v.checks if c.quantity == "expected loss"}
        level = min(tried, key=lambda lv: (losses[lv], lv))
        return chosen(level, f"the least expected loss among admissible doses given ({losses[level]:.3f})")
    if design.selection == "utility" and context.efficacy is not None and context.efficacy.has("p_response_final"):
        settings = spec.decision.efficacy
        response = context.efficacy.mean("p_response_final")
        dlt = context.toxicity.mean("p_dlt")
        rows = []
        for level in tried:
            utility = response[level].value - settings.dlt_penalty * dlt[level].value
            rows.append({"level_index": level, "dose": dose_label(spec.dosing.levels[level], unit),
                         "P(response)": response[level], "P(DLT)": dlt[level], "utility": utility})
        best = max(rows, key=lambda row: (round(row["utility"], 12), -row["level_index"]))
        reason = (f"the optimal biological dose: utility P({settings.response} at month {settings.final_month:g}) - "
                  f"{settings.dlt_penalty:g} x P(DLT) is highest ({best['utility']:.3f}) among admissible doses given")
        return chosen(best["level_index"], reason, rows)
    level = max(tried)
    return chosen(level, "the highest admissible dose given")


def decide(context: DecisionContext, design: Design | None = None) -> Recommendation:
    """The recommendation for the next cohort under ``design`` (default: the spec's).

    Examples
    --------
    >>> import lupusbayes as lb
    >>> from lupusbayes.decisions import DecisionContext, decide, state_from_outcomes
    >>> spec = lb.parse_spec(lb.load_spec("kn5601").text.replace('[fitting]', '[decision]\\ndesign = "3+3"\\n\\n[fitting]'))
    >>> decide(DecisionContext(spec, state_from_outcomes(spec, "1NNN 2NNN 3NNT 3NTN"))).selection.dose_label
    '2.0e9 cells'
    """
    spec, state = context.spec, context.state
    design = design or design_for(spec)
    if design.needs_toxicity_model and context.toxicity is None:
        raise ValueError(f"the {design.name} design needs a toxicity posterior")
    verdicts = tuple(rule.evaluate(context) for rule in design.rules)
    allowed = frozenset(range(context.n_levels))
    for verdict in verdicts:
        if verdict.allowed is not None:
            allowed &= verdict.allowed
    stops = sorted({verdict.stop for verdict in verdicts if verdict.stop})
    preferences = [verdict.preference for verdict in verdicts if verdict.preference is not None]
    current = state.current_level_index
    next_level_index = None
    if not stops:
        (preference,) = preferences  # a design has one proposal rule, and it ranks the levels unless it stops
        next_level_index = next((level for level in preference if level in allowed), None)
        if next_level_index is None:
            stops = [STOP_NO_LEVEL_ADMISSIBLE]
    warnings = sorted({w for v in verdicts for w in (*v.warnings, *v.close_calls)})
    posteriors = [p for p in (context.toxicity, context.efficacy) if p is not None]
    notes = tuple(dict.fromkeys([*state.notes, *(note for p in posteriors for note in getattr(p, "notes", ()))]))
    for posterior in posteriors:
        if getattr(posterior, "reweighted", False) and posterior.pareto_k > PARETO_K_LIMIT:
            warnings.append(f"the reweighted posterior ({posterior.source}) has Pareto k {posterior.pareto_k:.2f} > "
                            f"{PARETO_K_LIMIT:g}: refit with the new data before relying on it")
    common = dict(design=design.name, current_level_index=current, verdicts=verdicts, forced=context.forced,
                  alerts=context.alerts,
                  trial_id=spec.trial.id, state_source=state.source,
                  posterior_sources=tuple(getattr(p, "source", "") for p in posteriors), notes=notes)
    if stops:
        safe_end = not any(s in TOXICITY_STOPS for s in stops)
        selection = _select(context, design, allowed if safe_end or design.selection == "boin" else frozenset(), verdicts,
                            stopped_by_design=STOP_THREE_PLUS_THREE in stops)
        if selection.provisional:
            warnings.append(f"the selection is PROVISIONAL: {selection.n_pending} patient(s) are still inside the DLT "
                            "window; confirm it when they have completed it")
        return Recommendation(action="stop", next_level_index=None, next_dose_label="", n_next=0, wait_days=0,
                              earliest_date=None, warnings=tuple(sorted(set(warnings))), stop_reasons=tuple(stops),
                              selection=selection, **common)
    holds = [verdict for verdict in verdicts if verdict.hold_days > 0]
    if any(verdict.hold_exempt_level != next_level_index for verdict in holds):  # nobody is dosed until they are known
        # no shorter than a wait the current level already has (a sentinel's response): a pause never dates earlier
        hold = max([verdict.hold_days for verdict in holds]
                   + [days for v in verdicts for level, days in v.wait_days if level == current])
        earliest = state.as_of + timedelta(days=hold) if state.as_of is not None else None
        return Recommendation(action="hold", next_level_index=None, next_dose_label="", n_next=0, wait_days=hold,
                              earliest_date=earliest, warnings=tuple(warnings), **common)
    action = ("start" if current is None else "escalate" if next_level_index > current else "hold" if next_level_index == current
              else "de-escalate")
    wait = max((days for v in verdicts for level, days in v.wait_days if level == next_level_index), default=0)
    group_size = spec.escalation.group_size
    group = state.current_group()
    n_next = group_size - len(group) if next_level_index == current and 0 < len(group) < group_size else group_size
    n_next = min([n_next] + [limit for v in verdicts for level, limit in v.max_enrol if level == next_level_index])
    earliest = state.as_of + timedelta(days=wait) if state.as_of is not None else None
    return Recommendation(action=action, next_level_index=next_level_index,
                          next_dose_label=dose_label(spec.dosing.levels[next_level_index], spec.dosing.unit.value),
                          n_next=n_next, wait_days=wait, earliest_date=earliest, warnings=tuple(warnings), **common)


@dataclass(frozen=True)
class Transition:
    """The recommendation after one possible outcome of the next cohort (or, with ``pending``, of the
    patients a paused trial waits for)."""

    n_dlt: int
    n_responders: int | None
    recommendation: Recommendation
    pending: bool = False


def _advanced(state, days: int):
    """The state ``days`` later: every patient has that much more follow-up (outcomes unchanged)."""
    if state.counts_only or days <= 0:
        return state
    patients = tuple(p if p.safety_days is None else
                     replace(p, safety_days=p.safety_days + days,
                             day_dosed=None if p.day_dosed is None else p.day_dosed - days)
                     for p in state.patients)
    return replace(state, patients=patients, as_of=None if state.as_of is None else state.as_of + timedelta(days=days))


@dataclass(frozen=True)
class CohortOutcome:
    """One possible outcome of the next cohort (or of the patients a paused trial waits for) and the
    decision context after it: the state with those patients through their DLT window, the
    posteriors updated."""

    level_index: int
    n_patients: int
    n_dlt: int
    n_responders: int | None
    context: DecisionContext
    pending: bool = False


def next_cohort_outcomes(context: DecisionContext, design: Design, recommendation: Recommendation, *,
                         responders: bool = True):
    """Each outcome of the cohort ``recommendation`` asks for: DLTs (0..n), and responders (0..n)
    when the efficacy posterior has a response and ``responders``; ascending, no DLT first.

    The hypothetical patients complete their DLT window, and so does everyone dosed before them
    (the clock moves on by the wait and the window). While the trial is paused for patients inside
    the DLT window, the outcomes are those of the patients it waits for (0..k DLTs among the k
    pending patients, when they are at one level), at the end of the pause. The posteriors are
    updated exactly (quadrature) or by importance reweighting of the draws.
    """
    if recommendation.action == "stop":
        return
    if recommendation.paused:
        yield from _pending_outcomes(context, recommendation)
        return
    level, size = recommendation.next_level_index, recommendation.n_next
    window = context.spec.dlt.window_days
    responder_counts = [None]
    if responders and (design.reads_responses or (context.efficacy is not None and context.efficacy.has("p_response"))):
        responder_counts = list(range(size + 1))
    # a design that reads each response (BOIN12) decides once they are assessed, after the window if later
    follow_up = max(window, context.spec.decision.efficacy.response_day) if design.reads_responses else window
    later = _advanced(context.state, recommendation.wait_days + follow_up)
    for n_dlt in range(size + 1):
        for n_responders in responder_counts:
            patients = tuple(
                PatientRecord(f"next-{i + 1}", level, follow_up, i < n_dlt,
                              responder=None if n_responders is None else i < n_responders,
                              day_dosed=None if later.as_of is None else -follow_up)
                for i in range(size)
            )
            state = replace(later, patients=later.patients + patients)
            if context.state.counts_only:
                counts = [list(c) for c in context.state.counts]
                counts[level][0] += size
                counts[level][1] += n_dlt
                state = replace(state, patients=(), counts=tuple(map(tuple, counts)), given_current_level=level)
            toxicity = context.toxicity.updated(level, size, n_dlt=n_dlt) if context.toxicity is not None else None
            efficacy = (context.efficacy.updated(level, size, n_responders=n_responders)
                        if context.efficacy is not None and n_responders is not None else context.efficacy)
            yield CohortOutcome(level, size, n_dlt, n_responders,
                                replace(context, state=state, toxicity=toxicity, efficacy=efficacy))


def transition_table(context: DecisionContext, design: Design | None = None, *,
                     recommendation: Recommendation | None = None) -> tuple[Transition, ...]:
    """What comes after each outcome of the next cohort: DLTs (0..n) x responders (0..n, with efficacy)
    (see :func:`next_cohort_outcomes`), as crmPack's ``examine()`` and BOIN's printed tables show it.
    Pareto k of a reweighting is checked (a warning in the row when above 0.7)."""
    design = design or design_for(context.spec)
    recommendation = recommendation or decide(context, design)
    return tuple(Transition(outcome.n_dlt, outcome.n_responders, decide(outcome.context, design),
                            pending=outcome.pending)
                 for outcome in next_cohort_outcomes(context, design, recommendation))


def _pending_outcomes(context: DecisionContext, recommendation: Recommendation):
    """The outcomes of a paused trial: each number of DLTs among the patients it waits for."""
    state = context.state
    pending = state.pending
    levels = {p.level for p in pending}
    if len(levels) != 1:
        return
    (level,) = levels
    later = _advanced(state, recommendation.wait_days)
    waiting = {p.patient_id for p in pending}
    for n_dlt in range(len(pending) + 1):
        flagged = {p.patient_id for p in pending[:n_dlt]}
        patients = tuple(replace(p, dlt=p.patient_id in flagged) if p.patient_id in waiting else p
                         for p in later.patients)
        toxicity = (context.toxicity.updated(level, len(pending), n_dlt=n_dlt) if context.toxicity is not None
                    else None)
        yield CohortOutcome(level, len(pending), n_dlt, None,
                            replace(context, state=replace(later, patients=patients), toxicity=toxicity), pending=True)


