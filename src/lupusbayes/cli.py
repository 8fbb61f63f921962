"""The ``lupusbayes`` command line: a thin layer over the public API.

Exit codes: 0 success; 2 bad input (one line on stderr naming the file, row and field, and no
output written); 3 a fit that failed its convergence gate; 1 an internal error (a bug).
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lupusbayes.errors import LupusBayesError

EXIT_OK = 0
EXIT_BAD_INPUT = 2
EXIT_GATE_FAILED = 3

_EPILOG = """\
examples:
  lupusbayes data show kn5601                      the shipped KN5601 cohort and its summary
  lupusbayes data check my_cohort.csv --json       validate a cohort file
  lupusbayes data screen my_cohort.csv --spec axa_nk02
  lupusbayes spec check models/axa_nk02.toml
  lupusbayes fit kn5601 --model crs --out crs.nc --seed 1
  lupusbayes check crs.nc
  lupusbayes demo --out outputs/demo --seed 20251108

exit codes: 0 ok, 2 bad input, 3 convergence gate failed, 1 internal error
"""


class _Parser(argparse.ArgumentParser):
    """argparse with usage errors reported on one line and exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _print_json(payload: Any) -> None:
    print(json.dumps(payload, indent=2, default=_json_default, allow_nan=False))


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if value is pd.NA or (isinstance(value, float) and np.isnan(value)):
        return None
    return str(value)


def _clean(frame: pd.DataFrame) -> list[dict[str, Any]]:
    return json.loads(frame.to_json(orient="records"))


# --------------------------------------------------------------------------------------------
# data
# --------------------------------------------------------------------------------------------


def _load_cohort(name: str):
    from lupusbayes.cohort import load_cohort

    return load_cohort(name)  # "kn5601" names the shipped cohort


def _cmd_data_show(args: argparse.Namespace) -> int:
    from lupusbayes.summary import summarise_cohort

    cohort = _load_cohort(args.cohort)
    summary = summarise_cohort(cohort, seed=args.seed)
    if args.json:
        _print_json({"source": cohort.source, "layout": cohort.layout, "patients": _clean(cohort.patients.drop(columns="source_line")), **summary.to_dict()})
        return EXIT_OK
    with pd.option_context("display.width", 120, "display.max_columns", 30):
        shown = cohort.patients.drop(columns=["source_line"]).copy()
        print(f"{cohort!r}\n")
        print(shown.to_string(index=False))
        print()
        print(summary.to_text())
    return EXIT_OK


def _cmd_data_check(args: argparse.Namespace) -> int:
    cohort = _load_cohort(args.file)
    visits_per_patient = cohort.visits.groupby(["study_id", "patient_id"]).size()
    payload = {
        "ok": True,
        "source": cohort.source,
        "layout": cohort.layout,
        "n_patients": cohort.n_patients,
        "n_visits": int(len(cohort.visits)),
        "max_visits_per_patient": int(visits_per_patient.max()),
        "studies": cohort.study_ids,
    }
    if args.json:
        _print_json(payload)
    else:
        print(
            f"ok: {cohort.source}: {cohort.n_patients} patients in {len(cohort.study_ids)} "
            f"stud{'y' if len(cohort.study_ids) == 1 else 'ies'} ({', '.join(cohort.study_ids)}), "
            f"{cohort.layout} layout, {len(cohort.visits)} SLEDAI-2K assessments"
        )
    return EXIT_OK


def _cmd_data_screen(args: argparse.Namespace) -> int:
    from lupusbayes.eligibility import screen
    from lupusbayes.spec import load_spec

    spec = load_spec(args.spec)
    cohort = _load_cohort(args.file)
    report = screen(cohort.patients, spec)
    if args.json:
        _print_json(report.to_dict())
        return EXIT_OK
    failures, unknown = report.failures, report.not_assessable
    print(f"Screening {cohort.n_patients} patients against {spec.trial.id} ({len(spec.eligibility)} criteria)")
    if failures.empty:
        print("No patient fails a criterion that the data can check.")
    else:
        print(f"\nFailed criteria ({len(failures)}):")
        print(failures[["patient_id", "criterion_id", "value", "requirement"]].to_string(index=False))
    if not unknown.empty:
        counts = unknown.groupby("criterion_id").size()
        print(f"\nNot assessable (data missing): {len(unknown)} patient-criterion pairs")
        print("  " + ", ".join(f"{criterion} ({n})" for criterion, n in counts.items()))
    if report.manual_criteria:
        print("\nChecked by the investigator, not from data:")
        for criterion in report.manual_criteria:
            print(f"  {criterion.id}: {criterion.text}")
    return EXIT_OK


# --------------------------------------------------------------------------------------------
# spec
# --------------------------------------------------------------------------------------------


