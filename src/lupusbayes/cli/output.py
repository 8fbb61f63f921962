"""What every command shares: exit codes, the argument parser class, JSON output."""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any, TextIO

import numpy as np
import pandas as pd

__all__ = ["EXIT_OK", "EXIT_BAD_INPUT", "EXIT_GATE_FAILED", "Parser", "print_json", "records", "seed_value",
           "bounded_int", "bounded_float", "TerminalProgress", "progress_for", "progress_wanted", "add_progress_option",
           "add_output_options", "emit_text"]

EXIT_OK = 0
EXIT_BAD_INPUT = 2
EXIT_GATE_FAILED = 3


class Parser(argparse.ArgumentParser):
    """argparse with usage errors reported on one line and exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def print_json(payload: Any) -> None:
    print(json.dumps(payload, indent=2, default=_json_default, allow_nan=False))


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if value is pd.NA or (isinstance(value, float) and np.isnan(value)):
        return None
    return str(value)


def records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """A table as JSON-ready records (NaN becomes null)."""
    return json.loads(frame.to_json(orient="records"))


def seed_value(text: str) -> int:
    """argparse type of a seed: a whole number from 0 to 2**63 - 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 0 (got {text!r})") from None
    if not 0 <= value < 2**63:
        raise argparse.ArgumentTypeError(f"must be a whole number from 0 to 2**63 - 1 (got {text})")
    return value


def bounded_int(minimum: int, maximum: int):
    """argparse type of a whole number in ``[minimum, maximum]``, saying which bound failed."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a whole number (got {text!r})") from None
        if not minimum <= value <= maximum:
            raise argparse.ArgumentTypeError(f"must be from {minimum} to {maximum} (got {value})")
        return value

    return parse


def bounded_float(minimum: float, below: float):
    """argparse type of a number in ``[minimum, below)``."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a number (got {text!r})") from None
        if not minimum <= value < below:
            raise argparse.ArgumentTypeError(f"must be >= {minimum:g} and < {below:g} (got {value:g})")
        return value

    return parse


class TerminalProgress:
    """Stage lines and a one-line sampler bar on a terminal (``lupusbayes.fitting.FitProgress``)."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        self.started = time.perf_counter()
        self.bar_shown = False

    def _clear_bar(self) -> None:
        if self.bar_shown:
            self.stream.write("\r\033[K")
            self.bar_shown = False

    def step(self, message: str) -> None:
        self._clear_bar()
        self.stream.write(f"[{time.perf_counter() - self.started:6.1f} s] {message}\n")
        self.stream.flush()

    def sampling(self, finished_draws: int, total_draws: int, divergences: int, tuning: bool) -> None:
        share = finished_draws / total_draws if total_draws else 1.0
        filled = int(30 * share)
        phase = "tuning" if tuning else "sampling"
        self.stream.write(f"\r  [{'#' * filled}{'.' * (30 - filled)}] {share:4.0%} {phase}, "
                          f"{divergences} divergences\033[K")
        self.stream.flush()
        self.bar_shown = True
        if finished_draws >= total_draws:
            self._clear_bar()


def progress_wanted(args: argparse.Namespace) -> bool:
    """``--progress`` / ``--no-progress`` as given, else on when stderr is a terminal."""
    wanted = getattr(args, "progress", None)
    return sys.stderr.isatty() if wanted is None else bool(wanted)


def progress_for(args: argparse.Namespace) -> TerminalProgress | None:
    """A progress display when asked (``--progress``) or by default on a terminal; else None."""
    return TerminalProgress() if progress_wanted(args) else None


def add_progress_option(parser: argparse.ArgumentParser, *,
                        help: str = "show what is running and the sampler's progress on stderr "
                                    "(default: on when stderr is a terminal)") -> None:
    """``--progress / --no-progress`` (default: on when stderr is a terminal)."""
    parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None, help=help)


def add_output_options(parser: argparse.ArgumentParser, *, progress: bool = True) -> None:
    """``--overwrite``, ``--mkdir`` and (for long work) ``--progress / --no-progress``."""
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output")
    parser.add_argument("--mkdir", action="store_true", help="create the output's folder if it does not exist")
    if progress:
        add_progress_option(parser)


def emit_text(text: str, args: argparse.Namespace) -> None:
    """Print ``text``, or write it atomically to ``args.out`` (checked; ``--overwrite``, ``--mkdir``)."""
    from lupusbayes._io import check_output_path, write_text_atomic

    if args.out is None:
        print(text, end="")
        return
    out = check_output_path(args.out, overwrite=args.overwrite, mkdir=args.mkdir)
    write_text_atomic(out, text, overwrite=args.overwrite)
    print(f"written: {out}")
