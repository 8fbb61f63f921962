"""Every command, the module that defines it and its one-line help: what ``lupusbayes --help``
lists, known without importing the commands (which import the models, plots and simulator)."""

from __future__ import annotations

__all__ = ["COMMANDS"]

#: command -> (module of :mod:`lupusbayes.cli` defining it, one-line help), in the order ``--help`` lists them.
COMMANDS: dict[str, tuple[str, str]] = {
    "data": ("data", "show, check or screen a cohort table"),
    "spec": ("spec", "validate a trial spec"),
    "fit": ("fitting", "fit a model and write one netCDF file"),
    "prior": ("fitting", "what a model's prior implies per dose (before any data, or for given data), its effective "
              "sample size, and which levels can be reached"),
    "check": ("fitting", "diagnostics and predictive checks of a saved fit"),
    "construct-prior": ("construct_prior", "construct a DLT prior (minimal informative, or a robust mixture of the "
                        "co-data MAP prior) as the [model.blrm.prior] block, with what it implies per dose and its ESS"),
    "decide": ("decide", "recommend the next dose group: escalate / hold / de-escalate / stop, with every rule"),
    "report": ("report", "the SRC report: one self-contained HTML file (recommendation, data, models, checks, figures)"),
    "plot": ("plot", "draw a saved fit: diagnostics, dose-response, SLEDAI-2K, the recommendation"),
    "simulate": ("simulate", "operating characteristics: simulate thousands of trials of each design under scenarios"),
    "calibrate": ("calibrate", "calibrate a design: operating characteristics over a grid of its parameters, paired"),
    "demo": ("demo", "run the whole pipeline on the shipped KN5601 data"),
    "cache": ("cache", "list or clear the fits kept between commands (decide, report, simulate)"),
}
