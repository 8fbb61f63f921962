"""ArviZ 1.x diagnostics of a fit, in the trial's terms: trace, rank, posteriors, forests, pair,
energy, predictive checks (distribution and PIT) and PSIS-LOO Pareto k.

Each function reads a :class:`~lupusbayes.fitting.FitResult` (as :func:`~lupusbayes.fitting.load_fit`
returns it, so a plot can be made from a saved fit on another machine) and returns the
``arviz_plots.PlotCollection``; its figure is ``figure_of(collection)``. Axes and facets carry
domain labels (:class:`~lupusbayes.report.plots._style.DomainLabeller`).
"""

from __future__ import annotations

import warnings

import arviz_plots
import numpy as np
import xarray as xr

from lupusbayes.dosing import dose_label
from lupusbayes.fitting import FitResult
from lupusbayes.fitting.result import REPORTED_PARAMETERS
from lupusbayes.models.base import SAMPLE_DIMS
from lupusbayes.report.plots._data import fit_title, thinned
from lupusbayes.report.plots._style import (
    PARAMETER_MEANINGS,
    DomainLabeller,
    add_notes,
    figure_of,
    set_figure_title,
)

__all__ = ["plot_trace", "plot_rank", "plot_posterior", "plot_dose_forest", "plot_group_forest", "plot_pair",
           "plot_energy", "plot_predictive", "plot_predictive_pit", "plot_pareto_k", "diagnostic_parameters",
           "labeller_for"]

_OUTCOME_LABELS = {"crs_grade": "CRS grade (ASTCT)", "crs_any": "any CRS (0 no, 1 yes)", "dlt": "DLT (0 no, 1 yes)"}


def labeller_for(fit: FitResult) -> DomainLabeller:
    """The labeller of ``fit``'s plots: its dose unit, its patients' dose groups, its outcome."""
    constants = fit.tree["constant_data"].to_dataset()
    groups = {}
    if "dose_group" in constants:
        variable = constants["dose_group"]
        groups = dict(zip(map(str, variable[variable.dims[0]].to_numpy()), map(str, variable.to_numpy()), strict=True))
    outcome = fit.tree["observed_data"].attrs.get("outcome")
    return DomainLabeller(dose_unit=fit.model.spec.dosing.unit.value, patient_groups=groups,
                          outcome_label=_OUTCOME_LABELS.get(outcome))


def diagnostic_parameters(fit: FitResult, *, max_elements: int = 4) -> list[str]:
    """The parameters the diagnostics show: the reported ones with at most ``max_elements``
    elements each (per-patient effects are left to :func:`plot_group_forest`).

    Without borrowing (one study) ``mu`` repeats ``log_a`` / ``log_b`` and is left out; the
    EXNEX indicator ``exchangeable`` is 0 or 1 and has no trace worth reading.
    """
    posterior = fit.posterior
    single_study = posterior.sizes.get("study", 1) == 1
    names = []
    for name in REPORTED_PARAMETERS:
        if name not in posterior or name == "exchangeable" or (name == "mu" and single_study):
            continue
        extra = [d for d in posterior[name].dims if d not in SAMPLE_DIMS]
        if int(np.prod([posterior.sizes[d] for d in extra])) <= max_elements:
            names.append(name)
    return names


def _elements(fit: FitResult, names: list[str], group: str = "posterior", coords=None) -> int:
    """How many scalar panels ``names`` make (one per element beyond chain and draw)."""
    data = fit.tree[group].to_dataset()
    if coords:
        data = data.sel(coords)
    return sum(int(np.prod([data.sizes[d] for d in data[n].dims if d not in SAMPLE_DIMS])) for n in names)


def _layout(width: float, height: float) -> dict:
    """ArviZ's figure options: a size and matplotlib's constrained layout (titles and notes fit)."""
    return {"figure_kwargs": {"figsize": (width, height), "layout": "constrained"}}


def _parameter_notes(fit: FitResult, names: list[str]) -> list[str]:
    dosing = fit.model.spec.dosing
    notes = [PARAMETER_MEANINGS[n] for n in names if n in PARAMETER_MEANINGS]
    return [*notes, f"reference dose d* = {dose_label(dosing.reference_dose, dosing.unit.value)}"]


