"""What the domain plots read from a fit besides its draws: patients per dose, observed outcomes.

Everything comes from the fit's own groups (``observed_data``, ``constant_data``) and its
model (spec, cohort), so a saved fit is enough.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import xarray as xr

from lupusbayes.errors import LupusBayesError
from lupusbayes.fitting import FitResult
from lupusbayes.models.base import SAMPLE_DIMS
from lupusbayes.models.design import dose_group_label

__all__ = ["PlotError", "fit_title", "model_in_words", "thinned", "group_label", "patients_per_level", "observed_toxicity_groups",
           "require_variables"]


class PlotError(LupusBayesError, ValueError):
    """A plot cannot be made from what it was given (a kind that does not apply to the fit, an
    unknown kind, a missing recommendation); one line, exit code 2 on the command line."""


def require_variables(fit: FitResult, names: tuple[str, ...], what: str) -> None:
    """Refuse (one line) a plot whose quantities the fit does not hold."""
    missing = [name for name in names if name not in fit.dose_response]
    if missing:
        raise PlotError(f"the {what} plot needs {', '.join(missing)} per dose, which the {fit.model.name} fit "
                        "does not hold")


#: A SLEDAI-2K model's dose-response shape, in words.
_SLEDAI_SHAPES = {"log_linear": "log-linear in dose", "emax": "Emax in dose"}


def model_in_words(model) -> str:
    """What a fitted model is, in words, for a figure's title (not its internal ``name``).

    ``'ordinal CRS model (ASTCT grades 0-4)'``, ``'BLRM of DLT (yes / no)'``,
    ``'BLRM of any CRS (yes / no), borrowing from KN5601 (EXNEX)'``,
    ``'SLEDAI-2K reduction model (log-linear in dose)'``: the outcome and model, then how
    the co-data enter (other studies than the spec's trial), and a missing dose effect.

    Examples
    --------
    >>> import lupusbayes as lb
    >>> model_in_words(lb.CRSModel(lb.load_kn5601(), lb.load_spec("kn5601")))
    'ordinal CRS model (ASTCT grades 0-4)'
    """
    settings = model.settings
    codata = ", ".join(study for study in getattr(model, "studies", ()) if study != model.spec.trial.id)
    if model.kind == "sledai":
        shape = _SLEDAI_SHAPES.get(settings.dose_response, settings.dose_response.replace("_", " "))
        monotone = "" if settings.monotone else ", not forced to rise with dose"
        words = f"SLEDAI-2K reduction model ({shape}{monotone})"
        return words + (f", with {codata} (a level per study)" if codata else "")
    if settings.outcome == "crs_grade":
        words = f"ordinal CRS model (ASTCT grades 0-{settings.max_grade})"
    elif settings.outcome == "crs_any":
        words = "BLRM of any CRS (yes / no)"
    else:
        words = "BLRM of DLT (yes / no)"
    hierarchy = getattr(model, "hierarchy", "none")
    if codata:
        words += {"none": f", pooled with {codata} (no discounting)", "exnex": f", borrowing from {codata} (EXNEX)",
                  "exchangeable": f", borrowing from {codata} (exchangeable)"}.get(hierarchy, f", with {codata}")
    return words + ("" if settings.dose_effect else ", no dose effect")


def fit_title(fit: FitResult, what: str) -> str:
    """A plot's title: what it shows, then the trial, the model in words (:func:`model_in_words`)
    and the seed, and, for a fit that failed its convergence gate, that it did (such a fit must
    not drive decisions).

    ``'Probability of CRS by dose and grade\nKN5601: ordinal CRS model (ASTCT grades 0-4), seed 1'``
    """
    gate = " - FAILED its convergence gate: not for decisions" if not fit.converged else ""
    return f"{what}\n{fit.model.spec.trial.id}: {model_in_words(fit.model)}, seed {fit.seed}{gate}"


def thinned(draws: xr.Dataset, max_draws: int = 1000) -> xr.Dataset:
    """Every k-th draw of each chain, so that at most about ``max_draws`` remain (all chains
    kept): for curves recomputed from the draws and for scatter plots, where all draws would cost
    time and show nothing more. Deterministic, so the figure stays the same for the same fit."""
    step = max(1, int(np.ceil(draws.sizes["chain"] * draws.sizes["draw"] / max_draws)))
    return draws.isel(draw=slice(None, None, step))


def group_label(fit: FitResult, level: float) -> str:
    """The dose-group label of the target trial at ``level`` (as the models write it)."""
    spec = fit.model.spec
    return dose_group_label(spec.trial.id, level, spec.dosing.unit.value)


def patients_per_level(fit: FitResult, levels) -> np.ndarray:
    """How many of the target trial's patients had each dose level."""
    groups = fit.tree["constant_data"]["dose_group"].to_numpy().astype(str)
    return np.array([int(np.sum(groups == group_label(fit, level))) for level in levels])


def observed_toxicity_groups(fit: FitResult) -> pd.DataFrame:
    """One row per dose group (study x nominal dose): its dose on the spec's scale, patients and
    the number with outcome >= g for each grade g of the model.

    A dose recorded in the other unit without a weight is placed with the posterior median of
    the patient's inferred weight (and, for a per-course spec, scaled by the infusions
    received), as the model sees it.
    """
    constants = fit.tree["constant_data"].to_dataset()
    outcome = fit.tree["observed_data"]["toxicity_outcome"].to_numpy().astype(int)
    x = constants["log_relative_dose_known"].to_numpy().astype(float)
    sign = constants["weight_conversion_sign"].to_numpy().astype(float)
    if "weight_kg" in fit.posterior and np.any(sign != 0):
        weights = fit.posterior["weight_kg"].median(SAMPLE_DIMS)
        labels = list(map(str, constants["observation"].to_numpy()))
        for patient, weight in zip(weights["latent_weight_patient"].to_numpy(), weights.to_numpy(), strict=True):
            position = labels.index(str(patient))
            x[position] += sign[position] * np.log(weight)
    frame = pd.DataFrame({"study": constants["study"].to_numpy().astype(str),
                          "group": constants["dose_group"].to_numpy().astype(str),
                          "x": x, "outcome": outcome})
    reference = fit.model.spec.dosing.reference_dose
    rows = []
    for (study, group), patients in frame.groupby(["study", "group"], sort=False):
        row = {"study": study, "group": group, "dose": reference * float(np.exp(patients["x"].mean())),
               "n": len(patients)}
        for grade in range(1, int(fit.model.n_categories)):
            row[grade] = int((patients["outcome"] >= grade).sum())
        rows.append(row)
    return pd.DataFrame(rows)
