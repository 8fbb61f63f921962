"""The operating-characteristics figure: designs side by side, one column per scenario.

Top row: how often each design selects each level (and no level), with the scenario's true
P(DLT) and P(response) under each level; levels that are safe and efficacious are shaded, an
overdose level is marked. Middle row: patients treated per level. Bottom row: the trial's
duration in months, with the mean number of patients treated above the true MTD written on
each bar. Error bars are +/- 2 Monte Carlo standard errors.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from lupusbayes._io import write_atomic
from lupusbayes.report.plots import literal_text
from lupusbayes.simulation import ScenarioSet
from lupusbayes.spec import TrialSpec

__all__ = ["plot_operating_characteristics", "save_operating_characteristics"]


def plot_operating_characteristics(summary: pd.DataFrame, scenarios: ScenarioSet, spec: TrialSpec):
    """A matplotlib ``Figure`` (see the module docstring)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    designs = list(dict.fromkeys(summary["design"]))
    n_levels = len(spec.dosing.levels)
    n_scenarios = len(scenarios.scenarios)
    figure, axes = plt.subplots(3, n_scenarios, figsize=(3.6 * n_scenarios + 0.8, 8.6), squeeze=False,
                                sharey="row", layout="constrained", height_ratios=(3, 3, 2))
    width = 0.8 / len(designs)
    colours = plt.get_cmap("tab10")(np.arange(len(designs)))
    overdose_threshold = spec.dlt.intervals.overdose_threshold
    for column, scenario in enumerate(scenarios.scenarios):
        part = summary[summary["scenario"] == scenario.name]
        p_dlt = scenario.p_dlt(spec)
        target = scenario.safe_and_efficacious(spec, scenarios.efficacious_response)
        top, bottom = axes[0, column], axes[1, column]
        for level in range(n_levels):
            if target[level]:
                for ax in (top, bottom):
                    ax.axvspan(level + 0.5, level + 1.5, color="#2ca02c", alpha=0.10, lw=0)
        for index, design in enumerate(designs):
            rows = part[part["design"] == design]
            selected = rows[rows["quantity"] == "selected"].sort_values("level")
            none = rows[rows["quantity"] == "no dose selected"]
            values = np.concatenate([none["value"].to_numpy(), selected["value"].to_numpy()]) * 100
            errors = np.concatenate([none["mcse"].to_numpy(), selected["mcse"].to_numpy()]) * 200
            positions = np.arange(n_levels + 1) - 0.4 + width * (index + 0.5)
            top.bar(positions, values, width, yerr=errors, color=colours[index], label=design, capsize=1.5)
            patients = rows[(rows["quantity"] == "patients") & (rows["level"] > 0)].sort_values("level")
            bottom.bar(np.arange(1, n_levels + 1) - 0.4 + width * (index + 0.5), patients["value"], width,
                       yerr=2 * patients["mcse"], color=colours[index], capsize=1.5)
            duration = rows[rows["quantity"] == "duration (months)"]
            above = rows[rows["quantity"] == "patients above the true MTD"]["value"].iloc[0]
            axes[2, column].bar(index, duration["value"], 0.7, yerr=2 * duration["mcse"], color=colours[index],
                                capsize=1.5)
            axes[2, column].text(index, float(duration["value"].iloc[0]) / 2, f"{above:.1f}", ha="center",
                                 va="center", fontsize=7, color="white")
        labels = ["none"] + [f"{level + 1}\nDLT {100 * p_dlt[level]:.0f}%\nresp {100 * scenario.p_response[level]:.0f}%"
                             + ("\noverdose" if p_dlt[level] >= overdose_threshold else "") for level in range(n_levels)]
        top.set_xticks(np.arange(n_levels + 1), labels, fontsize=7)
        bottom.set_xticks(np.arange(1, n_levels + 1), labels[1:], fontsize=7)
        top.set_title(scenario.name, fontsize=9)
        top.set_ylim(0, 100)
        axes[2, column].set_xticks(np.arange(len(designs)), designs, fontsize=7)
        for ax in axes[:, column]:
            ax.grid(axis="y", alpha=0.3)
            ax.set_axisbelow(True)
    axes[0, 0].set_ylabel("selected (% of trials)")
    axes[1, 0].set_ylabel("patients treated (mean)")
    axes[2, 0].set_ylabel("duration (months)\n[on bars: patients\nabove the true MTD]", fontsize=8)
    trials = int(summary["trials"].iloc[0]) if len(summary) else 0
    handles, names = axes[0, 0].get_legend_handles_labels()
    figure.legend(handles, names, loc="outside lower center", ncol=len(designs), fontsize=8, frameon=False)
    figure.suptitle(f"{spec.trial.id}: operating characteristics ({trials} trials per scenario; bars +/- 2 MCSE; "
                    "green: safe and efficacious)", fontsize=9)
    return literal_text(figure)  # scenario names and the trial id are the user's text, never mathtext


def save_operating_characteristics(path: Path, summary: pd.DataFrame, scenarios: ScenarioSet, spec: TrialSpec, *,
                                   overwrite: bool = False) -> Path:
    """Write the figure as PNG (atomically)."""
    import matplotlib.pyplot as plt

    figure = plot_operating_characteristics(summary, scenarios, spec)
    try:
        return write_atomic(Path(path), lambda temporary: figure.savefig(temporary, format="png", dpi=120),
                            overwrite=overwrite)
    finally:
        plt.close(figure)
