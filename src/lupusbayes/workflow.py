"""From a spec, a trial state and co-data to the posteriors a decision reads, fitting what is needed.

This is the layer the command line's ``decide``, ``report`` and ``plot`` call (and a Python user
can call directly): it chooses the toxicity model a design reads, fits it on the state's
DLT-evaluable patients (and co-data), or checks that a given fit is a fit of exactly those data,
and builds the :class:`~lupusbayes.decisions.DecisionContext`.

The protocol's DLT is what the safety rules read. ``[decision] toxicity_model = "blrm"`` (the
default, and always for the ``blrm_ewoc`` and ``blrm_loss`` designs) models each patient's DLT
status, recorded or derived from the CRS and ICANS thresholds, so a DLT from ICANS or any other
adverse event moves P(DLT) exactly as a CRS DLT does. ``"crs"`` reads P(DLT) as P(CRS >= k) from
the ordinal CRS model; a state or co-data holding a DLT that CRS >= k does not explain is then
refused (:class:`~lupusbayes.errors.DecisionError`) unless ``allow_unmodelled_dlt``, and the
recommendation's headline says which DLTs the model cannot see.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from os import PathLike

import numpy as np

from lupusbayes.cohort import Cohort, combine_cohorts
from lupusbayes.decisions import (
    DecisionContext,
    Design,
    design_for,
    draws_from_dose_response,
    exact_blrm,
)
from lupusbayes.decisions.state import TrialState
from lupusbayes.errors import DecisionError, LupusBayesError, ModelSetupError
from lupusbayes.spec import DoseObservation, TrialSpec

__all__ = ["DecisionInputs", "decision_inputs", "toxicity_model_kind", "unmodelled_dlts", "check_fit_matches",
           "toxicity_draws", "efficacy_draws", "expected_toxicity_model", "expected_efficacy_model", "borrows",
           "simulation_priors", "model_for", "fitting_cohort", "MODEL_KINDS", "Decision", "decide_from_inputs",
           "recommend", "reachability", "reachability_dict", "dose_paths_text", "recommendation_words",
           "report_inputs", "src_report",
           "PriorBeforeData", "prior_before_data", "dose_paths_reachability_line", "reachability_unknown_reason"]


@dataclass(frozen=True)
class DecisionInputs:
    """What a decision needs: the spec, the design, the context (state and posteriors) and the fits behind them."""

    spec: TrialSpec
    design: Design
    context: DecisionContext
    fits: dict = field(default_factory=dict)  # label ("toxicity", "efficacy") -> FitResult


def toxicity_model_kind(spec: TrialSpec, design: Design) -> str:
    """``"blrm"`` or ``"crs"``: the model whose P(DLT) the design's safety rules read."""
    return "blrm" if design.name in ("blrm_ewoc", "blrm_loss") else spec.decision.toxicity_model


def _dlt_status(spec: TrialSpec, patients) -> np.ndarray:
    icans = patients["icans_grade"].to_numpy(dtype=float, na_value=np.nan) if "icans_grade" in patients else None
    return spec.dlt.dlt_status(patients["crs_grade"], icans, patients["dlt"].to_numpy(dtype=float, na_value=np.nan))


def unmodelled_dlts(spec: TrialSpec, cohort: Cohort | None) -> list[str]:
    """``study/patient`` of every DLT that CRS >= ``dlt.crs_grade_at_least`` does not explain."""
    if cohort is None or spec.dlt.crs_grade_at_least is None:
        return []
    patients = cohort.patients
    unexplained = _dlt_status(spec, patients) & (patients["crs_grade"].to_numpy(dtype=int) < spec.dlt.crs_grade_at_least)
    return [f"{row.study_id}/{row.patient_id}" for row, flag in zip(patients.itertuples(index=False), unexplained,
                                                                      strict=True) if flag]


def _combined(cohorts: Sequence[Cohort | None]) -> Cohort | None:
    present = [cohort for cohort in cohorts if cohort is not None]
    return combine_cohorts(present) if present else None


def _counts_as_observations(spec: TrialSpec, state: TrialState) -> TrialSpec:
    """The spec with the state's DLT-evaluable counts as aggregate ``[[observations]]`` of its own study."""
    n, y = state.evaluable_counts()
    rows = tuple(DoseObservation(spec.trial.id, float(dose), int(count), int(dlts))
                 for dose, count, dlts in zip(spec.dosing.levels, n, y, strict=True) if count)
    return replace(spec, observations=spec.observations + rows)


