"""Plots of fits and decisions, for people: one function per plot, returning the figure.

* :mod:`~lupusbayes.report.plots.diagnostics`: ArviZ 1.x diagnostics (trace, rank, posterior,
  forests, pair, energy, predictive checks and PIT, Pareto k), each an ``arviz_plots.PlotCollection``;
* :mod:`~lupusbayes.report.plots.toxicity`: P(CRS >= g) by dose with the patients seen; P(DLT)
  intervals with the EWOC limit;
* :mod:`~lupusbayes.report.plots.efficacy`: SLEDAI-2K over months by dose; response
  probabilities by dose and month;
* :mod:`~lupusbayes.report.plots.prior_posterior`: what the data changed, per dose;
* :mod:`~lupusbayes.report.plots.decisions`: a recommendation's rules against their
  thresholds; the transition grid;
* :mod:`~lupusbayes.report.plots.kinds`: the kinds by name (:data:`KINDS`), which apply to a
  fit (:func:`plot_kinds_for`; :func:`report_kinds_for`: the domain plots a report shows), and
  :func:`save_plot`.

Figure titles say what the figure shows and which model, in words (:func:`model_in_words`), and
are wrapped to the figure's width (:func:`set_figure_title`), so they are never clipped.

Every function takes its data first and options by keyword, reads a fit as
:func:`~lupusbayes.fitting.load_fit` returns it (so a saved fit is enough), and returns the
figure, to restyle or save. The domain plots are matplotlib ``Figure`` objects not registered
with pyplot (return one from a notebook cell to show it); the diagnostics are ArviZ
``PlotCollection`` objects (``figure_of(plot)`` gives their figure). Axis labels carry the
spec's dose unit; nothing about a trial is hard-coded.

Examples
--------
>>> from lupusbayes.fitting import load_fit
>>> from lupusbayes.report import plots
>>> fit = load_fit("crs.nc")                                       # doctest: +SKIP
>>> plots.plot_kinds_for(fit)                                      # doctest: +SKIP
['trace', 'rank', ..., 'dose_crs', 'dlt_intervals']
>>> plots.save_plot(plots.plot_dose_crs(fit), "dose_crs.png")      # doctest: +SKIP
"""

from lupusbayes.report.plots._data import PlotError, model_in_words
from lupusbayes.report.plots._style import DomainLabeller, figure_of, literal_text, set_figure_title
from lupusbayes.report.plots.decisions import plot_recommendation, plot_transitions
from lupusbayes.report.plots.diagnostics import (
    plot_dose_forest,
    plot_energy,
    plot_group_forest,
    plot_pair,
    plot_pareto_k,
    plot_posterior,
    plot_predictive,
    plot_predictive_pit,
    plot_rank,
    plot_trace,
)
from lupusbayes.report.plots.efficacy import plot_sledai_months, plot_sledai_response
from lupusbayes.report.plots.kinds import (
    KINDS,
    NEEDS,
    PLOT_FORMATS,
    REPORT_KINDS,
    PlotKind,
    make_plot,
    plot_format,
    plot_kinds_for,
    report_kinds_for,
    save_plot,
)
from lupusbayes.report.plots.prior_posterior import plot_prior_posterior_doses
from lupusbayes.report.plots.toxicity import plot_dlt_intervals, plot_dose_crs

__all__ = [
    "KINDS", "NEEDS", "PLOT_FORMATS", "REPORT_KINDS", "PlotKind", "PlotError", "plot_kinds_for",
    "report_kinds_for", "make_plot", "save_plot", "plot_format", "figure_of", "literal_text", "DomainLabeller",
    "model_in_words", "set_figure_title",
    "plot_trace", "plot_rank", "plot_posterior", "plot_dose_forest", "plot_group_forest", "plot_pair",
    "plot_energy", "plot_predictive", "plot_predictive_pit", "plot_pareto_k",
    "plot_prior_posterior_doses", "plot_dose_crs", "plot_dlt_intervals", "plot_sledai_months",
    "plot_sledai_response", "plot_recommendation", "plot_transitions",
]
