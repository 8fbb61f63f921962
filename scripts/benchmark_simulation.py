"""Speed of the simulator, and its exact posteriors against NUTS on the same model, decision by decision.

    python scripts/benchmark_simulation.py --seed 20251108 [--trials 1000] [--points 200] [--quick]

0. The priors the Bayesian designs decide with, derived from the KN5601 co-data as real
   AXA-NK02 decisions borrow from it (``lupusbayes.workflow.simulation_priors``: two MCMC fits).
1. Throughput (AXA-NK02 spec and its 4 shipped scenarios, ``--trials`` trials per scenario, the
   co-data priors; targets: the lupusbayes design >= 500 trials a second):
   simulated trials per second of ``lupusbayes.simulation.simulate`` for each design alone,
   serial; all five designs in one plan, serial and with ``workers=2`` (the same trials, bit for
   bit, checked); and the vectorised reference simulators of BOIN and the 3+3
   (``simulation.rule_based``) on the same latent patients, with the ratio engine / vectorised
   and the share of trials where both select the same level. Each engine run starts with an
   empty posterior cache, as a fresh process would (the cache is per process and shared by
   designs and chunks).
2. Exact posterior vs naive MCMC, per decision (design ``blrm_ewoc``): at ``--points`` distinct
   DLT-count states (3, 6 or 9 patients per level, at most 9 in all, every number of DLTs;
   the current level is the highest with patients), one decision from the simulator's exact
   posterior (quadrature, ``PosteriorBank``) and one from NUTS draws of the single-study BLRM,
   written here in PyMC with the counts as ``pm.Data``, compiled once and re-sampled per state
   (nutpie, the spec's ``[fitting]`` draws, tune, chains and target_accept). Reports time per
   decision (compile time apart, and the faster of the NUTS routes measured), agreement of the
   recommendations (action, next level, and the selected level when the trial stops), how far
   each disagreement's NUTS EWOC probability P(P(DLT) >= 0.2) is from the 0.25 limit in Monte
   Carlo standard errors (within 2 MCSE is a close call and expected), and the largest
   differences of P(P(DLT) >= 0.2) and of the posterior mean P(DLT) against the typical MCSE.
   The states farthest from NUTS (beyond 4 MCSE, or disagreeing on more than a close call; up
   to 5) are sampled again with 10x the draws, to tell a Monte Carlo fluke from an error of the
   quadrature (whose stated error is 2e-3). Wall times are medians; the load average is printed,
   since the machine may be shared.
3. The MCMC fallback (``lupusbayes.fitting.counts.CountModelSampler``, what the simulator uses
   when a quadrature cannot resolve a posterior): its compile time, its time per posterior, and
   its P(P(DLT) >= t) and mean P(DLT) against the exact values, in MCSE, on 20 of the states.
4. A summary block with the headline numbers (recorded in docs/simulation.md).

``--quick`` (20 points, 200 trials, no comparison of NUTS routes) runs in about a minute; the
full run takes several minutes (NUTS compiles once, about 15 s).
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import sys
import time

import numpy as np

import lupusbayes as lb
from lupusbayes.decisions import DecisionContext, decide, design_for, draws_from_dose_response, state_from_counts
from lupusbayes.decisions.boin import boin_boundaries
from lupusbayes.decisions.posterior import QUADRATURE_ERROR
from lupusbayes.models.exact import blrm_exact_posterior
from lupusbayes.simulation import PosteriorBank, SimulationPlan, load_scenarios, simulate
from lupusbayes.simulation.runner import DEFAULT_CHUNK_SIZE, clear_posterior_cache
from lupusbayes.simulation.engine import max_patients_of, simulate_trials
from lupusbayes.simulation.patients import draw_latent_patients
from lupusbayes.simulation.rule_based import simulate_boin, simulate_three_plus_three
from lupusbayes.workflow import simulation_priors

DESIGN_NAMES = ("lupusbayes", "blrm_ewoc", "blrm_loss", "boin", "3+3")
PATIENTS_PER_LEVEL = (0, 3, 6, 9)
OUTLIER_MCSE = 4.0  # a difference exact - NUTS beyond this many MCSE is checked again with more draws
CONFIRM_FACTOR = 10
CONFIRM_STATES = 5


def _cold_cache() -> None:
    """Forget this process's cached exact posteriors, so each run is timed as a fresh process would run it."""
    clear_posterior_cache()


# ---- 1. throughput ---------------------------------------------------------------------------------


