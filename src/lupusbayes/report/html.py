"""The Safety Review Committee report: one self-contained HTML file.

Everything an SRC discussion needs, in pipeline order: the data, the eligibility screen, the
models and their priors with the prior predictive, the convergence gate of every fit, the
predictive checks, the dose-response, the recommendation with every rule's numbers and the
warnings, the transition table, and a reproducibility block (versions, seeds, hashes of the
spec and the data, the command that made it). Images are embedded (PNG, base64), there is no
script and no link to fetch, and a print stylesheet keeps sections together on paper, so the
file opens offline anywhere and prints cleanly to PDF.

Every table is an HTML ``<table>`` (:func:`_html_table`) inside a box that scrolls sideways when
the table is wider than the page, so the page itself never does; tables with one row per dose
are transposed (one row per quantity, one column per dose) so they are long, not wide.
Sections are numbered in code, once each, in the order they appear.
"""

from __future__ import annotations

import base64
import hashlib
import html
import io
import math
import platform
import re
import sys
from dataclasses import dataclass, field
from datetime import date
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lupusbayes._io import write_text_atomic
from lupusbayes._version import __version__
from lupusbayes.decisions import Recommendation, TrialState
from lupusbayes.eligibility import ScreeningReport
from lupusbayes.endpoints import RESPONSE_DEFINITIONS
from lupusbayes.fitting import Diagnostics, FitResult, PriorPredictive
from lupusbayes.models.summaries import MCSE_BOUND_NOTE
from lupusbayes.report import text
from lupusbayes.spec import TrialSpec
from lupusbayes.summary import CohortSummary

__all__ = ["ReportInputs", "src_report_html", "write_src_report", "report_figures", "figure_png", "LIBRARIES"]

#: Libraries whose versions the reproducibility block lists.
LIBRARIES = ("numpy", "scipy", "pandas", "xarray", "pymc", "pytensor", "nutpie", "arviz", "arviz-base",
             "arviz-stats", "arviz-plots", "matplotlib", "h5netcdf")

#: The width of the interval every dose-response table shows (``mean [low, high]``).
INTERVAL = 0.9

#: Text that starts with a number (``0.175 [0.001, 0.622]``, ``0.005 +/- 0.003``): aligned as a number.
_NUMBER_TEXT = re.compile(r"[-+]?(\d|\.\d)")

#: What pandas' ``infer_dtype`` calls a column of numbers.
_NUMERIC_KINDS = ("integer", "floating", "mixed-integer-float", "decimal")

#: What an empty cell means, for the columns where empty would not say it.
_MISSING_TEXT = {"observed to month": "no patients"}

_STYLE = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; color: #1f2328; margin: 2em auto;
       max-width: 1100px; padding: 0 1em; line-height: 1.4; font-size: 14px; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; } h2 { font-size: 1.25em; border-bottom: 1px solid #d0d7de;
  padding-bottom: 0.2em; margin-top: 1.6em; } h3 { font-size: 1.05em; }
