"""``lupusbayes fit``, ``check`` and ``prior``: fit a model to one file, read it back, and what its prior implies."""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from lupusbayes.cli.cache import add_cache_option
from lupusbayes.cli.commands import COMMANDS
from lupusbayes.cli.output import (
    EXIT_GATE_FAILED,
    EXIT_OK,
    add_output_options,
    add_progress_option,
    bounded_float,
    bounded_int,
    print_json,
    progress_for,
    records,
    seed_value,
)
from lupusbayes.spec import load_spec

__all__ = ["add_commands"]


def _fit_settings(spec, args: argparse.Namespace):
    """The spec's [fitting] with the command line's overrides (each already range-checked by argparse)."""
    changes = {name: getattr(args, name) for name in ("draws", "tune", "chains", "sampler", "target_accept")
               if getattr(args, name) is not None}
    return spec.fitting.replace(**changes)


def _fit_payload(result, path: Path | None = None) -> dict[str, Any]:
    return {
        "file": None if path is None else str(path),
        "model": result.model.name,
        "trial_id": result.model.spec.trial.id,
        "seed": result.seed,
        "converged": result.converged,
        "notes": result.model.notes(),
        "diagnostics": result.diagnostics.to_dict(),
        "dose_summary": records(result.dose_summary()),
        "posterior_predictive_checks": records(result.ppc_table()),
        "prior_predictive_checks": records(result.prior_predictive_table()),
    }


def _fit(args: argparse.Namespace) -> int:
    from lupusbayes._io import check_output_path
    from lupusbayes.fitting import fit
    from lupusbayes.report import text

    from lupusbayes.workflow import fitting_cohort, model_for

    out = check_output_path(args.out, overwrite=args.overwrite, mkdir=args.mkdir)  # before any work
    spec = load_spec(args.spec)
    model = model_for(args.model, spec, fitting_cohort(spec, args.data, args.model))
    result = fit(model, seed=args.seed, settings=_fit_settings(spec, args), progress=progress_for(args))
    result.save(out, overwrite=args.overwrite)
    if args.json:
        print_json(_fit_payload(result, out))
    else:
        print(text.fit_text(result))
        print(f"\nwritten: {out}")
    if not result.converged:
        print(f"lupusbayes: the fit FAILED its convergence gate; {out} is written for inspection, "
              "but decisions must not rest on it", file=sys.stderr)
        return EXIT_GATE_FAILED
    return EXIT_OK


def _check(args: argparse.Namespace) -> int:
    from lupusbayes.fitting import load_fit
    from lupusbayes.report import text

    spec = load_spec(args.spec) if args.spec else None
    result = load_fit(args.fit, spec=spec)
    if args.json:
        print_json(_fit_payload(result, Path(args.fit)))
    else:
        print(text.fit_text(result))
        print("\nPrior predictive checks (does the prior allow what was seen?):")
        print(result.prior_predictive_table().to_string(index=False, float_format=lambda v: f"{v:.3f}"))
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            loo = result.loo()
        print(f"\nPSIS-LOO: elpd {float(loo.elpd):.2f} (SE {float(loo.se):.2f}), "
              f"max Pareto k {float(np.max(loo.pareto_k)):.2f}")
        for warning in caught:
            print(f"warning: {warning.message}")
    return EXIT_OK if result.converged else EXIT_GATE_FAILED


def _prior(args: argparse.Namespace) -> int:
    """With data (or the spec's [[observations]]): the prior predictive on them. Without: the DLT prior
    before any patient (:func:`_prior_before_data`)."""
    from lupusbayes.errors import LupusBayesError
    from lupusbayes.fitting import prior_predictive
    from lupusbayes.report import text
    from lupusbayes.workflow import fitting_cohort, model_for

    spec = load_spec(args.spec)
    if args.data and args.codata:
        raise LupusBayesError("--codata goes with the prior before any data (no --data); with --data, give every "
                              "study's cohort with --data (repeat it)")
    if not args.data and (args.codata or not spec.observations):
        return _prior_before_data(spec, args)
    model = model_for(args.model, spec, fitting_cohort(spec, args.data, args.model))
    check = prior_predictive(model, seed=args.seed, draws=args.draws)
    if args.json:
        print_json({"model": model.name, "trial_id": spec.trial.id, "seed": args.seed, "draws": args.draws,
                    "notes": model.notes(), "dose_summary": records(check.dose_summary()),
                    "prior_predictive_checks": records(check.check_table())})
    else:
        print(text.prior_predictive_text(check))
    return EXIT_OK


def _prior_before_data(spec, args: argparse.Namespace) -> int:
    """The DLT prior per dose before any patient (:func:`lupusbayes.workflow.prior_before_data`), and
    which levels no dose path can reach. Exit 3 if a co-data fit failed its gate."""
    from lupusbayes.cli.cache import fit_cache_for
    from lupusbayes.cohort import load_cohort
    from lupusbayes.report import text
    from lupusbayes.workflow import dose_paths_reachability_line, prior_before_data, reachability_dict

    before = prior_before_data(spec, codata=[load_cohort(path) for path in args.codata or []], model=args.model,
                               seed=args.seed, cache=fit_cache_for(args), progress=progress_for(args))
    if args.json:
        payload = before.summary.to_dict()
        payload["reachability"] = (reachability_dict(before.reachability) if before.reachability is not None
                                   else {"ok": None, "message": dose_paths_reachability_line(None, spec)})
        print_json(payload)
    else:
        print(text.dlt_prior_text(before.summary))
        print()
        print(dose_paths_reachability_line(before.reachability, spec))
    if not before.converged:
        print("lupusbayes: the co-data fit FAILED its convergence gate; the prior shown must not be relied on",
              file=sys.stderr)
        return EXIT_GATE_FAILED
    return EXIT_OK


