"""Simulated trials, run by the decision module's own rules, many trials in lockstep.

A simulated trial is the real decision procedure replayed against a known truth: at each
decision time the trial's state (who was dosed at which level, when, and what has been
*observed* by then) goes to :func:`lupusbayes.decisions.decide` with the design's rules, exactly
as ``lupusbayes decide`` would, and the recommendation is carried out:

* ``stop``: the trial stops enrolling; its dose is selected at the final analysis, when every
  patient has completed the DLT window (and, for designs that read efficacy, the final
  response month). That analysis is a decision on the complete data, and its selection is the
  trial's;
* a wait (sentinel, group window): the clock moves on by the wait and the trial decides again;
* otherwise ``n_next`` patients are dosed at the recommended level, each on the later of the
  decision day and their arrival day (:func:`~lupusbayes.simulation.patients.arrival_days`).
  Designs with timing rules decide again at once (their rules say how long to wait); designs
  without them decide when the cohort has completed the DLT window, the convention of BOIN's
  and the 3+3's simulations; the time-to-event designs (TITE-CRM, TITE-BOIN) decide when the next
  patient arrives, whoever is still inside the window.

What is observed when: a DLT at the end of the DLT window (so nothing is learnt early), except by
the time-to-event designs, which see it on its onset day (the scenario's ``dlt_onset_beta``); a
response at ``[decision.efficacy] month`` after dosing; a responder stays one at the final
month. Posteriors are the exact ones of :mod:`lupusbayes.simulation.fast`, computed once per
distinct set of counts and in one batch for all trials that reach new counts at a step.

All trials of a chunk advance together: one step decides for every running trial. Results
depend only on the latent patients (so on the seed), never on the batch a trial shares.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields, replace

import numpy as np
import pandas as pd

from lupusbayes.decisions import DecisionContext, Design, Recommendation, decide
from lupusbayes.decisions.boin12 import boin12_too_toxic
from lupusbayes.decisions.crm import crm_posterior_batch
from lupusbayes.decisions.recommend import min_patients_at_selection
from lupusbayes.decisions.rules import (
    STOP_BOIN12_NO_ADMISSIBLE,
    STOP_BOIN12_TOO_TOXIC,
    STOP_BOIN_ELIMINATED_LOWEST,
    STOP_CRM_LOWEST_TOO_TOXIC,
    STOP_THREE_PLUS_THREE,
    Boin12Rule,
    BoinRule,
    CrmRule,
    GroupWindow,
    NoSkipping,
    SampleSize,
    Sentinel,
    TimeToEventWindow,
    TiteBoinRule,
    sample_size_stop,
)
from lupusbayes.decisions.state import DAYS_PER_MONTH, PatientRecord, TrialState
from lupusbayes.decisions.three_plus_three import COHORT_SIZE, three_plus_three_next
from lupusbayes.errors import SimulationError
from lupusbayes.simulation.fast import FastPosteriors, SummaryPosterior
from lupusbayes.simulation.boin_extensions_simulation import simulate_boin12
from lupusbayes.simulation.crm_simulation import simulate_crm, simulate_tite_crm
from lupusbayes.simulation.patients import LatentPatients, arrival_days
from lupusbayes.simulation.rule_based import RuleBasedSimulation, simulate_boin, simulate_three_plus_three
from lupusbayes.simulation.scenarios import Scenario
from lupusbayes.simulation.tite_boin_design_simulation import simulate_tite_boin_design
from lupusbayes.spec import TIME_TO_EVENT_DESIGNS, CodataPriors, TrialSpec

__all__ = ["TrialResults", "PosteriorBank", "simulate_trials", "max_patients_of", "level_columns"]


@dataclass
class PosteriorBank:
    """The cached fast posteriors a spec's designs read: DLTs and responses."""

    toxicity: FastPosteriors
    efficacy: FastPosteriors
    #: the response at the final month (the final selection's utility), when its prior differs from ``efficacy``'s
    efficacy_final: FastPosteriors | None = None

    @classmethod
    def for_spec(cls, spec: TrialSpec, *, priors: CodataPriors | None = None, fallback_seed: int = 0,
                 mcmc_fallback: bool = True) -> PosteriorBank:
        """Thresholds: the toxicity intervals' edges, the loss intervals' edges, the efficacy rate.

        ``priors`` are the target study's priors given its co-data
        (:func:`lupusbayes.fitting.codata.codata_priors`); without them, the spec's ``[model.blrm]``
        and ``[model.response]`` priors (one study, no borrowing). ``fallback_seed`` seeds the MCMC
        fallback (:mod:`lupusbayes.simulation.fast`); the runner passes the simulation's seed.
        """
        decision = spec.decision
        toxicity_thresholds = (*spec.dlt.intervals.edges, *decision.loss.edges, decision.loss.overdose_from)
        options = {"mcmc_fallback": mcmc_fallback, "fallback_seed": fallback_seed}
        toxicity_prior = priors.toxicity if priors is not None else spec.models.blrm.prior
        response_prior = priors.response if priors is not None else spec.models.response.prior
        final = None
        if priors is not None and priors.response_final is not None:
            final = FastPosteriors(spec, priors.response_final, "p_response_final", (), **options)
        return cls(FastPosteriors(spec, toxicity_prior, "p_dlt", toxicity_thresholds, **options),
                   FastPosteriors(spec, response_prior, "p_response", (decision.efficacy.insufficient_rate,),
                                  **options), final)

    @property
    def mcmc_fallbacks(self) -> int:
        """Posteriors the quadrature could not resolve, sampled by NUTS instead."""
        final = self.efficacy_final.mcmc_fallbacks if self.efficacy_final is not None else 0
        return self.toxicity.mcmc_fallbacks + self.efficacy.mcmc_fallbacks + final

    def efficacy_posterior(self, key: tuple):
        """The efficacy posterior for responder counts ``key``: the decision month's, with the final month's."""
        month = self.efficacy.cache[key]
        if self.efficacy_final is None:
            return month
        return EfficacyPosteriors(month, self.efficacy_final.cache[key])


