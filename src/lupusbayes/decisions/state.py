"""The trial so far: who was dosed, at which level, when, and what happened.

A :class:`TrialState` holds the trial's own patients in enrolment order, each with the dose
level, the days of safety follow-up at the data cut-off, the CRS grade and the DLT status (as
recorded, else derived from the spec's DLT definition), and the SLEDAI-2K visits through the
cohort it came from. Three ways in:

* :func:`load_state`: a cohort file (the same format and checks as ``lupusbayes data check``)
  with, optionally, ``infusion_date`` (the first infusion, ``YYYY-MM-DD``; needs an ``as_of``
  date) or ``safety_days`` (days of safety data at the cut-off). Without either, safety
  follow-up is read from ``follow_up_months`` (30.44 days a month) and the state says so.
  A patient with a DLT may give its day: ``dlt_day`` (whole days from the first infusion) or
  ``dlt_date`` (with ``infusion_date``), which the TITE-CRM's adaptive weights read;
* a counts file (``dose, n_patients, n_dlt`` and optionally ``current``): for designs that
  need only DLT counts per dose (BLRM, BOIN, 3+3); rules about timing are then not assessable;
* :func:`state_from_outcomes`: the outcome strings of the R packages, ``"1NNN 2NNT"``.

A patient is *DLT-evaluable* once they had a DLT or completed the DLT window; the counts the
designs read are over evaluable patients, and the others are *pending*. A patient is *inside
the window* until they completed it, with or without a DLT: the timing rules
(:class:`~lupusbayes.decisions.rules.DltWindow`, the sentinel) wait for them, so that a DLT
never shortens a wait.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, replace
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd

from lupusbayes.cohort import Cohort, dlt_day_and_label, load_cohort, parse_trial_date, read_csv_file, read_csv_rows
from lupusbayes.errors import CohortError
from lupusbayes.spec import TrialSpec

__all__ = ["PatientRecord", "TrialState", "load_state", "state_from_counts", "state_from_outcomes", "cohort_with",
           "DAYS_PER_MONTH"]

DAYS_PER_MONTH = 30.4375


@dataclass(frozen=True)
class PatientRecord:
    """One patient of the trial, as the decision rules see them."""

    patient_id: str
    level: int  # 0-based dose level of the spec
    safety_days: int | None  # days of safety data at the cut-off (None: unknown, taken as complete)
    dlt: bool  # DLT so far (recorded status, else derived from CRS / ICANS grades)
    crs_grade: int | None = None
    responder: bool | None = None  # SRI-4 SLEDAI component at the latest visit (None: no visit yet)
    day_dosed: int | None = None  # first infusion, days before the cut-off is -safety_days
    source_line: int | None = None
    icans_grade: int | None = None
    dlt_day: int | None = None  # days from the first infusion to the DLT (None: no DLT, or its day not recorded)

    def evaluable(self, window_days: int) -> bool:
        """DLT-evaluable: a DLT, or the whole DLT window observed (unknown follow-up counts as complete)."""
        return self.dlt or self.safety_days is None or self.safety_days >= window_days

    def inside_window(self, window_days: int) -> bool:
        """Still inside the DLT window (with or without a DLT): the timing rules wait for this patient."""
        return self.safety_days is not None and self.safety_days < window_days

    def days_to_window_end(self, window_days: int) -> int:
        """Days until this patient completes the DLT window (0 once completed or unknown)."""
        return max(0, window_days - self.safety_days) if self.inside_window(window_days) else 0


@dataclass(frozen=True)
class TrialState:
    """The trial so far (see the module docstring). Levels are 0-based indices into ``spec.dosing.levels``."""

    spec: TrialSpec = field(repr=False)
    patients: tuple[PatientRecord, ...]
    source: str
    counts_only: bool = False
    counts: tuple[tuple[int, int], ...] = ()  # (n_patients, n_dlt) per level, for counts-only states
    given_current_level: int | None = None
    as_of: date | None = None
    cohort: Cohort | None = field(default=None, repr=False)
    notes: tuple[str, ...] = ()

    @property
    def n_levels(self) -> int:
        return len(self.spec.dosing.levels)

    @property
    def window_days(self) -> int:
        return self.spec.dlt.window_days

    @property
    def n_patients(self) -> int:
        return sum(n for n, _ in self.counts) if self.counts_only else len(self.patients)

    def evaluable_counts(self) -> tuple[np.ndarray, np.ndarray]:
        """DLT-evaluable patients and DLTs per level (what the designs count)."""
        if self.counts_only:
            counts = np.array(self.counts, dtype=int).reshape(-1, 2)
            return counts[:, 0].copy(), counts[:, 1].copy()
        n, y = np.zeros(self.n_levels, dtype=int), np.zeros(self.n_levels, dtype=int)
        for patient in self.patients:
            if patient.evaluable(self.window_days):
                n[patient.level] += 1
                y[patient.level] += int(patient.dlt)
        return n, y

    def treated_counts(self) -> np.ndarray:
        """Patients given each level, pending ones included (counts-only states: the counts)."""
        if self.counts_only:
            return np.array([n for n, _ in self.counts], dtype=int)
        n = np.zeros(self.n_levels, dtype=int)
        for patient in self.patients:
            n[patient.level] += 1
        return n

    def inside_window(self) -> tuple[PatientRecord, ...]:
        """Patients still inside the DLT window, with or without a DLT (empty for counts-only states)."""
        return tuple(p for p in self.patients if p.inside_window(self.window_days))

    def responder_counts(self) -> np.ndarray:
        """Patients with the SRI-4 SLEDAI component at their latest visit, per level."""
        r = np.zeros(self.n_levels, dtype=int)
        for patient in self.patients:
            r[patient.level] += int(bool(patient.responder))
        return r

    @property
    def pending(self) -> tuple[PatientRecord, ...]:
        """Patients still inside the DLT window without a DLT."""
        return tuple(p for p in self.patients if not p.evaluable(self.window_days))

    @property
    def current_level_index(self) -> int | None:
        """The level of the last patient enrolled (None before the first patient)."""
        if self.given_current_level is not None:
            return self.given_current_level
        if self.counts_only:
            treated = [level for level, (n, _) in enumerate(self.counts) if n > 0]
            return treated[-1] if treated else None
        return self.patients[-1].level if self.patients else None

    @property
    def highest_tried_level(self) -> int | None:
        if self.counts_only:
            treated = [level for level, (n, _) in enumerate(self.counts) if n > 0]
            return max(treated) if treated else None
        return max((p.level for p in self.patients), default=None)

    def current_group(self) -> tuple[PatientRecord, ...]:
        """The patients of the group now open at the current level (the last ``group_size`` or fewer).

        A group is a run of consecutive patients at one level, cut every ``group_size`` patients.
        A counts file has no order: its current level's patients are taken as the most recent, so
        the open group is the last ``n mod group_size`` of them (a whole group when that is 0), and
        its DLTs are the level's DLTs up to its size (which of them had one is not known).
        """
        level = self.current_level_index
        if level is None:
            return ()
        if self.counts_only:
            n, y = self.counts[level]
            size = self.spec.escalation.group_size
            in_group = (n % size) or min(n, size)
            with_dlt = min(y, in_group)
            return tuple(PatientRecord(f"counted-{i + 1}", level, None, i >= in_group - with_dlt)
                         for i in range(in_group))
        run: list[PatientRecord] = []
        for patient in reversed(self.patients):
            if patient.level != level:
                break
            run.append(patient)
        run.reverse()
        size = self.spec.escalation.group_size
        remainder = len(run) % size
        return tuple(run[-(remainder or size):]) if run else ()

    def evaluable_cohort(self) -> Cohort | None:
        """The state's cohort restricted to its DLT-evaluable patients (what a toxicity model is fitted to).

        None when the state has no cohort or no evaluable patient yet.
        """
        if self.cohort is None:
            return None
        evaluable = {p.patient_id for p in self.patients if p.evaluable(self.window_days)}
        keep = self.cohort.patients["patient_id"].astype(str).isin(evaluable)
        if not keep.any():
            return None
        if keep.all():
            return self.cohort
        visits = self.cohort.visits
        visits = visits[visits["patient_id"].astype(str).isin(evaluable)] if "patient_id" in visits else visits
        return replace(self.cohort, patients=self.cohort.patients[keep].reset_index(drop=True),
                       visits=visits.reset_index(drop=True))

    def dlt_basis(self) -> str:
        """What a P(DLT) from this state's DLT-evaluable patients rests on (see :meth:`DLTDefinition.basis`)."""
        dlt = self.spec.dlt
        if self.cohort is None:
            n, _ = self.evaluable_counts()
            return dlt.basis(n_recorded=0, n_derived=0, icans_known=True, n_aggregate=int(n.sum()))
        cohort = self.evaluable_cohort()
        if cohort is None:
            return "P(DLT) from the prior alone: no patient is DLT-evaluable yet"
        patients = cohort.patients
        recorded = patients["dlt"].notna()
        icans_known = "icans_grade" in patients and bool(patients.loc[~recorded, "icans_grade"].notna().all())
        return dlt.basis(n_recorded=int(recorded.sum()), n_derived=int((~recorded).sum()), icans_known=icans_known)

    def tried_levels(self) -> set[int]:
        n, _ = self.evaluable_counts()
        if self.counts_only:
            return {level for level, count in enumerate(n) if count > 0}
        return {p.level for p in self.patients}