def _cmd_spec_check(args: argparse.Namespace) -> int:
    from lupusbayes.spec import load_spec

    spec = load_spec(args.file)
    if args.json:
        _print_json({"ok": True, **spec.to_dict()})
    else:
        print(f"ok: {spec.source}")
        print("\n".join(spec.summary_lines()))
    return EXIT_OK


# --------------------------------------------------------------------------------------------
# fit / check
# --------------------------------------------------------------------------------------------


def _build_model(kind: str, spec, cohort):
    from lupusbayes.models.sledai import SledaiModel
    from lupusbayes.models.toxicity import BLRM, CRSModel

    return {"crs": CRSModel, "blrm": BLRM, "sledai": SledaiModel}[kind](cohort, spec)


def _cohort_for(spec, data: list[str] | None):
    """The cohort a fit uses: the given files (concatenated), else the shipped KN5601 cohort."""
    from lupusbayes.cohort import combine_cohorts, load_kn5601

    if not data:
        return load_kn5601()
    cohorts = [_load_cohort(name) for name in data]
    return cohorts[0] if len(cohorts) == 1 else combine_cohorts(cohorts)


def _fit_settings(spec, args: argparse.Namespace):
    changes = {name: getattr(args, name) for name in ("draws", "tune", "chains", "sampler") if getattr(args, name) is not None}
    if args.target_accept is not None:
        changes["target_accept"] = args.target_accept
    try:
        return spec.fitting.replace(**changes)
    except ValueError as error:
        raise LupusBayesError(f"invalid sampler setting: {error}") from None


def _cmd_fit(args: argparse.Namespace) -> int:
    from lupusbayes._io import refuse_existing
    from lupusbayes.fitting import fit
    from lupusbayes.spec import load_spec

    out = Path(args.out)
    refuse_existing(out, overwrite=args.overwrite)
    spec = load_spec(args.spec)
    cohort = _cohort_for(spec, args.data)
    model = _build_model(args.model, spec, cohort)
    result = fit(model, seed=args.seed, settings=_fit_settings(spec, args))
    result.save(out, overwrite=args.overwrite)
    if args.json:
        _print_json(_fit_payload(result, out))
    else:
        print("\n".join(result.summary_lines()))
        print(f"\nwritten: {out}")
    if not result.converged:
        print(f"lupusbayes: the fit FAILED its convergence gate; {out} is written for inspection, "
              "but decisions must not rest on it", file=sys.stderr)
        return EXIT_GATE_FAILED
    return EXIT_OK


def _fit_payload(result, path: Path | None = None) -> dict[str, Any]:
    return {
        "file": None if path is None else str(path),
        "model": result.model.name,
        "trial_id": result.model.spec.trial.id,
        "seed": result.seed,
        "converged": result.converged,
        "diagnostics": result.diagnostics.to_dict(),
        "dose_summary": _clean(result.dose_summary()),
        "posterior_predictive_checks": _clean(result.ppc_table()),
        "prior_predictive_checks": _clean(result.prior_predictive_table()),
    }


def _cmd_check(args: argparse.Namespace) -> int:
    from lupusbayes.fitting import load_fit
    from lupusbayes.spec import load_spec

    spec = load_spec(args.spec) if args.spec else None
    result = load_fit(args.fit, spec=spec)
    if args.json:
        _print_json(_fit_payload(result, Path(args.fit)))
    else:
        print("\n".join(result.summary_lines()))
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


# --------------------------------------------------------------------------------------------
# demo
# --------------------------------------------------------------------------------------------


def _cmd_demo(args: argparse.Namespace) -> int:
    from lupusbayes.demo import run_demo

    result = run_demo(Path(args.out), seed=args.seed, overwrite=args.overwrite, sampler=args.sampler,
                      progress=lambda line: print(line, flush=True))
    print(f"\nall outputs in {result.folder}/ (start with report.txt)")
    return EXIT_OK if result.all_converged else EXIT_GATE_FAILED


