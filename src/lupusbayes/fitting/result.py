"""The result of a fit: the DataTree, its diagnostics, and the tables read from it."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import arviz as az
import numpy as np
import pandas as pd
import xarray as xr

from lupusbayes.errors import ConvergenceGateError, LupusBayesWarning
from lupusbayes.fitting.diagnostics import Diagnostics, parameter_label
from lupusbayes.models.base import SAMPLE_DIMS, BayesianModel
from lupusbayes.models.summaries import summarise_draws
from lupusbayes.spec import FitSettings

__all__ = ["FitResult", "REPORTED_PARAMETERS"]

#: Posterior variables :meth:`FitResult.parameter_summary` reports when present.
REPORTED_PARAMETERS = (
    "log_a", "log_b", "mu", "tau", "exchangeable", "grade_gap", "intercept", "intercept_study", "slope", "emax",
    "ed50_relative", "study_sd", "dose_group_sd", "patient_sd", "onset_months", "residual_sd", "weight_kg",
)


@dataclass(frozen=True)
class FitResult:
    """A fitted model: the ``DataTree``, its diagnostics, and how it was made.

    Use :meth:`dose_summary` for the dose-level table, :meth:`ppc_table` for predictive
    checks, :meth:`loo` for PSIS-LOO, :meth:`save` to write one self-describing netCDF file.
    """

    model: BayesianModel
    tree: xr.DataTree = field(repr=False)
    diagnostics: Diagnostics
    settings: FitSettings
    seed: int
    seconds: float

    @property
    def converged(self) -> bool:
        return self.diagnostics.passed

    @property
    def posterior(self) -> xr.Dataset:
        return self.tree["posterior"].to_dataset()

    @property
    def dose_response(self) -> xr.Dataset:
        return self.tree["dose_response"].to_dataset()

    @property
    def prior_dose_response(self) -> xr.Dataset:
        return self.tree["prior_dose_response"].to_dataset()

    def require_converged(self, *, force: bool = False) -> None:
        """Raise :class:`ConvergenceGateError` unless the gate passed (or ``force``)."""
        if self.converged:
            return
        failed = "; ".join(check.describe() for check in self.diagnostics.failed_checks)
        if force:
            warnings.warn(f"using a fit that FAILED its convergence gate ({failed})", LupusBayesWarning, stacklevel=2)
            return
        raise ConvergenceGateError(
            f"the {self.model.name} fit failed its convergence gate ({failed}); refit with more draws or a "
            "higher target_accept, or force it and say so"
        )

    def dose_summary(self, *, interval: float = 0.9, prior: bool = False) -> pd.DataFrame:
        """Per-dose posterior (or prior) summary with equal-tailed intervals and MCSE."""
        source = self.prior_dose_response if prior else self.dose_response
        return self.model.summary_table(source, interval=interval)

    def parameter_summary(self, *, interval: float = 0.9) -> pd.DataFrame:
        """Mean, interval, R-hat and ESS of the reported parameters."""
        posterior = self.posterior
        frames = []
        for name in (n for n in REPORTED_PARAMETERS if n in posterior):
            values = posterior[name]
            extra = [d for d in values.dims if d not in SAMPLE_DIMS]
            frame = summarise_draws(values, interval=interval)
            if extra:
                frame = frame.reset_index()
                labels = [parameter_label(name, row) for row in frame[extra].to_numpy()]
                frame = frame.drop(columns=extra)
            else:
                labels = [name]
            frame.insert(0, "quantity", labels)
            frames.append(frame)
        table = pd.concat(frames, ignore_index=True)
        diagnostics = self.diagnostics.parameters.set_index("parameter")
        table["r_hat"] = table["quantity"].map(diagnostics["r_hat"])
        table["ess_bulk"] = table["quantity"].map(diagnostics["ess_bulk"])
        return table

    def _check_table(self, replicated_group: str) -> pd.DataFrame:
        observed = self.model.check_statistics(self.tree["observed_data"].to_dataset())
        replicated = self.model.check_statistics(self.tree[replicated_group].to_dataset())
        rows = []
        for name, value in observed.items():
            draws = replicated[name].astype(float)
            obs = float(value)
            greater = float((draws > obs).mean())
            equal = float((draws == obs).mean())
            rows.append(
                {
                    "statistic": name,
                    "observed": obs,
                    "replicated_mean": float(draws.mean()),
                    "replicated_q5": float(draws.quantile(0.05)),
                    "replicated_q95": float(draws.quantile(0.95)),
                    "p_value": greater + 0.5 * equal,
                }
            )
        return pd.DataFrame(rows)

    def ppc_table(self) -> pd.DataFrame:
        """Posterior predictive checks: statistic, observed, replicated mean and 90% range, and
        the mid posterior predictive p-value ``P(T_rep > T_obs) + P(T_rep = T_obs) / 2``
        (values near 0 or 1 flag misfit)."""
        return self._check_table("posterior_predictive")

    def prior_predictive_table(self) -> pd.DataFrame:
        """The same statistics under the prior: does the prior allow what was observed?"""
        return self._check_table("prior_predictive")

    def loo(self) -> Any:
        """PSIS-LOO (``arviz.loo``), with a warning when any Pareto k exceeds 0.7."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = az.loo(self.tree)
        bad = int((np.asarray(result.pareto_k) > 0.7).sum())
        if bad:
            warnings.warn(
                f"{self.model.name}: {bad} observation(s) have Pareto k > 0.7; PSIS-LOO is unreliable for them",
                LupusBayesWarning, stacklevel=2,
            )
        return result

    def save(self, path: str | Path, *, overwrite: bool = False) -> Path:
        """Write one netCDF file (opens with ``arviz.from_netcdf``) carrying spec, data and version.

        Written atomically; an existing file is replaced only with ``overwrite=True``.
        """
        from lupusbayes.fitting.fitfile import save_fit

        return save_fit(self, path, overwrite=overwrite)