def expected_toxicity_model(spec: TrialSpec, design: Design, state: TrialState, codata: Sequence[Cohort] = ()):
    """The toxicity model a decision fits: the state's DLT-evaluable patients and the co-data.

    None when there is nothing to fit it to (no evaluable patient, no co-data).

    Raises
    ------
    DecisionError
        The CRS model asked for with counts or outcome strings (they hold no CRS grades).
    """
    from lupusbayes.models.toxicity import BLRM, CRSModel

    kind = toxicity_model_kind(spec, design)
    model_spec = spec
    if state.cohort is None:  # counts or outcome strings
        if kind == "crs":
            raise DecisionError(f"{state.source}: the CRS toxicity model reads CRS grades, which counts and outcome "
                                "strings do not have: give the patients' file, or use toxicity_model = 'blrm'")
        if state.n_patients:
            model_spec = _counts_as_observations(spec, state)
    cohort = _combined([state.evaluable_cohort(), *codata])
    if cohort is None and not model_spec.observations:
        return None
    return (BLRM if kind == "blrm" else CRSModel)(cohort, model_spec)


def expected_efficacy_model(spec: TrialSpec, state: TrialState, codata: Sequence[Cohort] = ()):
    """The SLEDAI-2K model a decision fits (every patient of the state, and the co-data), or None."""
    from lupusbayes.models.sledai import SledaiModel

    cohort = _combined([state.cohort, *codata])
    if cohort is None:
        return None
    try:
        return SledaiModel(cohort, spec)
    except ModelSetupError:
        return None  # no follow-up visit yet: efficacy is not assessable (the rules say so)


def _data_of(model) -> dict:
    """Every observed and constant value of a model by (variable, observation label)."""
    values = {}
    for dataset in (model.observed_data(), model.constant_data()):
        for name, variable in dataset.data_vars.items():
            if len(variable.dims) == 1:
                (dim,) = variable.dims
                for label, value in zip(variable[dim].to_numpy(), variable.to_numpy(), strict=True):
                    values[(name, str(label))] = value
            else:
                values[(name, "")] = variable.to_numpy()
    return values


def _same(a, b) -> bool:
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape:
        return False
    if a.dtype.kind in "fc" or b.dtype.kind in "fc":
        return bool(np.allclose(a.astype(float), b.astype(float), rtol=1e-9, atol=0.0, equal_nan=True))
    return bool(np.array_equal(a, b))


def _describe(model) -> str:
    outcome = getattr(model.settings, "outcome", None)
    return {"dlt": "BLRM (DLT)", "crs_grade": "CRS (ordinal grades)", "crs_any": "BLRM (any CRS)",
            None: "SLEDAI-2K"}.get(outcome, model.kind)


def check_fit_matches(result, expected, source: str, *, role: str, error: type[LupusBayesError] = DecisionError,
                      hint: str | None = None) -> None:
    """A given fit must be the fit the decision would make: the same kind of model on exactly the same data.

    ``expected`` is the model the decision would fit (:func:`expected_toxicity_model`,
    :func:`expected_efficacy_model`), or None when there is nothing to fit. Compared: the model
    class and outcome, then every observed and constant value by patient (the state's patients
    that count, with their doses, outcomes and study, and the co-data).

    Raises
    ------
    error
        One line naming ``source`` and the first difference.
    """
    model = result.model
    if expected is None:
        raise error(f"{source}: the state has no patient this {role} model can be fitted to yet; leave the fit out")
    hint = hint or (f"refit with 'lupusbayes fit ... --model {expected.kind}' on the state's data (DLT-evaluable "
                    "patients, for a toxicity model) and the same co-data, or leave the fit out and let decide fit it")
    wanted, given = _describe(expected), _describe(model)
    if type(model) is not type(expected) or given != wanted:
        raise error(f"{source}: a {given} fit, but the {role} posterior of this decision comes from a {wanted} "
                    f"model; {hint}")
    fitted, needed = _data_of(model), _data_of(expected)
    for key in sorted(set(fitted) | set(needed)):
        if key not in fitted or key not in needed or not _same(fitted[key], needed[key]):
            name, label = key
            where = f"patient {label}" if label else name
            if key not in fitted:
                problem = f"{where} is in the decision's data but not in the fit"
            elif key not in needed:
                problem = f"{where} is in the fit but not in the decision's data (other patients, or co-data not given)"
            else:
                problem = f"{where}: {name} is {fitted[key]} in the fit, {needed[key]} in the decision's data"
            raise error(f"{source}: the fit was made on other data than this decision's ({problem}); {hint}")


def toxicity_draws(result):
    """The decision posterior of a toxicity fit (its dose-response draws)."""
    return draws_from_dose_response(result.dose_response, source=f"{result.model.name} (seed {result.seed})",
                                    notes=tuple(result.model.notes()))


