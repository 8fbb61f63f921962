"""Screening patients against a trial's eligibility criteria.

:func:`screen` checks every criterion that can be checked from data, for every patient, and
reports each failure with the value that failed and the rule it broke. A value that is absent
is reported as *not assessable* (never as a pass); criteria that need the investigator's
judgement (informed consent, "uncontrolled" disease) are listed, not checked.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd

from lupusbayes.cohort import biopsy_classes
from lupusbayes.errors import CohortError
from lupusbayes.spec import EligibilityCriterion, TrialSpec

__all__ = ["ScreeningReport", "screen"]

_TRUE = {"1", "yes", "y", "true", "t", "positive", "+"}
_FALSE = {"0", "no", "n", "false", "f", "negative", "-", "/"}


@dataclass(frozen=True)
class ScreeningReport:
    """Result of :func:`screen`.

    ``results`` has one row per patient and automatic criterion with ``status`` in
    ``{"pass", "fail", "not assessable", "not applicable"}``; ``failures`` and
    ``not_assessable`` are its subsets; ``manual_criteria`` lists the criteria left to the
    investigator.
    """

    results: pd.DataFrame
    manual_criteria: tuple[EligibilityCriterion, ...]
    trial_id: str

    def __repr__(self) -> str:
        patients = self.results["patient_id"].nunique() if len(self.results) else 0
        failing = self.failures["patient_id"].nunique() if len(self.failures) else 0
        return (f"ScreeningReport({self.trial_id}: {patients} patients, {failing} failing a checked criterion; "
                f"{len(self.not_assessable)} patient-criterion pairs not assessable; "
                f"{len(self.manual_criteria)} criteria left to the investigator)")

    @property
    def failures(self) -> pd.DataFrame:
        return self.results[self.results["status"] == "fail"].reset_index(drop=True)

    @property
    def not_assessable(self) -> pd.DataFrame:
        return self.results[self.results["status"] == "not assessable"].reset_index(drop=True)

    def eligible_by_data(self) -> pd.Series:
        """Per patient: True if no automatic criterion failed or was unassessable."""
        blocking = self.results["status"].isin(["fail", "not assessable"])
        return (~blocking).groupby([self.results["study_id"], self.results["patient_id"]], sort=False).all()

    def to_dict(self) -> dict[str, Any]:
        return {
            "trial_id": self.trial_id,
            "failures": self.failures.to_dict(orient="records"),
            "not_assessable": self.not_assessable.to_dict(orient="records"),
            "manual_criteria": [{"id": c.id, "kind": c.kind, "text": c.text} for c in self.manual_criteria],
        }


def _number(value: Any) -> float | None:
    if value is None or value is pd.NA:
        return None
    if isinstance(value, str):
        text = value.strip()
        if text.lower() in {"", "/", "na", "n/a", "nan", "not done"}:
            return None
        return float(text)
    number = float(value)
    return None if math.isnan(number) else number


def _boolean(value: Any) -> bool | None:
    if value is None or value is pd.NA:
        return None
    if isinstance(value, bool):
        return value
    if isinstance(value, float) and math.isnan(value):
        return None
    key = str(value).strip().lower()
    if key in {"", "na", "n/a", "nan", "not done"}:
        return None
    if key in _TRUE:
        return True
    if key in _FALSE:
        return False
    raise ValueError(f"expected yes/no (got '{value}')")


def _numeric_ok(criterion: EligibilityCriterion | Mapping[str, Any], value: float) -> bool:
    get = criterion.get if isinstance(criterion, Mapping) else (lambda name: getattr(criterion, name))
    checks = (
        (get("min"), lambda bound: value >= bound),
        (get("max"), lambda bound: value <= bound),
        (get("greater_than"), lambda bound: value > bound),
        (get("less_than"), lambda bound: value < bound),
    )
    return all(test(bound) for bound, test in checks if bound is not None)


def _applies(criterion: EligibilityCriterion, patient: Mapping[str, Any]) -> bool | None:
    condition = criterion.applies_when
    if not condition:
        return True
    value = patient.get(condition["field"])
    if "equals" in condition:
        observed = _boolean(value) if isinstance(condition["equals"], bool) else value
        return None if observed is None else observed == condition["equals"]
    number = _number(value)
    return None if number is None else _numeric_ok(condition, number)


def _check(criterion: EligibilityCriterion, patient: Mapping[str, Any]) -> tuple[str, str]:
    """Return (status, shown value) for one patient and one automatic criterion."""
    applies = _applies(criterion, patient)
    if applies is None:
        return "not assessable", f"({criterion.applies_when['field']} missing)"
    if not applies:
        return "not applicable", ""
    if criterion.any_true:
        values = [_boolean(patient.get(name)) for name in criterion.any_true]
        shown = ", ".join(f"{n}={'?' if v is None else ('yes' if v else 'no')}" for n, v in zip(criterion.any_true, values, strict=True))
        if any(v is True for v in values):
            return "pass", shown
        return ("not assessable" if any(v is None for v in values) else "fail"), shown
    if criterion.field not in patient:
        return "not assessable", "(column missing)"
    value = patient[criterion.field]
    if criterion.any_of_classes is not None:
        present = biopsy_classes(None if value is pd.NA else value)
        shown = "none" if value is None or value is pd.NA else str(value)
        if value is None or value is pd.NA:
            return "fail", shown
        return ("pass" if present & set(criterion.any_of_classes) else "fail"), shown
    if criterion.equals is not None:
        if isinstance(criterion.equals, bool):
            observed = _boolean(value)
            if observed is None:
                return "not assessable", "(missing)"
            return ("pass" if observed == criterion.equals else "fail"), "yes" if observed else "no"
        if value is None or value is pd.NA or str(value).strip() == "":
            return "not assessable", "(missing)"
        return ("pass" if str(value).strip() == criterion.equals else "fail"), str(value)
    number = _number(value)
    if number is None:
        return "not assessable", "(missing)"
    return ("pass" if _numeric_ok(criterion, number) else "fail"), f"{number:g}"


def screen(patients: pd.DataFrame, spec: TrialSpec) -> ScreeningReport:
    """Check each patient against every data-checkable eligibility criterion of ``spec``.

    Parameters
    ----------
    patients
        A tidy patient frame (``Cohort.patients``); criteria read the columns they name, so
        laboratory values come from extra columns of the cohort file
        (e.g. ``upcr_g_per_g``; see ``FIELD_UNITS`` in :mod:`lupusbayes.spec`).
    spec
        The trial spec whose ``[[eligibility.criteria]]`` are applied.

    Examples
    --------
    >>> from lupusbayes import load_kn5601, load_spec
    >>> report = screen(load_kn5601().patients, load_spec("axa_nk02"))
    >>> sorted(report.failures.query("criterion_id == 'I2-proliferative-ln'")["patient_id"])
    ['001', '007', '010', '012']
    """
    automatic = [c for c in spec.eligibility if c.automatic]
    rows = []
    for record in patients.to_dict(orient="records"):
        for criterion in automatic:
            try:
                status, shown = _check(criterion, record)
            except ValueError as error:
                raise CohortError(
                    str(error), source=None, line=record.get("source_line"), field=criterion.field,
                    patient_id=str(record.get("patient_id")),
                ) from None
            rows.append(
                {
                    "study_id": record.get("study_id"),
                    "patient_id": record.get("patient_id"),
                    "criterion_id": criterion.id,
                    "kind": criterion.kind,
                    "field": criterion.field or ",".join(criterion.any_true or ()),
                    "value": shown,
                    "requirement": criterion.requirement(),
                    "status": status,
                    "text": criterion.text,
                }
            )
    columns = ["study_id", "patient_id", "criterion_id", "kind", "field", "value", "requirement", "status", "text"]
    results = pd.DataFrame(rows, columns=columns)
    manual = tuple(c for c in spec.eligibility if not c.automatic)
    return ScreeningReport(results=results, manual_criteria=manual, trial_id=spec.trial.id)
