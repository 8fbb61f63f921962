"""Posterior summaries with their Monte Carlo error (NumPy / ArviZ, no PyMC)."""

from __future__ import annotations

import arviz_stats
import numpy as np
import pandas as pd
import xarray as xr

from lupusbayes.models.base import SAMPLE_DIMS

__all__ = ["summarise_draws", "interval_bounds", "probability_with_mcse", "MCSE_BOUND_NOTE"]

#: How a Monte Carlo error is bounded when every draw agrees (said wherever the bound is shown).
MCSE_BOUND_NOTE = (
    "every draw agreed, so the Monte Carlo error cannot be estimated from the draws; the value shown "
    "is an upper bound, 3 / ESS (the rule of three: no event in ESS effective draws)"
)


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
        "mcse_mean": arviz_stats.mcse(values, method="mean"),
    }
    dataset = xr.Dataset({f"{prefix}{k}": v for k, v in stats.items()})
    if not any(dataset[name].dims for name in dataset.data_vars):  # a scalar quantity: one row
        return pd.DataFrame([{name: float(dataset[name]) for name in dataset.data_vars}])
    frame = dataset.to_dataframe()
    return frame.drop(columns=[c for c in frame.columns if c not in dataset.data_vars])


def probability_with_mcse(indicator: xr.DataArray, reference: xr.DataArray | None = None,
                          ) -> tuple[xr.DataArray, xr.DataArray, xr.DataArray]:
    """Posterior probability (mean of an indicator), its Monte Carlo error, and whether that is a bound.

    Where the indicator's draws vary, the error is the MCSE of the mean. Where every draw agrees
    (a probability of exactly 0 or 1), the MCSE estimate would be 0 or undefined, which claims a
    precision the draws cannot show; the error is then bounded by ``3 / ESS`` (see
    :data:`MCSE_BOUND_NOTE`), with ESS the bulk ESS of ``reference`` (the continuous quantity the
    indicator is read from, e.g. P(DLT) at that dose) or, without one, the number of draws.
    """
    as_float = indicator.astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        mcse = arviz_stats.mcse(as_float, method="mean")
    constant = (as_float.max(SAMPLE_DIMS) == as_float.min(SAMPLE_DIMS))
    if reference is not None:
        ess = arviz_stats.ess(reference.astype(float), method="bulk")
        ess = xr.where(np.isfinite(ess) & (ess > 0), ess, indicator.sizes["chain"] * indicator.sizes["draw"])
    else:
        ess = xr.full_like(mcse, float(indicator.sizes["chain"] * indicator.sizes["draw"]))
    bound = np.minimum(3.0 / ess, 1.0)
    is_bound = constant | ~np.isfinite(mcse)
    return as_float.mean(SAMPLE_DIMS), xr.where(is_bound, bound, mcse), is_bound