def efficacy_draws(result, spec: TrialSpec, seed: int):
    """The decision posterior of a SLEDAI-2K fit at the spec's decision months (derived, seeded, when the
    fit's dose-response does not hold them)."""
    settings = spec.decision.efficacy
    dose_response = result.dose_response
    wanted = sorted({settings.month, settings.final_month})
    if not all(np.any(np.isclose(dose_response["month"].to_numpy(), month)) for month in wanted):
        dose_response = result.model.dose_response(result.posterior, np.random.default_rng(seed), months=wanted)
    return draws_from_dose_response(dose_response, response=settings.response, month=settings.month,
                                    final_month=settings.final_month, source=f"{result.model.name} (seed {result.seed})",
                                    notes=tuple(result.model.notes()))


def decision_inputs(spec: TrialSpec, state: TrialState, *, design: Design | str | None = None,
                    codata: Sequence[Cohort] = (), toxicity_fit=None, efficacy_fit=None, seed: int = 20251108,
                    force: bool = False, progress=None, allow_unmodelled_dlt: bool = False,
                    toxicity_fit_source: str = "the toxicity fit", efficacy_fit_source: str = "the efficacy fit",
                    error: type[LupusBayesError] = DecisionError, cache=None) -> DecisionInputs:
    """The posteriors a design reads for ``state``, fitted (seeded by ``seed``) unless given, and the context.

    Parameters
    ----------
    design
        A :class:`~lupusbayes.decisions.Design`, a design name, or None for the spec's.
    codata
        Other studies' cohorts, borrowed from through the models' hierarchy (EXNEX).
    toxicity_fit, efficacy_fit
        Saved fits to use instead of fitting; each must be the fit this decision would make
        (:func:`check_fit_matches`), else ``error`` names ``*_fit_source``.
    allow_unmodelled_dlt
        With ``toxicity_model = "crs"``: decide although a DLT is not explained by CRS, with an
        alert in the recommendation's headline (otherwise that is a :class:`DecisionError`).
    cache
        A :class:`~lupusbayes.fitting.fitcache.FitCache`: fits made before with the same data, spec,
        settings and seed are read from it instead of refitted (None: always fit).

    Examples
    --------
    >>> import lupusbayes as lb
    >>> from lupusbayes.decisions import decide, state_from_outcomes
    >>> spec = lb.load_spec("kn5601")  # one study: the exact BLRM, no MCMC
    >>> inputs = decision_inputs(spec, state_from_outcomes(spec, "1NNN"), design="blrm_ewoc")
    >>> decide(inputs.context, inputs.design).action
    'escalate'
    """
    def fit(model, *, seed, progress):
        from lupusbayes.fitting.fitcache import cached_fit  # PyMC and ArviZ only when something is fitted

        return cached_fit(model, seed=seed, cache=cache, progress=progress)

    design = design if isinstance(design, Design) else design_for(spec, design)
    fits: dict = {}
    alerts: list[str] = []
    toxicity = efficacy = None
    if design.needs_toxicity_model:
        kind = toxicity_model_kind(spec, design)
        if kind == "crs":
            unseen = unmodelled_dlts(spec, _combined([state.evaluable_cohort(), *codata]))
            if unseen:
                what = (f"{len(unseen)} recorded DLT(s) not explained by CRS >= {spec.dlt.crs_grade_at_least} "
                        f"({', '.join(unseen[:3])}{', ...' if len(unseen) > 3 else ''})")
                if not allow_unmodelled_dlt:
                    raise DecisionError(f"{state.source}: {what}: the CRS model's P(DLT) cannot see them; decide with "
                                        "toxicity_model = 'blrm' (the protocol DLT, the default), or allow it "
                                        "explicitly (--allow-unmodelled-dlt) and read the alert")
                alerts.append(f"UNMODELLED DLT: {what} are not in P(DLT), which is P(CRS >= "
                              f"{spec.dlt.crs_grade_at_least}) from the CRS model: the safety rules cannot see them")
        hierarchy = spec.models.blrm.hierarchy if kind == "blrm" else spec.models.crs.hierarchy
        exact = (kind == "blrm" and toxicity_fit is None and not codata and hierarchy in ("auto", "none")
                 and not spec.observations)
        if exact:
            n, y = state.evaluable_counts()
            toxicity = exact_blrm(spec.dosing.levels, n, y, prior=spec.models.blrm.prior,
                                  reference_dose=spec.dosing.reference_dose, source="exact BLRM (quadrature)",
                                  dlt_basis=state.dlt_basis())
        else:
            if hierarchy in ("exnex", "exchangeable") and not codata and toxicity_fit is None:
                section = "blrm" if kind == "blrm" else "crs"
                raise error(f"{spec.source}: [model.{section}] hierarchy '{hierarchy}' borrows from co-data, and none "
                            "were given: add the co-data (--codata FILE, e.g. kn5601), or set hierarchy = 'none'")
            expected = expected_toxicity_model(spec, design, state, codata)
            if toxicity_fit is not None:
                check_fit_matches(toxicity_fit, expected, toxicity_fit_source, role="toxicity", error=error)
                result = toxicity_fit
            elif expected is None:
                raise error(f"{state.source}: no patient is DLT-evaluable yet and there are no co-data: the "
                            f"{kind} model has nothing to be fitted to yet")
            else:
                result = fit(expected, seed=seed, progress=progress)
            fits["toxicity"] = result
            toxicity = toxicity_draws(result)
    if efficacy_fit is not None or (design.needs_efficacy_model and not state.counts_only):
        expected = expected_efficacy_model(spec, state, codata)
        if efficacy_fit is not None:  # checked even when the design reads no efficacy: it is untrusted input
            check_fit_matches(efficacy_fit, expected, efficacy_fit_source, role="efficacy", error=error)
        result = efficacy_fit if efficacy_fit is not None else (
            fit(expected, seed=seed, progress=progress) if expected is not None else None)
        if result is not None and design.needs_efficacy_model and not state.counts_only:
            fits["efficacy"] = result
            efficacy = efficacy_draws(result, spec, seed)
    failed = tuple(result.model.name for result in fits.values() if not result.converged)
    context = DecisionContext(spec, state, toxicity, efficacy, failed, forced=force, alerts=tuple(alerts))
    return DecisionInputs(spec, design, context, fits)


