"""Exceptions and warnings raised by lupusbayes.

Every mistake a *user* can make (a malformed cohort file, an invalid trial spec, a fit file
written for another spec) raises a subclass of :class:`LupusBayesError` whose message is one
line naming the file, the row and the field, and saying what to do next. The command line
turns these into exit code 2 without a traceback; anything else is a bug in lupusbayes.
"""

from __future__ import annotations

from pathlib import Path


class LupusBayesError(Exception):
    """Base class for errors caused by user input (exit code 2 on the command line)."""


class CohortError(LupusBayesError, ValueError):
    """A cohort table is malformed: missing column, bad value, duplicate patient."""

    def __init__(
        self,
        message: str,
        *,
        source: str | Path | None = None,
        line: int | None = None,
        field: str | None = None,
        patient_id: str | None = None,
    ) -> None:
        self.source = None if source is None else str(source)
        self.line = line
        self.field = field
        self.patient_id = patient_id
        self.problem = message
        super().__init__(_locate(message, source=source, line=line, field=field, patient_id=patient_id))


class SpecError(LupusBayesError, ValueError):
    """A trial specification (TOML) is invalid: unknown key, wrong unit, unsorted doses."""

    def __init__(self, message: str, *, source: str | Path | None = None, field: str | None = None) -> None:
        self.source = None if source is None else str(source)
        self.field = field
        self.problem = message
        super().__init__(_locate(message, source=source, field=field))


class DosingError(LupusBayesError, ValueError):
    """A dose cannot be converted (unknown unit, age outside the weight reference, ...)."""


class ModelSetupError(LupusBayesError, ValueError):
    """A model cannot be built from the given cohort and settings."""


class FitFileError(LupusBayesError):
    """A saved fit cannot be used: not a lupusbayes file, another spec, another version."""


class OutputExistsError(LupusBayesError, FileExistsError):
    """An output file or folder exists and overwriting was not requested."""


class OutputPathError(LupusBayesError):
    """An output path cannot be written: empty, in a missing folder, in a read-only one, a folder
    where a file is expected (or the reverse)."""


class ConvergenceGateError(LupusBayesError):
    """A result was requested from a fit that failed its convergence gate (use ``force``)."""


class DecisionError(LupusBayesError, ValueError):
    """A trial state a design cannot decide from (e.g. more patients at a level than the 3+3 allows)."""


class QuadratureError(LupusBayesError, ArithmeticError):
    """An exact (quadrature) posterior that its own checks reject on every grid tried: its mode was not
    found, or its grid is truncated. Nothing is decided from it."""


class PriorConstructionError(LupusBayesError, ValueError):
    """A prior cannot be constructed as asked: thresholds that contradict each other, a method that needs
    a bivariate normal given a mixture, too few doses."""


class SimulationError(LupusBayesError, RuntimeError):
    """A simulated trial cannot be run to its end: a design that never stops under the spec's rules."""


class LupusBayesWarning(UserWarning):
    """Warnings about statistical caveats (Pareto k, proxies, extrapolation)."""


class PriorConstructionWarning(LupusBayesWarning):
    """A constructed prior's pitfall, with its numbers (also in the result's ``warnings``)."""


def _locate(
    message: str,
    *,
    source: str | Path | None = None,
    line: int | None = None,
    field: str | None = None,
    patient_id: str | None = None,
) -> str:
    """Format ``file:line: field 'x' (patient 004): message`` with the parts that are known."""
    where = ""
    if source is not None:
        where = str(source)
        if line is not None:
            where += f":{line}"
        where += ": "
    elif line is not None:
        where = f"line {line}: "
    what = ""
    if field is not None:
        what = f"field '{field}'"
        if patient_id is not None:
            what += f" (patient {patient_id})"
        what += ": "
    one_line = " ".join(str(message).split())
    return f"{where}{what}{one_line}"
