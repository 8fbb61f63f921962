"""Cohort tables: the shipped KN5601 cohort and users' own cohorts, read into tidy frames.

A cohort is two tidy pandas frames:

``patients``
    One row per patient: ``study_id, patient_id, age_years, sex, disease_duration_years,
    biopsy_class, dose_unit, dose_cells, dose_cells_per_kg, weight_kg, crs_grade, dlt,
    follow_up_months, sledai_baseline, sledai_latest``, then any extra columns of the file
    (laboratory values for screening, for instance) as text, and ``source_line``.
``visits``
    One row per SLEDAI-2K assessment: ``study_id, patient_id, visit_month, sledai``, with the
    baseline at ``visit_month = 0``.

A cohort file is a CSV in one of two layouts (see ``docs/data-format.md``):

*wide*: one row per patient with ``sledai_baseline`` and ``sledai_latest`` (the latest visit at
``follow_up_months``), as in the KN5601 abstract; *long*: one row per visit with ``visit_month``
and ``sledai``; patient-level columns repeat on every row and must agree.

Cells follow the published table's conventions: ``/`` means none / not done, CRS grades may be
written ``I``-``V`` or ``0``-``5``, doses like ``4.5*10^9``, ``4.5x10^9`` or ``4.5e9``. Every
problem raises :class:`~lupusbayes.errors.CohortError` naming the file, the line and the field.
"""

from __future__ import annotations

import contextlib
import csv
import difflib
import functools
import gc
import io
import math
import re
import unicodedata
from dataclasses import dataclass, field, replace
from datetime import date
from importlib import resources
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from lupusbayes.dosing import DoseUnit, parse_dose_unit
from lupusbayes.endpoints import SLEDAI_MAXIMUM, add_response_flags
from lupusbayes.errors import CohortError, DosingError

__all__ = [
    "Cohort",
    "CsvRow",
    "read_csv_file",
    "read_csv_rows",
    "MAX_CELL_CHARACTERS",
    "parse_trial_date",
    "dlt_day_and_label",
    "EARLIEST_DATE",
    "LATEST_DATE",
    "MAX_SAFETY_DAYS",
    "CohortLayout",
    "load_cohort",
    "load_kn5601",
    "cohort_from_frame",
    "parse_cohort_text",
    "EXAMPLE_COHORTS",
    "example_cohort_text",
    "combine_cohorts",
    "parse_dose_cells",
    "parse_crs_grade",
    "biopsy_classes",
    "PATIENT_COLUMNS",
    "KN5601_PUBLISHED_COLUMNS",
]

CohortLayout = Literal["wide", "long"]

MISSING_MARKERS = frozenset({"", "/", "na", "n/a", "nan", "none", "-", "not done"})
NONE_MARKERS = frozenset({"/", "0", "none", "no", "-"})

#: Columns of the tidy patient frame, in order (extra file columns follow them).
PATIENT_COLUMNS = (
    "study_id",
    "patient_id",
    "age_years",
    "sex",
    "disease_duration_years",
    "biopsy_class",
    "dose_unit",
    "dose_cells",
    "dose_cells_per_kg",
    "n_infusions",
    "weight_kg",
    "crs_grade",
    "dlt",
    "follow_up_months",
    "sledai_baseline",
    "sledai_latest",
)

_REQUIRED_COMMON = ("patient_id", "age_years", "sex", "dose", "crs_grade")
_REQUIRED_WIDE = _REQUIRED_COMMON + ("follow_up_months", "sledai_baseline", "sledai_latest")
_REQUIRED_LONG = _REQUIRED_COMMON + ("visit_month", "sledai")
_OPTIONAL = ("study_id", "dose_unit", "n_infusions", "weight_kg", "disease_duration_years", "biopsy_class", "dlt")
_PATIENT_LEVEL_INPUT = _REQUIRED_COMMON + _OPTIONAL
#: Columns the loader derives from others. A file may carry them (the tidy export does) only if
#: they agree with what the loader derives; without ``dose`` they supply it.
DERIVED_DOSE_COLUMNS = ("dose_cells", "dose_cells_per_kg")
#: Columns lupusbayes computes and a file must not supply (they would be overwritten silently).
COMPUTED_COLUMNS = ("source_line", "source_file", "sledai_reduction", "sri4_sledai_component", "lldas_sledai_proxy",
                    "doris_sledai_proxy")
#: Largest plausible doses (per infusion): a value above is a typo or a unit error.
_MAX_DOSE = {DoseUnit.CELLS: 1e13, DoseUnit.CELLS_PER_KG: 1e10}

#: Header of the KN5601 table as published (ASN Kidney Week 2025, abstract SA-OR088), mapped to
#: the tidy column names. A file with exactly this header is read as a wide cohort.
KN5601_PUBLISHED_COLUMNS = {
    "ID": "patient_id",
    "Age": "age_years",
    "Gender": "sex",
    "Duration of Disease (Years)": "disease_duration_years",
    "Kidney biopsy": "biopsy_class",
    "Dose": "dose",
    "CRS": "crs_grade",
    "Follow up period(M)": "follow_up_months",
    "SLEDAI- 2K Baseline": "sledai_baseline",
    "SLEDAI- 2K at present": "sledai_latest",
}
KN5601_STUDY_ID = "KN5601"
#: "patients received six infusions of KN5601" (abstract, Methods): not a column of the table.
KN5601_INFUSIONS = 6


# --------------------------------------------------------------------------------------------
# Cell parsers: each returns a typed value or raises ValueError with a short reason
# --------------------------------------------------------------------------------------------

