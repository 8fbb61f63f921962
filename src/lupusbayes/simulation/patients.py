"""Simulated patients, the same for every design (common random numbers).

Each simulated patient carries three latent uniforms, drawn once per trial slot from the
trial's seed: ``toxicity`` decides their DLT at any dose (a DLT at level ``d`` when it is
below the true P(DLT) there, so a patient toxic at one dose is toxic at every higher one),
``response`` their response the same way, ``arrival`` the gap before they arrive. A design changes only which dose each
patient gets, so designs differ by their choices, not by their luck.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lupusbayes.decisions.state import DAYS_PER_MONTH
from lupusbayes.simulation.scenarios import Scenario

__all__ = ["LatentPatients", "draw_latent_patients", "arrival_days"]


@dataclass(frozen=True, eq=False)
class LatentPatients:
    """Latent uniforms, shape (trials, patient slots) each."""

    toxicity: np.ndarray
    response: np.ndarray
    arrival: np.ndarray

    @property
    def n_trials(self) -> int:
        return self.toxicity.shape[0]


def draw_latent_patients(seed: np.random.SeedSequence, n_trials: int, slots: int) -> LatentPatients:
    """Latent uniforms for ``n_trials`` trials of up to ``slots`` patients, from one seed sequence."""
    rng = np.random.default_rng(seed)
    return LatentPatients(rng.uniform(size=(n_trials, slots)), rng.uniform(size=(n_trials, slots)),
                          rng.uniform(size=(n_trials, slots)))


def arrival_days(scenario: Scenario, arrival_uniforms: np.ndarray) -> np.ndarray:
    """Arrival day of each patient slot: fixed gaps, or exponential gaps of a Poisson stream."""
    if scenario.accrual_gap_days is not None:
        gaps = np.full(arrival_uniforms.shape, scenario.accrual_gap_days)
    else:
        rate_per_day = scenario.accrual_patients_per_month / DAYS_PER_MONTH
        gaps = -np.log(np.maximum(arrival_uniforms, 1e-300)) / rate_per_day
    days = np.cumsum(gaps, axis=-1)
    return days - days[..., :1]  # the first patient arrives on day 0
