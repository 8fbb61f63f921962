"""``lupusbayes report``: the Safety Review Committee report, one self-contained HTML file."""

from __future__ import annotations

import argparse
import shlex
import sys

from lupusbayes._io import check_output_path
from lupusbayes.cli.commands import COMMANDS
from lupusbayes.cli.decide import add_decision_arguments, gate_exit, prepare, sensitivity_for
from lupusbayes.cli.output import add_output_options
from lupusbayes.report.html import write_src_report
from lupusbayes.workflow import decide_from_inputs, report_inputs

__all__ = ["add_commands", "build_report_inputs"]


def build_report_inputs(prepared, *, seed: int, command: str, args: argparse.Namespace | None = None):
    """Everything the report shows, from a prepared decision: :func:`lupusbayes.workflow.report_inputs`
    (with ``--sensitivity``, the decision under alternative priors too)."""
    decision = decide_from_inputs(prepared)
    sensitivity = sensitivity_for(decision, args) if args is not None else None
    return report_inputs(decision, seed=seed, command=command, sensitivity=sensitivity)


def _report(args: argparse.Namespace) -> int:
    out = check_output_path(args.out, overwrite=args.overwrite, mkdir=args.mkdir)  # before any work
    prepared = prepare(args)
    command = "lupusbayes " + " ".join(shlex.quote(part) for part in sys.argv[1:]) if sys.argv[1:] else "lupusbayes report"
    inputs = build_report_inputs(prepared, seed=args.seed, command=command, args=args)
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