_DOSE_PATTERN = re.compile(
    r"^(?P<mantissa>[+-]?(?:\d+\.?\d*|\.\d+)(?:e[+-]?\d+)?)"
    r"(?:\s*(?:\*|x|×|·)\s*10\s*(?:\^|\*\*)\s*(?P<exponent>[+-]?\d+))?$"
)
_ROMAN_GRADES = {"I": 1, "II": 2, "III": 3, "IV": 4, "V": 5}
_ISN_RPS_TOKEN = re.compile(
    r"^(?P<main>VI|IV|V|III|II|I)(?:-(?P<second>VI|IV|V|III|II|I|S|G))?(?:\s*\((?:A|C|A/C)\))?$"
)


def _is_missing(text: str) -> bool:
    return text.strip().lower() in MISSING_MARKERS


def parse_dose_cells(text: str) -> float:
    """Parse a dose cell such as ``4.5*10^9``, ``4.5x10^9``, ``4.5×10^9``, ``4.5e9``.

    Examples
    --------
    >>> parse_dose_cells("4.5*10^9")
    4500000000.0
    >>> parse_dose_cells("2.5e7")
    25000000.0
    """
    compact = str(text).strip().lower().replace(",", "").replace(" ", "")
    match = _DOSE_PATTERN.match(compact)
    if not match:
        raise ValueError(f"cannot read dose '{text}' (write e.g. 3*10^9, 3x10^9 or 3e9)")
    try:
        value = float(match["mantissa"]) * (10.0 ** int(match["exponent"]) if match["exponent"] else 1.0)
    except OverflowError:
        value = math.inf
    if not math.isfinite(value):
        raise ValueError(f"dose '{text}' is too large to be a number of cells")
    if value <= 0:
        raise ValueError(f"dose must be positive (got '{text}')")
    return value


def parse_crs_grade(text: str) -> int:
    """ASTCT CRS grade from ``/`` or ``0`` (none), ``I``-``V`` or ``1``-``5``.

    Examples
    --------
    >>> [parse_crs_grade(t) for t in ["/", "I", "II", "3"]]
    [0, 1, 2, 3]
    """
    cleaned = str(text).strip()
    if cleaned == "":
        raise ValueError("CRS grade is empty; write 0 or '/' for no CRS")
    upper = cleaned.upper().removeprefix("GRADE").strip()
    if upper.lower() in NONE_MARKERS:
        return 0
    if upper in _ROMAN_GRADES:
        return _ROMAN_GRADES[upper]
    if re.fullmatch(r"\d+(\.0+)?", upper) and 0 <= int(float(upper)) <= 5:
        return int(float(upper))
    raise ValueError(f"unknown CRS grade '{text}' (ASTCT grades are 0-5, I-V, or '/' for none)")


def _parse_sledai(text: str) -> int:
    cleaned = str(text).strip()
    try:
        value = float(cleaned)
    except ValueError:
        raise ValueError(f"SLEDAI-2K score '{text}' is not a number") from None
    if not value.is_integer():
        raise ValueError(f"SLEDAI-2K score must be a whole number (got '{text}')")
    if not 0 <= value <= SLEDAI_MAXIMUM:
        raise ValueError(f"SLEDAI-2K score must be between 0 and {SLEDAI_MAXIMUM} (got {text})")
    return int(value)


def _parse_number(text: str, *, what: str, minimum: float | None = None, maximum: float | None = None,
                  strictly_positive: bool = False) -> float:
    cleaned = str(text).strip()
    try:
        value = float(cleaned)
    except ValueError:
        raise ValueError(f"{what} '{text}' is not a number") from None
    if not math.isfinite(value):
        raise ValueError(f"{what} must be finite (got '{text}')")
    if strictly_positive and value <= 0:
        raise ValueError(f"{what} must be positive (got {text})")
    if minimum is not None and value < minimum:
        raise ValueError(f"{what} must be >= {minimum:g} (got {text})")
    if maximum is not None and value > maximum:
        raise ValueError(f"{what} must be <= {maximum:g} (got {text})")
    return value


def _parse_infusions(text: str) -> int:
    value = _parse_number(text, what="n_infusions", minimum=1, maximum=100)
    if not value.is_integer():
        raise ValueError(f"n_infusions must be a whole number of infusions (got {text})")
    return int(value)


def _parse_sex(text: str) -> str:
    key = str(text).strip().lower()
    if key in {"f", "female", "girl", "woman"}:
        return "F"
    if key in {"m", "male", "boy", "man"}:
        return "M"
    raise ValueError(f"sex must be F or M (got '{text}')")


def _parse_biopsy(text: str) -> str | None:
    if _is_missing(text):
        return None
    tokens = [token.strip().upper() for token in str(text).split("+")]
    for token in tokens:
        if not _ISN_RPS_TOKEN.match(token):
            raise ValueError(
                f"unrecognised ISN/RPS class '{token}' in '{text}' "
                "(write classes I-VI joined by '+', e.g. 'III+V', or '/' for none)"
            )
    return "+".join(tokens)


def biopsy_classes(text: str | None) -> frozenset[str]:
    """ISN/RPS classes (roman numerals) mentioned in a biopsy entry.

    Examples
    --------
    >>> sorted(biopsy_classes("III+III-V"))
    ['III', 'V']
    >>> biopsy_classes(None)
    frozenset()
    """
    if text is None or (isinstance(text, float) and math.isnan(text)) or text is pd.NA:
        return frozenset()
    found: set[str] = set()
    for token in str(text).split("+"):
        match = _ISN_RPS_TOKEN.match(token.strip().upper())
        if match:
            found.add(match["main"])
            if match["second"] and match["second"] not in {"S", "G"}:
                found.add(match["second"])
    return frozenset(found)