def add_commands(commands) -> None:
    fit_parser = commands.add_parser(
        "fit", help=COMMANDS["fit"][1],
        description="Fit the CRS (ordinal), BLRM (binary DLT) or SLEDAI-2K model for a trial spec and write the "
        "fit (posterior, predictive checks, diagnostics, spec, data, version) to one netCDF file. "
        "Exit 3 if the convergence gate fails (the file is still written, marked as failed).",
    )
    fit_parser.add_argument("spec", help="trial spec TOML (or 'kn5601' / 'axa_nk02')")
    fit_parser.add_argument("--data", action="append", metavar="FILE",
                            help="cohort CSV (repeat for several studies; 'kn5601' is the shipped cohort); "
                            "without it a BLRM is fitted to the spec's [[observations]] alone")
    fit_parser.add_argument("--model", choices=("crs", "blrm", "sledai"), default="crs", help="which model (default crs)")
    fit_parser.add_argument("--out", required=True, help="output .nc file (its folder must exist, or pass --mkdir)")
    fit_parser.add_argument("--seed", type=seed_value, required=True, help="master random seed (whole number >= 0)")
    fit_parser.add_argument("--draws", type=bounded_int(10, 1_000_000), help="draws per chain, >= 10 (default: spec [fitting])")
    fit_parser.add_argument("--tune", type=bounded_int(0, 1_000_000), help="tuning steps per chain")
    fit_parser.add_argument("--chains", type=bounded_int(1, 64), help="number of chains")
    fit_parser.add_argument("--target-accept", type=bounded_float(0.5, 1.0), dest="target_accept",
                            help="NUTS target acceptance, 0.5 <= x < 1")
    fit_parser.add_argument("--sampler", choices=("pymc", "nutpie"), help="NUTS implementation (default: spec, else pymc)")
    add_output_options(fit_parser)
    fit_parser.add_argument("--json", action="store_true", help="machine-readable output")
    fit_parser.set_defaults(handler=_fit)

    prior = commands.add_parser(
        "prior", help=COMMANDS["prior"][1],
        description="Without --data: the DLT prior before any patient, per dose of the spec: P(DLT) mean, median "
        "and 90% interval, the probability of each toxicity interval, EWOC's verdict (as decide gives it before "
        "the first cohort) and the prior effective sample size (moment-matched Beta per dose; Morita, Thall & "
        "Mueller 2008 for the whole prior), computed exactly (quadrature, no MCMC) from [model.blrm.prior]; with "
        "--codata, the prior the decisions read given the co-data (EXNEX: an MCMC fit of the co-data, kept in the "
        "fit cache). With --data (or [[observations]] in the spec): draws from a model's prior and prints, per "
        "dose, the prior mean, median and 90% range of P(DLT) and P(CRS >= g) (or the SLEDAI-2K response), and "
        "the prior predictive distribution of the data's statistics next to the observed values: the check a "
        "prior is chosen and documented with. Exit 3 if the co-data fit failed its convergence gate.",
        epilog="examples:\n"
        "  lupusbayes prior axa_nk02 --seed 1\n"
        "  lupusbayes prior axa_nk02 --codata kn5601 --seed 1\n"
        "  lupusbayes prior kn5601 --data kn5601 --model blrm --seed 1",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    prior.add_argument("spec", help="trial spec TOML (or 'kn5601' / 'axa_nk02')")
    prior.add_argument("--data", action="append", metavar="FILE",
                       help="cohort CSV (repeat for several studies; 'kn5601' is the shipped cohort): the prior "
                       "predictive on these data; without it, the DLT prior before any patient")
    prior.add_argument("--codata", action="append", metavar="FILE",
                       help="without --data: co-data the trial's decisions borrow from (repeatable; 'kn5601' is the "
                       "shipped cohort): the prior is then the one decide reads given them (an MCMC fit)")
    prior.add_argument("--model", choices=("crs", "blrm", "sledai"), default="blrm",
                       help="which model (default blrm; without --data only blrm)")
    prior.add_argument("--seed", type=seed_value, required=True,
                       help="random seed (whole number >= 0); with --codata, the co-data fit's (as decide --seed)")
    prior.add_argument("--draws", type=bounded_int(10, 1_000_000), default=4000,
                       help="prior draws for the prior predictive (default 4000)")
    add_cache_option(prior)
    add_progress_option(prior, help="with --codata: show fitting progress on stderr (default: on a terminal)")
    prior.add_argument("--json", action="store_true", help="machine-readable output")
    prior.set_defaults(handler=_prior)

    check = commands.add_parser(
        "check", help=COMMANDS["check"][1],
        description="Print the convergence gate, dose-response, posterior and prior predictive checks and "
        "PSIS-LOO of a saved fit. Exit 3 if the gate failed.",
    )
    check.add_argument("fit", help="a .nc file written by 'lupusbayes fit'")
    check.add_argument("--spec", help="fail unless the fit was made with this spec")
    check.add_argument("--json", action="store_true", help="machine-readable output")
    check.set_defaults(handler=_check)
