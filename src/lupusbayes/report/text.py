"""Plain-text rendering of every lupusbayes result: one place for what a user reads.

Each function takes a result object and returns text (``str``) or lines; the command line
prints them, the demo writes them to ``report.txt``. Nothing here computes a number: the
numbers come from the objects' own tables.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from lupusbayes.decisions import Recommendation
from lupusbayes.eligibility import ScreeningReport
from lupusbayes.endpoints import RESPONSE_DEFINITIONS
from lupusbayes.fitting import Diagnostics, FitResult, PriorPredictive
from lupusbayes.models.summaries import MCSE_BOUND_NOTE
from lupusbayes.spec import BivariateNormalMixture, TrialSpec
from lupusbayes.summary import CohortSummary

__all__ = ["cohort_summary_text", "spec_text", "screening_text", "diagnostics_lines", "fit_text", "prior_predictive_text",
           "notes_lines", "recommendation_text", "action_line", "level_text", "transitions_text",
           "boin_table_text", "compact_table"]

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
    if summary.notes:
        parts += ["", "Notes:", *(f"  - {note}" for note in summary.notes)]
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
    table = result.dose_summary(interval=interval)
    lines = [
        f"{result.model.name} fit to {result.model.n_observations} observations "
        f"(trial {result.model.spec.trial.id}; seed {result.seed}; {settings.chains} chains x "
        f"{settings.draws} draws; {result.seconds:.1f} s)",
        *diagnostics_lines(result.diagnostics),
        "",
        f"Dose-response: posterior mean [{interval:.0%} interval]; probabilities of intervals +/- MCSE",
        compact_table(table).to_string(index=False),
        *notes_lines(result, table),
        "",
        "What the data changed (sd_ratio = posterior SD / prior SD; near 1: mostly prior):",
        result.prior_posterior_table(interval=interval).to_string(index=False, float_format=lambda v: f"{v:.3g}"),
        "",
        "Posterior predictive checks (mid p-value; with few patients these checks have little power,",
        "so a p-value away from 0 and 1 means 'no misfit detected', not 'the model fits'):",
        result.ppc_table().to_string(index=False, float_format=lambda v: f"{v:.3f}"),
    ]
    return "\n".join(lines)


def _error(value: float, digits: int) -> str:
    """A Monte Carlo error with enough digits to be non-zero (0.0004 is not 0.000)."""
    if 0 < value < 10 ** -digits:
        return np.format_float_positional(value, precision=1, fractional=False)
    return f"{value:.{digits}f}"


def prior_predictive_text(check: PriorPredictive, *, interval: float = 0.9) -> str:
    """A model's prior per dose (mean, median, interval) and its prior predictive checks."""
    table = check.dose_summary(interval=interval)
    shown = table[[c for c in table.columns if c not in ("dose", "P(DLT) basis")  # the basis: in the notes
                   and not c.endswith((" sd", " mcse_mean", " mcse", " is upper bound"))]]
    shown = shown.rename(columns={"dose_label": "dose"})
    if "observed to month" in shown.columns:  # NaN: no patient of the trial had this dose
        shown = shown.assign(**{"observed to month": [f"{m:g}" if m == m else "no patients"
                                                      for m in shown["observed to month"]]})
    toxicity = any(c.startswith("P(DLT)") for c in shown.columns)
    lines = [
        f"Prior of {check.model.name} (trial {check.model.spec.trial.id}; seed {check.seed}; "
        f"{check.tree['prior'].sizes['draw']} draws)",
        "",
        (f"Per dose: prior mean, {interval:.0%} range and median; probabilities of the toxicity intervals" if toxicity
         else f"Per dose and month: prior mean, {interval:.0%} range and median of the SLEDAI-2K reduction and the "
         "response probabilities"),
        shown.to_string(index=False, float_format=lambda v: f"{v:.3f}"),
        *notes_lines(check, table),
        "",
        "Prior predictive checks: the data's statistics under the prior (mid p-value near 0 or 1: the prior",
        "makes what was observed implausible)",
        check.check_table().to_string(index=False, float_format=lambda v: f"{v:.3f}"),
    ]
    return "\n".join(lines)