# ---- one model on given data (lupusbayes fit / prior) ------------------------------------------------

MODEL_KINDS = ("crs", "blrm", "sledai")


def model_for(kind: str, spec: TrialSpec, cohort: Cohort | None):
    """The model ``kind`` (``"crs"``, ``"blrm"``, ``"sledai"``) of ``spec`` on ``cohort``."""
    from lupusbayes.models.sledai import SledaiModel
    from lupusbayes.models.toxicity import BLRM, CRSModel

    if kind not in MODEL_KINDS:
        raise ModelSetupError(f"unknown model {kind!r}; choose one of {', '.join(MODEL_KINDS)}")
    return {"crs": CRSModel, "blrm": BLRM, "sledai": SledaiModel}[kind](cohort, spec)


def fitting_cohort(spec: TrialSpec, data: Sequence[str | Cohort] | None, kind: str) -> Cohort | None:
    """The cohort a fit of one model uses: the given files (or cohorts), stacked. Nothing is added that
    was not asked for: the shipped KN5601 cohort enters only when named (``"kn5601"``).

    Without data only a BLRM can be fitted, from the spec's ``[[observations]]`` (None is returned).

    Raises
    ------
    LupusBayesError
        No data, and the model is not a BLRM with observations in the spec.
    """
    from lupusbayes.cohort import load_cohort

    if data:
        return combine_cohorts([item if isinstance(item, Cohort) else load_cohort(item) for item in data])
    if kind == "blrm" and spec.observations:
        return None
    where = " or add [[observations]] (DLT counts per dose) to the spec" if kind == "blrm" else ""
    raise LupusBayesError(
        f"{spec.source}: no data to fit the {kind} model to: give --data FILE (repeat it for several studies; "
        f"'--data kn5601' is the shipped KN5601 cohort){where}"
    )


def borrows(spec: TrialSpec) -> bool:
    """Whether the spec's DLT model borrows from co-data (``[model.blrm] hierarchy`` exnex or exchangeable)."""
    return spec.models.blrm.hierarchy in ("exnex", "exchangeable")


def simulation_priors(spec: TrialSpec, codata: Sequence[Cohort], *, seed: int, progress=None,
                      error: type[LupusBayesError] = DecisionError, cache=None):
    """The priors a simulation of ``spec``'s trial decides with: derived from ``codata`` as real decisions
    borrow from it (:func:`lupusbayes.fitting.codata.codata_priors`), or None without co-data.

    Raises
    ------
    error
        The spec borrows from co-data and none were given (a simulation would decide from another prior
        than the trial's decisions).
    """
    if not codata:
        if borrows(spec):
            raise error(f"{spec.source}: [model.blrm] hierarchy '{spec.models.blrm.hierarchy}' borrows from co-data, "
                        "and real decisions read them: give the same co-data to the simulation (--codata FILE, "
                        "e.g. kn5601), so that simulated trials decide as the trial will")
        return None
    from lupusbayes.fitting.codata import codata_priors

    return codata_priors(spec, codata, seed=seed, progress=progress, cache=cache)


# ---- the prior before any patient -----------------------------------------------------------------


@dataclass(frozen=True)
class PriorBeforeData:
    """What :func:`prior_before_data` returns: the DLT prior per dose
    (:class:`~lupusbayes.decisions.prior_summary.DltPriorSummary`), the levels no dose path can reach
    from the first patient (None when that needs co-data not given), and whether the co-data fit
    behind the prior passed its convergence gate (True when there is none)."""

    summary: object
    reachability: object
    converged: bool = True


