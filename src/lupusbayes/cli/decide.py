"""``lupusbayes decide``: the recommendation for the next dose group, with every rule's numbers."""

from __future__ import annotations

import argparse
import sys
from datetime import date

from lupusbayes.cli.cache import add_cache_option, fit_cache_for
from lupusbayes.cli.commands import COMMANDS
from lupusbayes.cli.output import (
    EXIT_GATE_FAILED,
    EXIT_OK,
    add_progress_option,
    bounded_int,
    print_json,
    progress_for,
    seed_value,
)
from lupusbayes.cohort import load_cohort, parse_trial_date
from lupusbayes.decisions import design_for, load_state, state_from_outcomes
from lupusbayes.spec import DESIGNS, load_spec
from lupusbayes.workflow import DecisionInputs, decide_from_inputs, decision_inputs

__all__ = ["add_commands", "add_decision_arguments", "prepare", "gate_exit", "Prepared", "as_of_date"]

Prepared = DecisionInputs  # what ``report`` builds its report from


def as_of_date(text: str) -> date:
    """``--as-of``'s type: a date YYYY-MM-DD in the plausible range of trial dates."""
    try:
        return parse_trial_date(text, what="the data cut-off")
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def prepare(args: argparse.Namespace) -> DecisionInputs:
    """Spec, design, state, co-data, and the posteriors (fitting what is not given): the workflow's
    :func:`~lupusbayes.workflow.decision_inputs` with the command line's arguments."""
    from lupusbayes.fitting import load_fit

    spec = load_spec(args.spec)
    design = design_for(spec, args.design)
    if args.outcomes is not None:
        state = state_from_outcomes(spec, args.outcomes)
    else:
        state = load_state(args.state, spec, as_of=args.as_of)
    codata = [load_cohort(path) for path in args.codata or []]
    toxicity_fit = load_fit(args.fit, spec=spec) if args.fit else None
    efficacy_fit = load_fit(args.efficacy_fit, spec=spec) if args.efficacy_fit else None
    return decision_inputs(spec, state, design=design, codata=codata, toxicity_fit=toxicity_fit,
                           efficacy_fit=efficacy_fit, seed=args.seed, force=args.force, progress=progress_for(args),
                           allow_unmodelled_dlt=args.allow_unmodelled_dlt, toxicity_fit_source=str(args.fit),
                           efficacy_fit_source=str(args.efficacy_fit), cache=fit_cache_for(args))


def gate_exit(prepared: Prepared, args: argparse.Namespace) -> int:
    """Exit 3 (with one line on stderr) when a fit failed its gate and --force was not given."""
    failed = prepared.context.failed_gates
    if failed and not args.force:
        print(f"lupusbayes: the {', '.join(failed)} fit FAILED its convergence gate: no escalation is recommended "
              "from it; refit with more draws, or --force and say so", file=sys.stderr)
        return EXIT_GATE_FAILED
    return EXIT_OK


def sensitivity_for(decision, args: argparse.Namespace):
    """With ``--sensitivity``: the decision under named alternative priors (:mod:`lupusbayes.sensitivity`)."""
    if not getattr(args, "sensitivity", False):
        return None
    from lupusbayes.sensitivity import prior_sensitivity

    return prior_sensitivity(decision.inputs.spec, decision.inputs.context.state, base=decision,
                             codata=[load_cohort(path) for path in args.codata or []], seed=args.seed,
                             cache=fit_cache_for(args), progress=progress_for(args))


def _decide(args: argparse.Namespace) -> int:
    prepared = prepare(args)
    decision = decide_from_inputs(prepared, transitions=args.transitions, paths=args.paths)
    sensitivity = sensitivity_for(decision, args)
    if args.json:
        payload = decision.to_dict()
        if sensitivity is not None:
            payload["sensitivity"] = sensitivity.to_dict()
        print_json(payload)
    else:
        print(decision.text())
        if sensitivity is not None:
            from lupusbayes.sensitivity import sensitivity_text

            print()
            print(sensitivity_text(sensitivity))
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
    add_cache_option(parser)
    parser.add_argument("--sensitivity", action="store_true",
                        help="also the recommendation under named alternative priors (SDs x 2 and x 0.5, the prior "
                        "median P(DLT) x 2 and x 0.5, with co-data the co-data weight 0 / 0.25 / 0.75) and whether "
                        "it changes; with co-data, each study's prior and posterior exchangeability weight")
    parser.add_argument("--allow-unmodelled-dlt", dest="allow_unmodelled_dlt", action="store_true",
                        help="with toxicity_model = 'crs': decide although a recorded DLT is not explained by CRS "
                        "(the headline says which DLTs the model cannot see); refused otherwise")


def add_commands(commands) -> None:
    parser = commands.add_parser(
        "decide", help=COMMANDS["decide"][1],
        description="The recommendation for the next cohort under the spec's design ([decision], or --design): "
        "the action, the level, how many patients, the earliest day, each rule's question, verdict and numbers, "
        "and the warnings (failed gate, close calls, DLT components not recorded). Fits the models the design "
        "needs unless given (--fit, --efficacy-fit). Exit 3 if a fit failed its convergence gate (no escalation "
        "then), unless --force, which the output states. It also says which levels no path can reach within "
        "the sample size, even without a DLT.",
        epilog="examples:\n"
        "  lupusbayes decide kn5601 --state kn5601\n"
        "  lupusbayes decide kn5601 --design 3+3 --outcomes \"1NNN 2NNN\" --transitions\n"
        "  lupusbayes decide axa_nk02 --outcomes \"\" --codata kn5601 --paths 3",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_decision_arguments(parser)
    parser.add_argument("--transitions", action="store_true",
                        help="also tabulate the recommendation after every outcome of the next cohort")
    parser.add_argument("--paths", type=bounded_int(1, 8), default=0, metavar="K",
                        help="also every dose path of the next K cohorts: each sequence of outcomes (DLTs per "
                        "cohort) and the recommendation after it (at most 8 cohorts)")
    add_progress_option(parser, help="show fitting progress on stderr (default: on a terminal)")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.set_defaults(handler=_decide)

