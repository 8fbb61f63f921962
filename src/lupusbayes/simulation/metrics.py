"""Operating characteristics: what a design does, on average over simulated trials, under a truth.

:func:`operating_characteristics` turns per-trial results into a tidy table, one row per
scenario, design, quantity and (where it applies) dose level, each value with its Monte Carlo
standard error (``mcse``: ``sd / sqrt(trials)``; for a proportion ``sqrt(p (1 - p) / trials)``).

========================================  ======================================================
quantity                                  meaning (per trial, then averaged)
========================================  ======================================================
``selected``                              the level selected at the end (one row per level)
``no dose selected``                      the trial selected no level (stopped for safety)
``selected a safe, efficacious dose``     the selected level's true P(DLT) is below the overdose
                                          threshold and its response probability is at least
                                          the scenario file's ``efficacious_response``
``selected above the true MTD``           the selected level is above the true MTD: the highest
                                          level whose true P(DLT) is below the spec's overdose
                                          threshold (``[dlt.intervals]``); every level is above
                                          it when none is below
``stopped for toxicity``                  the trial stopped because no level was acceptable: no
                                          level admissible, BOIN's lowest level eliminated, or the
                                          3+3 ending with no level selected (a 3+3 that ends by
                                          selecting its MTD, or any trial reaching its sample size
                                          or its planned end, did not)
``patients``                              patients treated (per level, and in all)
``patients above the true MTD``           patients treated at levels above the true MTD
``DLTs``                                  patients with a DLT
``responders``                            patients with the response
``duration (months)``                     first dosing to the final analysis
``not evaluable, replaced``               patients dosed who left the DLT window early without a
                                          DLT and were replaced (counted in ``patients``)
========================================  ======================================================
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from lupusbayes.decisions.rules import STOP_THREE_PLUS_THREE, TOXICITY_STOPS
from lupusbayes.decisions.state import DAYS_PER_MONTH
from lupusbayes.simulation.engine import TrialResults
from lupusbayes.simulation.scenarios import Scenario
from lupusbayes.spec import TrialSpec

__all__ = ["operating_characteristics", "comparison_table", "QUANTITIES", "paired_differences",
           "per_trial_quantities", "differences_table"]

QUANTITIES = ("selected", "no dose selected", "selected a safe, efficacious dose", "selected above the true MTD",
              "stopped for toxicity", "patients", "patients above the true MTD", "DLTs", "responders", "duration (months)",
              "not evaluable, replaced")


def _mean(values: np.ndarray) -> tuple[float, float]:
    values = np.asarray(values, dtype=float)
    if values.size < 2:
        return float(values.mean()) if values.size else float("nan"), float("nan")
    return float(values.mean()), float(values.std(ddof=1) / np.sqrt(values.size))


def _proportion(flags: np.ndarray) -> tuple[float, float]:
    flags = np.asarray(flags, dtype=float)
    p = float(flags.mean())
    return p, float(np.sqrt(p * (1 - p) / flags.size))


def per_trial_quantities(results: TrialResults, scenario: Scenario, spec: TrialSpec,
                         efficacious_response: float) -> dict[tuple[str, int], np.ndarray]:
    """Each quantity of the module docstring, trial by trial: ``(quantity, level) -> values`` (level 0: all)."""
    n_levels = results.n_patients.shape[1]
    true_mtd = scenario.true_mtd(spec)
    above = np.arange(n_levels) > (-1 if true_mtd is None else true_mtd)
    target = scenario.safe_and_efficacious(spec, efficacious_response)
    selected = results.selected_level
    chosen = selected >= 0
    reasons = np.asarray(results.stop_reason, dtype=object)
    safety = np.isin(reasons, list(TOXICITY_STOPS))
    values: dict[tuple[str, int], np.ndarray] = {}
    for level in range(n_levels):
        values[("selected", level + 1)] = selected == level
    values[("no dose selected", 0)] = ~chosen
    values[("selected a safe, efficacious dose", 0)] = chosen & target[np.maximum(selected, 0)]
    values[("selected above the true MTD", 0)] = chosen & above[np.maximum(selected, 0)]
    values[("stopped for toxicity", 0)] = safety | ((reasons == STOP_THREE_PLUS_THREE) & ~chosen)
    for level in range(n_levels):
        values[("patients", level + 1)] = results.n_patients[:, level]
    values[("patients", 0)] = results.n_patients.sum(axis=1)
    values[("patients above the true MTD", 0)] = results.n_patients[:, above].sum(axis=1)
    values[("DLTs", 0)] = results.n_dlt.sum(axis=1)
    values[("responders", 0)] = results.n_responders.sum(axis=1)
    values[("duration (months)", 0)] = results.duration_days / DAYS_PER_MONTH
    values[("not evaluable, replaced", 0)] = results.n_not_evaluable
    return values


def operating_characteristics(results: TrialResults, scenario: Scenario, spec: TrialSpec,
                              efficacious_response: float, max_patients: int | None = None) -> pd.DataFrame:
    """The table of the module docstring for one design on one scenario (levels counted from 1; 0: all).

    ``max_patients`` is accepted for compatibility and not used (``stopped for toxicity`` reads the
    trials' stop reasons).
    """
    rows = []
    for (quantity, level), values in per_trial_quantities(results, scenario, spec, efficacious_response).items():
        value, mcse = _proportion(values) if values.dtype == bool else _mean(values)
        rows.append({"scenario": results.scenario, "design": results.design, "quantity": quantity, "level": level,
                     "value": value, "mcse": mcse, "trials": results.n_trials})
    return pd.DataFrame(rows)


def paired_differences(results: dict[str, TrialResults], scenario: Scenario, spec: TrialSpec,
                       efficacious_response: float, reference: str) -> pd.DataFrame:
    """Each design minus ``reference`` on the same simulated patients, quantity by quantity, with its MCSE.

    The designs ran on the same latent patients (common random numbers), so the difference is
    estimated trial by trial: its MCSE is ``sd(d) / sqrt(n)`` of the paired differences ``d``, far
    smaller than the two designs' MCSEs combined when they agree often (``mcse_unpaired`` gives
    that figure for comparison).
    """
    base = per_trial_quantities(results[reference], scenario, spec, efficacious_response)
    order = np.argsort(results[reference].trial)
    rows = []
    for name, other in results.items():
        if name == reference:
            continue
        if not np.array_equal(np.sort(other.trial), np.sort(results[reference].trial)):
            raise ValueError(f"{name} and {reference} ran on other trials: no paired difference")
        mine = per_trial_quantities(other, scenario, spec, efficacious_response)
        other_order = np.argsort(other.trial)
        for key, values in mine.items():
            d = values[other_order].astype(float) - base[key][order].astype(float)
            a, b = values.astype(float), base[key].astype(float)
            n = d.size
            paired = float(d.std(ddof=1) / np.sqrt(n)) if n > 1 else float("nan")
            unpaired = float(np.sqrt(a.var(ddof=1) / n + b.var(ddof=1) / n)) if n > 1 else float("nan")
            rows.append({"scenario": scenario.name, "design": name, "reference": reference, "quantity": key[0],
                         "level": key[1], "difference": float(d.mean()), "mcse": paired,
                         "mcse_unpaired": unpaired, "trials": n})
    return pd.DataFrame(rows)


def comparison_table(summary: pd.DataFrame, scenario: str) -> pd.DataFrame:
    """One scenario's designs side by side: a row per quantity (and level), ``value (mcse)`` cells."""
    part = summary[summary["scenario"] == scenario]
    designs = list(dict.fromkeys(part["design"]))
    rows = []
    for (quantity, level), group in part.groupby(["quantity", "level"], sort=False):
        label = quantity if level == 0 else f"{quantity}: level {level}"
        percent = quantity.startswith(("selected", "no dose", "stopped"))
        cells = {}
        for row in group.itertuples(index=False):
            if percent:
                cells[row.design] = f"{100 * row.value:5.1f}% ({100 * row.mcse:.1f})"
            else:
                cells[row.design] = f"{row.value:6.2f} ({row.mcse:.2f})"
        rows.append({"": label, **{design: cells.get(design, "") for design in designs}})
    return pd.DataFrame(rows)


def differences_table(differences: pd.DataFrame, scenario: str) -> pd.DataFrame:
    """One scenario's paired differences from the reference design: ``difference (paired MCSE)`` cells."""
    if differences.empty:  # one design: nothing to compare
        return pd.DataFrame()
    part = differences[differences["scenario"] == scenario]
    if part.empty:
        return pd.DataFrame()
    designs = list(dict.fromkeys(part["design"]))
    rows = []
    for (quantity, level), group in part.groupby(["quantity", "level"], sort=False):
        label = quantity if level == 0 else f"{quantity}: level {level}"
        percent = quantity.startswith(("selected", "no dose", "stopped"))
        cells = {}
        for row in group.itertuples(index=False):
            scale, unit = (100, "%") if percent else (1, "")
            cells[row.design] = f"{scale * row.difference:+6.1f}{unit} ({scale * row.mcse:.1f})" if percent else \
                f"{row.difference:+6.2f} ({row.mcse:.2f})"
        rows.append({"": label, **{design: cells.get(design, "") for design in designs}})
    return pd.DataFrame(rows)
