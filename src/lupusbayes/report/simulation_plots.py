"""The operating-characteristics figure: designs side by side, one column per scenario.

Each panel shows one quantity, and the numbers written on its bars are that quantity's:

1. selection: how often each design selects each level (and no level), % of trials, with the
   scenario's true P(DLT) and P(response) under each level; levels that are safe and
   efficacious are shaded, an overdose level is marked;
2. patients treated per level (mean per trial);
3. the trial's duration, first dosing to the final analysis (months, mean per trial), written
   on each bar;
4. patients treated above the true MTD (mean per trial), written on each bar.

Error bars are +/- 2 Monte Carlo standard errors.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from lupusbayes._io import write_atomic
from lupusbayes.report.plots import literal_text, set_figure_title
from lupusbayes.simulation import ScenarioSet
from lupusbayes.spec import TrialSpec

__all__ = ["plot_operating_characteristics", "save_operating_characteristics", "PER_TRIAL_ROWS"]


#: The rows of the figure after the two per-level rows: (quantity of the summary, y-axis label,
#: how its value is written on the bar). Each row's bars and numbers are the same quantity.
PER_TRIAL_ROWS = (
    ("duration (months)", "trial duration\n(months, mean)", "{:.1f}"),
    ("patients above the true MTD", "patients above the\ntrue MTD (mean)", "{:.1f}"),
)


def plot_operating_characteristics(summary: pd.DataFrame, scenarios: ScenarioSet, spec: TrialSpec):
    """A matplotlib ``Figure`` (see the module docstring)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    designs = list(dict.fromkeys(summary["design"]))
    n_levels = len(spec.dosing.levels)
    n_scenarios = len(scenarios.scenarios)
    figure, axes = plt.subplots(2 + len(PER_TRIAL_ROWS), n_scenarios, figsize=(3.6 * n_scenarios + 0.8, 10.4),
                                squeeze=False, sharey="row", layout="constrained", height_ratios=(3, 3, 2, 2))
    width = 0.8 / len(designs)
    colours = plt.get_cmap("tab10")(np.arange(len(designs)))
    overdose_threshold = spec.dlt.intervals.overdose_threshold
    row_tops = np.zeros(len(PER_TRIAL_ROWS))  # highest bar plus error bar of each per-trial row
    for column, scenario in enumerate(scenarios.scenarios):
        part = summary[summary["scenario"] == scenario.name]
        p_dlt = scenario.p_dlt(spec)
        target = scenario.safe_and_efficacious(spec, scenarios.efficacious_response)
        selection, treated = axes[0, column], axes[1, column]
        for level in range(n_levels):
            if target[level]:
                for ax in (selection, treated):
                    ax.axvspan(level + 0.5, level + 1.5, color="#2ca02c", alpha=0.10, lw=0)
        for index, design in enumerate(designs):
            rows = part[part["design"] == design]
            selected = rows[rows["quantity"] == "selected"].sort_values("level")
            none = rows[rows["quantity"] == "no dose selected"]
            values = np.concatenate([none["value"].to_numpy(), selected["value"].to_numpy()]) * 100
            errors = np.concatenate([none["mcse"].to_numpy(), selected["mcse"].to_numpy()]) * 200
            positions = np.arange(n_levels + 1) - 0.4 + width * (index + 0.5)
            selection.bar(positions, values, width, yerr=errors, color=colours[index], label=design, capsize=1.5)
            patients = rows[(rows["quantity"] == "patients") & (rows["level"] > 0)].sort_values("level")
            treated.bar(np.arange(1, n_levels + 1) - 0.4 + width * (index + 0.5), patients["value"], width,
                        yerr=2 * patients["mcse"], color=colours[index], capsize=1.5)
            for number, (quantity, _, written) in enumerate(PER_TRIAL_ROWS):
                row = rows[rows["quantity"] == quantity]
                value, error = float(row["value"].iloc[0]), 2 * float(np.nan_to_num(row["mcse"].iloc[0]))
                ax = axes[2 + number, column]
                ax.bar(index, value, 0.7, yerr=error, color=colours[index], capsize=1.5)
                ax.annotate(written.format(value), (index, value + error), xytext=(0, 2), textcoords="offset points",
                            ha="center", va="bottom", fontsize=7)
                row_tops[number] = max(row_tops[number], value + error)
        labels = ["none"] + [f"{level + 1}\nDLT {100 * p_dlt[level]:.0f}%\nresp {100 * scenario.p_response[level]:.0f}%"
                             + ("\noverdose" if p_dlt[level] >= overdose_threshold else "") for level in range(n_levels)]
        selection.set_xticks(np.arange(n_levels + 1), labels, fontsize=7)
        treated.set_xticks(np.arange(1, n_levels + 1), labels[1:], fontsize=7)
        selection.set_title(scenario.name, fontsize=9)
        selection.set_ylim(0, 100)
        for ax in axes[2:, column]:
            ax.set_xticks(np.arange(len(designs)), designs, fontsize=7)
        for ax in axes[:, column]:
            ax.grid(axis="y", alpha=0.3)
            ax.set_axisbelow(True)
    for number, top in enumerate(row_tops):
        axes[2 + number, 0].set_ylim(0, max(top, 1.0) * 1.2)  # room for the numbers above the bars
    axes[0, 0].set_ylabel("selected (% of trials)", fontsize=8)
    axes[1, 0].set_ylabel("patients treated\nper level (mean)", fontsize=8)
    for number, (_, label, _) in enumerate(PER_TRIAL_ROWS):
        axes[2 + number, 0].set_ylabel(label, fontsize=8)
    for ax in axes[0]:
        ax.set_xlabel("level selected (true P(DLT), P(response))", fontsize=7)
    for ax in axes[1]:
        ax.set_xlabel("dose level (true P(DLT), P(response))", fontsize=7)
    for ax in axes[2:].ravel():
        ax.set_xlabel("design", fontsize=7)
    trials = int(summary["trials"].iloc[0]) if len(summary) else 0
    handles, names = axes[0, 0].get_legend_handles_labels()
    figure.legend(handles, names, loc="outside lower center", ncol=len(designs), fontsize=8, frameon=False)
    set_figure_title(figure, f"{spec.trial.id}: operating characteristics ({trials} trials per scenario; bars +/- 2 "
                             "MCSE; green: safe and efficacious levels)", fontsize=9)
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
