"""Accuracy and speed of the exact BLRM posterior (lupusbayes.models.exact).

    python scripts/benchmark_exact_blrm.py --seed 20251108

Accuracy: on the published Neuenschwander et al. (2008) example and on 100 random AXA-NK02-like
data sets (3 doses, 0-6 patients each, DLT rates 0-0.6), the default grid (41 x 41) against a
fine reference grid with wide tails (1201 x 1201 for the
example, 601 x 601 for the random sets): the largest absolute error of the posterior mean of
P(DLT) and of the interval probabilities. Speed: milliseconds per posterior, one at a time and
in a batch of 1000. Prints the figures recorded in docs/validation.md.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from lupusbayes.models.exact import blrm_exact_posterior
from lupusbayes.spec import BivariateNormalPrior, ToxicityIntervals


def _errors(doses, n, y, prior, reference_dose, grid, intervals, points, reference_points=1201):
    fast = blrm_exact_posterior(doses, n, y, prior=prior, reference_dose=reference_dose, points=points)
    fine = blrm_exact_posterior(doses, n, y, prior=prior, reference_dose=reference_dose, points=reference_points,
                                span=14, stretch=100)
    mean_error = np.abs(fast.mean_p_dlt(grid) - fine.mean_p_dlt(grid)).max()
    interval_error = np.abs(fast.interval_probabilities(grid, intervals)
                            - fine.interval_probabilities(grid, intervals)).max()
    return mean_error, interval_error, float(np.max(fast.boundary_mass))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--sets", type=int, default=100)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(args.seed)

    oncology = ToxicityIntervals.oncology()
    lupus = ToxicityIntervals((0.0, 0.10, 0.20, 1.0), ("acceptable", "elevated", "excessive"), "excessive")
    hist_prior = BivariateNormalPrior(0.0, 0.0, 2.0, 1.0)
    hist = ([1, 2.5, 5, 10, 25], [3, 4, 5, 4, 2], [0, 0, 0, 0, 2])
    print("Neuenschwander 2008 example (hist_SA), oncology intervals:")
    for points in (21, 31, 41, 61):
        mean_error, interval_error, boundary = _errors(*hist, hist_prior, 50, [1, 2.5, 5, 10, 25, 50], oncology, points)
        print(f"  {points:3d} x {points}: max |error| mean P(DLT) {mean_error:.1e}, interval probabilities "
              f"{interval_error:.1e}; mass on the outer ring {boundary:.1e}")

    axa_prior = BivariateNormalPrior(-2.944, 0.0, 1.2, 0.8)
    doses = np.array([2.5e7, 7.5e7, 2.5e8])
    n = rng.integers(0, 7, (args.sets, 3))
    y = rng.binomial(n, rng.uniform(0, 0.6, (args.sets, 3)))
    chunks = [_errors(doses, n[i:i + 10], y[i:i + 10], axa_prior, 7.5e7, doses, lupus, 41, reference_points=601)
              for i in range(0, args.sets, 10)]
    mean_error, interval_error, boundary = (max(c[k] for c in chunks) for k in range(3))
    print(f"{args.sets} random AXA-NK02-like data sets, lupus intervals, 41 x 41 against 601 x 601: max |error| "
          f"mean P(DLT) {mean_error:.1e}, interval probabilities {interval_error:.1e}; largest outer-ring mass "
          f"{boundary:.1e}")

    started = time.perf_counter()
    for row in range(100):
        posterior = blrm_exact_posterior(doses, n[row], y[row], prior=axa_prior, reference_dose=7.5e7)
        posterior.interval_probabilities(doses, lupus)
    single = (time.perf_counter() - started) / 100
    big_n, big_y = rng.integers(0, 7, (1000, 3)), None
    big_y = rng.binomial(big_n, 0.2)
    started = time.perf_counter()
    posterior = blrm_exact_posterior(doses, big_n, big_y, prior=axa_prior, reference_dose=7.5e7)
    posterior.interval_probabilities(doses, lupus)
    batch = (time.perf_counter() - started) / 1000
    print(f"speed (41 x 41, 3 doses, posterior + interval probabilities): {single * 1e3:.2f} ms one at a time, "
          f"{batch * 1e3:.2f} ms each in a batch of 1000")
    return 0


if __name__ == "__main__":
    sys.exit(main())
