"""Simulation-based calibration (SBC) of the CRS and SLEDAI-2K models on the KN5601 design.

For each replicate: draw parameters from the model's prior, simulate outcomes for the 11
KN5601 patients (their doses, baselines and visit months), fit, and record the rank of the
true value among 100 thinned posterior draws. A calibrated model gives uniform ranks.

    python scripts/validate_sbc.py --out docs/validation --seed 20251108 [--replicates 200]

Writes (atomically, refusing to overwrite unless --overwrite): sbc_ranks_<model>.csv,
sbc_summary.csv (chi-square p-value per quantity, replicates that failed the gate) and
sbc_rank_histograms.png, and prints the summary. Takes about 10 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

import lupusbayes as lb
from lupusbayes._io import staged_directory
from lupusbayes.fitting.calibration import SBCResult, model_fingerprint, run_sbc

SETTINGS = lb.FitSettings(draws=1000, tune=500, chains=4, sampler="nutpie")


def _crs_quantities(spec: lb.TrialSpec):
    reference = spec.dosing.reference_dose

    def p_any_crs(dose):
        x = np.log(dose / reference)

        def at(draws):
            log_a = draws["log_a"].sel(study="KN5601").to_numpy()
            log_b = draws["log_b"].sel(study="KN5601").to_numpy()
            return 1 / (1 + np.exp(-(log_a + np.exp(log_b) * x)))

        return at

    return {
        "log_a": lambda d: d["log_a"].sel(study="KN5601").to_numpy(),
        "log_b": lambda d: d["log_b"].sel(study="KN5601").to_numpy(),
        "grade_gap_1_2": lambda d: d["grade_gap"].isel(grade_step=0).to_numpy(),
        "P(CRS>=1) at 1e9": p_any_crs(1e9),
        "P(CRS>=1) at 4.5e9": p_any_crs(4.5e9),
    }


def _sledai_quantities():
    return {
        name: (lambda d, name=name: d[name].to_numpy())
        for name in ("intercept", "slope", "patient_sd", "onset_months", "residual_sd")
    }


def _histograms(results: dict[str, SBCResult], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from scipy.stats import binom

    panels = [(model, column) for model, result in results.items() for column in result.ranks.columns.drop("replicate")]
    columns = 5
    rows = int(np.ceil(len(panels) / columns))
    figure, axes = plt.subplots(rows, columns, figsize=(3.2 * columns, 2.6 * rows), squeeze=False)
    bins = 20
    for axis, (model, column) in zip(axes.ravel(), panels, strict=False):
        result = results[model]
        n = len(result.ranks)
        counts, edges, _ = axis.hist(result.ranks[column], bins=bins, range=(0, result.n_draws + 1),
                                     color="#4c72b0", edgecolor="white")
        low, high = binom.ppf([0.005, 0.995], n, 1 / bins)
        axis.axhspan(low, high, color="grey", alpha=0.25, lw=0)
        axis.set_title(f"{model}: {column}", fontsize=9)
        axis.set_yticks([])
    for axis in axes.ravel()[len(panels):]:
        axis.axis("off")
    figure.suptitle("SBC rank histograms (grey band: 99% range of a bin count under uniformity)", fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="output folder (e.g. docs/validation)")
    parser.add_argument("--seed", type=int, required=True, help="master seed; every replicate's seed is spawned from it")
    parser.add_argument("--replicates", type=int, default=200)
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    args = parser.parse_args(argv)

    cohort, spec = lb.load_kn5601(), lb.load_spec("kn5601")
    plan = {
        "crs": (lb.CRSModel(cohort, spec), _crs_quantities(spec)),
        "sledai": (lb.SledaiModel(cohort, spec), _sledai_quantities()),
    }
    seeds = np.random.SeedSequence(args.seed).spawn(len(plan))
    results, seconds = {}, {}
    for (name, (model, quantities)), seed in zip(plan.items(), seeds, strict=True):
        started = time.perf_counter()
        results[name] = run_sbc(
            model, quantities, replicates=args.replicates, seed=int(seed.generate_state(1)[0]), settings=SETTINGS,
            progress=lambda r, name=name: print(f"{name}: replicate {r + 1}/{args.replicates}", file=sys.stderr)
            if (r + 1) % 20 == 0 else None,
        )
        seconds[name] = time.perf_counter() - started

    rows = []
    for name, result in results.items():
        for quantity, p_value in result.uniformity_p_values().items():
            rows.append({"model": name, "quantity": quantity, "chi2_p_value": round(p_value, 4),
                         "replicates": len(result.ranks), "failed_gate": result.failed_gate,
                         "minutes": round(seconds[name] / 60, 1)})
    summary = pd.DataFrame(rows)
    with staged_directory(args.out, overwrite=args.overwrite) as staging:
        if args.out.exists():  # keep the folder's other files (e.g. notes) when replacing
            for existing in args.out.iterdir():
                if not existing.name.startswith("sbc_"):
                    (shutil.copytree if existing.is_dir() else shutil.copy2)(existing, staging / existing.name)
        for name, result in results.items():
            result.ranks.to_csv(staging / f"sbc_ranks_{name}.csv", index=False)
        summary.to_csv(staging / "sbc_summary.csv", index=False)
        (staging / "sbc_settings.json").write_text(json.dumps(
            {"seed": args.seed, "replicates": args.replicates, "draws": SETTINGS.draws, "tune": SETTINGS.tune,
             "chains": SETTINGS.chains, "sampler": SETTINGS.sampler, "thinned_to": 100,
             "lupusbayes": lb.__version__,
             "models": {name: model_fingerprint(model) for name, (model, _) in plan.items()}}, indent=2) + "\n")
        _histograms(results, staging / "sbc_rank_histograms.png")
    print(summary.to_string(index=False))
    n_tests = len(summary)
    low = int((summary["chi2_p_value"] < 0.01).sum())
    print(f"\n{low} of {n_tests} quantities with chi-square p < 0.01 (about {0.01 * n_tests:.1f} expected by chance)")
    for name, result in results.items():
        band = result.binomial_band_check()
        print(f"{name}: {int(band.outliers.sum())} of {band.total_bins} histogram bins outside their 99% band "
              f"(at most {band.allowed_outliers} allowed)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
