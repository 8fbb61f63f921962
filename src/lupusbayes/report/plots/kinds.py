"""The plot kinds by name (what the command line's ``--kind`` takes), which apply to a fit, and
writing a plot to a file.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

from lupusbayes._io import write_atomic
from lupusbayes.errors import OutputPathError
from lupusbayes.fitting import FitResult
from lupusbayes.report.plots import decisions, diagnostics, efficacy, prior_posterior, toxicity
from lupusbayes.report.plots._data import PlotError
from lupusbayes.report.plots._style import figure_of, literal_text, plot_style

__all__ = ["PlotKind", "KINDS", "NEEDS", "PLOT_FORMATS", "REPORT_KINDS", "plot_kinds_for", "report_kinds_for",
           "make_plot", "save_plot", "plot_format"]

#: What a kind is made from.
NEEDS = ("fit", "toxicity fit", "sledai fit", "recommendation", "transitions")
#: File formats a plot is written in (by the output's extension).
PLOT_FORMATS = ("png", "svg", "pdf")


class PlotKind(NamedTuple):
    """A plot function and what it needs: ``"fit"`` (any fit), ``"toxicity fit"``, ``"sledai fit"``,
    ``"recommendation"`` or ``"transitions"``."""

    function: Callable[..., Any]
    needs: str

    @property
    def title(self) -> str:
        """What the plot shows, in one sentence (the first of its function's docstring): a caption."""
        paragraph = " ".join((self.function.__doc__ or "").strip().split("\n\n")[0].split())
        return paragraph.split(". ")[0].rstrip(".").replace("``", "")


def _prior(function: Callable[..., Any], summary: str) -> Callable[..., Any]:
    """``function`` with ``prior=True`` (the prior predictive variants of the predictive checks)."""

    def plot(fit: FitResult, **options):
        return function(fit, prior=True, **options)

    plot.__name__ = f"{function.__name__}_prior"
    plot.__doc__ = f"{summary}\n\n``{function.__name__}(fit, prior=True)``."
    return plot


#: Every plot by the name ``lupusbayes plot --kind`` takes.
KINDS: dict[str, PlotKind] = {
    # ArviZ diagnostics
    "trace": PlotKind(diagnostics.plot_trace, "fit"),
    "rank": PlotKind(diagnostics.plot_rank, "fit"),
    "posterior": PlotKind(diagnostics.plot_posterior, "fit"),
    "forest_doses": PlotKind(diagnostics.plot_dose_forest, "fit"),
    "forest_groups": PlotKind(diagnostics.plot_group_forest, "fit"),
    "pair": PlotKind(diagnostics.plot_pair, "fit"),
    "energy": PlotKind(diagnostics.plot_energy, "fit"),
    "prior_predictive": PlotKind(_prior(diagnostics.plot_predictive, "Observed outcomes against replicated ones "
                                        "from the prior predictive: does the prior allow what was seen?"), "fit"),
    "prior_predictive_pit": PlotKind(_prior(diagnostics.plot_predictive_pit, "Probability integral transform of the "
                                            "observed outcomes under the prior predictive"), "fit"),
    "posterior_predictive": PlotKind(diagnostics.plot_predictive, "fit"),
    "posterior_predictive_pit": PlotKind(diagnostics.plot_predictive_pit, "fit"),
    "pareto_k": PlotKind(diagnostics.plot_pareto_k, "fit"),
    # what the data changed
    "prior_posterior": PlotKind(prior_posterior.plot_prior_posterior_doses, "fit"),
    # dose-toxicity
    "dose_crs": PlotKind(toxicity.plot_dose_crs, "toxicity fit"),
    "dlt_intervals": PlotKind(toxicity.plot_dlt_intervals, "toxicity fit"),
    # SLEDAI-2K
    "sledai_months": PlotKind(efficacy.plot_sledai_months, "sledai fit"),
    "sledai_response": PlotKind(efficacy.plot_sledai_response, "sledai fit"),
    # decisions
    "recommendation": PlotKind(decisions.plot_recommendation, "recommendation"),
    "transitions": PlotKind(decisions.plot_transitions, "transitions"),
}

#: Variables of ``dose_response`` a toxicity kind reads (a CRS model without a CRS DLT
#: threshold has no P(DLT); a BLRM of DLTs has no P(CRS >= g)).
_READS = {"dose_crs": "p_crs_at_least", "dlt_intervals": "p_dlt"}


def _why_not(kind: str, fit: FitResult) -> str:
    """Why ``kind`` does not apply to ``fit`` (empty when it does)."""
    needs = KINDS[kind].needs
    is_sledai = fit.model.kind == "sledai"
    if needs in ("recommendation", "transitions"):
        return f"'{kind}' is drawn from a recommendation, not a fit alone (give the trial's state)"
    if needs == "sledai fit" and not is_sledai:
        return f"'{kind}' needs a SLEDAI-2K fit; this is a {fit.model.name} fit"
    if needs == "toxicity fit" and is_sledai:
        return f"'{kind}' needs a toxicity fit (CRS model or BLRM); this is a {fit.model.name} fit"
    if kind in _READS and _READS[kind] not in fit.dose_response:
        return f"'{kind}' needs {_READS[kind]} per dose, which the {fit.model.name} fit does not hold"
    return ""


#: The kinds an SRC report shows for a fit, in this order (the domain plots; no diagnostics).
REPORT_KINDS = ("dose_crs", "dlt_intervals", "sledai_months", "sledai_response", "prior_posterior")


def report_kinds_for(fit: FitResult) -> list[str]:
    """The domain kinds (:data:`REPORT_KINDS`) that apply to ``fit``, for a report."""
    applicable = plot_kinds_for(fit)
    return [kind for kind in REPORT_KINDS if kind in applicable]


def plot_kinds_for(fit: FitResult) -> list[str]:
    """The kinds that can be drawn from ``fit`` alone, in :data:`KINDS` order.

    Examples
    --------
    >>> "sledai_months" in plot_kinds_for(load_fit("crs.nc"))  # doctest: +SKIP
    False
    """
    return [kind for kind in KINDS if not _why_not(kind, fit)]


def make_plot(kind: str, source, *, spec=None, **options):
    """Draw ``kind`` from ``source`` (a fit, a recommendation or transitions, as the kind needs).

    ``spec`` is the trial spec, needed by the decision kinds; ``options`` go to the plot
    function. Raises :class:`PlotError` (one line) for an unknown kind or one that does not
    apply to ``source``.

    Examples
    --------
    >>> figure = make_plot("dose_crs", load_fit("crs.nc"), interval=0.8)  # doctest: +SKIP
    """
    if kind not in KINDS:
        raise PlotError(f"unknown plot kind '{kind}'; the kinds are: {', '.join(KINDS)}")
    function, needs = KINDS[kind]
    if needs in ("recommendation", "transitions"):
        if isinstance(source, FitResult) or spec is None:
            raise PlotError(f"'{kind}' is drawn from a {needs} and its spec, not from a fit")
        return literal_text(function(source, spec, **options))
    if not isinstance(source, FitResult):
        raise PlotError(f"'{kind}' is drawn from a fit (got {type(source).__name__})")
    reason = _why_not(kind, source)
    if reason:
        raise PlotError(f"{reason}; kinds for this fit: {', '.join(plot_kinds_for(source))}")
    return literal_text(function(source, **options))


def plot_format(path: str | Path) -> str:
    """The file format of ``path`` from its extension (png, svg or pdf); one-line error otherwise."""
    suffix = Path(path).suffix.lower().lstrip(".")
    if suffix not in PLOT_FORMATS:
        raise OutputPathError(f"{path}: unknown plot format '.{suffix}'; end the file name in "
                              + ", ".join(f".{f}" for f in PLOT_FORMATS))
    return suffix


def save_plot(plot, path: str | Path, *, overwrite: bool = False, mkdir: bool = False, dpi: int = 120) -> Path:
    """Write a figure or ``PlotCollection`` to ``path`` (png, svg or pdf), atomically.

    An existing file is replaced only with ``overwrite=True``; a missing folder is created only
    with ``mkdir=True``. SVG and PDF carry no creation date, so the same plot gives the same file.

    Examples
    --------
    >>> save_plot(plot_dose_crs(fit), "dose_crs.svg", overwrite=True)  # doctest: +SKIP
    """
    file_format = plot_format(path)
    figure = figure_of(literal_text(plot))
    metadata = {"png": {"Software": None}, "svg": {"Date": None}, "pdf": {"CreationDate": None}}[file_format]

    def write(temporary: Path) -> None:
        with plot_style():  # fixes the SVG id salt, so the same figure gives the same bytes
            figure.savefig(temporary, format=file_format, dpi=dpi, metadata=metadata)

    return write_atomic(Path(path), write, overwrite=overwrite, mkdir=mkdir)