# ---- reading ------------------------------------------------------------------------------


def _level_of(spec: TrialSpec, dose: float, *, source: str, line: int | None, patient: str) -> int:
    level = spec.dosing.level_index(dose)
    if level is None:
        levels = ", ".join(f"{v:g}" for v in spec.dosing.levels)
        raise CohortError(f"dose {dose:g} {spec.dosing.unit.value} is not a dose level of {spec.trial.id} ({levels})",
                          source=source, line=line, field="dose", patient_id=patient)
    return level


def _whole_days(text: str, *, source: str, line: int, patient: str) -> int:
    value = float(text)  # checked by the cohort loader: a whole number of days within MAX_SAFETY_DAYS
    return int(value)


def _date(text: str, *, source: str, line: int, patient: str) -> date:
    try:
        return parse_trial_date(text, what="infusion_date")
    except ValueError as error:
        raise CohortError(str(error), source=source, line=line, field="infusion_date", patient_id=patient) from None


def _cell_text(value) -> str:
    """A cell as text, blank for a missing value (pandas reads a blank cell as NaN)."""
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        return ""
    return str(value).strip()


def _dlt_day(row, dlt: bool, safety_days: int, window_days: int, *, as_of: date | None, from_months: bool,
             source: str, line: int | None) -> int | None:
    """The patient's DLT day from ``dlt_day`` or ``dlt_date`` (the cohort loader checked each cell, that they agree,
    and that a dlt_date has its infusion_date), or None; refused for a patient without a DLT (as the spec defines
    it), after the follow-up at the cut-off, and after the DLT window (a toxicity after it is not a DLT)."""
    day_text, date_text = _cell_text(getattr(row, "dlt_day", "")), _cell_text(getattr(row, "dlt_date", ""))
    if not day_text and not date_text:
        return None
    given = "dlt_day" if day_text else "dlt_date"
    where = dict(source=source, line=line, field=given, patient_id=row.patient_id)
    if not dlt:
        raise CohortError(f"{given} {day_text or date_text} is given but the patient has no DLT (none recorded in dlt, "
                          "and none by the spec's DLT definition from the CRS / ICANS grades): only a patient with a "
                          "DLT has a DLT day", **where)
    day, shown = dlt_day_and_label(day_text, date_text, _cell_text(getattr(row, "infusion_date", "")))
    if day > safety_days:
        if as_of is not None:
            followed = f"the cut-off {as_of} (day {safety_days})"
        elif from_months:
            followed = f"the patient's follow-up ({safety_days} days, from follow_up_months)"
        else:
            followed = f"the patient's follow-up (safety_days {safety_days})"
        raise CohortError(f"{shown} is after {followed}: a DLT is recorded by the data cut-off", **where)
    if day > window_days:
        raise CohortError(f"{shown} is after the DLT window ({window_days} days, [dlt] window_days): a toxicity after "
                          "the window is not a DLT by the protocol's definition; correct the day, or the DLT", **where)
    return day


