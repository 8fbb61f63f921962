"""SLEDAI-2K plots: the expected course over months by dose with the patients' trajectories, and
the response probabilities per dose by month.

Both read a SLEDAI-2K fit and return a matplotlib ``Figure``.
"""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from lupusbayes.fitting import FitResult
from lupusbayes.models.base import SAMPLE_DIMS
from lupusbayes.report.plots._data import PlotError, fit_title, patients_per_level, require_variables, thinned
from lupusbayes.report.plots._style import (
    OBSERVED_COLOUR,
    POSTERIOR_COLOUR,
    VARIABLE_LABELS,
    add_notes,
    legend_entries,
    dose_axis_label,
    dose_tick_label,
    month_label,
    new_figure,
    plot_style,
    set_figure_title,
)

__all__ = ["plot_sledai_months", "plot_sledai_response", "RESPONSE_VARIABLES"]

#: The response probabilities of a SLEDAI-2K fit, with their colours.
RESPONSE_VARIABLES = {
    "p_sri4_sledai_component": "#1f5f99",
    "p_lldas_sledai_proxy": "#55a868",
    "p_doris_sledai_proxy": "#c47a2c",
}
_EXTRAPOLATED = "#d9d9d9"


def _patient_courses(fit: FitResult, level: float):
    """(patient id, months, scores) of the target trial's patients treated at ``level``."""
    cohort, spec = fit.model.cohort, fit.model.spec
    column = "dose_cells" if spec.dosing.unit.value == "cells" else "dose_cells_per_kg"
    patients = cohort.patients
    mine = patients[(patients["study_id"] == spec.trial.id)
                    & np.isclose(patients[column].astype(float), level, rtol=1e-6)]
    visits = cohort.visits
    for patient_id in mine["patient_id"]:
        course = visits[(visits["study_id"] == spec.trial.id) & (visits["patient_id"] == patient_id)]
        course = course.sort_values("visit_month")
        yield patient_id, course["visit_month"].to_numpy(float), course["sledai"].to_numpy(float)


def plot_sledai_months(fit: FitResult, *, interval: float = 0.9, grid_points: int = 13, seed: int | None = None,
                       show_patients: bool = True) -> Figure:
    """Expected SLEDAI-2K over months after infusion, one panel per dose level.

    Line and band: the posterior median and equal-tailed ``interval`` of the expected score of
    a new patient of the target trial with the spec's reference baseline (from at most 1000
    evenly spaced posterior draws). Grey lines: the
    trial's own patients at that dose (baseline, then each visit). Shaded: months beyond the
    longest follow-up observed at that dose (the model extrapolates there); a dose nobody has
    had yet is shaded throughout.

    Parameters
    ----------
    fit
        A SLEDAI-2K fit.
    interval
        Width of the band.
    grid_points
        Months on the curve's grid, from 0 to the last month shown.
    seed
        Seeds the dose-group effect drawn for doses without patients (default: the fit's seed),
        so the figure is the same every time.
    show_patients
        Draw the patients' trajectories.

    Examples
    --------
    >>> figure = plot_sledai_months(load_fit("sledai.nc"), interval=0.8)  # doctest: +SKIP
    """
    require_variables(fit, ("expected_sledai",), "SLEDAI-2K over months")
    spec, model = fit.model.spec, fit.model
    unit = spec.dosing.unit.value
    levels = fit.dose_response["dose"].to_numpy()
    follow_up = model.observed_follow_up_months(levels)
    last_month = float(np.nanmax([*fit.dose_response["month"].to_numpy(), *follow_up]))
    months = np.linspace(0.0, last_month, grid_points)
    rng = np.random.default_rng(fit.seed if seed is None else seed)
    expected = model.dose_response(thinned(fit.posterior), rng, doses=levels, months=months)["expected_sledai"]
    low, high = (1 - interval) / 2, (1 + interval) / 2
    bands = expected.quantile([low, 0.5, high], dim=SAMPLE_DIMS)
    baseline = fit.dose_response.attrs.get("reference_sledai_baseline", spec.efficacy.reference_sledai_baseline)
    highest = max([float(baseline)] + [scores.max() for level in levels
                                       for _, _, scores in _patient_courses(fit, level) if scores.size])
    with plot_style():
        figure, axes = new_figure(levels.size, columns=min(levels.size, 2 if levels.size == 4 else 3), sharey=True)
        for axis, level, seen in zip(axes, levels, follow_up, strict=True):
            band = bands.sel(dose=level)
            start = seen if np.isfinite(seen) else 0.0
            if start < last_month:
                axis.axvspan(start, last_month, color=_EXTRAPOLATED, alpha=0.6, linewidth=0,
                             label="beyond observed follow-up" if np.isfinite(seen) else "no patient yet")
            axis.fill_between(months, band.sel(quantile=low), band.sel(quantile=high), color=POSTERIOR_COLOUR,
                              alpha=0.2, linewidth=0, label=f"{interval:.0%} interval")
            axis.plot(months, band.sel(quantile=0.5), color=POSTERIOR_COLOUR, label="expected score (median)")
            if show_patients:
                for number, (_, visit_months, scores) in enumerate(_patient_courses(fit, level)):
                    axis.plot(visit_months, scores, "-o", color=OBSERVED_COLOUR, alpha=0.55, linewidth=0.8,
                              markersize=3, label=f"{spec.trial.id} patients" if number == 0 else None)
            title = f"{dose_tick_label(level, unit)} {unit}"
            title += f" (observed to {month_label(seen)})" if np.isfinite(seen) else " (no patient yet)"
            axis.set_title(title)
            axis.set_xlabel("months after infusion")
            axis.set_ylabel("SLEDAI-2K (points)")
            axis.set_xlim(0, last_month)
            axis.set_ylim(0, highest + 2)
            axis.set_xticks(np.unique(np.r_[0.0, fit.dose_response["month"].to_numpy()]))
        set_figure_title(figure, fit_title(fit, f"SLEDAI-2K over follow-up by dose ({unit})"))
        add_notes(figure, legend=legend_entries(axes), notes=[
            f"line and band: expected SLEDAI-2K of a new {spec.trial.id} patient with baseline {baseline} points "
            f"(posterior median, {interval:.0%} interval); lines with dots: the trial's patients (baseline, visits)",
            "shaded: months beyond the longest follow-up seen at that dose: there the curve is the model's "
            "extrapolation, not data",
            *model.notes(),
        ])
    return figure


