"""Dose-toxicity plots: P(CRS >= g) curves with the observed patients, and P(DLT) intervals with EWOC.

Both read a toxicity fit (CRS model or BLRM) and return a matplotlib ``Figure``.
"""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from lupusbayes.fitting import FitResult
from lupusbayes.models.base import SAMPLE_DIMS
from lupusbayes.report.plots._data import (
    fit_title,
    observed_toxicity_groups,
    patients_per_level,
    require_variables,
    thinned,
)
from lupusbayes.report.plots._style import (
    OBSERVED_COLOUR,
    POSTERIOR_COLOUR,
    add_notes,
    crs_event,
    dose_axis_label,
    dose_tick_label,
    interval_colours,
    new_figure,
    plot_style,
    set_dose_ticks,
    set_figure_title,
    text_colour,
)

__all__ = ["plot_dose_crs", "plot_dlt_intervals"]

_CODATA_MARKERS = ("s", "^", "D", "v", "P")


def _bounds(interval: float) -> tuple[float, float]:
    return (1 - interval) / 2, (1 + interval) / 2


def probability_axis_top(highest: float, *, headroom: float = 1.15, floor: float = 0.02) -> float:
    """The top of a probability axis scaled to its data: ``headroom`` above the ``highest``
    value drawn (an upper credible bound, an observed share), at least ``floor``, at most just
    above 1. So P(CRS >= 3) of a few percent fills its panel instead of hugging the bottom of
    a 0-1 axis."""
    return float(min(1.03, max(floor, headroom * highest)))


def plot_dose_crs(fit: FitResult, *, interval: float = 0.9, grid_points: int = 60,
                  show_observed: bool = True) -> Figure:
    """P(CRS >= g) against dose, one panel per ASTCT grade, with the patients seen.

    The curve and band are the posterior median and equal-tailed ``interval`` of P(CRS >= g)
    for a new patient of the target trial, on a log-dose grid through the spec's levels (from at
    most 1000 evenly spaced posterior draws; the dots at the levels use all of them). The
    points are each dose group's observed share with CRS >= g (``k/n`` beside them); groups of
    other studies (co-data) are hollow, at their dose on the target trial's scale.

    Each panel has its own probability axis, from 0 to a little above the highest value it
    draws (:func:`probability_axis_top`): the higher grades, P(CRS >= 3) the CRS part of a DLT
    among them, are rare, and on a shared 0-1 axis their curves would lie flat on the floor.

    Parameters
    ----------
    fit
        A CRS-model fit (or a BLRM of any CRS); its ``dose_response`` holds ``p_crs_at_least``.
    interval
        Width of the credible band.
    grid_points
        Doses on the curve's grid (the curve is evaluated from the posterior draws).
    show_observed
        Draw the observed shares.

    Examples
    --------
    >>> from lupusbayes.fitting import load_fit
    >>> figure = plot_dose_crs(load_fit("crs.nc"), interval=0.8)  # doctest: +SKIP
    >>> figure.savefig("dose_crs.png")                            # doctest: +SKIP
    """
    require_variables(fit, ("p_crs_at_least",), "dose-CRS")
    spec, unit = fit.model.spec, fit.model.spec.dosing.unit.value
    levels = fit.dose_response["dose"].to_numpy()
    observed = observed_toxicity_groups(fit) if show_observed else None
    doses_shown = np.concatenate([levels, observed["dose"].to_numpy() if observed is not None else []])
    grid = np.geomspace(doses_shown.min() / 1.3, doses_shown.max() * 1.3, grid_points)
    curve = fit.model.dose_response(thinned(fit.posterior), np.random.default_rng(fit.seed),
                                    doses=grid)["p_crs_at_least"]
    low, high = _bounds(interval)
    bands = curve.quantile([low, 0.5, high], dim=SAMPLE_DIMS)
    at_levels = fit.dose_response["p_crs_at_least"].median(SAMPLE_DIMS)
    grades = curve["grade"].to_numpy()
    dlt_grade = spec.dlt.crs_grade_at_least if "p_dlt" in fit.dose_response else None
    studies = [] if observed is None else [s for s in dict.fromkeys(observed["study"]) if s != spec.trial.id]
    with plot_style():
        figure, axes = new_figure(len(grades), columns=min(len(grades), 2), sharey=False)
        for axis, grade in zip(axes, grades, strict=True):
            band = bands.sel(grade=grade)
            highest = float(max(band.sel(quantile=high).max(), at_levels.sel(grade=grade).max()))
            if observed is not None and len(observed):
                highest = max(highest, float((observed[int(grade)] / observed["n"]).max()))
            axis.fill_between(grid, band.sel(quantile=low), band.sel(quantile=high), color=POSTERIOR_COLOUR,
                              alpha=0.18, linewidth=0, label=f"{interval:.0%} interval")
            axis.plot(grid, band.sel(quantile=0.5), color=POSTERIOR_COLOUR, label="posterior median")
            axis.plot(levels, at_levels.sel(grade=grade), "o", color=POSTERIOR_COLOUR, markersize=3.5)
            if observed is not None:
                _draw_observed(axis, observed, int(grade), spec.trial.id, studies)
            title = f"{crs_event(grade)} (ASTCT)"
            if dlt_grade == grade:
                title += ": the CRS part of a DLT"
            axis.set_title(title)
            axis.set_ylabel(f"P({crs_event(grade)})")
            axis.set_xlabel(dose_axis_label(spec))
            top = probability_axis_top(highest)
            axis.set_ylim(-0.03 * top, top)
            set_dose_ticks(axis, levels, unit)
        axes[0].legend(loc="upper left")
        set_figure_title(figure, fit_title(fit, "P(CRS grade >= g) by dose, one panel per grade"))
        notes = [f"line and band: posterior median and {interval:.0%} interval of P(CRS >= g) for a new "
                 f"{spec.trial.id} patient; dots mark the dose levels",
                 "each panel has its own probability scale (to just above its highest value): read the "
                 "y-axis before comparing grades"]
        if observed is not None:
            notes.append(f"points: share of each dose group's patients with CRS >= g (k/n); filled: {spec.trial.id}"
                         + (f"; hollow: {', '.join(studies)} (co-data), at their dose on {spec.trial.id}'s scale "
                            f"({spec.dosing.dose_metric.replace('_', ' ')})" if studies else ""))
        add_notes(figure, notes + list(fit.model.notes()))
    return figure


