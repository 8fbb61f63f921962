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

import arviz_stats
from arviz_stats.base import array_stats
from arviz_stats.validate import validate_ci_prob  # az.ess's default tail probability (rcParams)
import numpy as np
import pandas as pd
import xarray as xr

from lupusbayes.models.base import SAMPLE_DIMS, BayesianModel, DecisionQuantity
from lupusbayes.models.summaries import probability_with_mcse
from lupusbayes.spec import ConvergenceGate, FitSettings

__all__ = ["GateCheck", "SamplingAttempt", "Diagnostics", "diagnose", "gate_checks", "convergence_table",
           "parameter_label", "FREE_PARAMETERS_ATTR"]

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
    note: str = ""

    def describe(self) -> str:
        """One line: ``max R-hat: 1.02 vs 1.01 (worst: log_a[KN5601])``, with any note."""
        where = f" (worst: {self.worst})" if self.worst else ""
        note = f"; {self.note}" if self.note else ""
        return f"{self.name}: {_number(self.value)} vs {_number(self.threshold)}{where}{note}"


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

    def __repr__(self) -> str:
        lines = [f"Diagnostics(convergence gate {'PASSED' if self.passed else 'FAILED'}"]
        lines += [f"  [{'ok  ' if check.passed else 'FAIL'}] {check.describe()}" for check in self.checks]
        return "\n".join(lines) + ")"

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


def _monitored(model: BayesianModel, tree: xr.DataTree, quantities: list[DecisionQuantity]) -> tuple[xr.Dataset, set]:
    """Every free parameter, reported parameter and decision quantity of a fit, and the decision names."""
    posterior = tree["posterior"].to_dataset()
    free = json.loads(posterior.attrs.get(FREE_PARAMETERS_ATTR, "[]"))
    names = [n for n in free if n in posterior] + [n for n in model.parameters_of_interest() if n in posterior]
    monitored = posterior[list(dict.fromkeys(names))]
    decision_names = set()
    for quantity in quantities:
        monitored[f"decision: {quantity.name}"] = quantity.values
        decision_names.add(f"decision: {quantity.name}")
    return monitored, decision_names


def convergence_table(monitored: xr.Dataset, decision_names: set[str] = frozenset()) -> pd.DataFrame:
    """R-hat and bulk / tail ESS of every element of every variable of ``monitored`` (chain, draw).

    ``decision`` marks the variables named in ``decision_names``; ``constant`` marks elements whose
    draws all agree (R-hat and ESS are undefined there); ``finite`` is false when any draw is NaN
    or infinite.
    """
    labels, decision, blocks = [], [], []
    for name in monitored.data_vars:
        variable = monitored[name].transpose(*SAMPLE_DIMS, ...)
        other = variable.dims[len(SAMPLE_DIMS):]
        coords = [variable[d].to_numpy() if d in variable.coords else np.arange(variable.sizes[d]) for d in other]
        for index in np.ndindex(*(variable.sizes[d] for d in other)):
            labels.append(parameter_label(name, [c[i] for c, i in zip(coords, index, strict=True)]))
            decision.append(name in decision_names)
        blocks.append(variable.to_numpy().reshape(variable.sizes["chain"], variable.sizes["draw"], -1))
    draws = np.moveaxis(np.concatenate(blocks, axis=-1), -1, 0).astype(float)  # (element, chain, draw)
    # every element at once: the functions ArviZ's az.rhat / az.ess apply to each variable, element by element
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # constant quantities give 0/0 in R-hat; reported as constant
        rhat = array_stats.rhat(draws, chain_axis=-2, draw_axis=-1)
        ess_bulk = array_stats.ess(draws, chain_axis=-2, draw_axis=-1, method="bulk")
        ess_tail = array_stats.ess(draws, chain_axis=-2, draw_axis=-1, method="tail", prob=validate_ci_prob(None))
    flat = draws.reshape(draws.shape[0], -1)
    return pd.DataFrame({
        "parameter": labels, "r_hat": rhat.astype(float), "ess_bulk": ess_bulk.astype(float),
        "ess_tail": ess_tail.astype(float), "decision": decision,
        "constant": flat.max(axis=1) - flat.min(axis=1) == 0, "finite": np.isfinite(flat).all(axis=1),
    }, columns=["parameter", "r_hat", "ess_bulk", "ess_tail", "decision", "constant", "finite"])


