"""A hypothetical AXA-NK02 course, from the first sentinel to the final selection (docs/decisions.md).

    python scripts/axa_course.py --seed 20251108

The patients are invented (outcomes chosen to show the rules at work, not a prediction), and
each step doses what the previous recommendation allowed; at each data cut-off the script writes the state file (the cohort format with infusion_date) and
runs the decision the SRC would see: the lupusbayes design of models/axa_nk02.toml, the BLRM on the protocol DLT
and the SLEDAI-2K model fitted by MCMC with KN5601 as co-data (EXNEX). Prints each step's
recommendation line, the rule verdicts that drove it, and the command to reproduce it.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from datetime import date
from pathlib import Path

import lupusbayes as lb
from lupusbayes.cli import main as cli

HEADER = ("study_id,patient_id,age_years,sex,dose,dose_unit,weight_kg,n_infusions,crs_grade,icans_grade,dlt,"
          "biopsy_class,infusion_date,visit_month,sledai")

# patient: (id, age, sex, dose, weight, crs grade, infusion date, {month: sledai})
PATIENTS = [
    ("S1-01", 22, "F", 2.5e7, 54, 0, "2026-04-06", {0: 14, 1: 13, 2: 12}),
    ("S1-02", 17, "F", 2.5e7, 49, 1, "2026-05-11", {0: 12, 1: 11, 2: 10}),
    ("S1-03", 29, "M", 2.5e7, 71, 0, "2026-05-13", {0: 16, 1: 15, 2: 14}),
    ("S2-01", 24, "F", 7.5e7, 58, 1, "2026-06-22", {0: 12, 1: 10, 2: 8}),
    ("S2-02", 33, "F", 7.5e7, 66, 0, "2026-07-27", {0: 14, 1: 11, 2: 9}),
    ("S2-03", 20, "M", 7.5e7, 70, 1, "2026-07-29", {0: 10, 1: 8, 2: 6}),
    # step 5 opens the top dose (the calibrated EWOC limit 0.35; docs/calibration.md): its sentinel first
    ("S3-01", 31, "F", 2.5e8, 62, 1, "2026-09-02", {0: 14, 1: 9, 2: 7}),
    ("S3-02", 19, "F", 2.5e8, 51, 2, "2026-10-07", {0: 12, 1: 8}),
    ("S3-03", 26, "M", 2.5e8, 77, 1, "2026-10-09", {0: 10, 1: 6}),
]
# (cut-off date, patients dosed by then): each step doses what the previous recommendation allowed
STEPS = [("2026-04-16", 1), ("2026-05-05", 1), ("2026-06-20", 3), ("2026-07-24", 4), ("2026-08-31", 6),
         ("2026-10-05", 7), ("2026-11-04", 9), ("2026-12-15", 9)]


def _state_text(cut_off: date, n: int) -> str:
    lines = [HEADER]
    for pid, age, sex, dose, weight, crs, dosed, visits in PATIENTS[:n]:
        days = (cut_off - date.fromisoformat(dosed)).days
        for month, score in visits.items():
            if month * 30.4375 <= days:
                lines.append(f"AXA-NK02,{pid},{age},{sex},{dose:g},cells/kg,{weight},4,{crs},0,no,IV,{dosed},{month},{score}")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, required=True)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as folder:
        for number, (cut_off, n) in enumerate(STEPS, start=1):
            state = Path(folder) / f"axa_state_{number}.csv"
            state.write_text(_state_text(date.fromisoformat(cut_off), n))
            print(f"\n=== step {number}: cut-off {cut_off}, {n} patient(s) dosed ===")
            print(f"$ lupusbayes decide axa_nk02 --state axa_state_{number}.csv --as-of {cut_off} --codata kn5601 "
                  f"--seed {args.seed}")
            sys.stdout.flush()
            cli(["decide", "axa_nk02", "--state", str(state), "--as-of", cut_off, "--codata", "kn5601",
                 "--seed", str(args.seed), "--no-progress"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
