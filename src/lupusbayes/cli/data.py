"""``lupusbayes data``: show, check and screen cohort tables."""

from __future__ import annotations

import argparse

import pandas as pd

from lupusbayes.cli.commands import COMMANDS
from lupusbayes.cli.output import EXIT_OK, Parser, add_output_options, emit_text, print_json, records, seed_value
from lupusbayes.cohort import EXAMPLE_COHORTS, example_cohort_text, load_cohort
from lupusbayes.eligibility import screen
from lupusbayes.spec import load_spec
from lupusbayes.summary import conversion_notes, summarise_cohort

__all__ = ["add_commands"]


def _show(args: argparse.Namespace) -> int:
    cohort = load_cohort(args.cohort)  # "kn5601" names the shipped cohort
    summary = summarise_cohort(cohort, seed=args.seed)
    if args.json:
        patients = records(cohort.to_frame(layout="wide"))  # the file format: it reads back
        print_json({"source": cohort.source, "layout": cohort.layout, "patients": patients, **summary.to_dict()})
        return EXIT_OK
    with pd.option_context("display.width", 120, "display.max_columns", 30):
        print(f"{cohort!r}\n")
        print(cohort.to_frame(layout="wide").to_string(index=False))
        print()
        from lupusbayes.report import text  # the text renderer imports the fitting layer: only when printing

        print(text.cohort_summary_text(summary))
    return EXIT_OK


def _check(args: argparse.Namespace) -> int:
    cohort = load_cohort(args.file)
    visits_per_patient = cohort.visits.groupby(["study_id", "patient_id"]).size()
    payload = {
        "ok": True,
        "source": cohort.source,
        "layout": cohort.layout,
        "n_patients": cohort.n_patients,
        "n_visits": int(len(cohort.visits)),
        "max_visits_per_patient": int(visits_per_patient.max()),
        "studies": cohort.study_ids,
        "notes": list(conversion_notes(cohort)),
    }
    if args.json:
        print_json(payload)
    else:
        n_studies = len(cohort.study_ids)
        print(
            f"ok: {cohort.source}: {cohort.n_patients} patients in {n_studies} "
            f"stud{'y' if n_studies == 1 else 'ies'} ({', '.join(cohort.study_ids)}), "
            f"{cohort.layout} layout, {len(cohort.visits)} SLEDAI-2K assessments"
        )
        for note in payload["notes"]:
            print(f"note: {note}")
    return EXIT_OK


def _screen(args: argparse.Namespace) -> int:
    spec = load_spec(args.spec)
    cohort = load_cohort(args.file)
    report = screen(cohort.patients, spec)
    if args.json:
        print_json(report.to_dict())
    else:
        from lupusbayes.report import text

        print(text.screening_text(report, n_patients=cohort.n_patients, n_criteria=len(spec.eligibility)))
    return EXIT_OK


def _example(args: argparse.Namespace) -> int:
    if args.name is None:
        for name, description in EXAMPLE_COHORTS.items():
            print(f"{name:14s} {description}")
        return EXIT_OK
    emit_text(example_cohort_text(args.name), args)
    return EXIT_OK


def add_commands(commands) -> None:
    data = commands.add_parser("data", help=COMMANDS["data"][1],
                               description="Work with cohort tables (the shipped KN5601 cohort or your own CSV).")
    data_commands = data.add_subparsers(dest="data_command", metavar="SUBCOMMAND", parser_class=Parser)
    data_commands.required = True
    show = data_commands.add_parser("show", help="print a cohort and its summary",
                                    description="Print the cohort table and a summary: CRS by grade and dose, "
                                    "SLEDAI-2K change, SLEDAI-only response proxies, doses in cells/kg.")
    show.add_argument("cohort", help="'kn5601' for the shipped cohort, or a cohort CSV file")
    show.add_argument("--seed", type=seed_value, default=20251108,
                      help="seed for the cells/kg conversion draws (default 20251108)")
    show.add_argument("--json", action="store_true", help="machine-readable output")
    show.set_defaults(handler=_show)
    check = data_commands.add_parser("check", help="validate a cohort file",
                                     description="Validate a cohort CSV (wide or long layout). Exit 0 if valid, "
                                     "2 with a one-line message naming the line and field if not.")
    check.add_argument("file", help="cohort CSV file")
    check.add_argument("--json", action="store_true", help="machine-readable output")
    check.set_defaults(handler=_check)
    screen_parser = data_commands.add_parser("screen", help="check patients against a trial's eligibility criteria",
                                             description="Report, for each patient, every eligibility criterion "
                                             "they fail and those the data cannot assess.")
    screen_parser.add_argument("file", help="cohort CSV file (or 'kn5601')")
    screen_parser.add_argument("--spec", required=True, help="trial spec TOML (or 'kn5601' / 'axa_nk02')")
    screen_parser.add_argument("--json", action="store_true", help="machine-readable output")
    screen_parser.set_defaults(handler=_screen)
    example = data_commands.add_parser("example", help="print or write a shipped example cohort file",
                                       description="The example cohort files the documentation uses. Without NAME, "
                                       "list them; with NAME, print the CSV (or write it with --out).")
    example.add_argument("name", nargs="?", help=f"one of: {', '.join(EXAMPLE_COHORTS)}")
    example.add_argument("--out", help="write to this file instead of printing")
    add_output_options(example, progress=False)
    example.set_defaults(handler=_example)
