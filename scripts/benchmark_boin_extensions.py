"""Speed of the vectorised BOIN12 and TITE-BOIN simulators (lupusbayes.simulation.boin_extensions_simulation).

    python scripts/benchmark_boin_extensions.py [--trials 20000] [--repeats 3] [--seed 2026]

Prints simulated trials per second (the best of ``--repeats`` runs, serial, one process) for
3 and 5 dose levels and 9 and 30 patients (cohorts of 3), with the latent patients drawn before
the clock starts. Targets on the 2-core development machine: BOIN12 >= 5,000 trials a second,
TITE-BOIN >= 1,000. The figures are printed, not asserted; the load average is printed too,
since the machine may be shared.
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
TARGETS = {"BOIN12": 5_000, "TITE-BOIN": 1_000}


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
    print(f"{'design':<10} {'levels':>6} {'patients':>8} {'trials/s':>10}  target")
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
            "TITE-BOIN": lambda: simulate_tite_boin(tox, onset, arrival, TOXICITY[n_levels], boundaries=boundaries,
                                                    window_days=WINDOW_DAYS, cohort_size=COHORT_SIZE,
                                                    n_cohorts=n_cohorts),
        }
        for design, run in runs.items():
            rate = _best_rate(run, args.trials, args.repeats)
            verdict = "met" if rate >= TARGETS[design] else "NOT met"
            print(f"{design:<10} {n_levels:>6} {n_patients:>8} {rate:>10,.0f}  >= {TARGETS[design]:,} {verdict}")


if __name__ == "__main__":
    main()