#: The range of dates a cohort or a state may hold (infusions, data cut-offs): outside it a date is a typo.
EARLIEST_DATE, LATEST_DATE = date(2000, 1, 1), date(2099, 12, 31)
#: The most days of safety follow-up a patient may have (100 years).
MAX_SAFETY_DAYS = 36_500


def parse_trial_date(text: str, *, what: str = "date") -> date:
    """A date ``YYYY-MM-DD`` between :data:`EARLIEST_DATE` and :data:`LATEST_DATE` (ValueError otherwise).

    Examples
    --------
    >>> parse_trial_date("2026-06-20")
    datetime.date(2026, 6, 20)
    """
    try:
        value = date.fromisoformat(str(text).strip())
    except ValueError:
        raise ValueError(f"'{str(text)[:40]}' is not a date (write YYYY-MM-DD)") from None
    if not EARLIEST_DATE <= value <= LATEST_DATE:
        raise ValueError(f"{what} {value} is not plausible (between {EARLIEST_DATE} and {LATEST_DATE})")
    return value


def _parse_safety_days(text: str) -> str:
    value = _parse_number(text, what="safety_days", minimum=0.0, maximum=float(MAX_SAFETY_DAYS))
    if not float(value).is_integer():
        raise ValueError(f"must be a whole number of days from 0 to {MAX_SAFETY_DAYS} (got {text})")
    return str(int(value))


#: Optional columns of a trial state, checked at load by every command (data check, decide, report, ...).
def _parse_evaluable(text: str) -> str:
    return "yes" if _parse_bool(text) else "no"


def _parse_dlt_day(text: str) -> str:
    value = _parse_number(text, what="dlt_day", minimum=0.0, maximum=float(MAX_SAFETY_DAYS))
    if not float(value).is_integer():
        raise ValueError(f"must be a whole number of days from the first infusion to the DLT, 0 to {MAX_SAFETY_DAYS} "
                         f"(got {text})")
    return str(int(value))


_CHECKED_EXTRAS = {
    "infusion_date": lambda text: parse_trial_date(text, what="infusion_date").isoformat(),  # one lambda: memoised once
    "safety_days": _parse_safety_days,
    "dlt_evaluable": _parse_evaluable,
    "dlt_day": _parse_dlt_day,
    "dlt_date": lambda text: parse_trial_date(text, what="dlt_date").isoformat(),
}


def _parse_bool(text: str) -> bool:
    key = str(text).strip().lower()
    if key in {"1", "yes", "y", "true", "t"}:
        return True
    if key in {"0", "no", "n", "false", "f", "/"}:
        return False
    raise ValueError(f"expected yes/no or 1/0 (got '{text}')")


# --------------------------------------------------------------------------------------------
# Cohort
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Cohort:
    """A validated cohort: tidy ``patients`` and ``visits`` frames plus where they came from.

    Build one with :func:`load_kn5601`, :func:`load_cohort` or :func:`cohort_from_frame`.
    """

    patients: pd.DataFrame = field(repr=False)
    visits: pd.DataFrame = field(repr=False)
    source: str
    layout: CohortLayout

    def __repr__(self) -> str:
        studies = ", ".join(self.study_ids)
        return f"Cohort({self.n_patients} patients, studies: {studies}, {self.layout} layout, from {self.source})"

    @property
    def n_patients(self) -> int:
        return len(self.patients)

    @property
    def study_ids(self) -> list[str]:
        return self.patients["study_id"].drop_duplicates().astype(str).tolist()  # in order of appearance

    def with_response_flags(self) -> pd.DataFrame:
        """Patients with ``sledai_reduction`` and the three SLEDAI-only response flags."""
        return add_response_flags(self.patients)

    def to_frame(self, *, layout: CohortLayout | None = None) -> pd.DataFrame:
        """The cohort in the file format (wide or long): what :meth:`to_csv` writes and
        :func:`load_cohort` reads back unchanged."""
        layout = layout or self.layout
        columns = [c for c in PATIENT_COLUMNS if c not in DERIVED_DOSE_COLUMNS]
        patients = self.patients.copy()
        patients["dose"] = np.where(
            patients["dose_unit"] == DoseUnit.CELLS.value, patients["dose_cells"], patients["dose_cells_per_kg"]
        )
        columns.insert(columns.index("dose_unit"), "dose")
        extras = [c for c in patients.columns if c not in PATIENT_COLUMNS and c not in {"dose", *COMPUTED_COLUMNS}]
        if layout == "wide":
            return patients[columns + extras].reset_index(drop=True)
        keep = [c for c in columns + extras if c not in {"follow_up_months", "sledai_baseline", "sledai_latest"}]
        frame = self.visits.merge(patients[keep], on=["study_id", "patient_id"], how="left")
        return frame[keep + ["visit_month", "sledai"]]

    def to_csv(self, path: str | Path | None = None, *, layout: CohortLayout | None = None,
               overwrite: bool = False) -> str:
        """Write the cohort in the tidy file format (wide or long); returns the CSV text.

        The text is written atomically when ``path`` is given; an existing file is refused
        (:class:`~lupusbayes.errors.OutputExistsError`) unless ``overwrite``.
        """
        from lupusbayes._io import write_text_atomic

        text = self.to_frame(layout=layout).to_csv(index=False, na_rep="")
        if path is not None:
            write_text_atomic(Path(path), text, overwrite=overwrite)
        return text


