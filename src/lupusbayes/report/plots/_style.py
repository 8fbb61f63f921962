"""The look every plot shares: labels with their units, dose axes, colours, footnotes.

One place says how a dose, a CRS grade, a month, a study or a patient is written on a plot,
so the ArviZ diagnostics (through :class:`DomainLabeller`) and the matplotlib domain plots
read alike. Nothing here knows a dose level or a unit: they come from the spec.
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import matplotlib
import numpy as np
from arviz_base.labels import BaseLabeller
from matplotlib import colors
from matplotlib.figure import Figure
from matplotlib.font_manager import FontProperties
from matplotlib.textpath import text_to_path

from lupusbayes.dosing import dose_label
from lupusbayes.spec import TrialSpec

__all__ = [
    "DomainLabeller", "VARIABLE_LABELS", "PARAMETER_MEANINGS", "ACTION_COLOURS", "PRIOR_COLOUR",
    "POSTERIOR_COLOUR", "OBSERVED_COLOUR", "plot_style", "new_figure", "add_notes", "legend_entries", "figure_of",
    "literal_text", "set_figure_title", "wrap_to_width",
    "dose_axis_label", "dose_tick_label", "set_dose_ticks", "crs_event", "month_label", "interval_colours",
    "text_colour",
]

#: What each variable of a fit is, in words (with its unit where it has one).
VARIABLE_LABELS: dict[str, str] = {
    "log_a": "log a",
    "log_b": "log b",
    "mu": "mu (population)",
    "tau": "tau (between studies)",
    "grade_gap": "CRS grade gap",
    "exchangeable": "exchangeable",
    "intercept": "intercept",
    "intercept_study": "study intercept",
    "slope": "dose slope",
    "emax": "Emax",
    "ed50_relative": "ED50 / d*",
    "study_sd": "study SD",
    "dose_group_sd": "dose-group SD",
    "patient_sd": "patient SD",
    "onset_months": "onset (months)",
    "residual_sd": "residual SD (points)",
    "weight_kg": "weight (kg)",
    "plateau_reduction": "plateau reduction",
    "p_dlt": "P(DLT)",
    "p_crs_at_least": "P(CRS >= g)",
    "expected_sledai": "E[SLEDAI-2K] (points)",
    "expected_reduction": "E[reduction] (points)",
    "p_sri4_sledai_component": "P(SRI-4 SLEDAI)",
    "p_lldas_sledai_proxy": "P(SLEDAI-2K <= 4)",
    "p_doris_sledai_proxy": "P(SLEDAI-2K = 0)",
    "sledai": "SLEDAI-2K (points)",
}

#: What the model parameters mean, said once under the diagnostics that show them.
PARAMETER_MEANINGS: dict[str, str] = {
    "log_a": "log a: logit of P(event) at the reference dose d*",
    "log_b": "log b: log of the slope of logit P(event) in log(dose / d*)",
    "grade_gap": "CRS grade gap: distance (logit) between the thresholds of successive CRS grades",
    "tau": "tau: between-study SD of log a and log b (how much studies borrow)",
    "intercept": "intercept: logit of the plateau fraction of baseline SLEDAI-2K removed, at d*",
    "slope": "dose slope: change of that logit per unit log(dose / d*)",
    "patient_sd": "patient SD / dose-group SD / study SD: spread (logit) of the plateau between patients, "
                  "dose groups, studies",
    "onset_months": "onset: months for the reduction to build up (1 - exp(-t / onset))",
    "residual_sd": "residual SD: visit-to-visit noise of SLEDAI-2K around the patient's course (points)",
}

#: Colour of each action of a recommendation (and of the transition grid's cells).
ACTION_COLOURS: dict[str, str] = {
    "start": "#4c72b0",
    "escalate": "#55a868",
    "hold": "#f2c14e",
    "de-escalate": "#f28e2b",
    "stop": "#c44e52",
}
PRIOR_COLOUR = "#9e9e9e"
POSTERIOR_COLOUR = "#1f5f99"
OBSERVED_COLOUR = "#222222"

_STYLE: dict[str, Any] = {
    "font.size": 9,
    "axes.titlesize": 9.5,
    "axes.labelsize": 9,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "legend.fontsize": 8,
    "legend.frameon": False,
    "xtick.labelsize": 8,
    "ytick.labelsize": 8,
    "figure.titlesize": 11,
    "svg.hashsalt": "lupusbayes",  # the same figure gives the same SVG bytes
}


@contextmanager
def plot_style() -> Iterator[None]:
    """The package's matplotlib settings, for the figures made inside the block only."""
    with matplotlib.rc_context(_STYLE):
        yield


