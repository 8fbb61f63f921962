"""The result of a fit: the DataTree, its diagnostics, and the tables read from it."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import arviz_stats
import numpy as np
import pandas as pd
import xarray as xr

from lupusbayes.errors import ConvergenceGateError, LupusBayesWarning
from lupusbayes.fitting.diagnostics import Diagnostics, parameter_label
from lupusbayes.models.base import SAMPLE_DIMS, BayesianModel
from lupusbayes.models.summaries import summarise_draws
from lupusbayes.spec import FitSettings

__all__ = ["FitResult", "PriorPredictive", "predictive_check_table", "REPORTED_PARAMETERS"]

#: Posterior variables :meth:`FitResult.parameter_summary` reports when present.
REPORTED_PARAMETERS = (
    "log_a", "log_b", "mu", "tau", "exchangeable", "grade_gap", "intercept", "intercept_study", "slope", "emax",
    "ed50_relative", "study_sd", "dose_group_sd", "patient_sd", "onset_months", "residual_sd", "weight_kg",
)


def predictive_check_table(model: BayesianModel, observed: xr.Dataset, replicated: xr.Dataset) -> pd.DataFrame:
    """Each check statistic: observed, replicated mean and 90% range, mid p-value.

    The mid p-value is ``P(T_rep > T_obs) + P(T_rep = T_obs) / 2``.
    """
    observed_statistics = model.check_statistics(observed)
    replicated_statistics = model.check_statistics(replicated)
    rows = []
    for name, value in observed_statistics.items():
        draws = replicated_statistics[name].astype(float)
        obs = float(value)
        rows.append(
            {
                "statistic": name,
                "observed": obs,
                "replicated_mean": float(draws.mean()),
                "replicated_q5": float(draws.quantile(0.05)),
                "replicated_q95": float(draws.quantile(0.95)),
                "p_value": float((draws > obs).mean()) + 0.5 * float((draws == obs).mean()),
            }
        )
    return pd.DataFrame(rows)


@dataclass(frozen=True)
class PriorPredictive:
    """What a model's prior implies, before any data: per dose, and for the data's statistics.

    Made by :func:`~lupusbayes.fitting.sample.prior_predictive`; use it to choose and document
    priors (is the prior plausible, does it allow what was observed?).
    """

    model: BayesianModel
    tree: xr.DataTree = field(repr=False)
    seed: int

    def __repr__(self) -> str:
        return (f"PriorPredictive({self.model.name}; trial {self.model.spec.trial.id}; "
                f"{self.tree['prior'].sizes['draw']} prior draws; seed {self.seed})")

    def dose_summary(self, *, interval: float = 0.9) -> pd.DataFrame:
        """Per-dose prior summary: mean, SD, equal-tailed interval, median (and MCSE)."""
        return self.model.summary_table(self.tree["prior_dose_response"].to_dataset(), interval=interval)

    def check_table(self) -> pd.DataFrame:
        """The model's check statistics under the prior, against the observed data."""
        return predictive_check_table(self.model, self.tree["observed_data"].to_dataset(),
                                      self.tree["prior_predictive"].to_dataset())


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

    def _headline(self) -> tuple[str, str]:
        settings = self.settings
        what = (f"{self.model.name} fit to {self.model.n_observations} observations (trial {self.model.spec.trial.id}; "
                f"seed {self.seed}; {settings.chains} chains x {settings.draws} draws; {self.seconds:.1f} s)")
        checks = ", ".join(check.describe().split(" (worst")[0] for check in self.diagnostics.checks)
        gate = f"convergence gate {'PASSED' if self.converged else 'FAILED'}: {checks}"
        return what, gate

    def __repr__(self) -> str:
        what, gate = self._headline()
        return f"FitResult({what};\n  {gate})"

    def _repr_html_(self) -> str:
        """A notebook view: what was fitted, the gate, the per-dose table, the notes."""
        import html

        what, gate = self._headline()
        colour = "#1a7f37" if self.converged else "#cf222e"
        notes = "".join(f"<li>{html.escape(note)}</li>" for note in self.model.notes())
        table = self.dose_summary()
        table = table.drop(columns=[c for c in table.columns
                                    if c.endswith((" sd", "mcse_mean", "is upper bound", "basis"))])
        return (f"<div><p><b>{html.escape(what)}</b></p><p style='color:{colour}'>{html.escape(gate)}</p>"
                f"{table.to_html(index=False, float_format=lambda v: f'{v:.3f}')}"
                + (f"<ul>{notes}</ul>" if notes else "") + "</div>")

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

    def prior_posterior_table(self, *, interval: float = 0.9, max_elements: int = 4) -> pd.DataFrame:
        """What the data changed: prior and posterior mean and interval of each reported parameter.

        ``sd_ratio`` is the posterior SD over the prior SD: near 1 means the data said little
        about that parameter and its posterior is mostly prior. Parameters with more than
        ``max_elements`` elements (per-patient weights) are left out.
        """
        low, high = (1 - interval) / 2, (1 + interval) / 2
        prior, posterior = self.tree["prior"].to_dataset(), self.posterior
        rows = []
        for name in (n for n in REPORTED_PARAMETERS if n in posterior and n in prior):
            before, after = prior[name], posterior[name]
            extra = [d for d in after.dims if d not in SAMPLE_DIMS]
            if int(np.prod([after.sizes[d] for d in extra])) > max_elements:
                continue
            stacked_before = before.stack(sample=SAMPLE_DIMS).transpose(*extra, "sample").to_numpy()
            stacked_after = after.stack(sample=SAMPLE_DIMS).transpose(*extra, "sample").to_numpy()
            coords = [after[d].to_numpy() for d in extra]
            for index in np.ndindex(*[after.sizes[d] for d in extra]):
                a, b = stacked_before[index], stacked_after[index]
                rows.append({
                    "parameter": parameter_label(name, [c[i] for c, i in zip(coords, index, strict=True)]),
                    "prior mean": float(a.mean()), f"prior q{low * 100:g}": float(np.quantile(a, low)),
                    f"prior q{high * 100:g}": float(np.quantile(a, high)),
                    "posterior mean": float(b.mean()), f"posterior q{low * 100:g}": float(np.quantile(b, low)),
                    f"posterior q{high * 100:g}": float(np.quantile(b, high)),
                    "sd_ratio": float(b.std() / a.std()) if a.std() > 0 else float("nan"),
                })
        return pd.DataFrame(rows)

    def _check_table(self, replicated_group: str) -> pd.DataFrame:
        return predictive_check_table(self.model, self.tree["observed_data"].to_dataset(),
                                      self.tree[replicated_group].to_dataset())

    def ppc_table(self) -> pd.DataFrame:
        """Posterior predictive checks: statistic, observed, replicated mean and 90% range, and
        the mid posterior predictive p-value ``P(T_rep > T_obs) + P(T_rep = T_obs) / 2``
        (values near 0 or 1 flag misfit)."""
        return self._check_table("posterior_predictive")

    def prior_predictive_table(self) -> pd.DataFrame:
        """The same statistics under the prior: does the prior allow what was observed?"""
        return self._check_table("prior_predictive")

    def prior_check(self) -> PriorPredictive:
        """The prior and its predictive checks as the fit drew them (its ``prior`` groups): what
        :func:`~lupusbayes.fitting.sample.prior_predictive` gives, without drawing again."""
        groups = ("prior", "prior_predictive", "observed_data", "prior_dose_response")
        return PriorPredictive(self.model, xr.DataTree.from_dict({name: self.tree[name].to_dataset()
                                                                 for name in groups}), self.seed)

    def loo(self) -> Any:
        """PSIS-LOO (``arviz.loo``), with a warning when any Pareto k exceeds 0.7."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = arviz_stats.loo(self.tree)
        bad = int((np.asarray(result.pareto_k) > 0.7).sum())
        if bad:
            warnings.warn(
                f"{self.model.name}: {bad} observation(s) have Pareto k > 0.7; PSIS-LOO is unreliable for them",
                LupusBayesWarning, stacklevel=2,
            )
        return result

    def save(self, path: str | Path, *, overwrite: bool = False, mkdir: bool = False) -> Path:
        """Write one netCDF file (opens with ``arviz.from_netcdf``) carrying spec, data and version.

        Written atomically; an existing file is replaced only with ``overwrite=True``, and a
        missing folder is created only with ``mkdir=True``.
        """
        from lupusbayes.fitting.fitfile import save_fit

        return save_fit(self, path, overwrite=overwrite, mkdir=mkdir)
