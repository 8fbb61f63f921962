"""Designs as rule sets: the lupusbayes design and the standard ones, in one framework.

A :class:`Design` is a tuple of rules (exactly one of them a proposal) and the way it selects a
dose when the trial ends. :func:`design_for` builds the design a spec names
(``[decision] design``), from the spec's own rules and thresholds:

==============  ====================================================================  ==================
design          rules                                                                 final selection
==============  ====================================================================  ==================
``lupusbayes``  EWOC, no skipping, sentinel, group window, convergence gate,          optimal biological
                sample size, end of the dose range; escalation when a group is        dose (utility)
                complete or a safe sentinel shows clearly insufficient efficacy
``blrm_ewoc``   EWOC, no skipping, convergence gate, sample size; the highest         highest admissible
                admissible dose                                                       dose given
``blrm_loss``   no skipping, convergence gate, sample size; crmPack's loss-based      least expected loss
                choice with its own overdose limit
``boin``        BOIN boundaries and elimination, no skipping, sample size             ``select.mtd``
``3+3``         the 3+3 (sample size: then the classical rule)                        the 3+3's MTD
``crm``         the CRM (dfcrm): the level whose estimate is closest to the target,   dfcrm's MTD
                no skipping, coherent escalation, stop when the lowest is too toxic,  (closest to the
                sample size                                                           target)
``tite_crm``    the TITE-CRM: the CRM with patients inside the window weighted by     dfcrm's MTD
                their follow-up; doses while they are pending (no DLT window rule)
``tite_boin``   TITE-BOIN: BOIN with pending patients' DLTs imputed; suspended        ``select.mtd`` on
                while over half the current level is pending; a DLT never lifts       complete data
                a suspension; doses while patients are pending
``boin12``      BOIN12 (toxicity and efficacy, desirability), with the safeguard      the OBD (posterior-
                that one more DLT never gives a higher level; waits for each          mean utility), with
                patient's response; no skipping, sample size                          the same safeguard
==============  ====================================================================  ==================

Every design but the time-to-event ones (``TIME_TO_EVENT_DESIGNS``) also has the DLT window rule
(no new cohort while a patient is inside the DLT window); those have
:class:`~lupusbayes.decisions.rules.TimeToEventWindow` instead, which says in every output that they
dose while patients are pending. Every design selects only a level given to at least
``[decision] min_patients_at_selection`` patients (default: the group size); a selection made with
patients pending is provisional.
"""

from __future__ import annotations

from dataclasses import dataclass

from lupusbayes.decisions.boin import boin_boundaries
from lupusbayes.decisions.boin12 import Boin12Settings
from lupusbayes.decisions.crm import CrmModel, crm_skeleton
from lupusbayes.decisions.rules import (
    Boin12Rule,
    BoinRule,
    ConvergenceGate,
    CrmRule,
    DltWindow,
    EndOfDoseRange,
    Ewoc,
    GroupWindow,
    HighestAdmissible,
    LossBased,
    LupusbayesEscalation,
    NoSkipping,
    ResponseAssessment,
    Rule,
    SampleSize,
    Sentinel,
    ThreePlusThreeRule,
    TimeToEventWindow,
    TiteBoinRule,
)
from lupusbayes.spec import DESIGNS, CrmSettings, TrialSpec

__all__ = ["Design", "design_for", "DESIGNS", "crm_model", "boin12_settings"]

BOIN_TABLE_PATIENTS = 100  # BOIN's boundaries are tabulated for up to this many patients at one level


@dataclass(frozen=True)
class Design:
    """A named set of rules and its final selection (see the module docstring)."""

    name: str
    rules: tuple[Rule, ...]
    selection: str
    needs_toxicity_model: bool
    needs_efficacy_model: bool
    reads_responses: bool = False  # each patient's response, without an efficacy model (BOIN12)

    def __post_init__(self) -> None:
        proposals = [rule for rule in self.rules if isinstance(rule, _PROPOSALS)]
        if len(proposals) != 1:
            raise ValueError(f"a design needs exactly one proposal rule (got {len(proposals)})")

    def with_rules(self, rules) -> Design:
        """The same design with the rules in another order (the outcome must not change)."""
        return Design(self.name, tuple(rules), self.selection, self.needs_toxicity_model, self.needs_efficacy_model,
                      self.reads_responses)


_PROPOSALS = (LupusbayesEscalation, HighestAdmissible, LossBased, BoinRule, ThreePlusThreeRule, CrmRule, Boin12Rule,
              TiteBoinRule)


