"""``lupusbayes report``: the Safety Review Committee report, one self-contained HTML file."""

from __future__ import annotations

import argparse
import shlex
import sys

from lupusbayes._io import check_output_path
from lupusbayes.cli.commands import COMMANDS
from lupusbayes.cli.decide import add_decision_arguments, gate_exit, prepare
from lupusbayes.cli.output import add_output_options
from lupusbayes.decisions import decide, transition_table
from lupusbayes.eligibility import screen
from lupusbayes.fitting import prior_predictive
from lupusbayes.report.html import ReportInputs, report_figures, write_src_report
from lupusbayes.summary import summarise_cohort

__all__ = ["add_commands", "build_report_inputs"]


def build_report_inputs(prepared, *, seed: int, command: str) -> ReportInputs:
    """Everything the report shows, from a prepared decision (see :func:`lupusbayes.cli.decide.prepare`)."""
    spec, design, context = prepared.spec, prepared.design, prepared.context
    recommendation = decide(context, design)
    transitions = transition_table(context, design, recommendation=recommendation)
    state = context.state
    priors = {label: prior_predictive(result.model, seed=seed, draws=2000) for label, result in prepared.fits.items()}
    figures = report_figures(spec, prepared.fits, recommendation, transitions)
    return ReportInputs(
        spec=spec, state=state, recommendation=recommendation, command=command, seed=seed,
        cohort_summary=summarise_cohort(state.cohort, seed=seed) if state.cohort is not None else None,
        screening=screen(state.cohort.patients, spec) if state.cohort is not None else None,
        fits=dict(prepared.fits), priors=priors, transitions=transitions, figures=figures,
    )


def _report(args: argparse.Namespace) -> int:
    out = check_output_path(args.out, overwrite=args.overwrite, mkdir=args.mkdir)  # before any work
    prepared = prepare(args)
    command = "lupusbayes " + " ".join(shlex.quote(part) for part in sys.argv[1:]) if sys.argv[1:] else "lupusbayes report"
    inputs = build_report_inputs(prepared, seed=args.seed, command=command)
    write_src_report(out, inputs, overwrite=args.overwrite)
    print(f"written: {out} ({inputs.recommendation.action}"
          + (f" {inputs.recommendation.next_dose_label}" if inputs.recommendation.next_dose_label else "") + ")")
    return gate_exit(prepared, args)


def add_commands(commands) -> None:
    parser = commands.add_parser(
        "report", help=COMMANDS["report"][1],
        description="Write the Safety Review Committee report for a trial state: the recommendation with every "
        "rule's numbers and warnings, the transition table, the data and eligibility screen, the models and "
        "priors with the prior predictive, each fit's convergence gate, predictive checks and dose-response, "
        "the figures, and a reproducibility block. One HTML file with embedded images, no network, printable "
        "to PDF. Exit 3 if a fit failed its convergence gate (the report says so), unless --force.",
    )
    add_decision_arguments(parser)
    parser.add_argument("--out", required=True, help="the .html file to write")
    add_output_options(parser)
    parser.set_defaults(handler=_report)
