"""``lupusbayes calibrate``: the operating characteristics over a grid of design parameters, paired with the spec's."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from lupusbayes._io import check_output_path
from lupusbayes.calibration import CALIBRATABLE, calibrate, calibration_grid, find_setting, parse_vary
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
from lupusbayes.errors import LupusBayesError
from lupusbayes.simulation import DEFAULT_CHUNK_SIZE, SHIPPED_SCENARIOS, load_scenarios
from lupusbayes.spec import DESIGNS, load_spec

__all__ = ["add_commands"]


class _Progress:
    """One line on stderr per setting: chunks and trials done."""

    def __init__(self, n_settings: int) -> None:
        self.started = time.perf_counter()
        self.n_settings = n_settings

    def __call__(self, setting, done: int, total: int, trials: int) -> None:
        elapsed = time.perf_counter() - self.started
        sys.stderr.write(f"\r  {setting.name}/{self.n_settings - 1} {setting.label}: {done}/{total} chunks, "
                         f"{trials} trials per scenario and design ({elapsed:.0f} s)\033[K")
        if done >= total:
            sys.stderr.write("\n")
        sys.stderr.flush()


def _calibrate(args: argparse.Namespace) -> int:
    out = check_output_path(args.out, overwrite=args.overwrite, folder=True, mkdir=args.mkdir)  # before any work
    check_checkpoint_folder(args.checkpoint, out)
    if (args.write_spec is None) != (args.choose is None):
        raise LupusBayesError("--write-spec FILE and --choose SETTING go together (the setting: its number, e.g. 2, "
                              "or its label, e.g. max_overdose_probability=0.3)")
    if args.write_spec is not None:
        if out.resolve() in Path(args.write_spec).resolve().parents:
            raise LupusBayesError(f"--write-spec {args.write_spec}: write the spec outside the output folder {out}/ "
                                  "(the folder is written whole, at the end)")
        check_output_path(args.write_spec, overwrite=args.overwrite, mkdir=args.mkdir)
    vary: dict[str, list] = {}
    for text in args.vary:
        key, values = parse_vary(text)
        if key in vary:
            raise LupusBayesError(f"--vary {key}: given twice; give all its values once (KEY=v1,v2,...)")
        vary[key] = values
    spec = load_spec(args.spec)
    settings = calibration_grid(spec, vary)
    chosen = find_setting(settings, args.choose) if args.choose is not None else None
    scenarios_source = args.scenarios or spec.trial.id.lower().replace("-", "_")
    if args.scenarios is None and scenarios_source not in SHIPPED_SCENARIOS:
        raise LupusBayesError(f"{spec.trial.id}: no shipped scenarios; give --scenarios FILE "
                              "(see docs/simulation.md for the format)")
    scenarios = load_scenarios(scenarios_source, spec)
    codata = [load_cohort(path) for path in args.codata or []]
    wanted = progress_wanted(args)
    if codata and wanted:
        print("deriving the decision priors from the co-data (an EXNEX BLRM and a SLEDAI-2K fit; once more for each "
              "setting that changes a model prior)", file=sys.stderr)
    client = dask_client(args.dask) if args.dask else None
    try:
        result = calibrate(spec, scenarios, vary, n_trials=args.n_trials, seed=args.seed, designs=args.designs,
                           codata=codata, workers=args.workers, dask_client=client, checkpoint=args.checkpoint,
                           cache=fit_cache_for(args), chunk_size=args.chunk_size,
                           progress=_Progress(len(settings)) if wanted else None)
    finally:
        if client is not None:
            client.close()
    command = "lupusbayes " + " ".join(sys.argv[1:])
    result.save(out, overwrite=args.overwrite, mkdir=args.mkdir, command=command)
    written_spec = None
    if chosen is not None:
        written_spec = result.write_spec(args.write_spec, chosen.index, overwrite=args.overwrite, mkdir=args.mkdir)
    if args.json:
        print_json({"out": str(out), "plan": {**result.describe(), "command": command},
                    "calibration": records(result.summary),
                    "written_spec": None if written_spec is None else str(written_spec)})
        return 0
    print(f"{spec.trial.id}: {result.n_trials} simulated trials per scenario, design and setting (seed {result.seed}); "
          "value (Monte Carlo standard error); vs #0: the paired difference from the current spec (paired MCSE)\n")
    print(result.summary_text())
    total = result.n_trials * len(result.designs) * len(scenarios.scenarios) * len(
        {id(r) for r in result.results.values()})
    print(f"{total} trials in {result.elapsed_seconds:.1f} s"
          f"{f'; {result.chunks_resumed} chunks resumed' if result.chunks_resumed else ''}. written: {out}/ "
          "(calibration.csv/.txt, tradeoff.png, plan.json)")
    if written_spec is not None:
        print(f"written: {written_spec} (setting {chosen.name}: {chosen.label})")
    if result.mcmc_fallback_decisions:
        print(f"note: {result.mcmc_fallback_decisions} decisions were made from NUTS posteriors (the MCMC fallback)")
    return 0


def add_commands(commands) -> None:
    groups: dict[tuple[str, str], list[str]] = {}  # keys of one table and one meaning on one line
    for key in CALIBRATABLE:
        table, _, name = key.pattern.replace("*", "<study id>").rpartition(".")
        groups.setdefault((table, key.meaning.removesuffix(f": {name}")), []).append(name)
    keys = "\n".join(f"  {table}.{names[0] if len(names) == 1 else '{' + ','.join(names) + '}'}\n      {meaning}"
                     for (table, meaning), names in groups.items())
    parser = commands.add_parser(
        "calibrate", help=COMMANDS["calibrate"][1],
        description="Calibrate a design: simulate the trial at every setting of a grid of design parameters "
        "(--vary KEY=v1,v2,...; several --vary make the Cartesian product) and at the spec as it is (#0, the "
        "reference), all on the same simulated patients (the same scenarios, seed and chunk size: common random "
        "numbers). Reports per setting the operating characteristics with their Monte Carlo standard errors and "
        "their paired differences from the current spec with the paired MCSE; draws the trade-off (correct selection "
        "against patients treated above the true MTD); writes the chosen setting's spec (--write-spec FILE --choose "
        "SETTING). The trial's registered rules (group size, sentinel, windows, skipping, sample size, the DLT "
        "definition and intervals, the dose levels) are not calibratable; a key that is not is refused, naming it.",
        epilog="calibratable keys:\n" + keys + "\n\nexamples:\n"
        "  lupusbayes calibrate axa_nk02 --codata kn5601 --vary decision.max_overdose_probability=0.25,0.35 "
        "--n-trials 200 --seed 1 --out calib/\n"
        "  lupusbayes calibrate axa_nk02 --codata kn5601 --scenarios my_scenarios.toml --vary "
        "decision.max_overdose_probability=0.3,0.35 --vary decision.efficacy.dlt_penalty=1,2 --n-trials 500 "
        "--seed 1 --checkpoint calib-chunks/ --out calib_grid/\n"
        "  lupusbayes calibrate axa_nk02 --designs boin --vary decision.boin.target=0.15,0.2 --n-trials 1000 "
        "--seed 1 --out calib_boin/ --write-spec axa_nk02_boin.toml --choose 2",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("spec", help="trial spec: a TOML file or a shipped name (kn5601, axa_nk02)")
    parser.add_argument("--vary", action="append", required=True, metavar="KEY=v1,v2,...",
                        help="a calibratable key (dotted TOML path, listed below) and its values, each a TOML value "
                        "(numbers, true/false, text, [lists]); repeatable: the grid is the product")
    parser.add_argument("--scenarios", help="scenario file (TOML; default: the spec's shipped scenarios, e.g. axa_nk02)")
    parser.add_argument("--designs", type=designs_argument, default=None,
                        help=f"comma-separated designs to simulate at every setting (default: the spec's own design; "
                        f"available: {', '.join(DESIGNS)}; blrm means blrm_ewoc)")
    parser.add_argument("--n-trials", type=bounded_int(1, 1_000_000), default=1000,
                        help="simulated trials per scenario, design and setting (default 1000)")
    parser.add_argument("--seed", type=seed_value, required=True, help="master seed (the same patients at every setting)")
    parser.add_argument("--out", required=True, help="folder to write (calibration.csv/.txt, tradeoff.png, plan.json)")
    parser.add_argument("--write-spec", metavar="FILE", help="write the chosen setting's spec (TOML) here")
    parser.add_argument("--choose", metavar="SETTING", help="the setting --write-spec writes: its number (#k in the "
                        "tables, e.g. 2) or its label (e.g. max_overdose_probability=0.3)")
    parser.add_argument("--chunk-size", type=bounded_int(1, 100_000), default=DEFAULT_CHUNK_SIZE,
                        help=f"trials per unit of work (default {DEFAULT_CHUNK_SIZE}; part of the seeding)")
    parser.add_argument("--workers", type=bounded_int(1, 256), default=1, help="processes on this machine (default 1)")
    parser.add_argument("--dask", metavar="ADDRESS", type=dask_address, help="run the chunks on a Dask cluster: a "
                        "scheduler address (tcp://host:8786), or local[:N] for a local cluster of N processes")
    parser.add_argument("--codata", action="append", metavar="FILE",
                        help="co-data cohort the trial's decisions borrow from (repeatable; 'kn5601' is the shipped "
                        "cohort); required when the spec borrows")
    parser.add_argument("--checkpoint", metavar="FOLDER", help="keep finished chunks here, a folder per setting; a "
                        "rerun resumes from them")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    add_cache_option(parser)
    add_output_options(parser)
    parser.set_defaults(handler=_calibrate)
