"""``lupusbayes decide``: the recommendation for the next dose group, with every rule's numbers."""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from datetime import date

import numpy as np

from lupusbayes.cli.commands import COMMANDS
from lupusbayes.cli.output import EXIT_GATE_FAILED, EXIT_OK, add_progress_option, print_json, progress_for, seed_value
from lupusbayes.cohort import load_cohort
from lupusbayes.decisions import (
    DecisionContext,
    Design,
    decide,
    design_for,
    draws_from_dose_response,
    exact_blrm,
    load_state,
    state_from_outcomes,
    transition_table,
)
from lupusbayes.decisions.boin import boin_decision_table
from lupusbayes.decisions.rules import BoinRule
from lupusbayes.decisions.state import cohort_with
from lupusbayes.errors import LupusBayesError
from lupusbayes.spec import DESIGNS, TrialSpec, load_spec

__all__ = ["add_commands", "add_decision_arguments", "prepare", "gate_exit", "Prepared", "as_of_date",
           "check_fit_matches_state", "toxicity_draws", "efficacy_draws"]


def as_of_date(text: str) -> date:
    """``--as-of``'s type: a date YYYY-MM-DD."""
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a date YYYY-MM-DD (got {text!r})") from None


def check_fit_matches_state(result, state, path: str, *, error: type[LupusBayesError] = LupusBayesError,
                            hint: str = "refit, or leave out --fit and let decide fit the models") -> None:
    """A fit given with a state must be of the state's data: same patients, same outcomes."""
    cohort = result.model.cohort
    ids_in_fit = set() if cohort is None else set(cohort.patients.loc[cohort.patients["study_id"] == state.spec.trial.id,
                                                                      "patient_id"])
    ids_in_state = {p.patient_id for p in state.patients}
    if not state.counts_only and ids_in_fit != ids_in_state:
        missing = sorted(ids_in_state - ids_in_fit) or sorted(ids_in_fit - ids_in_state)
        raise error(f"{path}: the fit was made on other patients than the state's (e.g. {missing[0]}); {hint}")


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


def _toxicity(spec, state, args, codata, progress, fits):
    """The toxicity posterior: a given fit, the exact BLRM (one study, counts), or an MCMC fit."""
    from lupusbayes.fitting import fit, load_fit
    from lupusbayes.models.toxicity import BLRM, CRSModel

    if args.fit:
        result = load_fit(args.fit, spec=spec)
        check_fit_matches_state(result, state, args.fit)
    else:
        use_blrm = spec.decision.toxicity_model == "blrm" or state.counts_only
        if use_blrm and not codata and spec.models.blrm.hierarchy in ("auto", "none"):
            n, y = state.evaluable_counts()
            return exact_blrm(spec.dosing.levels, n, y, prior=spec.models.blrm.prior,
                              reference_dose=spec.dosing.reference_dose, source="exact BLRM (quadrature)",
                              dlt_basis="P(DLT) from the DLT counts of the state")
        cohort = cohort_with(state, codata)
        if cohort is None:
            raise LupusBayesError(f"{state.source}: a counts-only state cannot feed the {spec.decision.toxicity_model} "
                                  "model with co-data; give the patients' file")
        model = (BLRM if use_blrm else CRSModel)(cohort, spec)
        result = fit(model, seed=args.seed, progress=progress)
    fits["toxicity"] = result
    return toxicity_draws(result)


def _efficacy(spec, state, args, codata, progress, fits):
    from lupusbayes.errors import ModelSetupError
    from lupusbayes.fitting import fit, load_fit
    from lupusbayes.models.sledai import SledaiModel

    settings = spec.decision.efficacy
    if args.efficacy_fit:
        result = load_fit(args.efficacy_fit, spec=spec)
        check_fit_matches_state(result, state, args.efficacy_fit)
    else:
        cohort = cohort_with(state, codata)
        if cohort is None:
            return None
        try:
            model = SledaiModel(cohort, spec)
        except ModelSetupError:
            return None  # no follow-up visit yet: efficacy is not assessable (the rules say so)
        result = fit(model, seed=args.seed, progress=progress)
    fits["efficacy"] = result
    return efficacy_draws(result, spec, args.seed)


@dataclass(frozen=True)
class Prepared:
    """What a decision needs, read and fitted from the command line's arguments."""

    spec: TrialSpec
    design: Design
    context: DecisionContext
    fits: dict  # label ("toxicity", "efficacy") -> FitResult, for the fits behind the posteriors


