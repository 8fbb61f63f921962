"""Fit the CRS, BLRM and SLEDAI-2K models to a synthetic 500-patient, 3-study cohort and time them.

The cohort (long layout, one row per SLEDAI-2K assessment) holds ``--patients`` patients
spread over three studies: AXA-NK02 (the target trial) and two others, STUDY-B and STUDY-C.
Every patient has a baseline visit (month 0) and follow-up visits at months 1, 3 and 6; doses
are the AXA-NK02 levels in cells/kg with the patient's weight given, so no dose needs a latent
weight. Ages are 5-35 years, baseline SLEDAI-2K 8-20.

* CRS grades come from a cumulative-logit process like the CRS model's (``TRUE_CRS``: mostly
  grade 0-1, some 2, rare 3 or 4); the DLT column is ``CRS >= 3``, the spec's DLT rule.
* Follow-up SLEDAI-2K scores are simulated from the SLEDAI-2K model itself at the parameter
  values in ``TRUE_SLEDAI``, so the model is correctly specified for this data.

Each model is fitted with the AXA-NK02 spec and its default fit settings (4 chains x 1000
draws after 1000 tuning, nutpie; EXNEX across the three studies for CRS and BLRM), twice:

* first fit: building the graph, compiling (nutpie's model and the prior sampler, timed
  apart as ``compile``), then :func:`lupusbayes.fit`;
* refit: a new model object of the same design with a new seed (the compiled design is reused).

For each fit it prints the wall time, the convergence gate, divergences, and the sampler's
tree depth and leapfrog steps per draw; then all figures as one JSON line. The exit status is
1 when any gate fails.

    python scripts/benchmark_scale.py --seed 20260301 [--models crs blrm sledai] [--cold]

``--cold`` empties PyTensor's and Numba's on-disk caches for this run (what a fresh machine
pays once); by default those caches are whatever earlier runs left. Times depend on machine
load: on a shared machine, compare runs made at the same time.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

#: The studies of the synthetic cohort; the first is the spec's target trial.
STUDIES = ("AXA-NK02", "STUDY-B", "STUDY-C")
#: Follow-up months (the baseline, month 0, is added).
FOLLOW_UP_MONTHS = (1, 3, 6)
#: Infusions per patient (AXA-NK02's four); the spec's dose metric is per course.
INFUSIONS = 4

#: CRS grade process: logit P(CRS >= g) = log_a[study] - cutpoint[g] + dose_effect * x.
TRUE_CRS = {
    "log_a": {"AXA-NK02": -1.0, "STUDY-B": -0.7, "STUDY-C": -1.3},  # P(CRS >= 1) 0.21-0.33 at 7.5e7/kg
    "dose_effect": 0.7,
    "cutpoints": (0.0, 2.0, 4.0, 6.0),  # grade >= 1, 2, 3, 4
}

#: SLEDAI-2K model parameters the follow-up scores are simulated at (the model's own names).
TRUE_SLEDAI = {
    "intercept": 0.3,  # plateau fraction 0.57 at the reference dose
    "study_sd": 0.4,
    "slope": 0.6,
    "dose_group_sd": 0.2,
    "patient_sd": 0.8,
    "onset_months": 1.5,
    "residual_sd": 2.0,
}

MODELS = ("crs", "blrm", "sledai")


def _patient_table(n_patients: int, rng: np.random.Generator, spec) -> pd.DataFrame:
    """One row per patient: study, dose (cells/kg), age, sex, weight, CRS grade, baseline score."""
    from lupusbayes.dosing import LMSWeightReference, lms_weight_kg

    studies = np.array(STUDIES)[np.arange(n_patients) % len(STUDIES)]
    levels = np.asarray(spec.dosing.levels, dtype=float)
    dose = levels[rng.integers(0, levels.size, n_patients)]
    age = rng.integers(5, 36, n_patients)  # completed years, 5-35
    sex = rng.choice(["F", "M"], n_patients, p=[0.85, 0.15])  # lupus is mostly female
    # Weight for age from the CDC 2000 reference (2-20 years; adults take the 20-year row).
    lam, median, cv = LMSWeightReference.cdc2000().lms(np.minimum(age + 0.5, 19.9), sex)
    weight = np.round(lms_weight_kg(rng.standard_normal(n_patients), lam, median, cv), 1)
    x = np.log(dose / spec.dosing.reference_dose)
    log_a = np.array([TRUE_CRS["log_a"][s] for s in studies])
    cutpoints = np.asarray(TRUE_CRS["cutpoints"])
    p_at_least = 1.0 / (1.0 + np.exp(-(log_a[:, None] - cutpoints + TRUE_CRS["dose_effect"] * x[:, None])))
    crs_grade = (rng.uniform(size=n_patients)[:, None] < p_at_least).sum(axis=1)  # P(Y >= g) is decreasing in g
    return pd.DataFrame({
        "study_id": studies,
        "patient_id": [f"{s[-1] if s != STUDIES[0] else 'A'}{i:03d}" for i, s in enumerate(studies, start=1)],
        "age_years": age,
        "sex": sex,
        "dose": dose,
        "dose_unit": "cells/kg",
        "n_infusions": INFUSIONS,
        "weight_kg": weight,
        "crs_grade": crs_grade,
        "dlt": np.where(crs_grade >= spec.dlt.crs_grade_at_least, "yes", "no"),
        "sledai_baseline": rng.integers(8, 21, n_patients),
    })


def _long_layout(patients: pd.DataFrame, months: tuple[float, ...],
                 follow_up_scores: dict[tuple[str, str, float], int] | None) -> pd.DataFrame:
    """One row per assessment; follow-up scores from ``follow_up_scores`` (or the baseline as a placeholder)."""
    rows = []
    for patient in patients.itertuples(index=False):
        record = patient._asdict()
        baseline = int(record.pop("sledai_baseline"))
        for month in (0, *months):
            key = (patient.study_id, patient.patient_id, float(month))
            score = baseline if month == 0 or follow_up_scores is None else follow_up_scores[key]
            rows.append({**record, "visit_month": month, "sledai": score})
    return pd.DataFrame(rows)


def synthetic_cohort(n_patients: int, seed: int, spec, follow_up_months: tuple[float, ...] = FOLLOW_UP_MONTHS):
    """The benchmark cohort: CRS from ``TRUE_CRS``, follow-up SLEDAI-2K simulated from the model.

    Parameters
    ----------
    n_patients
        Patients in total, spread evenly over :data:`STUDIES`.
    seed
        Seeds every random step (patients, study / dose-group / patient effects, residuals).
    spec
        The AXA-NK02 spec (dose levels, reference dose, DLT rule).
    follow_up_months
        Months of the follow-up visits, the same for every patient.

    Returns
    -------
    lupusbayes.Cohort
        Validated, long layout.
    """
    import lupusbayes as lb
    from lupusbayes.fitting.calibration import draws_from_values, simulate_from

    patients_seed, effects_seed, scores_seed = np.random.SeedSequence(seed).spawn(3)
    patients = _patient_table(n_patients, np.random.default_rng(patients_seed), spec)
    placeholder = lb.cohort_from_frame(_long_layout(patients, follow_up_months, None), source="synthetic")
    design = lb.SledaiModel(placeholder, spec)

    rng = np.random.default_rng(effects_seed)
    truth = dict(TRUE_SLEDAI)
    truth["intercept_study"] = truth["intercept"] + truth["study_sd"] * rng.standard_normal(design.n_studies)
    truth["z_dose_group"] = rng.standard_normal(len(design.group_labels))
    truth["z_patient"] = rng.standard_normal(len(design.patient_labels))
    dims = {"intercept_study": ("study",), "z_dose_group": ("dose_group",), "z_patient": ("patient",)}
    truth = draws_from_values(truth, dims=dims)
    simulated, _ = simulate_from(design, truth, seed=int(scores_seed.generate_state(1)[0]))

    visited = design.patients.iloc[design.patient_position]  # the patient of each follow-up visit
    scores = {(study, patient, float(month)): int(score) for study, patient, month, score
              in zip(visited["study_id"], visited["patient_id"], design.month, simulated.score, strict=True)}
    return lb.cohort_from_frame(_long_layout(patients, follow_up_months, scores),
                                source=f"synthetic ({n_patients} patients, seed {seed})")


def _sampler_figures(result) -> dict[str, float]:
    """Mean tree depth, mean leapfrog steps per draw and the share of draws at the maximum depth."""
    stats = result.tree["sample_stats"].to_dataset()
    figures = {}
    if "depth" in stats:
        figures["mean_tree_depth"] = float(stats["depth"].mean())
    elif "tree_depth" in stats:
        figures["mean_tree_depth"] = float(stats["tree_depth"].mean())
    if "n_steps" in stats:
        figures["mean_steps_per_draw"] = float(stats["n_steps"].mean())
    if "maxdepth_reached" in stats:
        figures["share_at_max_depth"] = float(stats["maxdepth_reached"].mean())
    if "step_size" in stats:
        figures["mean_step_size"] = float(stats["step_size"].mean())
    return figures


def _worst_parameters(result, count: int = 3) -> str:
    """The parameters with the largest R-hat and the smallest bulk ESS, for diagnosis."""
    table = result.diagnostics.parameters
    table = table[~table["constant"]]
    by_rhat = ", ".join(f"{r.parameter} {r.r_hat:.3f}" for r in table.nlargest(count, "r_hat").itertuples())
    by_ess = ", ".join(f"{r.parameter} {r.ess_bulk:.0f}" for r in table.nsmallest(count, "ess_bulk").itertuples())
    return f"largest R-hat: {by_rhat}\n  smallest bulk ESS: {by_ess}"


def _compile(model) -> tuple[float, int]:
    """Build and compile ``model``'s design (graph, nutpie model, prior sampler).

    Returns the seconds taken and the number of sampled (unconstrained) parameters.
    """
    from lupusbayes.fitting import DEFAULT_CACHE

    tick = time.perf_counter()
    design = DEFAULT_CACHE.get(model)
    n_parameters = design.nutpie_model(model).n_dim
    design.prior_function()
    return time.perf_counter() - tick, int(n_parameters)


def benchmark_model(name: str, cohort, spec, seed: int) -> dict:
    """First fit (compile timed apart) and a refit with another seed; figures of both."""
    import lupusbayes as lb
    from lupusbayes.report.text import diagnostics_lines

    build = {"crs": lb.CRSModel, "blrm": lb.BLRM, "sledai": lb.SledaiModel}[name]
    figures: dict = {"model": name}
    for phase, phase_seed in (("first", seed), ("refit", seed + 1)):
        model = build(cohort, spec)
        compile_s, n_parameters = _compile(model)
        tick = time.perf_counter()
        result = lb.fit(model, seed=phase_seed)
        fit_s = time.perf_counter() - tick
        attempts = result.diagnostics.attempts
        sampling_s = sum(a.seconds for a in attempts)
        figures["n_parameters"] = n_parameters
        if hasattr(model, "parametrisation"):
            figures["parametrisation"] = vars(model.parametrisation)
        figures[phase] = {
            "seed": phase_seed,
            "wall_s": round(compile_s + fit_s, 1),
            "compile_s": round(compile_s, 1),
            "sampling_s": round(sampling_s, 1),
            "other_s": round(fit_s - sampling_s, 1),
            "gate_passed": result.converged,
            "divergences_per_run": [a.divergences for a in attempts],
            **{key: round(value, 3) for key, value in _sampler_figures(result).items()},
            **{check.name: round(check.value, 4) for check in result.diagnostics.checks},
        }
        described = f"{model.name}, {n_parameters} sampled parameters"
        if "parametrisation" in figures:
            described += ", " + ", ".join(f"{level} {how}" for level, how in figures["parametrisation"].items())
        print(f"\n{described}\n{phase} fit (seed {phase_seed}): {compile_s + fit_s:.1f} s wall = compile "
              f"{compile_s:.1f} s + sampling {sampling_s:.1f} s + {fit_s - sampling_s:.1f} s for prior draws, "
              "predictive checks, log-likelihood and diagnostics")
        sampler = _sampler_figures(result)
        print("  sampler: " + ", ".join(f"{key} {value:.3g}" for key, value in sampler.items()))
        print("\n".join(f"  {line}" for line in diagnostics_lines(result.diagnostics)))
        print(f"  {_worst_parameters(result)}")
        sys.stdout.flush()
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, required=True, help="seeds the cohort and every fit")
    parser.add_argument("--patients", type=int, default=500, help="patients in total over the three studies")
    parser.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    parser.add_argument("--cold", action="store_true", help="empty PyTensor and Numba caches (a fresh machine)")
    parser.add_argument("--write-cohort", type=Path, help="also write the synthetic cohort (long-layout CSV) here")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as cache_dir:
        if args.cold:  # must be set before PyTensor and Numba are imported (lupusbayes imports them lazily)
            os.environ["PYTENSOR_FLAGS"] = f"compiledir={cache_dir}/pytensor"
            os.environ["NUMBA_CACHE_DIR"] = f"{cache_dir}/numba"
        import lupusbayes as lb

        spec = lb.load_spec("axa_nk02")
        tick = time.perf_counter()
        cohort = synthetic_cohort(args.patients, args.seed, spec)
        simulate_s = time.perf_counter() - tick
        if args.write_cohort:
            cohort.to_csv(args.write_cohort, layout="long")
        visits = cohort.visits
        print(f"{cohort}: {len(visits)} assessments ({int((visits['visit_month'] > 0).sum())} after baseline); "
              f"CRS grades {np.bincount(cohort.patients['crs_grade'], minlength=5).tolist()} (grade 0-4); "
              f"built in {simulate_s:.1f} s")
        print(f"spec {spec.trial.id}: {spec.fitting.chains} chains x {spec.fitting.draws} draws after "
              f"{spec.fitting.tune} tuning, {spec.fitting.sampler}; {os.cpu_count()} cores; "
              f"{'cold' if args.cold else 'warm'} compile caches")

        figures = [benchmark_model(name, cohort, spec, args.seed + 10 * number)
                   for number, name in enumerate(args.models)]

    print("\nsummary (goal: first fit <= 60 s per model, every gate passed; times in seconds)")
    print(f"{'model':8} {'params':>6} {'first':>6} = {'compile':>7} + {'sampling':>8} + {'other':>5}  {'refit':>6}"
          "  gate (first, refit)  divergences  tree depth  steps/draw")
    for row in figures:
        first, refit = row["first"], row["refit"]
        gates = ", ".join("passed" if r["gate_passed"] else "FAILED" for r in (first, refit))
        print(f"{row['model']:8} {row['n_parameters']:6d} {first['wall_s']:6.1f} = {first['compile_s']:7.1f} + "
              f"{first['sampling_s']:8.1f} + {first['other_s']:5.1f}  {refit['wall_s']:6.1f}  {gates:19}  "
              f"{first['divergences_per_run']}, {refit['divergences_per_run']}  "
              f"{first.get('mean_tree_depth', float('nan')):4.2f}, {refit.get('mean_tree_depth', float('nan')):4.2f}  "
              f"{first.get('mean_steps_per_draw', float('nan')):4.1f}, {refit.get('mean_steps_per_draw', float('nan')):4.1f}")
    print(json.dumps({"seed": args.seed, "patients": args.patients, "cold_caches": args.cold, "models": figures}))
    return 0 if all(row[phase]["gate_passed"] for row in figures for phase in ("first", "refit")) else 1


if __name__ == "__main__":
    sys.exit(main())