@dataclass(frozen=True)
class EfficacyPosteriors:
    """The response posterior at the decision month (``p_response``) and at the final month
    (``p_response_final``), both updated with the same responder counts, as one posterior."""

    month: SummaryPosterior
    final: SummaryPosterior

    def _of(self, name: str) -> SummaryPosterior:
        return self.final if name == "p_response_final" else self.month

    def has(self, name: str) -> bool:
        return name in ("p_response", "p_response_final")

    def mean(self, name: str):
        return self._of(name).mean(name)

    def probability_at_least(self, name: str, threshold: float):
        return self._of(name).probability_at_least(name, threshold)

    @property
    def from_mcmc(self) -> bool:
        return self.month.from_mcmc or self.final.from_mcmc

    @property
    def source(self) -> str:
        return self.month.source

    @property
    def notes(self) -> tuple[str, ...]:
        return self.month.notes


def level_columns(name: str, n_levels: int) -> list[str]:
    """The per-level columns of a trials table: ``n_patients_level_1`` ... (levels counted from 1)."""
    return [f"{name}_level_{level + 1}" for level in range(n_levels)]


def max_patients_of(spec: TrialSpec) -> int:
    """The simulated sample size cap: the spec's ``max_patients`` (required: a BLRM never stops on its own)."""
    if spec.escalation.max_patients is None:
        raise ValueError(f"{spec.trial.id}: simulating needs [escalation] max_patients (the Bayesian designs stop on "
                         "the sample size)")
    return int(spec.escalation.max_patients)


@dataclass(frozen=True, eq=False)
class TrialResults:
    """Per-trial results of one design on one scenario. Levels are 0-based; -1 is no selection."""

    design: str
    scenario: str
    trial: np.ndarray  # trial number within the scenario (the latent patients' row)
    selected_level: np.ndarray
    stop_reason: np.ndarray  # the first reason the trial stopped
    n_patients: np.ndarray  # (trials, levels)
    n_dlt: np.ndarray
    n_responders: np.ndarray
    duration_days: np.ndarray  # first dosing to the final analysis
    n_decisions: np.ndarray
    final_analysis_changed: np.ndarray  # the final analysis did not confirm the stop (its selection is kept)
    #: decisions made from a posterior of the MCMC fallback (see simulation.fast); zeros when not given
    n_mcmc_decisions: np.ndarray | None = None
    #: patients dosed who were not DLT-evaluable and were replaced (in n_patients, not in n_dlt); zeros when not given
    n_not_evaluable: np.ndarray | None = None

    def __post_init__(self) -> None:
        for name in ("n_mcmc_decisions", "n_not_evaluable"):
            if getattr(self, name) is None:
                object.__setattr__(self, name, np.zeros(self.trial.size, dtype=np.int64))

    @property
    def n_trials(self) -> int:
        return int(self.trial.size)

    def to_frame(self) -> pd.DataFrame:
        """One row per trial; per-level counts as ``n_patients_level_1`` ... (levels from 1)."""
        columns = {"scenario": self.scenario, "design": self.design, "trial": self.trial,
                   "selected_level": np.where(self.selected_level >= 0, self.selected_level + 1, 0),
                   "stop_reason": self.stop_reason, "duration_days": np.round(self.duration_days, 3),
                   "n_decisions": self.n_decisions, "final_analysis_changed": self.final_analysis_changed,
                   "n_mcmc_decisions": self.n_mcmc_decisions, "n_not_evaluable": self.n_not_evaluable}
        for name in ("n_patients", "n_dlt", "n_responders"):
            values = getattr(self, name)
            columns.update(zip(level_columns(name, values.shape[1]), values.T, strict=True))
        return pd.DataFrame(columns)

    @classmethod
    def from_frame(cls, frame: pd.DataFrame, n_levels: int) -> TrialResults:
        """The inverse of :meth:`to_frame` for one scenario and design (levels counted from 1 there)."""
        def per_level(name):
            return frame[level_columns(name, n_levels)].to_numpy(dtype=np.int64)

        return cls(str(frame["design"].iloc[0]), str(frame["scenario"].iloc[0]), frame["trial"].to_numpy(np.int64),
                   frame["selected_level"].to_numpy(np.int64) - 1, frame["stop_reason"].astype(str).to_numpy(object),
                   per_level("n_patients"), per_level("n_dlt"), per_level("n_responders"),
                   frame["duration_days"].to_numpy(float), frame["n_decisions"].to_numpy(np.int64),
                   frame["final_analysis_changed"].to_numpy(bool), frame["n_mcmc_decisions"].to_numpy(np.int64),
                   frame["n_not_evaluable"].to_numpy(np.int64) if "n_not_evaluable" in frame else None)


