"""Decision plots: each rule's numbers against its threshold, and the transition grid.

They read the objects of :mod:`lupusbayes.decisions` (a ``Recommendation``, the tuple of
``Transition`` rows) and the spec they were made with, and return a matplotlib ``Figure``.
"""

from __future__ import annotations

import textwrap

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Patch, Rectangle

from lupusbayes.decisions import Recommendation, RuleVerdict, Transition
from lupusbayes.report.plots._style import (
    ACTION_COLOURS,
    add_notes,
    dose_axis_label,
    dose_tick_label,
    legend_entries,
    new_figure,
    plot_style,
    set_figure_title,
    text_colour,
)
from lupusbayes.report.text import action_line, level_text
from lupusbayes.spec import TrialSpec

__all__ = ["plot_recommendation", "plot_transitions", "recommendation_headline"]

_PASSED, _FAILED = "#2e7d32", "#c62828"


def recommendation_headline(recommendation: Recommendation, spec: TrialSpec) -> str:
    """``'ESCALATE: next cohort of 3 at level 2 (7.5e7 cells/kg), first dose now'`` (or the stop)."""
    r = recommendation
    chosen = (f"; selected: {r.selection.dose_label}"
              if r.action == "stop" and r.selection is not None and r.selection.dose_label else "")
    return action_line(r, spec) + chosen


def _panels(recommendation: Recommendation) -> list[tuple[RuleVerdict, str, list]]:
    """(verdict, quantity, checks) for every quantity a rule checked with a number."""
    panels = []
    for verdict in recommendation.verdicts:
        quantities = dict.fromkeys(c.quantity for c in verdict.checks if c.estimate is not None)
        for quantity in quantities:
            panels.append((verdict, quantity, [c for c in verdict.checks
                                               if c.quantity == quantity and c.estimate is not None]))
    return panels


def plot_recommendation(recommendation: Recommendation, spec: TrialSpec) -> Figure:
    """Every rule's numbers against its threshold, one panel per rule and quantity.

    Each point is the posterior estimate at a dose level with +/- 2 of its errors (Monte Carlo,
    importance or quadrature); green if the rule's check passed there, red if not; the dashed
    line is the rule's threshold (EWOC's overdose limit, the efficacy rule's probability). The
    level the next cohort gets is shaded. The title states the recommendation.

    Parameters
    ----------
    recommendation
        From :func:`lupusbayes.decisions.decide`.
    spec
        The trial spec the recommendation was made with (dose levels and unit).

    Examples
    --------
    >>> from lupusbayes.decisions import DecisionContext, decide
    >>> figure = plot_recommendation(decide(DecisionContext(spec, state, toxicity)), spec)  # doctest: +SKIP
    """
    unit = spec.dosing.unit.value
    levels = np.arange(len(spec.dosing.levels))
    panels = _panels(recommendation)
    with plot_style():
        figure, axes = new_figure(max(len(panels), 1), columns=min(max(len(panels), 1), 2),
                                  panel_size=(max(4.2, 0.9 * levels.size + 2.2), 3.3))
        if not panels:
            axes[0].axis("off")
            axes[0].text(0.5, 0.5, f"the {recommendation.design} design's rules check no posterior number",
                         ha="center", va="center")
        for axis, (verdict, quantity, checks) in zip(axes, panels, strict=False):
            for check in checks:
                colour = _PASSED if check.passed else _FAILED
                axis.errorbar(check.level_index, check.estimate.value, yerr=2 * check.estimate.error, fmt="o",
                              color=colour, markersize=5, capsize=3)
            thresholds = {c.threshold for c in checks if c.threshold is not None}
            for threshold in thresholds:
                axis.axhline(threshold, color="black", linestyle="--", linewidth=1)
                axis.annotate(f"threshold {threshold:g}", (1.0, threshold), xycoords=("axes fraction", "data"),
                              xytext=(-2, 3), textcoords="offset points", ha="right", fontsize=7)
            if recommendation.next_level_index is not None:
                axis.axvspan(recommendation.next_level_index - 0.4, recommendation.next_level_index + 0.4, color="#4c72b0",
                             alpha=0.1, linewidth=0)
            axis.set_title("\n".join(textwrap.wrap(f"{verdict.rule}: {verdict.question}", 50)))
            axis.set_ylabel(quantity)
            axis.set_xticks(levels, [f"{dose_tick_label(level, unit)}\n(level {number + 1})"
                                     for number, level in enumerate(spec.dosing.levels)])
            axis.set_xlim(-0.6, levels.size - 0.4)
            axis.set_xlabel(dose_axis_label(spec))
            if all(0 <= c.estimate.value <= 1 for c in checks) and all(0 <= t <= 1 for t in thresholds):
                axis.set_ylim(-0.03, 1.03)
        set_figure_title(figure, f"{recommendation.trial_id} ({recommendation.design} design): "
                                 f"{recommendation_headline(recommendation, spec)}")
        legend = legend_entries(handles=[Patch(color=_PASSED, label="check passed"),
                                         Patch(color=_FAILED, label="check failed"),
                                         Patch(color="#4c72b0", alpha=0.1, label="next cohort's level")])
        add_notes(figure, legend=legend, notes=[
            "points: posterior estimate at each level, bars +/- 2 errors (Monte Carlo, importance or quadrature)",
            *(f"{v.rule}: {v.verdict}" for v in recommendation.verdicts if v.checks),
            *(f"warning: {w}" for w in recommendation.warnings),
        ])
    return figure


