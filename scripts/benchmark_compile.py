"""Compile time of a fit's nutpie model: the package's compile against nutpie's own, in fresh processes.

A fresh ``lupusbayes fit`` spends most of its time compiling the model. The package builds
nutpie's model with its own C callbacks (``lupusbayes.fitting.nutpie_numba``); this script times
that against ``nutpie.compile_pymc_model`` on the same graph, each in a fresh process (so nothing
compiled in-process is reused; the disk caches of PyTensor and Numba are warm, as on a user's
machine after the first fit), alternating the two so that machine load hits both alike. Then, in
one process, it samples both compiled models with the same seed and checks the draws are equal.

    python scripts/benchmark_compile.py [--repeats 5] [--models crs,sledai,blrm]

Compare the ratio, not the seconds: this machine's speed varies by 30% from hour to hour.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import textwrap

CHILD = textwrap.dedent(
    """
    import json, sys, time
    import numpy as np
    from lupusbayes.fitting.cache import DEFAULT_CACHE, compile_nutpie
    from lupusbayes.spec import load_spec
    from lupusbayes.workflow import fitting_cohort, model_for

    kind, which = sys.argv[1], sys.argv[2]
    spec = load_spec("kn5601")
    model = model_for(kind, spec, fitting_cohort(spec, ["kn5601"], kind))
    graph = DEFAULT_CACHE.get(model).graph

    def nutpies(graph):  # the design set the same numerics (no fastmath) when it was built
        import nutpie
        return nutpie.compile_pymc_model(graph, backend="numba", freeze_model=False)

    compilers = {"package": compile_nutpie, "nutpie": nutpies}
    if which == "both":
        import nutpie
        draws = []
        for name in ("package", "nutpie"):
            compiled = compilers[name](graph).with_data(**model.graph_data())
            tree = nutpie.sample(compiled, draws=500, tune=500, chains=2, seed=5, progress_bar=False)
            draws.append(np.concatenate([tree.posterior[v].values.ravel() for v in sorted(tree.posterior.data_vars)]))
        print(json.dumps({"equal": bool(np.array_equal(*draws)), "values": int(draws[0].size)}))
    else:
        started = time.perf_counter()
        compilers[which](graph)
        print(json.dumps({"seconds": time.perf_counter() - started}))
    """
)


def child(kind: str, which: str) -> dict:
    run = subprocess.run([sys.executable, "-c", CHILD, kind, which], capture_output=True, text=True)
    if run.returncode != 0:
        raise SystemExit(f"{kind} / {which} failed:\n{run.stderr}")
    return json.loads(run.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="fresh processes per compiler and model (default 5)")
    parser.add_argument("--models", default="crs,sledai,blrm", help="KN5601 models (default crs,sledai,blrm)")
    args = parser.parse_args()
    print("KN5601 models, compile of nutpie's model in a fresh process (median over "
          f"{args.repeats}, alternating); then the draws of both, same seed")
    for kind in args.models.split(","):
        child(kind, "package")  # fills the disk caches either compile reads
        seconds: dict[str, list[float]] = {"package": [], "nutpie": []}
        for _ in range(args.repeats):
            for which in seconds:
                seconds[which].append(child(kind, which)["seconds"])
        package, nutpie = (statistics.median(seconds[which]) for which in ("package", "nutpie"))
        same = child(kind, "both")
        print(f"  {kind:7s} package {package:4.1f} s | nutpie.compile_pymc_model {nutpie:4.1f} s | "
              f"saves {nutpie - package:3.1f} s ({nutpie / package:.2f}x) | draws equal: {same['equal']} "
              f"({same['values']} values)")


if __name__ == "__main__":
    main()