def new_figure(n_panels: int = 1, *, columns: int | None = None, panel_size=(4.2, 3.2), sharex=False,
               sharey=False) -> tuple[Figure, np.ndarray]:
    """A figure of ``n_panels`` panels in a grid (not registered with pyplot), and its axes (flat).

    Panels beyond ``n_panels`` in the last row are removed.
    """
    columns = columns or min(n_panels, 3)
    rows = int(np.ceil(n_panels / columns))
    figure = Figure(figsize=(panel_size[0] * columns, panel_size[1] * rows + 0.6), layout="constrained")
    axes = np.atleast_1d(figure.subplots(rows, columns, sharex=sharex, sharey=sharey, squeeze=False)).ravel()
    for extra in axes[n_panels:]:
        extra.remove()
    return figure, axes[:n_panels]


def legend_entries(axes=(), handles=()) -> list:
    """The labelled artists of ``axes`` after ``handles``, each label once (for :func:`add_notes`)."""
    entries: dict[str, Any] = {}
    for handle in handles:
        entries.setdefault(handle.get_label(), handle)
    for axis in axes:
        for handle, label in zip(*axis.get_legend_handles_labels(), strict=True):
            entries.setdefault(label, handle)
    return list(entries.values())


def add_notes(figure: Figure, notes: Iterable[str], *, legend=()) -> None:
    """Write a legend (``legend``: artists with labels) and ``notes`` (one bullet each) under the
    panels; the figure grows to make room, so nothing overlaps the panels or the title."""
    width = max(60, int(figure.get_figwidth() * 15))  # characters of 7.5 pt text across the figure
    lines = [line for note in notes if note for line in textwrap.wrap(f"- {note}", width, subsequent_indent="  ")]
    columns = min(len(legend), 4)
    legend_height = (0.25 * int(np.ceil(len(legend) / columns)) + 0.1) if legend else 0.0
    notes_height = (0.14 * len(lines) + 0.12) if lines else 0.0
    if not legend_height + notes_height:
        return
    height = figure.get_figheight() + legend_height + notes_height
    figure.set_figheight(height)
    share = (legend_height + notes_height) / height
    engine = figure.get_layout_engine()
    if engine is not None and hasattr(engine, "set"):
        engine.set(rect=(0, share, 1, 1 - share))
    else:
        figure.subplots_adjust(bottom=share + 0.06)
    if legend:
        figure.legend(legend, [handle.get_label() for handle in legend], loc="upper left", ncols=columns,
                      bbox_to_anchor=(0.01, share), bbox_transform=figure.transFigure)
    if lines:
        figure.text(0.01, notes_height / height - 0.01, "\n".join(lines), ha="left", va="top", fontsize=7.5,
                    color="#444444")


def wrap_to_width(text: str, width_points: float, fontsize: float | str) -> str:
    """``text`` with each of its lines broken between words so that no line is wider than
    ``width_points`` at ``fontsize`` (measured with the font matplotlib will draw it in)."""
    font = FontProperties(size=fontsize)

    def width(line: str) -> float:
        return text_to_path.get_text_width_height_descent(line, font, ismath=False)[0]

    lines = []
    for paragraph in text.split("\n"):
        line = ""
        for word in paragraph.split(" "):
            candidate = f"{line} {word}" if line else word
            if line and width(candidate) > width_points:
                lines.append(line)
                line = word
            else:
                line = candidate
        lines.append(line)
    return "\n".join(lines)


def set_figure_title(figure: Figure, title: str, *, fontsize: float | str | None = None, **options):
    """The figure's title (``suptitle``), wrapped to the figure's width so that it is never clipped
    at its edges, whatever the trial id, model or recommendation it names. Returns the text."""
    size = fontsize if fontsize is not None else matplotlib.rcParams["figure.titlesize"]
    available = 0.94 * figure.get_figwidth() * 72  # points, less a margin each side
    return figure.suptitle(wrap_to_width(title, available, size), fontsize=size, **options)


def figure_of(plot) -> Figure:
    """The matplotlib figure of a plot: a ``Figure`` itself, or an ArviZ ``PlotCollection``'s."""
    if isinstance(plot, Figure):
        return plot
    figure = plot.viz["figure"]
    return figure.item() if hasattr(figure, "item") else figure


