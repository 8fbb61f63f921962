"""``lupusbayes simulate``: operating characteristics of the designs, side by side, under scenarios."""

from __future__ import annotations

import argparse
import json
import sys
import time

from lupusbayes._io import check_output_path, staged_directory
from lupusbayes._version import __version__
from lupusbayes.cli.cache import add_cache_option, fit_cache_for
from lupusbayes.cli.commands import COMMANDS
from lupusbayes.cli.output import add_output_options, bounded_int, print_json, progress_wanted, records, seed_value
from lupusbayes.cli.simulation_options import (
    check_checkpoint_folder,
    dask_address,
    dask_client,
    designs_argument,
)
from lupusbayes.cohort import load_cohort
from lupusbayes.decisions import design_for
from lupusbayes.errors import LupusBayesError
from lupusbayes.simulation import (
    DEFAULT_DESIGNS,
    DEFAULT_CHUNK_SIZE,
    SHIPPED_SCENARIOS,
    SimulationPlan,
    comparison_table,
    differences_table,
    load_scenarios,
    simulate,
)
from lupusbayes.spec import DESIGNS, load_spec
from lupusbayes.workflow import simulation_priors

__all__ = ["add_commands"]


class _Progress:
    """One line on stderr: chunks and trials done, trials a second."""

    def __init__(self, n_designs: int) -> None:
        self.started = time.perf_counter()
        self.n_designs = n_designs

    def __call__(self, done: int, total: int, trials: int) -> None:
        elapsed = time.perf_counter() - self.started
        rate = trials * self.n_designs / elapsed if elapsed > 0 else 0.0
        sys.stderr.write(f"\r  simulated {done}/{total} chunks, {trials * self.n_designs} trials "
                         f"({rate:,.0f} trials/s)\033[K")
        if done >= total:
            sys.stderr.write("\n")
        sys.stderr.flush()


def _header(scenario, spec) -> str:
    p_dlt = scenario.p_dlt(spec)
    levels = "; ".join(f"level {level + 1}: P(DLT) {p_dlt[level]:.2f}, P(response) {scenario.p_response[level]:.2f}"
                       for level in range(len(p_dlt)))
    return f"== {scenario.name} ==\n   {scenario.description}\n   truth: {levels}" if scenario.description else \
        f"== {scenario.name} ==\n   truth: {levels}"


def _simulate(args: argparse.Namespace) -> int:
    out = check_output_path(args.out, overwrite=args.overwrite, folder=True, mkdir=args.mkdir)  # before any work
    check_checkpoint_folder(args.checkpoint, out)
    spec = load_spec(args.spec)
    scenarios_source = args.scenarios or spec.trial.id.lower().replace("-", "_")
    if args.scenarios is None and scenarios_source not in SHIPPED_SCENARIOS:
        raise LupusBayesError(f"{spec.trial.id}: no shipped scenarios; give --scenarios FILE "
                              "(see docs/simulation.md for the format)")
    scenarios = load_scenarios(scenarios_source, spec)
    codata = [load_cohort(path) for path in args.codata or []]
    wanted = progress_wanted(args)
    priors = None
    if any(design_for(spec, name).needs_toxicity_model for name in args.designs):  # BOIN and the 3+3 need none
        if codata and wanted:
            print("deriving the decision priors from the co-data (an EXNEX BLRM and a SLEDAI-2K fit)", file=sys.stderr)
        priors = simulation_priors(spec, codata, seed=args.seed, error=LupusBayesError, cache=fit_cache_for(args))
    try:
        plan = SimulationPlan(spec, scenarios, args.designs, n_trials=args.n_trials, seed=args.seed,
                              chunk_size=args.chunk_size, priors=priors)
    except ValueError as error:
        raise LupusBayesError(str(error)) from None
    client = dask_client(args.dask) if args.dask else None
    try:
        result = simulate(plan, workers=args.workers, dask_client=client, checkpoint=args.checkpoint,
                          progress=_Progress(len(plan.designs)) if wanted else None)
    finally:
        if client is not None:
            client.close()
    tables = {scenario.name: comparison_table(result.summary, scenario.name) for scenario in scenarios.scenarios}
    reference = plan.designs[0]
    differences = {scenario.name: differences_table(result.differences, scenario.name)
                   for scenario in scenarios.scenarios}
    manifest = {"spec": spec.source, "scenarios": scenarios.source, **plan.describe(), "n_trials": plan.n_trials,
                "elapsed_seconds": round(result.elapsed_seconds, 3), "chunks_resumed": result.chunks_resumed,
                "mcmc_fallback_decisions": int(result.trials["n_mcmc_decisions"].sum()),
                "command": "lupusbayes " + " ".join(sys.argv[1:]), "lupusbayes_version": __version__}
    from lupusbayes.report.simulation_plots import save_operating_characteristics

    with staged_directory(out, overwrite=args.overwrite, mkdir=args.mkdir) as staging:
        result.trials.to_csv(staging / "trials.csv", index=False)
        result.summary.to_csv(staging / "operating_characteristics.csv", index=False)
        if not result.differences.empty:
            result.differences.to_csv(staging / "paired_differences.csv", index=False)
        (staging / "plan.json").write_text(json.dumps(manifest, indent=2), encoding="utf-8")
        text = "\n\n".join(
            f"{_header(s, spec)}\n{tables[s.name].to_string(index=False)}"
            + (f"\n\n   minus {reference}, on the same simulated patients (paired MCSE):\n"
               f"{differences[s.name].to_string(index=False)}" if not differences[s.name].empty else "")
            for s in scenarios.scenarios)
        (staging / "operating_characteristics.txt").write_text(text + "\n", encoding="utf-8")
        save_operating_characteristics(staging / "operating_characteristics.png", result.summary, scenarios, spec)
    if args.json:
        print_json({"out": str(out), "plan": manifest, "operating_characteristics": records(result.summary),
                    "paired_differences": records(result.differences) if not result.differences.empty else []})
        return 0
    print(f"{spec.trial.id}: {plan.n_trials} simulated trials per scenario and design (seed {plan.seed}); "
          f"value (Monte Carlo standard error)\n")
    print(text)
    total = plan.n_trials * len(plan.designs) * len(scenarios.scenarios)
    print(f"\n{total} trials in {result.elapsed_seconds:.1f} s ({total / max(result.elapsed_seconds, 1e-9):,.0f} "
          f"trials/s){f'; {result.chunks_resumed} chunks resumed' if result.chunks_resumed else ''}. "
          f"written: {out}/ (trials.csv, operating_characteristics.csv/.txt/.png"
          f"{', paired_differences.csv' if not result.differences.empty else ''}, plan.json)")
    if manifest["mcmc_fallback_decisions"]:
        trials_with = int((result.trials["n_mcmc_decisions"] > 0).sum())
        print(f"note: {manifest['mcmc_fallback_decisions']} decisions in {trials_with} trials were made from NUTS "
              "posteriors (the MCMC fallback: quadrature did not resolve those counts; column n_mcmc_decisions)")
    return 0


