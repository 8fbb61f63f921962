"""``lupusbayes spec``: validate a trial spec."""

from __future__ import annotations

import argparse

from lupusbayes.cli.output import EXIT_OK, Parser, print_json
from lupusbayes.report import text
from lupusbayes.spec import load_spec

__all__ = ["add_commands"]


def _check(args: argparse.Namespace) -> int:
    spec = load_spec(args.file)
    if args.json:
        print_json({"ok": True, **spec.to_dict()})
    else:
        print(f"ok: {spec.source}")
        print(text.spec_text(spec))
    return EXIT_OK


def add_commands(commands) -> None:
    spec = commands.add_parser("spec", help="validate a trial spec", description="Work with trial specs (TOML).")
    spec_commands = spec.add_subparsers(dest="spec_command", metavar="SUBCOMMAND", parser_class=Parser)
    spec_commands.required = True
    check = spec_commands.add_parser("check", help="validate a spec and print its summary",
                                     description="Validate a trial spec. Exit 0 if valid, 2 with a one-line "
                                     "message naming the key if not.")
    check.add_argument("file", help="spec TOML file (or 'kn5601' / 'axa_nk02')")
    check.add_argument("--json", action="store_true", help="machine-readable output")
    check.set_defaults(handler=_check)