def prior_before_data(spec, *, codata: Sequence[Cohort] = (), model: str = "blrm", seed: int = 20251108,
                      cache=None, progress=None) -> PriorBeforeData:
    """The DLT prior per dose before any patient: ``lupusbayes prior SPEC`` without data.

    Without co-data, the spec's ``[model.blrm.prior]`` computed exactly (quadrature, no MCMC). With
    co-data, the prior the decisions read given them: the EXNEX (or exchangeable) fit of the co-data
    that ``decide`` makes for a trial with no patient yet (the same model, data, settings and seed:
    the same fit, read from ``cache`` when made before). Per dose: P(DLT) mean, median and 90%
    interval, the toxicity intervals' probabilities, EWOC's verdict, the prior effective sample size.

    Raises
    ------
    LupusBayesError
        ``model`` is not ``"blrm"`` (the CRS and SLEDAI-2K priors are checked on data, with
        ``lupusbayes prior --data``); the co-data hold the trial's own patients; the spec holds
        ``[[observations]]`` (data of the trial) together with co-data.
    """
    from lupusbayes.decisions import state_from_counts
    from lupusbayes.decisions.prior_summary import dlt_prior_summary

    spec = spec if isinstance(spec, TrialSpec) else _spec_and_state(spec, "", None)[0]
    if model != "blrm":
        raise LupusBayesError(f"without --data, 'lupusbayes prior' summarises the DLT model's prior (blrm) before any "
                              f"patient: use --model blrm (the default), or give --data FILE for the {model} "
                              "model's prior predictive on a cohort ('--data kn5601' is the shipped KN5601 cohort)")
    codata = [item if isinstance(item, Cohort) else _load_cohort(item) for item in codata]
    if not codata:
        notes: tuple[str, ...] = ()
        if borrows(spec):
            notes = (f"[model.blrm] hierarchy '{spec.models.blrm.hierarchy}' borrows from co-data: the trial's "
                     "decisions read the prior given the co-data (decide refuses without them); add --codata FILE "
                     "(e.g. kn5601) for that prior. Shown: the spec's prior for (log a, log b), which under EXNEX "
                     "is the non-exchangeable component's and the population mean's",)
        return PriorBeforeData(dlt_prior_summary(spec, notes=notes), reachability(spec, seed=seed))
    studies = [study for cohort in codata for study in cohort.study_ids]
    if spec.trial.id in studies:
        raise LupusBayesError(f"--codata holds patients of {spec.trial.id}, the spec's own trial: they are its data, "
                              "not co-data; give other studies' cohorts (or --data FILE for the prior predictive)")
    if spec.observations:
        raise LupusBayesError(f"{spec.source}: the spec's [[observations]] are data of the trial, so a prior given "
                              "co-data would not be before any data; remove them, or leave out --codata")
    from lupusbayes.fitting.fitcache import cached_fit

    levels = len(spec.dosing.levels)
    no_patient = state_from_counts(spec, [0] * levels, [0] * levels, source="no patient yet")
    toxicity_model = expected_toxicity_model(spec, design_for(spec, "blrm_ewoc"), no_patient, codata)
    result = cached_fit(toxicity_model, seed=seed, cache=cache, progress=progress)
    n_patients = sum(cohort.n_patients for cohort in codata)
    how = {"exnex": "EXNEX", "exchangeable": "exchangeable hierarchy", "none": "complete pooling"}[
        toxicity_model.hierarchy]
    weight = (f"; the trial's prior exchangeability weight {spec.models.blrm.exchangeability(spec.trial.id):g}"
              if toxicity_model.hierarchy == "exnex" else "")
    source = (f"{how} given co-data: {', '.join(dict.fromkeys(studies))} ({n_patients} patients){weight}; "
              f"MCMC fit {toxicity_model.name}, seed {seed} (the fit decide --seed {seed} makes with these co-data)")
    gate = ("the co-data fit passed its convergence gate" if result.converged else
            "the co-data fit FAILED its convergence gate: decisions must not rest on it")
    summary = dlt_prior_summary(spec, toxicity_draws(result), source=source, notes=(gate,), seed=seed)
    reach = reachability(spec, codata=codata, seed=seed, cache=cache, fits={"toxicity": result})
    return PriorBeforeData(summary, reach, bool(result.converged))


def _load_cohort(item):
    from lupusbayes.cohort import load_cohort

    return load_cohort(item)


def reachability_unknown_reason(spec: TrialSpec, design=None) -> str:
    """Why :func:`reachability` gave None: a design whose path depends on responses, or co-data not given."""
    design = design if isinstance(design, Design) else design_for(spec, design)
    if design.reads_responses:
        return (f"not assessed for {design.name}: its path depends on each patient's response as well as the DLTs, "
                "so a run without DLTs does not bound it")
    return (f"needs the co-data the spec borrows from ([model.blrm] hierarchy '{spec.models.blrm.hierarchy}' or a CRS "
            "toxicity model): add --codata FILE (e.g. kn5601)")


