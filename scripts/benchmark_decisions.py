"""Speed of decisions: the exact path, and a full `lupusbayes decide` with its MCMC fits, cold.

    python scripts/benchmark_decisions.py

1. One BLRM decision (design blrm_ewoc, exact posterior by quadrature) from a state of DLT
   counts: the median time over 200 decisions, each from new counts.
2. `lupusbayes decide kn5601 --state kn5601` (design lupusbayes: P(DLT) from the exact BLRM on the
   protocol DLT, the SLEDAI-2K model fitted by MCMC) in a fresh process with an empty PyTensor compile cache (cold), wall time;
   then the same with a warm cache; then AXA-NK02 with KN5601 as co-data (EXNEX), cold.
Targets (issue 9): <= 10 ms for 1; <= 30 s for the cold KN5601 decide.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import lupusbayes as lb
from lupusbayes.decisions import DecisionContext, decide, design_for, exact_blrm, state_from_counts


def exact_decisions(repeats: int = 200) -> float:
    spec = lb.parse_spec(lb.load_spec("axa_nk02").text.replace("[fitting]", '[decision]\ndesign = "blrm_ewoc"\n'
                                                                             'toxicity_model = "blrm"\n\n[fitting]', 1))
    design = design_for(spec)
    rng = np.random.default_rng(1)
    times = []
    for _ in range(repeats):
        n = rng.integers(0, 7, 3)
        y = rng.binomial(n, 0.15)
        started = time.perf_counter()
        state = state_from_counts(spec, n, y, current_level_index=int(np.flatnonzero(n)[-1]) if n.any() else None)
        toxicity = exact_blrm(spec.dosing.levels, n, y, prior=spec.models.blrm.prior,
                              reference_dose=spec.dosing.reference_dose)
        decide(DecisionContext(spec, state, toxicity=toxicity), design)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def cli_wall_time(arguments: list[str], cache: str) -> float:
    environment = dict(os.environ, PYTENSOR_FLAGS=f"base_compiledir={cache}")
    started = time.perf_counter()
    run = subprocess.run([sys.executable, "-m", "lupusbayes.cli", *arguments, "--no-progress"], env=environment,
                         capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    if run.returncode not in (0, 3):
        raise SystemExit(f"decide failed: {run.stderr}")
    return elapsed


def main() -> int:
    print(f"exact BLRM decision (blrm_ewoc, 3 doses): median {exact_decisions() * 1e3:.1f} ms over 200 states")
    kn5601 = ["decide", "kn5601", "--state", "kn5601", "--json"]
    with tempfile.TemporaryDirectory() as cache:
        cold = cli_wall_time(kn5601, cache)
        warm = cli_wall_time(kn5601, cache)
    print(f"lupusbayes decide kn5601 (exact BLRM + SLEDAI-2K fitted by MCMC): {cold:.1f} s cold, {warm:.1f} s warm cache")
    axa = ["decide", "axa_nk02", "--state", str(Path(lb.__file__).parent / "data" / "examples" / "axa_patients.csv"),
           "--as-of", "2026-06-20", "--codata", "kn5601", "--json"]
    with tempfile.TemporaryDirectory() as cache:
        cold = cli_wall_time(axa, cache)
    print(f"lupusbayes decide axa_nk02 with KN5601 co-data (EXNEX BLRM + SLEDAI-2K, MCMC): {cold:.1f} s cold")
    return 0


if __name__ == "__main__":
    sys.exit(main())