def notes_lines(result: FitResult | PriorPredictive, table: pd.DataFrame) -> list[str]:
    """The caveats that go with a fit's numbers: the model's notes, and what '<' means."""
    notes = list(result.model.notes())
    if any(table[c].any() for c in table.columns if c.endswith("mcse is upper bound")):
        notes.append(f"'+/- <x': {MCSE_BOUND_NOTE}")
    return ["Notes:", *(f"  - {note}" for note in notes)] if notes else []


def compact_table(table: pd.DataFrame, digits: int = 3) -> pd.DataFrame:
    """Readable form of a dose summary: ``mean [low, high]`` per quantity, ``p +/- mcse`` per probability.

    An error shown as ``+/- <0.001`` is an upper bound: every draw agreed (see
    :data:`~lupusbayes.models.summaries.MCSE_BOUND_NOTE`).
    """
    out = pd.DataFrame(index=table.index)
    used: set[str] = set()
    if "dose_label" in table.columns:  # the label reads better than the number
        out["dose"] = table["dose_label"]
        used |= {"dose_label", "dose"}
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
            bound_column = f"{column} mcse is upper bound"
            bounds = table[bound_column] if bound_column in table.columns else [False] * len(table)
            out[column] = [f"{p:.{digits}f} +/- {'<' if bound else ''}{_error(e, digits)}"
                           for p, e, bound in zip(table[column], table[f"{column} mcse"], bounds, strict=True)]
            used |= {column, f"{column} mcse", bound_column}
        elif column == "P(DLT) basis":
            used.add(column)  # said once under the table (notes_lines), not on every row
        elif column == "observed to month":  # NaN: no patient of the trial had this dose
            out[column] = [f"{month:g}" if month == month else "no patients" for month in table[column]]
            used.add(column)
        elif column == "extrapolated":
            out[column] = ["yes" if flag else "" for flag in table[column]]
            used.add(column)
        elif not column.endswith(" mcse"):
            out[column] = table[column]
            used.add(column)
    return out


# ---- decisions -------------------------------------------------------------------------------


def level_text(spec: TrialSpec, level: int | None) -> str:
    """``'level 2 (7.5e7 cells/kg)'`` (levels count from 1, as protocols do)."""
    if level is None:
        return "-"
    from lupusbayes.dosing import dose_label

    return f"level {level + 1} ({dose_label(spec.dosing.levels[level], spec.dosing.unit.value)})"


def action_line(recommendation: Recommendation, spec: TrialSpec) -> str:
    """``'ESCALATE: next cohort of 3 at level 2 (7.5e7 cells/kg), first dose now'``, or ``'STOP: reasons'``,
    or, while patients are inside the DLT window, ``'HOLD: nobody is dosed for 18 days (...); decide again then'``."""
    r = recommendation
    if r.action == "stop":
        return f"STOP: {'; '.join(r.stop_reasons)}"
    when = "now" if r.wait_days == 0 else f"in {r.wait_days} days"
    if r.earliest_date is not None:
        when += f" ({r.earliest_date.isoformat()})"
    if r.paused:
        until = f" (until {r.earliest_date.isoformat()})" if r.earliest_date is not None else ""
        return (f"HOLD: nobody is dosed for {r.wait_days} days{until}: patients are inside the DLT window; "
                "decide again with their outcomes")
    return f"{r.action.upper()}: next cohort of {r.n_next} at {level_text(spec, r.next_level_index)}, first dose {when}"


