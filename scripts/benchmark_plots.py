"""How long drawing takes: every plot kind and the text report of KN5601's saved fits.

    python scripts/benchmark_plots.py [--fits DIR] [--seed 20251108] [--format png]

Loads the saved KN5601 fits in DIR (CRS model, BLRM, SLEDAI-2K; fitted first, untimed, with
the spec's MCMC settings when a file is missing), then, timed, per fit: load it, write every
kind that applies (``plot_kinds_for``) and its text report; for the CRS fit also the
recommendation and the transition grid (state: the shipped KN5601 cohort, efficacy from the
SLEDAI-2K fit). Then the whole SRC report from the saved CRS and SLEDAI-2K fits, as a user runs
it (``lupusbayes report kn5601 --state kn5601 --fit ... --efficacy-fit ... --out report.html``:
load, decide, transitions, prior predictive, every figure, the HTML file). Prints each step and
the totals against the budget of 20 s.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

BUDGET_SECONDS = 20.0
MODELS = ("crs", "blrm", "sledai")


def _ensure_fits(folder: Path, seed: int) -> dict[str, Path]:
    """The saved fits, made first (not timed) when missing or made with another version of the spec."""
    import lupusbayes as lb

    cohort, spec = lb.load_kn5601(), lb.load_spec("kn5601")

    def usable(path: Path) -> bool:
        try:
            lb.load_fit(path, spec=spec)
        except (OSError, lb.LupusBayesError):
            return False
        return True

    paths = {model: folder / f"kn5601_{model}.nc" for model in MODELS}
    classes = {"crs": lb.CRSModel, "blrm": lb.BLRM, "sledai": lb.SledaiModel}
    for model, path in paths.items():
        if not usable(path):
            print(f"fitting {model} (not timed) ...", flush=True)
            lb.fit(classes[model](cohort, spec), seed=seed).save(path, overwrite=True, mkdir=True)
    return paths


class _Clock:
    def __init__(self) -> None:
        self.total = 0.0

    def time(self, what: str, work):
        started = time.perf_counter()
        result = work()
        seconds = time.perf_counter() - started
        self.total += seconds
        print(f"  {seconds:6.2f} s  {what}", flush=True)
        return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fits", type=Path, default=Path(tempfile.gettempdir()) / "lupusbayes_benchmark_fits")
    parser.add_argument("--seed", type=int, default=20251108)
    parser.add_argument("--format", choices=("png", "svg", "pdf"), default="png")
    args = parser.parse_args(argv)

    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    from lupusbayes.decisions import DecisionContext, decide, draws_from_dose_response, load_state, transition_table
    from lupusbayes.fitting import load_fit
    from lupusbayes.report import plots, text

    paths = _ensure_fits(args.fits, args.seed)
    totals = {}
    with tempfile.TemporaryDirectory() as out:
        for model, path in paths.items():
            print(f"{path.name}:")
            clock = _Clock()
            fit = clock.time("load_fit", lambda path=path: load_fit(path))

            def draw(kind, source, spec=None):
                plot = plots.make_plot(kind, source, spec=spec)
                plots.save_plot(plot, Path(out) / f"{model}_{kind}.{args.format}", overwrite=True)
                pyplot.close(plots.figure_of(plot))

            for kind in plots.plot_kinds_for(fit):
                clock.time(kind, lambda kind=kind: draw(kind, fit))
            clock.time("text report (fit_text)", lambda: text.fit_text(fit))
            if model == "crs":
                spec = fit.model.spec
                settings = spec.decision.efficacy

                def recommend():
                    sledai = load_fit(paths["sledai"])
                    efficacy = draws_from_dose_response(sledai.dose_response, response=settings.response,
                                                        month=settings.month, final_month=settings.final_month)
                    context = DecisionContext(spec, load_state("kn5601", spec),
                                              draws_from_dose_response(fit.dose_response), efficacy)
                    recommendation = decide(context)
                    return context, recommendation, transition_table(context, recommendation=recommendation)

                context, recommendation, transitions = clock.time("decide + transition table", recommend)
                clock.time("recommendation", lambda: draw("recommendation", recommendation, spec))
                clock.time("transitions", lambda: draw("transitions", transitions, spec))
                clock.time("text report (recommendation_text)", lambda: text.recommendation_text(recommendation, spec))
            totals[model] = clock.total
            verdict = "within" if clock.total <= BUDGET_SECONDS else "OVER"
            print(f"  {clock.total:6.2f} s  total for {path.name} ({verdict} the {BUDGET_SECONDS:g} s budget)\n")
        from lupusbayes.cli import main as command_line

        print("the SRC report from the saved fits (lupusbayes report, in this process):")
        clock = _Clock()
        report = Path(out) / "report.html"
        code = clock.time("lupusbayes report kn5601 --state kn5601 --fit ... --efficacy-fit ...", lambda: command_line(
            ["report", "kn5601", "--state", "kn5601", "--fit", str(paths["crs"]), "--efficacy-fit",
             str(paths["sledai"]), "--out", str(report), "--seed", str(args.seed), "--no-progress"]))
        totals["SRC report"] = clock.total
        size = report.stat().st_size / 1e6 if report.exists() else 0.0
        verdict = "FAILED, not timed against" if code != 0 else "within" if clock.total <= BUDGET_SECONDS else "OVER"
        print(f"  {clock.total:6.2f} s  total (exit {code}, {size:.1f} MB; {verdict} the {BUDGET_SECONDS:g} s budget)\n")
    print("all: " + ", ".join(f"{m} {s:.1f} s" for m, s in totals.items()))
    return 0 if code == 0 and all(seconds <= BUDGET_SECONDS for seconds in totals.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
