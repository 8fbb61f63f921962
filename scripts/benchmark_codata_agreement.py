"""Does the simulator decide as the trial will? Its fast posteriors against `lupusbayes decide` (issue 17).

    python scripts/benchmark_codata_agreement.py --seed 20251108 [--states 200] [--design lupusbayes]

1. Derives the priors the simulator decides with from the KN5601 co-data (the EXNEX MAP prior of the
   DLT BLRM and the response priors at the decision and the final month matched to the SLEDAI-2K model;
   ``lupusbayes.fitting.codata``).
2. Draws ``--states`` distinct AXA-NK02 states *reached by the design*: random truths (P(DLT) per
   level up to 0.45, increasing; P(response) up to 0.9), each trial run forward with the simulator's
   own decisions, the state at each decision kept with probability 1/2 (pauses for the DLT window,
   sentinel waits, groups, stops included). Each state is written as a cohort file (CRS grade 3 for
   a DLT, SLEDAI-2K 12 at baseline and, once observed, 7 for a responder and 11 for a non-responder
   at months 1 and 3) with infusion dates and a cut-off.
3. For each state: the simulator's recommendation (exact posteriors with the derived priors) and the
   real one (`decision_inputs` + `decide`: the EXNEX BLRM and the SLEDAI-2K model fitted by MCMC with
   KN5601 as co-data, the spec's [fitting] settings, seed ``--seed``). Compared: action, next level,
   patients, wait and the selected level at a stop. Every disagreement is printed with the numbers
   that drove it (EWOC's P(excessive) and, with efficacy, P(response rate < r) and the utilities).

Prints the agreement and the time per real decision. Targets: >= 95% identical, aim >= 99%.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

import numpy as np

import lupusbayes as lb
from lupusbayes.decisions import DecisionContext, decide, design_for, exact_blrm, load_state
from lupusbayes.decisions.state import DAYS_PER_MONTH
from lupusbayes.simulation.engine import EfficacyPosteriors
from lupusbayes.workflow import decision_inputs, simulation_priors

START = date(2026, 4, 6)
HEADER = ("study_id,patient_id,age_years,sex,dose,dose_unit,weight_kg,n_infusions,crs_grade,icans_grade,dlt,"
          "biopsy_class,infusion_date,visit_month,sledai")


def _file_text(spec, patients: list[dict], today: int) -> str:
    lines = [HEADER]
    for p in patients:
        followed = today - p["day"]
        dosed = (START + timedelta(days=p["day"])).isoformat()
        dlt_known = p["dlt"] and followed >= spec.dlt.window_days  # a DLT is seen at the end of the window
        crs = 3 if dlt_known else 0
        for month in (0, 1, 3):
            if month * DAYS_PER_MONTH > followed:
                continue
            score = 12 if month == 0 else (7 if p["responder"] else 11)
            lines.append(f"AXA-NK02,{p['id']},25,F,{spec.dosing.levels[p['level']]:g},cells/kg,60,4,{crs},0,"
                         f"{'yes' if dlt_known else 'no'},IV,{dosed},{month},{score}")
    return "\n".join(lines) + "\n"


def _simulator_context(spec, state, priors):
    n, y = state.evaluable_counts()
    toxicity = exact_blrm(spec.dosing.levels, n, y, prior=priors.toxicity, reference_dose=spec.dosing.reference_dose)
    known = [p for p in state.patients if p.responder is not None]
    n_known = np.bincount([p.level for p in known], minlength=state.n_levels)
    responders = np.bincount([p.level for p in known if p.responder], minlength=state.n_levels)
    month, final = (exact_blrm(spec.dosing.levels, n_known, responders, prior=prior,
                               reference_dose=spec.dosing.reference_dose, quantity="p_response")
                    for prior in (priors.response, priors.response_final or priors.response))
    return DecisionContext(spec, state, toxicity=toxicity, efficacy=EfficacyPosteriors(month, final))


def reachable_states(spec, priors, design, count: int, rng: np.random.Generator, folder: Path):
    """(file, cut-off) pairs of distinct states reached by running the design forward on random truths."""
    seen, out = set(), []
    while len(out) < count:
        p_dlt = np.sort(rng.uniform(0.0, 0.45, 3))
        p_response = np.sort(rng.uniform(0.0, 0.9, 3))
        patients: list[dict] = []
        today = 0
        for _ in range(30):
            path = folder / f"state_{len(out) + 1}.csv"
            path.write_text(_file_text(spec, patients, today)) if patients else None
            cut_off = START + timedelta(days=today)
            state = load_state(path, spec, as_of=cut_off) if patients else None
            if state is None:
                recommendation = None
            else:
                recommendation = decide(_simulator_context(spec, state, priors), design)
                key = tuple((p.level, p.safety_days, p.dlt, p.responder) for p in state.patients)
                if key not in seen and rng.random() < 0.5:
                    seen.add(key)
                    out.append((path, cut_off))
                    if len(out) >= count:
                        break
                if recommendation.action == "stop":
                    break
                if recommendation.wait_days > 0:
                    today += recommendation.wait_days
                    continue
            level = spec.dosing.starting_level - 1 if recommendation is None else recommendation.next_level_index
            n_next = 1 if recommendation is None else recommendation.n_next
            for _ in range(n_next):
                u = rng.random()
                patients.append({"id": f"P{len(patients) + 1}", "level": level, "day": today,
                                 "dlt": bool(u < p_dlt[level]), "responder": bool(rng.random() < p_response[level])})
            today += 1 + int(rng.integers(0, 10))  # the next decision: a few days later
    return out


def _summary(recommendation) -> tuple:
    selected = recommendation.selection.level_index if recommendation.selection is not None else None
    return recommendation.action, recommendation.next_level_index, recommendation.n_next, recommendation.wait_days, selected


def _numbers(recommendation) -> str:
    parts = []
    for verdict in recommendation.verdicts:
        for check in verdict.checks:
            if check.estimate is not None:
                parts.append(f"{verdict.rule} L{check.level + 1} {check.quantity} {check.estimate.value:.3f}")
    if recommendation.selection is not None:
        parts += [f"utility L{row['level'] + 1} {row['utility']:.3f}" for row in recommendation.selection.rows]
    return "; ".join(parts)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--states", type=int, default=200)
    parser.add_argument("--design", default="lupusbayes")
    args = parser.parse_args()
    spec, codata = lb.load_spec("axa_nk02"), [lb.load_kn5601()]
    design = design_for(spec, args.design)
    started = time.perf_counter()
    priors = simulation_priors(spec, codata, seed=args.seed)
    print(f"priors from the co-data in {time.perf_counter() - started:.1f} s: {priors.source}")
    print(f"  checks: {priors.checks}")
    rng = np.random.default_rng(args.seed)
    agree, times, disagreements = 0, [], []
    with tempfile.TemporaryDirectory() as tmp:
        states = reachable_states(spec, priors, design, args.states, rng, Path(tmp))
        print(f"{len(states)} distinct reachable states of the {design.name} design")
        for number, (path, cut_off) in enumerate(states, start=1):
            state = load_state(path, spec, as_of=cut_off)
            simulated = decide(_simulator_context(spec, state, priors), design)
            began = time.perf_counter()
            inputs = decision_inputs(spec, state, design=design, codata=codata, seed=args.seed)
            real = decide(inputs.context, inputs.design)
            times.append(time.perf_counter() - began)
            if _summary(simulated) == _summary(real):
                agree += 1
            else:
                disagreements.append((number, state, simulated, real))
                print(f"  state {number}: simulator {_summary(simulated)} vs decide {_summary(real)}\n"
                      f"    simulator: {_numbers(simulated)}\n    decide:    {_numbers(real)}")
            if number % 20 == 0:
                print(f"  {number} states: {agree} agree ({100 * agree / number:.1f}%), median "
                      f"{np.median(times):.1f} s per real decision", flush=True)
    total = len(states)
    print(f"\nagreement: {agree} of {total} ({100 * agree / total:.1f}%); target >= 95%, aim >= 99%")
    print(f"real decisions: median {np.median(times):.1f} s (first {times[0]:.1f} s, with compiling); "
          f"whole run {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