def dose_paths_reachability_line(reach, spec: TrialSpec) -> str:
    """One line on which levels can be reached (``reach`` from :func:`reachability`; None: see
    :func:`reachability_unknown_reason`)."""
    if reach is None:
        return f"Reachability of the levels: {reachability_unknown_reason(spec)}"
    return ("Reachability: " if reach.ok else "Warning: ") + reach.message()


# ---- one call each: the recommendation, the SRC report -------------------------------------------------


@dataclass(frozen=True)
class Decision:
    """What :func:`recommend` returns: the recommendation, the transition table, and the inputs
    (spec, design, context with the posteriors, the fits behind them).

    ``str(decision)`` is what ``lupusbayes decide`` prints; :meth:`to_dict` what ``--json`` prints
    (levels counted from 1).
    """

    recommendation: object
    transitions: tuple
    inputs: DecisionInputs
    reachability: object = None  # lupusbayes.decisions.paths.Reachability: the levels no path can reach
    paths: tuple = ()  # lupusbayes.decisions.paths.DosePath, when asked for (paths=k)

    @property
    def fits(self) -> dict:
        return self.inputs.fits

    def _boin_rule(self):
        from lupusbayes.decisions.rules import BoinRule

        return next((rule for rule in self.inputs.design.rules if isinstance(rule, BoinRule)), None)

    def text(self, *, transitions: bool = True) -> str:
        """The recommendation with every rule and its numbers; then, when asked for and computed, the
        recommendation after every outcome of the next cohort (and BOIN's decision table)."""
        from lupusbayes.decisions.boin import boin_decision_table
        from lupusbayes.report import text

        spec = self.inputs.spec
        parts = [text.recommendation_text(self.recommendation, spec)]
        if self.reachability is not None and not self.reachability.ok:
            parts += ["", f"Warning: {self.reachability.message()}"]
        if self.paths:
            parts += ["", dose_paths_text(self.paths, spec)]
        if transitions and self.transitions:
            parts += ["", text.transitions_text(self.transitions, spec)]
            boin_rule = self._boin_rule()
            if boin_rule is not None:
                parts += ["", "BOIN decision table (DLTs among the patients treated at the current level):",
                          text.boin_table_text(boin_decision_table(boin_rule.boundaries,
                                                                   min(boin_rule.boundaries.max_patients, 12)))]
        return "\n".join(parts)

    def to_dict(self, *, transitions: bool = True) -> dict:
        """The recommendation as JSON-ready data (levels count from 1), with the transitions when computed."""
        from lupusbayes.decisions.boin import boin_decision_table

        payload = self.recommendation.to_dict()
        if self.reachability is not None:
            payload["reachability"] = reachability_dict(self.reachability)
        if self.paths:
            payload["dose_paths"] = [path.to_dict() for path in self.paths]
        if transitions and self.transitions:
            payload["transitions"] = [{"n_dlt": t.n_dlt, "n_responders": t.n_responders, "pending": t.pending,
                                       "recommendation": t.recommendation.to_dict()} for t in self.transitions]
            boin_rule = self._boin_rule()
            if boin_rule is not None:
                payload["boin_decision_table"] = list(boin_decision_table(boin_rule.boundaries,
                                                                          min(boin_rule.boundaries.max_patients, 30)))
        return payload

    def __str__(self) -> str:
        return self.text(transitions=False)

    def __repr__(self) -> str:
        r = self.recommendation
        return (f"Decision({r.trial_id}, design {r.design}: {r.action}"
                + (f" {r.next_dose_label}" if r.next_dose_label else "") + f"; fits: {', '.join(self.fits) or 'none'})")


def decide_from_inputs(inputs: DecisionInputs, *, transitions: bool = True, paths: int = 0,
                       reachability: bool = True) -> Decision:
    """The :class:`Decision` of prepared inputs (:func:`decision_inputs`): the recommendation; the
    recommendation after every outcome of the next cohort when ``transitions``; every dose path of
    the next ``paths`` cohorts (:func:`~lupusbayes.decisions.paths.dose_paths`); and, when
    ``reachability``, the levels no path can reach within the sample size
    (:func:`~lupusbayes.decisions.paths.dlt_free_run`)."""
    from lupusbayes.decisions import decide, transition_table
    from lupusbayes.decisions.paths import dlt_free_run, dose_paths

    recommendation = decide(inputs.context, inputs.design)
    table = transition_table(inputs.context, inputs.design, recommendation=recommendation) if transitions else ()
    reach = dlt_free_run(inputs.context, inputs.design, recommendation=recommendation) if reachability else None
    tree = dose_paths(inputs.context, inputs.design, paths, recommendation=recommendation) if paths else ()
    return Decision(recommendation, table, inputs, reach, tree)