@dataclass
class _Trial:
    """One running trial: its patients so far and its clock (days from the first dosing)."""

    row: int
    arrival: np.ndarray
    dlt_uniform: np.ndarray
    response_uniform: np.ndarray
    evaluable_flags: np.ndarray | None = None  # per slot (None: every patient is DLT-evaluable)
    onset_days: np.ndarray | None = None  # per slot: the day after dosing a DLT occurs (time-to-event designs)
    levels: list[int] = field(default_factory=list)
    evaluable: list[bool] = field(default_factory=list)
    days: list[float] = field(default_factory=list)
    dlt: list[bool] = field(default_factory=list)
    responder: list[bool] = field(default_factory=list)
    time: float = 0.0
    decisions: int = 0
    mcmc_decisions: int = 0
    stopping: Recommendation | None = None  # the stop being confirmed by the final analysis
    finished: bool = False
    selected: int = -1
    stop_reason: str = ""
    changed: bool = False


class _Run:
    """The lockstep simulation of one design on one scenario over one chunk of latent patients."""

    def __init__(self, spec: TrialSpec, design: Design, scenario: Scenario, latent: LatentPatients,
                 bank: PosteriorBank) -> None:
        self.spec, self.design, self.bank = spec, design, bank
        self.p_dlt = scenario.p_dlt(spec)
        self.p_response = scenario.p_response
        self.window = spec.dlt.window_days
        self.response_day = spec.decision.efficacy.month * DAYS_PER_MONTH
        final_response_day = max(self.response_day, spec.decision.efficacy.final_month * DAYS_PER_MONTH)
        self.final_follow_up = (max(self.window, final_response_day) if design.needs_efficacy_model
                                else max(self.window, self.response_day) if design.reads_responses else self.window)
        self.reads_time = any(isinstance(rule, Sentinel | GroupWindow) for rule in design.rules)
        # a time-to-event design sees a DLT on the day it occurs and decides as the next patient arrives; the
        # others see DLTs at the end of the window, when they decide again
        self.time_to_event = design.name in TIME_TO_EVENT_DESIGNS
        if self.time_to_event and latent.onset is None:
            raise SimulationError(f"{design.name}: the simulated patients carry no DLT onset times")
        self.slots = latent.toxicity.shape[1]
        # the sample size counts DLT-evaluable patients; a non-evaluable one is replaced from the spare slots
        self.max_patients = self.slots if latent.evaluable is None else min(max_patients_of(spec), self.slots)
        self.max_decisions = 6 * self.max_patients + 20
        arrivals = arrival_days(scenario, latent.arrival)
        onsets = scenario.onset_days(self.window, latent.onset) if self.time_to_event else None
        self.trials = [_Trial(row, arrivals[row], latent.toxicity[row], latent.response[row],
                              None if latent.evaluable is None else latent.evaluable[row],
                              None if onsets is None else onsets[row])
                       for row in range(latent.n_trials)]

    # ---- what is known at a time -----------------------------------------------------------

    def observed(self, trial: _Trial) -> tuple[TrialState, tuple, tuple]:
        """The state at the trial's clock, and the count keys of its toxicity and efficacy posteriors."""
        n_levels = len(self.spec.dosing.levels)
        evaluable, dlts = [0] * n_levels, [0] * n_levels
        known, responders = [0] * n_levels, [0] * n_levels
        records = []
        for slot, (level, day) in enumerate(zip(trial.levels, trial.days, strict=True)):
            if not trial.evaluable[slot]:  # left within the window without a DLT: not part of the state
                continue
            followed = trial.time - day
            safety_days = math.floor(followed + 1e-9)
            dlt_known = followed + 1e-9 >= self.window
            if self.time_to_event and trial.dlt[slot] and followed + 1e-9 >= trial.onset_days[slot]:
                dlt_known = True  # seen on the day it occurs
            dlt = trial.dlt[slot] and dlt_known
            responder = trial.responder[slot] if followed + 1e-9 >= self.response_day else None
            # the DLT's day in whole days after dosing, as a cut-off counts safety_days (the adaptive TITE-CRM reads it)
            dlt_day = math.floor(trial.onset_days[slot] + 1e-9) if dlt and trial.onset_days is not None else None
            records.append(PatientRecord(f"s{slot + 1}", level, safety_days, dlt, responder=responder,
                                         day_dosed=-safety_days, dlt_day=dlt_day))
            if dlt_known:
                evaluable[level] += 1
                dlts[level] += int(dlt)
            if responder is not None:
                known[level] += 1
                responders[level] += int(responder)
        state = TrialState(self.spec, tuple(records), f"simulated trial {trial.row + 1}")
        return state, (*evaluable, *dlts), (*known, *responders)

    # ---- one step for every running trial ----------------------------------------------------

    def step(self, running: list[_Trial]) -> None:
        observed = [self.observed(trial) for trial in running]
        design = self.design
        if design.needs_toxicity_model:
            self.bank.toxicity.prepare(key for _, key, _ in observed)
        if design.needs_efficacy_model:
            self.bank.efficacy.prepare(key for _, _, key in observed)
            if self.bank.efficacy_final is not None:
                self.bank.efficacy_final.prepare(key for _, _, key in observed)
        for trial, (state, toxicity_key, efficacy_key) in zip(running, observed, strict=True):
            toxicity = self.bank.toxicity.cache[toxicity_key] if design.needs_toxicity_model else None
            efficacy = self.bank.efficacy_posterior(efficacy_key) if design.needs_efficacy_model else None
            recommendation = decide(DecisionContext(self.spec, state, toxicity=toxicity, efficacy=efficacy), design)
            trial.decisions += 1
            trial.mcmc_decisions += any(posterior is not None and posterior.from_mcmc for posterior in (toxicity, efficacy))
            if trial.decisions > self.max_decisions:
                raise SimulationError(f"{design.name}: trial {trial.row + 1} made {trial.decisions} decisions without "
                                      f"stopping (last: {recommendation.action}); the design does not terminate")
            self.apply(trial, recommendation)

    def apply(self, trial: _Trial, recommendation: Recommendation) -> None:
        if trial.stopping is not None:  # the final analysis
            confirmed = recommendation.action == "stop"
            selection = recommendation.selection if confirmed else trial.stopping.selection
            trial.changed = not confirmed
            trial.selected = -1 if selection is None or selection.level_index is None else selection.level_index
            trial.finished = True
            return
        if recommendation.action == "stop":
            trial.stop_reason = recommendation.stop_reasons[0] if recommendation.stop_reasons else "stop"
            trial.stopping = recommendation
            if trial.days and self.time_to_event:
                # the stop is seen as the next patient arrives, but its data (a DLT; follow-up only reassures)
                # were there at the last DLT, within the treated patients' windows: the trial ends with them
                trial.time = trial.days[-1] + self.final_follow_up
            elif trial.days:
                trial.time = max(trial.time, trial.days[-1] + self.final_follow_up)
            return
        if recommendation.wait_days > 0:
            trial.time += recommendation.wait_days
            return
        enrolled = sum(trial.evaluable)
        n_next = min(recommendation.n_next, self.max_patients - enrolled)
        if n_next <= 0:
            raise SimulationError(f"{self.design.name}: trial {trial.row + 1} was told to enrol {recommendation.n_next} "
                                  f"patients with {enrolled} of {self.max_patients} enrolled")
        level = recommendation.next_level_index
        added = 0
        while added < n_next:  # a patient who is not DLT-evaluable is replaced by the next one, as protocols do
            slot = len(trial.levels)
            if slot >= self.slots:
                raise SimulationError(f"{self.design.name}: trial {trial.row + 1} ran out of replacement patients "
                                      f"({self.slots} slots); lower p_not_evaluable")
            evaluable = trial.evaluable_flags is None or bool(trial.evaluable_flags[slot])
            day = max(trial.time, float(trial.arrival[slot]))
            trial.levels.append(level)
            trial.days.append(day)
            trial.evaluable.append(evaluable)
            trial.dlt.append(evaluable and bool(trial.dlt_uniform[slot] < self.p_dlt[level]))
            trial.responder.append(evaluable and bool(trial.response_uniform[slot] < self.p_response[level]))
            trial.time = day
            added += evaluable
        if self.time_to_event:  # decide again when the next patient arrives, patients pending or not
            slot = len(trial.levels)
            trial.time = max(trial.time, float(trial.arrival[slot])) if slot < self.slots else trial.days[-1] + self.window
        elif not self.reads_time:  # decide again when the cohort has completed the DLT window
            trial.time = trial.days[-1] + self.window

    def run(self, scenario_name: str, first_trial: int) -> TrialResults:
        running = list(self.trials)
        while running:
            self.step(running)
            running = [trial for trial in running if not trial.finished]
        return self.results(scenario_name, first_trial)

    def results(self, scenario_name: str, first_trial: int) -> TrialResults:
        n_levels = len(self.spec.dosing.levels)
        count = len(self.trials)
        n_patients = np.zeros((count, n_levels), dtype=np.int64)
        n_dlt, n_responders = np.zeros_like(n_patients), np.zeros_like(n_patients)
        for row, trial in enumerate(self.trials):
            levels = np.asarray(trial.levels, dtype=np.int64)
            np.add.at(n_patients[row], levels, 1)
            np.add.at(n_dlt[row], levels, np.asarray(trial.dlt, dtype=np.int64))
            np.add.at(n_responders[row], levels, np.asarray(trial.responder, dtype=np.int64))
        return TrialResults(
            design=self.design.name, scenario=scenario_name,
            trial=np.arange(first_trial, first_trial + count, dtype=np.int64),
            selected_level=np.array([t.selected for t in self.trials], dtype=np.int64),
            stop_reason=np.array([t.stop_reason for t in self.trials], dtype=object),
            n_patients=n_patients, n_dlt=n_dlt, n_responders=n_responders,
            duration_days=np.array([t.time for t in self.trials], dtype=float),
            n_decisions=np.array([t.decisions for t in self.trials], dtype=np.int64),
            final_analysis_changed=np.array([t.changed for t in self.trials], dtype=bool),
            n_mcmc_decisions=np.array([t.mcmc_decisions for t in self.trials], dtype=np.int64),
            n_not_evaluable=np.array([len(t.evaluable) - sum(t.evaluable) for t in self.trials], dtype=np.int64),
        )


