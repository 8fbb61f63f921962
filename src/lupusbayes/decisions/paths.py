"""Dose paths: every outcome of the next cohorts, with the recommendation after each.

A protocol statistician shows what a design does after every plausible cohort before the
protocol is signed (the ``escalation`` package's ``get_dose_paths``, OncoBayes2's data-scenario
tables). :func:`dose_paths` walks the tree: from the current state, each possible number of
DLTs in the next cohort (0..n), the recommendation after it, and so on for ``n_cohorts``
cohorts, stopping a branch where the design stops. The hypothetical patients complete their
DLT window before the next decision (as in :func:`~lupusbayes.decisions.transition_table`),
and the posteriors are updated exactly (quadrature) or by importance reweighting of the draws.
Responses are not part of the tree: a design that reads efficacy reads the efficacy posterior
of the state as it is (the path says so).

:func:`dlt_free_run` follows the one path with no DLT at all to its end. A level it never
reaches cannot be reached by any path within the sample size (more DLTs never make a design
more aggressive: the safety invariants of :mod:`lupusbayes.decisions`), so the design's top
levels are unreachable, and :class:`Reachability` says which, why, with the numbers.

Paths are written as R-style outcome strings, levels counted from 1 (``"2NNN 3NNT"``).
"""

from __future__ import annotations

from dataclasses import dataclass

from lupusbayes.decisions.designs import Design
from lupusbayes.decisions.recommend import Recommendation, decide, next_cohort_outcomes
from lupusbayes.decisions.rules import DecisionContext
from lupusbayes.dosing import dose_label
from lupusbayes.errors import DecisionError

__all__ = ["PathStep", "DosePath", "dose_paths", "Reachability", "dlt_free_run", "MAX_PATHS"]

#: The most paths :func:`dose_paths` walks (a tree of c cohorts of 3 has up to 4**c leaves).
MAX_PATHS = 100_000


@dataclass(frozen=True)
class PathStep:
    """One cohort of a path: its level (``level_index`` counts from 0), its size and its DLTs."""

    level_index: int
    n_patients: int
    n_dlt: int
    pending: bool = False  # the patients a paused trial waited for, not a new cohort

    @property
    def level(self) -> int:
        """The cohort's level, counted from 1."""
        return self.level_index + 1

    @property
    def outcomes(self) -> str:
        """``"2NNT"``: the level (from 1), then N / T per patient (the DLTs last)."""
        return f"{self.level}{'N' * (self.n_patients - self.n_dlt)}{'T' * self.n_dlt}"


@dataclass(frozen=True)
class DosePath:
    """A sequence of cohort outcomes after the current state, and the recommendation after them."""

    steps: tuple[PathStep, ...]
    recommendation: Recommendation

    @property
    def outcomes(self) -> str:
        """The path as outcome strings (``"2NNN 3NNT"``); empty for the current state itself."""
        return " ".join(step.outcomes for step in self.steps)

    @property
    def n_cohorts(self) -> int:
        return len(self.steps)

    def to_dict(self) -> dict:
        r = self.recommendation
        return {"outcomes": self.outcomes, "n_cohorts": self.n_cohorts, "n_dlt": sum(s.n_dlt for s in self.steps),
                "action": r.action, "next_level": r.next_level, "next_dose_label": r.next_dose_label,
                "n_next": r.n_next, "selected_level": r.selection.level if r.selection is not None else None,
                "selected_dose_label": r.selection.dose_label if r.selection is not None else None}


def _children(context: DecisionContext, design: Design, recommendation: Recommendation):
    """(step, context after it, recommendation after it) for each outcome of the next cohort."""
    for outcome in next_cohort_outcomes(context, design, recommendation, responders=False):
        yield (PathStep(outcome.level_index, outcome.n_patients, outcome.n_dlt, outcome.pending),
               outcome.context, decide(outcome.context, design))


def dose_paths(context: DecisionContext, design: Design, n_cohorts: int, *,
               recommendation: Recommendation | None = None) -> tuple[DosePath, ...]:
    """Every path of up to ``n_cohorts`` cohorts from ``context``, depth first: the current state
    first (no step), then each outcome of the next cohort followed by its own paths.

    A branch ends where the design stops. While the trial is paused for patients inside the DLT
    window, the first step is those patients' outcomes (``pending``).

    Raises
    ------
    DecisionError
        ``n_cohorts`` is not 1 or more, or the tree would exceed :data:`MAX_PATHS` paths (one line,
        exit 2 from the command line).
    """
    if int(n_cohorts) < 1:
        raise DecisionError(f"n_cohorts must be 1 or more (got {n_cohorts})")
    if design.reads_responses:
        raise DecisionError(f"dose paths enumerate DLTs, and {design.name} reads each patient's response too: "
                            "the transition table (--transitions) enumerates both for the next cohort")
    largest_cohort = max(context.spec.escalation.group_size, 1) + 1
    if largest_cohort ** int(n_cohorts) > MAX_PATHS:
        raise DecisionError(f"{n_cohorts} cohorts of up to {largest_cohort - 1} patients are up to "
                         f"{largest_cohort ** int(n_cohorts):,} paths, more than {MAX_PATHS:,}: ask for fewer cohorts")
    root = recommendation or decide(context, design)
    paths = [DosePath((), root)]

    def walk(node_context: DecisionContext, node: Recommendation, steps: tuple[PathStep, ...]) -> None:
        if len(steps) >= n_cohorts or node.action == "stop":
            return
        for step, child_context, child in _children(node_context, design, node):
            path = DosePath((*steps, step), child)
            paths.append(path)
            walk(child_context, child, path.steps)

    walk(context, root, ())
    return tuple(paths)


