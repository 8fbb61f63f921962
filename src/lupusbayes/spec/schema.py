"""What a trial spec holds: frozen dataclasses, validated by :mod:`lupusbayes.spec.parse`.

A spec states what the trial *is*: dose levels and their unit, the DLT window and definition
with the toxicity intervals its probabilities are read against, the cohort rules, the
efficacy summaries, the eligibility criteria with numeric limits, and, optionally, the priors
and MCMC settings of its models (:mod:`lupusbayes.spec.settings`). Everything here is data;
nothing imports PyMC, and nothing above the data layer is imported.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lupusbayes.dosing import DoseUnit, WeightTierSchedule
from lupusbayes.spec.settings import FitSettings, ResponseModelSettings, SledaiModelSettings, ToxicityModelSettings

__all__ = [
    "TrialSpec",
    "TrialInfo",
    "DosingSpec",
    "DLTDefinition",
    "ToxicityIntervals",
    "EscalationRules",
    "DecisionSettings",
    "EfficacyRuleSettings",
    "LossSettings",
    "BoinSettings",
    "DESIGNS",
    "RESPONSES",
    "EfficacySpec",
    "EligibilityCriterion",
    "DoseObservation",
    "ModelSpecs",
    "FIELD_UNITS",
]

#: Units of the patient fields that eligibility criteria may test. A criterion on one of these
#: fields must state the same unit; other (custom) fields accept any unit.
FIELD_UNITS: dict[str, str] = {
    "age_years": "years",
    "disease_duration_years": "years",
    "weight_kg": "kg",
    "sledai_baseline": "points",
    "upcr_g_per_g": "g/g",
    "urine_protein_g_per_24h": "g/24h",
    "egfr_ml_per_min_per_1_73m2": "mL/min/1.73m2",
    "ast_times_uln": "x ULN",
    "alt_times_uln": "x ULN",
    "total_bilirubin_times_uln": "x ULN",
    "creatinine_umol_per_l": "umol/L",
    "bilirubin_umol_per_l": "umol/L",
    "neutrophils_10e9_per_l": "10^9/L",
    "platelets_10e9_per_l": "10^9/L",
    "hemoglobin_g_per_l": "g/L",
    "biopsy_months_before_screening": "months",
}


# --------------------------------------------------------------------------------------------
# Spec dataclasses
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TrialInfo:
    id: str
    title: str = ""
    product: str = ""
    population: str = ""
    phase: str = ""
    source: str = ""


@dataclass(frozen=True)
class DosingSpec:
    """Dose levels (strictly increasing, positive) in one unit, and the reference dose d*.

    Levels and the reference dose are *per infusion*, as protocols state them. ``dose_metric``
    says what the models relate outcomes to: ``"per_infusion"`` (the level itself) or
    ``"per_course"`` (the level times the number of infusions a patient received). It matters
    when studies with different schedules are modelled together (KN5601 gave six infusions,
    AXA-NK02 four): per course, a KN5601 patient's exposure is 6/4 of an AXA-NK02 patient's at
    the same per-infusion dose. Infusion counts come from the cohort's ``n_infusions`` column,
    else ``infusions_by_study``, else (for this trial's own patients) ``infusions_per_patient``.
    """

    unit: DoseUnit
    levels: tuple[float, ...]
    reference_dose: float
    starting_level: int = 1
    infusions_per_patient: int = 1
    weight_tiers: WeightTierSchedule | None = None
    dose_metric: str = "per_infusion"
    infusions_by_study: Mapping[str, int] = field(default_factory=dict)

    def level_index(self, dose: float, *, relative_tolerance: float = 1e-6) -> int | None:
        """0-based index of ``dose`` among the levels, or None if it is not a level."""
        for index, level in enumerate(self.levels):
            if math.isclose(dose, level, rel_tol=relative_tolerance):
                return index
        return None


@dataclass(frozen=True)
class ToxicityIntervals:
    """Named intervals of P(DLT) that escalation rules read, e.g. EWOC's overdose interval.

    ``edges`` increase from 0 to 1; interval *k* is ``[edges[k], edges[k+1])`` and the last one
    is closed at 1. ``names`` label the intervals in every table and message; ``overdose`` names
    the interval whose posterior probability the escalation-with-overdose-control rule limits
    (the last one unless the spec says otherwise).
    """

    edges: tuple[float, ...]
    names: tuple[str, ...]
    overdose: str

    def __post_init__(self) -> None:
        edges = self.edges
        if len(edges) < 2 or edges[0] != 0.0 or edges[-1] != 1.0 or any(b <= a for a, b in zip(edges, edges[1:])):
            raise ValueError("interval edges must increase from 0 to 1, e.g. [0, 0.1, 0.2, 1]")
        if len(self.names) != len(edges) - 1:
            raise ValueError(f"{len(edges) - 1} intervals need {len(edges) - 1} names (got {len(self.names)})")
        if len(set(self.names)) != len(self.names) or not all(name.strip() for name in self.names):
            raise ValueError("interval names must be non-empty and distinct")
        if self.overdose not in self.names:
            raise ValueError(f"overdose interval '{self.overdose}' is not one of the names ({', '.join(self.names)})")

    @classmethod
    def oncology(cls) -> ToxicityIntervals:
        """The oncology convention (Neuenschwander 2008; OncoBayes2): [0, .16) / [.16, .33) / [.33, 1]."""
        return cls((0.0, 0.16, 0.33, 1.0), ("underdosing", "target toxicity", "overdosing"), "overdosing")

    @property
    def bounds(self) -> list[tuple[float, float]]:
        return list(zip(self.edges[:-1], self.edges[1:], strict=True))

    @property
    def overdose_index(self) -> int:
        return self.names.index(self.overdose)

    @property
    def overdose_threshold(self) -> float:
        """The lower edge of the overdose interval (P(DLT) above it counts as overdosing)."""
        return self.edges[self.overdose_index]

    def label(self, index: int) -> str:
        """``'overdosing [0.33, 1]'``: the name with its interval."""
        low, high = self.bounds[index]
        closing = "]" if high >= 1.0 else ")"
        return f"{self.names[index]} [{low:g}, {high:g}{closing}"

    def indicators(self, p_dlt) -> np.ndarray:
        """Which interval each value of P(DLT) falls in: booleans, shape ``p_dlt.shape + (k,)``."""
        values = np.asarray(p_dlt, dtype=float)
        index = np.clip(np.searchsorted(np.asarray(self.edges), values, side="right") - 1, 0, len(self.names) - 1)
        return index[..., None] == np.arange(len(self.names))


@dataclass(frozen=True)
class DLTDefinition:
    """What counts as a dose-limiting toxicity, within which window.

    ``crs_grade_at_least`` and ``icans_grade_at_least`` are the parts a model can compute
    from CRS / ICANS grades; ``definition`` lists every component in words.
    """

    window_days: int
    definition: tuple[str, ...]
    crs_grade_at_least: int | None = 3
    icans_grade_at_least: int | None = None
    intervals: ToxicityIntervals = field(default_factory=ToxicityIntervals.oncology)

    def dlt_status(self, crs_grade, icans_grade=None, recorded=None) -> np.ndarray:
        """Each patient's DLT (bool array): the recorded status where given, otherwise derived.

        Derived: CRS grade >= ``crs_grade_at_least`` or ICANS grade >= ``icans_grade_at_least``
        (thresholds that are None count for nothing; a missing ICANS grade, NaN, adds nothing).
        ``recorded`` holds 1 / 0, or NaN where the DLT status was not recorded.
        """
        grades = np.asarray(crs_grade, dtype=int)
        derived = np.zeros(grades.shape, dtype=bool)
        if self.crs_grade_at_least is not None:
            derived |= grades >= self.crs_grade_at_least
        if self.icans_grade_at_least is not None and icans_grade is not None:
            derived |= np.nan_to_num(np.asarray(icans_grade, dtype=float), nan=0.0) >= self.icans_grade_at_least
        if recorded is None:
            return derived
        recorded = np.asarray(recorded, dtype=float)
        return np.where(np.isnan(recorded), derived, recorded > 0)

    def basis(self, *, n_recorded: int, n_derived: int, icans_known: bool, n_aggregate: int = 0) -> str:
        """What a P(DLT) computed from these patients rests on, in words (said with every P(DLT)).

        ``n_recorded`` patients have a recorded DLT status (assessed against the whole
        definition); for ``n_derived`` others it is derived from the CRS (and, when
        ``icans_known``, ICANS) thresholds, and the components that cannot be derived are named
        as *not recorded* (the text then contains " only:"). ``n_aggregate``: patients behind
        aggregate DLT counts (``[[observations]]``, counts files, outcome strings).
        """
        parts = []
        if n_aggregate:
            parts.append(f"from DLT counts of {n_aggregate} patients (each assessed against the full definition)")
        if n_recorded and not n_derived:
            parts.append(f"from the recorded DLT status of all {n_recorded} patients (assessed against the full "
                         "definition)")
        elif n_derived:
            if n_recorded:
                parts.append(f"from the recorded DLT status of {n_recorded} patients")
            derived_from = [f"CRS >= {self.crs_grade_at_least}"] if self.crs_grade_at_least is not None else []
            missing = []
            if self.icans_grade_at_least is not None:
                if icans_known:
                    derived_from.append(f"ICANS >= {self.icans_grade_at_least}")
                else:
                    missing.append("ICANS")
            computable = (self.crs_grade_at_least is not None) + (self.icans_grade_at_least is not None)
            if len(self.definition) > computable:
                missing.append("other adverse events")
            who = f"for the other {n_derived} patients " if n_recorded else ""
            text = f"{who}from {' and '.join(derived_from) or 'nothing'}"
            if missing:
                text += f" only: {' and '.join(missing)} not recorded"
            parts.append(text)
        return "P(DLT) " + "; ".join(parts) if parts else ""


@dataclass(frozen=True)
class EscalationRules:
    """The trial's cohort rules, as its protocol states them (``[escalation]``).

    The decision module turns each into a rule of its own (:mod:`lupusbayes.decisions.rules`):
    groups of ``group_size``; the first ``sentinel_patients`` of a new dose alone until they
    have ``sentinel_safety_days`` of safety data; no new group until every patient of the
    current one has ``group_safety_days_before_next``; at most one level up unless
    ``allow_skipping``; escalation after an inefficacious sentinel if
    ``efficacy_driven_escalation``; at most ``max_patients``. ``pause_crs_grade_at_least`` and
    ``pause_icans_grade_at_least`` name events short of a DLT that pause dosing as a DLT does
    (while the patient is inside the DLT window nobody else is dosed, and in a sentinel the SRC
    reviews it); None: only DLTs pause.
    """

    group_size: int = 3
    sentinel_patients: int = 0
    sentinel_safety_days: int = 0
    group_safety_days_before_next: int = 28
    allow_skipping: bool = False
    efficacy_driven_escalation: bool = False
    max_patients: int | None = None
    pause_crs_grade_at_least: int | None = None
    pause_icans_grade_at_least: int | None = None

    def pausing(self, dlt: bool, crs_grade: int | None, icans_grade: int | None) -> bool:
        """A DLT, or an event the spec names as pausing (a CRS or ICANS grade at least the pause threshold)."""
        crs = self.pause_crs_grade_at_least
        icans = self.pause_icans_grade_at_least
        return bool(dlt or (crs is not None and crs_grade is not None and crs_grade >= crs)
                    or (icans is not None and icans_grade is not None and icans_grade >= icans))


DESIGNS = ("lupusbayes", "blrm_ewoc", "blrm_loss", "boin", "3+3", "crm", "tite_crm", "boin12", "tite_boin")
#: Designs that dose while patients are inside the DLT window, weighting their follow-up: the explicit
#: exception to the DLT window rule (docs/decisions.md, "Time-to-event designs")
TIME_TO_EVENT_DESIGNS = ("tite_crm", "tite_boin")
RESPONSES = ("sri4_sledai_component", "lldas_sledai_proxy", "doris_sledai_proxy")


@dataclass(frozen=True)
class LossSettings:
    """crmPack-style loss-based dose choice: a loss per interval of P(DLT) (``[decision.loss]``).

    The next dose minimises the posterior expected loss ``sum_k losses[k] * P(interval k)``
    among doses whose probability of the ``overdose_from``-and-above intervals is at most
    ``max_overdose_probability`` (crmPack ``NextBestNCRMLoss``; its default intervals and losses).
    """

    edges: tuple[float, ...] = (0.0, 0.2, 0.35, 0.6, 1.0)
    losses: tuple[float, ...] = (1.0, 0.0, 1.0, 2.0)
    overdose_from: float = 0.35
    max_overdose_probability: float = 0.25


@dataclass(frozen=True)
class BoinSettings:
    """BOIN's settings (``[decision.boin]``; Liu & Yuan 2015, BOIN 2.7.2 defaults)."""

    target: float = 0.3
    p_saf: float | None = None  # default 0.6 * target
    p_tox: float | None = None  # default 1.4 * target
    cutoff_eliminate: float = 0.95


@dataclass(frozen=True)
class CrmSettings:
    """The CRM and the TITE-CRM (``[decision.crm]``; O'Quigley, Pepe & Fisher 1990; Cheung & Chappell
    2000; the R package dfcrm).

    ``model``: ``"empiric"`` (p_d = skeleton_d ^ exp(beta)) or ``"logistic"`` (logit p_d = intercept +
    exp(beta) x_d); beta ~ Normal(0, ``prior_sd``^2) (dfcrm's default variance 1.34, so SD 1.158).
    ``skeleton``: the prior guesses of P(DLT) per level; when not given, dfcrm's ``getprior``
    (Lee & Cheung 2009) builds it from ``skeleton_halfwidth`` (the indifference interval is target
    +/- halfwidth) and ``prior_mtd_level`` (counted from 1; default the middle level, of two the lower).
    ``stop_probability``: stop with no dose when P(P(DLT) at the lowest level > target) >= this
    (``escalation``'s ``stop_when_too_toxic``; None: never). ``coherent_escalation``: no escalation
    right after a cohort whose DLT fraction is at least the target (dfcrm ``crmsim``'s ``restrict``;
    the CRM only). ``tite_weights``: the TITE-CRM's weights for patients inside the window without a
    DLT, ``"linear"`` (follow-up / window) or ``"adaptive"`` (Cheung & Chappell 2000: the empirical
    distribution of the DLT days observed so far, interpolated; it reads each DLT's day, the state's
    ``dlt_day`` or ``dlt_date``, and refuses a DLT without it while a patient is inside the window).
    """

    target: float = 0.25
    model: str = "empiric"
    skeleton: tuple[float, ...] | None = None
    skeleton_halfwidth: float = 0.05
    prior_mtd_level: int | None = None
    prior_sd: float = math.sqrt(1.34)
    intercept: float = 3.0
    stop_probability: float | None = 0.9
    coherent_escalation: bool = True
    tite_weights: str = "linear"


@dataclass(frozen=True)
class Boin12DecisionSettings:
    """BOIN12, the utility-based phase I/II design (``[decision.boin12]``; Lin, Zhou, Yan, Li & Yuan 2020).

    ``target_toxicity`` (phi_T) is the highest acceptable P(DLT) and ``efficacy_lower_limit`` (phi_E)
    the lowest acceptable P(response) (the response of ``[decision.efficacy]`` at its ``month``); the
    four utilities (0-100) score a response without a DLT, neither, both, and a DLT without a response,
    and must be additive (the published 100 / 40 / 60 / 0 are). ``stay_patients`` is N* ("stay if
    n >= N*"); ``toxicity_cutoff`` and ``futility_cutoff`` eliminate a level when P(p_DLT > phi_T) or
    P(p_response < phi_E) exceeds them. lupusbayes adds a safeguard: one more DLT never gives a
    higher level (docs/decisions.md).
    """

    target_toxicity: float = 0.35
    efficacy_lower_limit: float = 0.25
    utility_response_no_dlt: float = 100.0
    utility_no_response_no_dlt: float = 40.0
    utility_response_and_dlt: float = 60.0
    utility_dlt_no_response: float = 0.0
    stay_patients: int = 6
    toxicity_cutoff: float = 0.95
    futility_cutoff: float = 0.90


@dataclass(frozen=True)
class TiteBoinSettings:
    """TITE-BOIN (``[decision.tite_boin]``; Yuan, Lin, Li, Nie & Warren 2018): BOIN's boundaries of
    ``[decision.boin]``, the pending patients' DLTs imputed from their follow-up, and accrual suspended
    while more than ``max_pending_fraction`` of the current level's patients are inside the window."""

    max_pending_fraction: float = 0.5


@dataclass(frozen=True)
class EfficacyRuleSettings:
    """How efficacy enters decisions (``[decision.efficacy]``).

    *Clearly insufficient* (efficacy-driven escalation): the posterior probability that the
    response rate at the sentinel's dose, at ``month``, is below ``insufficient_rate`` is at
    least ``insufficient_probability``. The final selection maximises the utility
    ``P(response at final_month) - dlt_penalty * P(DLT)`` (posterior means) over doses that
    are admissible and were given.

    ``wait_for_response``: with efficacy-driven escalation, the sentinel's decision waits until
    its response at ``month`` is observable (day ``ceil(month x 30.4375)``) as well as its safety
    window, because the registration has the SRC judge "the efficacy and safety data of the first
    subject"; with ``False`` the decision falls at the end of the safety window and the rule says
    when the response will be known. The shortcut never acts on a response not yet observed.
    """

    response: str = "sri4_sledai_component"
    month: float = 1.0
    insufficient_rate: float = 0.3
    insufficient_probability: float = 0.8
    final_month: float = 3.0
    dlt_penalty: float = 2.0
    wait_for_response: bool = True

    @property
    def response_day(self) -> int:
        """The day after dosing from which the response at ``month`` is observed."""
        return math.ceil(self.month * 30.4375 - 1e-9)


@dataclass(frozen=True)
class DecisionSettings:
    """Which design decides, from which model, with which thresholds (``[decision]``).

    ``toxicity_model`` is the model whose P(DLT) the safety rules read: ``"blrm"`` (the default)
    models each patient's protocol DLT status (the ``dlt`` column, else derived from the CRS and
    ICANS thresholds), so every recorded DLT counts whatever caused it; ``"crs"`` reads P(DLT) as
    P(CRS >= ``dlt.crs_grade_at_least``) from the ordinal CRS model, which sees CRS only (a
    decision then refuses data holding a DLT that CRS does not explain, unless told otherwise).
    ``max_overdose_probability`` is EWOC's limit on the posterior probability of the spec's
    overdose interval (0.25: Babb et al. 1998; OncoBayes2's default); ``close_call_mcse`` is how
    many Monte Carlo standard errors from a threshold a probability must be for its verdict to
    count as settled (OncoBayes2's ``ewoc_check`` uses 1.96). ``min_patients_at_selection``: no
    design selects a level given to fewer patients (None: the group size).
    """

    design: str = "lupusbayes"
    toxicity_model: str = "blrm"
    max_overdose_probability: float = 0.25
    close_call_mcse: float = 2.0
    min_patients_at_selection: int | None = None
    efficacy: EfficacyRuleSettings = field(default_factory=EfficacyRuleSettings)
    loss: LossSettings = field(default_factory=LossSettings)
    boin: BoinSettings = field(default_factory=BoinSettings)
    crm: CrmSettings = field(default_factory=CrmSettings)
    boin12: Boin12DecisionSettings = field(default_factory=Boin12DecisionSettings)
    tite_boin: TiteBoinSettings = field(default_factory=TiteBoinSettings)


@dataclass(frozen=True)
class EfficacySpec:
    """Which months and which reference baseline the SLEDAI-2K summaries use."""

    months: tuple[float, ...] = (1.0, 3.0, 6.0)
    reference_sledai_baseline: int = 12


@dataclass(frozen=True)
class EligibilityCriterion:
    """One inclusion or exclusion criterion, stated as the *requirement to be eligible*.

    Exactly one rule is set: a numeric range (``min`` / ``max`` inclusive, ``greater_than`` /
    ``less_than`` strict), ``equals`` (yes/no or text), ``any_of_classes`` (ISN/RPS biopsy
    classes) or ``any_true`` (at least one of several yes/no fields). A criterion with no
    field is checked by the investigator and never failed automatically.
    """

    id: str
    kind: str
    text: str
    field: str | None = None
    unit: str | None = None
    min: float | None = None
    max: float | None = None
    greater_than: float | None = None
    less_than: float | None = None
    equals: bool | str | None = None
    any_of_classes: tuple[str, ...] | None = None
    any_true: tuple[str, ...] | None = None
    applies_when: Mapping[str, Any] | None = None

    @property
    def automatic(self) -> bool:
        return self.field is not None or self.any_true is not None

    def requirement(self) -> str:
        """Human-readable rule, e.g. ``age_years in [5, 35] years``."""
        unit = f" {self.unit}" if self.unit else ""
        if self.any_true:
            return "any of " + ", ".join(self.any_true) + " is yes"
        parts = []
        if self.min is not None:
            parts.append(f">= {self.min:g}")
        if self.greater_than is not None:
            parts.append(f"> {self.greater_than:g}")
        if self.max is not None:
            parts.append(f"<= {self.max:g}")
        if self.less_than is not None:
            parts.append(f"< {self.less_than:g}")
        if parts:
            return f"{self.field} " + " and ".join(parts) + unit
        if self.equals is not None:
            shown = ("yes" if self.equals else "no") if isinstance(self.equals, bool) else self.equals
            return f"{self.field} = {shown}"
        if self.any_of_classes:
            return f"{self.field} includes class " + " or ".join(self.any_of_classes)
        return "checked by the investigator"


@dataclass(frozen=True)
class DoseObservation:
    """Aggregate DLT counts at one dose (for BLRM checks against published examples)."""

    study_id: str
    dose: float
    n_patients: int
    n_dlt: int


@dataclass(frozen=True)
class ModelSpecs:
    crs: ToxicityModelSettings = field(default_factory=ToxicityModelSettings)
    blrm: ToxicityModelSettings = field(default_factory=lambda: ToxicityModelSettings(outcome="dlt"))
    sledai: SledaiModelSettings = field(default_factory=SledaiModelSettings)
    response: ResponseModelSettings = field(default_factory=ResponseModelSettings)


@dataclass(frozen=True)
class TrialSpec:
    """A validated trial specification. Load one with :func:`load_spec`."""

    trial: TrialInfo
    dosing: DosingSpec
    dlt: DLTDefinition
    escalation: EscalationRules
    efficacy: EfficacySpec
    decision: DecisionSettings
    eligibility: tuple[EligibilityCriterion, ...]
    models: ModelSpecs
    fitting: FitSettings
    observations: tuple[DoseObservation, ...] = ()
    source: str = "<spec>"
    text: str = field(default="", repr=False)

    @property
    def id(self) -> str:
        return self.trial.id

    def __repr__(self) -> str:
        levels = ", ".join(f"{level:g}" for level in self.dosing.levels)
        return (f"TrialSpec({self.trial.id}: {len(self.dosing.levels)} dose levels [{levels}] {self.dosing.unit.value}; "
                f"DLT window {self.dlt.window_days} days; {len(self.eligibility)} eligibility criteria; from {self.source})")

    @property
    def sha256(self) -> str:
        """Hash of the spec text; a saved fit records it to detect a changed spec."""
        return hashlib.sha256(self.text.encode("utf-8")).hexdigest()

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready summary (for ``lupusbayes spec check --json``)."""
        return {
            "id": self.trial.id,
            "title": self.trial.title,
            "source": self.source,
            "sha256": self.sha256,
            "dose_unit": self.dosing.unit.value,
            "dose_levels": list(self.dosing.levels),
            "reference_dose": self.dosing.reference_dose,
            "dlt_window_days": self.dlt.window_days,
            "dlt_definition": list(self.dlt.definition),
            "dlt_crs_grade_at_least": self.dlt.crs_grade_at_least,
            "dlt_icans_grade_at_least": self.dlt.icans_grade_at_least,
            "toxicity_intervals": {"edges": list(self.dlt.intervals.edges), "names": list(self.dlt.intervals.names),
                                   "overdose": self.dlt.intervals.overdose},
            "group_size": self.escalation.group_size,
            "sentinel_patients": self.escalation.sentinel_patients,
            "sentinel_safety_days": self.escalation.sentinel_safety_days,
            "group_safety_days_before_next": self.escalation.group_safety_days_before_next,
            "allow_skipping": self.escalation.allow_skipping,
            "efficacy_driven_escalation": self.escalation.efficacy_driven_escalation,
            "eligibility_criteria": [
                {"id": c.id, "kind": c.kind, "requirement": c.requirement(), "automatic": c.automatic}
                for c in self.eligibility
            ],
            "observations": [vars(o) for o in self.observations],
        }