def _latent_patients(plan: SimulationPlan, spec) -> list[list[tuple]]:
    """The engine's latent patients, per scenario and chunk, drawn as ``run_chunk`` draws them."""
    out = [[] for _ in plan.scenarios.scenarios]
    for chunk in plan.chunks():
        sequence = np.random.SeedSequence(plan.seed, spawn_key=(chunk.scenario, chunk.number))
        out[chunk.scenario].append((chunk, draw_latent_patients(sequence, chunk.size, max_patients_of(spec))))
    return out


def _general_engine(spec, name: str, plan: SimulationPlan, latent) -> tuple[float, np.ndarray]:
    """Seconds and selected levels (0-based, -1 none) of the general engine (one decide() per trial and step)."""
    design = design_for(spec, name)
    bank = PosteriorBank.for_spec(spec, priors=plan.priors)
    selected = []
    started = time.perf_counter()
    for scenario, chunks in zip(plan.scenarios.scenarios, latent, strict=True):
        for chunk, patients in chunks:
            result = simulate_trials(spec, design, scenario, patients, bank=bank, first_trial=chunk.first, vectorised=False)
            selected.append(result.selected_level)
    return time.perf_counter() - started, np.concatenate(selected)


def throughput(spec, scenarios, n_trials: int, seed: int, priors=None) -> dict:
    n_scenarios = len(scenarios.scenarios)
    total = n_trials * n_scenarios
    print(f"1. Simulator throughput: AXA-NK02, {n_scenarios} scenarios x {n_trials} trials = {total} trials per "
          f"design, chunks of {DEFAULT_CHUNK_SIZE}; each run starts with an empty posterior cache; simulate() runs "
          "BOIN and the 3+3 on the vectorised simulators")
    # warm-up: imports and first calls, not timed
    simulate(SimulationPlan(spec, scenarios, DESIGN_NAMES, n_trials=2, seed=seed, priors=priors))
    out: dict = {"per_design": {}, "total": total}
    engine: dict = {}
    for name in DESIGN_NAMES:
        _cold_cache()
        cpu = time.process_time()
        result = simulate(SimulationPlan(spec, scenarios, (name,), n_trials=n_trials, seed=seed, priors=priors))
        cpu = time.process_time() - cpu
        engine[name] = result
        rate = total / result.elapsed_seconds
        out["per_design"][name] = rate
        decisions = result.trials["n_decisions"].mean()
        print(f"  {name:<10} serial: {result.elapsed_seconds:6.1f} s ({cpu:5.1f} s CPU), {rate:6.0f} trials/s, "
              f"{decisions:4.1f} decisions per trial")

    plan = SimulationPlan(spec, scenarios, DESIGN_NAMES, n_trials=n_trials, seed=seed, priors=priors)
    _cold_cache()
    cpu = time.process_time()
    serial = simulate(plan)
    cpu = time.process_time() - cpu
    parallel = simulate(plan, workers=2)  # fresh worker processes: their caches start empty too
    identical = serial.trials.equals(parallel.trials)
    separate = sum(engine[name].elapsed_seconds for name in DESIGN_NAMES)
    out["all_serial"] = 5 * total / serial.elapsed_seconds
    out["all_parallel"] = 5 * total / parallel.elapsed_seconds
    out["speedup"] = serial.elapsed_seconds / parallel.elapsed_seconds
    out["identical"] = identical
    print(f"  all five designs in one plan ({5 * total} design-trials): serial {serial.elapsed_seconds:.1f} s "
          f"({cpu:.1f} s CPU, {out['all_serial']:.0f} trials/s; the five runs apart took {separate:.1f} s); workers=2 "
          f"{parallel.elapsed_seconds:.1f} s ({out['all_parallel']:.0f} trials/s): x{out['speedup']:.2f}; "
          f"same trials: {'yes' if identical else 'NO'}")

    # the general engine against the vectorised reference simulators, on the same latent patients
    trial_spec = plan.trial_spec  # the spec with the scenario file's [simulation] changes
    latent = _latent_patients(plan, trial_spec)
    max_patients = max_patients_of(trial_spec)
    group = trial_spec.escalation.group_size
    settings = trial_spec.decision.boin
    boundaries = boin_boundaries(settings.target, max_patients=max(max_patients, 100), p_saf=settings.p_saf,
                                 p_tox=settings.p_tox, cutoff_eliminate=settings.cutoff_eliminate)
    uniforms = [np.concatenate([patients.toxicity for _, patients in chunks]) for chunks in latent]
    truths = [scenario.p_dlt(trial_spec) for scenario in scenarios.scenarios]
    start = trial_spec.dosing.starting_level - 1
    runners = {
        "boin": lambda u, p: simulate_boin(u, p, boundaries=boundaries, cohort_size=group,
                                           n_cohorts=max_patients // group, start_level=start),
        "3+3": lambda u, p: simulate_three_plus_three(u, p, max_patients=max_patients),
    }
    out["vectorised"] = {}
    for name, run in runners.items():
        engine_seconds, engine_selected = _general_engine(trial_spec, name, plan, latent)
        times = []
        for _ in range(5):
            started = time.perf_counter()
            results = [run(u, p) for u, p in zip(uniforms, truths, strict=True)]
            times.append(time.perf_counter() - started)
        best = min(times)
        selected = np.concatenate([r.selected_level for r in results])
        same = float(np.mean(selected == engine_selected))
        ratio = engine_seconds / best
        out["vectorised"][name] = (total / engine_seconds, total / best, ratio, same)
        print(f"  {name:<4} general engine (a decide() per trial and step) {engine_seconds:5.1f} s, "
              f"{total / engine_seconds:5.0f} trials/s; vectorised (simulation.rule_based) {best * 1e3:5.1f} ms, "
              f"{total / best:7.0f} trials/s: {ratio:.0f}x; same selected level in {same:.1%} of trials")
    return out


# ---- 2. exact posterior vs NUTS --------------------------------------------------------------------


def decision_points(spec, count: int, rng: np.random.Generator) -> list[tuple[np.ndarray, np.ndarray]]:
    """Distinct (n, y) per level: n in {0, 3, 6, 9}, at most max_patients in all, every y <= n; ``count`` of them."""
    levels = len(spec.dosing.levels)
    cap = int(spec.escalation.max_patients)
    points = []
    for n in itertools.product(PATIENTS_PER_LEVEL, repeat=levels):
        if sum(n) > cap:
            continue
        for y in itertools.product(*(range(k + 1) for k in n)):
            points.append((np.array(n), np.array(y)))
    if count < len(points):
        keep = np.sort(rng.choice(len(points), size=count, replace=False))
        points = [points[i] for i in keep]
    return points


def current_level_index(n: np.ndarray) -> int | None:
    given = np.flatnonzero(n)
    return int(given[-1]) if given.size else None


def blrm_model(spec):
    """The single-study BLRM: logit P(DLT at d) = log a + exp(log b) log(d / d_ref), counts as pm.Data."""
    import pymc as pm

    prior = spec.models.blrm.prior
    if prior.correlation != 0.0:
        raise ValueError("this benchmark's PyMC model assumes independent priors on log a and log b")
    doses = np.asarray(spec.dosing.levels, dtype=float)
    log_dose = np.log(doses / spec.dosing.reference_dose)
    with pm.Model(coords={"dose": doses}) as model:
        n = pm.Data("n", np.zeros(doses.size, dtype=np.int64), dims="dose")
        y = pm.Data("y", np.zeros(doses.size, dtype=np.int64), dims="dose")
        log_a = pm.Normal("log_a", prior.mean_log_a, prior.sd_log_a)
        log_b = pm.Normal("log_b", prior.mean_log_b, prior.sd_log_b)
        logit_p = log_a + pm.math.exp(log_b) * log_dose
        pm.Deterministic("p_dlt", pm.math.invlogit(logit_p), dims="dose")
        pm.Binomial("dlt", n=n, logit_p=logit_p, observed=y, dims="dose")
    return model


def compare_routes(model, compiled, settings, points, seeds) -> dict[str, float]:
    """Seconds per call (after a first, compiling call) of three ways to re-sample the model on new counts."""
    import nutpie
    import pymc as pm

    from lupusbayes.fitting.quiet import quiet_pymc

    cores = min(settings.chains, 2)
    routes = {}

    def nutpie_once(n, y, seed):
        nutpie.sample(compiled.with_data(n=n, y=y), draws=settings.draws, tune=settings.tune, chains=settings.chains,
                      cores=cores, seed=seed, progress_bar=False, target_accept=settings.target_accept,
                      save_warmup=False)

    def pymc_once(sampler):
        def run(n, y, seed):
            with model, quiet_pymc():
                pm.set_data({"n": n, "y": y})
                pm.sample(draws=settings.draws, tune=settings.tune, chains=settings.chains, cores=cores,
                          random_seed=seed, nuts_sampler=sampler, target_accept=settings.target_accept, quiet=True,
                          progressbar=False, compute_convergence_checks=False)
        return run

    for label, run in (("nutpie, compiled once + with_data", nutpie_once),
                       ("pm.set_data + pm.sample (PyMC NUTS)", pymc_once("pymc")),
                       ("pm.set_data + pm.sample(nuts_sampler='nutpie')", pymc_once("nutpie"))):
        first_started = time.perf_counter()
        run(*points[0], seeds[0])
        first = time.perf_counter() - first_started
        times = []
        for (n, y), seed in zip(points[1:], seeds[1:], strict=True):
            started = time.perf_counter()
            run(n, y, seed)
            times.append(time.perf_counter() - started)
        routes[label] = statistics.median(times)
        print(f"    {label:<48} first call {first:5.1f} s, then {routes[label]:5.2f} s per call "
              f"(median of {len(times)})")
    return routes


def nuts_posterior(compiled, settings, n, y, seed: int, *, draws: int | None = None):
    """NUTS on new counts with the compiled model: a DrawsPosterior of P(DLT) per dose (chains kept), and the tree."""
    import nutpie

    tree = nutpie.sample(compiled.with_data(n=n, y=y), draws=draws or settings.draws, tune=settings.tune,
                         chains=settings.chains, cores=min(settings.chains, 2), seed=seed, progress_bar=False,
                         target_accept=settings.target_accept, save_warmup=False)
    return draws_from_dose_response(tree["posterior"].to_dataset()[["p_dlt"]], source="NUTS (benchmark)"), tree


def counts_text(n, y) -> str:
    """``DLTs/patients 0/3 1/3 0/0`` (level 1 first)."""
    return "DLTs/patients " + " ".join(f"{int(b)}/{int(a)}" for a, b in zip(n, y, strict=True))


def ewoc_check(recommendation, level: int):
    verdict = next(v for v in recommendation.verdicts if v.rule == "EWOC")
    return next(c for c in verdict.checks if c.level == level)


def outcome(recommendation) -> tuple:
    selected = recommendation.selection.level_index if recommendation.selection is not None else None
    return recommendation.action, recommendation.next_level_index, selected


def describe(recommendation) -> str:
    action, level, selected = outcome(recommendation)
    if action == "stop":
        return f"stop, select {'none' if selected is None else f'level {selected + 1}'}"
    return f"{action} to level {level + 1}"


def exact_vs_nuts(spec, n_points: int, seed: int, *, compare: bool) -> dict:
    import nutpie

    from lupusbayes.fitting.quiet import quiet_pymc

    rng = np.random.default_rng(seed)
    design = design_for(spec, "blrm_ewoc")
    settings = spec.fitting
    limit = spec.decision.max_overdose_probability
    close_k = spec.decision.close_call_mcse
    intervals = spec.dlt.intervals
    threshold = intervals.bounds[intervals.overdose_index][0]
    possible = len(decision_points(spec, 10**9, rng))
    points = decision_points(spec, n_points, rng)
    seeds = [int(s) for s in rng.integers(0, 2**31 - 1, size=len(points))]
    states = [state_from_counts(spec, n, y, current_level_index=current_level_index(n)) for n, y in points]
    print(f"\n2. Exact posterior vs NUTS, design blrm_ewoc: {len(points)} DLT-count states (n per level in "
          f"{{{', '.join(map(str, PATIENTS_PER_LEVEL))}}}, <= {spec.escalation.max_patients} in all; {possible} such "
          f"states); EWOC: P(P(DLT) >= {threshold:g}) < {limit:g}")

    # exact, one at a time (a new bank: every state computed afresh), then in one batch
    bank = PosteriorBank.for_spec(spec)
    exact, exact_times = [], []
    for (n, y), state in zip(points, states, strict=True):
        started = time.perf_counter()
        posterior = bank.toxicity.get(n, y)
        recommendation = decide(DecisionContext(spec, state, toxicity=posterior), design)
        exact_times.append(time.perf_counter() - started)
        exact.append((posterior, recommendation))
    one_at_a_time = statistics.median(exact_times)
    bank = PosteriorBank.for_spec(spec)
    started = time.perf_counter()
    bank.toxicity.prepare(bank.toxicity.key(n, y) for n, y in points)
    for (n, y), state in zip(points, states, strict=True):
        decide(DecisionContext(spec, state, toxicity=bank.toxicity.get(n, y)), design)
    batched = (time.perf_counter() - started) / len(points)
    print(f"  exact (quadrature, PosteriorBank): {one_at_a_time * 1e3:.2f} ms per decision one at a time (median; "
          f"mean {statistics.mean(exact_times) * 1e3:.2f} ms, slowest {max(exact_times) * 1e3:.0f} ms; posterior + "
          f"decide), {batched * 1e3:.2f} ms each with the posteriors batched")

    # the quadrature's own checks (mode found, grid not truncated), at these points and at every count state
    # a 9-patient AXA-NK02 trial can reach, for the DLT and the response model
    reference, doses = spec.dosing.levels, spec.dosing.levels
    unresolved = [counts_text(n, y) for n, y in points
                  if not blrm_exact_posterior(doses, n, y, prior=spec.models.blrm.prior,
                                              reference_dose=spec.dosing.reference_dose).resolved.all()]
    every = np.array([(*n, *y) for n in itertools.product(range(10), repeat=3) if sum(n) <= 9
                      for y in itertools.product(*(range(count + 1) for count in n))], dtype=float)
    failing = {}
    for label, prior in (("DLT", spec.models.blrm.prior), ("response", spec.models.response.prior)):
        posterior = blrm_exact_posterior(doses, every[:, :3], every[:, 3:], prior=prior,
                                         reference_dose=spec.dosing.reference_dose)
        failing[label] = int((~posterior.resolved).sum())
    print(f"  exact posteriors failing their own checks (mode not found or grid truncated, default grid): "
          f"{len(unresolved)} of {len(points)} points" + (f": {'; '.join(unresolved)}" if unresolved else "")
          + f"; of all {len(every)} reachable count states: DLT model {failing['DLT']}, response model "
          f"{failing['response']}")
    stuck = unresolved
    del reference

    with quiet_pymc():
        started = time.perf_counter()
        model = blrm_model(spec)
        compiled = nutpie.compile_pymc_model(model)
        compile_seconds = time.perf_counter() - started
    print(f"  NUTS: {settings.chains} chains x {settings.draws} draws (+ {settings.tune} tune), target_accept "
          f"{settings.target_accept:g}; model built and compiled by nutpie (numba) once: {compile_seconds:.1f} s")
    routes = None
    if compare:
        print("  NUTS routes, re-sampling on new counts (first states):")
        routes = compare_routes(model, compiled, settings, points[:4], seeds[:4])
        best = min(routes, key=routes.get)
        print(f"    fastest: {best}; used below")
        if not best.startswith("nutpie"):
            print("    (note: the loop below uses the nutpie route regardless)")

    from arviz_stats.base import array_stats

    nuts, nuts_times, divergences, worst_rhat, least_ess = [], [], 0, 0.0, np.inf
    for (n, y), state, seed in zip(points, states, seeds, strict=True):
        started = time.perf_counter()
        posterior, tree = nuts_posterior(compiled, settings, n, y, seed)
        recommendation = decide(DecisionContext(spec, state, toxicity=posterior), design)
        nuts_times.append(time.perf_counter() - started)
        nuts.append((posterior, recommendation))
        divergences += int(tree["sample_stats"]["diverging"].sum())
        draws = tree["posterior"]["p_dlt"].transpose("chain", "draw", "dose").to_numpy()
        worst_rhat = max(worst_rhat, float(np.nanmax(array_stats.rhat(draws, chain_axis=0, draw_axis=1))))
        least_ess = min(least_ess, float(np.nanmin(array_stats.ess(draws, chain_axis=0, draw_axis=1))))
    per_nuts = statistics.median(nuts_times)
    ratio = per_nuts / one_at_a_time
    print(f"  NUTS (nutpie, compiled once): {per_nuts:.2f} s per decision (median; sample + decide), "
          f"{sum(nuts_times):.0f} s for {len(points)}; exact is {ratio:,.0f}x faster one at a time, "
          f"{per_nuts / batched:,.0f}x batched")
    print(f"  NUTS diagnostics over all fits (P(DLT) per dose): {divergences} divergences, largest R-hat "
          f"{worst_rhat:.3f}, smallest bulk ESS {least_ess:.0f}")

    # agreement
    agree = [outcome(e[1]) == outcome(m[1]) for e, m in zip(exact, nuts, strict=True)]
    n_agree = sum(agree)
    print(f"  same recommendation (action, next level, selection at a stop): {n_agree} of {len(points)} "
          f"({n_agree / len(points):.1%})")
    disagreements, not_close = [], 0
    ewoc_differs, ewoc_close, ewoc_rows = 0, 0, []
    for index, ((n, y), (ex_post, ex_rec), (mc_post, mc_rec)) in enumerate(zip(points, exact, nuts, strict=True)):
        differing_levels = [level for level in range(len(n))
                            if ewoc_check(ex_rec, level).passed != ewoc_check(mc_rec, level).passed]
        for level in differing_levels:
            ewoc_differs += 1
            ex_est, mc_est = ewoc_check(ex_rec, level).estimate, ewoc_check(mc_rec, level).estimate
            distance = mc_est.distance_in_errors(limit)
            ewoc_close += distance < close_k
            ewoc_rows.append(f"{counts_text(n, y)}, level {level + 1}: exact {ex_est.value:.4f}, NUTS "
                             f"{mc_est.value:.4f} +/- {mc_est.error:.4f}, {distance:.1f} MCSE from {limit:g}"
                             + ("" if agree[index] else " (the recommendations differ)"))
        if agree[index]:
            continue
        rows = []
        close = bool(differing_levels)
        for level in differing_levels:
            ex_est, mc_est = ewoc_check(ex_rec, level).estimate, ewoc_check(mc_rec, level).estimate
            distance = mc_est.distance_in_errors(limit)
            close &= distance < close_k
            rows.append(f"level {level + 1}: exact {ex_est.value:.4f}, NUTS {mc_est.value:.4f} +/- {mc_est.error:.4f} "
                        f"(MCSE), {distance:.1f} MCSE from {limit:g}")
        not_close += not close
        disagreements.append((n, y, ex_rec, mc_rec, rows, close))
    for n, y, ex_rec, mc_rec, rows, close in disagreements:
        print(f"    {counts_text(n, y)}: exact {describe(ex_rec)}, NUTS {describe(mc_rec)}; "
              + ("; ".join(rows) or "EWOC verdicts agree at every level")
              + ("  [close call]" if close else f"  [NOT a close call (>= {close_k:g} MCSE)]"))
    print(f"  disagreements: {len(disagreements)}, of which {len(disagreements) - not_close} close calls "
          f"(< {close_k:g} MCSE) and {not_close} not; EWOC verdicts differ at {ewoc_differs} (state, level) pairs, "
          f"{ewoc_close} of them close calls")
    for row in ewoc_rows:
        print(f"    EWOC verdict differs: {row}")

    # largest differences against the MCSE, over every (state, level)
    out = {"n_points": len(points), "exact_ms": one_at_a_time * 1e3, "exact_batched_ms": batched * 1e3,
           "nuts_s": per_nuts, "compile_s": compile_seconds, "ratio": ratio, "agree": n_agree,
           "disagreements": len(disagreements), "not_close": not_close, "routes": routes, "stuck": len(stuck)}
    quantities = {
        "prob": (f"P(P(DLT) >= {threshold:g})", lambda post: post.probability_at_least("p_dlt", threshold)),
        "mean": ("posterior mean P(DLT)", lambda post: post.mean("p_dlt")),
    }
    suspects: dict[int, float] = {}  # state index -> largest |difference| / MCSE
    for key, (label, getter) in quantities.items():
        difference, errors, z, where = [], [], [], []
        for index, ((ex_post, _), (mc_post, _)) in enumerate(zip(exact, nuts, strict=True)):
            for level, (a, b) in enumerate(zip(getter(ex_post), getter(mc_post), strict=True)):
                difference.append(abs(a.value - b.value))
                errors.append(b.error)
                z.append(abs(a.value - b.value) / b.error if b.error_kind == "mcse" and b.error > 0 else 0.0)
                where.append((index, level, a, b))
                if z[-1] > OUTLIER_MCSE:
                    suspects[index] = max(suspects.get(index, 0.0), z[-1])
        worst, worst_z = int(np.argmax(difference)), int(np.argmax(z))
        index, level, a, b = where[worst]
        beyond = sum(value > OUTLIER_MCSE for value in z)
        print(f"  {label}: largest |exact - NUTS| {difference[worst]:.4f} ({counts_text(*points[index])}, level "
              f"{level + 1}: exact {a.value:.4f}, NUTS {b.value:.4f} +/- {b.error:.4f}); MCSE median "
              f"{np.median(errors):.4f}, largest {np.max(errors):.4f}; largest |difference| / MCSE {z[worst_z]:.1f} "
              f"({counts_text(*points[where[worst_z][0]])}, level {where[worst_z][1] + 1}); {beyond} of {len(z)} "
              f"beyond {OUTLIER_MCSE:g} MCSE")
        out[key] = (difference[worst], float(np.median(errors)), z[worst_z], beyond, len(z))

    # the states with a difference beyond OUTLIER_MCSE, or a disagreement that is not a close call: who is right?
    for n, y, _, _, _, close in disagreements:
        if not close:
            index = next(i for i, (m, d) in enumerate(points) if np.array_equal(m, n) and np.array_equal(d, y))
            suspects[index] = max(suspects.get(index, 0.0), np.inf)
    checked = sorted(suspects, key=suspects.get, reverse=True)[:CONFIRM_STATES]
    confirmed = []
    if checked:
        print(f"  checked again with {CONFIRM_FACTOR}x the draws ({settings.chains} x "
              f"{CONFIRM_FACTOR * settings.draws}): the {len(checked)} state(s) farthest from NUTS, of {len(suspects)} "
              f"beyond {OUTLIER_MCSE:g} MCSE or disagreeing on more than a close call; 'OFF' marks an exact value "
              f"more than {QUADRATURE_ERROR:g} (its stated error) + 3 MCSE from the long run")
    for index in checked:
        n, y = points[index]
        long_run, _ = nuts_posterior(compiled, settings, n, y, seeds[index] + 1, draws=CONFIRM_FACTOR * settings.draws)
        recommendation = decide(DecisionContext(spec, states[index], toxicity=long_run), design)
        print(f"    {counts_text(n, y)}: exact {describe(exact[index][1])}, NUTS {describe(nuts[index][1])}, "
              f"long NUTS {describe(recommendation)}")
        for key, (label, getter) in quantities.items():
            for level, (a, b) in enumerate(zip(getter(exact[index][0]), getter(long_run), strict=True)):
                gap = abs(a.value - b.value)
                off = gap > QUADRATURE_ERROR + 3 * b.error
                if off:
                    confirmed.append((gap, key, counts_text(n, y), level))
                print(f"      {label:<22} level {level + 1}: exact {a.value:.4f}, long NUTS {b.text(4)}, "
                      f"|difference| {gap:.4f}" + ("  OFF" if off else ""))
    out["checked"] = len(checked)
    out["confirmed"] = confirmed
    return out


FALLBACK_STATES = 20


def fallback_cost(spec, seed: int) -> dict:
    """The simulator's MCMC fallback on states the quadrature resolves, so the two can be compared."""
    from lupusbayes.fitting.counts import CountModelSampler

    rng = np.random.default_rng(seed + 2)
    points = decision_points(spec, FALLBACK_STATES, rng)
    bank = PosteriorBank.for_spec(spec)
    thresholds = bank.toxicity.thresholds
    sampler = CountModelSampler(spec.dosing.levels, spec.dosing.reference_dose, spec.models.blrm.prior, spec.fitting)
    times, worst, passed = [], 0.0, 0
    for number, (n, y) in enumerate(points):
        started = time.perf_counter()
        sample = sampler.sample(n, y, thresholds, seed=seed + number)
        times.append(time.perf_counter() - started)
        passed += sample.passed
        exact = bank.toxicity.get(n, y)
        gaps = [np.abs(sample.means - exact.means) / (sample.mean_errors + QUADRATURE_ERROR)]
        gaps += [np.abs(sample.at_least[t] - exact.at_least[t]) / (sample.at_least_errors[t] + QUADRATURE_ERROR)
                 for t in thresholds]
        worst = max(worst, float(np.max(gaps)))
    result = {"first_s": times[0], "per_posterior_s": statistics.median(times[1:]), "passed": passed,
              "states": len(points), "worst": worst}
    print(f"\n3. MCMC fallback (NUTS on counts, the spec's [fitting] settings), {len(points)} states: first call "
          f"(compile + sample) {result['first_s']:.1f} s, then {result['per_posterior_s']:.2f} s per posterior "
          f"(median); gate passed {passed} of {len(points)}; largest |NUTS - exact| / (MCSE + {QUADRATURE_ERROR:g}) "
          f"{worst:.1f}")
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--trials", type=int, default=None, help="trials per scenario (default 1000; 200 with --quick)")
    parser.add_argument("--points", type=int, default=None, help="decision states (default 200; 20 with --quick)")
    parser.add_argument("--quick", action="store_true", help="a smoke test: 20 points, 200 trials, no route comparison")
    args = parser.parse_args(argv)
    n_trials = args.trials or (200 if args.quick else 1000)
    n_points = args.points or (20 if args.quick else 200)

    spec = lb.load_spec("axa_nk02")
    scenarios = load_scenarios("axa_nk02", spec)
    print(f"load average (1, 5, 15 min): {', '.join(f'{v:.1f}' for v in os.getloadavg())} on {os.cpu_count()} cores "
          "(wall times below include other users' load)\n")
    started = time.perf_counter()
    started = time.perf_counter()
    priors = simulation_priors(spec, [lb.load_kn5601()], seed=args.seed)  # the Bayesian designs borrow from KN5601
    print(f"0. The decision priors from the KN5601 co-data (two MCMC fits): {time.perf_counter() - started:.1f} s; "
          f"checks {priors.checks}")
    speed = throughput(spec, scenarios, n_trials, args.seed, priors)
    accuracy = exact_vs_nuts(spec, n_points, args.seed, compare=not args.quick)
    fallback = fallback_cost(spec, args.seed)

    print(f"\nSummary (seed {args.seed}, {n_trials} trials x {len(scenarios.scenarios)} scenarios, {n_points} states; "
          f"{time.perf_counter() - started:.0f} s in all):")
    print("  trials/s, serial: " + ", ".join(f"{name} {rate:.0f}" for name, rate in speed["per_design"].items()))
    print(f"  all five designs: {speed['all_serial']:.0f} design-trials/s serial, {speed['all_parallel']:.0f} with "
          f"workers=2 (x{speed['speedup']:.2f}; identical results: {'yes' if speed['identical'] else 'NO'})")
    print("  general engine vs vectorised reference: " + "; ".join(
        f"{name} {engine:.0f} vs {rate:.0f} trials/s ({ratio:.0f}x; same selection {same:.1%})"
        for name, (engine, rate, ratio, same) in speed["vectorised"].items()))
    print(f"  per decision: exact {accuracy['exact_ms']:.2f} ms ({accuracy['exact_batched_ms']:.2f} ms batched), NUTS "
          f"{accuracy['nuts_s']:.2f} s (+ {accuracy['compile_s']:.0f} s compile once): {accuracy['ratio']:,.0f}x")
    print(f"  recommendations agree in {accuracy['agree']} of {accuracy['n_points']} states; "
          f"{accuracy['disagreements']} disagreements, {accuracy['not_close']} not close calls")
    for key, label in (("prob", "P(P(DLT) >= 0.2)"), ("mean", "mean P(DLT)")):
        difference, mcse, z, beyond, pairs = accuracy[key]
        print(f"  {label}: largest |exact - NUTS| {difference:.4f} (median MCSE {mcse:.4f}); largest {z:.1f} MCSE; "
              f"{beyond} of {pairs} (state, level) pairs beyond {OUTLIER_MCSE:g} MCSE")
    if accuracy["confirmed"]:
        gap, key, where, level = max(accuracy["confirmed"])
        label = "P(P(DLT) >= 0.2)" if key == "prob" else "mean P(DLT)"
        states = len({row[2] for row in accuracy["confirmed"]})
        print(f"  exact values off by more than {QUADRATURE_ERROR:g} + 3 MCSE of a {CONFIRM_FACTOR}x longer NUTS run: "
              f"{len(accuracy['confirmed'])} (state, level, quantity) in {states} of the {accuracy['checked']} "
              f"state(s) checked; the largest {gap:.4f} ({label}, {where}, level {level + 1})")
    else:
        print(f"  exact values off by more than {QUADRATURE_ERROR:g} + 3 MCSE of a {CONFIRM_FACTOR}x longer NUTS run: "
              f"none in the {accuracy['checked']} state(s) checked")
    print(f"  exact posteriors failing their own checks: {accuracy['stuck']} of {accuracy['n_points']} states")
    print(f"  MCMC fallback: {fallback['first_s']:.1f} s first (compile), {fallback['per_posterior_s']:.2f} s per "
          f"posterior; gate passed {fallback['passed']} of {fallback['states']}; largest |NUTS - exact| "
          f"{fallback['worst']:.1f} x (MCSE + {QUADRATURE_ERROR:g})")
    print(f"  load average (1, 5, 15 min) at the end: {', '.join(f'{v:.1f}' for v in os.getloadavg())} "
          f"on {os.cpu_count()} cores")
    return 0


if __name__ == "__main__":
    sys.exit(main())