def simulate_trials(spec: TrialSpec, design: Design, scenario: Scenario, latent: LatentPatients, *,
                    bank: PosteriorBank | None = None, first_trial: int = 0, vectorised: bool = True) -> TrialResults:
    """Run one trial per row of ``latent`` under ``design`` against ``scenario`` (see the module docstring).

    ``latent`` needs one column per patient the trial may enrol (the spec's ``max_patients``).
    ``bank`` shares the cached posteriors between calls (designs and chunks of one spec).
    BOIN and the 3+3 run on the vectorised simulators of :mod:`lupusbayes.simulation.rule_based`,
    the CRM and the TITE-CRM on :mod:`lupusbayes.simulation.crm_simulation`, BOIN12 (with its
    safeguard) on :mod:`lupusbayes.simulation.boin_extensions_simulation`, TITE-BOIN (with its
    safeguard and suspensions) on :mod:`lupusbayes.simulation.tite_boin_design_simulation`, when the
    spec allows it (cohorts of the group size filling the sample size, every patient DLT-evaluable;
    the 3+3 in cohorts of 3 from the lowest level), with the same timeline: the results equal the
    engine's, field by field (tested), at a hundred times the speed. ``vectorised=False`` forces the
    engine.
    """
    if latent.toxicity.shape[1] < 1:
        raise ValueError("latent patients need at least one column")
    if vectorised:
        fast = _rule_based(spec, design, scenario, latent, first_trial)
        if fast is not None:
            return fast
    bank = bank or PosteriorBank.for_spec(spec)
    return _Run(spec, design, scenario, latent, bank).run(scenario.name, first_trial)


