"""Time to fit both KN5601 models (ordinal CRS and SLEDAI-2K), first and repeated, per sampler.

Each scenario runs in a fresh Python process, so "first fit" includes building and compiling
the model; "repeat" fits new model objects with new seeds in the same process (the compiled
model is reused). With ``--cold`` each process also gets empty PyTensor and Numba caches,
which is what a fresh machine (or CI) pays once.

    python scripts/benchmark_fit.py --seed 20251108 [--cold] [--samplers nutpie pymc]

Targets (2 cores): first fit of both models <= 60 s; repeat <= 5 s. Times vary with machine
load; compare scenarios within one run.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap

CHILD = textwrap.dedent(
    """
    import json, sys, time
    started = time.perf_counter()
    import lupusbayes as lb
    imported = time.perf_counter() - started
    sampler, seed = sys.argv[1], int(sys.argv[2])
    cohort, spec = lb.load_kn5601(), lb.load_spec("kn5601")
    settings = spec.fitting.replace(sampler=sampler)
    out = {"import_s": imported}
    for phase, offset in (("first", 0), ("repeat", 2)):
        for name, build in (("crs", lb.CRSModel), ("sledai", lb.SledaiModel)):
            tick = time.perf_counter()
            result = lb.fit(build(cohort, spec), seed=seed + offset + (name == "sledai"), settings=settings)
            out[f"{phase}_{name}_s"] = time.perf_counter() - tick
            out[f"{phase}_{name}_converged"] = result.converged
            out[f"{phase}_{name}_sampling_s"] = sum(a.seconds for a in result.diagnostics.attempts)
    print(json.dumps(out))
    """
)


def run(sampler: str, seed: int, cold: bool) -> dict:
    env = dict(os.environ)
    with tempfile.TemporaryDirectory() as cache:
        if cold:
            env["PYTENSOR_FLAGS"] = f"compiledir={cache}/pytensor"
            env["NUMBA_CACHE_DIR"] = f"{cache}/numba"
        done = subprocess.run([sys.executable, "-c", CHILD, sampler, str(seed)], capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise SystemExit(f"benchmark child failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--cold", action="store_true", help="empty PyTensor/Numba caches (a fresh machine)")
    parser.add_argument("--samplers", nargs="+", default=["nutpie", "pymc"], choices=["nutpie", "pymc"])
    args = parser.parse_args(argv)

    from lupusbayes.spec import load_spec

    fitting = load_spec("kn5601").fitting
    print(f"KN5601, the spec's settings ({fitting.chains} chains x {fitting.draws} draws, {fitting.tune} tune), "
          f"{'cold' if args.cold else 'warm'} caches, "
          f"{os.cpu_count()} cores\n")
    header = f"{'sampler':8} {'import':>7} {'first CRS':>10} {'first SLEDAI':>13} {'first both':>11} {'repeat CRS':>11} " \
             f"{'repeat SLEDAI':>14} {'repeat both':>12}  gate"
    print(header)
    rows = {}
    for sampler in args.samplers:
        r = run(sampler, args.seed, args.cold)
        rows[sampler] = r
        first = r["first_crs_s"] + r["first_sledai_s"]
        repeat = r["repeat_crs_s"] + r["repeat_sledai_s"]
        gates = all(v for k, v in r.items() if k.endswith("_converged"))
        print(f"{sampler:8} {r['import_s']:6.1f}s {r['first_crs_s']:9.1f}s {r['first_sledai_s']:12.1f}s {first:10.1f}s "
              f"{r['repeat_crs_s']:10.1f}s {r['repeat_sledai_s']:13.1f}s {repeat:11.1f}s  {'passed' if gates else 'FAILED'}")
    print("\ntargets: first (both models) <= 60 s, repeat (both models) <= 5 s")
    for sampler, r in rows.items():
        first = r["first_crs_s"] + r["first_sledai_s"]
        repeat = r["repeat_crs_s"] + r["repeat_sledai_s"]
        print(f"  {sampler}: first {first:.1f} s ({'meets' if first <= 60 else 'misses'} target), "
              f"repeat {repeat:.1f} s ({'meets' if repeat <= 5 else 'misses'} target); "
              f"of the repeat, sampling {r['repeat_crs_sampling_s'] + r['repeat_sledai_sampling_s']:.1f} s")
    if len(rows) == 2:
        ratio = (rows["pymc"]["repeat_crs_s"] + rows["pymc"]["repeat_sledai_s"]) / (
            rows["nutpie"]["repeat_crs_s"] + rows["nutpie"]["repeat_sledai_s"])
        print(f"  repeat-fit ratio pymc / nutpie: {ratio:.1f}x")
    print(json.dumps(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
