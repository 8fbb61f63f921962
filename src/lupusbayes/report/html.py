"""The Safety Review Committee report: one self-contained HTML file.

Everything an SRC discussion needs, in pipeline order: the data, the eligibility screen, the
models and their priors with the prior predictive, the convergence gate of every fit, the
predictive checks, the dose-response, the recommendation with every rule's numbers and the
warnings, the transition table, and a reproducibility block (versions, seeds, hashes of the
spec and the data, the command that made it). Images are embedded (PNG, base64), there is no
script and no link to fetch, and a print stylesheet keeps sections together on paper, so the
file opens offline anywhere and prints cleanly to PDF.
"""

from __future__ import annotations

import base64
import hashlib
import html
import io
import platform
from dataclasses import dataclass, field
from datetime import date
from importlib import metadata
from pathlib import Path
from typing import Any

import pandas as pd

from lupusbayes._io import write_text_atomic
from lupusbayes._version import __version__
from lupusbayes.decisions import Recommendation, TrialState
from lupusbayes.eligibility import ScreeningReport
from lupusbayes.fitting import FitResult, PriorPredictive
from lupusbayes.report import text
from lupusbayes.spec import TrialSpec
from lupusbayes.summary import CohortSummary

__all__ = ["ReportInputs", "src_report_html", "write_src_report", "report_figures", "figure_png", "LIBRARIES"]

#: Libraries whose versions the reproducibility block lists.
LIBRARIES = ("numpy", "scipy", "pandas", "xarray", "pymc", "pytensor", "nutpie", "arviz", "arviz-base",
             "arviz-stats", "arviz-plots", "matplotlib", "h5netcdf")

_STYLE = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; color: #1f2328; margin: 2em auto;
       max-width: 1100px; line-height: 1.4; font-size: 14px; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; } h2 { font-size: 1.25em; border-bottom: 1px solid #d0d7de;
  padding-bottom: 0.2em; margin-top: 1.6em; } h3 { font-size: 1.05em; }