.table-box { overflow-x: auto; max-width: 100%; margin: 0.5em 0 1em; }
table { border-collapse: collapse; font-size: 12px; }
caption { caption-side: top; text-align: left; color: #57606a; font-size: 1.05em; padding: 0 0 0.3em; }
th, td { border: 1px solid #d0d7de; padding: 2px 6px; text-align: right; vertical-align: top; }
th { background: #f6f8fa; } .text, th[scope=row] { text-align: left; }
.verdict { border-left: 4px solid #0969da; padding: 0.4em 0.8em; background: #f6f8fa; margin: 0.6em 0; }
.action { font-size: 1.3em; font-weight: bold; }
.warning { color: #9a6700; } .fail { color: #cf222e; font-weight: bold; } .ok { color: #1a7f37; }
.note { color: #57606a; font-size: 0.95em; }
figure { margin: 0.8em 0; page-break-inside: avoid; } figure img { max-width: 100%; }
figcaption { color: #57606a; font-size: 0.9em; }
pre { background: #f6f8fa; padding: 0.6em; font-size: 12px; white-space: pre-wrap; overflow-wrap: anywhere; }
code { overflow-wrap: anywhere; }
section { page-break-inside: auto; }
@media print { body { margin: 0; max-width: none; font-size: 11px; } h2 { page-break-after: avoid; }
  .table-box { overflow: visible; } table, figure, .verdict { page-break-inside: avoid; } }
"""


@dataclass(frozen=True)
class ReportInputs:
    """What a report shows. ``fits`` maps a label (e.g. ``"toxicity"``) to a fit; ``figures`` are
    (caption, figure) pairs, matplotlib figures or ArviZ PlotCollections."""

    spec: TrialSpec
    state: TrialState
    recommendation: Recommendation
    command: str
    seed: int
    cohort_summary: CohortSummary | None = None
    screening: ScreeningReport | None = None
    fits: dict[str, FitResult] = field(default_factory=dict)
    priors: dict[str, PriorPredictive] = field(default_factory=dict)
    transitions: tuple = ()
    figures: tuple[tuple[str, Any], ...] = ()
    made_on: date | None = None
    reachability_warning: str = ""  # the levels no dose path can reach (lupusbayes.decisions.paths), if any
    sensitivity: Any = None  # lupusbayes.sensitivity.PriorSensitivity: the decision under alternative priors


def figure_png(figure: Any, *, dpi: int = 110) -> bytes:
    """PNG bytes of a matplotlib figure or an ArviZ ``PlotCollection``; the figure is closed."""
    from lupusbayes.report.plots import figure_of, literal_text

    target = figure_of(literal_text(figure))
    buffer = io.BytesIO()
    target.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    # the domain figures are not registered with pyplot; an ArviZ one may be, and pyplot is then loaded
    # (importing pyplot only to close nothing would cost a third of a second)
    pyplot = sys.modules.get("matplotlib.pyplot")
    if pyplot is not None:
        pyplot.close(target)
    return buffer.getvalue()


def _img(caption: str, figure: Any) -> str:
    data = base64.b64encode(figure_png(figure)).decode("ascii")
    return (f'<figure><img alt="{html.escape(caption)}" src="data:image/png;base64,{data}">'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>")


# ---- tables ----------------------------------------------------------------------------------


def _is_missing(value: Any) -> bool:
    """True for None, NaN, ``pd.NA`` and ``NaT`` (and False for anything that is not a scalar)."""
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def _short_float(value: float) -> str:
    """A large number in 3 significant digits with a short exponent: ``4.5e9``, ``2.09e7``."""
    mantissa, _, exponent = f"{value:.3g}".partition("e")
    return f"{mantissa}e{int(exponent)}" if exponent else mantissa


def _number_texts(values: np.ndarray) -> list[str]:
    """Finite numbers of one column as text, in one format for the whole column.

    Whole numbers as integers; a column of probabilities (all in [0, 1]) to 3 decimals; very
    large numbers (doses in cells) as ``4.5e9``; anything else to 3 significant digits.
    """
    if np.all(values == np.round(values)) and np.all(np.abs(values) < 1e5):
        return [str(int(v)) for v in values]
    if np.all((values >= 0) & (values <= 1)):
        return [f"{v:.3f}" for v in values]
    if np.any(np.abs(values) >= 1e5):
        return [_short_float(v) for v in values]
    return [np.format_float_positional(v, precision=3, unique=False, fractional=False, trim="-") for v in values]


def _column_texts(column: pd.Series, missing: str = "") -> tuple[list[str], bool]:
    """The cells of one column as text, and whether the column holds numbers (aligned right).

    Missing values (NaN, ``<NA>``) become ``missing``, never ``NaN``; booleans ``yes``/``no``.
    """
    values = column.astype(object).tolist()
    present = [v for v in values if not _is_missing(v)]
    kind = pd.api.types.infer_dtype(present, skipna=True) if present else "empty"
    if kind == "boolean":
        texts = {i: "yes" if v else "no" for i, v in enumerate(values) if not _is_missing(v)}
    elif kind in _NUMERIC_KINDS:
        finite = [(i, float(v)) for i, v in enumerate(values) if not _is_missing(v) and math.isfinite(float(v))]
        numbers = _number_texts(np.array([v for _, v in finite])) if finite else []
        texts = {i: number for (i, _), number in zip(finite, numbers, strict=True)}
        texts |= {i: str(v) for i, v in enumerate(values) if not _is_missing(v) and i not in texts}  # +/-inf
    else:
        texts = {i: str(v) for i, v in enumerate(values) if not _is_missing(v)}
    looks_numeric = bool(texts) and all(_NUMBER_TEXT.match(cell) for cell in texts.values())  # "0.175 [0.001, 0.622]"
    numeric = kind in _NUMERIC_KINDS or looks_numeric
    return [texts.get(i, missing) for i in range(len(values))], numeric


def _header_cell(name: Any, *, scope: str = "col", numeric: bool = True) -> str:
    """A header cell, aligned as its column; long snake_case names may break after their underscores."""
    css = "" if numeric else ' class="text"'
    return f'<th scope="{scope}"{css}>{html.escape(str(name)).replace("_", "_<wbr>")}</th>'


def _html_table(frame: pd.DataFrame, caption: str = "", *, transpose: bool = False) -> str:
    """``frame`` as an HTML table (every text escaped), in a box that scrolls sideways if it must.

    Without ``transpose`` a row of the frame is a row of the table, its columns' names the
    header; numbers are aligned right and formatted per column (:func:`_number_texts`).
    With ``transpose`` the frame's first column (e.g. the dose) becomes the header and every
    other column a row, headed by its name: a table with one row per dose and many quantities
    is then long, not wide.
    """
    names = list(frame.columns)
    columns = [_column_texts(frame.iloc[:, position], _MISSING_TEXT.get(str(name), ""))
               for position, name in enumerate(names)]
    if transpose:
        head = "".join([_header_cell(names[0], numeric=False), *(_header_cell(label) for label in columns[0][0])])
        rows = ["".join([_header_cell(name, scope="row"), *(f"<td>{html.escape(cell)}</td>" for cell in cells)])
                for name, (cells, _) in zip(names[1:], columns[1:], strict=True)]
    else:
        head = "".join(_header_cell(name, numeric=numeric) for name, (_, numeric) in zip(names, columns, strict=True))
        rows = ["".join(f'<td class="{"number" if numeric else "text"}">{html.escape(cells[row])}</td>'
                        for cells, numeric in columns) for row in range(len(frame))]
    caption_html = f"<caption>{html.escape(caption)}</caption>" if caption else ""
    body = "".join(f"<tr>{row}</tr>" for row in rows)
    return f'<div class="table-box"><table>{caption_html}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>'


def _html_list(items, *, css: str = "") -> str:
    """An escaped bulleted list (nothing when there are no items)."""
    items = list(items)
    if not items:
        return ""
    css_class = f' class="{css}"' if css else ""
    return "<ul>" + "".join(f"<li{css_class}>{html.escape(item)}</li>" for item in items) + "</ul>"


def _preformatted(content: str) -> str:
    """Text whose line breaks and spaces matter (a command line), wrapped to the page; never a table."""
    return f"<pre>{html.escape(content)}</pre>"


# ---- the sections ----------------------------------------------------------------------------


def _versions() -> pd.DataFrame:
    rows = [{"software": "lupusbayes", "version": __version__}, {"software": "python", "version": platform.python_version()}]
    for name in LIBRARIES:
        try:
            rows.append({"software": name, "version": metadata.version(name)})
        except metadata.PackageNotFoundError:
            rows.append({"software": name, "version": "not installed"})
    return pd.DataFrame(rows)


def _data_hash(state: TrialState) -> str:
    if state.cohort is not None:
        content = state.cohort.to_csv(layout="long")
    else:
        content = repr(state.counts) + repr([(p.patient_id, p.level, p.dlt) for p in state.patients])
    return hashlib.sha256(content.encode("utf-8")).hexdigest()


def _recommendation_section(inputs: ReportInputs) -> str:
    r, spec = inputs.recommendation, inputs.spec
    action = html.escape(text.action_line(r, spec))
    parts = [f'<div class="verdict"><div class="action">{action}</div>']
    if r.forced:
        parts.append('<p class="fail">FORCED: a fit behind this recommendation FAILED its convergence gate.</p>')
    parts += [f'<p class="fail">{html.escape(alert)}</p>' for alert in r.alerts]
    if inputs.reachability_warning:
        parts.append(f'<p class="warning">{html.escape(inputs.reachability_warning)}</p>')
    if r.selection is not None and r.selection.reason:
        provisional = " (PROVISIONAL)" if r.selection.provisional else ""
        parts.append(f"<p>Selected{provisional}: <b>{html.escape(r.selection.dose_label or 'no dose')}</b>: "
                     f"{html.escape(r.selection.reason)}</p>")
    parts.append("</div><h3>Every rule</h3>")
    parts.append(_html_table(pd.DataFrame([{"rule": v.rule, "question": v.question, "verdict": v.verdict}
                                           for v in r.verdicts], columns=["rule", "question", "verdict"]),
                             "Each rule of the design: the question it asks and its answer now"))
    rows = [{"rule": v.rule, "level": c.level_index + 1, "quantity": c.quantity,
             "value": c.estimate.text() if c.estimate is not None else "",
             "threshold": "" if c.threshold is None else f"{c.threshold:g}", "passed": "yes" if c.passed else "NO"}
            for v in r.verdicts for c in v.checks]
    if rows:
        parts.append("<h3>The numbers behind the rules</h3>" + _html_table(
            pd.DataFrame(rows), "Each rule's number at each dose level (levels count from 1) against its threshold"))
    if r.warnings:
        parts.append("<h3>Warnings</h3>" + _html_list(r.warnings, css="warning"))
    if r.notes:
        parts.append("<h3>Notes</h3>" + _html_list(r.notes, css="note"))
    return "".join(parts)


def _transition_action(recommendation: Recommendation, spec: TrialSpec) -> str:
    """What the design would do after one outcome: ``'escalate to level 3 (...)'`` or ``'STOP (...)'``."""
    r = recommendation
    if r.action == "stop":
        selected = f", select {r.selection.dose_label}" if r.selection and r.selection.dose_label else ""
        return f"STOP ({'; '.join(r.stop_reasons)}){selected}"
    return f"{r.action} {'at' if r.action == 'hold' else 'to'} {text.level_text(spec, r.next_level_index)}"


def _transitions_section(transitions, spec: TrialSpec) -> str:
    """One row per outcome of the next cohort (or of the patients still in the DLT window)."""
    first = transitions[0]
    if first.pending:
        caption = (f"When the {len(transitions) - 1} patient(s) inside the DLT window have completed it: "
                   "the recommendation for each number of DLTs among them")
    else:
        caption = (f"After the next cohort at {text.level_text(spec, first.recommendation.current_level_index)}: "
                   "the recommendation for each outcome of the cohort")
    with_responders = any(row.n_responders is not None for row in transitions)
    rows = []
    for row in transitions:
        entry = {"DLTs": row.n_dlt}
        if with_responders:
            entry["responders"] = row.n_responders
        entry["then"] = _transition_action(row.recommendation, spec)
        entry["caveats"] = "; ".join(w for w in row.recommendation.warnings if "Pareto" in w or "close call" in w)
        rows.append(entry)
    frame = pd.DataFrame(rows)
    if not frame["caveats"].any():
        frame = frame.drop(columns="caveats")
    return _html_table(frame, caption)


def _cohort_summary_html(summary: CohortSummary) -> str:
    """The descriptive cohort summary: one table per view, then its notes and the response definitions."""
    parts = [f"<h3>Cohort summary</h3><p>{summary.n_patients} patients; studies: {html.escape(', '.join(summary.studies))}</p>",
             _html_table(summary.crs_by_grade, "Patients by highest CRS grade (ASTCT)"),
             _html_table(summary.crs_by_dose, "CRS by dose"),
             _html_table(summary.sledai, "SLEDAI-2K per patient: at baseline and at the latest visit"),
             _html_table(summary.responses_overall,
                         "Responses at the latest visit, all patients (SLEDAI-2K only: a component or a proxy "
                         "of each response; see the definitions below)"),
             _html_table(summary.responses_by_dose, "Responses at the latest visit, by dose")]
    if summary.dose_per_kg is not None:
        parts.append(_html_table(summary.dose_per_kg, "Dose in cells/kg (where the weight is not reported: the 90% "
                                                      "interval from the CDC 2000 weight-for-age reference)"))
    if summary.notes:
        parts.append("<p>Notes:</p>" + _html_list(summary.notes, css="note"))
    parts.append("<p>Definitions:</p>" + _html_list(f"{d.label}: {d.sledai_rule}. Full definition: {d.full_definition}."
                                                   for d in RESPONSE_DEFINITIONS.values()))
    return "".join(parts)


def _data_section(inputs: ReportInputs) -> str:
    state = inputs.state
    if state.cohort is not None:
        parts = [_html_table(state.cohort.to_frame(layout="wide"),
                             f"The trial state's patients, one row per patient (from {state.source})")]
    else:
        n, y = state.evaluable_counts()
        parts = [_html_table(pd.DataFrame({"dose level": range(1, len(n) + 1), "patients": n, "DLTs": y}),
                             f"DLT-evaluable patients and DLTs per dose level (from {state.source})")]
    if inputs.cohort_summary is not None:
        parts.append(_cohort_summary_html(inputs.cohort_summary))
    return "".join(parts)


def _screening_section(report: ScreeningReport, *, n_patients: int, n_criteria: int) -> str:
    """Failures, criteria the data cannot assess, and criteria left to the investigator."""
    failures, unknown = report.failures, report.not_assessable
    parts = [f"<p>Screening {n_patients} patients against {html.escape(report.trial_id)} ({n_criteria} criteria).</p>"]
    if failures.empty:
        parts.append("<p>No patient fails a criterion that the data can check.</p>")
    else:
        parts.append(_html_table(failures[["patient_id", "criterion_id", "value", "requirement"]],
                                 f"Failed criteria ({len(failures)}): the patient, the criterion, the value and what "
                                 "the criterion requires"))
    if not unknown.empty:
        counts = unknown.groupby("criterion_id").size()
        parts.append(f"<p>Not assessable (data missing): {len(unknown)} patient-criterion pairs: "
                     + html.escape(", ".join(f"{criterion} ({n})" for criterion, n in counts.items())) + "</p>")
    if report.manual_criteria:
        parts.append("<p>Checked by the investigator, not from data:</p>"
                     + _html_list(f"{criterion.id}: {criterion.text}" for criterion in report.manual_criteria))
    return "".join(parts)


def _spec_html(spec: TrialSpec) -> str:
    """What the spec says (:func:`~lupusbayes.report.text.spec_text`): its first line, then a list."""
    first, *details = text.spec_text(spec).splitlines()
    return f"<p>{html.escape(first)}</p>" + _html_list(line.strip() for line in details)


def _model_notes(result: FitResult | PriorPredictive, table: pd.DataFrame) -> list[str]:
    """The caveats that go with a dose-response table: the model's notes, and what ``+/- <x`` means."""
    notes = list(result.model.notes())
    if any(table[c].any() for c in table.columns if c.endswith("mcse is upper bound")):
        notes.append(f"'+/- <x': {MCSE_BOUND_NOTE}")
    return notes


def _dose_response_caption(table: pd.DataFrame, spec: TrialSpec, *, distribution: str) -> str:
    """What a dose-response table shows, said from its own columns.

    Only a table with a column per toxicity interval mentions the toxicity intervals; a table
    with months (the SLEDAI-2K model) says it is per dose and month.
    """
    per = "per dose and month" if "month" in table.columns else "per dose"
    parts = [f"{distribution} {per}: mean [{INTERVAL:.0%} interval] of each quantity"]
    intervals = spec.dlt.intervals
    labels = [intervals.label(k) for k, name in enumerate(intervals.names) if f"P({name})" in table.columns]
    if labels:
        parts.append("probability that P(DLT) is in each toxicity interval (" + ", ".join(labels)
                     + ") +/- its Monte Carlo error")
    if "extrapolated" in table.columns:
        parts.append("'extrapolated': the month is beyond the follow-up observed at that dose")
    return "; ".join(parts)


def _dose_response_html(table: pd.DataFrame, spec: TrialSpec, *, distribution: str) -> str:
    """A dose summary (prior or posterior) as ``mean [low, high]`` per quantity.

    One row per dose (no months): transposed, one row per quantity and one column per dose.
    """
    compact = text.compact_table(table)
    one_row_per_dose = "month" not in compact.columns and compact["dose"].is_unique
    return _html_table(compact, _dose_response_caption(table, spec, distribution=distribution),
                       transpose=one_row_per_dose)


def _priors_section(inputs: ReportInputs) -> str:
    """The spec in a few lines, then each model's prior per dose and its prior predictive checks."""
    parts = [_spec_html(inputs.spec)]
    for label, prior in inputs.priors.items():
        table = prior.dose_summary(interval=INTERVAL)
        parts += [f"<h3>Prior of the {html.escape(label)} model: {html.escape(prior.model.name)}</h3>",
                  f"<p class='note'>Trial {html.escape(prior.model.spec.trial.id)}; seed {prior.seed}; "
                  f"{prior.tree['prior'].sizes['draw']} prior draws.</p>",
                  _dose_response_html(table, inputs.spec, distribution="Prior"),
                  _html_list(_model_notes(prior, table), css="note"),
                  _html_table(prior.check_table(), "Prior predictive checks: the data's statistics under the prior "
                              "(a mid p-value near 0 or 1: the prior makes what was observed implausible)")]
    return "".join(parts)


def _diagnostics_html(diagnostics: Diagnostics) -> str:
    """The convergence gate: a table of its checks, then the sampling runs and the largest decision MCSE."""
    checks = pd.DataFrame([{"check": c.name, "value": f"{c.value:.4g}" if math.isfinite(c.value) else "not computed",
                            "threshold": f"{c.threshold:.4g}", "result": "ok" if c.passed else "FAIL",
                            "worst": c.worst, "note": c.note} for c in diagnostics.checks],
                          columns=["check", "value", "threshold", "result", "worst", "note"])
    checks = checks.drop(columns=[c for c in ("worst", "note") if not checks[c].any()])
    table = _html_table(checks, "The convergence gate's checks: each measured value against its threshold")
    after_checks = text.diagnostics_lines(diagnostics)[1 + len(diagnostics.checks):]  # sampling runs, largest MCSE
    return table + _html_list(line.strip() for line in after_checks)


def _fit_section(result: FitResult, spec: TrialSpec) -> str:
    """A fit: its convergence gate, dose-response, what the data changed and its predictive checks."""
    table = result.dose_summary(interval=INTERVAL)
    return "".join([
        f"<p class='{'ok' if result.converged else 'fail'}'>Convergence gate: "
        f"{'PASSED' if result.converged else 'FAILED'}</p>",
        _diagnostics_html(result.diagnostics),
        "<h3>Dose-response</h3>", _dose_response_html(table, spec, distribution="Posterior"),
        _html_list(_model_notes(result, table), css="note"),
        "<h3>What the data changed</h3>",
        _html_table(result.prior_posterior_table(interval=INTERVAL),
                    f"Prior and posterior mean and {INTERVAL:.0%} interval of each parameter; sd_ratio = posterior SD "
                    "/ prior SD (near 1: the posterior is mostly prior)"),
        "<h3>Predictive checks</h3>",
        _html_table(result.ppc_table(), "Posterior predictive checks: the data's statistics against replicated data "
                    "(mid p-value)"),
        "<p class='note'>With few patients these checks have little power: a p-value away from 0 and 1 "
        "means no misfit was detected, not that the model fits.</p>",
    ])


def _reproducibility_section(inputs: ReportInputs) -> str:
    spec, state = inputs.spec, inputs.state
    items = pd.DataFrame([
        {"item": "spec", "value": f"{spec.source} (sha256 {spec.sha256})"},
        {"item": "data", "value": f"{state.source} (sha256 {_data_hash(state)})"},
        {"item": "decision seed", "value": str(inputs.seed)},
        *({"item": f"{label} fit", "value": f"{result.model.name}, seed {result.seed}, {result.settings.chains} x "
           f"{result.settings.draws} draws ({result.settings.sampler})"} for label, result in inputs.fits.items()),
    ])
    return "".join(["<p>Command:</p>", _preformatted(inputs.command),
                    _html_table(items, "Inputs: the spec and the data (with their SHA-256), the seeds and the fits"),
                    _html_table(_versions(), "Software versions")])


def _sensitivity_section(sensitivity: Any) -> str:
    """The decision under named alternative priors (a :class:`lupusbayes.sensitivity.PriorSensitivity`),
    and each study's exchangeability weight, prior and posterior, with co-data."""
    verdict = ("No alternative changes the recommendation." if sensitivity.robust else
               "The recommendation DEPENDS on the prior: the committee should hear which prior it rests on and why.")
    parts = [f"<p class='{'ok' if sensitivity.robust else 'warning'}'>{verdict}</p>",
             _html_table(pd.DataFrame(sensitivity.table_rows()),
                         "The recommendation under the spec's prior and under each alternative (same state, same "
                         "co-data, same seed)")]
    if sensitivity.exchangeability:
        parts.append(_html_table(
            pd.DataFrame([{"study": study, "prior weight": prior, "posterior weight": posterior}
                          for study, (prior, posterior) in sensitivity.exchangeability.items()]),
            "Prior-data conflict (EXNEX): each study's probability of being exchangeable, prior and posterior (a "
            "posterior well below its prior: the data look unlike the co-data)"))
    return "".join(parts)


def _sections(inputs: ReportInputs) -> list[tuple[str, str]]:
    """The report's sections in order, as (title, HTML body); numbered by :func:`src_report_html`."""
    spec, state = inputs.spec, inputs.state
    sections = [("Recommendation", _recommendation_section(inputs))]
    if inputs.transitions:
        sections.append(("What comes after the next cohort", _transitions_section(inputs.transitions, spec)))
    sections.append(("Data", _data_section(inputs)))
    if inputs.screening is not None:
        sections.append(("Eligibility screening", _screening_section(inputs.screening, n_patients=state.n_patients,
                                                                     n_criteria=len(spec.eligibility))))
    sections.append(("Models, priors and the prior predictive", _priors_section(inputs)))
    sections += [(f"Fit of the {label} model: {result.model.name}", _fit_section(result, spec))
                 for label, result in inputs.fits.items()]
    if inputs.sensitivity is not None:
        sections.append(("Sensitivity to the prior", _sensitivity_section(inputs.sensitivity)))
    if inputs.figures:
        sections.append(("Figures", "".join(_img(caption, figure) for caption, figure in inputs.figures)))
    sections.append(("Reproducibility", _reproducibility_section(inputs)))
    return sections


def src_report_html(inputs: ReportInputs) -> str:
    """The report as one HTML document (see the module docstring)."""
    spec, state = inputs.spec, inputs.state
    made_on = (inputs.made_on or date.today()).isoformat()
    cut_off = state.as_of.isoformat() if state.as_of else "not given"
    out = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        "<meta name='viewport' content='width=device-width, initial-scale=1'>",
        f"<title>SRC report: {html.escape(spec.trial.id)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>Safety Review Committee report: {html.escape(spec.trial.id)}</h1>",
        f"<p>{html.escape(spec.trial.title)}<br>Data cut-off: {cut_off}. Design: {html.escape(inputs.recommendation.design)}. "
        f"Made on {made_on} with lupusbayes {__version__}.</p>",
    ]
    out += [f"<section id='section-{number}'><h2>{number}. {html.escape(title)}</h2>\n{body}</section>"
            for number, (title, body) in enumerate(_sections(inputs), start=1)]
    out.append("</body></html>")
    return "\n".join(out)


def report_figures(spec: TrialSpec, fits: dict[str, FitResult], recommendation: Recommendation,
                   transitions) -> tuple[tuple[str, Any], ...]:
    """The report's figures: the domain plots of each fit, the recommendation and the transitions."""
    from lupusbayes.report import plots

    figures = []
    for label, result in fits.items():
        for kind in plots.report_kinds_for(result):
            figures.append((f"{label}: {plots.KINDS[kind].title}", plots.KINDS[kind].function(result)))
    figures.append(("The recommendation: each rule's number against its threshold",
                    plots.plot_recommendation(recommendation, spec)))
    if transitions:
        figures.append(("After the next cohort: the recommendation for each outcome", plots.plot_transitions(transitions, spec)))
    return tuple(figures)


def write_src_report(path: str | Path, inputs: ReportInputs, *, overwrite: bool = False, mkdir: bool = False) -> Path:
    """Write the report atomically (an existing file is replaced only with ``overwrite``)."""
    return write_text_atomic(Path(path), src_report_html(inputs), overwrite=overwrite, mkdir=mkdir)