# ---- BOIN and the 3+3, vectorised -------------------------------------------------------------------


def _rule_based(spec: TrialSpec, design: Design, scenario: Scenario, latent: LatentPatients,
                first_trial: int) -> TrialResults | None:
    """The engine's results for BOIN, the 3+3, the CRM, the TITE-CRM, BOIN12 and TITE-BOIN from the vectorised
    simulators, or None when they do not apply."""
    if design.name == "tite_boin":
        return _tite_boin(spec, design, scenario, latent, first_trial) if latent.evaluable is None else None
    group, max_patients = spec.escalation.group_size, latent.toxicity.shape[1]
    minimum = min_patients_at_selection(spec)
    if (design.name not in ("boin", "3+3", "crm", "tite_crm", "boin12") or max_patients % group
            or latent.evaluable is not None):
        return None  # (non-evaluable patients and their replacements: the engine)
    p_dlt = scenario.p_dlt(spec)
    n_cohorts = max_patients // group
    if design.name in ("crm", "tite_crm"):
        return _crm(spec, design, scenario, latent, first_trial, p_dlt, group, n_cohorts, minimum)
    if design.name == "boin12":
        return _boin12(spec, design, scenario, latent, first_trial, p_dlt, group, n_cohorts, minimum)
    if design.name == "boin" and minimum > group:  # levels given to one cohort only are not selected: the engine
        return None
    if design.name == "boin":
        rule = next(rule for rule in design.rules if isinstance(rule, BoinRule))
        simulation = simulate_boin(latent.toxicity, p_dlt, boundaries=rule.boundaries, cohort_size=group,
                                   n_cohorts=n_cohorts, start_level=spec.dosing.starting_level - 1)
    elif group == COHORT_SIZE and spec.dosing.starting_level == 1:
        simulation = simulate_three_plus_three(latent.toxicity, p_dlt, max_patients=max_patients,
                                               min_patients_at_selection=minimum)
    else:
        return None
    duration, cohorts = _cohort_timeline(simulation.patient_level, arrival_days(scenario, latent.arrival), group,
                                         spec.dlt.window_days)
    return _vectorised_results(design, scenario, latent, first_trial, simulation,
                               stop_reason=_stop_reasons(design.name, simulation, max_patients),
                               n_responders=_responders(simulation.patient_level, latent, scenario),
                               duration_days=duration,
                               n_decisions=cohorts + 2)  # the first decision, one per cohort, the final analysis


