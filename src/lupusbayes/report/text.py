"""Plain-text rendering of every lupusbayes result: one place for what a user reads.

Each function takes a result object and returns text (``str``) or lines; the command line
prints them, the demo writes them to ``report.txt``. Nothing here computes a number: the
numbers come from the objects' own tables.
"""

from __future__ import annotations

import pandas as pd

from lupusbayes.eligibility import ScreeningReport
from lupusbayes.endpoints import RESPONSE_DEFINITIONS
from lupusbayes.fitting import Diagnostics, FitResult
from lupusbayes.spec import TrialSpec
from lupusbayes.summary import CohortSummary

__all__ = ["cohort_summary_text", "spec_text", "screening_text", "diagnostics_lines", "fit_text", "compact_table"]

_WIDTH = 100


def _table(frame: pd.DataFrame, **options) -> str:
    return frame.to_string(index=False, line_width=_WIDTH, **options)


def cohort_summary_text(summary: CohortSummary) -> str:
    """The descriptive cohort summary (``lupusbayes data show``)."""
    parts = [
        f"{summary.n_patients} patients; studies: {', '.join(summary.studies)}",
        "",
        "CRS by ASTCT grade",
        _table(summary.crs_by_grade),
        "",
        "CRS by dose",
        _table(summary.crs_by_dose),
        "",
        "SLEDAI-2K: baseline and latest visit",
        _table(summary.sledai),
        "",
        "Responses at the latest visit (SLEDAI-2K only: component / proxies, see definitions)",
        _table(summary.responses_overall),
        "",
        _table(summary.responses_by_dose),
    ]
    if summary.dose_per_kg is not None:
        parts += [
            "",
            "Dose in cells/kg (weight not reported: 90% interval from the CDC 2000 weight-for-age reference)",
            _table(summary.dose_per_kg),
        ]
    parts += ["", "Definitions:"]
    parts += [f"  {d.label}: {d.sledai_rule}. Full definition: {d.full_definition}." for d in RESPONSE_DEFINITIONS.values()]
    return "\n".join(parts)


def spec_text(spec: TrialSpec) -> str:
    """What a spec says, in a few lines (``lupusbayes spec check``)."""
    unit = spec.dosing.unit.value
    levels = ", ".join(f"{level:.3g}" for level in spec.dosing.levels)
    rules = spec.escalation
    intervals = spec.dlt.intervals
    lines = [
        f"Trial {spec.trial.id}: {spec.trial.title}".rstrip(": "),
        f"  dose levels ({unit}): {levels}; reference dose {spec.dosing.reference_dose:.3g} {unit}",
        f"  DLT window {spec.dlt.window_days} days; DLT: " + "; ".join(spec.dlt.definition),
        "  P(DLT) intervals: " + ", ".join(intervals.label(k) for k in range(len(intervals.names)))
        + f"; overdose interval: {intervals.overdose}",
        f"  groups of {rules.group_size}; sentinel patients {rules.sentinel_patients} "
        f"(>= {rules.sentinel_safety_days} days before the rest); >= {rules.group_safety_days_before_next} "
        f"days before the next group; skipping {'allowed' if rules.allow_skipping else 'not allowed'}; "
        f"efficacy-driven escalation {'allowed' if rules.efficacy_driven_escalation else 'not allowed'}",
        f"  eligibility: {sum(c.automatic for c in spec.eligibility)} criteria checked from data, "
        f"{sum(not c.automatic for c in spec.eligibility)} by the investigator",
    ]
    return "\n".join(lines)


