"""Descriptive summary of a cohort: CRS by grade and dose, SLEDAI-2K change, response proxies.

These are counts, not model estimates; they are what ``lupusbayes data show`` prints.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from lupusbayes.cohort import Cohort
from lupusbayes.dosing import DoseUnit, LMSWeightReference, cells_per_kg_distribution, dose_label, effective_age_years
from lupusbayes.endpoints import RESPONSE_DEFINITIONS
from lupusbayes.errors import DosingError

__all__ = ["CohortSummary", "summarise_cohort", "conversion_notes"]

_FLAGS = tuple(RESPONSE_DEFINITIONS)


@dataclass(frozen=True)
class CohortSummary:
    """Descriptive tables for one cohort (see :func:`summarise_cohort`)."""

    n_patients: int
    studies: tuple[str, ...]
    crs_by_grade: pd.DataFrame
    crs_by_dose: pd.DataFrame
    sledai: pd.DataFrame
    responses_by_dose: pd.DataFrame
    responses_overall: pd.DataFrame
    dose_per_kg: pd.DataFrame | None
    notes: tuple[str, ...] = ()

    def __repr__(self) -> str:
        any_crs = int(self.crs_by_grade.loc[self.crs_by_grade["crs_grade"] > 0, "n_patients"].sum())
        return (f"CohortSummary({self.n_patients} patients in {', '.join(self.studies)}; CRS in {any_crs}; "
                f"{len(self.crs_by_dose)} dose groups; {len(self.notes)} notes)")

    def to_dict(self) -> dict[str, Any]:
        def records(frame: pd.DataFrame | None):
            if frame is None:
                return None
            clean = frame.astype(object).where(frame.notna(), None)
            return clean.to_dict(orient="records")

        return {
            "n_patients": self.n_patients,
            "studies": list(self.studies),
            "crs_by_grade": records(self.crs_by_grade),
            "crs_by_dose": records(self.crs_by_dose),
            "sledai": records(self.sledai),
            "responses_by_dose": records(self.responses_by_dose),
            "responses_overall": records(self.responses_overall),
            "dose_per_kg": records(self.dose_per_kg),
            "notes": list(self.notes),
            "response_definitions": {k: vars(v) for k, v in RESPONSE_DEFINITIONS.items()},
        }


def _dose_column(patients: pd.DataFrame) -> pd.Series:
    return pd.Series(
        [
            dose_label(cells if unit == DoseUnit.CELLS.value else per_kg, unit)
            for cells, per_kg, unit in zip(
                patients["dose_cells"], patients["dose_cells_per_kg"], patients["dose_unit"], strict=True
            )
        ],
        index=patients.index,
    )


def _dose_order(patients: pd.DataFrame) -> pd.Series:
    value = np.where(patients["dose_unit"] == DoseUnit.CELLS.value, patients["dose_cells"], patients["dose_cells_per_kg"])
    return pd.Series(value, index=patients.index)


#: How many patients a note names before it gives the count of the rest.
NOTE_EXAMPLES = 3


def conversion_notes(cohort: Cohort, reference: LMSWeightReference | None = None) -> tuple[str, ...]:
    """The patients whose flat dose cannot be put on a per-kg scale, said once.

    A dose in cells with no recorded weight is converted through a weight-for-age reference;
    a patient outside its ages cannot be. Said once, at load, naming the patient, the file and
    line and the recorded age (for many patients: their number and the first
    :data:`NOTE_EXAMPLES`), instead of the patients vanishing from tables and a later model
    failing on them.
    """
    patients = cohort.patients
    flat = patients[patients["dose_cells_per_kg"].isna()]
    if flat.empty:
        return ()
    reference = reference or LMSWeightReference.cdc2000()
    ages = effective_age_years(flat["age_years"].to_numpy(dtype=float))  # 13 means 13.5 (completed years)
    outside = np.zeros(len(flat), dtype=bool)
    ranges = {}
    for sex in flat["sex"].unique():
        low, high = ranges[sex] = reference.age_range_years(sex)
        rows = (flat["sex"] == sex).to_numpy()
        outside |= rows & ((ages < low) | (ages > high))
    if not outside.any():
        return ()
    chosen = flat[outside]
    located = "source_file" in chosen.columns

    def where(patient) -> str:
        place = f"{patient.source_file}:{patient.source_line}, " if located else ""
        return f"patient {patient.patient_id} ({place}age {patient.age_years:g})"

    low = min(r[0] for r in ranges.values())
    high = max(r[1] for r in ranges.values())
    span = f"'{reference.name}' ({low:g}-{high:g} years)"
    consequence = "no cells/kg here, and a model in cells/kg refuses them; give weight_kg"
    examples = [where(patient) for patient in chosen.head(NOTE_EXAMPLES).itertuples(index=False)]
    if len(chosen) == 1:
        return (f"{examples[0]}: dose in cells with no weight_kg, and the age is outside the weight reference {span}: "
                + consequence.replace("them", "the patient"),)
    more = f", and {len(chosen) - NOTE_EXAMPLES:,} more" if len(chosen) > NOTE_EXAMPLES else ""
    return (f"{len(chosen):,} patients have a dose in cells with no weight_kg and an age outside the weight reference "
            f"{span}: {', '.join(examples)}{more}: {consequence}",)


def summarise_cohort(cohort: Cohort, *, seed: int = 20251108, weight_reference: LMSWeightReference | None = None) -> CohortSummary:
    """Counts a trial statistician looks at first.

    ``seed`` fixes the Monte Carlo draws of the cells/kg conversion for patients without a
    recorded weight (the only random part).

    Examples
    --------
    >>> from lupusbayes import load_kn5601
    >>> summary = summarise_cohort(load_kn5601())
    >>> summary.crs_by_grade[["crs_grade", "n_patients"]].values.tolist()
    [[0, 7], [1, 3], [2, 1]]
    """
    patients = cohort.with_response_flags()
    patients["dose"] = _dose_column(patients)
    patients["_dose_order"] = _dose_order(patients)
    n = len(patients)

    highest_grade = int(patients["crs_grade"].max())
    max_grade = max(2, highest_grade)  # the by-dose table always shows grades 1 and 2
    grade_counts = patients["crs_grade"].value_counts().reindex(range(highest_grade + 1), fill_value=0)
    crs_by_grade = pd.DataFrame(
        {
            "crs_grade": grade_counts.index,
            "n_patients": grade_counts.to_numpy(),
            "percent": np.round(100 * grade_counts.to_numpy() / n, 1),
        }
    )

    group_keys = ["study_id", "dose", "_dose_order"]
    grouped = patients.groupby(group_keys, sort=False, observed=True)
    crs_by_dose = grouped.agg(
        n_patients=("patient_id", "size"),
        any_crs=("crs_grade", lambda g: int((g > 0).sum())),
        max_crs_grade=("crs_grade", "max"),
    ).reset_index()
    for grade in range(1, max_grade + 1):
        crs_by_dose[f"crs_grade_{grade}"] = grouped["crs_grade"].apply(lambda g, grade=grade: int((g == grade).sum())).to_numpy()
    crs_by_dose = crs_by_dose.sort_values(["study_id", "_dose_order"]).drop(columns="_dose_order").reset_index(drop=True)

    sledai = patients[
        ["study_id", "patient_id", "dose", "sledai_baseline", "sledai_latest", "follow_up_months", "sledai_reduction"]
    ].reset_index(drop=True)

    def response_table(frame: pd.DataFrame) -> dict[str, Any]:
        assessed = frame["sledai_latest"].notna()
        out: dict[str, Any] = {"n_patients": len(frame), "n_with_follow_up": int(assessed.sum())}
        reductions = frame.loc[assessed, "sledai_reduction"].astype(float)
        out["mean_sledai_reduction"] = round(float(reductions.mean()), 2) if len(reductions) else None
        for flag in _FLAGS:
            out[flag] = int(frame[flag].fillna(False).sum())
        return out

    responses_overall = pd.DataFrame([response_table(patients)])
    responses_by_dose = (
        pd.DataFrame(
            [
                {"study_id": keys[0], "dose": keys[1], "_order": keys[2], **response_table(frame)}
                for keys, frame in grouped
            ]
        )
        .sort_values(["study_id", "_order"])
        .drop(columns="_order")
        .reset_index(drop=True)
    )

    dose_per_kg = None
    reference = weight_reference
    unknown_weight = patients["dose_cells_per_kg"].isna()
    if unknown_weight.any():
        reference = weight_reference or LMSWeightReference.cdc2000()
        rng = np.random.default_rng(seed)
        rows = []
        for _, patient in patients[unknown_weight].iterrows():
            try:
                distribution = cells_per_kg_distribution(
                    patient["dose_cells"], age_years=patient["age_years"], sex=patient["sex"],
                    reference=reference, seed=rng,
                )
            except DosingError:
                continue  # said in the notes (conversion_notes)
            low, median, high = distribution.quantiles((0.05, 0.5, 0.95))
            rows.append(
                {
                    "study_id": patient["study_id"],
                    "patient_id": patient["patient_id"],
                    "age_years": patient["age_years"],
                    "sex": patient["sex"],
                    "dose_cells": patient["dose_cells"],
                    "median_cells_per_kg": float(f"{median:.3g}"),
                    "q05_cells_per_kg": float(f"{low:.3g}"),
                    "q95_cells_per_kg": float(f"{high:.3g}"),
                }
            )
        dose_per_kg = pd.DataFrame(rows) if rows else None

    return CohortSummary(
        n_patients=n,
        studies=tuple(cohort.study_ids),
        crs_by_grade=crs_by_grade.reset_index(drop=True),
        crs_by_dose=crs_by_dose,
        sledai=sledai,
        responses_by_dose=responses_by_dose,
        responses_overall=responses_overall,
        dose_per_kg=dose_per_kg,
        notes=conversion_notes(cohort, reference),
    )