def prepare(args: argparse.Namespace) -> Prepared:
    """Spec, design, state, co-data, and the posteriors (fitting what is not given)."""
    spec = load_spec(args.spec)
    design = design_for(spec, args.design)
    if args.outcomes is not None:
        state = state_from_outcomes(spec, args.outcomes)
    else:
        state = load_state(args.state, spec, as_of=args.as_of)
    codata = [load_cohort(path) for path in args.codata or []]
    progress = progress_for(args)
    fits: dict = {}
    toxicity = _toxicity(spec, state, args, codata, progress, fits) if design.needs_toxicity_model else None
    efficacy = (_efficacy(spec, state, args, codata, progress, fits)
                if design.needs_efficacy_model and not state.counts_only else None)
    failed = tuple(result.model.name for result in fits.values() if not result.converged)
    context = DecisionContext(spec, state, toxicity, efficacy, failed, forced=args.force)
    return Prepared(spec, design, context, fits)


def gate_exit(prepared: Prepared, args: argparse.Namespace) -> int:
    """Exit 3 (with one line on stderr) when a fit failed its gate and --force was not given."""
    failed = prepared.context.failed_gates
    if failed and not args.force:
        print(f"lupusbayes: the {', '.join(failed)} fit FAILED its convergence gate: no escalation is recommended "
              "from it; refit with more draws, or --force and say so", file=sys.stderr)
        return EXIT_GATE_FAILED
    return EXIT_OK


def _decide(args: argparse.Namespace) -> int:
    from lupusbayes.report import text

    prepared = prepare(args)
    spec, design, context = prepared.spec, prepared.design, prepared.context
    recommendation = decide(context, design)
    transitions = transition_table(context, design, recommendation=recommendation) if args.transitions else ()
    boin_rule = next((rule for rule in design.rules if isinstance(rule, BoinRule)), None)
    if args.json:
        payload = recommendation.to_dict()
        if args.transitions:
            payload["transitions"] = [{"n_dlt": t.n_dlt, "n_responders": t.n_responders,
                                       "recommendation": t.recommendation.to_dict()} for t in transitions]
            if boin_rule is not None:
                payload["boin_decision_table"] = list(boin_decision_table(boin_rule.boundaries,
                                                                          min(boin_rule.boundaries.max_patients, 30)))
        print_json(payload)
    else:
        print(text.recommendation_text(recommendation, spec))
        if args.transitions:
            print()
            print(text.transitions_text(transitions, spec))
            if boin_rule is not None:
                print("\nBOIN decision table (DLTs among the patients treated at the current level):")
                print(text.boin_table_text(boin_decision_table(boin_rule.boundaries,
                                                               min(boin_rule.boundaries.max_patients, 12))))
    return gate_exit(prepared, args)


def add_decision_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments ``decide`` and ``report`` share: spec, state, design, fits, co-data, seed, force."""
    parser.add_argument("spec", help="trial spec TOML (or 'kn5601' / 'axa_nk02')")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--state", help="the trial's patients (cohort file, with infusion_date or safety_days), "
                        "a counts file (dose,n_patients,n_dlt) or 'kn5601'")
    source.add_argument("--outcomes", help="R-style outcome strings instead of a state, e.g. '1NNN 2NNT'")
    parser.add_argument("--as-of", type=as_of_date, dest="as_of", help="data cut-off date (YYYY-MM-DD), for infusion_date")
    parser.add_argument("--design", choices=DESIGNS, help="override the spec's [decision] design")
    parser.add_argument("--fit", help="a saved toxicity fit (.nc) of the state's data")
    parser.add_argument("--efficacy-fit", dest="efficacy_fit", help="a saved SLEDAI-2K fit (.nc) of the state's data")
    parser.add_argument("--codata", action="append", metavar="FILE",
                        help="co-data cohort for the models (repeatable; 'kn5601' is the shipped cohort)")
    parser.add_argument("--seed", type=seed_value, default=20251108, help="seed for the fits and draws made here")
    parser.add_argument("--force", action="store_true", help="use fits that failed their convergence gate (said in the output)")


def add_commands(commands) -> None:
    parser = commands.add_parser(
        "decide", help=COMMANDS["decide"][1],
        description="The recommendation for the next cohort under the spec's design ([decision], or --design): "
        "the action, the level, how many patients, the earliest day, each rule's question, verdict and numbers, "
        "and the warnings (failed gate, close calls, DLT components not recorded). Fits the models the design "
        "needs unless given (--fit, --efficacy-fit). Exit 3 if a fit failed its convergence gate (no escalation "
        "then), unless --force, which the output states.",
    )
    add_decision_arguments(parser)
    parser.add_argument("--transitions", action="store_true",
                        help="also tabulate the recommendation after every outcome of the next cohort")
    add_progress_option(parser, help="show fitting progress on stderr (default: on a terminal)")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.set_defaults(handler=_decide)