def screening_text(report: ScreeningReport, *, n_patients: int, n_criteria: int) -> str:
    """Failures, criteria the data cannot assess, and criteria left to the investigator."""
    failures, unknown = report.failures, report.not_assessable
    lines = [f"Screening {n_patients} patients against {report.trial_id} ({n_criteria} criteria)"]
    if failures.empty:
        lines.append("No patient fails a criterion that the data can check.")
    else:
        lines += ["", f"Failed criteria ({len(failures)}):",
                  _table(failures[["patient_id", "criterion_id", "value", "requirement"]])]
    if not unknown.empty:
        counts = unknown.groupby("criterion_id").size()
        lines += ["", f"Not assessable (data missing): {len(unknown)} patient-criterion pairs",
                  "  " + ", ".join(f"{criterion} ({n})" for criterion, n in counts.items())]
    if report.manual_criteria:
        lines += ["", "Checked by the investigator, not from data:"]
        lines += [f"  {criterion.id}: {criterion.text}" for criterion in report.manual_criteria]
    return "\n".join(lines)


def diagnostics_lines(diagnostics: Diagnostics) -> list[str]:
    """The convergence gate's verdict, each check, each sampling run, the largest decision MCSE."""
    lines = [f"Convergence gate: {'PASSED' if diagnostics.passed else 'FAILED'}"]
    lines += [f"  [{'ok  ' if check.passed else 'FAIL'}] {check.describe()}" for check in diagnostics.checks]
    for number, attempt in enumerate(diagnostics.attempts, start=1):
        lines.append(
            f"  sampling run {number}: target_accept {attempt.target_accept:g}, "
            f"{attempt.divergences} divergences, {attempt.seconds:.1f} s"
            + (" (includes compiling the model on first use)" if number == 1 else "")
        )
    if len(diagnostics.attempts) > 1:
        lines.append("  (the first run diverged; the gate is applied to the retry at a higher target_accept)")
    if len(diagnostics.decision_mcse):
        worst = diagnostics.decision_mcse.sort_values("mcse", ascending=False).iloc[0]
        where = f" at {worst['where']}" if worst["where"] else ""
        lines.append(f"  largest Monte Carlo SE of a decision quantity: {worst['mcse']:.4f} ({worst['quantity']}{where})")
    return lines


def fit_text(result: FitResult, *, interval: float = 0.9) -> str:
    """What was fitted, the gate, the dose-response table and the posterior predictive checks."""
    settings = result.settings
    lines = [
        f"{result.model.name} fit to {result.model.n_observations} observations "
        f"(trial {result.model.spec.trial.id}; seed {result.seed}; {settings.chains} chains x "
        f"{settings.draws} draws; {result.seconds:.1f} s)",
        *diagnostics_lines(result.diagnostics),
        "",
        f"Dose-response: posterior mean [{interval:.0%} interval]; probabilities of intervals +/- MCSE",
        compact_table(result.dose_summary(interval=interval)).to_string(index=False),
        "",
        "Posterior predictive checks (p-value near 0 or 1 = misfit):",
        result.ppc_table().to_string(index=False, float_format=lambda v: f"{v:.3f}"),
    ]
    return "\n".join(lines)


def compact_table(table: pd.DataFrame, digits: int = 3) -> pd.DataFrame:
    """Readable form of a dose summary: ``mean [low, high]`` per quantity, ``p +/- mcse`` per probability."""
    out = pd.DataFrame(index=table.index)
    used: set[str] = set()
    for column in table.columns:
        if column in used:
            continue
        if column.endswith(" mean"):
            stem = column[: -len(" mean")]
            bounds = [c for c in table.columns if c.startswith(f"{stem} q")]
            low, high = bounds[0], bounds[-1]
            out[stem] = [f"{m:.{digits}f} [{a:.{digits}f}, {b:.{digits}f}]"
                         for m, a, b in zip(table[column], table[low], table[high], strict=True)]
            used |= {c for c in table.columns if c.startswith(f"{stem} ")}
        elif f"{column} mcse" in table.columns:
            out[column] = [f"{p:.{digits}f} +/- {e:.{digits}f}" for p, e in zip(table[column], table[f"{column} mcse"], strict=True)]
            used |= {column, f"{column} mcse"}
        elif not column.endswith(" mcse"):
            out[column] = table[column]
            used.add(column)
    return out