def _relabel(collection, replacements: dict[str, str]) -> None:
    """Replace ArviZ's generic axis labels (``Draw``) by ours."""
    for axis in figure_of(collection).axes:
        for getter, setter in ((axis.get_xlabel, axis.set_xlabel), (axis.get_ylabel, axis.set_ylabel)):
            if getter() in replacements:
                setter(replacements[getter()])


def _title(collection, fit: FitResult, text: str) -> None:
    """The figure's title: what is shown, then the fit (:func:`fit_title`)."""
    set_figure_title(figure_of(collection), fit_title(fit, text))


def plot_trace(fit: FitResult, *, var_names: list[str] | None = None):
    """Trace and marginal density of each parameter, one line per chain.

    Parameters
    ----------
    fit
        A fit (``load_fit(path)`` or ``lupusbayes.fit(...)``).
    var_names
        Parameters to show (default :func:`diagnostic_parameters`).

    Examples
    --------
    >>> collection = plot_trace(load_fit("crs.nc"))  # doctest: +SKIP
    >>> collection.savefig("trace.png")              # doctest: +SKIP
    """
    names = var_names or diagnostic_parameters(fit)
    collection = arviz_plots.plot_trace_dist(fit.tree, var_names=names, compact=False, labeller=labeller_for(fit),
                                             **_layout(10, 1.7 * _elements(fit, names) + 1.2))
    _relabel(collection, {"Draw": "MCMC draw (one line per chain)"})
    _title(collection, fit, "Trace and posterior density")
    add_notes(figure_of(collection), _parameter_notes(fit, names))
    return collection


def plot_rank(fit: FitResult, *, var_names: list[str] | None = None):
    """Rank ECDF differences per chain, with simultaneous envelopes (chains should mix).

    Examples
    --------
    >>> plot_rank(load_fit("crs.nc")).savefig("rank.png")  # doctest: +SKIP
    """
    names = var_names or diagnostic_parameters(fit)
    rows = int(np.ceil(_elements(fit, names) / 3))
    collection = arviz_plots.plot_rank(fit.tree, var_names=names, labeller=labeller_for(fit),
                                       **_layout(10, 2.4 * rows + 0.8))
    _title(collection, fit, "Rank plots: chains should be indistinguishable")
    return collection


def plot_posterior(fit: FitResult, *, var_names: list[str] | None = None, interval: float = 0.9):
    """Posterior density of each parameter with its median and equal-tailed ``interval``.

    Examples
    --------
    >>> plot_posterior(load_fit("sledai.nc"), interval=0.8).savefig("posterior.png")  # doctest: +SKIP
    """
    names = var_names or diagnostic_parameters(fit)
    rows = int(np.ceil(_elements(fit, names) / 3))
    collection = arviz_plots.plot_dist(fit.tree, var_names=names, labeller=labeller_for(fit), ci_kind="eti",
                                       ci_prob=interval, point_estimate="median", **_layout(10, 2.4 * rows + 1.2))
    _title(collection, fit, f"Posterior distributions, median and {interval:.0%} interval")
    add_notes(figure_of(collection), _parameter_notes(fit, names))
    return collection


def _dose_variables(fit: FitResult) -> list[str]:
    dose_response = fit.dose_response
    if fit.model.kind == "sledai":
        return [n for n in ("p_sri4_sledai_component", "p_lldas_sledai_proxy", "p_doris_sledai_proxy")
                if n in dose_response]
    return [n for n in ("p_crs_at_least", "p_dlt") if n in dose_response]