def _vectorised_results(design: Design, scenario: Scenario, latent: LatentPatients, first_trial: int,
                        simulation: RuleBasedSimulation, *, stop_reason, n_responders, duration_days,
                        n_decisions) -> TrialResults:
    """The engine's :class:`TrialResults` from a vectorised simulation (no posterior, so no MCMC decision, and no
    final analysis that changes the selection: the designs select on the same complete data)."""
    return TrialResults(
        design=design.name, scenario=scenario.name,
        trial=np.arange(first_trial, first_trial + latent.n_trials, dtype=np.int64),
        selected_level=np.asarray(simulation.selected_level, dtype=np.int64), stop_reason=stop_reason,
        n_patients=np.array(simulation.n_patients), n_dlt=np.array(simulation.n_dlt), n_responders=n_responders,
        duration_days=np.asarray(duration_days, dtype=float), n_decisions=n_decisions,
        final_analysis_changed=np.zeros(latent.n_trials, dtype=bool),
        n_mcmc_decisions=np.zeros(latent.n_trials, dtype=np.int64),
    )


def _crm(spec: TrialSpec, design: Design, scenario: Scenario, latent: LatentPatients, first_trial: int,
         p_dlt: np.ndarray, group: int, n_cohorts: int, minimum: int) -> TrialResults:
    """The CRM and the TITE-CRM from :mod:`lupusbayes.simulation.crm_simulation`, as the engine runs them."""
    rule = next(rule for rule in design.rules if isinstance(rule, CrmRule))
    window = spec.dlt.window_days
    arrivals = arrival_days(scenario, latent.arrival)
    common = dict(model=rule.model, cohort_size=group, n_cohorts=n_cohorts, start_level=spec.dosing.starting_level - 1,
                  no_skipping=rule.no_skipping, stop_probability=rule.stop_probability,
                  min_patients_at_selection=minimum)
    if design.name == "tite_crm":
        simulation = simulate_tite_crm(latent.toxicity, scenario.onset_days(window, latent.onset), arrivals, p_dlt,
                                       window_days=window, weights=rule.tite_weights, **common)
        duration, cohorts = simulation.duration_days, (simulation.patient_level[:, ::group] >= 0).sum(axis=1)
    else:
        simulation = simulate_crm(latent.toxicity, p_dlt, coherent_escalation=rule.coherent_escalation, **common)
        duration, cohorts = _cohort_timeline(simulation.patient_level, arrivals, group, window)
    stopped_early, too_toxic_at_the_end = np.asarray(simulation.stopped_early), _lowest_too_toxic(rule, simulation)
    stop = stopped_early | (np.asarray(simulation.selected_level) < 0) & too_toxic_at_the_end
    reasons = np.where(stop, STOP_CRM_LOWEST_TOO_TOXIC, sample_size_stop(latent.toxicity.shape[1],
                                                                         latent.toxicity.shape[1])).astype(object)
    results = _vectorised_results(design, scenario, latent, first_trial, simulation, stop_reason=reasons,
                                  n_responders=_responders(simulation.patient_level, latent, scenario),
                                  duration_days=duration, n_decisions=cohorts + 2)  # the first, per cohort, the final
    # the TITE-CRM can stop on the weighted data of patients inside the window; the final analysis, on complete data
    # short of the sample size, may no longer stop there: the engine keeps the stop and flags it (the CRM stops on
    # complete data, which the final analysis reads again)
    unconfirmed = stopped_early & ~too_toxic_at_the_end & (np.asarray(simulation.n_patients).sum(axis=1)
                                                           < latent.toxicity.shape[1])
    return replace(results, final_analysis_changed=unconfirmed)


