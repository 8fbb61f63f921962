"""Fit the KN5601 models through the Python API (what ``lupusbayes fit`` does, step by step).

    python scripts/fit_kn5601.py --out outputs/kn5601 --seed 20251108

Fits the ordinal CRS model and the SLEDAI-2K model, checks the convergence gate, prints the
dose-response tables, predictive checks and a PSIS-LOO comparison with one variant of each,
and saves each fit as one netCDF file.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

import lupusbayes as lb
from lupusbayes.report import text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="folder for the .nc files (must not exist)")
    parser.add_argument("--seed", type=int, required=True)
    args = parser.parse_args(argv)
    if args.out.exists():
        raise SystemExit(f"{args.out} exists; choose another folder")

    cohort = lb.load_kn5601()
    spec = lb.load_spec("kn5601")  # models/kn5601.toml: dose levels, DLT definition, priors, sampler
    seeds = [int(s.generate_state(1)[0]) for s in np.random.SeedSequence(args.seed).spawn(4)]

    models = {
        "crs": lb.CRSModel(cohort, spec),
        "crs_no_dose_effect": lb.CRSModel(cohort, spec, spec.models.crs.replace(dose_effect=False)),
        "sledai": lb.SledaiModel(cohort, spec),
        "sledai_emax": lb.SledaiModel(cohort, spec, spec.models.sledai.replace(dose_response="emax")),
    }
    fits = {name: lb.fit(model, seed=seed) for (name, model), seed in zip(models.items(), seeds, strict=True)}

    args.out.mkdir(parents=True)
    for name in ("crs", "sledai"):
        result = fits[name]
        print(text.fit_text(result), end="\n\n")
        result.require_converged()  # decisions never rest on a fit that failed its gate
        result.save(args.out / f"{name}.nc")
    print(lb.compare_models({"dose effect": fits["crs"], "no dose effect": fits["crs_no_dose_effect"]}).to_string())
    print(lb.compare_models({"log-linear": fits["sledai"], "Emax": fits["sledai_emax"]}).to_string())
    print(f"\nsaved: {', '.join(str(p) for p in sorted(args.out.iterdir()))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
