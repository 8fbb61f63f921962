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

__all__ = ["PlotError", "fit_title", "thinned", "group_label", "patients_per_level", "observed_toxicity_groups",
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


def fit_title(fit: FitResult, what: str) -> str:
    """A plot's title: what it shows, then the trial, the model and the seed, and, for a fit
    that failed its convergence gate, that it did (such a fit must not drive decisions)."""
    gate = "" if fit.converged else " - FAILED its convergence gate: not for decisions"
    return f"{what}\n{fit.model.spec.trial.id}: {fit.model.name}, seed {fit.seed}{gate}"


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
