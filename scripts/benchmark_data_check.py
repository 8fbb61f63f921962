"""Speed and memory of `lupusbayes data check` on large cohort files (issue 16: <= 30 s for 1,000,000 rows, linear).

    python scripts/benchmark_data_check.py --seed 20251108 [--sizes 10000,100000,1000000]

Writes synthetic cohorts (wide layout; flat doses in cells without weights, ages 5-34, so about
half the patients fall outside the CDC weight-for-age reference and the note about them is
built: the path that was slowest), then times `lupusbayes data check FILE` in a fresh process
for each size, and prints the wall time, the time per 100,000 rows (flat when the check is
linear) and the peak resident memory of the process.
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HEADER = "study_id,patient_id,age_years,sex,dose,crs_grade,follow_up_months,sledai_baseline,sledai_latest"


def write_cohort(path: Path, rows: int, rng: np.random.Generator) -> None:
    ages, grades = rng.integers(5, 35, rows), rng.integers(0, 3, rows)
    months, baseline, latest = rng.integers(1, 7, rows), rng.integers(8, 20, rows), rng.integers(0, 8, rows)
    sexes = np.where(rng.random(rows) < 0.8, "F", "M")
    with path.open("w", encoding="utf-8") as handle:
        handle.write(HEADER + "\n")
        for i in range(rows):
            handle.write(f"BIG,P{i + 1},{ages[i]},{sexes[i]},3*10^9,{grades[i]},{months[i]},{baseline[i]},{latest[i]}\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--sizes", default="10000,100000,1000000")
    args = parser.parse_args()
    sizes = [int(size) for size in args.sizes.split(",")]
    rng = np.random.default_rng(args.seed)
    print(f"{'rows':>10} {'seconds':>8} {'s per 100k rows':>16} {'peak memory (MB)':>17}")
    with tempfile.TemporaryDirectory() as folder:
        for rows in sizes:
            path = Path(folder) / f"cohort_{rows}.csv"
            write_cohort(path, rows, rng)
            started = time.perf_counter()
            run = subprocess.run([sys.executable, "-m", "lupusbayes.cli", "data", "check", str(path)],
                                 capture_output=True, text=True)
            elapsed = time.perf_counter() - started
            if run.returncode != 0:
                raise SystemExit(f"data check failed: {run.stderr}")
            peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # the largest child so far
            print(f"{rows:>10,} {elapsed:>8.1f} {elapsed / rows * 1e5:>16.2f} {peak:>17.0f}")
            path.unlink()
    print("target (issue 16): <= 30 s for 1,000,000 rows, and linear")
    return 0


if __name__ == "__main__":
    sys.exit(main())
