"""Speed of the vectorised BOIN12 and TITE-BOIN simulators (lupusbayes.simulation.boin_extensions_simulation).

    python scripts/benchmark_boin_extensions.py [--trials 20000] [--repeats 3] [--seed 2026]

Prints simulated trials per second (the best of ``--repeats`` runs, serial, one process) for
3 and 5 dose levels and 9 and 30 patients (cohorts of 3), with the latent patients drawn before
the clock starts. "BOIN12 + safeguard" is BOIN12 as the package's simulator runs it
(``safeguard=True``: each decision and the selection the lowest over fewer DLTs). Targets on the
2-core development machine: BOIN12 >= 5,000 trials a second, with or without the safeguard;
TITE-BOIN >= 1,000. The figures are printed, not asserted; the load average is printed too,
since the machine may be shared. Then the ``tite_boin`` design through ``simulate_trials`` on AXA-NK02
(:func:`tite_boin_design`: the vectorised path, target >= 5,000 trials a second, and the engine).
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

from lupusbayes.decisions.boin import boin_boundaries
from lupusbayes.decisions.boin12 import Boin12Settings
from lupusbayes.simulation.boin_extensions_simulation import simulate_boin12, simulate_tite_boin

TOXICITY = {3: [0.10, 0.25, 0.40], 5: [0.05, 0.10, 0.20, 0.35, 0.50]}
RESPONSE = {3: [0.20, 0.40, 0.45], 5: [0.10, 0.25, 0.45, 0.50, 0.55]}
PATIENTS = (9, 30)
COHORT_SIZE = 3
WINDOW_DAYS = 28.0
MEAN_DAYS_BETWEEN_ARRIVALS = 7.0
TARGETS = {"BOIN12": 5_000, "BOIN12 + safeguard": 5_000, "TITE-BOIN": 1_000}


def _best_rate(run, n_trials: int, repeats: int) -> float:
    best = np.inf
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return n_trials / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=2026)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    settings = Boin12Settings(target_toxicity=0.35, efficacy_lower_limit=0.25)
    print(f"{args.trials} trials per run, best of {args.repeats}; load average {os.getloadavg()[0]:.2f}")
    print(f"{'design':<18} {'levels':>6} {'patients':>8} {'trials/s':>10}  target")
    for n_levels, n_patients in ((levels, patients) for levels in TOXICITY for patients in PATIENTS):
        n_cohorts = n_patients // COHORT_SIZE
        tox, response = rng.random((args.trials, n_patients)), rng.random((args.trials, n_patients))
        onset = rng.uniform(0.5, WINDOW_DAYS, (args.trials, n_patients))
        arrival = np.cumsum(rng.exponential(MEAN_DAYS_BETWEEN_ARRIVALS, (args.trials, n_patients)), axis=1)
        arrival -= arrival[:, :1]
        boundaries = boin_boundaries(0.3, max_patients=n_patients)
        runs = {
            "BOIN12": lambda: simulate_boin12(tox, response, TOXICITY[n_levels], RESPONSE[n_levels], settings=settings,
                                              cohort_size=COHORT_SIZE, n_cohorts=n_cohorts),
            "BOIN12 + safeguard": lambda: simulate_boin12(tox, response, TOXICITY[n_levels], RESPONSE[n_levels],
                                                          settings=settings, cohort_size=COHORT_SIZE,
                                                          n_cohorts=n_cohorts, safeguard=True),
            "TITE-BOIN": lambda: simulate_tite_boin(tox, onset, arrival, TOXICITY[n_levels], boundaries=boundaries,
                                                    window_days=WINDOW_DAYS, cohort_size=COHORT_SIZE,
                                                    n_cohorts=n_cohorts),
        }
        for design, run in runs.items():
            rate = _best_rate(run, args.trials, args.repeats)
            verdict = "met" if rate >= TARGETS[design] else "NOT met"
            print(f"{design:<18} {n_levels:>6} {n_patients:>8} {rate:>10,.0f}  >= {TARGETS[design]:,} {verdict}")
    tite_boin_design(args.trials, args.repeats, args.seed)


#: The tite_boin design's vectorised path (with its safeguard, equal to the engine trial by trial): well above the
#: issue's 1,000 trials a second for the time-to-event designs
TITE_BOIN_DESIGN_TARGET = 5_000


def tite_boin_design(n_trials: int, repeats: int, seed: int) -> None:
    """The ``tite_boin`` design as ``simulate`` runs it: ``simulate_trials`` on AXA-NK02 (9 patients, its four
    scenarios), at the registration's accrual (0.3 patients a month) and with a patient every 7 days, on the
    vectorised path (lupusbayes.simulation.tite_boin_design_simulation) and through the engine that calls
    ``decide`` (a fortieth of the trials, one run)."""
    from dataclasses import replace

    from lupusbayes.decisions import design_for
    from lupusbayes.simulation import draw_latent_patients, load_scenarios, simulate_trials
    from lupusbayes.spec import load_spec

    spec = load_spec("axa_nk02")
    design = design_for(spec, "tite_boin")
    shipped = load_scenarios("axa_nk02", spec).scenarios
    print(f"\nTITE-BOIN design (simulate_trials, AXA-NK02, {len(shipped)} scenarios, "
          f"{spec.escalation.max_patients} patients)")
    print(f"{'accrual':<24} {'path':<11} {'trials/s':>10}  target")
    for accrual, gap in (("0.3 patients a month", None), ("a patient every 7 days", 7.0)):
        scenarios = [s if gap is None else replace(s, accrual_gap_days=gap, accrual_patients_per_month=None)
                     for s in shipped]
        for path, trials, vectorised in (("vectorised", n_trials, True), ("engine", max(n_trials // 40, 50), False)):
            latent = draw_latent_patients(np.random.SeedSequence(seed), trials, spec.escalation.max_patients)

            def run(latent=latent, vectorised=vectorised, scenarios=scenarios):
                for scenario in scenarios:
                    simulate_trials(spec, design, scenario, latent, vectorised=vectorised)

            rate = _best_rate(run, trials * len(scenarios), repeats if vectorised else 1)
            target = (f">= {TITE_BOIN_DESIGN_TARGET:,} {'met' if rate >= TITE_BOIN_DESIGN_TARGET else 'NOT met'}"
                      if vectorised else "")
            print(f"{accrual:<24} {path:<11} {rate:>10,.0f}  {target}".rstrip())


if __name__ == "__main__":
    main()