def _draw_observed(axis, observed, grade: int, target: str, codata_studies: list[str]) -> None:
    """Each dose group's share with CRS >= ``grade``, labelled k/n; a legend entry per study."""
    for group in observed.to_dict("records"):
        share = group[grade] / group["n"]
        is_target = group["study"] == target
        marker = "o" if is_target else _CODATA_MARKERS[codata_studies.index(group["study"]) % len(_CODATA_MARKERS)]
        axis.plot(group["dose"], share, marker, markersize=6, color=OBSERVED_COLOUR, linestyle="none",
                  markerfacecolor=OBSERVED_COLOUR if is_target else "white")
        axis.annotate(f"{group[grade]}/{group['n']}", (group["dose"], share), textcoords="offset points",
                      xytext=(5, 4), fontsize=7)
    if target in set(observed["study"]):
        axis.plot([], [], "o", color=OBSERVED_COLOUR, label=f"{target} patients")
    for number, study in enumerate(codata_studies):
        axis.plot([], [], _CODATA_MARKERS[number % len(_CODATA_MARKERS)], color=OBSERVED_COLOUR,
                  markerfacecolor="white", label=f"{study} (co-data)")


def plot_dlt_intervals(fit: FitResult, *, max_overdose_probability: float | None = None) -> Figure:
    """Posterior probability of each interval of P(DLT) per dose, stacked, and the overdose
    interval's alone against the EWOC limit.

    Top panel, as OncoBayes2 draws it: the spec's intervals (``[dlt.intervals]``, e.g.
    acceptable / elevated / excessive) stacked per dose, the overdose interval at the bottom of
    each bar. Bottom panel: the overdose interval's probability alone, with the EWOC limit
    (``spec.decision.max_overdose_probability``, 0.25 by default) as a dashed line: escalation
    with overdose control allows a dose whose bar stays below it (hatched: it does not). The
    limit is drawn on that panel only, since it bounds the overdose interval's probability and
    nothing else: across the stacked bars it would cut through the acceptable segments and
    make safe doses look as if they breached it. The DLT basis of the model (which components
    of the DLT definition the data record) is written under the plot.

    Examples
    --------
    >>> figure = plot_dlt_intervals(load_fit("blrm.nc"))  # doctest: +SKIP
    """
    require_variables(fit, ("p_dlt",), "P(DLT) interval")
    spec = fit.model.spec
    unit, intervals = spec.dosing.unit.value, spec.dlt.intervals
    limit = spec.decision.max_overdose_probability if max_overdose_probability is None else max_overdose_probability
    p_dlt = fit.dose_response["p_dlt"]
    levels = p_dlt["dose"].to_numpy()
    probabilities = intervals.indicators(p_dlt.transpose(*SAMPLE_DIMS, "dose").to_numpy()).mean(axis=(0, 1))
    overdose = intervals.overdose_index
    overdose_probability = probabilities[:, overdose]
    fails = overdose_probability >= limit
    order = [overdose] + [k for k in reversed(range(len(intervals.names))) if k != overdose]
    colours = interval_colours(len(intervals.names), overdose)
    counts = patients_per_level(fit, levels)
    positions = np.arange(levels.size)
    dose_ticks = [f"{dose_tick_label(level, unit)}\n(n = {n})" for level, n in zip(levels, counts, strict=True)]
    with plot_style():
        figure, (stacked, overdose_axis) = new_figure(2, columns=1,
                                                      panel_size=(max(5.0, 1.1 * levels.size + 2.5), 3.3))
        # top: every interval, stacked; no EWOC line here (it bounds the bottom segment only)
        bottom = np.zeros(levels.size)
        for k in order:
            bars = stacked.bar(positions, probabilities[:, k], bottom=bottom, width=0.62, color=colours[k],
                               edgecolor="white", label=intervals.label(k))
            if k == overdose:
                _hatch(bars, fails)
            for position, value, start in zip(positions, probabilities[:, k], bottom, strict=True):
                if value >= 0.06:
                    stacked.text(position, start + value / 2, f"{value:.2f}", ha="center", va="center",
                                 fontsize=7.5, color=text_colour(colours[k]))
            bottom = bottom + probabilities[:, k]
        stacked.set_title("Posterior probability of each P(DLT) interval")
        stacked.set_ylabel("posterior probability")
        stacked.set_ylim(0, 1.0)
        handles, labels = stacked.get_legend_handles_labels()
        stacked.legend(handles[::-1], labels[::-1], loc="upper left", bbox_to_anchor=(1.01, 1.0),
                       title="P(DLT) interval")

        # bottom: the overdose interval alone, against the EWOC limit
        bars = overdose_axis.bar(positions, overdose_probability, width=0.62, color=colours[overdose],
                                 edgecolor="white", label=f"P({intervals.overdose})")
        _hatch(bars, fails)
        top = probability_axis_top(max(limit, float(overdose_probability.max())), headroom=1.3)
        for position, value, failed in zip(positions, overdose_probability, fails, strict=True):
            overdose_axis.text(position, value + 0.015 * top, f"{value:.2f}" + ("\nfails EWOC" if failed else ""),
                               ha="center", va="bottom", fontsize=7.5, color="#a00000" if failed else "#222222")
        overdose_axis.axhline(limit, color="black", linestyle="--", linewidth=1,
                              label=f"EWOC limit: P({intervals.overdose}) < {limit:g}")
        overdose_axis.set_title(f"The overdose interval alone ({intervals.label(overdose)}), against the EWOC limit")
        overdose_axis.set_ylabel(f"posterior P({intervals.overdose})")
        overdose_axis.set_ylim(0, top * 1.12)
        overdose_axis.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0))
        for axis in (stacked, overdose_axis):
            axis.set_xticks(positions, dose_ticks)
            axis.set_xlabel(dose_axis_label(spec))
        set_figure_title(figure, fit_title(fit, "Where P(DLT) lies at each dose, and the EWOC limit"))
        basis = p_dlt.attrs.get("definition", "")
        add_notes(figure, [
            f"DLT basis: {basis}" if basis else "",
            f"top: bars stack the posterior probability of each interval of P(DLT), the overdose interval "
            f"({intervals.overdose}) at the bottom; bottom: that interval alone, against the EWOC limit "
            f"(dashed): EWOC allows a dose whose bar stays below it (hatched: it does not)",
            f"n: {spec.trial.id} patients treated at the dose",
        ])
    return figure


def _hatch(bars, failed) -> None:
    """Hatch the bars of the doses that fail EWOC."""
    for bar, fails in zip(bars, failed, strict=True):
        if fails:
            bar.set_hatch("///")