def _boin12(spec: TrialSpec, design: Design, scenario: Scenario, latent: LatentPatients, first_trial: int,
            p_dlt: np.ndarray, group: int, n_cohorts: int, minimum: int) -> TrialResults:
    """BOIN12 with its safeguard from :func:`~lupusbayes.simulation.boin_extensions_simulation.simulate_boin12`,
    as the engine runs it: each decision waits for the cohort's DLT window and responses, the final analysis
    for the last cohort's (at the response month)."""
    rule = next(rule for rule in design.rules if isinstance(rule, Boin12Rule))
    simulation = simulate_boin12(latent.toxicity, latent.response, p_dlt, scenario.p_response, settings=rule.settings,
                                 cohort_size=group, n_cohorts=n_cohorts, start_level=spec.dosing.starting_level - 1,
                                 safeguard=True, min_patients_at_selection=minimum)
    window = spec.dlt.window_days
    decision_wait = max(window, spec.decision.efficacy.response_day)
    final_wait = max(window, spec.decision.efficacy.month * DAYS_PER_MONTH)
    clock, cohorts = _cohort_timeline(simulation.patient_level, arrival_days(scenario, latent.arrival), group,
                                      decision_wait)
    stopped = np.asarray(simulation.stopped_early)
    reasons = np.full(latent.n_trials, sample_size_stop(latent.toxicity.shape[1], latent.toxicity.shape[1]), dtype=object)
    if stopped.any():  # which BOIN12 stop: the lowest level too toxic, or no admissible level
        too_toxic = _boin12_lowest_too_toxic(rule, simulation.n_patients, simulation.n_dlt)
        reasons[stopped] = np.where(too_toxic[stopped], STOP_BOIN12_TOO_TOXIC, STOP_BOIN12_NO_ADMISSIBLE)
    # the sample size stops at the last window's end, the final analysis at its response month; BOIN12's own stop
    # waits for the responses (decision_wait)
    return _vectorised_results(design, scenario, latent, first_trial, simulation, stop_reason=reasons,
                               n_responders=np.array(simulation.n_responses),
                               duration_days=np.where(stopped, clock, clock - decision_wait + final_wait),
                               n_decisions=_boin12_decisions(cohorts, stopped, window < decision_wait))


def _boin12_decisions(cohorts: np.ndarray, stopped: np.ndarray, waits_for_responses: bool) -> np.ndarray:
    """The engine's count: the first decision; per cohort, one at its window's end and, when responses come
    later, one when they do; the final analysis (a stop by the sample size comes at the last window's end)."""
    per_cohort = 2 if waits_for_responses else 1
    return np.where(stopped, 1 + per_cohort * cohorts + 1, 1 + per_cohort * (cohorts - 1) + 1 + 1)


def _tite_boin(spec: TrialSpec, design: Design, scenario: Scenario, latent: LatentPatients,
               first_trial: int) -> TrialResults | None:
    """TITE-BOIN with its safeguard, on the engine's timeline, from
    :func:`~lupusbayes.simulation.tite_boin_design_simulation.simulate_tite_boin_design`, when the design is
    design_for's and its full cohorts fill the sample size; the trials the simulator leaves to the engine (more
    DLTs inside the window than the safeguard compares, where ``decide`` refuses) run through the engine."""
    rule = next((rule for rule in design.rules if isinstance(rule, TiteBoinRule)), None)
    cap, group = spec.escalation.max_patients, spec.escalation.group_size
    kinds = [type(each) for each in design.rules]  # the rules of design_for("tite_boin"), in any order
    if (rule is None or len(kinds) != 4 or set(kinds) != {TimeToEventWindow, NoSkipping, SampleSize, TiteBoinRule}
            or cap is None or cap % group or cap > latent.toxicity.shape[1] or cap > rule.boundaries.max_patients
            or latent.onset is None or next(r for r in design.rules if isinstance(r, SampleSize)).max_patients != cap):
        return None
    window = spec.dlt.window_days
    simulation = simulate_tite_boin_design(
        latent.toxicity, scenario.onset_days(window, latent.onset), arrival_days(scenario, latent.arrival),
        scenario.p_dlt(spec), boundaries=rule.boundaries, window_days=window, cohort_size=group,
        n_cohorts=cap // group, max_pending_fraction=rule.max_pending_fraction,
        start_level=spec.dosing.starting_level - 1, min_patients_at_selection=min_patients_at_selection(spec))
    reasons = np.where(simulation.stopped_early, STOP_BOIN_ELIMINATED_LOWEST, sample_size_stop(cap, cap)).astype(object)
    results = _vectorised_results(design, scenario, latent, first_trial, simulation, stop_reason=reasons,
                                  n_responders=_responders(simulation.patient_level, latent, scenario),
                                  duration_days=simulation.duration_days, n_decisions=simulation.n_decisions)
    results = replace(results, final_analysis_changed=np.array(simulation.final_analysis_changed))
    rows = np.flatnonzero(simulation.needs_engine)
    return _with_engine_rows(results, spec, design, scenario, latent, rows) if rows.size else results


