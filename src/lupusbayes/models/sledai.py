"""SLEDAI-2K over follow-up: a rounded, censored normal around a shrinking baseline.

For patient *i* (baseline score ``b_i``, dose ``x_i = log(dose_i / d*)``, study *s*, dose group
*k*) at month ``t > 0``::

    plateau:   logit r_i = eta_s(x_i) + sigma_dose * v_k + sigma_patient * u_i
    onset:     R_it = r_i * (1 - exp(-t / onset_months))
    latent:    X_it ~ Normal(b_i * (1 - R_it), sigma_residual)
    observed:  Y_it = clip(round(X_it), 0, 105)

* ``r_i`` is the fraction of the baseline score removed at the plateau; ``R_it`` builds up
  over months (all patients start from their baseline, ``R_i0 = 0``).
* The floor at 0 carries the mass ``P(X < 1/2)`` (DORIS-like scores are common), the ceiling
  at 105 the mass above, and rounding keeps the support on whole points.
* A score above baseline (a flare) is possible through the residual and a small ``r_i``.
* Dose-response:
  ``log_linear``: ``eta_s(x) = intercept_s + slope * x``;
  ``emax``: ``eta_s(x) = intercept_s + emax * (e^x / (e^x + ed50) - 1 / (1 + ed50))`` with
  ``ed50`` relative to the reference dose. In both, ``intercept_s`` is the logit plateau
  fraction at the reference dose, so the two variants share its prior. By default
  (``monotone``) ``slope, emax >= 0`` (half-normal), so efficacy is non-decreasing in dose *by
  construction*; ``monotone = False`` puts a normal prior on them and lets the data decide.
* Dose groups (study x nominal dose) deviate from the curve by ``sigma_dose * v_k``
  (partial pooling around the monotone curve); studies by ``intercept_s ~ N(intercept, sigma_study)``.

Every visit after baseline is a likelihood term, so long (visit-level) data inform the
patient effects; with one visit per patient (KN5601) they are mostly prior-driven.

Parametrisation
---------------
The model above has several equivalent parametrisations for NUTS (same priors, same
likelihood, same posterior; see :class:`EffectParametrisation`). Which one samples well depends
on how much the data say about each random effect compared with its prior:

* **Sparse data** (the median patient has fewer than ``CENTRED_MIN_MEDIAN_VISITS = 2`` follow-up
  visits, e.g. KN5601's one visit each): everything non-centred, as written above, with
  ``z_patient``, ``z_dose_group`` and ``z_study`` standard normal. A patient's effect is then
  mostly prior, and the non-centred form avoids the funnel between it and ``patient_sd``.
* **Rich data** (median >= 2 follow-up visits): the patient logits are sampled *centred in
  location*. NUTS moves ``patient_plateau_logit_scaled_i = m_i + (logit_i - m_i) / sqrt(s_p)``
  (``s_p = sigma_patient``) around the curve ``m_i = eta_s(x_i)``, not a standard normal
  ``z_patient``: several visits pin each logit down far better than its prior does, and the
  non-centred form then couples every ``z_patient`` to ``patient_sd`` and the curve. Dividing by
  the square root of ``s_p`` ("partially centred"; power 0 would be centred, 1 non-centred in
  scale) lets ``patient_sd`` move without moving every well-identified logit. Given the
  logits, the dose-group effects enter only through a normal-normal model, so they are
  **integrated out**: within a dose group the logits are jointly normal with covariance
  ``s_p^2 I + sigma_dose^2 J`` (J all ones). After sampling, each draw's group effects are drawn
  from their normal conditional (``dose_group_effect``, seeded like everything else). Study
  intercepts are sampled centred too (``intercept_study ~ N(intercept, sigma_study)``) when every
  study has at least ``CENTRED_STUDY_MIN_PATIENTS = 10`` patients with follow-up, non-centred
  otherwise (a study without patients has only its prior).

Why, from ``scripts/benchmark_scale.py`` (500 patients x 3 follow-up visits x 3 studies, 9 dose
groups; nutpie, 4 chains of 1000 draws): fully non-centred, the review's first run diverged 2,016
times and failed the gate (R-hat 1.015); with 300 tuning draws the study level mixed worst (R-hat
1.15, bulk ESS 20 for ``z_study``). Centred patients alone did not fix the study level; centred
studies did, leaving ``dose_group_sd`` the slowest (bulk ESS about 420 of 4,000 draws, at the
gate's 400). Centred dose groups made it worse (a funnel: with 9 groups ``dose_group_sd`` has
mass near 0; divergences at target_accept 0.9). Integrating the dose-group effects out gave 15-16
leapfrog steps per draw and no divergence, leaving ``patient_sd`` the slowest (bulk ESS 740-970;
R-hat 1.013 in 1 of 6 seeds). Its bulk ESS against the power of ``sigma_patient`` taken out of the
patient coordinate (2 seeds each): 0: 940, 0.15: 1,130, 0.3: 1,670, 0.5: 2,210, 0.75: 1,530,
1: 830. With 1/2, 12 of 12 fits passed the gate (max R-hat 1.005-1.009, smallest bulk ESS
750-1,250, no divergence). On smaller designs the same choice gave a smallest bulk ESS of
1,970-2,700 (10-50 patients per study, 3 visits) and 2,210 (20 per study, 2 visits), the fully
non-centred form 530-830; with one visit per patient the non-centred form was as good or
better (a centred study level with non-centred patients diverged 66 times at 60 patients).

The NumPy side (log-likelihood, predictions, dose-response) reads either parametrisation's draws:
``patient_plateau_logit`` (deterministic) or ``z_patient``, ``dose_group_effect`` or
``z_dose_group``, ``intercept_study`` or ``z_study``.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd
import xarray as xr
from scipy.special import logsumexp

from lupusbayes.cohort import Cohort
from lupusbayes.dosing import LMSWeightReference, dose_label
from lupusbayes.endpoints import LLDAS_MAXIMUM_SLEDAI, SLEDAI_MAXIMUM, SRI4_MINIMUM_REDUCTION
from lupusbayes.errors import ModelSetupError
from lupusbayes.models._math import NUMPY_OPS, Ops, sigmoid, rounded_normal_log_prob, tensor_ops
from lupusbayes.models.base import BayesianModel, DecisionQuantity, as_draws, draws_array
from lupusbayes.models.design import DoseCovariate, dose_covariate, dose_group_label, dose_groups, study_index
from lupusbayes.models.summaries import summarise_draws
from lupusbayes.spec import SledaiModelSettings, TrialSpec

__all__ = ["SledaiModel", "EffectParametrisation"]

_HERMITE_NODES = 12  # exact for polynomials of degree 23; ample for a logistic-normal integrand
_SAMPLES_PER_BLOCK = 250  # posterior draws per block of the per-patient log-likelihood (memory, threads)

#: (Partially) centred patient effects, dose-group effects integrated out, when the median
#: patient has at least this many follow-up visits; see "Parametrisation" in the module docstring.
CENTRED_MIN_MEDIAN_VISITS = 2
#: ... and centred study intercepts when, in addition, every study has this many patients with follow-up.
CENTRED_STUDY_MIN_PATIENTS = 10
#: How much of the patient SD is taken out of the sampled patient coordinate: 0 centred, 1 non-centred
#: in scale (both centred in location).
PATIENT_SCALE_POWER = {"centred": 0.0, "partially_centred": 0.5}


@dataclass(frozen=True)
class EffectParametrisation:
    """How NUTS samples each level of random effects (the model is the same under every choice).

    Parameters
    ----------
    patient
        ``"non_centred"``: ``z_patient ~ N(0, 1)`` is sampled, logit = curve + ``patient_sd * z_patient``.
        ``"centred"`` and ``"partially_centred"``: NUTS samples
        ``patient_plateau_logit_scaled = curve + (logit - curve) / patient_sd**power`` with
        ``power`` 0 (the logit itself) or 1/2 (:data:`PATIENT_SCALE_POWER`); the logit is the
        deterministic ``patient_plateau_logit``.
    dose_group
        ``"non_centred"``: ``z_dose_group ~ N(0, 1)`` is sampled. ``"marginalised"``: the
        dose-group effects are integrated out of the patients' logits (needs (partially) centred
        patient effects) and drawn after sampling from their conditional (``dose_group_effect``).
    study
        ``"non_centred"``: ``z_study ~ N(0, 1)`` is sampled, ``intercept_study`` deterministic.
        ``"centred"``: ``intercept_study ~ N(intercept, study_sd)`` is sampled.
    """

    patient: Literal["non_centred", "centred", "partially_centred"] = "non_centred"
    dose_group: Literal["non_centred", "marginalised"] = "non_centred"
    study: Literal["non_centred", "centred"] = "non_centred"

    def __post_init__(self) -> None:
        for level, allowed in (("patient", ("non_centred", "centred", "partially_centred")),
                               ("dose_group", ("non_centred", "marginalised")), ("study", ("non_centred", "centred"))):
            if getattr(self, level) not in allowed:
                raise ModelSetupError(f"{level} effects must be one of {allowed} (got {getattr(self, level)!r})")
        if self.dose_group == "marginalised" and self.patient == "non_centred":
            raise ModelSetupError("dose-group effects can be integrated out only under (partially) centred "
                                  "patient effects")

    @classmethod
    def for_data(cls, visits_per_patient: np.ndarray, patients_per_study: np.ndarray) -> EffectParametrisation:
        """The automatic choice (module docstring, "Parametrisation").

        Parameters
        ----------
        visits_per_patient
            Follow-up visits (month > 0) of each patient, 0 for a patient without any.
        patients_per_study
            Patients with at least one follow-up visit, per study (0 for a study without).
        """
        if np.median(visits_per_patient) < CENTRED_MIN_MEDIAN_VISITS:
            return cls()
        study = "centred" if np.min(patients_per_study) >= CENTRED_STUDY_MIN_PATIENTS else "non_centred"
        return cls(patient="partially_centred", dose_group="marginalised", study=study)


class SledaiModel(BayesianModel):
    """Hierarchical SLEDAI-2K dose-response over months (see the module docstring).

    Parameters
    ----------
    cohort
        Patients with a baseline and at least one follow-up SLEDAI-2K score between them.
    spec
        The target trial (dose scale, months to report) and default ``[model.sledai]`` settings.
    settings
        Overrides the spec's settings.
    weight_reference
        Weight-for-age reference for latent weights (CDC 2000 by default).
    parametrisation
        How NUTS samples the random effects; by default chosen from the data
        (:meth:`EffectParametrisation.for_data`, module docstring "Parametrisation"). The model,
        and so the posterior, is the same under every choice; only the sampling efficiency differs.

    Examples
    --------
    >>> import lupusbayes as lb
    >>> model = lb.SledaiModel(lb.load_kn5601(), lb.load_spec("kn5601"))
    >>> model.n_observations, model.name
    (11, 'sledai (log_linear)')
    """

    kind = "sledai"

    def __init__(
        self,
        cohort: Cohort,
        spec: TrialSpec,
        settings: SledaiModelSettings | None = None,
        *,
        weight_reference: LMSWeightReference | None = None,
        parametrisation: EffectParametrisation | None = None,
    ) -> None:
        if cohort is None:
            raise ModelSetupError("the SLEDAI-2K model needs a cohort with follow-up visits")
        super().__init__(cohort, spec, weight_reference=weight_reference)
        self._settings = settings or spec.models.sledai
        self._setup()
        if parametrisation is None:
            followed = np.unique(self.patient_position)  # patients with at least one follow-up visit
            parametrisation = EffectParametrisation.for_data(
                self.visits_per_patient, np.bincount(self.study_codes[followed], minlength=self.n_studies))
        self.parametrisation = parametrisation

    @property
    def settings(self) -> SledaiModelSettings:
        return self._settings

    @property
    def name(self) -> str:
        monotone = "" if self._settings.monotone else ", not monotone"
        return f"sledai ({self._settings.dose_response}{monotone})"

    def _setup(self) -> None:
        patients = self.cohort.patients.reset_index(drop=True)
        visits = self.cohort.visits
        follow_up = visits[visits["visit_month"] > 0].merge(
            patients[["study_id", "patient_id"]].reset_index(names="patient_position"), on=["study_id", "patient_id"]
        )
        if follow_up.empty:
            raise ModelSetupError(f"{self.cohort.source}: no SLEDAI-2K visit after baseline; nothing to model")
        self.patients = patients
        self.patient_position = follow_up["patient_position"].to_numpy(dtype=int)
        self.month = follow_up["visit_month"].to_numpy(dtype=float)
        self.score = follow_up["sledai"].to_numpy(dtype=int)
        self.baseline = patients["sledai_baseline"].to_numpy(dtype=float)
        self.study_codes, self.studies = study_index(patients["study_id"], self.spec.trial.id)
        self.target_study = self.studies.index(self.spec.trial.id)
        self.dose: DoseCovariate = dose_covariate(patients, self.spec.dosing, target_study=self.spec.trial.id,
                                                    weight_reference=self.weight_reference)
        self.group_codes, self.group_labels = dose_groups(patients)
        self.group_membership = np.eye(len(self.group_labels))[self.group_codes]  # (patient, dose group) 0/1
        self.patient_labels = tuple(f"{r.study_id}/{r.patient_id}" for r in patients.itertuples(index=False))
        self.labels = tuple(
            f"{self.patient_labels[p]}@{m:g}m" for p, m in zip(self.patient_position, self.month, strict=True)
        )

    @property
    def n_observations(self) -> int:
        return int(self.score.size)

    @property
    def visits_per_patient(self) -> np.ndarray:
        """Follow-up visits (month > 0) of each patient, in patient order."""
        return np.bincount(self.patient_position, minlength=len(self.patient_labels))

    @property
    def n_studies(self) -> int:
        return len(self.studies)

    def with_outcomes(self, outcomes: xr.Dataset | np.ndarray) -> SledaiModel:
        return self._replacing("score", "sledai", outcomes, SLEDAI_MAXIMUM, "SLEDAI-2K scores")

    def observed_data(self) -> xr.Dataset:
        return xr.Dataset({"sledai": ("observation", self.score)}, coords={"observation": list(self.labels)})

    def constant_data(self) -> xr.Dataset:
        return xr.Dataset(
            {
                "visit_month": ("observation", self.month),
                "visit_patient": ("observation", np.array(self.patient_labels)[self.patient_position]),
                "sledai_baseline": ("patient", self.baseline),
                "log_relative_dose_known": ("patient", self.dose.base),
                "weight_conversion_sign": ("patient", self.dose.sign),
                "dose_group": ("patient", np.array(self.group_labels)[self.group_codes]),
                "study": ("patient", np.array(self.studies)[self.study_codes]),
            },
            coords={"observation": list(self.labels), "patient": list(self.patient_labels)},
            attrs={"reference_dose": self.dose.reference_dose, "dose_unit": self.dose.unit.value},
        )

    # ---- the model, written once for both backends --------------------------------------

    def _curve(self, intercept, slope_or_emax, ed50, x, ops: Ops):
        """eta(x): the monotone dose-response on the logit scale of the plateau fraction."""
        xp = ops.xp
        if self._settings.dose_response == "log_linear":
            return intercept + slope_or_emax * x
        relative = xp.exp(x)
        return intercept + slope_or_emax * (relative / (relative + ed50) - 1.0 / (1.0 + ed50))

    def _latent_mean(self, baseline, plateau_logit, month, onset, ops: Ops):
        xp = ops.xp
        plateau = 1.0 / (1.0 + xp.exp(-plateau_logit))
        return baseline * (1.0 - plateau * (1.0 - xp.exp(-month / onset)))

    # ---- PyMC graph ----------------------------------------------------------------------

    def graph_data(self) -> dict[str, np.ndarray]:
        return {"sledai": self.score.astype("float64")}

    def _design_extras(self) -> tuple:
        return (self.dose.lms.tobytes(), tuple(self.dose.latent_index), tuple(self.patient_position),
                self.parametrisation)

    def build_pymc_model(self):
        import pymc as pm
        import pytensor.tensor as pt

        s = self._settings
        ops = tensor_ops()
        coords = {
            "patient": list(self.patient_labels),
            "dose_group": list(self.group_labels),
            "study": list(self.studies),
            "observation": list(self.labels),
        }
        if self.dose.n_latent:
            coords["latent_weight_patient"] = [self.patient_labels[i] for i in self.dose.latent_index]
        parametrisation = self.parametrisation
        with pm.Model(coords=coords) as model:
            score = pm.Data("sledai", self.score.astype("float64"), dims="observation")
            intercept = pm.Normal("intercept", s.intercept[0], s.intercept[1])
            if self.n_studies > 1:
                study_sd = pm.LogNormal("study_sd", s.study_sd.mu, s.study_sd.log_sd)
                if parametrisation.study == "centred":
                    intercept_study = pm.Normal("intercept_study", intercept, study_sd, dims="study")
                else:
                    z_study = pm.Normal("z_study", 0.0, 1.0, dims="study")
                    intercept_study = pm.Deterministic("intercept_study", intercept + study_sd * z_study, dims="study")
                intercept_patient = intercept_study[self.study_codes]
            else:
                intercept_patient = intercept
            name, scale = ("slope", s.slope_scale) if s.dose_response == "log_linear" else ("emax", s.emax_scale)
            effect = pm.HalfNormal(name, scale) if s.monotone else pm.Normal(name, 0.0, scale)
            ed50 = None
            if s.dose_response == "emax":
                ed50 = pm.LogNormal("ed50_relative", s.ed50_relative.mu, s.ed50_relative.log_sd)
            if self.dose.n_latent:
                weight_z = pm.Normal("weight_z", 0.0, 1.0, dims="latent_weight_patient")
                x = self.dose.log_relative_dose(weight_z, xp=pt)
            else:
                x = pt.as_tensor_variable(self.dose.base)
            plateau_logit = self._curve(intercept_patient, effect, ed50, x, ops)
            if s.dose_group_sd_scale > 0:
                dose_group_sd = pm.HalfNormal("dose_group_sd", s.dose_group_sd_scale)
                if parametrisation.dose_group == "non_centred":
                    z_group = pm.Normal("z_dose_group", 0.0, 1.0, dims="dose_group")
                    plateau_logit = plateau_logit + dose_group_sd * z_group[self.group_codes]
            patient_sd = pm.HalfNormal("patient_sd", s.patient_sd_scale)
            if parametrisation.patient == "non_centred":
                z_patient = pm.Normal("z_patient", 0.0, 1.0, dims="patient")
                plateau_logit = plateau_logit + patient_sd * z_patient
            else:
                integrated = s.dose_group_sd_scale > 0 and parametrisation.dose_group == "marginalised"
                integrated_sd = dose_group_sd if integrated else pt.constant(0.0)
                plateau_logit = self._centred_patient_logits(plateau_logit, patient_sd, integrated_sd)
            onset = pm.LogNormal("onset_months", s.onset_months.mu, s.onset_months.log_sd)
            residual_sd = pm.LogNormal("residual_sd", s.residual_sd.mu, s.residual_sd.log_sd)
            mean = self._latent_mean(
                self.baseline[self.patient_position], plateau_logit[self.patient_position], self.month, onset, ops
            )
            pm.Potential("log_likelihood", rounded_normal_log_prob(score, mean, residual_sd, SLEDAI_MAXIMUM, ops).sum())
        return model

    def _centred_patient_logits(self, curve, patient_sd, integrated_sd):
        """The patients' logits around ``curve``, sampled (partially) centred; returns the logits.

        NUTS samples ``patient_plateau_logit_scaled = curve + (logit - curve) / patient_sd**power``
        (its density: that of the logits times the Jacobian ``patient_sd**(power * n)``). The
        dose-group effects of SD ``integrated_sd`` are integrated out of the logits' density
        (0 when they are already in ``curve`` or absent).
        """
        import pymc as pm
        import pytensor.tensor as pt

        power = PATIENT_SCALE_POWER[self.parametrisation.patient]
        n_patients = len(self.patient_labels)

        def log_density(scaled, curve, patient_sd, group_sd):
            logits = curve + patient_sd**power * (scaled - curve)
            jacobian = n_patients * power * pt.log(patient_sd)
            return self._grouped_normal_log_density(logits, curve, patient_sd, group_sd) + jacobian

        def draws(curve, patient_sd, group_sd, rng=None, size=None):
            logits = self._grouped_normal_draws(curve, patient_sd, group_sd, rng=rng, size=size)
            return curve + (logits - curve) / np.asarray(patient_sd)[..., None] ** power

        scaled = pm.CustomDist(
            "patient_plateau_logit_scaled", curve, patient_sd, integrated_sd, signature="(p),(),()->(p)",
            logp=log_density, random=draws, support_point=lambda draw, size, curve, *_: curve + pt.zeros_like(draw),
            dims="patient",
        )
        return pm.Deterministic("patient_plateau_logit", curve + patient_sd**power * (scaled - curve), dims="patient")

    def _grouped_normal_log_density(self, logits, curve, patient_sd, group_sd):
        """log p(patient logits | curve, SDs) with the dose-group effects integrated out.

        Within dose group k (``n_k`` patients) the logits are jointly normal with covariance
        ``s^2 I + t^2 J`` (``s = patient_sd``, ``t = group_sd``, J all ones): with
        ``e = logits - curve``, ``-1/2 [n_k log 2 pi + (n_k - 1) log s^2 + log(s^2 + n_k t^2)
        + (sum e^2 - t^2 (sum e)^2 / (s^2 + n_k t^2)) / s^2]``, summed over groups.
        """
        import pytensor.tensor as pt

        counts = self.group_membership.sum(axis=0)
        residual = logits - curve
        group_sums = pt.dot(residual, self.group_membership)
        within, between = patient_sd**2, group_sd**2
        pooled = within + counts * between
        quadratic = (pt.sum(residual**2) - between * pt.sum(group_sums**2 / pooled)) / within
        log_determinant = (counts.sum() - counts.size) * pt.log(within) + pt.sum(pt.log(pooled))
        return -0.5 * (counts.sum() * np.log(2.0 * np.pi) + log_determinant + quadratic)

    def _grouped_normal_draws(self, curve, patient_sd, group_sd, rng=None, size=None):
        """Forward draws of the patient logits: a dose-group effect plus a patient effect."""
        # ``size`` is the batch shape (the signature's core dimension, patients, comes after it)
        batch = tuple(size) if size is not None else np.broadcast_shapes(
            np.shape(curve)[:-1], np.shape(patient_sd), np.shape(group_sd))
        group_effect = np.asarray(group_sd)[..., None] * rng.standard_normal(batch + (len(self.group_labels),))
        patient_effect = np.asarray(patient_sd)[..., None] * rng.standard_normal(batch + (len(self.patient_labels),))
        return curve + group_effect[..., self.group_codes] + patient_effect

    # ---- NumPy on draws --------------------------------------------------------------------

    def _effect(self, draws: xr.Dataset) -> tuple[np.ndarray, np.ndarray | None]:
        if self._settings.dose_response == "log_linear":
            return draws_array(draws, "slope"), None
        return draws_array(draws, "emax"), draws_array(draws, "ed50_relative")

    def _study_intercepts(self, draws: xr.Dataset) -> np.ndarray:
        if self.n_studies == 1:
            return draws_array(draws, "intercept")[..., None]
        if "intercept_study" in draws:
            return draws_array(draws, "intercept_study")
        return draws_array(draws, "intercept")[..., None] + (
            draws_array(draws, "study_sd")[..., None] * draws_array(draws, "z_study"))

    def _dose_group_effects(self, draws: xr.Dataset) -> np.ndarray:
        """Each dose group's deviation from the curve, from either parametrisation's draws."""
        if "dose_group_effect" in draws:
            return draws_array(draws, "dose_group_effect")
        return draws_array(draws, "dose_group_sd")[..., None] * draws_array(draws, "z_dose_group")

    def _dose_group_conditional(self, draws: xr.Dataset) -> tuple[np.ndarray, np.ndarray]:
        """Mean and SD of the dose-group effects given the patient logits, per draw and group.

        With the effects integrated out of the sampled model, this restores them: group k's
        effect given its ``n_k`` patients' residuals ``e`` (logit minus curve) is normal with mean
        ``t^2 sum(e) / (s^2 + n_k t^2)`` and variance ``s^2 t^2 / (s^2 + n_k t^2)``
        (``s = patient_sd``, ``t = dose_group_sd``).
        """
        curve = self._population_plateau_logit(draws, with_dose_groups=False)
        residual = draws_array(draws, "patient_plateau_logit") - curve
        within = draws_array(draws, "patient_sd")[..., None] ** 2
        between = draws_array(draws, "dose_group_sd")[..., None] ** 2
        pooled = within + self.group_membership.sum(axis=0) * between
        return between * (residual @ self.group_membership) / pooled, np.sqrt(within * between / pooled)

    def _patient_plateau_logit(self, draws: xr.Dataset) -> np.ndarray:
        if "patient_plateau_logit" in draws:
            return draws_array(draws, "patient_plateau_logit")
        return self._population_plateau_logit(draws) + (
            draws_array(draws, "patient_sd")[..., None] * draws_array(draws, "z_patient")
        )

    def _population_plateau_logit(self, draws: xr.Dataset, *, with_dose_groups: bool = True) -> np.ndarray:
        """Plateau logit of each patient without the patient's own effect."""
        effect, ed50 = self._effect(draws)
        eta = self._curve(
            self._study_intercepts(draws)[..., self.study_codes], effect[..., None],
            None if ed50 is None else ed50[..., None], self._log_relative_dose(draws), NUMPY_OPS,
        )
        if self._settings.dose_group_sd_scale > 0 and with_dose_groups:
            eta = eta + self._dose_group_effects(draws)[..., self.group_codes]
        return eta

    def _visit_means(self, draws: xr.Dataset) -> np.ndarray:
        plateau_logit = self._patient_plateau_logit(draws)
        onset = draws_array(draws, "onset_months")[..., None]
        return self._latent_mean(
            self.baseline[self.patient_position], plateau_logit[..., self.patient_position], self.month, onset, NUMPY_OPS
        )

    def complete_draws(self, draws: xr.Dataset, rng: np.random.Generator, *, prior: bool = False) -> xr.Dataset:
        """Add ``plateau_reduction`` per patient, latent weights, and the dose-group effects when
        they were integrated out of the sampled model (drawn from their conditional, prior or posterior)."""
        out = draws.copy()
        if self._settings.dose_group_sd_scale > 0 and not {"z_dose_group", "dose_group_effect"} & set(draws):
            # the dose-group effects were integrated out of the sampled model: draw them (seeded)
            mean, sd = self._dose_group_conditional(draws)
            out["dose_group_effect"] = as_draws(mean + sd * rng.standard_normal(mean.shape), ("dose_group",),
                                                {"dose_group": list(self.group_labels)}, draws)
        plateau = sigmoid(self._patient_plateau_logit(draws))
        out["plateau_reduction"] = as_draws(plateau, ("patient",), {"patient": list(self.patient_labels)}, draws)
        if self.dose.n_latent:
            out["weight_kg"] = as_draws(
                self.dose.weight_kg(draws_array(draws, "weight_z")), ("latent_weight_patient",),
                {"latent_weight_patient": [self.patient_labels[i] for i in self.dose.latent_index]}, draws,
            )
        return out

    def pointwise_log_likelihood(self, draws: xr.Dataset) -> xr.Dataset:
        """log p(all visits of patient i | draw), the patient's own effect integrated out.

        One term per *patient* (leave-one-patient-out): with one visit per patient the patient
        effect would otherwise be fitted to the very observation left out, and PSIS-LOO would
        fail (Pareto k > 0.7). Gauss-Hermite quadrature integrates the effect.
        """
        nodes, weights = np.polynomial.hermite_e.hermegauss(_HERMITE_NODES)
        log_weights = np.log(weights / weights.sum())
        population = self._population_plateau_logit(draws)  # (C, D, patient)
        samples = population.shape[:2]
        population = population.reshape(-1, population.shape[-1])  # (sample, patient)
        patient_sd, onset, residual_sd = (draws_array(draws, name).reshape(-1, 1, 1)
                                          for name in ("patient_sd", "onset_months", "residual_sd"))
        # A patient's visits are summed by one reduceat over the visits sorted by patient.
        order = np.argsort(self.patient_position, kind="stable")
        owner = self.patient_position[order]
        starts = np.flatnonzero(np.r_[True, owner[1:] != owner[:-1]])
        values = np.zeros(population.shape)  # a patient without follow-up visits contributes log 1

        def fill(block: slice) -> None:  # one block of samples: bounded (sample, visit, node) arrays
            plateau_logit = population[block][:, owner, None] + patient_sd[block] * nodes
            mean = self._latent_mean(self.baseline[owner, None], plateau_logit, self.month[order, None],
                                     onset[block], NUMPY_OPS)
            per_visit = rounded_normal_log_prob(self.score[order, None], mean, residual_sd[block], SLEDAI_MAXIMUM)
            per_patient = np.add.reduceat(per_visit, starts, axis=1)  # (sample, patient with visits, node)
            values[block, owner[starts]] = logsumexp(per_patient + log_weights, axis=-1)

        # NumPy and SciPy release the GIL in these array operations, so blocks run in parallel.
        blocks = [slice(first, first + _SAMPLES_PER_BLOCK) for first in range(0, len(values), _SAMPLES_PER_BLOCK)]
        with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
            list(pool.map(fill, blocks))
        values = values.reshape(samples + values.shape[-1:])
        return xr.Dataset({"sledai": as_draws(values, ("patient",), {"patient": list(self.patient_labels)}, draws)})

    def simulate_outcomes(self, draws: xr.Dataset, rng: np.random.Generator) -> xr.Dataset:
        mean = self._visit_means(draws)
        latent = mean + draws_array(draws, "residual_sd")[..., None] * rng.standard_normal(mean.shape)
        scores = np.clip(np.round(latent), 0, SLEDAI_MAXIMUM).astype(int)
        return xr.Dataset({"sledai": as_draws(scores, ("observation",), {"observation": list(self.labels)}, draws)})

    def _latest_visit_mask(self) -> np.ndarray:
        latest = np.zeros(self.n_observations, dtype=bool)
        frame = pd.DataFrame({"patient": self.patient_position, "month": self.month})
        latest[frame.groupby("patient")["month"].idxmax().to_numpy()] = True
        return latest

    def check_statistics(self, outcomes: xr.Dataset) -> dict[str, xr.DataArray]:
        """Mean latest score, patients at 0 / <= 4 / with a >= 4-point fall at their latest visit."""
        y = outcomes["sledai"]
        latest = xr.DataArray(self._latest_visit_mask(), dims="observation")
        baseline = xr.DataArray(self.baseline[self.patient_position], dims="observation")
        latest_scores = y.where(latest)
        stats = {
            "mean SLEDAI-2K at latest visit": latest_scores.mean("observation"),
            "SD of SLEDAI-2K at latest visit": latest_scores.std("observation"),
            "patients at SLEDAI-2K = 0 (latest)": ((y == 0) & latest).sum("observation"),
            "patients at SLEDAI-2K <= 4 (latest)": ((y <= LLDAS_MAXIMUM_SLEDAI) & latest).sum("observation"),
            "patients with >= 4-point fall (latest)": ((baseline - y >= SRI4_MINIMUM_REDUCTION) & latest).sum("observation"),
            "visits above baseline": (y > baseline).sum("observation"),
        }
        return stats

    def dose_response(self, draws: xr.Dataset, rng: np.random.Generator, *, doses=None, months=None,
                      baseline: int | None = None) -> xr.Dataset:
        """For a new patient of the target trial with a reference baseline, per dose and month:
        expected score and reduction, P(>= 4-point fall), P(score <= 4), P(score = 0).

        The new patient's effect is integrated out (Gauss-Hermite); a dose level without a
        dose group in the data gets a new dose-group effect drawn from its posterior
        predictive (seeded by ``rng``); the target trial's intercept is drawn likewise when
        it has no patients yet.
        """
        s = self._settings
        levels = self._dose_grid(doses)
        months_grid = np.asarray(self.spec.efficacy.months if months is None else months, dtype=float)
        reference_baseline = int(self.spec.efficacy.reference_sledai_baseline if baseline is None else baseline)
        x = np.log(levels / self.spec.dosing.reference_dose)
        shape = (draws.sizes["chain"], draws.sizes["draw"])
        intercepts = self._study_intercepts(draws)
        if self.n_studies > 1 and not np.any(self.study_codes == self.target_study):
            # Target trial without patients: its intercept is a draw of the study distribution.
            intercept = draws_array(draws, "intercept") + draws_array(draws, "study_sd") * rng.standard_normal(shape)
        else:
            intercept = intercepts[..., self.target_study]
        effect, ed50 = self._effect(draws)
        eta = self._curve(intercept[..., None], effect[..., None], None if ed50 is None else ed50[..., None], x, NUMPY_OPS)
        if s.dose_group_sd_scale > 0:
            group_sd = draws_array(draws, "dose_group_sd")[..., None]
            group_effects = self._dose_group_effects(draws)
            deviation = group_sd * rng.standard_normal(shape + (levels.size,))
            for position, level in enumerate(levels):
                label = dose_group_label(self.spec.trial.id, level, self.spec.dosing.unit.value)
                if label in self.group_labels:
                    deviation[..., position] = group_effects[..., self.group_labels.index(label)]
            eta = eta + deviation
        onset = draws_array(draws, "onset_months")
        build_up = 1.0 - np.exp(-months_grid / onset[..., None])  # (C, D, month)
        sri4_cut = reference_baseline - SRI4_MINIMUM_REDUCTION
        cut_points = (0, LLDAS_MAXIMUM_SLEDAI, max(sri4_cut, 0))
        cdf, expected = self._new_patient_distribution(
            eta, build_up, draws_array(draws, "patient_sd"), draws_array(draws, "residual_sd"),
            reference_baseline, cut_points,
        )
        p_sri4 = cdf[..., 2] if sri4_cut >= 0 else np.zeros_like(expected)
        dims = ("dose", "month")
        coords = {"dose": levels, "month": months_grid}
        out = xr.Dataset(coords=coords)
        out["expected_sledai"] = as_draws(expected, dims, coords, draws)
        out["expected_reduction"] = as_draws(reference_baseline - expected, dims, coords, draws)
        out["p_sri4_sledai_component"] = as_draws(p_sri4, dims, coords, draws)
        out["p_lldas_sledai_proxy"] = as_draws(cdf[..., 1], dims, coords, draws)
        out["p_doris_sledai_proxy"] = as_draws(cdf[..., 0], dims, coords, draws)
        out.attrs.update(
            {"dose_unit": self.spec.dosing.unit.value, "target_study": self.spec.trial.id,
             "reference_sledai_baseline": reference_baseline}
        )
        return out

    @staticmethod
    def _new_patient_distribution(eta, build_up, patient_sd, residual_sd, reference_baseline: int, cut_points):
        """For a new patient: P(Y <= k) at ``cut_points`` and E[Y], per (chain, draw, dose, month).

        The patient effect is integrated by Gauss-Hermite quadrature. ``E[Y]`` for
        ``Y = max(0, round(X))`` is ``sum_k P(X >= k - 1/2)``, a midpoint rule for
        ``E[max(X, 0)] = m Phi(m/s) + s phi(m/s)``; the difference is at most
        ``phi(0) / (24 s)``, under 0.02 points for ``s >= 1`` (the 105 ceiling is never near).
        """
        from scipy.special import ndtr

        nodes, weights = np.polynomial.hermite_e.hermegauss(_HERMITE_NODES)
        weights = weights / weights.sum()
        edges = np.asarray(cut_points, dtype=float) + 0.5
        plateau = sigmoid(eta[..., None] + patient_sd[..., None, None] * nodes)  # (C, D, dose, node)
        mean = reference_baseline * (1.0 - plateau[..., None, :] * build_up[..., None, :, None])  # (C, D, dose, month, node)
        sd = residual_sd[..., None, None, None]
        standardised = mean / sd
        expected = mean * ndtr(standardised) + sd * np.exp(-0.5 * standardised**2) / np.sqrt(2.0 * np.pi)
        cdf = ndtr((edges - mean[..., None]) / sd[..., None])  # (..., node, cut)
        return np.einsum("...nk,n->...k", cdf, weights), expected @ weights

    def decision_quantities(self, dose_response: xr.Dataset) -> list[DecisionQuantity]:
        return [
            DecisionQuantity("expected SLEDAI-2K reduction", "points, new patient at the reference baseline",
                             dose_response["expected_reduction"]),
            DecisionQuantity("P(SRI-4 SLEDAI component)", "P(fall >= 4 points)", dose_response["p_sri4_sledai_component"]),
            DecisionQuantity("P(LLDAS proxy)", "P(SLEDAI-2K <= 4)", dose_response["p_lldas_sledai_proxy"]),
            DecisionQuantity("P(DORIS proxy)", "P(SLEDAI-2K = 0)", dose_response["p_doris_sledai_proxy"]),
        ]

    def observed_follow_up_months(self, doses) -> np.ndarray:
        """Longest follow-up (months) seen in the target trial at each dose; NaN without patients there."""
        unit = self.spec.dosing.unit.value
        longest = pd.Series(self.month).groupby(self.group_codes[self.patient_position]).max()
        out = np.full(len(doses), np.nan)
        for position, level in enumerate(doses):
            label = dose_group_label(self.spec.trial.id, level, unit)
            if label in self.group_labels and self.group_labels.index(label) in longest.index:
                out[position] = longest[self.group_labels.index(label)]
        return out

    @property
    def one_visit_per_patient(self) -> bool:
        """True when no patient has more than one follow-up visit (KN5601 as published)."""
        return bool(self.visits_per_patient.max() <= 1)

    def notes(self) -> list[str]:
        """Caveats of every SLEDAI-2K summary: identification, extrapolation, what a reduction is."""
        notes = [
            "single-arm data: a fall from baseline includes regression to the mean (patients entered with a high "
            "score) and the effect of background therapy; it is not a treatment effect against a control",
        ]
        if self.one_visit_per_patient:
            notes.append(
                "each patient has one follow-up visit, so the patient SD and the residual SD are not separately "
                "identified: how the variation splits between them comes from their priors (see the prior vs "
                "posterior table)"
            )
        follow_up = self.observed_follow_up_months(self.spec.dosing.levels)
        months = np.asarray(self.spec.efficacy.months)
        beyond = [f"{dose_label(level, self.spec.dosing.unit.value)} (observed to month {seen:g})"
                  for level, seen in zip(self.spec.dosing.levels, follow_up, strict=True)
                  if np.isfinite(seen) and months.max() > seen]
        unseen = [dose_label(level, self.spec.dosing.unit.value)
                  for level, seen in zip(self.spec.dosing.levels, follow_up, strict=True) if not np.isfinite(seen)]
        if beyond:
            notes.append("rows marked 'extrapolated' are months beyond a dose group's observed follow-up: "
                         + ", ".join(beyond))
        if unseen:
            notes.append(f"no {self.spec.trial.id} patient has had " + ", ".join(unseen)
                         + ": those rows are predictions from the model and the other doses or studies")
        return notes

    def summary_table(self, dose_response: xr.Dataset, *, interval: float = 0.9) -> pd.DataFrame:
        """Per dose and month: reduction and response probabilities, and whether the month is
        beyond the follow-up observed at that dose (``extrapolated``)."""
        unit = self.spec.dosing.unit.value
        names = {
            "expected_reduction": "reduction",
            "p_sri4_sledai_component": "P(SRI-4 SLEDAI)",
            "p_lldas_sledai_proxy": "P(SLEDAI<=4)",
            "p_doris_sledai_proxy": "P(SLEDAI=0)",
        }
        pieces = [summarise_draws(dose_response[var], interval=interval).add_prefix(f"{label} ") for var, label in names.items()]
        table = pd.concat(pieces, axis=1).reset_index()
        levels = np.unique(table["dose"].to_numpy())
        seen = dict(zip(levels, self.observed_follow_up_months(levels), strict=True))
        table["observed to month"] = table["dose"].map(seen)
        table["extrapolated"] = ~(table["month"] <= table["observed to month"])
        table.insert(0, "dose_label", [dose_label(d, unit) for d in table["dose"]])
        return table  # dose_label as text, dose the number in the spec's unit

    def parameters_of_interest(self) -> list[str]:
        return ["plateau_reduction"]
