"""What the data changed: prior and posterior intervals side by side at each dose."""

from __future__ import annotations

import numpy as np
import xarray as xr
from matplotlib.figure import Figure

from lupusbayes.fitting import FitResult
from lupusbayes.models.base import SAMPLE_DIMS
from lupusbayes.report.plots._data import fit_title, patients_per_level
from lupusbayes.report.plots._style import (
    POSTERIOR_COLOUR,
    PRIOR_COLOUR,
    VARIABLE_LABELS,
    add_notes,
    dose_axis_label,
    dose_tick_label,
    legend_entries,
    month_label,
    new_figure,
    plot_style,
    set_figure_title,
)

__all__ = ["plot_prior_posterior_doses", "dose_quantities"]


def dose_quantities(fit: FitResult) -> list[tuple[str, xr.DataArray, xr.DataArray]]:
    """(label, prior draws, posterior draws) per dose of the quantities a decision reads.

    Toxicity fits: P(CRS >= 1) and P(DLT) (those the fit holds). SLEDAI-2K fits: the expected
    reduction and the decision's response probability, at the decision month
    (``spec.decision.efficacy``; the nearest month the fit holds).
    """
    prior, posterior = fit.prior_dose_response, fit.dose_response
    if fit.model.kind != "sledai":
        out = []
        if "p_crs_at_least" in posterior:
            out.append(("P(CRS >= 1)", prior["p_crs_at_least"].sel(grade=1), posterior["p_crs_at_least"].sel(grade=1)))
        if "p_dlt" in posterior:
            out.append(("P(DLT)", prior["p_dlt"], posterior["p_dlt"]))
        return out
    settings = fit.model.spec.decision.efficacy
    month = float(posterior["month"].sel(month=settings.month, method="nearest"))
    response = f"p_{settings.response}"
    out = [(f"{VARIABLE_LABELS['expected_reduction']}, {month_label(month)}",
            prior["expected_reduction"].sel(month=month), posterior["expected_reduction"].sel(month=month))]
    if response in posterior:
        out.append((f"{VARIABLE_LABELS[response]}, {month_label(month)}", prior[response].sel(month=month),
                    posterior[response].sel(month=month)))
    return out


def plot_prior_posterior_doses(fit: FitResult, *, interval: float = 0.9) -> Figure:
    """Prior (grey) and posterior (blue) median and ``interval`` at each dose, one panel per quantity.

    The number under each pair is the posterior SD over the prior SD: near 1, the data said
    little at that dose and the posterior there is mostly prior.

    Examples
    --------
    >>> figure = plot_prior_posterior_doses(load_fit("crs.nc"))  # doctest: +SKIP
    """
    spec = fit.model.spec
    unit = spec.dosing.unit.value
    quantities = dose_quantities(fit)
    levels = fit.dose_response["dose"].to_numpy()
    counts = patients_per_level(fit, levels)
    positions = np.arange(levels.size)
    low, high = (1 - interval) / 2, (1 + interval) / 2
    with plot_style():
        figure, axes = new_figure(len(quantities), columns=2,
                                  panel_size=(max(4.0, 1.0 * levels.size + 1.6), 3.4))
        for axis, (label, prior, posterior) in zip(axes, quantities, strict=True):
            for draws, offset, colour, name in ((prior, -0.14, PRIOR_COLOUR, "prior"),
                                                (posterior, 0.14, POSTERIOR_COLOUR, "posterior")):
                quantiles = draws.quantile([low, 0.5, high], dim=SAMPLE_DIMS).transpose("quantile", "dose").to_numpy()
                axis.vlines(positions + offset, quantiles[0], quantiles[2], color=colour, linewidth=2.2)
                axis.scatter(positions + offset, quantiles[1], color=colour, s=22, zorder=3,
                             label=f"{name} (median, {interval:.0%} interval)")
            ratio = posterior.std(SAMPLE_DIMS) / prior.std(SAMPLE_DIMS)
            bottom = axis.get_ylim()[0]
            for position, value in zip(positions, ratio.to_numpy(), strict=True):
                axis.annotate(f"{value:.2f}", (position, bottom), textcoords="offset points", xytext=(0, 3),
                              ha="center", fontsize=7, color="#555555")
            axis.set_title(label)
            axis.set_ylabel(label.split(", ")[0])
            axis.set_xticks(positions, [f"{dose_tick_label(level, unit)}\n(n = {n})" for level, n in
                                        zip(levels, counts, strict=True)])
            axis.set_xlabel(dose_axis_label(spec))
        set_figure_title(figure, fit_title(fit, "What the data changed, per dose"))
        basis = fit.dose_response["p_dlt"].attrs.get("definition", "") if "p_dlt" in fit.dose_response else ""
        add_notes(figure, legend=legend_entries(axes), notes=[
            "numbers at the bottom: posterior SD / prior SD at the dose (near 1: the data said little there)",
            f"n: {spec.trial.id} patients treated at the dose",
            f"DLT basis: {basis}" if basis else "",
        ])
    return figure