def plot_dose_forest(fit: FitResult, *, var_names: list[str] | None = None, interval: float = 0.9):
    """Per-dose posterior probabilities of the target trial (by CRS grade, or by month), as a forest.

    Toxicity fits show P(CRS >= g) and P(DLT) per dose; SLEDAI-2K fits the response
    probabilities per dose and month. Median, 50% and ``interval`` intervals.

    Examples
    --------
    >>> plot_dose_forest(load_fit("crs.nc")).savefig("forest.png")  # doctest: +SKIP
    """
    names = var_names or _dose_variables(fit)
    collection = arviz_plots.plot_forest(fit.tree, group="dose_response", var_names=names, combined=True,
                                         ci_kind="eti", ci_probs=(0.5, interval), point_estimate="median",
                                         labeller=labeller_for(fit),
                                         **_layout(10, 0.28 * _elements(fit, names, "dose_response") + 1.6))
    figure = figure_of(collection)
    figure.axes[-1].set_xlabel(f"posterior probability (median, 50% and {interval:.0%} intervals)")
    _title(collection, fit, f"Per dose ({fit.model.spec.dosing.unit.value})")
    return collection


def plot_group_forest(fit: FitResult, *, interval: float = 0.9):
    """Parameters across studies (toxicity: log a, log b per study) or patients (SLEDAI-2K: each
    patient's plateau reduction, labelled with the patient's dose group).

    Examples
    --------
    >>> plot_group_forest(load_fit("sledai.nc")).savefig("groups.png")  # doctest: +SKIP
    """
    names = ["plateau_reduction"] if fit.model.kind == "sledai" else ["log_a", "log_b"]
    columns = ["patient"] if fit.model.kind == "sledai" else ["__variable__", "study"]
    collection = arviz_plots.plot_forest(fit.tree, var_names=names, combined=True, ci_kind="eti",
                                         ci_probs=(0.5, interval), point_estimate="median", labels=columns,
                                         labeller=labeller_for(fit), **_layout(10, 0.3 * _elements(fit, names) + 1.6))
    what = "patients (fraction of baseline SLEDAI-2K removed at the plateau)" if fit.model.kind == "sledai" \
        else "studies (logit scale)"
    figure_of(collection).axes[-1].set_xlabel(f"posterior median, 50% and {interval:.0%} intervals")
    _title(collection, fit, f"Across {what}")
    return collection


def _thinned_tree(fit: FitResult, max_draws: int = 2000) -> xr.DataTree:
    """The posterior and sample stats with at most about ``max_draws`` draws (for scatter plots)."""
    return xr.DataTree.from_dict({group: thinned(fit.tree[group].to_dataset(), max_draws)
                                  for group in ("posterior", "sample_stats")})


def _pair_parameters(fit: FitResult, coords, max_panels: int = 5) -> list[str]:
    """The first diagnostic parameters that fit in ``max_panels`` rows of a pair plot."""
    names: list[str] = []
    for name in diagnostic_parameters(fit):
        if _elements(fit, [*names, name], coords=coords) <= max_panels:
            names.append(name)
    return names


def plot_pair(fit: FitResult, *, var_names: list[str] | None = None):
    """Pairwise posterior scatter of the parameters (divergent draws marked).

    By default the target trial's parameters and as many others as fit in five rows; at most
    2000 evenly spaced draws are scattered.

    Examples
    --------
    >>> plot_pair(load_fit("crs.nc"), var_names=["log_a", "log_b"]).savefig("pair.png")  # doctest: +SKIP
    """
    target = {"study": [fit.model.spec.trial.id]} if "study" in fit.posterior.dims else None
    names = var_names or _pair_parameters(fit, target)
    size = 1.9 * _elements(fit, names, coords=target) + 1.0
    collection = arviz_plots.plot_pair(_thinned_tree(fit), var_names=names, coords=target,
                                       labeller=labeller_for(fit), **_layout(size, size))
    _title(collection, fit, "Pairwise posterior")
    return collection


def plot_energy(fit: FitResult):
    """NUTS energy: marginal and transition distributions, with the BFMI per chain.

    Examples
    --------
    >>> plot_energy(load_fit("crs.nc")).savefig("energy.png")  # doctest: +SKIP
    """
    collection = arviz_plots.plot_energy(fit.tree, labeller=labeller_for(fit), **_layout(7, 4))
    bfmi, energy = figure_of(collection).axes[:2]
    bfmi.set_title("BFMI per chain (below 0.3: poor)")
    bfmi.set_xlabel("BFMI")
    energy.set_title("marginal vs transition energy")
    energy.set_xlabel("energy (centred)")
    _title(collection, fit, "NUTS energy: the two distributions should match")
    return collection