def reachability_dict(reachability) -> dict:
    """A :class:`~lupusbayes.decisions.paths.Reachability` as JSON-ready data (levels from 1)."""
    return {"ok": reachability.ok, "unreachable_levels": list(reachability.unreachable),
            "dlt_free_run": reachability.run.outcomes, "levels_given": list(reachability.levels_given),
            "reasons": list(reachability.reasons), "message": reachability.message()}


def recommendation_words(recommendation) -> str:
    """A recommendation in a few words, for one row of a table: ``escalate -> level 2 (2.0e9 cells), 3
    patient(s)``, ``STOP, select 1.0e9 cells (level 1)``, ``hold: wait 12 days ...``."""
    r = recommendation
    if r.action == "stop":
        return "STOP" + (f", select {r.selection.dose_label} (level {r.selection.level})"
                         if r.selection is not None and r.selection.level is not None else ", no dose selected")
    if r.paused:
        return f"hold: wait {r.wait_days} days for the patients inside the DLT window"
    return f"{r.action} -> level {r.next_level} ({r.next_dose_label}), {r.n_next} patient(s)"


def dose_paths_text(paths, spec: TrialSpec) -> str:
    """The dose paths as a table: each path's outcomes (levels from 1, N / T per patient) and the
    recommendation after them."""
    rows = [f"Dose paths of the next {max(path.n_cohorts for path in paths)} cohort(s) from the current state: "
            "outcomes (level, then N or T per patient) and the recommendation after them"]
    width = max(len(path.outcomes) for path in paths) + 2
    for path in paths:
        rows.append(f"  {(path.outcomes or '(now)'):<{width}} {recommendation_words(path.recommendation)}")
    rows.append("Responses are not part of the paths: a design that reads efficacy reads the current efficacy "
                "posterior at every step.")
    return "\n".join(rows)


def reachability(spec, *, design=None, codata: Sequence[Cohort] = (), seed: int = 20251108, cache=None,
                 fits: dict | None = None):
    """The levels no dose path can reach from the start of the trial (no patient yet), or None when
    that needs a fit the caller did not ask for (the spec borrows from co-data and none are given).

    Exact (quadrature) for a BLRM without co-data: no MCMC, fractions of a second.
    """
    from lupusbayes.decisions import state_from_outcomes
    from lupusbayes.decisions.paths import dlt_free_run

    spec = spec if isinstance(spec, TrialSpec) else _spec_and_state(spec, "", None)[0]
    design = design if isinstance(design, Design) else design_for(spec, design)
    if (borrows(spec) and not codata) or (design.needs_toxicity_model and toxicity_model_kind(spec, design) == "crs"):
        return None
    fits = fits or {}
    try:
        inputs = decision_inputs(spec, state_from_outcomes(spec, ""), design=design, codata=codata, seed=seed,
                                 cache=cache, toxicity_fit=fits.get("toxicity") if design.needs_toxicity_model else None)
    except DecisionError:
        return None  # e.g. a design that reads a model this start cannot be fitted to
    return dlt_free_run(inputs.context, inputs.design)


def _spec_and_state(spec, state, as_of):
    from pathlib import Path

    from lupusbayes.decisions import load_state, state_from_outcomes
    from lupusbayes.spec import load_spec

    spec = spec if isinstance(spec, TrialSpec) else load_spec(spec)
    if isinstance(state, TrialState):
        return spec, state
    text = str(state)
    if not text.strip():
        return spec, state_from_outcomes(spec, "")  # the trial before its first patient
    if not Path(text).exists() and text.lower() != "kn5601" and any(c.isdigit() for c in text[:1]):
        return spec, state_from_outcomes(spec, text)  # an outcome string, e.g. "1NNN 2NNT"
    return spec, load_state(text, spec, as_of=as_of)


