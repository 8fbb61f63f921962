"""``lupusbayes spec``: validate a trial spec."""

from __future__ import annotations

import argparse

from lupusbayes.cli.commands import COMMANDS
from lupusbayes.cli.cache import add_cache_option, fit_cache_for
from lupusbayes.cli.output import EXIT_OK, Parser, add_output_options, emit_text, print_json, seed_value
from lupusbayes.spec import SHIPPED_SPECS, load_spec, shipped_spec_path

__all__ = ["add_commands"]


def _reachability(spec, args: argparse.Namespace):
    """The levels no dose path can reach (None: the spec borrows from co-data and none were given)."""
    from lupusbayes.cohort import load_cohort
    from lupusbayes.workflow import reachability

    return reachability(spec, codata=[load_cohort(name) for name in args.codata or []], seed=args.seed,
                        cache=fit_cache_for(args) if args.codata else None)


def _check(args: argparse.Namespace) -> int:
    spec = load_spec(args.file)
    reach = _reachability(spec, args)
    from lupusbayes.workflow import reachability_unknown_reason

    unknown = reachability_unknown_reason(spec)
    if args.json:
        from lupusbayes.workflow import reachability_dict

        print_json({"ok": True, **spec.to_dict(),
                    "reachability": reachability_dict(reach) if reach is not None else {"ok": None, "message": unknown}})
    else:
        print(f"ok: {spec.source}")
        from lupusbayes.report import text  # the text renderer imports the fitting layer: only when printing

        print(text.spec_text(spec))
        message = reach.message() if reach is not None else f"reachability of the levels: {unknown}"
        print(f"  {'' if reach is None or reach.ok else 'warning: '}{message}")
    return EXIT_OK


def _export(args: argparse.Namespace) -> int:
    emit_text(shipped_spec_path(args.name).read_text(encoding="utf-8"), args)
    return EXIT_OK


def add_commands(commands) -> None:
    spec = commands.add_parser("spec", help=COMMANDS["spec"][1], description="Work with trial specs (TOML).")
    spec_commands = spec.add_subparsers(dest="spec_command", metavar="SUBCOMMAND", parser_class=Parser)
    spec_commands.required = True
    check = spec_commands.add_parser("check", help="validate a spec and print its summary",
                                     description="Validate a trial spec. Exit 0 if valid, 2 with a one-line "
                                     "message naming the key if not. Then say whether every dose level can be "
                                     "reached: the design's path without any DLT, from the first patient, and the "
                                     "levels it never gives within the sample size, with the rule and the numbers "
                                     "that close them (exact, no MCMC; with --codata when the spec borrows).")
    check.add_argument("file", help="spec TOML file (or 'kn5601' / 'axa_nk02')")
    check.add_argument("--codata", action="append", metavar="FILE",
                       help="co-data the spec's models borrow from (repeatable; 'kn5601' is the shipped cohort): "
                       "needed to say which levels can be reached when the spec borrows (fits the co-data once)")
    check.add_argument("--seed", type=seed_value, default=20251108, help="seed of the co-data fit (default 20251108)")
    add_cache_option(check)
    check.add_argument("--json", action="store_true", help="machine-readable output")
    check.set_defaults(handler=_check)
    export = spec_commands.add_parser("export", help="print or write a shipped spec, to edit",
                                      description="Print a spec shipped with the package (or write it with --out): "
                                      "the starting point for a trial's own spec. Shipped specs are also loaded "
                                      "by name from any folder ('kn5601', 'axa_nk02').")
    export.add_argument("name", choices=SHIPPED_SPECS, help="which shipped spec")
    export.add_argument("--out", help="write to this file instead of printing")
    add_output_options(export, progress=False)
    export.set_defaults(handler=_export)
