"""The prior predictive tables of docs/models.md: per shipped spec, what the priors imply per dose.

    python scripts/prior_predictive_tables.py --seed 20251108

For KN5601 and AXA-NK02 (fitted to the KN5601 cohort, as the demo does): per dose, the prior
mean, median and 90% range of P(DLT) (the BLRM's prior) and of P(CRS >= 2) (the ordinal CRS
model's), then the prior predictive of the KN5601 data next to what was observed. Prints
Markdown. No MCMC: prior draws only (about 10 s).
"""

from __future__ import annotations

import argparse
import sys

import lupusbayes as lb
from lupusbayes.fitting import prior_predictive


def _row(table, column: str) -> list[str]:
    return [f"{m:.3f} / {q50:.3f} [{lo:.3f}, {hi:.3f}]" for m, q50, lo, hi in
            zip(table[f"{column} mean"], table[f"{column} median"], table[f"{column} q5"], table[f"{column} q95"],
                strict=True)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--draws", type=int, default=20000)
    args = parser.parse_args(argv)
    cohort = lb.load_kn5601()
    observed = cohort.patients.groupby("dose_cells").agg(n=("patient_id", "size"),
                                                         crs2=("crs_grade", lambda g: int((g >= 2).sum())))
    for name in ("kn5601", "axa_nk02"):
        spec = lb.load_spec(name)
        blrm = prior_predictive(lb.BLRM(cohort, spec), seed=args.seed, draws=args.draws)
        crs = prior_predictive(lb.CRSModel(cohort, spec), seed=args.seed, draws=args.draws)
        dlt_table, crs_table = blrm.dose_summary(), crs.dose_summary()
        print(f"\n### {spec.trial.id} (prior draws: {args.draws}, seed {args.seed})\n")
        print("| dose | P(DLT): mean / median [90%] (BLRM prior) | P(CRS >= 2): mean / median [90%] (CRS prior) |")
        print("|---|---|---|")
        for dose, dlt, crs2 in zip(dlt_table["dose"], _row(dlt_table, "P(DLT)"), _row(crs_table, "P(CRS>=2)"),
                                   strict=True):
            print(f"| {dose} | {dlt} | {crs2} |")
        print("\nPrior predictive of the KN5601 data (mean [90% range]) against what was observed:\n")
        print("| statistic | prior predictive | observed |")
        print("|---|---|---|")
        for table in (blrm.check_table(), crs.check_table()):
            for row in table.itertuples(index=False):
                if "CRS >= 1" in row.statistic and "at" in row.statistic:
                    continue
                print(f"| {row.statistic} | {row.replicated_mean:.2f} [{row.replicated_q5:.0f}, {row.replicated_q95:.0f}] "
                      f"| {row.observed:.0f} |")
    print("\nKN5601 patients per dose (flat cells), with CRS >= 2:", observed.to_dict(orient="index"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