def recommend(spec, state, *, design=None, codata: Sequence[Cohort] = (), fits: dict | None = None,
              seed: int = 20251108, force: bool = False, as_of=None, transitions: bool = True, paths: int = 0,
              cache=None, allow_unmodelled_dlt: bool = False, progress=None) -> Decision:
    """The recommendation for the next cohort, in one call: what ``lupusbayes decide`` prints.

    Parameters
    ----------
    spec
        A :class:`~lupusbayes.TrialSpec`, a spec file or a shipped name (``"axa_nk02"``).
    state
        A :class:`~lupusbayes.decisions.TrialState`, a state file (patients or counts), ``"kn5601"``,
        outcome strings (``"1NNN 2NNT"``), or ``""`` for the trial before its first patient; ``as_of``
        is the cut-off for infusion dates.
    design, seed, force, allow_unmodelled_dlt
        As for :func:`decision_inputs`.
    codata
        Other studies' cohorts: :class:`~lupusbayes.Cohort` objects, files, or ``"kn5601"``.
    fits
        Saved fits to use, ``{"toxicity": ..., "efficacy": ...}``: :class:`~lupusbayes.FitResult` objects
        or fit files; each must be the fit this decision would make (checked, else a one-line error).
    paths
        Also every dose path of the next ``paths`` cohorts (:attr:`Decision.paths`).
    cache
        A :class:`~lupusbayes.fitting.fitcache.FitCache` (fits made before are read, not refitted).

    Notes
    -----
    The decision also says which levels no path can reach within the sample size
    (:attr:`Decision.reachability`).

    Examples
    --------
    >>> import lupusbayes as lb
    >>> decision = lb.recommend("kn5601", "1NNN 2NNN", design="3+3")
    >>> decision.recommendation.action, decision.recommendation.next_dose_label
    ('escalate', '3.0e9 cells')
    """
    from lupusbayes.cohort import load_cohort
    from lupusbayes.fitting import load_fit

    spec, state = _spec_and_state(spec, state, as_of)
    codata = [item if isinstance(item, Cohort) else load_cohort(item) for item in codata]
    given = {label: fit if not isinstance(fit, str | PathLike) else load_fit(fit, spec=spec)
             for label, fit in (fits or {}).items()}
    unknown = sorted(set(given) - {"toxicity", "efficacy"})
    if unknown:
        raise DecisionError(f"fits: {unknown[0]!r} is not a fit a decision reads; give 'toxicity' and/or 'efficacy'")
    sources = {label: f"the {label} fit" + (f" {fit}" if isinstance(fit, str | PathLike) else "")
               for label, fit in (fits or {}).items()}
    inputs = decision_inputs(spec, state, design=design, codata=codata, toxicity_fit=given.get("toxicity"),
                             efficacy_fit=given.get("efficacy"), seed=seed, force=force, progress=progress,
                             allow_unmodelled_dlt=allow_unmodelled_dlt, cache=cache,
                             toxicity_fit_source=sources.get("toxicity", "the toxicity fit"),
                             efficacy_fit_source=sources.get("efficacy", "the efficacy fit"))
    return decide_from_inputs(inputs, transitions=transitions, paths=paths)


def report_inputs(decision: Decision, *, seed: int, command: str = "lupusbayes.src_report(...)", sensitivity=None):
    """Everything the SRC report shows, from a :class:`Decision` (its fits' own prior draws, no refit)."""
    from lupusbayes.eligibility import screen
    from lupusbayes.report.html import ReportInputs, report_figures
    from lupusbayes.summary import summarise_cohort

    inputs = decision.inputs
    spec, state = inputs.spec, inputs.context.state
    priors = {label: result.prior_check() for label, result in inputs.fits.items()}  # drawn with the fit
    figures = report_figures(spec, inputs.fits, decision.recommendation, decision.transitions)
    return ReportInputs(
        spec=spec, state=state, recommendation=decision.recommendation, command=command, seed=seed,
        cohort_summary=summarise_cohort(state.cohort, seed=seed) if state.cohort is not None else None,
        screening=screen(state.cohort.patients, spec) if state.cohort is not None else None,
        fits=dict(inputs.fits), priors=priors, transitions=decision.transitions, figures=figures,
        reachability_warning="" if decision.reachability is None or decision.reachability.ok
        else decision.reachability.message(),
        sensitivity=sensitivity,
    )


def src_report(spec, state, *, out=None, overwrite: bool = False, mkdir: bool = False, seed: int = 20251108,
               command: str = "lupusbayes.src_report(...)", sensitivity=None, **options) -> str:
    """The Safety Review Committee report in one call: the HTML text, written to ``out`` when given.

    ``spec``, ``state`` and ``options`` are those of :func:`recommend` (a :class:`Decision` may be
    given as ``decision=`` to report it without deciding again); ``sensitivity`` a
    :class:`lupusbayes.sensitivity.PriorSensitivity` of that decision, shown in its own section.
    """
    from pathlib import Path

    from lupusbayes._io import check_output_path, write_text_atomic
    from lupusbayes.report.html import src_report_html

    if out is not None:
        check_output_path(out, overwrite=overwrite, mkdir=mkdir)  # before any work
    decision = options.pop("decision", None) or recommend(spec, state, seed=seed, **options)
    html_text = src_report_html(report_inputs(decision, seed=seed, command=command, sensitivity=sensitivity))
    if out is not None:
        write_text_atomic(Path(out), html_text, overwrite=overwrite, mkdir=mkdir)
    return html_text