def _decision_mcse(quantities: list[DecisionQuantity]) -> pd.DataFrame:
    """Posterior mean and Monte Carlo error of every decision quantity, one row per dose (and month).

    ``mcse_is_upper_bound`` marks rows whose draws all agree: their error is the bound of
    :func:`~lupusbayes.models.summaries.probability_with_mcse`, never a claimed 0.
    """
    rows = []
    for quantity in quantities:
        mean, mcse, is_bound = probability_with_mcse(quantity.values, quantity.reference)
        for index in np.ndindex(mean.shape):
            where = ", ".join(f"{d}={mean[d].to_numpy()[i]:g}" for d, i in zip(mean.dims, index, strict=True))
            rows.append({"quantity": quantity.name, "where": where, "mean": float(mean.to_numpy()[index]),
                         "mcse": float(mcse.to_numpy()[index]),
                         "mcse_is_upper_bound": bool(is_bound.to_numpy()[index])})
    return pd.DataFrame(rows, columns=["quantity", "where", "mean", "mcse", "mcse_is_upper_bound"])


def diagnose(model: BayesianModel, tree: xr.DataTree, settings: FitSettings,
             attempts: list[SamplingAttempt] | tuple[SamplingAttempt, ...]) -> Diagnostics:
    """Apply the convergence gate of ``settings`` to a fitted ``tree`` (see the module docstring).

    Nothing passes by being unmeasurable: a parameter with non-finite draws, or an R-hat or ESS
    that is NaN for a quantity whose draws vary, fails its check, and so does a missing or NaN
    BFMI. The only quantities left out are decision probabilities whose draws all agree (an
    interval probability exactly 0 or 1 in every draw), and the check's note counts them.
    """
    quantities = model.decision_quantities(tree["dose_response"].to_dataset())
    parameters = convergence_table(*_monitored(model, tree, quantities))
    checks = gate_checks(parameters, tree, attempts[-1].divergences, settings.gate)
    return Diagnostics(checks, tuple(attempts), parameters, _decision_mcse(quantities))


def gate_checks(parameters: pd.DataFrame, tree: xr.DataTree, divergences: int,
                gate: ConvergenceGate) -> tuple[GateCheck, ...]:
    """The gate's checks on a :func:`convergence_table` and the sampler's statistics (see :func:`diagnose`)."""
    left_out = parameters["decision"] & parameters["constant"] & parameters["finite"]
    assessed = parameters[~left_out]
    constant_note = (f"{int(left_out.sum())} decision quantities constant across draws, left out "
                     "(their MCSE is reported as a bound)") if left_out.any() else ""

    def check(name: str, column: str, threshold: float, largest: bool, note: str = "") -> GateCheck:
        if assessed.empty:
            return GateCheck(name, float("nan"), threshold, False, "", "not assessable: no quantity varies across draws")
        unmeasured = assessed[~np.isfinite(assessed[column])]
        if len(unmeasured):
            where = str(unmeasured["parameter"].iloc[0])
            reason = "non-finite draws" if not unmeasured["finite"].iloc[0] else "constant draws"
            return GateCheck(name, float("nan"), threshold, False, where,
                             f"not assessable for {len(unmeasured)} quantities ({reason}); a fit that cannot be checked fails")
        row = assessed.loc[assessed[column].idxmax() if largest else assessed[column].idxmin()]
        value = float(row[column])
        passed = value <= threshold if largest else value >= threshold
        return GateCheck(name, value, threshold, bool(passed), str(row["parameter"]), note)

    stats = tree["sample_stats"].to_dataset()
    if "energy" not in stats:
        bfmi = GateCheck("min BFMI", float("nan"), gate.bfmi_min, False, "",
                         "not assessable: the sampler recorded no energy")
    else:
        bfmi_min = float(arviz_stats.bfmi(tree)["energy"].min())
        if np.isnan(bfmi_min):
            bfmi = GateCheck("min BFMI", bfmi_min, gate.bfmi_min, False, "",
                             "not assessable: the energy draws are not finite")
        else:
            bfmi = GateCheck("min BFMI", bfmi_min, gate.bfmi_min, bool(bfmi_min >= gate.bfmi_min))
    return (
        check("max R-hat", "r_hat", gate.rhat_max, largest=True, note=constant_note),
        check("min bulk ESS", "ess_bulk", gate.ess_bulk_min, largest=False),
        check("min tail ESS", "ess_tail", gate.ess_tail_min, largest=False),
        GateCheck("divergences", float(divergences), float(gate.divergences_max), divergences <= gate.divergences_max),
        bfmi,
    )
