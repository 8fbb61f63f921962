"""lupusbayes: Bayesian dose-toxicity and dose-efficacy modelling for NK / CAR-NK trials in lupus.

The public API, in pipeline order::

    import lupusbayes as lb

    cohort = lb.load_kn5601()                 # data: the shipped KN5601 cohort
    spec = lb.load_spec("kn5601")             # the trial spec (models/kn5601.toml)
    report = lb.screen(cohort.patients, spec) # eligibility
    crs = lb.fit(lb.CRSModel(cohort, spec), seed=1)       # models + fitting
    crs.dose_summary()                        # P(CRS >= g) and P(DLT) per dose
    decision = lb.recommend("axa_nk02", "trial_state.csv")  # the next dose group, fitting what it needs
    lb.src_report("axa_nk02", "trial_state.csv", out="src.html")  # the SRC report, in one call

Importing ``lupusbayes`` does not import PyMC; the model and fitting names load it on first use.
"""

from __future__ import annotations

from importlib import import_module

from lupusbayes._version import __version__
from lupusbayes.cohort import Cohort, cohort_from_frame, load_cohort, load_kn5601
from lupusbayes.dosing import (
    DoseUnit,
    LMSWeightReference,
    WeightTierSchedule,
    cells_per_kg_distribution,
    convert_dose,
)
from lupusbayes.eligibility import ScreeningReport, screen
from lupusbayes.endpoints import RESPONSE_DEFINITIONS, add_response_flags
from lupusbayes.errors import (
    CohortError,
    ConvergenceGateError,
    DecisionError,
    DosingError,
    FitFileError,
    LupusBayesError,
    ModelSetupError,
    OutputExistsError,
    OutputPathError,
    SpecError,
)
from lupusbayes.spec import (
    BivariateNormalPrior,
    ConvergenceGate,
    FitSettings,
    Heterogeneity,
    LogNormalPrior,
    SledaiModelSettings,
    ToxicityIntervals,
    ToxicityModelSettings,
    TrialSpec,
    load_spec,
    parse_spec,
)
from lupusbayes.summary import CohortSummary, summarise_cohort

# Names that need PyMC / ArviZ: imported on first attribute access.
_LAZY = {
    "ToxicityModel": "lupusbayes.models.toxicity",
    "CRSModel": "lupusbayes.models.toxicity",
    "BLRM": "lupusbayes.models.toxicity",
    "SledaiModel": "lupusbayes.models.sledai",
    "fit": "lupusbayes.fitting",
    "FitResult": "lupusbayes.fitting",
    "load_fit": "lupusbayes.fitting",
    "compare_models": "lupusbayes.fitting",
    "DesignCache": "lupusbayes.fitting",
    "recommend": "lupusbayes.workflow",
    "src_report": "lupusbayes.workflow",
    "decision_inputs": "lupusbayes.workflow",
    "FitCache": "lupusbayes.fitting.fitcache",
}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'lupusbayes' has no attribute '{name}'")


__all__ = [
    "__version__",
    "Cohort",
    "CohortSummary",
    "load_kn5601",
    "load_cohort",
    "cohort_from_frame",
    "summarise_cohort",
    "add_response_flags",
    "RESPONSE_DEFINITIONS",
    "DoseUnit",
    "LMSWeightReference",
    "WeightTierSchedule",
    "cells_per_kg_distribution",
    "convert_dose",
    "TrialSpec",
    "load_spec",
    "parse_spec",
    "screen",
    "ScreeningReport",
    "BivariateNormalPrior",
    "LogNormalPrior",
    "Heterogeneity",
    "ToxicityModelSettings",
    "ToxicityIntervals",
    "SledaiModelSettings",
    "FitSettings",
    "ConvergenceGate",
    "LupusBayesError",
    "CohortError",
    "SpecError",
    "DosingError",
    "ModelSetupError",
    "FitFileError",
    "OutputExistsError",
    "OutputPathError",
    "ConvergenceGateError",
    "DecisionError",
    *_LAZY,
]