def _state_from_cohort(cohort: Cohort, spec: TrialSpec, *, as_of: date | None) -> TrialState:
    patients = cohort.patients
    source = cohort.source
    others = sorted(set(patients["study_id"]) - {spec.trial.id})
    if others:
        raise CohortError(
            f"the state holds {spec.trial.id}'s own patients; it also has study {others[0]} (give other studies' "
            "patients as co-data to the model, not in the state)", source=source, field="study_id")
    unit = spec.dosing.unit.value
    if len(patients) > MAX_STATE_PATIENTS:
        raise CohortError(f"{len(patients):,} patients; a trial state holds at most {MAX_STATE_PATIENTS:,} (give the "
                          "trial's own patients, and other studies as co-data)", source=source)
    has_dates, has_days = "infusion_date" in patients, "safety_days" in patients
    if has_dates and as_of is None:
        raise CohortError("infusion_date needs the data cut-off date: give as_of (--as-of YYYY-MM-DD)",
                          source=source, field="infusion_date")
    if as_of is not None:
        try:
            parse_trial_date(as_of.isoformat(), what="the data cut-off")
        except ValueError as error:
            raise CohortError(str(error), source=source, field="as_of") from None
    notes = []
    if not has_dates and not has_days:
        notes.append("no infusion_date or safety_days column: safety follow-up is taken from follow_up_months "
                     f"({DAYS_PER_MONTH:g} days a month)")
    responders = cohort.with_response_flags()["sri4_sledai_component"]  # <NA> without a follow-up visit
    icans_grades = (patients["icans_grade"].to_numpy(dtype=float, na_value=np.nan) if "icans_grade" in patients
                    else None)
    dlts = spec.dlt.dlt_status(patients["crs_grade"], icans_grades,
                               patients["dlt"].to_numpy(dtype=float, na_value=np.nan))
    records, not_evaluable = [], []
    for index, (row, responder, dlt) in enumerate(zip(patients.itertuples(index=False), responders, dlts,
                                                      strict=True)):
        line = int(row.source_line) if not pd.isna(row.source_line) else None
        dose = row.dose_cells if unit == "cells" else row.dose_cells_per_kg
        if pd.isna(dose):
            raise CohortError(f"the dose is recorded in {row.dose_unit} without weight_kg; {spec.trial.id} doses in "
                              f"{unit}", source=source, line=line, field="dose", patient_id=row.patient_id)
        level = _level_of(spec, float(dose), source=source, line=line, patient=row.patient_id)
        date_text = _cell_text(row.infusion_date) if has_dates else ""
        days_text = _cell_text(row.safety_days) if has_days else ""
        if date_text:
            dosed = _date(date_text, source=source, line=line, patient=row.patient_id)
            if dosed > as_of:
                raise CohortError(f"infusion_date {dosed} is after the cut-off {as_of}", source=source, line=line,
                                  field="infusion_date", patient_id=row.patient_id)
            safety_days = (as_of - dosed).days
            if days_text and int(float(days_text)) != safety_days:  # a derived column must agree, or be left out
                raise CohortError(f"safety_days {days_text} disagrees with infusion_date {dosed} and the cut-off "
                                  f"{as_of} ({safety_days} days); remove one of them or make them agree",
                                  source=source, line=line, field="safety_days", patient_id=row.patient_id)
        elif days_text:
            safety_days = _whole_days(days_text, source=source, line=line, patient=row.patient_id)
        elif has_dates or has_days:
            # a blank here would make the patient's place in the enrolment order and their DLT window unknown
            field_name = "infusion_date" if has_dates else "safety_days"
            raise CohortError("is blank: every patient of the state needs the first infusion date "
                              + ("(or safety_days) " if has_dates else "") + "to place them in the enrolment order "
                              "and the DLT window", source=source, line=line, field=field_name,
                              patient_id=row.patient_id)
        else:
            safety_days = int(row.follow_up_months * DAYS_PER_MONTH)
        day_dosed = -safety_days if (has_dates or has_days) else None
        if _cell_text(getattr(row, "dlt_evaluable", "")) == "no" and not dlt:
            # left within the window without a DLT: replaced, and out of the decisions (counts, groups, sample size)
            not_evaluable.append(f"{row.patient_id} (line {line})")
            continue
        icans = None if icans_grades is None or np.isnan(icans_grades[index]) else int(icans_grades[index])
        dlt_day = _dlt_day(row, bool(dlt), safety_days, spec.dlt.window_days, as_of=as_of if date_text else None,
                           from_months=not (has_dates or has_days), source=source, line=line)
        records.append(PatientRecord(str(row.patient_id), level, safety_days, bool(dlt),
                                     int(row.crs_grade), None if pd.isna(responder) else bool(responder), day_dosed,
                                     line, icans, dlt_day))
    if has_dates or has_days:  # enrolment order: the first infusion; the file's order breaks ties
        records.sort(key=lambda record: record.day_dosed)
    if not_evaluable:
        notes.append(f"{len(not_evaluable)} patient(s) not DLT-evaluable (dlt_evaluable = no: {', '.join(not_evaluable[:3])}"
                     f"{', ...' if len(not_evaluable) > 3 else ''}) are left out of the decisions and are to be "
                     "replaced, as the protocol's cohorts count DLT-evaluable patients")
    return TrialState(spec, tuple(records), source, as_of=as_of, cohort=cohort, notes=tuple(notes))