def recommendation_text(recommendation: Recommendation, spec: TrialSpec) -> str:
    """The recommendation, then every rule's question, verdict and numbers, then warnings and notes."""
    r = recommendation
    lines = [f"Recommendation for {r.trial_id} (design {r.design}; state: {r.state_source})"]
    if r.forced:
        lines.append("  FORCED: a fit behind this recommendation FAILED its convergence gate")
    lines += [f"  {alert}" for alert in r.alerts]
    lines.append(f"  {action_line(r, spec)}")
    if r.action == "stop" and r.selection is not None:
        chosen = r.selection.dose_label or "no dose"
        lines.append(f"  selected{' (PROVISIONAL)' if r.selection.provisional else ''}: {chosen}: {r.selection.reason}")
        for row in r.selection.rows:
            shown = ", ".join(f"{k} {v.text() if hasattr(v, 'text') else (f'{v:.3f}' if isinstance(v, float) else v)}"
                              for k, v in row.items() if k != "level_index")
            lines.append(f"    {shown}")
    lines += ["", "Rules:"]
    for verdict in r.verdicts:
        lines.append(f"  [{verdict.rule}] {verdict.question}")
        lines.append(f"      {verdict.verdict}")
        for check in verdict.checks:
            value = check.estimate.text() if check.estimate is not None else "-"
            limit = "" if check.threshold is None else f" (limit {check.threshold:g})"
            lines.append(f"      {level_text(spec, check.level_index)}: {check.quantity} {value}{limit} "
                         f"{'ok' if check.passed else 'NOT ok'}")
    if r.warnings:
        lines += ["", "Warnings:", *(f"  - {w}" for w in r.warnings)]
    if r.notes:
        lines += ["", "Notes:", *(f"  - {n}" for n in r.notes)]
    footer = ["Levels count from 1."]
    if any(check.estimate is not None and check.estimate.error_kind == "mcse bound"
           for verdict in r.verdicts for check in verdict.checks):
        footer.append("'+/- <x' is an upper bound on the Monte Carlo error.")
    lines += ["", " ".join(footer)]
    return "\n".join(lines)


def transitions_text(transitions, spec: TrialSpec) -> str:
    """One line per outcome of the next cohort: what the design would do then."""
    if not transitions:
        return "No next cohort: the trial stops."
    level = transitions[0].recommendation.current_level_index
    if transitions[0].pending:
        lines = [f"When the {len(transitions) - 1} patient(s) inside the DLT window have completed it "
                 "(DLTs among them):"]
    else:
        lines = [f"After the next cohort at {level_text(spec, level)} (n = the cohort's size):"]
    for row in transitions:
        outcome = f"{row.n_dlt} DLT(s)" + ("" if row.n_responders is None else f", {row.n_responders} responder(s)")
        r = row.recommendation
        if r.action == "stop":
            then = f"STOP ({'; '.join(r.stop_reasons)})" + (f", select {r.selection.dose_label}"
                                                           if r.selection and r.selection.dose_label else "")
        else:
            then = f"{r.action} {'at' if r.action == 'hold' else 'to'} {level_text(spec, r.next_level_index)}"
        flag = "  [" + "; ".join(w for w in r.warnings if "Pareto" in w or "close call" in w) + "]" if any(
            "Pareto" in w or "close call" in w for w in r.warnings) else ""
        lines.append(f"  {outcome:28s} -> {then}{flag}")
    return "\n".join(lines)


def boin_table_text(rows) -> str:
    """BOIN's decision table by number of patients (escalate / de-escalate / eliminate)."""
    labels = {"n_patients": "patients at the level", "escalate_if_dlt_at_most": "escalate if DLTs <=",
              "deescalate_if_dlt_at_least": "de-escalate if DLTs >=", "eliminate_if_dlt_at_least": "eliminate if DLTs >="}
    return "\n".join(f"  {label:24s}" + " ".join(f"{str(row[key]):>3}" for row in rows) for key, label in labels.items())


# ---- the DLT prior before any patient ---------------------------------------------------------


def _small_probability(value: float) -> str:
    """``0.128``, or two significant digits below 0.01 (``0.0005``, not ``0.000``)."""
    if 0 < value < 0.01:
        return np.format_float_positional(value, precision=2, fractional=False)
    return f"{value:.3f}"


def _wrapped(text: str, indent: str = "  ", hanging: str = "    ") -> list[str]:
    """``text`` in lines of at most the report's width: the first indented by ``indent``, the rest by ``hanging``."""
    import textwrap

    return textwrap.wrap(text, width=_WIDTH, initial_indent=indent, subsequent_indent=hanging,
                         break_long_words=False, break_on_hyphens=False)