def load_kn5601() -> Cohort:
    """The 11-patient KN5601 paediatric CAR-NK cohort, from the published table.

    Source: Meng H, Zheng C, et al. *Safety and efficacy of anti-CD19/BCMA CAR-NK therapy in
    pediatric patients with refractory SLE*, ASN Kidney Week 2025, abstract SA-OR088. The table
    ships verbatim (``kn5601_published_table.csv``); doses are flat (cells per infusion as
    reported), weights were not reported, and ``sledai_latest`` is the score at the latest visit
    (``follow_up_months``), not at a fixed time. ``n_infusions`` is 6 for every patient, from the
    abstract's Methods ("patients received six infusions"); the table itself has no such column.

    Examples
    --------
    >>> cohort = load_kn5601()
    >>> cohort.n_patients, int((cohort.patients["crs_grade"] > 0).sum())
    (11, 4)
    """
    text = resources.files("lupusbayes.data").joinpath("kn5601_published_table.csv").read_text()
    cohort = parse_cohort_text(text, source="kn5601_published_table.csv", default_study_id=KN5601_STUDY_ID)
    patients = cohort.patients.copy()
    patients["n_infusions"] = pd.array([KN5601_INFUSIONS] * len(patients), dtype="Int64")  # "six infusions" (Methods)
    return replace(cohort, patients=patients)


#: Example cohort files shipped with the package (``lupusbayes data example NAME``).
EXAMPLE_COHORTS = {
    "my_cohort": "two AXA-NK02-style patients, wide layout, with a laboratory column (docs: data format)",
    "long": "two KN5601-style patients, long layout (one row per visit)",
    "axa_patients": "a hypothetical first AXA-NK02 dose group: sentinel, then two patients; visits by month",
}


def example_cohort_text(name: str) -> str:
    """The CSV text of a shipped example cohort (see :data:`EXAMPLE_COHORTS`)."""
    key = name.lower().removesuffix(".csv")
    if key not in EXAMPLE_COHORTS:
        raise CohortError(f"no example cohort called '{name}' (examples: {', '.join(EXAMPLE_COHORTS)})")
    return resources.files("lupusbayes.data.examples").joinpath(f"{key}.csv").read_text(encoding="utf-8")


def load_cohort(path: str | Path, *, study_id: str | None = None) -> Cohort:
    """Read and validate a cohort CSV (wide or long layout, or the KN5601 published header).

    Parameters
    ----------
    path
        The CSV file (lines starting with ``#`` are comments), or ``"kn5601"`` for the shipped
        cohort when no such file exists.
    study_id
        Study identifier for rows without a ``study_id`` column; defaults to the file's stem.

    Raises
    ------
    CohortError
        One line naming the file, line and field of the first problem found.
    """
    path = Path(path)
    if path.name.lower() == "kn5601" and not path.exists():
        return load_kn5601()
    text = read_csv_file(path, what="cohort file")
    return parse_cohort_text(
        text, source=str(path), default_study_id=study_id or path.stem, published_study_default=study_id is None
    )