#: The largest trial state a decision reads: more patients than this is not a dose-escalation trial.
MAX_STATE_PATIENTS = 10_000
_DECIMAL = re.compile(r"[+]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?", re.ASCII)
_COUNTS_COLUMNS = ("dose", "n_patients", "n_dlt", "current")
_YES, _NO = {"1", "yes", "y", "true"}, {"", "0", "no", "n", "false"}


def _counts_state(text: str, spec: TrialSpec, source: str) -> TrialState:
    """A counts file: one row per dose level given, ``dose, n_patients, n_dlt`` and optionally ``current``."""
    header, rows = read_csv_rows(text, source, what="dose", allow_empty=True)  # no rows: no patient yet
    missing = [name for name in ("dose", "n_patients", "n_dlt") if name not in header]
    if missing:
        raise CohortError(f"a counts file needs the columns dose, n_patients, n_dlt (missing: {', '.join(missing)})",
                          source=source, line=rows[0].line - 1 if rows else None)
    unknown = [name for name in header if name not in _COUNTS_COLUMNS]
    if unknown:
        raise CohortError(f"unknown column '{unknown[0]}' (a counts file has {', '.join(_COUNTS_COLUMNS)})",
                          source=source, field=unknown[0])
    counts = [[0, 0] for _ in spec.dosing.levels]
    seen: dict[int, int] = {}
    current, current_line = None, None
    for row in rows:
        where = dict(source=source, line=row.line)
        dose_text = row.cells["dose"]
        if not _DECIMAL.fullmatch(dose_text) or not math.isfinite(float(dose_text)) or float(dose_text) <= 0:
            raise CohortError(f"'{dose_text[:40]}' is not a dose (a positive number such as 2.5e7)", field="dose",
                              **where)
        level = _level_of(spec, float(dose_text), source=source, line=row.line, patient=None)
        if level in seen:
            raise CohortError(f"dose {dose_text} is also on line {seen[level]}: give one row per dose level",
                              field="dose", **where)
        seen[level] = row.line
        values = {}
        for name in ("n_patients", "n_dlt"):
            value = row.cells[name]
            if not re.fullmatch(r"[0-9]{1,9}", value, re.ASCII) or int(value) > MAX_STATE_PATIENTS:
                raise CohortError(f"must be a whole number from 0 to {MAX_STATE_PATIENTS:,} (got '{value[:40]}')",
                                  field=name, **where)
            values[name] = int(value)
        if values["n_dlt"] > values["n_patients"]:
            raise CohortError(f"n_dlt {values['n_dlt']} exceeds n_patients {values['n_patients']}", field="n_dlt",
                              **where)
        counts[level] = [values["n_patients"], values["n_dlt"]]
        flag = row.cells.get("current", "").strip().lower()
        if flag not in _YES | _NO:
            raise CohortError(f"must be yes or no (blank: no), got '{flag[:40]}'", field="current", **where)
        if flag in _YES:
            if current is not None:
                raise CohortError(f"line {current_line} is already the current dose: mark one row current",
                                  field="current", **where)
            if values["n_patients"] == 0:
                raise CohortError("the current dose has no patients", field="current", **where)
            current, current_line = level, row.line
    if sum(n for n, _ in counts) > MAX_STATE_PATIENTS:
        raise CohortError(f"{sum(n for n, _ in counts):,} patients in all: a trial state holds at most "
                          f"{MAX_STATE_PATIENTS:,}", source=source, field="n_patients")
    return TrialState(spec, (), source, counts_only=True, counts=tuple(map(tuple, counts)),
                      given_current_level=current)


