"""``lupusbayes demo``: the whole pipeline on the shipped KN5601 data (:func:`lupusbayes.demo.run_demo`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from lupusbayes.cli.commands import COMMANDS
from lupusbayes.cli.output import EXIT_GATE_FAILED, EXIT_OK, add_output_options, progress_for, seed_value
from lupusbayes.demo import run_demo

__all__ = ["add_commands"]


def _demo(args: argparse.Namespace) -> int:
    result = run_demo(Path(args.out), seed=args.seed, overwrite=args.overwrite, sampler=args.sampler,
                      progress=lambda line: print(line, flush=True), fit_progress=progress_for(args), mkdir=args.mkdir)
    print(f"\nall outputs in {result.folder}/ (start with report.txt)")
    return EXIT_OK if result.all_converged else EXIT_GATE_FAILED


def add_commands(commands) -> None:
    demo = commands.add_parser(
        "demo", help=COMMANDS["demo"][1],
        description="Load and summarise KN5601, screen it against AXA-NK02, fit the CRS, BLRM and SLEDAI-2K "
        "models and their comparison variants, decide the next KN5601 dose group and write the SRC report (HTML), "
        "simulate AXA-NK02's designs briefly, and write every table, fit and a report to one folder.",
    )
    demo.add_argument("--out", required=True, help="output folder (created; refused if it exists unless --overwrite)")
    demo.add_argument("--seed", type=seed_value, default=20251108, help="master random seed (default 20251108)")
    demo.add_argument("--sampler", choices=("pymc", "nutpie"), default=None, help="NUTS implementation (default: spec)")
    add_output_options(demo)
    demo.set_defaults(handler=_demo)
