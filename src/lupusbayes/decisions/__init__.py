"""Decisions: escalate / hold / de-escalate / stop for the next dose group, with their reasons.

Plain NumPy and xarray: nothing here imports PyMC or the fitting layer, so the simulator can
call it thousands of times.

* :mod:`~lupusbayes.decisions.posterior`: one posterior interface (MCMC draws, importance
  reweighting, or the exact BLRM), every number with its error;
* :mod:`~lupusbayes.decisions.state`: the trial so far (patients in enrolment order, or counts);
* :mod:`~lupusbayes.decisions.rules`: small rules, each answering one question with its numbers;
* :mod:`~lupusbayes.decisions.designs`: the lupusbayes design, BLRM with EWOC, loss-based BLRM,
  BOIN and 3+3 as rule sets;
* :mod:`~lupusbayes.decisions.recommend`: the recommendation and the transition table;
* :mod:`~lupusbayes.decisions.boin`, :mod:`~lupusbayes.decisions.three_plus_three`: the
  rule-based designs' own arithmetic (boundaries, MTD selection, outcome strings).
"""

from lupusbayes.decisions.designs import Design, design_for
from lupusbayes.decisions.posterior import DrawsPosterior, Estimate, ExactPosterior, draws_from_dose_response, exact_blrm
from lupusbayes.decisions.recommend import Recommendation, Selection, Transition, decide, transition_table
from lupusbayes.decisions.rules import DecisionContext, RuleVerdict
from lupusbayes.decisions.state import (
    PatientRecord,
    TrialState,
    load_state,
    state_from_counts,
    state_from_outcomes,
)

__all__ = [
    "DecisionContext",
    "Design",
    "design_for",
    "decide",
    "transition_table",
    "Recommendation",
    "Selection",
    "Transition",
    "RuleVerdict",
    "DrawsPosterior",
    "ExactPosterior",
    "Estimate",
    "draws_from_dose_response",
    "exact_blrm",
    "TrialState",
    "PatientRecord",
    "load_state",
    "state_from_counts",
    "state_from_outcomes",
]