def literal_text(plot):
    """Every text of the figure drawn as written: no mathtext, so ``$`` in a user's scenario name,
    trial id or patient id is a dollar sign, never a formula that can fail to render. Returns ``plot``."""
    from matplotlib.text import Text

    for text in figure_of(plot).findobj(Text):
        text.set_parse_math(False)
    return plot


# ---- doses, grades, months -------------------------------------------------------------------


def dose_axis_label(spec: TrialSpec) -> str:
    """``'dose per infusion (cells/kg)'``: what the dose axis shows, with the spec's unit."""
    return f"dose per infusion ({spec.dosing.unit.value})"


def dose_tick_label(value: float, unit: str) -> str:
    """``'3.0e9'``: a dose without its unit (the axis label carries it)."""
    return dose_label(value, unit).removesuffix(f" {unit}")


def set_dose_ticks(axis, levels, unit: str) -> None:
    """A log dose axis with ticks at the dose levels, labelled without the unit."""
    axis.set_xscale("log")
    axis.set_xticks(list(levels), [dose_tick_label(level, unit) for level in levels])
    axis.minorticks_off()




def crs_event(grade) -> str:
    """``'CRS >= 2'``: the event P(CRS >= g) is about (ASTCT grades)."""
    return f"CRS >= {int(grade)}"


def month_label(month) -> str:
    return f"month {float(month):g}"


def interval_colours(n_intervals: int, overdose_index: int) -> list:
    """Green to yellow along the P(DLT) intervals below the overdose interval; red from it on."""
    ramp = matplotlib.colormaps["RdYlGn_r"]
    safe = ramp(np.linspace(0.1, 0.45, max(overdose_index, 1)))
    unsafe = ramp(np.linspace(0.88, 0.97, max(n_intervals - overdose_index, 1)))
    return [*safe[:overdose_index], *unsafe[: n_intervals - overdose_index]]


def text_colour(background) -> str:
    """Black or white, whichever reads on ``background``."""
    red, green, blue = colors.to_rgb(background)
    return "black" if 0.299 * red + 0.587 * green + 0.114 * blue > 0.5 else "white"


# ---- ArviZ labels ----------------------------------------------------------------------------


class DomainLabeller(BaseLabeller):
    """ArviZ labeller that writes variables and coordinates in the trial's terms.

    Doses carry their unit (``3.0e9 cells``), grades read ``CRS >= 2``, months ``month 3``,
    studies ``study KN5601``, patients ``patient KN5601/001`` (with their dose group when the
    fit records it), and variables their meaning (:data:`VARIABLE_LABELS`).

    Examples
    --------
    >>> labeller = DomainLabeller(dose_unit="cells")
    >>> labeller.make_label_flat("p_dlt", {"dose": 3e9}, {"dose": 2})
    'P(DLT)[3.0e9 cells]'
    """

    def __init__(self, *, dose_unit: str, patient_groups: dict[str, str] | None = None,
                 outcome_label: str | None = None) -> None:
        self.dose_unit = dose_unit
        self.patient_groups = patient_groups or {}
        self.outcome_label = outcome_label

    def var_name_to_str(self, var_name):
        if var_name is None:
            return None
        if var_name == "toxicity_outcome" and self.outcome_label:
            return self.outcome_label
        return VARIABLE_LABELS.get(var_name, var_name)

    def dim_coord_to_str(self, dim, coord_val, coord_idx):
        value = coord_val.item() if hasattr(coord_val, "item") else coord_val
        if dim == "dose":
            return dose_label(float(value), self.dose_unit)
        if dim == "grade":
            return crs_event(value)
        if dim == "grade_step":
            return f"CRS grade {value}"
        if dim == "month":
            return month_label(value)
        if dim == "study":
            return f"study {value}"
        if dim == "parameter":
            return str(value).replace("_", " ")
        if dim == "dose_group":
            return f"dose group {value}"
        if dim in ("patient", "latent_weight_patient"):
            group = self.patient_groups.get(str(value))
            return f"patient {value}" + (f" ({group.split(': ', 1)[-1]})" if group else "")
        if dim == "observation":
            patient, _, month = str(value).partition("@")
            return f"patient {patient}" + (f", month {month.removesuffix('m')}" if month else "")
        return str(value)
