"""Fit once, use many times: ``decide`` then ``report`` on the same data and seed, each in a fresh process.

Prints, for KN5601 (its own cohort) and AXA-NK02 (the example first group, KN5601 as co-data):
the wall time of ``lupusbayes decide`` (fits, kept in an empty cache), of ``lupusbayes report``
after it (reads the kept fits; median over the repeats; target <= 5 s), and of ``report --no-cache`` (refits: what it
cost before the cache); then the median wall time of ``lupusbayes fit kn5601 --model crs`` in a
fresh process (target <= 8 s). Times are wall clock of whole commands on this machine (imports
included); compare the ratios, not the seconds, across machines. The package's bytecode is compiled
first, as an installed package has it (an editable install under PYTHONDONTWRITEBYTECODE would
otherwise compile every source file in every process: 0.5 s a command, measured).

    python scripts/benchmark_cache.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import compileall
import importlib.util
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

LUPUSBAYES = [sys.executable, "-m", "lupusbayes.cli"]


def timed(arguments: list[str], folder: Path, environment: dict[str, str]) -> float:
    start = time.perf_counter()
    run = subprocess.run([*LUPUSBAYES, *arguments], cwd=folder, env=environment, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if run.returncode not in (0, 3):
        raise SystemExit(f"`lupusbayes {' '.join(arguments)}` exited {run.returncode}:\n{run.stderr}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="fresh-process reports and fits for the medians (default 3)")
    args = parser.parse_args()
    compileall.compile_dir(importlib.util.find_spec("lupusbayes").submodule_search_locations[0], quiet=1)
    cases = {
        "KN5601 (11 patients, SLEDAI-2K fit; the BLRM is exact)": ["kn5601", "--state", "kn5601"],
        "AXA-NK02 (3 patients + KN5601 co-data: EXNEX BLRM and SLEDAI-2K fits)":
            ["axa_nk02", "--state", "axa_patients.csv", "--as-of", "2026-06-20", "--codata", "kn5601"],
    }
    with tempfile.TemporaryDirectory() as temporary:
        folder = Path(temporary)
        environment = {**os.environ, "LUPUSBAYES_CACHE_DIR": str(folder / "cache")}
        subprocess.run([*LUPUSBAYES, "data", "example", "axa_patients", "--out", "axa_patients.csv"], cwd=folder,
                       env=environment, check=True, capture_output=True)
        print("decide, then report on the same state and seed (fresh processes; wall clock, imports included)")
        for number, (name, arguments) in enumerate(cases.items()):
            decide = timed(["decide", *arguments, "--seed", "1"], folder, environment)
            report = statistics.median(
                timed(["report", *arguments, "--seed", "1", "--out", f"report_{number}_{repeat}.html"], folder,
                      environment) for repeat in range(args.repeats))
            refit = timed(["report", *arguments, "--seed", "1", "--out", f"refit_{number}.html", "--no-cache"], folder,
                          environment)
            print(f"  {name}\n    decide {decide:5.1f} s | report after it {report:5.1f} s (median; target <= 5 s) | "
                  f"report --no-cache {refit:5.1f} s | cache saves {refit - report:5.1f} s ({refit / report:.1f}x)")
        fits = [timed(["fit", "kn5601", "--data", "kn5601", "--model", "crs", "--out", f"crs_{repeat}.nc", "--seed",
                       "1"], folder, environment) for repeat in range(args.repeats)]
        print(f"lupusbayes fit kn5601 --data kn5601 --model crs, fresh process: median {statistics.median(fits):.1f} s "
              f"over {len(fits)} (target <= 8 s); each: {', '.join(f'{s:.1f}' for s in fits)} s")


if __name__ == "__main__":
    main()