def add_commands(commands) -> None:
    parser = commands.add_parser(
        "simulate", help=COMMANDS["simulate"][1],
        description="Simulate trials of each design under each scenario (true dose-toxicity and dose-response) "
        "and compare their operating characteristics: how often each dose is selected, patients and DLTs per "
        "dose, patients overdosed, trial duration, each with its Monte Carlo standard error. Every design decides "
        "with the same rules as `lupusbayes decide`, on the same simulated patients (common random numbers). "
        "The numbers depend only on the seed: 1 worker, N workers or a Dask cluster give identical results.",
        epilog="examples:\n"
        "  lupusbayes simulate axa_nk02 --codata kn5601 --n-trials 2000 --seed 1 --out oc/\n"
        "  lupusbayes simulate axa_nk02 --codata kn5601 --scenarios my_scenarios.toml --designs lupusbayes,boin "
        "--workers 2 --seed 1 --out oc_my_scenarios/\n"
        "  lupusbayes simulate axa_nk02 --codata kn5601 --n-trials 20000 --dask tcp://scheduler:8786 "
        "--checkpoint oc-chunks/ --seed 1 --out oc_cluster/",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("spec", help="trial spec: a TOML file or a shipped name (kn5601, axa_nk02)")
    parser.add_argument("--scenarios", help="scenario file (TOML; default: the spec's shipped scenarios, e.g. axa_nk02)")
    parser.add_argument("--designs", type=designs_argument, default=DEFAULT_DESIGNS,
                        help=f"comma-separated designs to compare (default {','.join(DEFAULT_DESIGNS)}; "
                        f"available: {', '.join(DESIGNS)}; blrm means blrm_ewoc)")
    parser.add_argument("--n-trials", type=bounded_int(1, 1_000_000), default=1000,
                        help="simulated trials per scenario and design (default 1000)")
    parser.add_argument("--seed", type=seed_value, required=True, help="master seed (the results depend on nothing else)")
    parser.add_argument("--out", required=True, help="folder to write (trials.csv, operating_characteristics.*)")
    parser.add_argument("--chunk-size", type=bounded_int(1, 100_000), default=DEFAULT_CHUNK_SIZE,
                        help=f"trials per unit of work (default {DEFAULT_CHUNK_SIZE}; part of the seeding, so keep it "
                        "to reproduce a run)")
    parser.add_argument("--workers", type=bounded_int(1, 256), default=1, help="processes on this machine (default 1)")
    parser.add_argument("--dask", metavar="ADDRESS", type=dask_address, help="run the chunks on a Dask cluster: a scheduler address "
                        "(tcp://host:8786), or local[:N] for a local cluster of N processes")
    parser.add_argument("--codata", action="append", metavar="FILE",
                        help="co-data cohort the trial's decisions borrow from (repeatable; 'kn5601' is the shipped "
                        "cohort): the simulated decisions use the priors it implies; required when the spec borrows")
    parser.add_argument("--checkpoint", metavar="FOLDER", help="keep finished chunks here; a rerun of the same plan "
                        "resumes from them")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    add_cache_option(parser)
    add_output_options(parser)
    parser.set_defaults(handler=_simulate)
