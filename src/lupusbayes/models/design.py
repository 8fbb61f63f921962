"""From a cohort and a spec to model arrays: studies, dose covariate, dose groups.

The models work on ``x = log(dose / reference_dose)`` in the spec's dose unit and dose metric
(per infusion, or per course: the dose times the infusions received, against the reference
dose times the trial's infusions per patient). A patient whose dose is recorded in the other
unit and whose weight was not measured gets a latent weight: ``weight = LMS(z)`` at the patient's age and sex with ``z ~ Normal(0, 1)``, so the
dose on the model's scale carries the weight uncertainty into the posterior (errors in
variables) instead of being fixed at a guessed weight.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from lupusbayes.dosing import DoseUnit, LMSWeightReference, dose_label, effective_age_years, lms_weight_kg
from lupusbayes.errors import DosingError, ModelSetupError
from lupusbayes.spec import DosingSpec

__all__ = ["DoseCovariate", "dose_covariate", "infusion_counts", "study_index", "dose_groups", "dose_group_label"]


@dataclass(frozen=True)
class DoseCovariate:
    """Per-patient ``x = log(dose / d*)``, exact or through a latent weight.

    For patient *i*: ``x_i = base_i + sign_i * log(weight_i)`` where ``sign_i`` is 0 when the
    dose is already in the model's unit (or the weight was measured), -1 when a flat dose is
    converted to cells/kg, +1 when a per-kg dose is converted to cells.
    """

    base: np.ndarray
    sign: np.ndarray
    lms: np.ndarray = field(repr=False)  # (n_latent, 3): L, M, S of each latent-weight patient
    latent_index: np.ndarray = field(repr=False)  # positions of latent-weight patients
    unit: DoseUnit
    reference_dose: float

    @property
    def n_latent(self) -> int:
        return int(self.latent_index.size)

    def log_relative_dose(self, weight_z=None, *, xp=np):
        """``x`` for all patients; ``weight_z`` (..., n_latent) are the latent weight z-scores."""
        if self.n_latent == 0:
            return self.base if xp is np else xp.as_tensor_variable(self.base)
        L, M, S = self.lms[:, 0], self.lms[:, 1], self.lms[:, 2]  # noqa: N806
        log_weight = xp.log(lms_weight_kg(weight_z, L, M, S, xp=xp))
        signs = self.sign[self.latent_index]
        if xp is np:
            x = np.broadcast_to(self.base, np.shape(weight_z)[:-1] + self.base.shape).copy()
            x[..., self.latent_index] += signs * log_weight
            return x
        return xp.set_subtensor(xp.as_tensor_variable(self.base)[self.latent_index],
                                self.base[self.latent_index] + signs * log_weight)

    def weight_kg(self, weight_z) -> np.ndarray:
        """Latent weights (kg) implied by z-scores, for reporting."""
        return lms_weight_kg(weight_z, self.lms[:, 0], self.lms[:, 1], self.lms[:, 2])


def _where(patient) -> str:
    """``file:line: `` of a patient row when the cohort recorded it, else ``""``."""
    source, line = getattr(patient, "source_file", None), getattr(patient, "source_line", None)
    if source is None or line is None or pd.isna(source) or pd.isna(line):
        return ""
    return f"{source}:{int(line)}: "


def infusion_counts(patients: pd.DataFrame, dosing: DosingSpec, target_study: str) -> np.ndarray:
    """Infusions each patient received: the cohort's ``n_infusions``, else the spec's count for
    the patient's study (``infusions_by_study``, or ``infusions_per_patient`` for the target trial).

    Raises
    ------
    ModelSetupError
        When a patient's count is known from none of them (it matters for ``per_course``).
    """
    counts = np.empty(len(patients))
    recorded = patients["n_infusions"] if "n_infusions" in patients else pd.Series([pd.NA] * len(patients))
    for position, (study, value) in enumerate(zip(patients["study_id"], recorded, strict=True)):
        if not pd.isna(value):
            counts[position] = float(value)
        elif str(study) in dosing.infusions_by_study:
            counts[position] = dosing.infusions_by_study[str(study)]
        elif str(study) == target_study:
            counts[position] = dosing.infusions_per_patient
        else:
            raise ModelSetupError(
                f"dose_metric = 'per_course' needs the number of infusions of study {study}'s patients: give an "
                f"n_infusions column in the cohort, or [dosing] infusions_by_study = {{ {study} = N }} in the spec"
            )
    return counts


def dose_covariate(
    patients: pd.DataFrame,
    dosing: DosingSpec,
    *,
    target_study: str,
    weight_reference: LMSWeightReference | None = None,
) -> DoseCovariate:
    """Build the dose covariate of ``patients`` on the scale of ``dosing`` (unit, metric, d*)."""
    unit = dosing.unit
    reference = weight_reference
    log_reference = math.log(dosing.reference_dose)
    if dosing.dose_metric == "per_course":
        # course dose / reference course dose = (dose / d*) * (infusions received / trial's infusions)
        course_factor = np.log(infusion_counts(patients, dosing, target_study) / dosing.infusions_per_patient)
    else:
        course_factor = np.zeros(len(patients))
    n = len(patients)
    base = np.empty(n)
    sign = np.zeros(n)
    lms_rows: list[tuple[float, float, float]] = []
    latent: list[int] = []
    for position, patient in enumerate(patients.itertuples(index=False)):
        value = patient.dose_cells if unit == DoseUnit.CELLS else patient.dose_cells_per_kg
        if np.isfinite(value):
            base[position] = math.log(value) - log_reference
            continue
        # Dose recorded in the other unit and no measured weight: latent weight.
        if unit == DoseUnit.CELLS_PER_KG:
            base[position], sign[position] = math.log(patient.dose_cells) - log_reference, -1.0
        else:
            base[position], sign[position] = math.log(patient.dose_cells_per_kg) - log_reference, 1.0
        reference = reference or LMSWeightReference.cdc2000()
        try:
            lam, median, cv = reference.lms(effective_age_years([patient.age_years]), [patient.sex])
        except DosingError:
            low, high = reference.age_range_years(patient.sex)
            raise ModelSetupError(
                f"{_where(patient)}patient {patient.patient_id} (study {patient.study_id}): "
                f"the dose is in {patient.dose_unit}, the model works in {unit}, and no weight_kg is recorded; "
                f"age {patient.age_years:g} is outside the weight reference '{reference.name}' ({low:g}-{high:g} "
                "years for sex " f"{patient.sex}), so the weight cannot be inferred: give weight_kg"
            ) from None
        lms_rows.append((float(lam[0]), float(median[0]), float(cv[0])))
        latent.append(position)
    return DoseCovariate(
        base=base + course_factor,
        sign=sign,
        lms=np.array(lms_rows, dtype=float).reshape(-1, 3),
        latent_index=np.array(latent, dtype=int),
        unit=unit,
        reference_dose=float(dosing.reference_dose),
    )


def study_index(study_ids: pd.Series, target_study: str) -> tuple[np.ndarray, tuple[str, ...]]:
    """Integer study codes; the target trial is always a study (last if it has no patients)."""
    order = list(dict.fromkeys(str(s) for s in study_ids))
    if target_study not in order:
        order.append(target_study)
    codes = np.array([order.index(str(s)) for s in study_ids], dtype=int)
    return codes, tuple(order)


def dose_group_label(study_id: str, dose: float, unit: str) -> str:
    """``'KN5601: 3e9 cells'``: the label of a dose group (a study's patients at one nominal dose)."""
    return f"{study_id}: {dose_label(dose, unit)}"


def dose_groups(patients: pd.DataFrame) -> tuple[np.ndarray, tuple[str, ...]]:
    """Dose groups = (study, nominal dose in the patient's own unit); codes and labels."""
    labels = []
    for patient in patients.itertuples(index=False):
        value = patient.dose_cells if patient.dose_unit == DoseUnit.CELLS.value else patient.dose_cells_per_kg
        labels.append(dose_group_label(patient.study_id, value, patient.dose_unit))
    order = list(dict.fromkeys(labels))
    return np.array([order.index(label) for label in labels], dtype=int), tuple(order)