def read_csv_file(path: str | Path, *, what: str = "file") -> str:
    """The text of a CSV file a user hands over, or a one-line :class:`CohortError` naming it.

    UTF-8 (a byte-order mark allowed); any other byte is refused with its line and column.
    Line endings may be LF, CRLF or CR alone (what Excel's "CSV (Macintosh)" writes).
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise CohortError("file not found", source=path) from None
    except IsADirectoryError:
        raise CohortError(f"is a folder, not a {what}", source=path) from None
    except OSError as error:
        raise CohortError(f"cannot read file ({error.strerror})", source=path) from None
    if b"\n" not in raw and b"\r" in raw:  # classic Mac line endings
        raw = raw.replace(b"\r", b"\n")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = raw.count(b"\n", 0, error.start) + 1
        column = error.start - (raw.rfind(b"\n", 0, error.start) + 1) + 1
        raise CohortError(
            f"not UTF-8 text (byte 0x{raw[error.start]:02X} at column {column}; Latin-1 or Windows-1252?): "
            "save the file as 'CSV UTF-8'", source=path, line=line,
        ) from None


def cohort_from_frame(frame: pd.DataFrame, *, study_id: str = "study", source: str = "<DataFrame>") -> Cohort:
    """Validate an in-memory table with the file columns (cells may be text or numbers)."""
    text = frame.to_csv(index=False)
    return parse_cohort_text(text, source=source, default_study_id=study_id)


def combine_cohorts(cohorts: list[Cohort]) -> Cohort:
    """Stack cohorts from several studies (e.g. KN5601 as co-data for AXA-NK02); one cohort is returned as is.

    Raises
    ------
    CohortError
        If a (study_id, patient_id) pair appears in more than one cohort.
    """
    if not cohorts:
        raise CohortError("no cohorts to combine")
    if len(cohorts) == 1:
        return cohorts[0]
    seen: dict[tuple[str, str], str] = {}
    for cohort in cohorts:
        for key in zip(cohort.patients["study_id"], cohort.patients["patient_id"], strict=True):
            if key in seen:
                raise CohortError(
                    f"patient {key[1]} of study {key[0]} is in both {seen[key]} and {cohort.source}",
                    source=cohort.source, field="patient_id",
                )
            seen[key] = cohort.source
    patients = pd.concat([c.patients for c in cohorts], ignore_index=True)
    visits = pd.concat([c.visits for c in cohorts], ignore_index=True)
    layout: CohortLayout = "long" if any(c.layout == "long" for c in cohorts) else "wide"
    return Cohort(patients=patients, visits=visits, source=" + ".join(c.source for c in cohorts), layout=layout)


# --------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------


@dataclass
class CsvRow:
    """One row of a CSV table: its physical line number and its cells by column."""

    line: int
    cells: dict[str, str]


#: Unicode's control characters (category Cc: U+0000-U+001F and U+007F-U+009F), found in one pass per cell.
_CONTROL_CHARACTER = re.compile("[\x00-\x1f\x7f-\x9f]")
_CONTROL_OUTSIDE_LINE_ENDINGS = re.compile("[\x00-\x09\x0b\x0c\x0e-\x1f\x7f-\x9f]")


def _refuse_cell(record: list[str], header: list[str] | None, source: str, line: int) -> None:
    """The one-line error for the first cell of ``record`` that is too long or holds a control character."""
    for position, cell in enumerate(record):
        column = header[position] if header and position < len(header) else f"column {position + 1}"
        if len(cell) > MAX_CELL_CHARACTERS:
            raise CohortError(f"a cell of {len(cell):,} characters; a cell holds at most {MAX_CELL_CHARACTERS:,}",
                              source=source, line=line, field=column)
        bad = _control_character(cell)
        if bad:
            raise CohortError(f"contains the control character {bad}; remove it (was the file exported as text?)",
                              source=source, line=line, field=column)


def _control_character(text: str) -> str | None:
    """The first control character in ``text`` (NUL, escape, ...), as ``U+0000``, or None."""
    for character in text:
        if unicodedata.category(character) == "Cc":
            return f"U+{ord(character):04X}"
    return None


def _delimiter_hint(line: str) -> str:
    """A sentence naming the delimiter a one-column header seems to use, or ``""``."""
    for name, delimiter in (("semicolon", ";"), ("tab", "\t"), ("pipe", "|")):
        if line.count(delimiter) >= 2:
            return (f"the header has one column and {line.count(delimiter)} {name}s: the file looks {name}-separated; "
                    "lupusbayes reads comma-separated CSV (in a spreadsheet: save as 'CSV UTF-8 (comma delimited)')")
    return ""


#: The longest cell a table a user hands over may hold (a value, an id, a short note).
MAX_CELL_CHARACTERS = 10_000


def read_csv_rows(text: str, source: str, *, what: str = "patient", allow_empty: bool = False,
                  ) -> tuple[list[str], list[CsvRow]]:
    """CSV rows with their physical line numbers; comment and blank lines skipped.

    Refused, each with its line: a header that is one column of semicolon- or tab-separated
    names, a quoted cell that runs over several lines (an unclosed quote), a cell holding a
    control character (a NUL byte, say) or more than :data:`MAX_CELL_CHARACTERS` characters,
    a ragged row and a repeated column. ``what`` names a row in the "no rows" message; a header
    without rows is refused unless ``allow_empty``.
    """
    header: list[str] | None = None
    rows: list[CsvRow] = []
    reader = csv.reader(io.StringIO(text))
    # a control character anywhere but in line endings sends every row through the per-cell check
    suspect = _CONTROL_OUTSIDE_LINE_ENDINGS.search(text) is not None
    try:
        previous_end = 0
        for record in reader:
            start, previous_end = previous_end + 1, reader.line_num
            if reader.line_num > start and any("\n" in cell or "\r" in cell for cell in record):
                raise CohortError(
                    f"a quoted cell starting on this line runs over {reader.line_num - start + 1} lines; "
                    "is a closing quote (\") missing?", source=source, line=start,
                )
            line = reader.line_num
            if not record or all(not cell.strip() for cell in record):
                continue
            if record[0].lstrip().startswith("#"):
                continue
            if header is None and len(record) == 1 and (hint := _delimiter_hint(record[0])):
                raise CohortError(hint, source=source, line=line)
            if max(map(len, record)) > MAX_CELL_CHARACTERS or (suspect and any(map(_CONTROL_CHARACTER.search, record))):
                _refuse_cell(record, header, source, line)  # the slow, precise look only when something is wrong
            if header is None:
                header = [cell.strip() for cell in record]
                duplicated = sorted({c for c in header if header.count(c) > 1})
                if duplicated:
                    raise CohortError(f"column '{duplicated[0]}' appears twice in the header", source=source, line=line)
                continue
            if len(record) != len(header):
                raise CohortError(
                    f"row has {len(record)} cells but the header has {len(header)} columns", source=source, line=line
                )
            rows.append(CsvRow(line, dict(zip(header, map(str.strip, record), strict=True))))
    except csv.Error as error:
        if "field larger than field limit" in str(error):
            raise CohortError(f"a cell longer than {csv.field_size_limit():,} characters; a cell holds at most "
                              f"{MAX_CELL_CHARACTERS:,}", source=source, line=reader.line_num + 1) from None
        raise CohortError(f"not a readable CSV table ({error})", source=source, line=reader.line_num) from None
    if header is None:
        raise CohortError("the file is empty (no header row)", source=source)
    if not rows and not allow_empty:
        raise CohortError(f"the table has a header but no {what} rows", source=source)
    return header, rows


def _missing_column_error(column: str, header: list[str], source: str) -> CohortError:
    close = difflib.get_close_matches(column, header, n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    return CohortError(f"missing required column '{column}'{hint}", source=source)


@contextlib.contextmanager
def _collection_paused():
    """No cyclic garbage collection while a large table's millions of small objects are made (they form no
    cycles; the collector's repeated passes over them made reading a 1,000,000-row file a third slower)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def parse_cohort_text(text: str, *, source: str, default_study_id: str, published_study_default: bool = True) -> Cohort:
    """Validate cohort CSV ``text`` (``source`` names it in error messages); see :func:`load_cohort`."""
    with _collection_paused():
        return _parse_cohort_text(text, source=source, default_study_id=default_study_id,
                                  published_study_default=published_study_default)


