"""The fitting layer: NUTS with a convergence gate, predictive checks, LOO, save and load.

* :mod:`~lupusbayes.fitting.sample`: :func:`fit`, the prior, seed streams;
* :mod:`~lupusbayes.fitting.cache`: compiled designs, explicit and bounded;
* :mod:`~lupusbayes.fitting.diagnostics`: R-hat, ESS, divergences, BFMI, the gate, decision MCSE;
* :mod:`~lupusbayes.fitting.result`: :class:`FitResult` and the tables read from it;
* :mod:`~lupusbayes.fitting.comparison`: PSIS-LOO comparison;
* :mod:`~lupusbayes.fitting.fitfile`: one self-describing netCDF file per fit;
* :mod:`~lupusbayes.fitting.calibration`: simulation from a model and SBC.
"""

from lupusbayes.fitting.cache import DEFAULT_CACHE, CompiledDesign, DesignCache
from lupusbayes.fitting.comparison import compare_models
from lupusbayes.fitting.diagnostics import Diagnostics, GateCheck, SamplingAttempt, diagnose
from lupusbayes.fitting.fitfile import FILE_FORMAT_VERSION, load_fit, save_fit
from lupusbayes.fitting.result import FitResult, PriorPredictive
from lupusbayes.fitting.sample import fit, prior_predictive, sample_prior

__all__ = [
    "fit",
    "sample_prior",
    "prior_predictive",
    "PriorPredictive",
    "FitResult",
    "Diagnostics",
    "GateCheck",
    "SamplingAttempt",
    "diagnose",
    "compare_models",
    "load_fit",
    "save_fit",
    "FILE_FORMAT_VERSION",
    "DesignCache",
    "CompiledDesign",
    "DEFAULT_CACHE",
]