# --------------------------------------------------------------------------------------------
# parser
# --------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    from lupusbayes import __version__

    parser = _Parser(
        prog="lupusbayes",
        description="Bayesian dose-toxicity (CRS) and dose-efficacy (SLEDAI-2K) models for NK / CAR-NK "
        "cell-therapy trials in lupus.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"lupusbayes {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    commands.required = True

    data = commands.add_parser("data", help="show, check or screen a cohort table",
                               description="Work with cohort tables (the shipped KN5601 cohort or your own CSV).")
    data_commands = data.add_subparsers(dest="data_command", metavar="SUBCOMMAND", parser_class=_Parser)
    data_commands.required = True
    show = data_commands.add_parser("show", help="print a cohort and its summary",
                                    description="Print the cohort table and a summary: CRS by grade and dose, "
                                    "SLEDAI-2K change, SLEDAI-only response proxies, doses in cells/kg.")
    show.add_argument("cohort", help="'kn5601' for the shipped cohort, or a cohort CSV file")
    show.add_argument("--seed", type=int, default=20251108, help="seed for the cells/kg conversion draws (default 20251108)")
    show.add_argument("--json", action="store_true", help="machine-readable output")
    show.set_defaults(handler=_cmd_data_show)
    check = data_commands.add_parser("check", help="validate a cohort file",
                                     description="Validate a cohort CSV (wide or long layout). Exit 0 if valid, "
                                     "2 with a one-line message naming the line and field if not.")
    check.add_argument("file", help="cohort CSV file")
    check.add_argument("--json", action="store_true", help="machine-readable output")
    check.set_defaults(handler=_cmd_data_check)
    screen_parser = data_commands.add_parser("screen", help="check patients against a trial's eligibility criteria",
                                             description="Report, for each patient, every eligibility criterion "
                                             "they fail and those the data cannot assess.")
    screen_parser.add_argument("file", help="cohort CSV file (or 'kn5601')")
    screen_parser.add_argument("--spec", required=True, help="trial spec TOML (or 'kn5601' / 'axa_nk02')")
    screen_parser.add_argument("--json", action="store_true", help="machine-readable output")
    screen_parser.set_defaults(handler=_cmd_data_screen)

    spec = commands.add_parser("spec", help="validate a trial spec", description="Work with trial specs (TOML).")
    spec_commands = spec.add_subparsers(dest="spec_command", metavar="SUBCOMMAND", parser_class=_Parser)
    spec_commands.required = True
    spec_check = spec_commands.add_parser("check", help="validate a spec and print its summary",
                                          description="Validate a trial spec. Exit 0 if valid, 2 with a one-line "
                                          "message naming the key if not.")
    spec_check.add_argument("file", help="spec TOML file (or 'kn5601' / 'axa_nk02')")
    spec_check.add_argument("--json", action="store_true", help="machine-readable output")
    spec_check.set_defaults(handler=_cmd_spec_check)

    fit_parser = commands.add_parser(
        "fit", help="fit a model and write one netCDF file",
        description="Fit the CRS (ordinal), BLRM (binary DLT) or SLEDAI-2K model for a trial spec and write the "
        "fit (posterior, predictive checks, diagnostics, spec, data, version) to one netCDF file. "
        "Exit 3 if the convergence gate fails (the file is still written, marked as failed).",
    )
    fit_parser.add_argument("spec", help="trial spec TOML (or 'kn5601' / 'axa_nk02')")
    fit_parser.add_argument("--data", action="append", metavar="FILE",
                            help="cohort CSV (repeat for several studies); default: the shipped KN5601 cohort")
    fit_parser.add_argument("--model", choices=("crs", "blrm", "sledai"), default="crs", help="which model (default crs)")
    fit_parser.add_argument("--out", required=True, help="output .nc file")
    fit_parser.add_argument("--seed", type=int, required=True, help="master random seed")
    fit_parser.add_argument("--draws", type=int, help="draws per chain (default: spec [fitting])")
    fit_parser.add_argument("--tune", type=int, help="tuning steps per chain")
    fit_parser.add_argument("--chains", type=int, help="number of chains")
    fit_parser.add_argument("--target-accept", type=float, dest="target_accept", help="NUTS target acceptance")
    fit_parser.add_argument("--sampler", choices=("pymc", "nutpie"), help="NUTS implementation (default: spec, else pymc)")
    fit_parser.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    fit_parser.add_argument("--json", action="store_true", help="machine-readable output")
    fit_parser.set_defaults(handler=_cmd_fit)

    check_parser = commands.add_parser(
        "check", help="diagnostics and predictive checks of a saved fit",
        description="Print the convergence gate, dose-response, posterior and prior predictive checks and "
        "PSIS-LOO of a saved fit. Exit 3 if the gate failed.",
    )
    check_parser.add_argument("fit", help="a .nc file written by 'lupusbayes fit'")
    check_parser.add_argument("--spec", help="fail unless the fit was made with this spec")
    check_parser.add_argument("--json", action="store_true", help="machine-readable output")
    check_parser.set_defaults(handler=_cmd_check)

    demo = commands.add_parser(
        "demo", help="run the whole pipeline on the shipped KN5601 data",
        description="Load and summarise KN5601, screen it against AXA-NK02, fit the CRS, BLRM and SLEDAI-2K "
        "models and their comparison variants, and write every table, fit and a report to one folder.",
    )
    demo.add_argument("--out", required=True, help="output folder (created; refused if it exists unless --overwrite)")
    demo.add_argument("--seed", type=int, default=20251108, help="master random seed (default 20251108)")
    demo.add_argument("--sampler", choices=("pymc", "nutpie"), default=None, help="NUTS implementation (default: spec)")
    demo.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    demo.set_defaults(handler=_cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.handler(args)
    except LupusBayesError as error:
        print(f"lupusbayes: error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("lupusbayes: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into e.g. `head`: not an error of ours
        sys.stderr.close()
        return EXIT_OK


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
