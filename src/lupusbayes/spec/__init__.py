"""Trial specifications: what a trial is, as validated data.

* :mod:`~lupusbayes.spec.schema`: the dataclasses of a spec (``TrialSpec`` and its parts);
* :mod:`~lupusbayes.spec.settings`: model priors, sampler settings and the convergence gate;
* :mod:`~lupusbayes.spec.parse`: reading and validating TOML (:func:`load_spec`).

This layer imports only :mod:`lupusbayes.dosing` and :mod:`lupusbayes.errors`; models, fitting
and decisions read it, never the reverse.
"""

from lupusbayes.spec.parse import SHIPPED_SPECS, load_spec, parse_spec, shipped_spec_path
from lupusbayes.spec.schema import (
    DESIGNS,
    TIME_TO_EVENT_DESIGNS,
    FIELD_UNITS,
    Boin12DecisionSettings,
    BoinSettings,
    CrmSettings,
    TiteBoinSettings,
    DecisionSettings,
    EfficacyRuleSettings,
    LossSettings,
    DLTDefinition,
    DoseObservation,
    DosingSpec,
    EfficacySpec,
    EligibilityCriterion,
    EscalationRules,
    ModelSpecs,
    ToxicityIntervals,
    TrialInfo,
    TrialSpec,
)
from lupusbayes.spec.settings import (
    HETEROGENEITY_PRESETS,
    BivariateNormalMixture,
    BivariateNormalPrior,
    CodataPriors,
    ConvergenceGate,
    FitSettings,
    Heterogeneity,
    LogNormalPrior,
    ResponseModelSettings,
    SledaiModelSettings,
    ToxicityModelSettings,
)

__all__ = [
    "TrialSpec",
    "CodataPriors",
    "TrialInfo",
    "DosingSpec",
    "DLTDefinition",
    "ToxicityIntervals",
    "EscalationRules",
    "DecisionSettings",
    "EfficacyRuleSettings",
    "LossSettings",
    "Boin12DecisionSettings",
    "BoinSettings",
    "CrmSettings",
    "TiteBoinSettings",
    "DESIGNS",
    "TIME_TO_EVENT_DESIGNS",
    "EfficacySpec",
    "EligibilityCriterion",
    "DoseObservation",
    "ModelSpecs",
    "FIELD_UNITS",
    "load_spec",
    "parse_spec",
    "shipped_spec_path",
    "SHIPPED_SPECS",
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
]