def _parse_cohort_text(text: str, *, source: str, default_study_id: str, published_study_default: bool) -> Cohort:
    header, rows = read_csv_rows(text, source)
    if set(KN5601_PUBLISHED_COLUMNS).issubset(header):
        default_study_id = KN5601_STUDY_ID if published_study_default else default_study_id
        rename = KN5601_PUBLISHED_COLUMNS
        header = [rename.get(column, column) for column in header]
        for row in rows:
            row.cells = {rename.get(k, k): v for k, v in row.cells.items()}
    is_long = "visit_month" in header
    if is_long and ("sledai_baseline" in header or "sledai_latest" in header):
        raise CohortError(
            "the table mixes layouts: use either visit_month + sledai (long) "
            "or sledai_baseline + sledai_latest (wide)",
            source=source,
        )
    computed = [c for c in COMPUTED_COLUMNS if c in header]
    if computed:
        raise CohortError(f"column '{computed[0]}' is computed by lupusbayes, not read; remove it from the file",
                          source=source, field=computed[0])
    required = _REQUIRED_LONG if is_long else _REQUIRED_WIDE
    if "dose" not in header and any(c in header for c in DERIVED_DOSE_COLUMNS):
        required = tuple(c for c in required if c != "dose")  # the tidy export: dose_cells / dose_cells_per_kg
    for column in required:
        if column not in header:
            raise _missing_column_error(column, header, source)
    derived = set(DERIVED_DOSE_COLUMNS) | ({"follow_up_months"} if is_long else set())
    extras = [c for c in header if c not in required and c not in _OPTIONAL and c != "icans_grade" and c not in derived]
    if "icans_grade" in header:
        extras.insert(0, "icans_grade")
    parsed = [_parse_patient_cells(row, source=source, default_study_id=default_study_id, extras=extras) for row in rows]
    if is_long:
        patients, visits = _assemble_long(rows, parsed, source)
    else:
        patients, visits = _assemble_wide(rows, parsed, source)
    return Cohort(patients=patients, visits=visits, source=source, layout="long" if is_long else "wide")


_parse_weight = functools.partial(_parse_number, what="weight_kg", strictly_positive=True, maximum=350.0)
_parse_age = functools.partial(_parse_number, what="age_years", strictly_positive=True, maximum=120.0)
_parse_disease_duration = functools.partial(_parse_number, what="disease_duration_years", minimum=0.0, maximum=120.0)
_parse_follow_up = functools.partial(_parse_number, what="follow_up_months", minimum=0.0, maximum=600.0)
_parse_visit_month = functools.partial(_parse_number, what="visit_month", minimum=0.0, maximum=600.0)
#: Cell parsers are pure functions of the text: in a large file most values repeat (sexes, doses,
#: grades, ages), so each parser remembers its last few thousand answers (errors are not remembered).
_MEMOISED: dict = {}


def _memoised(parser):
    if parser not in _MEMOISED:
        _MEMOISED[parser] = functools.lru_cache(maxsize=8192)(parser)
    return _MEMOISED[parser]


def _cell(row: CsvRow, column: str, parser, common: dict, optional: bool = False):
    """The parsed value of one cell (None when absent, or blank where ``optional``); ``common`` holds the
    ``source`` and ``patient_id`` the one-line error names."""
    text = row.cells.get(column)
    if text is None or (optional and _is_missing(text)):
        return None
    try:
        return (_MEMOISED.get(parser) or _memoised(parser))(text)
    except (ValueError, DosingError) as error:
        raise CohortError(str(error), source=common["source"], line=row.line, field=column,
                          patient_id=common["patient_id"]) from None


def _check_derived_dose(row: CsvRow, derived: dict[str, float], common: dict) -> None:
    """A derived dose column in the file must agree with the dose the loader derives."""
    for column, value in derived.items():
        text = row.cells.get(column)
        if text is None or _is_missing(text):
            continue
        given = _cell(row, column, parse_dose_cells, common)
        if not math.isfinite(value):
            raise CohortError(
                f"{column} is given ({text}) but cannot be checked against the dose without weight_kg; "
                "give weight_kg or remove the column", source=common["source"], line=row.line, field=column,
                patient_id=common["patient_id"])
        if not math.isclose(given, value, rel_tol=1e-6):
            raise CohortError(
                f"{column} {text} disagrees with the dose ({value:g} derived from dose, dose_unit and weight_kg); "
                "remove the derived column or make it agree", source=common["source"], line=row.line, field=column,
                patient_id=common["patient_id"])