table { border-collapse: collapse; margin: 0.5em 0 1em; font-size: 12px; }
th, td { border: 1px solid #d0d7de; padding: 2px 6px; text-align: right; } th { background: #f6f8fa; }
td:first-child, th:first-child { text-align: left; }
.verdict { border-left: 4px solid #0969da; padding: 0.4em 0.8em; background: #f6f8fa; margin: 0.6em 0; }
.action { font-size: 1.3em; font-weight: bold; }
.warning { color: #9a6700; } .fail { color: #cf222e; font-weight: bold; } .ok { color: #1a7f37; }
.note { color: #57606a; font-size: 0.95em; }
figure { margin: 0.8em 0; page-break-inside: avoid; } figure img { max-width: 100%; }
figcaption { color: #57606a; font-size: 0.9em; }
pre { background: #f6f8fa; padding: 0.6em; overflow-x: auto; font-size: 12px; white-space: pre-wrap; }
section { page-break-inside: auto; }
@media print { body { margin: 0; max-width: none; font-size: 11px; } h2 { page-break-after: avoid; }
  table, figure, .verdict { page-break-inside: avoid; } }
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


def figure_png(figure: Any, *, dpi: int = 110) -> bytes:
    """PNG bytes of a matplotlib figure or an ArviZ ``PlotCollection``; the figure is closed."""
    import matplotlib.pyplot as plt

    from lupusbayes.report.plots import figure_of, literal_text

    target = figure_of(literal_text(figure))
    buffer = io.BytesIO()
    target.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(target)
    return buffer.getvalue()


def _img(caption: str, figure: Any) -> str:
    data = base64.b64encode(figure_png(figure)).decode("ascii")
    return (f'<figure><img alt="{html.escape(caption)}" src="data:image/png;base64,{data}">'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>")


def _table(frame: pd.DataFrame, *, digits: int = 3) -> str:
    return frame.to_html(index=False, border=0, na_rep="", float_format=lambda v: f"{v:.{digits}g}", escape=True)


def _pre(content: str) -> str:
    return f"<pre>{html.escape(content)}</pre>"


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
    if r.selection is not None and r.selection.reason:
        provisional = " (PROVISIONAL)" if r.selection.provisional else ""
        parts.append(f"<p>Selected{provisional}: <b>{html.escape(r.selection.dose_label or 'no dose')}</b>: "
                     f"{html.escape(r.selection.reason)}</p>")
    parts.append("</div><h3>Every rule</h3><table><tr><th>rule</th><th>question</th><th>verdict</th></tr>")
    for verdict in r.verdicts:
        parts.append(f"<tr><td>{html.escape(verdict.rule)}</td><td>{html.escape(verdict.question)}</td>"
                     f"<td style='text-align:left'>{html.escape(verdict.verdict)}</td></tr>")
    parts.append("</table>")
    rows = [{"rule": v.rule, "level": c.level + 1, "quantity": c.quantity,
             "value": c.estimate.text() if c.estimate is not None else "",
             "threshold": "" if c.threshold is None else f"{c.threshold:g}", "passed": "yes" if c.passed else "NO"}
            for v in r.verdicts for c in v.checks]
    if rows:
        parts.append("<h3>The numbers behind the rules</h3>" + _table(pd.DataFrame(rows)))
    if r.warnings:
        parts.append("<h3>Warnings</h3><ul>" + "".join(f'<li class="warning">{html.escape(w)}</li>'
                                                      for w in r.warnings) + "</ul>")
    if r.notes:
        parts.append("<h3>Notes</h3><ul>" + "".join(f'<li class="note">{html.escape(n)}</li>' for n in r.notes) + "</ul>")
    return "".join(parts)


def src_report_html(inputs: ReportInputs) -> str:
    """The report as one HTML document (see the module docstring)."""
    spec, state = inputs.spec, inputs.state
    made_on = (inputs.made_on or date.today()).isoformat()
    cut_off = state.as_of.isoformat() if state.as_of else "not given"
    out = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>SRC report: {html.escape(spec.trial.id)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>Safety Review Committee report: {html.escape(spec.trial.id)}</h1>",
        f"<p>{html.escape(spec.trial.title)}<br>Data cut-off: {cut_off}. Design: {html.escape(inputs.recommendation.design)}. "
        f"Made on {made_on} with lupusbayes {__version__}.</p>",
        "<h2>1. Recommendation</h2>", _recommendation_section(inputs),
    ]
    if inputs.transitions:
        out += ["<h2>2. What comes after the next cohort</h2>",
                _pre(text.transitions_text(inputs.transitions, spec))]
    out.append("<h2>3. Data</h2>")
    if state.cohort is not None:
        out.append(_table(state.cohort.to_frame(layout="wide")))
    else:
        n, y = state.evaluable_counts()
        out.append(_table(pd.DataFrame({"dose level": range(1, len(n) + 1), "patients": n, "DLTs": y})))
    if inputs.cohort_summary is not None:
        out.append(_pre(text.cohort_summary_text(inputs.cohort_summary)))
    if inputs.screening is not None:
        out += ["<h2>4. Eligibility screening</h2>",
                _pre(text.screening_text(inputs.screening, n_patients=state.n_patients,
                                         n_criteria=len(spec.eligibility)))]
    out.append("<h2>5. Models, priors and the prior predictive</h2>")
    out.append(_pre(text.spec_text(spec)))
    for label, prior in inputs.priors.items():
        out += [f"<h3>{html.escape(label)}: {html.escape(prior.model.name)}</h3>", _pre(text.prior_predictive_text(prior))]
    for label, result in inputs.fits.items():
        out += [f"<h2>6. {html.escape(label)} fit: {html.escape(result.model.name)}</h2>",
                f"<p class='{'ok' if result.converged else 'fail'}'>Convergence gate: "
                f"{'PASSED' if result.converged else 'FAILED'}</p>",
                _pre("\n".join(text.diagnostics_lines(result.diagnostics))),
                "<h3>Dose-response</h3>", _pre(text.compact_table(result.dose_summary()).to_string(index=False)),
                "<h3>What the data changed</h3>", _table(result.prior_posterior_table()),
                "<h3>Predictive checks</h3>", _table(result.ppc_table()),
                "<p class='note'>With few patients these checks have little power: a p-value away from 0 and 1 "
                "means no misfit was detected, not that the model fits.</p>"]
        if result.model.notes():
            out.append("<ul>" + "".join(f"<li class='note'>{html.escape(n)}</li>" for n in result.model.notes()) + "</ul>")
    if inputs.figures:
        out.append("<h2>7. Figures</h2>")
        out += [_img(caption, figure) for caption, figure in inputs.figures]
    out += [
        "<h2>8. Reproducibility</h2>",
        f"<p>Command: <code>{html.escape(inputs.command)}</code></p>",
        _table(pd.DataFrame([
            {"item": "spec", "value": f"{spec.source} (sha256 {spec.sha256})"},
            {"item": "data", "value": f"{state.source} (sha256 {_data_hash(state)})"},
            {"item": "decision seed", "value": str(inputs.seed)},
            *({"item": f"{label} fit", "value": f"{result.model.name}, seed {result.seed}, {result.settings.chains} x "
               f"{result.settings.draws} draws ({result.settings.sampler})"} for label, result in inputs.fits.items()),
        ])),
        _table(_versions()),
        "</body></html>",
    ]
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
