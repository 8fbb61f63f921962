"""PSIS-LOO model comparison of fits to the same outcomes."""

from __future__ import annotations

import warnings

import arviz_stats
import numpy as np
import pandas as pd

from lupusbayes.errors import ModelSetupError
from lupusbayes.fitting.result import FitResult

__all__ = ["compare_models"]


def compare_models(fits: dict[str, FitResult]) -> pd.DataFrame:
    """PSIS-LOO comparison (``arviz.compare``) of fits to the *same* outcomes.

    Raises
    ------
    ModelSetupError
        When the fits' observed data differ (their LOO values would not be comparable).
    """
    if len(fits) < 2:
        raise ModelSetupError("compare_models needs at least two fits")
    reference_name, reference = next(iter(fits.items()))
    observed = reference.tree["observed_data"].to_dataset()
    for name, result in fits.items():
        other = result.tree["observed_data"].to_dataset()
        if list(other.data_vars) != list(observed.data_vars) or not all(
            np.array_equal(other[v].to_numpy(), observed[v].to_numpy()) for v in observed.data_vars
        ):
            raise ModelSetupError(
                f"'{name}' and '{reference_name}' were fitted to different outcomes; LOO values are not comparable"
            )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return arviz_stats.compare({name: result.tree for name, result in fits.items()})