@dataclass(frozen=True)
class Reachability:
    """What the path without any DLT reaches: the levels given along it, where it ends, and the
    levels no path can reach (each with the rule's words that close it)."""

    run: DosePath
    levels_given: tuple[int, ...]  # levels counted from 1, in the order first given
    unreachable: tuple[int, ...]  # levels counted from 1
    reasons: tuple[str, ...]
    dose_labels: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.unreachable

    def message(self) -> str:
        """One paragraph: which levels cannot be reached, after which DLT-free run, and why."""
        if self.ok:
            top = len(self.dose_labels)
            last = self.run.steps[-1].level if self.run.steps else None
            how = self.run.outcomes if last == top else (f"{self.run.outcomes}, then level {top}" if self.run.outcomes
                                                         else f"level {top}")
            return f"every level can be reached: with no DLT the design goes up to level {top} ({how})"
        levels = ", ".join(f"level {level} ({self.dose_labels[level - 1]})" for level in self.unreachable)
        n_patients = sum(step.n_patients for step in self.run.steps)
        end = self.run.recommendation
        ending = (f"the trial then stops: {end.stop_reasons[0]}" if end.action == "stop" and end.stop_reasons
                  else f"after {self.run.n_cohorts} cohorts it still does not go higher")
        why = f". Closed by {'; '.join(self.reasons)}" if self.reasons else ""
        return (f"UNREACHABLE: {levels} cannot be reached by any path, not even with no DLT in {n_patients} "
                f"patients ({self.run.outcomes or 'no cohort'}; {ending}){why}")


def _closing_reasons(recommendation: Recommendation, level_index: int) -> tuple[str, ...]:
    """The verdicts of the rules that do not allow ``level_index`` (their own words and numbers)."""
    reasons = []
    for verdict in recommendation.verdicts:
        if verdict.allowed is None or level_index in verdict.allowed:
            continue
        numbers = [f"{check.quantity} {check.estimate.value:.3f}" + ("" if check.threshold is None
                                                                      else f" (limit {check.threshold:g})")
                   for check in verdict.checks
                   if check.level_index == level_index and not check.passed and check.estimate is not None]
        reasons.append(f"[{verdict.rule}] {verdict.verdict}" + (f": at level {level_index + 1}, {'; '.join(numbers)}"
                                                                 if numbers else ""))
    return tuple(reasons)


def dlt_free_run(context: DecisionContext, design: Design, *,
                 recommendation: Recommendation | None = None, max_cohorts: int | None = None) -> Reachability | None:
    """Follow the path with no DLT until the trial ends or its top level is given, and report the
    levels it never gives: no path reaches them (more DLTs never lead higher).

    ``max_cohorts`` bounds a run without a sample size (default: four cohorts per level). None for a
    design that reads each response (BOIN12): its path depends on the responses too, so a run without
    DLTs does not bound it.
    """
    if design.reads_responses:
        return None
    n_levels = len(context.spec.dosing.levels)
    max_cohorts = max_cohorts or 4 * n_levels
    node = recommendation or decide(context, design)
    steps: tuple[PathStep, ...] = ()
    given: list[int] = []  # levels given along the run (indices)
    state = context.state
    previous_given = ({level for level, (n, _) in enumerate(state.counts) if n} if state.counts_only
                      else {p.level for p in state.patients})
    while node.action != "stop" and len(steps) < max_cohorts and n_levels - 1 not in set(given) | previous_given:
        first = next(iter(_children(context, design, node)), None)  # the first outcome: no DLT
        if first is None:  # e.g. paused for patients pending at several levels: no outcome to follow
            break
        step, child_context, child = first
        steps, context, node = (*steps, step), child_context, child
        given.append(step.level_index)
    if node.next_level_index is not None and node.action != "stop":
        given.append(node.next_level_index)  # the run ends where the next cohort would go
    reached = set(given) | previous_given
    if node.selection is not None and node.selection.level_index is not None:
        reached.add(node.selection.level_index)
    top_reached = max(reached, default=-1)
    unreachable = tuple(range(top_reached + 1, n_levels))
    reasons = _closing_reasons(node, top_reached + 1) if unreachable else ()
    unit = context.spec.dosing.unit.value
    labels = tuple(dose_label(dose, unit) for dose in context.spec.dosing.levels)
    ordered = tuple(dict.fromkeys(level + 1 for level in given))
    return Reachability(DosePath(steps, node), ordered, tuple(level + 1 for level in unreachable), reasons, labels)
