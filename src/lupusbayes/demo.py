"""The end-to-end run behind ``make demo`` / ``lupusbayes demo`` (:func:`run_demo`).

On the shipped KN5601 data: summarise the cohort, screen it against AXA-NK02's eligibility
criteria, fit the ordinal CRS model, the binary BLRM and the SLEDAI-2K model, fit one variant
of each for a PSIS-LOO comparison, fit AXA-NK02's CRS model borrowing from KN5601 through
EXNEX, decide the next KN5601 dose group and write the SRC report (one HTML file), simulate the
operating characteristics of AXA-NK02's designs (a short run), and write every table, fit and a
plain-text report into one folder. The folder appears only when everything succeeded (staged,
then renamed).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from lupusbayes._io import staged_directory
from lupusbayes.cohort import load_kn5601
from lupusbayes.decisions import load_state
from lupusbayes.eligibility import screen
from lupusbayes.fitting import FitResult, compare_models, fit
from lupusbayes.fitting.sample import FitProgress
from lupusbayes.models.sledai import SledaiModel
from lupusbayes.models.toxicity import BLRM, CRSModel
from lupusbayes.report import text
from lupusbayes.report.html import write_src_report
from lupusbayes.report.simulation_plots import save_operating_characteristics
from lupusbayes.simulation import DEFAULT_DESIGNS, SimulationPlan, comparison_table, load_scenarios, simulate
from lupusbayes.spec import load_spec
from lupusbayes.summary import summarise_cohort
from lupusbayes.workflow import decide_from_inputs, decision_inputs, report_inputs, simulation_priors

__all__ = ["run_demo", "DemoResult", "DEMO_SIMULATED_TRIALS"]

#: Trials per scenario and design in the demo's operating characteristics (a short, indicative run).
DEMO_SIMULATED_TRIALS = 200


@dataclass(frozen=True)
class DemoResult:
    folder: Path
    fits: dict[str, FitResult]

    @property
    def all_converged(self) -> bool:
        return all(result.converged for result in self.fits.values())


def run_demo(
    folder: Path,
    *,
    seed: int,
    overwrite: bool = False,
    sampler: str | None = None,
    progress: Callable[[str], None] = lambda line: None,
    fit_progress: FitProgress | None = None,
    mkdir: bool = False,
) -> DemoResult:
    """Run the pipeline and write its outputs to ``folder`` (see the module docstring)."""
    cohort = load_kn5601()
    kn5601, axa = load_spec("kn5601"), load_spec("axa_nk02")
    fit_seeds = iter(int(s.generate_state(1)[0]) for s in np.random.SeedSequence(seed).spawn(9))

    def settings(spec):
        return spec.fitting if sampler is None else spec.fitting.replace(sampler=sampler)

    with staged_directory(folder, overwrite=overwrite, mkdir=mkdir) as staging:
        report: list[str] = [f"lupusbayes demo on the shipped KN5601 cohort (master seed {seed})", ""]

        progress("1/7 cohort summary")
        summary = summarise_cohort(cohort, seed=seed)
        summary_text = text.cohort_summary_text(summary)
        (staging / "cohort_summary.txt").write_text(summary_text + "\n")
        (staging / "cohort_summary.json").write_text(json.dumps(summary.to_dict(), indent=2, default=str) + "\n")
        cohort.to_csv(staging / "kn5601_tidy.csv")
        report += ["== KN5601 cohort ==", summary_text, ""]

        progress("2/7 eligibility screen against AXA-NK02")
        screening = screen(cohort.patients, axa)
        screening.results.to_csv(staging / "screening_axa_nk02.csv", index=False)
        failures = screening.failures
        report += ["== KN5601 patients screened against AXA-NK02 (criteria the data can check) ==",
                   failures[["patient_id", "criterion_id", "value", "requirement"]].to_string(index=False)
                   if not failures.empty else "no failures", ""]

        fits: dict[str, FitResult] = {}
        plan = [
            ("crs", lambda: CRSModel(cohort, kn5601), kn5601),
            ("crs_no_dose_effect", lambda: CRSModel(cohort, kn5601, kn5601.models.crs.replace(dose_effect=False)), kn5601),
            ("blrm", lambda: BLRM(cohort, kn5601), kn5601),
            ("sledai", lambda: SledaiModel(cohort, kn5601), kn5601),
            ("sledai_emax", lambda: SledaiModel(cohort, kn5601, kn5601.models.sledai.replace(dose_response="emax")), kn5601),
            ("sledai_not_monotone",
             lambda: SledaiModel(cohort, kn5601, kn5601.models.sledai.replace(monotone=False)), kn5601),
            ("axa_nk02_crs_borrowing_kn5601", lambda: CRSModel(cohort, axa), axa),
        ]
        for number, (name, build, spec) in enumerate(plan, start=1):
            progress(f"3/7 fit {number}/{len(plan)}: {name}")
            result = fit(build(), seed=next(fit_seeds), settings=settings(spec), progress=fit_progress)
            fits[name] = result
            result.save(staging / f"{name}.nc")
            result.dose_summary().to_csv(staging / f"{name}_dose_summary.csv", index=False)
            result.ppc_table().to_csv(staging / f"{name}_posterior_predictive_checks.csv", index=False)
            result.prior_predictive_table().to_csv(staging / f"{name}_prior_predictive_checks.csv", index=False)
            result.parameter_summary().to_csv(staging / f"{name}_parameters.csv", index=False)
            report += [f"== {name} ==", text.fit_text(result), ""]

        progress("4/7 model comparison (PSIS-LOO)")
        comparisons = {
            "crs": compare_models({"ordinal, dose effect": fits["crs"], "ordinal, no dose effect": fits["crs_no_dose_effect"]}),
            "sledai": compare_models({"log-linear": fits["sledai"], "Emax": fits["sledai_emax"],
                                      "log-linear, not monotone": fits["sledai_not_monotone"]}),
        }
        for name, table in comparisons.items():
            table.to_csv(staging / f"model_comparison_{name}.csv")
            report += [f"== PSIS-LOO comparison: {name} ==", table.to_string(), ""]

        progress("5/7 the next KN5601 dose group and the SRC report")
        state = load_state("kn5601", kn5601)
        prepared = decision_inputs(kn5601, state, toxicity_fit=fits["blrm"], efficacy_fit=fits["sledai"], seed=seed,
                                   toxicity_fit_source="the demo's BLRM fit", efficacy_fit_source="the demo's SLEDAI-2K fit")
        inputs = report_inputs(decide_from_inputs(prepared), seed=seed, command=f"lupusbayes demo --seed {seed}")
        write_src_report(staging / "src_report_kn5601.html", inputs)
        recommendation = inputs.recommendation
        report += ["== The next KN5601 dose group ==", text.recommendation_text(recommendation, kn5601), ""]

        progress(f"6/7 operating characteristics of AXA-NK02's designs ({DEMO_SIMULATED_TRIALS} trials per scenario)")
        scenarios = load_scenarios("axa_nk02", axa)
        priors = simulation_priors(axa, [cohort], seed=seed)  # the simulated decisions borrow from KN5601 as real ones do
        simulation = simulate(SimulationPlan(axa, scenarios, DEFAULT_DESIGNS,
                                             n_trials=DEMO_SIMULATED_TRIALS, seed=seed, priors=priors))
        simulation.summary.to_csv(staging / "operating_characteristics_axa_nk02.csv", index=False)
        save_operating_characteristics(staging / "operating_characteristics_axa_nk02.png", simulation.summary,
                                       scenarios, axa)
        report += ["== Operating characteristics of AXA-NK02's designs (value (Monte Carlo error)) =="]
        for scenario in scenarios.scenarios:
            report += [f"-- {scenario.name} --", comparison_table(simulation.summary, scenario.name).to_string(index=False)]
        report.append("")

        progress("7/7 report")
        converged = {name: result.converged for name, result in fits.items()}
        report += ["== Convergence gate ==", *(f"{name}: {'passed' if ok else 'FAILED'}" for name, ok in converged.items())]
        (staging / "report.txt").write_text("\n".join(report) + "\n")
        pd.DataFrame({"fit": list(converged), "converged": list(converged.values())}).to_csv(
            staging / "convergence.csv", index=False
        )
    return DemoResult(folder=folder, fits=fits)