def _parse_patient_cells(row: CsvRow, *, source: str, default_study_id: str, extras: list[str]) -> dict:
    patient_id = row.cells["patient_id"]
    if patient_id == "":
        raise CohortError("patient_id is empty", source=source, line=row.line, field="patient_id")
    common = dict(source=source, patient_id=patient_id)
    study_id = row.cells.get("study_id", "").strip() or default_study_id
    dose_unit = _cell(row, "dose_unit", parse_dose_unit, common, optional=True) or DoseUnit.CELLS
    in_unit = "dose_cells" if dose_unit == DoseUnit.CELLS else "dose_cells_per_kg"
    dose_column = "dose" if "dose" in row.cells else in_unit
    if dose_column not in row.cells:
        raise CohortError(f"the dose is recorded in {dose_unit.value} but the file has neither 'dose' nor '{in_unit}'",
                          source=source, line=row.line, field="dose", patient_id=patient_id)
    dose = _cell(row, dose_column, parse_dose_cells, common)
    if dose is None or dose > _MAX_DOSE[dose_unit]:
        shown = "missing" if dose is None else f"{dose:g} {dose_unit.value} per infusion"
        raise CohortError(f"dose {shown} is not a plausible dose (at most {_MAX_DOSE[dose_unit]:g} {dose_unit.value}); "
                          "is the unit right?", source=source, line=row.line, field=dose_column, patient_id=patient_id)
    weight = _cell(row, "weight_kg", _parse_weight, common, optional=True)
    if dose_unit == DoseUnit.CELLS:
        dose_cells = dose
        dose_cells_per_kg = dose / weight if weight else math.nan
    else:
        dose_cells_per_kg = dose
        dose_cells = dose * weight if weight else math.nan
    _check_derived_dose(row, {"dose_cells": dose_cells, "dose_cells_per_kg": dose_cells_per_kg}, common)
    crs_grade = _cell(row, "crs_grade", parse_crs_grade, common)
    icans_grade = _cell(row, "icans_grade", parse_crs_grade, common, optional=True)
    if icans_grade is not None and icans_grade > 4:
        raise CohortError(f"ICANS grades are 0-4 (got {icans_grade})", source=source, line=row.line,
                          field="icans_grade", patient_id=patient_id)
    values = {
        "study_id": study_id,
        "patient_id": patient_id,
        "age_years": _cell(row, "age_years", _parse_age, common),
        "sex": _cell(row, "sex", _parse_sex, common),
        "disease_duration_years": _cell(row, "disease_duration_years", _parse_disease_duration, common,
                                        optional=True),
        "biopsy_class": _cell(row, "biopsy_class", _parse_biopsy, common),
        "dose_unit": dose_unit.value,
        "dose_cells": dose_cells,
        "dose_cells_per_kg": dose_cells_per_kg,
        "n_infusions": _cell(row, "n_infusions", _parse_infusions, common, optional=True),
        "weight_kg": weight,
        "crs_grade": crs_grade,
        "dlt": _cell(row, "dlt", _parse_bool, common, optional=True),
    }
    if "follow_up_months" in row.cells:
        values["follow_up_months"] = _cell(row, "follow_up_months", _parse_follow_up, common)
    if "sledai_baseline" in row.cells:
        values["sledai_baseline"] = _cell(row, "sledai_baseline", _parse_sledai, common)
        values["sledai_latest"] = _cell(row, "sledai_latest", _parse_sledai, common, optional=True)
    if "visit_month" in row.cells:
        values["visit_month"] = _cell(row, "visit_month", _parse_visit_month, common)
        values["sledai"] = _cell(row, "sledai", _parse_sledai, common)
    for column in extras:
        if column == "icans_grade":
            values[column] = icans_grade
        elif column in _CHECKED_EXTRAS:
            values[column] = _cell(row, column, _CHECKED_EXTRAS[column], common, optional=True) or ""
        else:
            values[column] = row.cells.get(column, "")
    if "dlt_day" in values or "dlt_date" in values:
        _check_dlt_timing(row, values, common)
    values["source_line"] = row.line
    values["source_file"] = source
    return values


def dlt_day_and_label(dlt_day: str, dlt_date: str, infusion_date: str) -> tuple[int, str]:
    """A DLT's day from the checked cells ``dlt_day`` or ``dlt_date`` (then days after ``infusion_date``), and how an
    error names it: ``dlt_day 31``, or ``dlt_date 2026-06-05 (day 35)``."""
    if dlt_day:
        return int(float(dlt_day)), f"dlt_day {int(float(dlt_day))}"
    day = (date.fromisoformat(dlt_date) - date.fromisoformat(infusion_date)).days
    return day, f"dlt_date {dlt_date} (day {day})"


def _check_dlt_timing(row: CsvRow, values: dict, common: dict) -> None:
    """A DLT's day (``dlt_day``, or ``dlt_date``) belongs to a patient with a DLT and lies within what was observed:
    from the first infusion (``infusion_date``) to the patient's follow-up (``safety_days``); given both ways, they
    agree. (A DLT derived from grades, or follow-up from a cut-off, is checked when the trial state is read.)"""
    day, when = values.get("dlt_day") or "", values.get("dlt_date") or ""
    if not day and not when:
        return
    where = dict(source=common["source"], line=row.line, patient_id=common["patient_id"])
    given = "dlt_day" if day else "dlt_date"
    if values.get("dlt") is False:
        raise CohortError(f"{given} {day or when} is given but dlt is 'no': only a patient with a DLT has a DLT day "
                          "(blank it, or record the DLT)", field=given, **where)
    infused = values.get("infusion_date") or ""
    if when:
        if not infused:
            raise CohortError(f"dlt_date {when} needs the patient's infusion_date (the DLT day counts from the first "
                              "infusion); give infusion_date, or dlt_day instead", field="dlt_date", **where)
        elapsed, _ = dlt_day_and_label("", when, infused)
        if elapsed < 0:
            raise CohortError(f"dlt_date {when} is before the first infusion ({infused})", field="dlt_date", **where)
        if day and int(day) != elapsed:
            raise CohortError(f"dlt_day {day} disagrees with dlt_date {when} and infusion_date {infused} ({elapsed} "
                              "days); remove one of them or make them agree", field="dlt_day", **where)
    day_number, shown = dlt_day_and_label(day, when, infused)
    safety = values.get("safety_days") or ""
    if safety and day_number > int(safety):
        raise CohortError(f"{shown} is after the patient's follow-up (safety_days {safety}): a DLT is recorded "
                          "by the data cut-off", field=given, **where)