def plot_sledai_response(fit: FitResult, *, interval: float = 0.9) -> Figure:
    """Response probabilities per dose, one panel per month: P(SRI-4 SLEDAI component),
    P(SLEDAI-2K <= 4) and P(SLEDAI-2K = 0) for a new patient, median and ``interval``.

    Months beyond a dose's observed follow-up are drawn with hollow markers (extrapolated).

    Examples
    --------
    >>> figure = plot_sledai_response(load_fit("sledai.nc"))  # doctest: +SKIP
    """
    names = [name for name in RESPONSE_VARIABLES if name in fit.dose_response]
    if not names:
        raise PlotError(f"the SLEDAI-2K response plot needs response probabilities; the {fit.model.name} fit has none")
    spec, model = fit.model.spec, fit.model
    unit = spec.dosing.unit.value
    levels = fit.dose_response["dose"].to_numpy()
    months = fit.dose_response["month"].to_numpy()
    follow_up = model.observed_follow_up_months(levels)
    counts = patients_per_level(fit, levels)
    low, high = (1 - interval) / 2, (1 + interval) / 2
    positions = np.arange(levels.size)
    offsets = (np.arange(len(names)) - (len(names) - 1) / 2) * 0.2
    with plot_style():
        figure, axes = new_figure(months.size, sharey=True, panel_size=(max(3.6, 0.9 * levels.size + 1.4), 3.4))
        for axis, month in zip(axes, months, strict=True):
            extrapolated = ~(month <= follow_up)
            for name, offset in zip(names, offsets, strict=True):
                values = fit.dose_response[name].sel(month=month)
                quantiles = values.quantile([low, 0.5, high], dim=SAMPLE_DIMS).transpose("quantile", "dose").to_numpy()
                colour = RESPONSE_VARIABLES[name]
                axis.vlines(positions + offset, quantiles[0], quantiles[2], color=colour, linewidth=1.4)
                axis.scatter(positions[~extrapolated] + offset, quantiles[1][~extrapolated], color=colour, s=18,
                             zorder=3, label=VARIABLE_LABELS[name])
                axis.scatter(positions[extrapolated] + offset, quantiles[1][extrapolated], facecolor="white",
                             edgecolor=colour, s=18, zorder=3)
            axis.set_title(f"{month_label(month)} after infusion")
            axis.set_xticks(positions, [f"{dose_tick_label(level, unit)}\n(n = {n})" for level, n in
                                        zip(levels, counts, strict=True)])
            axis.set_xlabel(dose_axis_label(spec))
            axis.set_ylabel("probability for a new patient")
            axis.set_ylim(-0.02, 1.02)
        set_figure_title(figure, fit_title(fit, "SLEDAI-2K response probabilities by dose and month"))
        add_notes(figure, legend=legend_entries(axes), notes=[
            f"points and bars: posterior median and {interval:.0%} interval for a new patient with the reference "
            f"baseline; hollow points: months beyond the follow-up observed at that dose (extrapolated)",
            f"n: {spec.trial.id} patients treated at the dose; SLEDAI-2K components and proxies only, not the full "
            "SRI-4 / LLDAS / DORIS definitions",
            *model.notes(),
        ])
    return figure