def load_state(path: str | Path, spec: TrialSpec, *, as_of: date | None = None) -> TrialState:
    """Read a trial state: a cohort file (patients) or a counts file (``dose, n_patients, n_dlt``).

    Raises
    ------
    CohortError
        One line naming the file, line and field (the cohort file's checks, and: a dose that is
        not a level of the spec, a date or a number of days that is not one, a patient of
        another study, a DLT day on a patient without a DLT, after the follow-up or after the DLT window).
    """
    path = Path(path)
    if path.name.lower() == "kn5601" and not path.exists():
        return _state_from_cohort(load_cohort(path), spec, as_of=as_of)
    text = read_csv_file(path, what="state file")
    header = next((line for line in text.lstrip().splitlines() if line.strip() and not line.startswith("#")), "")
    if "n_patients" in [cell.strip() for cell in header.split(",")]:
        return _counts_state(text, spec, str(path))
    return _state_from_cohort(load_cohort(path, study_id=spec.trial.id), spec, as_of=as_of)


def state_from_counts(spec: TrialSpec, n_patients, n_dlt, *, current_level_index: int | None = None,
                      source: str = "<counts>") -> TrialState:
    """A counts-only state from DLT counts per level (0-based, one entry per spec level)."""
    n, y = np.asarray(n_patients, dtype=int), np.asarray(n_dlt, dtype=int)
    if n.shape != (len(spec.dosing.levels),) or y.shape != n.shape or np.any(y > n) or np.any(y < 0):
        raise ValueError(f"give one count per level ({len(spec.dosing.levels)}) with 0 <= n_dlt <= n_patients")
    return TrialState(spec, (), source, counts_only=True, counts=tuple(zip(n.tolist(), y.tolist(), strict=True)),
                      given_current_level=current_level_index)