def _with_engine_rows(results: TrialResults, spec: TrialSpec, design: Design, scenario: Scenario,
                      latent: LatentPatients, rows: np.ndarray) -> TrialResults:
    """``results`` with the trials of ``rows`` run through the engine instead (trials are independent)."""
    part = LatentPatients(latent.toxicity[rows], latent.response[rows], latent.arrival[rows],
                          None if latent.evaluable is None else latent.evaluable[rows],
                          None if latent.onset is None else latent.onset[rows])
    engine = _Run(spec, design, scenario, part, PosteriorBank.for_spec(spec)).run(scenario.name, 0)
    changed = {}
    for name in (item.name for item in fields(TrialResults)):
        if name in ("design", "scenario", "trial"):
            continue
        values = np.array(getattr(results, name))
        values[rows] = getattr(engine, name)
        changed[name] = values
    return replace(results, **changed)


def _boin12_lowest_too_toxic(rule: Boin12Rule, n_patients: np.ndarray, n_dlt: np.ndarray) -> np.ndarray:
    """Whether the lowest level is too toxic for BOIN12 (its stop for toxicity), row by row."""
    return boin12_too_toxic(rule.settings, n_patients[:, 0], n_dlt[:, 0])


def _lowest_too_toxic(rule: CrmRule, simulation: RuleBasedSimulation) -> np.ndarray:
    """Whether the CRM's stopping rule holds on each trial's final data (then no dose is selected)."""
    if rule.stop_probability is None:
        return np.zeros(simulation.n_trials, dtype=bool)
    posterior = crm_posterior_batch(rule.model, simulation.n_patients, simulation.n_dlt)
    return posterior.probability_above_target(0) >= rule.stop_probability


def _responders(patient_level: np.ndarray, latent: LatentPatients, scenario: Scenario) -> np.ndarray:
    """Responders per level: patient ``j`` responds at level ``d`` when its response uniform is below P(response)."""
    enrolled = patient_level >= 0
    levels = np.maximum(patient_level, 0)
    responder = enrolled & (latent.response[:, :patient_level.shape[1]] < scenario.p_response[levels])
    return np.stack([(responder & (patient_level == level)).sum(axis=1)
                     for level in range(scenario.p_response.size)], axis=1).astype(np.int64)


def _cohort_timeline(patient_level: np.ndarray, arrivals: np.ndarray, group: int, window: int):
    """The engine's clock for designs without timing rules: each cohort dosed as its patients arrive (not
    before the decision), the next decision when the cohort completes the DLT window. Returns the day
    of the final analysis (the last cohort's window end) and the number of cohorts, per trial."""
    n_trials, slots = patient_level.shape
    clock = np.zeros(n_trials)
    cohorts = np.zeros(n_trials, dtype=np.int64)
    for first in range(0, slots, group):
        active = patient_level[:, first] >= 0
        day = clock.copy()
        for slot in range(first, first + group):
            day = np.maximum(day, arrivals[:, slot])
        clock = np.where(active, day + window, clock)
        cohorts += active
    return clock, cohorts


def _stop_reasons(design: str, simulation: RuleBasedSimulation, max_patients: int) -> np.ndarray:
    """The first (sorted) stop reason the engine's final decision gives, trial by trial."""
    full = simulation.n_patients.sum(axis=1) >= max_patients
    size = sample_size_stop(max_patients, max_patients)
    reasons = np.empty(full.size, dtype=object)
    if design == "boin":  # at the end, BOIN stops itself exactly when the lowest level is eliminated
        reasons[:] = np.where(simulation.selected_level < 0, STOP_BOIN_ELIMINATED_LOWEST, size)
        return reasons
    reasons[:] = STOP_THREE_PLUS_THREE
    for trial in np.flatnonzero(full):  # the cap reached: did the 3+3 stop there on its own?
        last = int(simulation.patient_level[trial, max_patients - 1])
        decision = three_plus_three_next(simulation.n_patients[trial], simulation.n_dlt[trial], last)
        if decision.action != "stop":
            reasons[trial] = size
    return reasons
