"""Simulated patients, the same for every design (common random numbers).

Each simulated patient carries latent uniforms, drawn once per trial slot from the trial's seed:
``toxicity`` decides their DLT at any dose (a DLT at level ``d`` when it is below the true P(DLT)
there, so a patient toxic at one dose is toxic at every higher one), ``response`` their response
the same way, ``arrival`` the gap before they arrive (and, when a scenario has non-evaluable
patients, whether the patient stays DLT-evaluable), and ``onset`` when within the DLT window a DLT
would occur (:meth:`~lupusbayes.simulation.scenarios.Scenario.onset_days`; the time-to-event designs
read it; drawn last, so the other draws are those of a seed before it existed). A design changes
only which dose each patient gets, so designs differ by their choices, not by their luck.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lupusbayes.decisions.state import DAYS_PER_MONTH
from lupusbayes.simulation.scenarios import Scenario

__all__ = ["LatentPatients", "draw_latent_patients", "arrival_days", "REPLACEMENT_SLOTS"]


@dataclass(frozen=True, eq=False)
class LatentPatients:
    """Latent uniforms, shape (trials, patient slots) each."""

    toxicity: np.ndarray
    response: np.ndarray
    arrival: np.ndarray
    #: whether each slot's patient is DLT-evaluable (None: all are); a patient who is not is replaced by the next slot
    evaluable: np.ndarray | None = None
    #: when within the DLT window a patient's DLT would occur, as a uniform (None: not drawn)
    onset: np.ndarray | None = None

    @property
    def n_trials(self) -> int:
        return self.toxicity.shape[0]

    def with_correlation(self, rho: float) -> LatentPatients:
        """The same patients with toxicity and response joined by a Gaussian copula of correlation ``rho``.

        The response uniform becomes Phi(rho z_t + sqrt(1 - rho^2) z_r), with z_t and z_r the normal
        scores of the toxicity and response uniforms: the toxicity uniforms (so every DLT) are
        unchanged, and with ``rho`` > 0 a patient with a DLT is more likely to respond too (both
        events are "uniform below a probability"). ``rho`` = 0 returns the patients as they are.
        """
        if rho == 0.0:
            return self
        from scipy.stats import norm

        z_toxicity, z_response = norm.ppf(self.toxicity), norm.ppf(self.response)
        response = norm.cdf(rho * z_toxicity + np.sqrt(1.0 - rho**2) * z_response)
        return LatentPatients(self.toxicity, response, self.arrival, self.evaluable, self.onset)


#: With non-evaluable patients, this many slots per place of the sample size (the replacements' slots).
REPLACEMENT_SLOTS = 3


def draw_latent_patients(seed: np.random.SeedSequence, n_trials: int, slots: int, *,
                         p_not_evaluable: float = 0.0) -> LatentPatients:
    """Latent uniforms for ``n_trials`` trials of up to ``slots`` patients, from one seed sequence.

    With ``p_not_evaluable`` > 0 each slot's patient is not DLT-evaluable with that probability (a
    fourth uniform, drawn after the others) and :data:`REPLACEMENT_SLOTS` times the slots are drawn,
    for the replacements; with 0 the draws are exactly those without the option.
    """
    rng = np.random.default_rng(seed)
    drawn = slots * (REPLACEMENT_SLOTS if p_not_evaluable > 0 else 1)
    toxicity, response, arrival = (rng.uniform(size=(n_trials, drawn)) for _ in range(3))
    evaluable = rng.uniform(size=(n_trials, drawn)) >= p_not_evaluable if p_not_evaluable > 0 else None
    onset = rng.uniform(size=(n_trials, drawn))
    return LatentPatients(toxicity, response, arrival, evaluable, onset)


def arrival_days(scenario: Scenario, arrival_uniforms: np.ndarray) -> np.ndarray:
    """Arrival day of each patient slot: fixed gaps, or exponential gaps of a Poisson stream."""
    if scenario.accrual_gap_days is not None:
        gaps = np.full(arrival_uniforms.shape, scenario.accrual_gap_days)
    else:
        rate_per_day = scenario.accrual_patients_per_month / DAYS_PER_MONTH
        gaps = -np.log(np.maximum(arrival_uniforms, 1e-300)) / rate_per_day
    days = np.cumsum(gaps, axis=-1)
    return days - days[..., :1]  # the first patient arrives on day 0
