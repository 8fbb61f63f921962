"""``lupusbayes spec``: validate a trial spec."""

from __future__ import annotations

import argparse

from lupusbayes.cli.commands import COMMANDS
from lupusbayes.cli.output import EXIT_OK, Parser, add_output_options, emit_text, print_json
from lupusbayes.spec import SHIPPED_SPECS, load_spec, shipped_spec_path

__all__ = ["add_commands"]


def _check(args: argparse.Namespace) -> int:
    spec = load_spec(args.file)
    if args.json:
        print_json({"ok": True, **spec.to_dict()})
    else:
        print(f"ok: {spec.source}")
        from lupusbayes.report import text  # the text renderer imports the fitting layer: only when printing

        print(text.spec_text(spec))
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
                                     "message naming the key if not.")
    check.add_argument("file", help="spec TOML file (or 'kn5601' / 'axa_nk02')")
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