def crm_model(spec: TrialSpec) -> CrmModel:
    """The CRM model of ``[decision.crm]``: the given skeleton, or dfcrm's ``getprior`` (Lee & Cheung 2009)
    from the half-width and the prior MTD level (default: the middle level; of two middles, the lower)."""
    settings: CrmSettings = spec.decision.crm
    n_levels = len(spec.dosing.levels)
    skeleton = settings.skeleton
    if skeleton is None:
        prior_mtd_level = settings.prior_mtd_level or (n_levels + 1) // 2
        skeleton = tuple(float(p) for p in crm_skeleton(settings.skeleton_halfwidth, settings.target, prior_mtd_level,
                                                         n_levels, model=settings.model, intercept=settings.intercept))
    return CrmModel(skeleton, target=settings.target, model=settings.model, prior_sd=settings.prior_sd,
                    intercept=settings.intercept)


def design_for(spec: TrialSpec, name: str | None = None) -> Design:
    """The design ``name`` (default: the spec's ``[decision] design``) with the spec's settings."""
    name = name or spec.decision.design
    if name not in DESIGNS:
        raise ValueError(f"unknown design '{name}' (designs: {', '.join(DESIGNS)})")
    rules_of_trial = spec.escalation
    decision = spec.decision
    max_step = len(spec.dosing.levels) if rules_of_trial.allow_skipping else 1
    max_patients = rules_of_trial.max_patients
    common: list[Rule] = [DltWindow(), NoSkipping(max_step)]
    if max_patients is not None:
        common.append(SampleSize(max_patients))
    if name == "lupusbayes":
        rules: list[Rule] = [
            Ewoc(decision.max_overdose_probability), *common, ConvergenceGate(), EndOfDoseRange(),
            LupusbayesEscalation(efficacy_driven=rules_of_trial.efficacy_driven_escalation),
        ]
        if rules_of_trial.sentinel_patients:
            efficacy = decision.efficacy
            waits = rules_of_trial.efficacy_driven_escalation and efficacy.wait_for_response
            rules.append(Sentinel(rules_of_trial.sentinel_patients, rules_of_trial.sentinel_safety_days,
                                  response_day=efficacy.response_day if waits else 0))
        if rules_of_trial.group_safety_days_before_next:
            rules.append(GroupWindow(rules_of_trial.group_safety_days_before_next))
        return Design(name, tuple(rules), "utility", True, True)
    if name == "blrm_ewoc":
        return Design(name, (Ewoc(decision.max_overdose_probability), *common, ConvergenceGate(), HighestAdmissible()),
                      "highest_admissible", True, False)
    if name == "blrm_loss":
        return Design(name, (*common, ConvergenceGate(), LossBased(decision.loss)), "least_loss", True, False)
    if name in ("boin", "tite_boin"):
        s = decision.boin
        boundaries = boin_boundaries(s.target, max_patients=max(max_patients or 0, BOIN_TABLE_PATIENTS), p_saf=s.p_saf,
                                     p_tox=s.p_tox, cutoff_eliminate=s.cutoff_eliminate)
        if name == "tite_boin":
            rule = TiteBoinRule(boundaries, decision.tite_boin.max_pending_fraction)
            return Design(name, (TimeToEventWindow("TITE-BOIN"), *common[1:], rule), "boin", False, False)
        return Design(name, (*common, BoinRule(boundaries)), "boin", False, False)
    if name in ("crm", "tite_crm"):
        settings = spec.decision.crm
        tite = name == "tite_crm"
        rule = CrmRule(crm_model(spec), no_skipping=not rules_of_trial.allow_skipping,
                       coherent_escalation=settings.coherent_escalation and not tite,
                       stop_probability=settings.stop_probability, tite_weights=settings.tite_weights if tite else None)
        window = [TimeToEventWindow("TITE-CRM")] if tite else [DltWindow()]
        return Design(name, (*window, *common[1:], rule), "crm", False, False)
    if name == "boin12":
        rule = Boin12Rule(boin12_settings(spec))
        response = ResponseAssessment(decision.efficacy.response_day)
        return Design(name, (*common, response, rule), "boin12", False, False, reads_responses=True)
    return Design(name, (DltWindow(), *common[2:], ThreePlusThreeRule()), "three_plus_three", False, False)


def boin12_settings(spec: TrialSpec) -> Boin12Settings:
    """The rules' BOIN12 settings from ``[decision.boin12]`` (no extra exploration, no cap per level)."""
    s = spec.decision.boin12
    return Boin12Settings(s.target_toxicity, s.efficacy_lower_limit, s.utility_response_no_dlt,
                          s.utility_no_response_no_dlt, s.utility_response_and_dlt, s.utility_dlt_no_response,
                          stay_patients=s.stay_patients, toxicity_cutoff=s.toxicity_cutoff,
                          futility_cutoff=s.futility_cutoff)