def dlt_prior_source_lines(summary) -> list[str]:
    """What the prior is and how its numbers were computed (a
    :class:`~lupusbayes.decisions.prior_summary.DltPriorSummary`)."""
    from lupusbayes.dosing import dose_label

    spec = summary.spec
    if summary.from_spec_prior:
        prior = spec.models.blrm.prior
        reference = f"reference dose {dose_label(spec.dosing.reference_dose, spec.dosing.unit.value)}"
        if isinstance(prior, BivariateNormalMixture):
            what = f"spec prior ([model.blrm.prior], a mixture: {prior.describe()}; {reference})"
        else:
            what = (f"spec prior ([model.blrm.prior]: log a ~ N({prior.mean_log_a:g}, sd {prior.sd_log_a:g}), "
                    f"log b ~ N({prior.mean_log_b:g}, sd {prior.sd_log_b:g}), correlation {prior.correlation:g}; "
                    f"{reference})")
    else:
        what = summary.source
    return [*_wrapped(f"prior: {what}"),
            *_wrapped(f"computed: {summary.computation}; probabilities within {summary.probability_error:.2g} "
                      f"({summary.probability_error_kind})")]


def dlt_prior_table(summary) -> pd.DataFrame:
    """The per-dose table as printed: P(DLT) mean, median, 90% interval, interval probabilities, EWOC, ESS."""
    rows = summary.rows
    intervals = summary.spec.dlt.intervals
    table = pd.DataFrame({
        "dose": rows["dose_label"],
        "mean": [f"{v:.3f}" for v in rows["p_dlt_mean"]],
        "median": [_small_probability(v) for v in rows["p_dlt_median"]],
        "90% interval": [f"[{_small_probability(low)}, {_small_probability(high)}]"
                         for low, high in zip(rows["p_dlt_q5"], rows["p_dlt_q95"], strict=True)],
    })
    for name, key in zip(intervals.names, summary.interval_keys, strict=True):
        table[f"P({name})"] = [f"{v:.3f}" for v in rows[key]]
    table["EWOC"] = ["allowed" if allowed else "NOT allowed" for allowed in rows["ewoc_allows"]]
    table["ESS"] = [f"{v:.1f}" for v in rows["ess_moment_matched_beta"]]
    return table


def dlt_prior_text(summary) -> str:
    """``lupusbayes prior SPEC`` without data: the DLT prior per dose, EWOC's verdict and the prior ESS
    (a :class:`~lupusbayes.decisions.prior_summary.DltPriorSummary`)."""
    from lupusbayes.decisions.prior_summary import MOMENT_MATCHED_BETA_METHOD, MORITA_THALL_MUELLER_METHOD

    spec = summary.spec
    intervals = spec.dlt.intervals
    lines = [f"DLT prior before any patient: trial {spec.trial.id}, model {summary.model}",
             *dlt_prior_source_lines(summary),
             "",
             *_wrapped(f"Per dose: P(DLT) prior mean, median and 90% interval; the toxicity intervals' probabilities; "
                       f"EWOC's verdict (allowed: P({intervals.overdose}) < {summary.ewoc_limit:g}); prior effective "
                       "sample size (ESS, patients; moment-matched Beta)", indent="", hanging=""),
             dlt_prior_table(summary).to_string(index=False),
             "",
             *_wrapped(f"EWOC: {summary.ewoc.verdict}", indent="", hanging="  "),
             "",
             "Prior effective sample size (patients):",
             *_wrapped(f"per dose (the ESS column): {MOMENT_MATCHED_BETA_METHOD}")]
    whole = summary.ess_whole_prior
    if whole is None:
        lines += _wrapped(f"whole prior, Morita, Thall & Mueller (2008): {summary.ess_whole_prior_missing}")
    else:
        lines += _wrapped(f"whole prior: {whole.total:.1f} (log a {whole.log_a:.1f}, log b {whole.log_b:.1f}), by "
                          f"{MORITA_THALL_MUELLER_METHOD}")
    if summary.notes:
        lines += ["", "Notes:"]
        for note in summary.notes:
            lines += _wrapped(f"- {note}")
    lines += ["", "Levels count from 1."]
    return "\n".join(lines)


__all__ += ["dlt_prior_text", "dlt_prior_table", "dlt_prior_source_lines"]