def state_from_outcomes(spec: TrialSpec, outcomes: str) -> TrialState:
    """A state from R-style outcome strings (``"1NNN 2NNT"``: level, then N / T per patient).

    Patients are in the string's order, each DLT-evaluable; levels in the string count from 1.
    """
    from lupusbayes.decisions.three_plus_three import parse_outcomes

    shown = outcomes if len(outcomes) <= 60 else f"{outcomes[:57]}..."
    try:
        cohorts = parse_outcomes(outcomes)
    except ValueError as error:
        raise CohortError(f"outcomes '{shown}': {str(error).replace(outcomes, shown)}") from None
    if sum(cohort.n_patients for cohort in cohorts) > MAX_STATE_PATIENTS:
        raise CohortError(f"outcomes: {sum(c.n_patients for c in cohorts):,} patients; a trial state holds at most "
                          f"{MAX_STATE_PATIENTS:,}")
    records = []
    for cohort_number, cohort in enumerate(cohorts, start=1):
        if cohort.dose_level >= len(spec.dosing.levels):
            raise CohortError(f"outcomes '{shown}': level {cohort.dose_level + 1} does not exist "
                              f"({spec.trial.id} has {len(spec.dosing.levels)})")
        for patient_number, toxicity in enumerate(cohort.dlt, start=1):
            records.append(PatientRecord(f"c{cohort_number}p{patient_number}", cohort.dose_level, None, bool(toxicity)))
    return TrialState(spec, tuple(records), f"outcomes '{shown}'")


def cohort_with(state: TrialState, codata: list[Cohort]) -> Cohort | None:
    """The state's cohort stacked with co-data cohorts (for fitting the models a decision needs)."""
    from lupusbayes.cohort import combine_cohorts

    cohorts = ([state.cohort] if state.cohort is not None else []) + list(codata)
    if not cohorts:
        return None
    return combine_cohorts(cohorts)