def plot_transitions(transitions: tuple[Transition, ...], spec: TrialSpec) -> Figure:
    """The transition table as a coloured grid: what the design does after each outcome of the
    next cohort.

    Rows are the number of DLTs in the next cohort, columns the number of responders (one
    column when the design has no efficacy model); the cell's colour is the action
    (escalate / hold / de-escalate / stop), its text the next dose. A ``*`` marks a row whose
    reweighted posterior is unreliable (Pareto k > 0.7) or whose verdict was a close call.

    Parameters
    ----------
    transitions
        From :func:`lupusbayes.decisions.transition_table`.
    spec
        The trial spec.

    Examples
    --------
    >>> figure = plot_transitions(transition_table(context), spec)  # doctest: +SKIP
    """
    unit = spec.dosing.unit.value
    with plot_style():
        if not transitions:
            figure, (axis,) = new_figure(1, panel_size=(5, 2))
            axis.axis("off")
            axis.text(0.5, 0.5, "No next cohort: the trial stops.", ha="center", va="center")
            return figure
        dlts = sorted({t.n_dlt for t in transitions})
        responders = sorted({t.n_responders for t in transitions}, key=lambda n: -1 if n is None else n)
        first = transitions[0].recommendation
        size = max(dlts)
        figure, (axis,) = new_figure(1, panel_size=(max(5.0, 1.25 * len(responders) + 2.6), 0.75 * len(dlts) + 1.4))
        flagged = False
        for transition in transitions:
            r = transition.recommendation
            column, row = responders.index(transition.n_responders), dlts.index(transition.n_dlt)
            colour = ACTION_COLOURS.get(r.action, "#bbbbbb")
            axis.add_patch(Rectangle((column - 0.5, row - 0.5), 1, 1, facecolor=colour, edgecolor="white", linewidth=2))
            if r.action == "stop":
                chosen = r.selection.dose_label if r.selection is not None and r.selection.dose_label else ""
                label = "STOP" + (f"\nselect {dose_tick_label(spec.dosing.levels[r.selection.level_index], unit)}"
                                  if chosen else "")
            elif r.paused:
                label = f"hold\n{r.wait_days} days"
            else:
                label = f"{r.action}\n{dose_tick_label(spec.dosing.levels[r.next_level_index], unit)}"
            if any("Pareto" in w or "close call" in w for w in r.warnings):
                label += " *"
                flagged = True
            axis.text(column, row, label, ha="center", va="center", fontsize=8, color=text_colour(colour))
        axis.set_xlim(-0.5, len(responders) - 0.5)
        axis.set_ylim(len(dlts) - 0.5, -0.5)
        axis.set_xticks(range(len(responders)), ["not modelled" if n is None else str(n) for n in responders])
        axis.set_yticks(range(len(dlts)), [str(n) for n in dlts])
        response = spec.decision.efficacy.response.replace("_", " ")
        axis.set_xlabel(f"responders among the next {size} ({response})")
        axis.set_ylabel(f"DLTs among the next {size}")
        axis.spines[:].set_visible(False)
        actions = dict.fromkeys(t.recommendation.action for t in transitions)
        set_figure_title(figure, f"{spec.trial.id}: after the next cohort of {size} at "
                                 f"{level_text(spec, first.current_level_index)}")
        legend = legend_entries(handles=[Patch(color=ACTION_COLOURS.get(a, "#bbbbbb"), label=a) for a in actions])
        add_notes(figure, legend=legend, notes=[
            f"cell text: the action and the next dose ({unit}); the hypothetical patients complete their DLT window",
            "*: the reweighted posterior of that outcome is unreliable (Pareto k > 0.7) or a verdict was a close call"
            if flagged else "",
        ])
    return figure
