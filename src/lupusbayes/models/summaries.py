"""Posterior summaries with their Monte Carlo error (NumPy / ArviZ, no PyMC)."""

from __future__ import annotations

import arviz as az
import numpy as np
import pandas as pd
import xarray as xr

from lupusbayes.models.base import SAMPLE_DIMS

__all__ = ["summarise_draws", "interval_bounds"]


def interval_bounds(interval: float) -> tuple[float, float]:
    """Equal-tailed interval quantiles, e.g. 0.9 -> (0.05, 0.95)."""
    if not 0 < interval < 1:
        raise ValueError(f"interval must be between 0 and 1 (got {interval})")
    tail = (1.0 - interval) / 2.0
    return tail, 1.0 - tail


def summarise_draws(values: xr.DataArray, *, interval: float = 0.9, prefix: str = "") -> pd.DataFrame:
    """Mean, SD, equal-tailed interval, median and MCSE of the mean over the sample dims.

    Returns one row per combination of the non-sample dims, with those dims as columns.
    """
    low, high = interval_bounds(interval)
    stats = {
        "mean": values.mean(SAMPLE_DIMS),
        "sd": values.std(SAMPLE_DIMS),
        f"q{low * 100:g}": values.quantile(low, dim=SAMPLE_DIMS).drop_vars("quantile"),
        "median": values.median(SAMPLE_DIMS),
        f"q{high * 100:g}": values.quantile(high, dim=SAMPLE_DIMS).drop_vars("quantile"),
        "mcse_mean": az.mcse(values, method="mean"),
    }
    dataset = xr.Dataset({f"{prefix}{k}": v for k, v in stats.items()})
    if not any(dataset[name].dims for name in dataset.data_vars):  # a scalar quantity: one row
        return pd.DataFrame([{name: float(dataset[name]) for name in dataset.data_vars}])
    frame = dataset.to_dataframe()
    return frame.drop(columns=[c for c in frame.columns if c not in dataset.data_vars])


def probability_with_mcse(indicator: xr.DataArray) -> tuple[xr.DataArray, xr.DataArray]:
    """Posterior probability (mean of an indicator) and its MCSE, over the sample dims."""
    as_float = indicator.astype(float)
    mcse = az.mcse(as_float, method="mean")
    return as_float.mean(SAMPLE_DIMS), xr.where(np.isfinite(mcse), mcse, 0.0)
