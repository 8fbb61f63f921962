"""``lupusbayes construct-prior``: a DLT prior for a spec's doses, as the ``[model.blrm.prior]`` block to paste."""

from __future__ import annotations

import argparse
import json
import sys
import warnings

from lupusbayes._io import check_output_path
from lupusbayes.cli.cache import add_cache_option, fit_cache_for
from lupusbayes.cli.commands import COMMANDS
from lupusbayes.cli.output import (
    EXIT_GATE_FAILED,
    EXIT_OK,
    add_output_options,
    bounded_float,
    emit_text,
    progress_for,
    seed_value,
)
from lupusbayes.errors import ConvergenceGateError, PriorConstructionWarning
from lupusbayes.spec import load_spec

__all__ = ["add_commands"]


def _construct_prior(args: argparse.Namespace) -> int:
    """Print (or write) the constructed prior; exit 3 if the co-data fit behind it failed its gate."""
    from lupusbayes.cohort import load_cohort
    from lupusbayes.prior_construction import construct_prior

    spec = load_spec(args.spec)
    if args.out is not None:
        check_output_path(args.out, overwrite=args.overwrite, mkdir=args.mkdir)  # before any work
    with warnings.catch_warnings():  # the construction's warnings are part of its output, not repeated on stderr
        warnings.simplefilter("ignore", PriorConstructionWarning)
        try:
            result = construct_prior(
                spec, args.method, codata=[load_cohort(path) for path in args.codata or []], seed=args.seed,
                robust_weight=args.robust_weight, threshold_lowest=args.threshold_lowest,
                threshold_highest=args.threshold_highest, probability_above_lowest=args.probability_above_lowest,
                probability_below_highest=args.probability_below_highest,
                cache=fit_cache_for(args) if args.codata else None, progress=progress_for(args))
        except ConvergenceGateError as error:
            print(f"lupusbayes: {error}", file=sys.stderr)
            return EXIT_GATE_FAILED
    text = (json.dumps(result.to_dict(), indent=2, allow_nan=False) + "\n" if args.json
            else result.text(dose_unit=spec.dosing.unit.value))
    emit_text(text, args)
    return EXIT_OK


def add_commands(commands) -> None:
    parser = commands.add_parser(
        "construct-prior", help=COMMANDS["construct-prior"][1],
        description="Construct a DLT prior (BLRM) for the spec's dose levels and print it as the [model.blrm.prior] "
        "block to paste into the spec, followed (as TOML comments) by what it implies per dose: P(DLT) mean, median "
        "and 90% interval, P(P(DLT) >= the overdose edge), the prior effective sample size with its method named, and "
        "the construction's warnings. minimal-informative: Neuenschwander, Branson & Gsponer (2008) as crmPack's "
        "MinimalInformative (pitfall: the top dose's prior is pessimistic by construction and the slope's SD can "
        "collapse; both are computed and shown). robust-mixture: the co-data MAP prior (with --codata; an MCMC fit, "
        "kept in the fit cache) or the spec's own prior, mixed with a weakly informative component (weight "
        "--robust-weight, 0.1) as RBesT's robustify. No MCMC without --codata.",
        epilog="examples:\n"
        "  lupusbayes construct-prior axa_nk02 --method minimal-informative\n"
        "  lupusbayes construct-prior axa_nk02 --method robust-mixture --robust-weight 0.2 --out robust_prior.toml\n"
        "  lupusbayes construct-prior axa_nk02 --method robust-mixture --codata kn5601 --seed 1 --json",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("spec", help="trial spec TOML (or 'kn5601' / 'axa_nk02'): its levels, reference dose and "
                        "toxicity intervals")
    parser.add_argument("--method", choices=("minimal-informative", "robust-mixture"), required=True,
                        help="how to construct the prior")
    parser.add_argument("--threshold-lowest", type=bounded_float(1e-6, 1.0), default=0.2, dest="threshold_lowest",
                        help="minimal-informative: P(DLT) at the lowest dose exceeds this with probability "
                        "--probability-above-lowest (default 0.2; crmPack threshmin)")
    parser.add_argument("--probability-above-lowest", type=bounded_float(1e-6, 1.0), default=0.05,
                        dest="probability_above_lowest", help="default 0.05 (crmPack probmin)")
    parser.add_argument("--threshold-highest", type=bounded_float(1e-6, 1.0), default=0.3, dest="threshold_highest",
                        help="minimal-informative: P(DLT) at the highest dose is below this with probability "
                        "--probability-below-highest (default 0.3; crmPack threshmax)")
    parser.add_argument("--probability-below-highest", type=bounded_float(1e-6, 1.0), default=0.05,
                        dest="probability_below_highest", help="default 0.05 (crmPack probmax)")
    parser.add_argument("--robust-weight", type=bounded_float(1e-6, 1.0), default=0.1, dest="robust_weight",
                        help="robust-mixture: the weakly informative component's weight (default 0.1)")
    parser.add_argument("--codata", action="append", metavar="FILE",
                        help="robust-mixture: co-data for the informative component, the trial's MAP prior given them "
                        "(repeatable; 'kn5601' is the shipped cohort); without it, the spec's [model.blrm.prior]")
    parser.add_argument("--seed", type=seed_value, default=20251108,
                        help="with --codata: the co-data fit's seed (default 20251108)")
    parser.add_argument("--out", help="write to this file (atomically) instead of printing")
    add_output_options(parser)
    add_cache_option(parser)
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.set_defaults(handler=_construct_prior)
