"""Model settings and priors as frozen dataclasses (no PyMC import here).

These are the *data* of a model: the spec file's ``[model.*]`` tables are parsed into them,
and the Python API accepts them directly. Every scale is a standard deviation (never a
variance) and every log-normal is given by its median and the SD of its log.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Literal

import numpy as np

__all__ = [
    "BivariateNormalPrior",
    "BivariateNormalMixture",
    "LogNormalPrior",
    "Heterogeneity",
    "HETEROGENEITY_PRESETS",
    "ToxicityModelSettings",
    "SledaiModelSettings",
    "ResponseModelSettings",
    "FitSettings",
    "ConvergenceGate",
    "ToxicityOutcome",
    "Hierarchy",
    "DoseResponse",
    "CodataPriors",
]

ToxicityOutcome = Literal["crs_grade", "dlt", "crs_any"]
Hierarchy = Literal["auto", "none", "exchangeable", "exnex"]
DoseResponse = Literal["log_linear", "emax"]


@dataclass(frozen=True)
class BivariateNormalPrior:
    """Bivariate normal prior on ``(log a, log b)`` of a BLRM: means, SDs, correlation.

    ``log a`` is the log-odds of the event at the reference dose; ``b = exp(log b)`` is the
    slope on ``log(dose / reference_dose)``.
    """

    mean_log_a: float
    mean_log_b: float
    sd_log_a: float
    sd_log_b: float
    correlation: float = 0.0

    def __post_init__(self) -> None:
        if not (self.sd_log_a > 0 and self.sd_log_b > 0):
            raise ValueError("prior SDs must be positive")
        if not -1 < self.correlation < 1:
            raise ValueError("prior correlation must be strictly between -1 and 1")

    @property
    def mean(self) -> np.ndarray:
        return np.array([self.mean_log_a, self.mean_log_b])

    @property
    def components(self) -> tuple[BivariateNormalPrior, ...]:
        """As a one-component mixture (so code may treat both kinds of prior alike)."""
        return (self,)

    @property
    def weights(self) -> tuple[float, ...]:
        return (1.0,)

    @property
    def covariance(self) -> np.ndarray:
        sd = np.array([self.sd_log_a, self.sd_log_b])
        correlation = np.array([[1.0, self.correlation], [self.correlation, 1.0]])
        return correlation * np.outer(sd, sd)

    @property
    def cholesky(self) -> np.ndarray:
        return np.linalg.cholesky(self.covariance)


@dataclass(frozen=True)
class BivariateNormalMixture:
    """A mixture of bivariate normal priors on ``(log a, log b)``, e.g. a meta-analytic
    predictive prior summarising what co-data imply for a new trial."""

    weights: tuple[float, ...]
    components: tuple[BivariateNormalPrior, ...]

    def __post_init__(self) -> None:
        if len(self.weights) != len(self.components) or not self.components:
            raise ValueError("a mixture needs one weight per component and at least one component")
        if any(w <= 0 for w in self.weights) or not math.isclose(sum(self.weights), 1.0, rel_tol=1e-9):
            raise ValueError("mixture weights must be positive and sum to 1")

    @property
    def mean(self) -> np.ndarray:
        return sum(w * c.mean for w, c in zip(self.weights, self.components, strict=True))

    def describe(self) -> str:
        """One line: ``0.9 x N(log a: -2.9, sd 1.5; log b: 0, sd 0.8; correlation 0) + ...``."""
        return " + ".join(f"{w:g} x N(log a: {c.mean_log_a:g}, sd {c.sd_log_a:g}; log b: {c.mean_log_b:g}, "
                          f"sd {c.sd_log_b:g}; correlation {c.correlation:g})"
                          for w, c in zip(self.weights, self.components, strict=True))


@dataclass(frozen=True)
class LogNormalPrior:
    """Log-normal prior given by its median and the SD of its log."""

    median: float
    log_sd: float

    def __post_init__(self) -> None:
        if not (self.median > 0 and self.log_sd > 0):
            raise ValueError("a log-normal prior needs a positive median and log_sd")

    @property
    def mu(self) -> float:
        return math.log(self.median)


#: Between-study heterogeneity presets (median tau for log a, log b), after Neuenschwander et
#: al. (2016, Pharm Stat 15:123): the tau prior is log-normal with log-SD log(2)/1.96, so 95%
#: of its mass is within a factor of 2 of the median.
HETEROGENEITY_PRESETS: dict[str, tuple[float, float]] = {
    "small": (0.125, 0.0625),
    "moderate": (0.25, 0.125),
    "substantial": (0.5, 0.25),
    "large": (1.0, 0.5),
}
_DEFAULT_TAU_LOG_SD = math.log(2.0) / 1.96


@dataclass(frozen=True)
class Heterogeneity:
    """Prior on between-study SDs ``tau`` of ``(log a, log b)``: how much studies may differ.

    Larger tau = less borrowing. ``tau_k ~ LogNormal(log(median_k), log_sd)``.
    """

    median_tau_log_a: float = HETEROGENEITY_PRESETS["substantial"][0]
    median_tau_log_b: float = HETEROGENEITY_PRESETS["substantial"][1]
    log_sd: float = _DEFAULT_TAU_LOG_SD

    @classmethod
    def preset(cls, name: str) -> Heterogeneity:
        if name not in HETEROGENEITY_PRESETS:
            raise ValueError(f"unknown heterogeneity preset '{name}' (use one of {sorted(HETEROGENEITY_PRESETS)})")
        tau_a, tau_b = HETEROGENEITY_PRESETS[name]
        return cls(tau_a, tau_b)

    def __post_init__(self) -> None:
        if not (self.median_tau_log_a > 0 and self.median_tau_log_b > 0 and self.log_sd > 0):
            raise ValueError("heterogeneity medians and log_sd must be positive")


def _default_toxicity_prior() -> BivariateNormalPrior:
    # P(CRS >= 1) at the reference dose centred on 0.3 (logit -0.85) with SD 1.5 on the logit
    # scale (95%: 0.05-0.89); slope b centred on 1 (doubling the dose doubles the odds),
    # SD 1 on log b. See docs/models.md for the prior predictive check.
    return BivariateNormalPrior(mean_log_a=-0.85, mean_log_b=0.0, sd_log_a=1.5, sd_log_b=1.0)


@dataclass(frozen=True)
class ToxicityModelSettings:
    """Dose-toxicity model: cumulative-logit ordinal CRS, or a binary BLRM.

    With ``outcome="crs_grade"`` the model is ``logit P(CRS >= g) = log a - c_g + b x`` with
    ``x = log(dose / reference_dose)``, ``c_1 = 0 < c_2 < ...`` (shared grade gaps), ``b > 0``.
    With ``outcome="dlt"`` (or ``"crs_any"``) it is the standard BLRM
    ``logit p = log a + b x``, ``(log a, log b) ~ BVN(prior)``. ``prior`` may be a
    :class:`BivariateNormalMixture` (``[[model.blrm.prior.components]]``, e.g. a robust mixture of
    :mod:`lupusbayes.prior_construction`); EXNEX then needs a bivariate normal ``nex_prior``.
    """

    outcome: ToxicityOutcome = "crs_grade"
    max_grade: int = 4
    dose_effect: bool = True
    prior: BivariateNormalPrior | BivariateNormalMixture = field(default_factory=_default_toxicity_prior)
    grade_gap: LogNormalPrior = field(default_factory=lambda: LogNormalPrior(median=2.0, log_sd=0.5))
    hierarchy: Hierarchy = "auto"
    heterogeneity: Heterogeneity = field(default_factory=Heterogeneity)
    nex_prior: BivariateNormalPrior | None = None
    p_exchangeable: Mapping[str, float] = field(default_factory=dict)
    default_p_exchangeable: float = 0.8

    def __post_init__(self) -> None:
        if self.outcome not in ("crs_grade", "dlt", "crs_any"):
            raise ValueError(f"outcome must be 'crs_grade', 'dlt' or 'crs_any' (got '{self.outcome}')")
        if not 1 <= self.max_grade <= 5:
            raise ValueError(f"max_grade must be 1-5 (ASTCT CRS grades), got {self.max_grade}")
        if self.hierarchy not in ("auto", "none", "exchangeable", "exnex"):
            raise ValueError(f"hierarchy must be auto, none, exchangeable or exnex (got '{self.hierarchy}')")
        for study, weight in {**self.p_exchangeable, "default": self.default_p_exchangeable}.items():
            if not 0 <= weight <= 1:
                raise ValueError(f"p_exchangeable for {study} must be between 0 and 1 (got {weight})")

    @property
    def n_thresholds(self) -> int:
        """Number of cumulative logits modelled (1 for a binary outcome)."""
        return self.max_grade if self.outcome == "crs_grade" else 1

    @property
    def nex(self) -> BivariateNormalPrior | BivariateNormalMixture:
        """The NEX prior: ``nex_prior``, else ``prior`` (a mixture there is refused by the EXNEX model)."""
        return self.nex_prior or self.prior

    def exchangeability(self, study_id: str) -> float:
        return float(self.p_exchangeable.get(study_id, self.default_p_exchangeable))

    def replace(self, **changes) -> ToxicityModelSettings:
        return replace(self, **changes)


@dataclass(frozen=True)
class SledaiModelSettings:
    """SLEDAI-2K model: rounded, censored normal on 0-105 around a shrinking baseline.

    For patient *i* at month *t*: latent mean ``baseline_i * (1 - r_i * (1 - exp(-t / onset)))``
    with plateau fraction ``logit r_i = eta(dose_i) + dose-group effect + patient effect``;
    the observed score is the latent score rounded and censored to 0-105.
    ``eta`` is log-linear (``intercept + slope * x``) or Emax (``intercept + emax * d / (d + ed50)``
    on the logit scale). With ``monotone = True`` (the default) the slope / emax is half-normal, so
    efficacy cannot fall with dose; with ``False`` it is normal with the same scale, so the data
    decide the sign (compare the two by PSIS-LOO: the constraint is an assumption).
    """

    dose_response: DoseResponse = "log_linear"
    monotone: bool = True
    intercept: tuple[float, float] = (0.0, 1.5)
    slope_scale: float = 1.0
    emax_scale: float = 3.0
    ed50_relative: LogNormalPrior = field(default_factory=lambda: LogNormalPrior(median=1.0, log_sd=1.0))
    onset_months: LogNormalPrior = field(default_factory=lambda: LogNormalPrior(median=1.5, log_sd=0.6))
    patient_sd_scale: float = 1.0
    dose_group_sd_scale: float = 0.3
    residual_sd: LogNormalPrior = field(default_factory=lambda: LogNormalPrior(median=2.5, log_sd=0.5))
    study_sd: LogNormalPrior = field(default_factory=lambda: LogNormalPrior(median=0.5, log_sd=0.5))

    def __post_init__(self) -> None:
        if self.dose_response not in ("log_linear", "emax"):
            raise ValueError(f"dose_response must be 'log_linear' or 'emax' (got '{self.dose_response}')")
        if not self.intercept[1] > 0:
            raise ValueError("the intercept prior SD must be positive")
        for name in ("slope_scale", "emax_scale", "patient_sd_scale"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive")
        if self.dose_group_sd_scale < 0:
            raise ValueError("dose_group_sd_scale must be >= 0 (0 switches dose-group effects off)")

    def replace(self, **changes) -> SledaiModelSettings:
        return replace(self, **changes)


def _default_response_prior() -> BivariateNormalPrior:
    # logit P(response) at the reference dose: median 0.4 (a month-1 SRI-4 SLEDAI component
    # after CAR-T / CAR-NK therapy), 95% range 0.05-0.92; slope median 1, as the DLT prior
    return BivariateNormalPrior(mean_log_a=-0.405, mean_log_b=0.0, sd_log_a=1.5, sd_log_b=0.8)


@dataclass(frozen=True)
class ResponseModelSettings:
    """The binary response model the trial simulator decides with (``[model.response]``).

    ``logit P(response) = log a + b log(d / d*)`` for the response of ``[decision.efficacy]`` at
    its month, ``(log a, log b) ~ BVN(prior)``: a BLRM on responder counts, so its posterior is
    exact by quadrature. Real decisions use the SLEDAI-2K model; the simulator needs a model it
    can update thousands of times (docs/simulation.md).
    """

    prior: BivariateNormalPrior = field(default_factory=_default_response_prior)


@dataclass(frozen=True)
class ConvergenceGate:
    """Thresholds a fit must meet before its posterior may drive a decision."""

    rhat_max: float = 1.01
    ess_bulk_min: float = 400.0
    ess_tail_min: float = 400.0
    divergences_max: int = 0
    bfmi_min: float = 0.3


@dataclass(frozen=True)
class FitSettings:
    """MCMC settings. ``retry_target_accept`` is used once if the first run diverged."""

    draws: int = 1000
    tune: int = 1000
    chains: int = 4
    cores: int | None = None
    target_accept: float = 0.9
    retry_target_accept: float = 0.99
    sampler: Literal["pymc", "nutpie"] = "pymc"
    gate: ConvergenceGate = field(default_factory=ConvergenceGate)

    def __post_init__(self) -> None:
        if self.draws < 10 or self.tune < 0 or self.chains < 1:
            raise ValueError("draws must be >= 10, tune >= 0 and chains >= 1")
        for name in ("target_accept", "retry_target_accept"):
            if not 0.5 <= getattr(self, name) < 1:
                raise ValueError(f"{name} must be in [0.5, 1)")
        if self.sampler not in ("pymc", "nutpie"):
            raise ValueError(f"sampler must be 'pymc' or 'nutpie' (got '{self.sampler}')")

    def replace(self, **changes) -> FitSettings:
        return replace(self, **changes)


@dataclass(frozen=True)
class CodataPriors:
    """The priors of the target study's toxicity and response BLRMs given its co-data, with their checks.

    Derived by :func:`lupusbayes.fitting.codata.codata_priors` (the robust MAP prior of an EXNEX fit of the
    co-data, and the response prior matched to the SLEDAI-2K model); the simulator's exact posteriors
    use them so that simulated trials decide from what real decisions know.

    ``checks`` holds, per model, the convergence gate of the fit behind the prior and the largest
    difference between the fitted draws and the mixture in the probabilities the designs read.
    """

    toxicity: BivariateNormalMixture
    response: BivariateNormalMixture
    source: str
    checks: dict = field(default_factory=dict, compare=False, hash=False)
    #: the response at ``[decision.efficacy] final_month`` (the final selection's utility); None: ``response``
    response_final: BivariateNormalMixture | None = None

    def describe(self) -> dict:
        """JSON-ready: the mixtures' numbers (what a simulation plan's fingerprint records) and the checks."""
        def mixture(prior):
            return {"weights": [round(float(w), 10) for w in prior.weights],
                    "components": [[round(float(v), 10) for v in (c.mean_log_a, c.mean_log_b, c.sd_log_a, c.sd_log_b,
                                                                   c.correlation)] for c in prior.components]}

        return {"source": self.source, "toxicity": mixture(self.toxicity), "response": mixture(self.response),
                "response_final": None if self.response_final is None else mixture(self.response_final),
                "checks": self.checks}
