"""Convergence diagnostics, the convergence gate, and the Monte Carlo error of decisions.

R-hat and bulk / tail ESS are computed for every free parameter, every reported parameter and
every decision quantity per dose (the probabilities a decision would rest on); the gate compares
the worst of each with its threshold. The Monte Carlo standard error of each decision quantity
is reported with it.
"""

from __future__ import annotations

import json
import math
import warnings
from dataclasses import asdict, dataclass, field
from typing import Any

import arviz as az
import numpy as np
import pandas as pd
import xarray as xr

from lupusbayes.models.base import SAMPLE_DIMS, BayesianModel, DecisionQuantity
from lupusbayes.spec import FitSettings

__all__ = ["GateCheck", "SamplingAttempt", "Diagnostics", "diagnose", "parameter_label", "FREE_PARAMETERS_ATTR"]

#: Attribute of the posterior group listing the sampled (free) parameters, as JSON.
FREE_PARAMETERS_ATTR = "lupusbayes_free_parameters"


@dataclass(frozen=True)
class GateCheck:
    """One check of the convergence gate: the measured value against its threshold."""

    name: str
    value: float
    threshold: float
    passed: bool
    worst: str = ""

    def describe(self) -> str:
        """One line: ``max R-hat: 1.02 vs 1.01 (worst: log_a[KN5601])``."""
        where = f" (worst: {self.worst})" if self.worst else ""
        return f"{self.name}: {_number(self.value)} vs {_number(self.threshold)}{where}"


def _number(value: float) -> str:
    if math.isnan(value) or math.isinf(value):
        return str(value)
    return f"{value:.4g}"


@dataclass(frozen=True)
class SamplingAttempt:
    """One run of the sampler (the second only after divergences)."""

    target_accept: float
    divergences: int
    seconds: float


@dataclass(frozen=True)
class Diagnostics:
    """Convergence diagnostics, Monte Carlo errors and the gate's verdict."""

    checks: tuple[GateCheck, ...]
    attempts: tuple[SamplingAttempt, ...]
    parameters: pd.DataFrame = field(repr=False)
    decision_mcse: pd.DataFrame = field(repr=False)

    @property
    def passed(self) -> bool:
        return all(check.passed for check in self.checks)

    @property
    def failed_checks(self) -> tuple[GateCheck, ...]:
        return tuple(check for check in self.checks if not check.passed)

    def to_dict(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "checks": [asdict(check) for check in self.checks],
            "attempts": [asdict(attempt) for attempt in self.attempts],
            "decision_mcse": json.loads(self.decision_mcse.to_json(orient="records")),
        }


def parameter_label(name: str, coordinates) -> str:
    """``log_a[KN5601]``-style label of one element of a variable."""
    if not len(coordinates):
        return name
    shown = ", ".join(f"{c:g}" if isinstance(c, float | np.floating) else str(c) for c in coordinates)
    return f"{name}[{shown}]"


def _convergence_table(model: BayesianModel, tree: xr.DataTree, quantities: list[DecisionQuantity]) -> pd.DataFrame:
    """R-hat and bulk / tail ESS of every free parameter, reported parameter and decision quantity."""
    posterior = tree["posterior"].to_dataset()
    free = json.loads(posterior.attrs.get(FREE_PARAMETERS_ATTR, "[]"))
    names = [n for n in free if n in posterior] + [n for n in model.parameters_of_interest() if n in posterior]
    monitored = posterior[list(dict.fromkeys(names))]
    for quantity in quantities:
        monitored[f"decision: {quantity.name}"] = quantity.values
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # constant quantities give 0/0 in R-hat; the gate skips them
        rhat = az.rhat(monitored)
        ess_bulk = az.ess(monitored, method="bulk")
        ess_tail = az.ess(monitored, method="tail")
    rows = []
    for name in monitored.data_vars:
        coords = [rhat[name][d].to_numpy() if d in rhat[name].coords else np.arange(rhat[name].sizes[d])
                  for d in rhat[name].dims]
        for index in np.ndindex(rhat[name].shape):
            rows.append(
                {
                    "parameter": parameter_label(name, [c[i] for c, i in zip(coords, index, strict=True)]),
                    "r_hat": float(rhat[name].to_numpy()[index]),
                    "ess_bulk": float(ess_bulk[name].to_numpy()[index]),
                    "ess_tail": float(ess_tail[name].to_numpy()[index]),
                }
            )
    return pd.DataFrame(rows, columns=["parameter", "r_hat", "ess_bulk", "ess_tail"])


def _decision_mcse(quantities: list[DecisionQuantity]) -> pd.DataFrame:
    """Posterior mean and Monte Carlo SE of every decision quantity, one row per dose (and month)."""
    rows = []
    for quantity in quantities:
        values = quantity.values.astype(float)
        mean = values.mean(SAMPLE_DIMS)
        mcse = az.mcse(values, method="mean").to_numpy()
        for index in np.ndindex(mean.shape):
            where = ", ".join(f"{d}={mean[d].to_numpy()[i]:g}" for d, i in zip(mean.dims, index, strict=True))
            rows.append({"quantity": quantity.name, "where": where, "mean": float(mean.to_numpy()[index]),
                         "mcse": 0.0 if math.isnan(mcse[index]) else float(mcse[index])})
    return pd.DataFrame(rows, columns=["quantity", "where", "mean", "mcse"])


def diagnose(model: BayesianModel, tree: xr.DataTree, settings: FitSettings,
             attempts: list[SamplingAttempt] | tuple[SamplingAttempt, ...]) -> Diagnostics:
    """Apply the convergence gate of ``settings`` to a fitted ``tree`` (see the module docstring)."""
    quantities = model.decision_quantities(tree["dose_response"].to_dataset())
    parameters = _convergence_table(model, tree, quantities)
    valid = parameters.dropna()  # constant across draws (a probability exactly 0): no R-hat / ESS
    gate = settings.gate

    def worst(column: str, largest: bool) -> tuple[float, str]:
        if valid.empty:
            return float("nan"), ""
        row = valid.loc[valid[column].idxmax() if largest else valid[column].idxmin()]
        return float(row[column]), str(row["parameter"])

    rhat_max, rhat_where = worst("r_hat", True)
    bulk_min, bulk_where = worst("ess_bulk", False)
    tail_min, tail_where = worst("ess_tail", False)
    divergences = attempts[-1].divergences
    has_energy = "energy" in tree["sample_stats"].to_dataset()
    bfmi_min = float(az.bfmi(tree)["energy"].min()) if has_energy else float("nan")
    checks = (
        GateCheck("max R-hat", rhat_max, gate.rhat_max, bool(rhat_max <= gate.rhat_max), rhat_where),
        GateCheck("min bulk ESS", bulk_min, gate.ess_bulk_min, bool(bulk_min >= gate.ess_bulk_min), bulk_where),
        GateCheck("min tail ESS", tail_min, gate.ess_tail_min, bool(tail_min >= gate.ess_tail_min), tail_where),
        GateCheck("divergences", float(divergences), float(gate.divergences_max), divergences <= gate.divergences_max),
        GateCheck("min BFMI", bfmi_min, gate.bfmi_min, bool(np.isnan(bfmi_min) or bfmi_min >= gate.bfmi_min)),
    )
    return Diagnostics(checks, tuple(attempts), parameters, _decision_mcse(quantities))
