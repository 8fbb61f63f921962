"""What every command shares: exit codes, the argument parser class, JSON output."""

from __future__ import annotations

import argparse
import json
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["EXIT_OK", "EXIT_BAD_INPUT", "EXIT_GATE_FAILED", "Parser", "print_json", "records"]

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