def _outcome_axis_label(fit: FitResult) -> str:
    if fit.model.kind == "sledai":
        return "SLEDAI-2K at follow-up visits (points)"
    return _OUTCOME_LABELS.get(fit.tree["observed_data"].attrs.get("outcome"), "outcome")


def plot_predictive(fit: FitResult, *, prior: bool = False):
    """Observed outcomes against replicated ones from the posterior predictive (``prior=True``: the prior's).

    Ordinal and binary outcomes (CRS grade, DLT) as a rootogram of counts per category with
    predictive intervals; SLEDAI-2K scores as empirical CDFs of replicated data sets.

    Examples
    --------
    >>> plot_predictive(load_fit("crs.nc"), prior=True).savefig("prior_predictive.png")  # doctest: +SKIP
    """
    group = "prior_predictive" if prior else "posterior_predictive"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ArviZ's advice on discrete data, followed below
        if fit.model.kind == "sledai":
            collection = arviz_plots.plot_ppc_dist(fit.tree, group=group, kind="ecdf", labeller=labeller_for(fit),
                                                   **_layout(7, 4))
        else:
            collection = arviz_plots.plot_ppc_rootogram(fit.tree, group=group, labeller=labeller_for(fit),
                                                        **_layout(7, 4))
    axis = figure_of(collection).axes[0]
    axis.set_title(_outcome_axis_label(fit))
    axis.set_xlabel(_outcome_axis_label(fit))
    if fit.model.kind != "sledai":
        axis.set_ylabel("patients (square-root scale)")
        axis.set_xticks(np.arange(fit.model.n_categories))
    else:
        axis.set_ylabel("cumulative share of visits")
    which = "Prior" if prior else "Posterior"
    _title(collection, fit, f"{which} predictive check: observed (black) vs replicated")
    return collection


def plot_predictive_pit(fit: FitResult, *, prior: bool = False):
    """Probability integral transform of the observed outcomes under the posterior predictive
    (``prior=True``: the prior's).

    An ECDF difference inside its simultaneous envelope means no misfit detected.

    Examples
    --------
    >>> plot_predictive_pit(load_fit("sledai.nc")).savefig("pit.png")  # doctest: +SKIP
    """
    group = "prior_predictive" if prior else "posterior_predictive"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # discrete outcomes: ArviZ randomises the PIT and says so
        collection = arviz_plots.plot_ppc_pit(fit.tree, group=group, labeller=labeller_for(fit), **_layout(7, 4))
    axis = figure_of(collection).axes[0]
    axis.set_xlabel(f"PIT of the observed {_outcome_axis_label(fit)}")
    axis.set_ylabel("ECDF - uniform")
    which = "prior" if prior else "posterior"
    _title(collection, fit, f"PIT of the {which} predictive")
    return collection


def plot_pareto_k(fit: FitResult):
    """PSIS-LOO Pareto k of each patient (above 0.7: leave-one-out is unreliable for that patient).

    Examples
    --------
    >>> plot_pareto_k(load_fit("crs.nc")).savefig("pareto_k.png")  # doctest: +SKIP
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the plot shows which patients exceed 0.7
        loo = fit.loo()
    collection = arviz_plots.plot_khat(loo, threshold=0.7, labeller=labeller_for(fit), **_layout(8, 4))
    axis = figure_of(collection).axes[0]
    patients = fit.tree["log_likelihood"].to_dataset()
    names = [str(v) for v in patients[next(d for d in patients.dims if d not in SAMPLE_DIMS)].to_numpy()]
    axis.set_xticks(np.arange(len(names)), names, rotation=60, ha="right", fontsize=7)
    axis.set_xlabel("patient (left out one at a time)")
    axis.set_ylabel("Pareto k")
    _title(collection, fit, "PSIS-LOO Pareto k per patient")
    return collection
