"""The ``lupusbayes`` command line: a thin layer over the public API.

One module per command group (:mod:`~lupusbayes.cli.data`, :mod:`~lupusbayes.cli.spec`,
:mod:`~lupusbayes.cli.fitting`, :mod:`~lupusbayes.cli.decide`, :mod:`~lupusbayes.cli.report`,
:mod:`~lupusbayes.cli.plot`, :mod:`~lupusbayes.cli.simulate`, :mod:`~lupusbayes.cli.demo`,
:mod:`~lupusbayes.cli.construct_prior`), shared
helpers in :mod:`~lupusbayes.cli.output`.

Exit codes: 0 success; 2 bad input (one line on stderr naming the file, row and field, and no
output written); 3 a fit that failed its convergence gate; 1 an internal error (a bug).
"""

from __future__ import annotations

import argparse
import atexit
import importlib
import logging
import os
import sys
import warnings
from collections.abc import Sequence

from lupusbayes._version import __version__
from lupusbayes.cli.commands import COMMANDS
from lupusbayes.cli.output import EXIT_BAD_INPUT, EXIT_GATE_FAILED, EXIT_OK, Parser
from lupusbayes.errors import LupusBayesError, LupusBayesWarning

__all__ = ["main", "run", "build_parser", "EXIT_OK", "EXIT_BAD_INPUT", "EXIT_GATE_FAILED"]

_EPILOG = """\
examples:
  lupusbayes data show kn5601                      the shipped KN5601 cohort and its summary
  lupusbayes data check my_cohort.csv --json       validate a cohort file
  lupusbayes data screen my_cohort.csv --spec axa_nk02
  lupusbayes spec check models/axa_nk02.toml
  lupusbayes fit kn5601 --data kn5601 --model crs --out crs.nc --seed 1
  lupusbayes construct-prior axa_nk02 --method minimal-informative
  lupusbayes check crs.nc
  lupusbayes plot crs.nc --kind dose_crs --out dose_crs.png
  lupusbayes decide kn5601 --state kn5601
  lupusbayes decide axa_nk02 --state axa_patients.csv --codata kn5601 --as-of 2026-06-01
  lupusbayes decide kn5601 --design 3+3 --outcomes "1NNN 2NNN 3NNT" --transitions
  lupusbayes report kn5601 --state kn5601 --out report.html
  lupusbayes simulate axa_nk02 --codata kn5601 --n-trials 2000 --seed 1 --out oc/
  lupusbayes calibrate axa_nk02 --codata kn5601 --vary decision.max_overdose_probability=0.25,0.35 --n-trials 500 --seed 1 --out calib/
  lupusbayes demo --out outputs/demo --seed 20251108

exit codes: 0 ok, 2 bad input, 3 convergence gate failed, 1 internal error
"""


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The ``lupusbayes`` parser: every command in full, or only ``command`` in full.

    Given a command, the others are registered by name and help line only (:data:`COMMANDS`),
    so running one command, or ``lupusbayes --help``, does not import the modules of the others
    (the models, plots and simulator: seconds of imports).
    """
    parser = Parser(
        prog="lupusbayes",
        description="Bayesian dose-toxicity (CRS) and dose-efficacy (SLEDAI-2K) models for NK / CAR-NK "
        "cell-therapy trials in lupus.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"lupusbayes {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    commands.required = True
    wanted = None if command is None else COMMANDS.get(command, ("", ""))[0]
    registered = set()
    for name, (module, help_line) in COMMANDS.items():
        if wanted is not None and module != wanted:
            commands.add_parser(name, help=help_line)
        elif module not in registered:  # a module registers all of its commands at once
            importlib.import_module(f"lupusbayes.cli.{module}").add_commands(commands)
            registered.add(module)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    command = next((argument for argument in arguments if not argument.startswith("-")), "")
    args = build_parser(command).parse_args(arguments)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("ignore")
            warnings.simplefilter("always", LupusBayesWarning)
            try:
                return args.handler(args)
            finally:
                for warning in caught:
                    print(f"lupusbayes: warning: {warning.message}", file=sys.stderr)
    except LupusBayesError as error:
        print(f"lupusbayes: error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("lupusbayes: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into e.g. `head`: not an error of ours
        sys.stderr.close()
        return EXIT_OK


def run() -> None:
    """The ``lupusbayes`` command: :func:`main`, then an exit without the interpreter's teardown.

    When :func:`main` returns, its files are written (atomically, and closed) and its output
    printed. The exit then goes as any exit goes (other threads joined, the exit handlers of
    worker pools, a Dask cluster or temporary folders run), up to the teardown of the imported
    modules (SciPy, xarray, pandas, matplotlib), measured at 0.4-0.5 s of every command, which is
    skipped. An exception, ``--help`` or a usage error exits the usual way.
    """
    exit_code: list[int] = []

    def exit_without_teardown() -> None:
        # registered before the command runs, so it runs after every exit handler the command registered
        if not exit_code:
            return
        logging.shutdown()  # the one handler registered before this one (logging is imported with the CLI)
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):  # a closed pipe (e.g. `| head`) or a stream closed on purpose
                pass
        os._exit(exit_code[0])  # the documented way out without the teardown

    atexit.register(exit_without_teardown)
    exit_code.append(main())
    sys.exit(exit_code[0])