def _typed_patients(records: list[dict], extras: list[str]) -> pd.DataFrame:
    frame = pd.DataFrame.from_records(records)
    out = pd.DataFrame(
        {
            "study_id": pd.array(frame["study_id"], dtype="string"),
            "patient_id": pd.array(frame["patient_id"], dtype="string"),
            "age_years": frame["age_years"].astype(float),
            "sex": pd.Categorical(frame["sex"], categories=["F", "M"]),
            "disease_duration_years": pd.array(frame["disease_duration_years"], dtype="Float64"),
            "biopsy_class": pd.array(frame["biopsy_class"], dtype="string"),
            "dose_unit": pd.Categorical(frame["dose_unit"], categories=[u.value for u in DoseUnit]),
            "dose_cells": frame["dose_cells"].astype(float),
            "dose_cells_per_kg": frame["dose_cells_per_kg"].astype(float),
            "n_infusions": pd.array(frame["n_infusions"], dtype="Int64"),
            "weight_kg": pd.to_numeric(frame["weight_kg"]).astype(float),
            "crs_grade": frame["crs_grade"].astype("int64"),
            "dlt": pd.array(frame["dlt"], dtype="boolean"),
            "follow_up_months": frame["follow_up_months"].astype(float),
            "sledai_baseline": frame["sledai_baseline"].astype("int64"),
            "sledai_latest": pd.array(frame["sledai_latest"], dtype="Int64"),
        }
    )
    for column in extras:
        out[column] = pd.array(frame[column], dtype="Int64") if column == "icans_grade" else pd.array(
            frame[column], dtype="string"
        )
    out["source_line"] = frame["source_line"].astype("int64")
    out["source_file"] = pd.array(frame["source_file"], dtype="string")
    return out


def _extras(record: dict) -> list[str]:
    fixed = set(PATIENT_COLUMNS) | {"visit_month", "sledai", "source_line", "source_file"}
    return [key for key in record if key not in fixed]


def _assemble_wide(rows: list[CsvRow], parsed: list[dict], source: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    seen: dict[tuple[str, str], int] = {}
    for row, record in zip(rows, parsed, strict=True):
        key = (record["study_id"], record["patient_id"])
        if key in seen:
            raise CohortError(
                f"duplicate patient_id '{record['patient_id']}' (first on line {seen[key]}); "
                "a wide table has one row per patient; use visit_month + sledai for several visits",
                source=source, line=row.line, field="patient_id",
            )
        seen[key] = row.line
        if record["sledai_latest"] is not None and record["follow_up_months"] == 0:
            raise CohortError(
                "sledai_latest is given but follow_up_months is 0; the latest score needs its month",
                source=source, line=row.line, field="follow_up_months", patient_id=record["patient_id"],
            )
    patients = _typed_patients(parsed, _extras(parsed[0]))
    visit_rows = []
    for record in parsed:
        visit_rows.append((record["study_id"], record["patient_id"], 0.0, record["sledai_baseline"]))
        if record["sledai_latest"] is not None:
            visit_rows.append(
                (record["study_id"], record["patient_id"], record["follow_up_months"], record["sledai_latest"])
            )
    return patients, _typed_visits(visit_rows)


def _typed_visits(visit_rows: list[tuple]) -> pd.DataFrame:
    visits = pd.DataFrame(visit_rows, columns=["study_id", "patient_id", "visit_month", "sledai"])
    visits["study_id"] = visits["study_id"].astype("string")
    visits["patient_id"] = visits["patient_id"].astype("string")
    visits["visit_month"] = visits["visit_month"].astype(float)
    visits["sledai"] = visits["sledai"].astype("int64")
    return visits


def _assemble_long(rows: list[CsvRow], parsed: list[dict], source: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    patient_level = [c for c in parsed[0] if c not in {"visit_month", "sledai", "source_line", "follow_up_months"}]
    first: dict[tuple[str, str], tuple[CsvRow, dict]] = {}
    visits_by_patient: dict[tuple[str, str], dict[float, tuple[int, int]]] = {}
    for row, record in zip(rows, parsed, strict=True):
        key = (record["study_id"], record["patient_id"])
        if key not in first:
            first[key] = (row, record)
            visits_by_patient[key] = {}
        else:
            first_row, first_record = first[key]
            for column in patient_level:
                a, b = first_record[column], record[column]
                same = (a == b) or (
                    isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b)
                )
                if not same:
                    file_column = "dose" if column in {"dose_cells", "dose_cells_per_kg"} else column
                    raise CohortError(
                        f"patient-level value differs from line {first_row.line} "
                        f"('{first_row.cells.get(file_column, a)}' vs '{row.cells.get(file_column, b)}'); "
                        "in the long layout patient columns must repeat unchanged",
                        source=source, line=row.line, field=file_column, patient_id=record["patient_id"],
                    )
        month = record["visit_month"]
        if month in visits_by_patient[key]:
            raise CohortError(
                f"duplicate visit at month {month:g} (first on line {visits_by_patient[key][month][0]})",
                source=source, line=row.line, field="visit_month", patient_id=record["patient_id"],
            )
        visits_by_patient[key][month] = (row.line, record["sledai"])
    records = []
    visit_rows = []
    for key, (row, record) in first.items():
        visits = visits_by_patient[key]
        if 0.0 not in visits:
            raise CohortError(
                "no baseline visit (visit_month = 0); the long layout needs the baseline SLEDAI-2K",
                source=source, line=row.line, field="visit_month", patient_id=record["patient_id"],
            )
        months = sorted(visits)
        latest = months[-1]
        given = record.get("follow_up_months")
        if given is not None and not math.isclose(given, latest):
            raise CohortError(
                f"follow_up_months {given:g} disagrees with the latest visit_month ({latest:g}); in the long layout "
                "follow-up is derived from the visits: remove the column or make it agree",
                source=source, line=row.line, field="follow_up_months", patient_id=record["patient_id"],
            )
        patient = {k: v for k, v in record.items() if k not in {"visit_month", "sledai"}}
        patient["follow_up_months"] = latest
        patient["sledai_baseline"] = visits[0.0][1]
        patient["sledai_latest"] = visits[latest][1] if latest > 0 else None
        records.append(patient)
        visit_rows.extend((key[0], key[1], month, visits[month][1]) for month in months)
    return _typed_patients(records, _extras(records[0])), _typed_visits(visit_rows)
