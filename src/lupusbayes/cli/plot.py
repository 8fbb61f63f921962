"""``lupusbayes plot``: draw a saved fit (and, with the trial's state, its recommendation)."""

from __future__ import annotations

import argparse
from pathlib import Path

from lupusbayes._io import check_output_path, staged_directory
from lupusbayes.cli.commands import COMMANDS
from lupusbayes.cli.decide import as_of_date
from lupusbayes.cli.output import EXIT_OK, add_output_options

__all__ = ["add_commands"]

_DECISION_KINDS = ("recommendation", "transitions")


def _decision(fit, args: argparse.Namespace):
    """The recommendation and transition table from the fit (toxicity), the state and an
    optional SLEDAI-2K fit, as ``lupusbayes decide --fit`` makes them (the same checks)."""
    from lupusbayes.cohort import load_cohort
    from lupusbayes.decisions import load_state
    from lupusbayes.fitting import load_fit
    from lupusbayes.report.plots import PlotError
    from lupusbayes.workflow import decide_from_inputs, decision_inputs

    spec = fit.model.spec
    if fit.model.kind == "sledai":
        raise PlotError(f"{args.fit}: a recommendation is drawn from a toxicity fit; give the toxicity fit as FIT "
                        "and the SLEDAI-2K fit as --efficacy-fit")
    state = load_state(args.state, spec, as_of=args.as_of)
    sledai = load_fit(args.efficacy_fit, spec=spec) if args.efficacy_fit else None
    inputs = decision_inputs(spec, state, codata=[load_cohort(path) for path in args.codata or []], toxicity_fit=fit,
                             efficacy_fit=sledai, toxicity_fit_source=str(args.fit),
                             efficacy_fit_source=str(args.efficacy_fit), error=PlotError)
    decision = decide_from_inputs(inputs)
    return decision.recommendation, decision.transitions


def _sources(fit, kinds: list[str], args: argparse.Namespace) -> dict[str, object]:
    """What each kind is drawn from: the fit, or the recommendation / transitions."""
    from lupusbayes.report.plots import PlotError

    wanted = [kind for kind in kinds if kind in _DECISION_KINDS]
    if wanted and not args.state:
        raise PlotError(f"'{wanted[0]}' needs the trial's state: add --state FILE (and --as-of DATE for "
                        "infusion dates)")
    sources: dict[str, object] = {kind: fit for kind in kinds}
    if wanted:
        recommendation, transitions = _decision(fit, args)
        sources.update({"recommendation": recommendation, "transitions": transitions})
    return sources


def _draw(kind: str, source, spec, out: Path, *, overwrite: bool) -> None:
    """Make one plot, write it, and free its figure (``--kind all`` makes many)."""
    from matplotlib import pyplot

    from lupusbayes.report.plots import figure_of, make_plot, save_plot

    plot = make_plot(kind, source, spec=spec)
    try:
        save_plot(plot, out, overwrite=overwrite)
    finally:
        pyplot.close(figure_of(plot))


def _plot(args: argparse.Namespace) -> int:
    import matplotlib

    matplotlib.use("Agg")  # files only, never a window
    from lupusbayes.fitting import load_fit
    from lupusbayes.report.plots import KINDS, PlotError, plot_format, plot_kinds_for

    if args.kind is None and not args.list:
        raise PlotError("say what to draw: --kind KIND (or --kind all), or --list for the kinds of this fit")
    if args.kind is not None and args.kind != "all" and args.kind not in KINDS:
        raise PlotError(f"unknown plot kind '{args.kind}'; the kinds are: {', '.join(KINDS)} (or all)")
    if args.kind is not None and args.out is None:
        raise PlotError("give --out: a file (.png, .svg, .pdf) for one kind, a folder for --kind all")
    if args.kind is not None and args.kind != "all":  # the output is checked before any work
        plot_format(args.out)
        out = check_output_path(args.out, overwrite=args.overwrite, mkdir=args.mkdir)
    elif args.kind == "all":
        check_output_path(args.out, overwrite=args.overwrite, folder=True, mkdir=args.mkdir)
    fit = load_fit(args.fit)
    applicable = plot_kinds_for(fit) + (list(_DECISION_KINDS) if args.state else [])
    if args.list:
        for kind in plot_kinds_for(fit) + list(_DECISION_KINDS):
            print(f"{kind:26s} {KINDS[kind].needs:15s} {KINDS[kind].title}")
        return EXIT_OK
    spec = fit.model.spec
    if args.kind != "all":
        sources = _sources(fit, [args.kind], args)
        _draw(args.kind, sources[args.kind], spec, out, overwrite=args.overwrite)
        print(f"written: {out}")
        return EXIT_OK
    sources = _sources(fit, applicable, args)
    with staged_directory(Path(args.out), overwrite=args.overwrite, mkdir=args.mkdir) as folder:
        for kind in applicable:
            _draw(kind, sources[kind], spec, folder / f"{kind}.{args.format}", overwrite=False)
    for kind in applicable:
        print(f"written: {Path(args.out) / f'{kind}.{args.format}'}")
    return EXIT_OK


def add_commands(commands) -> None:
    from lupusbayes.report.plots import KINDS, PLOT_FORMATS

    parser = commands.add_parser(
        "plot", help=COMMANDS["plot"][1],
        description="Draw a saved fit (from 'lupusbayes fit'): one kind into a file (.png, .svg or "
        ".pdf by its extension), or every kind that applies with --kind all into a folder. The recommendation and "
        "the transition grid need the trial's state (--state, --as-of) and use FIT as the toxicity posterior "
        "(and --efficacy-fit as the SLEDAI-2K one). Kinds: " + ", ".join(KINDS) + ".",
    )
    parser.add_argument("fit", help="a saved fit (.nc)")
    parser.add_argument("--kind", help="what to draw (a kind, or 'all'); --list shows the kinds of this fit")
    parser.add_argument("--out", help="output file for one kind, output folder for --kind all")
    parser.add_argument("--format", choices=PLOT_FORMATS, default="png", help="file format with --kind all")
    parser.add_argument("--list", action="store_true", help="list the kinds this fit can draw, and exit")
    parser.add_argument("--state", help="the trial's state (as for 'decide --state'), for the decision kinds")
    parser.add_argument("--as-of", type=as_of_date, dest="as_of", help="data cut-off date (YYYY-MM-DD), for the state")
    parser.add_argument("--efficacy-fit", dest="efficacy_fit", help="a saved SLEDAI-2K fit of the state's data")
    parser.add_argument("--codata", action="append", metavar="FILE",
                        help="the co-data cohort(s) the fits borrowed from (repeatable; 'kn5601' is the shipped cohort)")
    add_output_options(parser, progress=False)
    parser.set_defaults(handler=_plot)
