"""Dose-toxicity models: ordinal CRS (cumulative logit) and the binary BLRM, with EXNEX borrowing.

Model (for study *s*, patient *i*, ``x_i = log(dose_i / d*)`` on the spec's dose scale)::

    logit P(Y_i >= g) = log a_s - c_g + b_s * x_i,     g = 1..K,   b_s = exp(log b_s) > 0
    c_1 = 0 < c_2 < ... < c_K                         (c_{g+1} - c_g ~ LogNormal, shared)

``K = 1`` is the standard BLRM (Neuenschwander et al. 2008): ``logit p = log a + b log(d/d*)``.
The dose effect is positive by construction, so every P(Y >= g) is non-decreasing in dose.

Study parameters ``theta_s = (log a_s, log b_s)``:

* ``none``: one ``theta ~ BVN(prior)`` for all patients (complete pooling);
* ``exchangeable``: ``theta_s ~ BVN(mu, diag(tau)^2)``, ``mu ~ BVN(prior)``,
  ``tau_k ~ LogNormal`` (the heterogeneity prior sets how much studies borrow);
* ``exnex`` (Neuenschwander et al. 2016): with prior probability ``p_s`` study *s* is
  exchangeable as above, otherwise ``theta_s ~ BVN(nex_prior)`` on its own.

A mixture prior (``sum_k w_k BVN_k``, e.g. a robust MAP prior) takes the place of ``BVN(prior)`` for
``theta`` (``none``) or ``mu``: a ``pm.Mixture`` of ``pm.MvNormal`` components, whose density sums
over the components (no discrete indicator, so NUTS samples it); the bivariate normal prior keeps
its non-centred form.

The EXNEX mixture is sampled without a discrete indicator: both components are drawn
non-centred and the study's likelihood is mixed,
``p(y_s) = p_s L_s(theta_s^EX) + (1 - p_s) L_s(theta_s^NEX)``. Marginalising the two
independent standard-normal draws gives exactly the EXNEX prior. After sampling, each draw's
indicator is drawn from its conditional ``P(EX | draw, y_s)`` (seeded), which yields draws of
``theta_s`` from the EXNEX posterior.

Flat-dose patients enter a per-kg model (and vice versa) through a latent weight with the
LMS weight-for-age prior (see :mod:`lupusbayes.models.design`).
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import xarray as xr

from lupusbayes.cohort import Cohort
from lupusbayes.dosing import DoseUnit, LMSWeightReference, dose_label
from lupusbayes.errors import LupusBayesWarning, ModelSetupError
from lupusbayes.models._math import NUMPY_OPS, Ops, sigmoid, ordinal_logit_log_prob, tensor_ops
from lupusbayes.models.base import BayesianModel, DecisionQuantity, as_draws, draws_array
from lupusbayes.models.design import DoseCovariate, dose_covariate, dose_groups, study_index
from lupusbayes.models.summaries import probability_with_mcse, summarise_draws
from lupusbayes.spec import BivariateNormalMixture, ToxicityModelSettings, TrialSpec

__all__ = ["ToxicityModel", "CRSModel", "BLRM"]

_PARAMETERS = ("log_a", "log_b")


class ToxicityModel(BayesianModel):
    """Hierarchical dose-toxicity model (ordinal CRS or binary BLRM); see the module docstring.

    Parameters
    ----------
    cohort
        Patients (any number of studies); ``None`` for a model fed only by the spec's
        aggregate ``[[observations]]`` (binary outcomes).
    spec
        The target trial: dose scale (unit, reference dose), DLT definition, dose levels to
        report, and default settings (``spec.models.crs`` or ``spec.models.blrm``).
    settings
        Overrides the spec's settings.
    weight_reference
        Weight-for-age reference for latent weights (CDC 2000 by default).

    Examples
    --------
    >>> import lupusbayes as lb
    >>> model = lb.CRSModel(lb.load_kn5601(), lb.load_spec("kn5601"))
    >>> model.name, model.n_observations
    ('crs (crs_grade, K=4, none)', 11)
    """

    def __init__(
        self,
        cohort: Cohort | None,
        spec: TrialSpec,
        settings: ToxicityModelSettings | None = None,
        *,
        weight_reference: LMSWeightReference | None = None,
    ) -> None:
        super().__init__(cohort, spec, weight_reference=weight_reference)
        self._settings = settings or self.default_settings(spec)
        self._setup()

    @staticmethod
    def default_settings(spec: TrialSpec) -> ToxicityModelSettings:
        """The settings used when none are given: the spec's ``[model.crs]``."""
        return spec.models.crs

    # ---- set-up ----------------------------------------------------------------------

    @property
    def settings(self) -> ToxicityModelSettings:
        return self._settings

    @property
    def kind(self) -> str:  # type: ignore[override]
        return "blrm" if self._settings.outcome == "dlt" else "crs"

    @property
    def name(self) -> str:
        s = self._settings
        grade = f", K={s.max_grade}" if s.outcome == "crs_grade" else ""
        dose = "" if s.dose_effect else ", no dose effect"
        return f"{self.kind} ({s.outcome}{grade}, {self.hierarchy}{dose})"

    @property
    def n_categories(self) -> int:
        return self._settings.n_thresholds + 1

    def _setup(self) -> None:
        s, spec = self._settings, self.spec
        frames = []
        if self.cohort is not None:
            patients = self.cohort.patients.reset_index(drop=True)
            frames.append(patients)
            self.outcome_source = self._patient_outcomes(patients)
        else:
            patients = None
            self.outcome_source = np.zeros(0, dtype=int)
        pseudo = self._observation_rows()
        if len(pseudo):
            if s.outcome == "crs_grade":
                raise ModelSetupError(
                    f"{spec.source}: [[observations]] hold DLT counts; use outcome = 'dlt' (the BLRM) for them"
                )
            frames.append(pseudo)
        if not frames or sum(len(f) for f in frames) == 0:
            raise ModelSetupError("the toxicity model needs patients (a cohort) or [[observations]] in the spec")
        table = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
        outcomes = np.concatenate([self.outcome_source, pseudo["_outcome"].to_numpy(dtype=int)]) if len(pseudo) else self.outcome_source
        self.table = table
        self.outcome = np.asarray(outcomes, dtype=int)
        self.study_codes, self.studies = study_index(table["study_id"], spec.trial.id)
        self.target_study = self.studies.index(spec.trial.id)
        self.dose: DoseCovariate = dose_covariate(table, spec.dosing, target_study=spec.trial.id,
                                                    weight_reference=self.weight_reference)
        self.group_codes, self.group_labels = dose_groups(table)
        self.labels = tuple(f"{row.study_id}/{row.patient_id}" for row in table.itertuples(index=False))
        if s.hierarchy == "auto":
            self.hierarchy = "exnex" if len(self.studies) > 1 else "none"
        else:
            self.hierarchy = s.hierarchy
        if self.hierarchy != "none" and len(self.studies) < 2:
            raise ModelSetupError(
                f"hierarchy '{self.hierarchy}' needs at least two studies; the data hold only {self.studies[0]}"
            )
        if self.hierarchy == "none" and len(self.studies) > 1:
            warnings.warn(self.pooling_note, LupusBayesWarning, stacklevel=3)
        if self.hierarchy == "exnex" and isinstance(s.nex, BivariateNormalMixture):
            raise ModelSetupError(
                f"[model.{self.kind}.prior] is a mixture and EXNEX's non-exchangeable component would take it (no "
                f"[model.{self.kind}.nex_prior]): give a bivariate normal [model.{self.kind}.nex_prior]"
            )
        self.p_exchangeable = np.array([s.exchangeability(study) for study in self.studies])
        self.study_onehot = np.eye(len(self.studies))[self.study_codes]

    @property
    def pooling_note(self) -> str:
        """Said whenever two or more studies are pooled completely (``hierarchy = "none"``)."""
        if self.hierarchy != "none" or len(self.studies) < 2:
            return ""
        return (f"complete pooling of {', '.join(self.studies)} (hierarchy = 'none'): their patients are "
                "treated as one trial, with no discounting between studies; use 'exnex' to borrow with discounting")

    @property
    def dlt_basis(self) -> str:
        """Which components of the DLT definition the modelled P(DLT) rests on, in words.

        The spec's definition may list CRS, ICANS and other adverse events, but a model can
        only use what the data record. This text goes with every P(DLT) the package shows.
        """
        dlt, outcome = self.spec.dlt, self._settings.outcome
        threshold = dlt.crs_grade_at_least
        if outcome == "crs_any":
            return "any CRS (CRS >= 1), not a DLT"
        if outcome == "crs_grade":
            if threshold is None:
                return ""
            return (f"CRS >= {threshold} only (the CRS model): ICANS and other adverse events are not part of "
                    "this model's P(DLT)")
        n_aggregate = int(sum(o.n_patients for o in self.spec.observations))
        n_recorded = n_derived = 0
        icans_known = True
        if self.cohort is not None:
            patients = self.cohort.patients
            recorded = patients["dlt"].notna()
            n_recorded, n_derived = int(recorded.sum()), int((~recorded).sum())
            icans_known = "icans_grade" in patients and bool(patients.loc[~recorded, "icans_grade"].notna().all())
        return dlt.basis(n_recorded=n_recorded, n_derived=n_derived, icans_known=icans_known, n_aggregate=n_aggregate)

    def notes(self) -> list[str]:
        """Caveats that go with this model's numbers (DLT basis, complete pooling)."""
        return [note for note in (self.dlt_basis, self.pooling_note) if note]

    def _patient_outcomes(self, patients: pd.DataFrame) -> np.ndarray:
        s, dlt = self._settings, self.spec.dlt
        grades = patients["crs_grade"].to_numpy(dtype=int)
        if s.outcome == "crs_grade":
            return np.minimum(grades, s.max_grade)
        if s.outcome == "crs_any":
            return (grades >= 1).astype(int)
        recorded = patients["dlt"]
        if dlt.crs_grade_at_least is None and dlt.icans_grade_at_least is None and recorded.isna().any():
            raise ModelSetupError("DLT status is missing and the spec's DLT definition has no CRS/ICANS threshold")
        # a missing ICANS grade adds nothing; dlt_basis says the component is not recorded
        icans = patients["icans_grade"].to_numpy(dtype=float, na_value=np.nan) if "icans_grade" in patients else None
        return dlt.dlt_status(grades, icans, recorded.to_numpy(dtype=float, na_value=np.nan)).astype(int)

    def _observation_rows(self) -> pd.DataFrame:
        rows = []
        unit = self.spec.dosing.unit
        for index, observation in enumerate(self.spec.observations):
            for patient in range(observation.n_patients):
                rows.append(
                    {
                        "study_id": observation.study_id,
                        "patient_id": f"obs{index + 1}-{patient + 1}",
                        "dose_unit": unit.value,
                        "dose_cells": observation.dose if unit == DoseUnit.CELLS else np.nan,
                        "dose_cells_per_kg": observation.dose if unit == DoseUnit.CELLS_PER_KG else np.nan,
                        "age_years": np.nan,
                        "sex": "F",
                        "_outcome": int(patient < observation.n_dlt),
                    }
                )
        return pd.DataFrame(rows)

    @property
    def n_observations(self) -> int:
        return int(self.outcome.size)

    def with_outcomes(self, outcomes: xr.Dataset | np.ndarray) -> ToxicityModel:
        return self._replacing("outcome", "toxicity_outcome", outcomes, self.n_categories - 1, "outcomes")

    def observed_data(self) -> xr.Dataset:
        return xr.Dataset(
            {"toxicity_outcome": ("observation", self.outcome)},
            coords={"observation": list(self.labels)},
            attrs={"outcome": self._settings.outcome},
        )

    def constant_data(self) -> xr.Dataset:
        return xr.Dataset(
            {
                "log_relative_dose_known": ("observation", self.dose.base),
                "weight_conversion_sign": ("observation", self.dose.sign),
                "study": ("observation", np.array(self.studies)[self.study_codes]),
                "dose_group": ("observation", np.array(self.group_labels)[self.group_codes]),
            },
            coords={"observation": list(self.labels)},
            attrs={"reference_dose": self.dose.reference_dose, "dose_unit": self.dose.unit.value},
        )

    # ---- the linear predictor, written once for both backends -------------------------

    def _cutpoints(self, gaps, ops: Ops):
        xp = ops.xp
        if self._settings.n_thresholds == 1:
            return xp.zeros((1,)) if xp is not np else np.zeros(np.shape(gaps)[:-1] + (1,))
        cumulative = xp.cumsum(gaps, axis=-1)
        zero = cumulative[..., :1] * 0.0
        return xp.concatenate([zero, cumulative], axis=-1)

    def _eta(self, log_a, log_b, x, ops: Ops):
        """Linear predictor per observation: study parameters indexed by the study code."""
        slope = ops.xp.exp(log_b) if self._settings.dose_effect else 0.0 * log_b
        return log_a[..., self.study_codes] + slope[..., self.study_codes] * x

    # ---- PyMC graph ------------------------------------------------------------------

    def graph_data(self) -> dict[str, np.ndarray]:
        return {"toxicity_outcome": self.outcome.astype("int64")}

    def _design_extras(self) -> tuple:
        return (self.hierarchy, tuple(self.p_exchangeable), self.dose.lms.tobytes(), tuple(self.dose.latent_index))

    def build_pymc_model(self):
        import pymc as pm
        import pytensor.tensor as pt

        s = self._settings
        ops = tensor_ops()
        n_studies = len(self.studies)
        coords = {"parameter": list(_PARAMETERS), "study": list(self.studies), "observation": list(self.labels)}
        if s.n_thresholds > 1:
            coords["grade_step"] = [f"{g}->{g + 1}" for g in range(1, s.n_thresholds)]
        if self.dose.n_latent:
            coords["latent_weight_patient"] = [self.labels[i] for i in self.dose.latent_index]
        prior, nex = s.prior, s.nex
        with pm.Model(coords=coords) as model:
            outcome = pm.Data("toxicity_outcome", self.outcome.astype("int64"), dims="observation")
            if s.n_thresholds > 1:
                gaps = pm.LogNormal("grade_gap", mu=s.grade_gap.mu, sigma=s.grade_gap.log_sd, dims="grade_step")
            else:
                gaps = None
            if self.dose.n_latent:
                weight_z = pm.Normal("weight_z", 0.0, 1.0, dims="latent_weight_patient")
                x = self.dose.log_relative_dose(weight_z, xp=pt)
            else:
                x = pt.as_tensor_variable(self.dose.base)
            cut = self._cutpoints(gaps, ops)

            def log_lik(theta):  # theta: (study, parameter)
                eta = self._eta(theta[:, 0], theta[:, 1], x, ops)
                return ordinal_logit_log_prob(outcome, eta, cut, ops)

            if isinstance(prior, BivariateNormalMixture):  # component indicator marginalised: no discrete variable
                mu = pm.Mixture("mu", w=np.asarray(prior.weights), dims="parameter",
                                comp_dists=[pm.MvNormal.dist(mu=c.mean, cov=c.covariance) for c in prior.components])
            else:
                z_population = pm.Normal("z_population", 0.0, 1.0, dims="parameter")
                mu = pm.Deterministic("mu", pt.as_tensor_variable(prior.mean) + pt.dot(prior.cholesky, z_population),
                                      dims="parameter")
            if self.hierarchy == "none":
                theta = pt.tile(mu[None, :], (n_studies, 1))
                pm.Potential("log_likelihood", log_lik(theta).sum())
            else:
                het = s.heterogeneity
                tau = pm.LogNormal(
                    "tau", mu=np.log([het.median_tau_log_a, het.median_tau_log_b]), sigma=het.log_sd, dims="parameter"
                )
                z_ex = pm.Normal("z_study_ex", 0.0, 1.0, dims=("study", "parameter"))
                theta_ex = pm.Deterministic("theta_ex", mu[None, :] + tau[None, :] * z_ex, dims=("study", "parameter"))
                if self.hierarchy == "exchangeable":
                    pm.Potential("log_likelihood", log_lik(theta_ex).sum())
                else:
                    z_nex = pm.Normal("z_study_nex", 0.0, 1.0, dims=("study", "parameter"))
                    theta_nex = pm.Deterministic(
                        "theta_nex", pt.as_tensor_variable(nex.mean)[None, :] + pt.dot(z_nex, nex.cholesky.T),
                        dims=("study", "parameter"),
                    )
                    per_study_ex = pt.dot(log_lik(theta_ex), self.study_onehot)
                    per_study_nex = pt.dot(log_lik(theta_nex), self.study_onehot)
                    pm.Potential("log_likelihood", self._mixture_log_lik(per_study_ex, per_study_nex, pt).sum())
        return model

    def _mixture_log_lik(self, per_study_ex, per_study_nex, xp):
        """log(p L_EX + (1 - p) L_NEX) per study; exact 0/1 weights drop a component."""
        p = self.p_exchangeable
        log_p, log_q = self._log_weights()
        both = xp.logaddexp(log_p + per_study_ex, log_q + per_study_nex)
        return xp.where(p >= 1.0, per_study_ex, xp.where(p <= 0.0, per_study_nex, both))

    def _log_weights(self) -> tuple[np.ndarray, np.ndarray]:
        """log p and log(1 - p), kept finite so that unselected branches have finite gradients."""
        p = np.clip(self.p_exchangeable, 1e-300, 1.0 - 1e-16)
        return np.log(p), np.log1p(-p)

    # ---- NumPy on draws ----------------------------------------------------------------

    def _gaps(self, draws: xr.Dataset) -> np.ndarray:
        if self._settings.n_thresholds > 1:
            return draws_array(draws, "grade_gap")
        return np.zeros((draws.sizes["chain"], draws.sizes["draw"], 0))

    def _log_lik_matrix(self, theta: np.ndarray, draws: xr.Dataset, outcome: np.ndarray | None = None) -> np.ndarray:
        x, cut = self._log_relative_dose(draws), self._cutpoints(self._gaps(draws), NUMPY_OPS)
        eta = self._eta(theta[..., 0], theta[..., 1], x, NUMPY_OPS)
        return ordinal_logit_log_prob(self.outcome if outcome is None else outcome, eta, cut, NUMPY_OPS)

    def complete_draws(self, draws: xr.Dataset, rng: np.random.Generator, *, prior: bool = False) -> xr.Dataset:
        """Add ``log_a``/``log_b`` per study (EXNEX: indicator drawn per draw) and latent weights.

        The EXNEX indicator of study *s* is exchangeable with probability ``p_s`` under the prior,
        and with ``P(EX | draw, y_s)`` under the posterior.
        """
        out = draws.copy()
        mu = draws_array(draws, "mu")
        if self.hierarchy == "none":
            theta = np.repeat(mu[..., None, :], len(self.studies), axis=-2)
        elif self.hierarchy == "exchangeable":
            theta = draws_array(draws, "theta_ex")
        else:
            theta_ex, theta_nex = draws_array(draws, "theta_ex"), draws_array(draws, "theta_nex")
            if prior:
                per_ex = per_nex = np.zeros(theta_ex.shape[:-1])
            else:
                per_ex = self._log_lik_matrix(theta_ex, draws) @ self.study_onehot
                per_nex = self._log_lik_matrix(theta_nex, draws) @ self.study_onehot
            log_p, log_q = self._log_weights()
            probability_ex = sigmoid(log_p - log_q + per_ex - per_nex)
            probability_ex = np.where(self.p_exchangeable >= 1.0, 1.0, np.where(self.p_exchangeable <= 0.0, 0.0, probability_ex))
            exchangeable = rng.uniform(size=probability_ex.shape) < probability_ex
            theta = np.where(exchangeable[..., None], theta_ex, theta_nex)
            out["exchangeable"] = as_draws(exchangeable.astype(float), ("study",), {"study": list(self.studies)}, draws)
            out["p_exchangeable_given_draw"] = as_draws(probability_ex, ("study",), {"study": list(self.studies)}, draws)
        coords = {"study": list(self.studies)}
        out["log_a"] = as_draws(theta[..., 0], ("study",), coords, draws)
        out["log_b"] = as_draws(theta[..., 1], ("study",), coords, draws)
        if self.dose.n_latent:
            weights = self.dose.weight_kg(draws_array(draws, "weight_z"))
            out["weight_kg"] = as_draws(
                weights, ("latent_weight_patient",),
                {"latent_weight_patient": [self.labels[i] for i in self.dose.latent_index]}, draws,
            )
        return out

    def _theta(self, draws: xr.Dataset) -> np.ndarray:
        return np.stack([draws_array(draws, "log_a"), draws_array(draws, "log_b")], axis=-1)

    def pointwise_log_likelihood(self, draws: xr.Dataset) -> xr.Dataset:
        values = self._log_lik_matrix(self._theta(draws), draws)
        return xr.Dataset({"toxicity_outcome": as_draws(values, ("observation",), {"observation": list(self.labels)}, draws)})

    def _cumulative(self, draws: xr.Dataset) -> np.ndarray:
        """P(Y >= g), g = 1..K, per draw and observation: (chain, draw, observation, K)."""
        theta = self._theta(draws)
        eta = self._eta(theta[..., 0], theta[..., 1], self._log_relative_dose(draws), NUMPY_OPS)
        cut = self._cutpoints(self._gaps(draws), NUMPY_OPS)
        return sigmoid(eta[..., None] - cut[..., None, :])

    def simulate_outcomes(self, draws: xr.Dataset, rng: np.random.Generator) -> xr.Dataset:
        cumulative = self._cumulative(draws)
        uniform = rng.uniform(size=cumulative.shape[:-1])
        outcome = (uniform[..., None] < cumulative).sum(axis=-1)
        return xr.Dataset(
            {"toxicity_outcome": as_draws(outcome, ("observation",), {"observation": list(self.labels)}, draws)}
        )

    def check_statistics(self, outcomes: xr.Dataset) -> dict[str, xr.DataArray]:
        """Patients with CRS >= 1 (>= 2) per dose group, overall count, highest grade."""
        y = outcomes["toxicity_outcome"]
        groups = xr.DataArray(np.array(self.group_labels)[self.group_codes], dims="observation")
        event = "CRS >= 1" if self._settings.outcome != "dlt" else "DLT"
        stats = {f"patients with {event}": (y >= 1).sum("observation")}
        if self.n_categories > 2:
            stats["patients with CRS >= 2"] = (y >= 2).sum("observation")
            stats["highest CRS grade"] = y.max("observation")
        for label in self.group_labels:
            in_group = groups == label
            if int(in_group.sum()) > 0 and len(self.group_labels) > 1:
                stats[f"patients with {event} at {label}"] = ((y >= 1) & in_group).sum("observation")
        return stats

    def dose_response(self, draws: xr.Dataset, rng: np.random.Generator, *, doses=None) -> xr.Dataset:
        """P(CRS >= g) per dose for the target trial, and P(DLT) (its CRS component for ordinal CRS)."""
        levels = self._dose_grid(doses)
        x = np.log(levels / self.spec.dosing.reference_dose)
        theta = self._theta(draws)[..., self.target_study, :]
        slope = np.exp(theta[..., 1]) if self._settings.dose_effect else 0.0 * theta[..., 1]
        eta = theta[..., 0][..., None] + slope[..., None] * x
        cut = self._cutpoints(self._gaps(draws), NUMPY_OPS)
        cumulative = sigmoid(eta[..., None] - cut[..., None, :])
        dose_coords = {"dose": levels}
        out = xr.Dataset(coords={"dose": levels})
        s, dlt = self._settings, self.spec.dlt
        if s.outcome == "dlt":
            out["p_dlt"] = as_draws(cumulative[..., 0], ("dose",), dose_coords, draws)
            out["p_dlt"].attrs["definition"] = self.dlt_basis
        else:
            grades = list(range(1, s.n_thresholds + 1))
            out["p_crs_at_least"] = as_draws(cumulative, ("dose", "grade"), {**dose_coords, "grade": grades}, draws)
            threshold = dlt.crs_grade_at_least
            if s.outcome == "crs_grade" and threshold is not None and threshold <= s.n_thresholds:
                out["p_dlt"] = out["p_crs_at_least"].sel(grade=threshold, drop=True)
                out["p_dlt"].attrs["definition"] = self.dlt_basis
        out.attrs.update(
            {"dose_unit": self.spec.dosing.unit.value, "target_study": self.spec.trial.id,
             "toxicity_interval_edges": list(dlt.intervals.edges), "toxicity_interval_names": list(dlt.intervals.names)}
        )
        return out

    def decision_quantities(self, dose_response: xr.Dataset) -> list[DecisionQuantity]:
        quantities = []
        if "p_crs_at_least" in dose_response:
            quantities.append(
                DecisionQuantity("P(CRS >= 1)", "posterior mean probability of any CRS", dose_response["p_crs_at_least"].sel(grade=1, drop=True))
            )
        if "p_dlt" in dose_response:
            p_dlt = dose_response["p_dlt"]
            quantities.append(DecisionQuantity("P(DLT)", p_dlt.attrs.get("definition", ""), p_dlt))
            for name, description, indicator in self._interval_indicators(p_dlt):
                quantities.append(DecisionQuantity(f"P({name})", description, indicator, reference=p_dlt))
        return quantities

    def summary_table(self, dose_response: xr.Dataset, *, interval: float = 0.9) -> pd.DataFrame:
        """One row per dose: P(CRS >= g) and P(DLT) with interval and MCSE; interval probabilities.

        ``dose_label`` is the dose as text (``"4.5e9 cells"``), ``dose`` the number in the spec's unit."""
        unit = self.spec.dosing.unit.value
        pieces = []
        if "p_crs_at_least" in dose_response:
            for grade in dose_response["grade"].to_numpy():
                frame = summarise_draws(dose_response["p_crs_at_least"].sel(grade=grade, drop=True), interval=interval)
                pieces.append(frame.add_prefix(f"P(CRS>={grade}) "))
        if "p_dlt" in dose_response:
            pieces.append(summarise_draws(dose_response["p_dlt"], interval=interval).add_prefix("P(DLT) "))
            for name, _, indicator in self._interval_indicators(dose_response["p_dlt"]):
                probability, mcse, is_bound = probability_with_mcse(indicator, dose_response["p_dlt"])
                pieces.append(pd.DataFrame({f"P({name})": probability.to_series(), f"P({name}) mcse": mcse.to_series(),
                                            f"P({name}) mcse is upper bound": is_bound.to_series()}))
        table = pd.concat(pieces, axis=1)
        table.insert(0, "dose_label", [dose_label(d, unit) for d in table.index])
        table.insert(1, "dose", table.index.to_numpy(dtype=float))  # a number, in the spec's unit
        if "p_dlt" in dose_response:
            table["P(DLT) basis"] = self.dlt_basis
        return table.reset_index(drop=True)

    def parameters_of_interest(self) -> list[str]:
        return ["log_a", "log_b"]


    def _interval_indicators(self, p_dlt: xr.DataArray) -> list[tuple[str, str, xr.DataArray]]:
        """(name, description, indicator draws) for each of the spec's toxicity intervals."""
        intervals = self.spec.dlt.intervals
        flags = intervals.indicators(p_dlt.to_numpy())
        return [
            (name, f"posterior probability that P(DLT) is in {intervals.label(k)}",
             p_dlt.copy(data=flags[..., k].astype(float)))
            for k, name in enumerate(intervals.names)
        ]


class CRSModel(ToxicityModel):
    """The ordinal CRS model with the spec's ``[model.crs]`` settings (or ``settings``)."""


class BLRM(ToxicityModel):
    """The binary BLRM on DLTs with the spec's ``[model.blrm]`` settings (or ``settings``).

    Raises
    ------
    ModelSetupError
        If ``settings`` ask for the ordinal outcome (use :class:`CRSModel` for CRS grades).
    """

    def __init__(self, cohort: Cohort | None, spec: TrialSpec, settings: ToxicityModelSettings | None = None,
                 *, weight_reference: LMSWeightReference | None = None) -> None:
        chosen = settings or self.default_settings(spec)
        if chosen.outcome == "crs_grade":
            raise ModelSetupError(
                "the BLRM models a binary outcome ('dlt' or 'crs_any'), but its settings ask for 'crs_grade'; "
                "use CRSModel for CRS grades or set outcome = 'dlt' in [model.blrm]"
            )
        super().__init__(cohort, spec, chosen, weight_reference=weight_reference)

    @staticmethod
    def default_settings(spec: TrialSpec) -> ToxicityModelSettings:
        """The spec's ``[model.blrm]`` settings."""
        return spec.models.blrm
