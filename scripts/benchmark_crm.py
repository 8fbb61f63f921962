"""Speed of the vectorised CRM and TITE-CRM simulators (lupusbayes.simulation.crm_simulation).

    python scripts/benchmark_crm.py [--seed 20251108] [--repeats 3]

Three dose levels (skeleton 0.10 / 0.25 / 0.40, target 0.25, empiric model, dfcrm's prior),
true DLT probabilities 0.10 / 0.25 / 0.45, and trials of 9 to 30 patients:

* CRM (``simulate_crm``, no skipping, stopping when P(p_1 > 0.25) >= 0.9): cohorts of 3 (9 and 30
  patients) and of 1 (30 patients, a decision after every patient), 20,000 trials each;
* TITE-CRM (``simulate_tite_crm``, 28-day window, one patient every 7 days on average, so about
  four are pending at each decision): linear and adaptive weights, cohorts of 3 and of 1,
  5,000 trials each.

Prints trials per second (the best of ``--repeats`` runs, the first run also builds the
quadrature table) against the targets, CRM >= 5,000 and TITE-CRM >= 1,000 trials a second, as
ratios. Nothing is asserted. The load average is printed, since the machine may be shared.
"""

from __future__ import annotations

import argparse
import functools
import os
import time

import numpy as np

from lupusbayes.decisions.crm import CrmModel
from lupusbayes.simulation.crm_simulation import simulate_crm, simulate_tite_crm

MODEL = CrmModel((0.10, 0.25, 0.40), target=0.25)
P_TRUE = (0.10, 0.25, 0.45)
CRM_TARGET_TRIALS_PER_SECOND = 5_000
TITE_TARGET_TRIALS_PER_SECOND = 1_000
WINDOW_DAYS = 28.0
MEAN_DAYS_BETWEEN_PATIENTS = 7.0


def best_rate(run, n_trials: int, repeats: int) -> float:
    """Trials per second of the fastest of ``repeats`` calls of ``run()`` (``n_trials`` trials each)."""
    fastest = np.inf
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        fastest = min(fastest, time.perf_counter() - started)
    return n_trials / fastest


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=20251108)
    parser.add_argument("--repeats", type=int, default=3)
    arguments = parser.parse_args()
    rng = np.random.default_rng(arguments.seed)
    print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")

    print(f"\nCRM, target >= {CRM_TARGET_TRIALS_PER_SECOND:,} trials/s")
    n_trials = 20_000
    for cohort_size, n_cohorts in ((3, 3), (3, 10), (1, 30)):
        uniforms = rng.random((n_trials, cohort_size * n_cohorts))
        run = functools.partial(simulate_crm, uniforms, P_TRUE, model=MODEL, cohort_size=cohort_size,
                                n_cohorts=n_cohorts, stop_probability=0.9)
        rate = best_rate(run, n_trials, arguments.repeats)
        print(f"  {cohort_size * n_cohorts:2d} patients in cohorts of {cohort_size}: {rate:9,.0f} trials/s "
              f"({rate / CRM_TARGET_TRIALS_PER_SECOND:.1f} x target)")

    print(f"\nTITE-CRM, target >= {TITE_TARGET_TRIALS_PER_SECOND:,} trials/s")
    n_trials = 5_000
    for weights in ("linear", "adaptive"):
        for cohort_size, n_cohorts in ((3, 3), (3, 10), (1, 30)):
            n_patients = cohort_size * n_cohorts
            gaps = rng.exponential(MEAN_DAYS_BETWEEN_PATIENTS, (n_trials, n_patients))
            arrival_days = np.cumsum(gaps, axis=1) - gaps[:, :1]
            uniforms = rng.random((n_trials, n_patients))
            onset_days = WINDOW_DAYS * (1.0 - rng.random((n_trials, n_patients)))  # uniform on (0, window]
            run = functools.partial(simulate_tite_crm, uniforms, onset_days, arrival_days, P_TRUE, model=MODEL,
                                    window_days=WINDOW_DAYS, cohort_size=cohort_size, n_cohorts=n_cohorts,
                                    weights=weights, stop_probability=0.9)
            rate = best_rate(run, n_trials, arguments.repeats)
            print(f"  {weights:8s} {n_patients:2d} patients in cohorts of {cohort_size}: {rate:9,.0f} trials/s "
                  f"({rate / TITE_TARGET_TRIALS_PER_SECOND:.1f} x target)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
