"""Fitting: NUTS with a convergence gate, predictive checks, LOO, comparison, save and load.

:func:`fit` runs the sampler with an explicit seed and returns a :class:`FitResult` holding one
``xarray.DataTree`` with the groups ``posterior``, ``sample_stats``, ``prior``,
``prior_predictive``, ``posterior_predictive``, ``log_likelihood``, ``observed_data``,
``constant_data``, ``dose_response`` and ``prior_dose_response``, and a :class:`Diagnostics`
report (R-hat, bulk/tail ESS, divergences, BFMI, Monte Carlo error of the decision
probabilities, and the convergence gate's verdict).

Every random step takes its own stream spawned from the one ``seed`` (sampling, the retry,
prior draws, EXNEX indicators, predictive draws, the dose-response integration), so a fit is
reproducible from its seed and any part can be re-run alone.
"""

from __future__ import annotations

import json
import logging
import math
import time
import typing
import warnings
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any

import arviz as az
import numpy as np
import pandas as pd
import xarray as xr

from lupusbayes._io import write_atomic
from lupusbayes.cohort import Cohort, _cohort_from_text
from lupusbayes.errors import ConvergenceGateError, FitFileError, LupusBayesWarning, ModelSetupError
from lupusbayes.models.base import SAMPLE_DIMS, BayesianModel, DecisionQuantity
from lupusbayes.models.settings import FitSettings, SledaiModelSettings, ToxicityModelSettings
from lupusbayes.models.summaries import summarise_draws
from lupusbayes.spec import TrialSpec, parse_spec

__all__ = [
    "fit",
    "FitResult",
    "Diagnostics",
    "GateCheck",
    "SamplingAttempt",
    "load_fit",
    "compare_models",
    "FILE_FORMAT_VERSION",
    "compact_table",
]

FILE_FORMAT_VERSION = 1
_REPORTED_PARAMETERS = (
    "log_a", "log_b", "mu", "tau", "exchangeable", "grade_gap", "intercept", "intercept_study", "slope", "emax",
    "ed50_relative", "study_sd", "dose_group_sd", "patient_sd", "onset_months", "residual_sd", "weight_kg",
)
_STREAMS = ("sampling", "retry", "prior", "completion", "predictive", "dose_response")


# --------------------------------------------------------------------------------------------
# Diagnostics
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GateCheck:
    """One check of the convergence gate: the measured value against its threshold."""

    name: str
    value: float
    threshold: float
    passed: bool
    worst: str = ""

    def line(self) -> str:
        mark = "ok  " if self.passed else "FAIL"
        where = f" (worst: {self.worst})" if self.worst else ""
        return f"[{mark}] {self.name}: {_fmt(self.value)} vs {_fmt(self.threshold)}{where}"


@dataclass(frozen=True)
class SamplingAttempt:
    """One run of the sampler (the second only after divergences)."""

    target_accept: float
    divergences: int
    seconds: float


@dataclass(frozen=True)
class Diagnostics:
    """Convergence diagnostics, Monte Carlo errors and the gate's verdict."""

    checks: tuple[GateCheck, ...]
    attempts: tuple[SamplingAttempt, ...]
    parameters: pd.DataFrame = field(repr=False)
    decision_mcse: pd.DataFrame = field(repr=False)

    @property
    def passed(self) -> bool:
        return all(check.passed for check in self.checks)

    def lines(self) -> list[str]:
        verdict = "PASSED" if self.passed else "FAILED"
        out = [f"Convergence gate: {verdict}"]
        out += ["  " + check.line() for check in self.checks]
        for number, attempt in enumerate(self.attempts, start=1):
            out.append(
                f"  sampling run {number}: target_accept {attempt.target_accept:g}, "
                f"{attempt.divergences} divergences, {attempt.seconds:.1f} s"
                + (" (includes compiling the model on first use)" if number == 1 else "")
            )
        if len(self.attempts) > 1:
            out.append("  (the first run diverged; the gate is applied to the retry at a higher target_accept)")
        if len(self.decision_mcse):
            worst = self.decision_mcse.sort_values("mcse", ascending=False).iloc[0]
            out.append(
                f"  largest Monte Carlo SE of a decision quantity: {worst['mcse']:.4f} ({worst['quantity']}"
                f"{' at ' + str(worst['where']) if worst['where'] else ''})"
            )
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "checks": [asdict(check) for check in self.checks],
            "attempts": [asdict(attempt) for attempt in self.attempts],
            "decision_mcse": _records(self.decision_mcse),
        }


def _label(name: str, coordinates) -> str:
    """``log_a[KN5601]``-style label of one element of a variable."""
    return name if not len(coordinates) else f"{name}[{', '.join(f'{c:g}' if isinstance(c, float | np.floating) else str(c) for c in coordinates)}]"


def _fmt(value: float) -> str:
    if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
        return str(value)
    return f"{value:.4g}"


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    return json.loads(frame.to_json(orient="records"))


def _convergence_table(model: BayesianModel, tree: xr.DataTree, quantities: list[DecisionQuantity]) -> pd.DataFrame:
    """R-hat and bulk / tail ESS of every free parameter, reported parameter and decision quantity."""
    posterior = tree["posterior"].to_dataset()
    free = [rv.name for rv in model.pymc_model().free_RVs if rv.name in posterior]
    monitored = posterior[free + [n for n in model.parameters_of_interest() if n in posterior]]
    for quantity in quantities:
        monitored[f"decision: {quantity.name}"] = quantity.values
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # constant quantities give 0/0 in R-hat; the gate skips them
        rhat = az.rhat(monitored)
        ess_bulk = az.ess(monitored, method="bulk")
        ess_tail = az.ess(monitored, method="tail")
    rows = []
    for name in monitored.data_vars:
        coords = [rhat[name][d].to_numpy() if d in rhat[name].coords else np.arange(rhat[name].sizes[d])
                  for d in rhat[name].dims]
        for index in np.ndindex(rhat[name].shape):
            rows.append(
                {
                    "parameter": _label(name, [c[i] for c, i in zip(coords, index, strict=True)]),
                    "r_hat": float(rhat[name].to_numpy()[index]),
                    "ess_bulk": float(ess_bulk[name].to_numpy()[index]),
                    "ess_tail": float(ess_tail[name].to_numpy()[index]),
                }
            )
    return pd.DataFrame(rows)


def _decision_mcse(quantities: list[DecisionQuantity]) -> pd.DataFrame:
    """Posterior mean and Monte Carlo SE of every decision quantity, one row per dose (and month)."""
    rows = []
    for quantity in quantities:
        values = quantity.values.astype(float)
        mean = values.mean(SAMPLE_DIMS)
        mcse = az.mcse(values, method="mean").to_numpy()
        for index in np.ndindex(mean.shape):
            where = ", ".join(f"{d}={mean[d].to_numpy()[i]:g}" for d, i in zip(mean.dims, index, strict=True))
            rows.append({"quantity": quantity.name, "where": where, "mean": float(mean.to_numpy()[index]),
                         "mcse": 0.0 if math.isnan(mcse[index]) else float(mcse[index])})
    return pd.DataFrame(rows, columns=["quantity", "where", "mean", "mcse"])


def _diagnostics(model: BayesianModel, tree: xr.DataTree, settings: FitSettings, attempts: list[SamplingAttempt]) -> Diagnostics:
    quantities = model.decision_quantities(tree["dose_response"].to_dataset())
    parameters = _convergence_table(model, tree, quantities)
    valid = parameters.dropna()  # constant across draws (a probability exactly 0): no R-hat / ESS
    gate = settings.gate

    def worst(column: str, largest: bool) -> tuple[float, str]:
        if valid.empty:
            return float("nan"), ""
        row = valid.loc[valid[column].idxmax() if largest else valid[column].idxmin()]
        return float(row[column]), str(row["parameter"])

    rhat_max, rhat_where = worst("r_hat", True)
    bulk_min, bulk_where = worst("ess_bulk", False)
    tail_min, tail_where = worst("ess_tail", False)
    divergences = attempts[-1].divergences
    has_energy = "energy" in tree["sample_stats"].to_dataset()
    bfmi_min = float(az.bfmi(tree)["energy"].min()) if has_energy else float("nan")
    checks = (
        GateCheck("max R-hat", rhat_max, gate.rhat_max, bool(rhat_max <= gate.rhat_max), rhat_where),
        GateCheck("min bulk ESS", bulk_min, gate.ess_bulk_min, bool(bulk_min >= gate.ess_bulk_min), bulk_where),
        GateCheck("min tail ESS", tail_min, gate.ess_tail_min, bool(tail_min >= gate.ess_tail_min), tail_where),
        GateCheck("divergences", float(divergences), float(gate.divergences_max), divergences <= gate.divergences_max),
        GateCheck("min BFMI", bfmi_min, gate.bfmi_min, bool(np.isnan(bfmi_min) or bfmi_min >= gate.bfmi_min)),
    )
    return Diagnostics(checks, tuple(attempts), parameters, _decision_mcse(quantities))


# --------------------------------------------------------------------------------------------
# FitResult
# --------------------------------------------------------------------------------------------


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
        failed = "; ".join(check.line() for check in self.diagnostics.checks if not check.passed)
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
        names = [n for n in _REPORTED_PARAMETERS if n in posterior]
        frames = []
        for name in names:
            values = posterior[name]
            extra = [d for d in values.dims if d not in SAMPLE_DIMS]
            frame = summarise_draws(values, interval=interval)
            if extra:
                frame = frame.reset_index()
                labels = [_label(name, row) for row in frame[extra].to_numpy()]
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
        pareto_k = np.asarray(result.pareto_k)
        bad = int((pareto_k > 0.7).sum())
        if bad:
            warnings.warn(
                f"{self.model.name}: {bad} observation(s) have Pareto k > 0.7; PSIS-LOO is unreliable for them",
                LupusBayesWarning, stacklevel=2,
            )
        return result

    def summary_lines(self, *, interval: float = 0.9) -> list[str]:
        """Human-readable report: what was fitted, the gate, the dose table, the checks."""
        lines = [
            f"{self.model.name} fit to {self.model.n_observations} observations "
            f"(trial {self.model.spec.trial.id}; seed {self.seed}; {self.settings.chains} chains x "
            f"{self.settings.draws} draws; {self.seconds:.1f} s)",
        ]
        lines += self.diagnostics.lines()
        lines += ["", f"Dose-response: posterior mean [{interval:.0%} interval]; probabilities of intervals +/- MCSE"]
        lines += compact_table(self.dose_summary(interval=interval)).to_string(index=False).splitlines()
        lines += ["", "Posterior predictive checks (p-value near 0 or 1 = misfit):"]
        lines += self.ppc_table().to_string(index=False, float_format=lambda v: f"{v:.3f}").splitlines()
        return lines

    def save(self, path: str | Path, *, overwrite: bool = False) -> Path:
        """Write one netCDF file (opens with ``arviz.from_netcdf``) carrying spec, data and version.

        Written atomically; an existing file is replaced only with ``overwrite=True``.
        """
        path = Path(path)
        tree = self.tree.copy()
        tree.attrs.update(_file_attrs(self))
        return write_atomic(path, lambda temporary: tree.to_netcdf(temporary, engine="h5netcdf"), overwrite=overwrite)


def compact_table(table: pd.DataFrame, digits: int = 3) -> pd.DataFrame:
    """Readable form of a dose summary: ``mean [low, high]`` per quantity, ``p +/- mcse`` per probability."""
    out = pd.DataFrame(index=table.index)
    used: set[str] = set()
    for column in table.columns:
        if column in used:
            continue
        if column.endswith(" mean"):
            stem = column[: -len(" mean")]
            bounds = [c for c in table.columns if c.startswith(f"{stem} q")]
            low, high = bounds[0], bounds[-1]
            out[stem] = [f"{m:.{digits}f} [{a:.{digits}f}, {b:.{digits}f}]"
                         for m, a, b in zip(table[column], table[low], table[high], strict=True)]
            used |= {c for c in table.columns if c.startswith(f"{stem} ")}
        elif f"{column} mcse" in table.columns:
            out[column] = [f"{p:.{digits}f} +/- {e:.{digits}f}" for p, e in zip(table[column], table[f"{column} mcse"], strict=True)]
            used |= {column, f"{column} mcse"}
        elif not column.endswith(" mcse"):
            out[column] = table[column]
            used.add(column)
    return out


def _file_attrs(result: FitResult) -> dict[str, Any]:
    from lupusbayes import __version__

    model = result.model
    cohort_csv = model.cohort.to_csv(layout="long") if model.cohort is not None else ""
    return {
        "lupusbayes_file_format": FILE_FORMAT_VERSION,
        "lupusbayes_version": __version__,
        "model_kind": model.kind,
        "model_class": type(model).__name__,
        "model_name": model.name,
        "model_settings": model.settings_json(),
        "spec_toml": model.spec.text,
        "spec_sha256": model.spec.sha256,
        "spec_source": model.spec.source,
        "cohort_csv": cohort_csv,
        "cohort_source": model.cohort.source if model.cohort is not None else "",
        "seed": int(result.seed),
        "fit_settings": json.dumps(asdict(result.settings)),
        "diagnostics": json.dumps(result.diagnostics.to_dict()),
        "seconds": float(result.seconds),
    }


# --------------------------------------------------------------------------------------------
# fit
# --------------------------------------------------------------------------------------------


def _streams(seed: int) -> dict[str, np.random.SeedSequence]:
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise ModelSetupError(f"seed must be a non-negative whole number (got {seed!r})")
    children = np.random.SeedSequence(int(seed)).spawn(len(_STREAMS))
    return dict(zip(_STREAMS, children, strict=True))


def _int_seed(sequence: np.random.SeedSequence) -> int:
    return int(sequence.generate_state(1, dtype=np.uint32)[0])


def _sample(model: BayesianModel, settings: FitSettings, target_accept: float, seed: int) -> xr.DataTree:
    graph = model.pymc_model()
    if settings.sampler == "nutpie":
        return _sample_nutpie(model, graph, settings, target_accept, seed)
    import pymc as pm

    with _quiet_pymc():
        return pm.sample(
            draws=settings.draws,
            tune=settings.tune,
            chains=settings.chains,
            cores=settings.cores,
            random_seed=seed,
            nuts_sampler="pymc",
            nuts={"target_accept": target_accept},
            model=graph,
            quiet=True,
            progressbar=False,
            compute_convergence_checks=False,
        )


@contextmanager
def _quiet_pymc():
    """Silence PyMC's log lines and warnings: the diagnostics report says what matters."""
    logger = logging.getLogger("pymc")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


def _sample_nutpie(model: BayesianModel, graph, settings: FitSettings, target_accept: float, seed: int) -> xr.DataTree:
    """nutpie with the compiled model cached on the graph: a refit only swaps the data."""
    try:
        import nutpie
    except ImportError:
        raise ModelSetupError("sampler 'nutpie' needs the nutpie package: pip install 'lupusbayes[nutpie]'") from None
    owner = model._graph_owner
    compiled = owner._nutpie_compiled
    if compiled is None:
        with _quiet_pymc():
            compiled = nutpie.compile_pymc_model(graph, backend="numba", freeze_model=False)
        owner._nutpie_compiled = compiled
    compiled = compiled.with_data(**model.graph_data())
    tree = nutpie.sample(
        compiled, draws=settings.draws, tune=settings.tune, chains=settings.chains,
        cores=settings.cores or min(settings.chains, 2), seed=seed, progress_bar=False,
        target_accept=target_accept, save_warmup=False,
        adaptation="low_rank",  # learns the correlations (slope vs dose-group effects): ~1.5x the ESS
    )
    keep = [g for g in ("posterior", "sample_stats") if g in tree.children]
    return xr.DataTree.from_dict({g: tree[g].to_dataset() for g in keep})


def _divergences(tree: xr.DataTree) -> int:
    stats = tree["sample_stats"].to_dataset()
    return int(stats["diverging"].sum()) if "diverging" in stats else 0


def _clean_sample_stats(stats: xr.Dataset) -> xr.Dataset:
    """Drop what netCDF cannot store (object arrays such as divergence messages)."""
    return stats.drop_vars([name for name, var in stats.data_vars.items() if var.dtype == object])


def fit(
    model: BayesianModel,
    *,
    seed: int,
    settings: FitSettings | None = None,
    prior_draws: int = 1000,
) -> FitResult:
    """Sample ``model``'s posterior with NUTS and run every check a statistician expects.

    Parameters
    ----------
    model
        A :class:`~lupusbayes.ToxicityModel` (CRS / BLRM) or :class:`~lupusbayes.SledaiModel`.
    seed
        Master seed; every random step uses a stream spawned from it.
    settings
        Draws, tune, chains, sampler, target_accept and the convergence gate
        (default: the spec's ``[fitting]`` table).
    prior_draws
        Number of prior draws for the prior predictive checks.

    Returns
    -------
    FitResult
        Check ``result.converged`` (or call ``result.require_converged()``) before using it.

    Notes
    -----
    If the first run has more divergences than the gate allows, it is repeated once with
    ``settings.retry_target_accept``; both runs are listed in the diagnostics.

    Examples
    --------
    >>> import lupusbayes as lb
    >>> cohort, spec = lb.load_kn5601(), lb.load_spec("kn5601")
    >>> result = lb.fit(lb.CRSModel(cohort, spec), seed=1)   # doctest: +SKIP
    >>> result.dose_summary()                                  # doctest: +SKIP
    """
    settings = settings or model.spec.fitting
    streams = _streams(seed)
    started = time.perf_counter()
    attempts: list[SamplingAttempt] = []
    tick = time.perf_counter()
    sampled = _sample(model, settings, settings.target_accept, _int_seed(streams["sampling"]))
    attempts.append(SamplingAttempt(settings.target_accept, _divergences(sampled), time.perf_counter() - tick))
    if attempts[-1].divergences > settings.gate.divergences_max:
        tick = time.perf_counter()
        sampled = _sample(model, settings, settings.retry_target_accept, _int_seed(streams["retry"]))
        attempts.append(SamplingAttempt(settings.retry_target_accept, _divergences(sampled), time.perf_counter() - tick))
    tree = assemble_tree(model, sampled, streams, prior_draws=prior_draws)
    diagnostics = _diagnostics(model, tree, settings, attempts)
    return FitResult(model, tree, diagnostics, settings, int(seed), time.perf_counter() - started)


def sample_prior(model: BayesianModel, draws: int, seed: int) -> xr.Dataset:
    """Draws of every random variable and deterministic from the model's prior (chain 1).

    What ``pm.sample_prior_predictive`` does, but the forward-sampling function is compiled once
    per design (cached with the graph) and only reseeded on later calls: refits and calibration
    replicates do not recompile it.
    """
    import pymc as pm
    from pymc.pytensorf import reseed_rngs
    from pymc.sampling.forward import compile_forward_sampling_function
    from pymc.util import get_default_varnames
    from pytensor.tensor.random.type import RandomGeneratorType

    graph = model.pymc_model()
    owner = model._graph_owner
    if owner._prior_sampler is None:
        everything = {variable.name for variable in graph.basic_RVs + graph.deterministics}
        names = sorted(get_default_varnames(everything, include_transformed=False))
        with _quiet_pymc():
            function, _ = compile_forward_sampling_function(
                [graph[name] for name in names], vars_in_trace=[], basic_rvs=graph.basic_RVs, model=graph,
                random_seed=False, allow_input_downcast=True, accept_inplace=True,
            )
        generators = [v for v in function.get_shared() if isinstance(v.type, RandomGeneratorType)]
        owner._prior_sampler = (names, function, generators)
    names, function, generators = owner._prior_sampler
    reseed_rngs(generators, seed)
    values = zip(*(function() for _ in range(draws)), strict=True)
    prior = {name: np.stack(column) for name, column in zip(names, values, strict=True)}
    with _quiet_pymc():
        return pm.to_inference_data(prior=prior, model=graph)["prior"].to_dataset()


def assemble_tree(model: BayesianModel, sampled: xr.DataTree, streams: dict[str, np.random.SeedSequence], *,
                  prior_draws: int) -> xr.DataTree:
    """Complete raw draws into the full DataTree (prior, predictive, log-likelihood, derived)."""
    rng = {name: np.random.default_rng(sequence) for name, sequence in streams.items()}
    posterior = model.complete_draws(sampled["posterior"].to_dataset(), rng["completion"])
    prior = model.complete_draws(sample_prior(model, prior_draws, _int_seed(streams["prior"])), rng["completion"])
    groups = {
        "posterior": posterior,
        "sample_stats": _clean_sample_stats(sampled["sample_stats"].to_dataset()),
        "log_likelihood": model.pointwise_log_likelihood(posterior),
        "posterior_predictive": model.simulate_outcomes(posterior, rng["predictive"]),
        "prior": prior,
        "prior_predictive": model.simulate_outcomes(prior, rng["predictive"]),
        "observed_data": model.observed_data(),
        "constant_data": model.constant_data(),
        "dose_response": model.dose_response(posterior, rng["dose_response"]),
        "prior_dose_response": model.dose_response(prior, rng["dose_response"]),
    }
    return xr.DataTree.from_dict({name: dataset for name, dataset in groups.items()})


# --------------------------------------------------------------------------------------------
# Model comparison
# --------------------------------------------------------------------------------------------


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
        table = az.compare({name: result.tree for name, result in fits.items()})
    return table


# --------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------


def _dataclass_from_dict(cls, data: dict[str, Any]):
    hints = typing.get_type_hints(cls)
    values = {}
    for item in fields(cls):
        if item.name not in data:
            continue
        value = data[item.name]
        hint = hints[item.name]
        target = next((t for t in typing.get_args(hint) or (hint,) if is_dataclass(t)), None)
        if target is not None and isinstance(value, dict):
            value = _dataclass_from_dict(target, value)
        elif isinstance(value, list):
            value = tuple(value)
        values[item.name] = value
    return cls(**values)


def _major_minor(version: str) -> tuple[str, ...]:
    return tuple(version.split(".")[:2])


def load_fit(path: str | Path, *, spec: TrialSpec | None = None) -> FitResult:
    """Read a fit written by :meth:`FitResult.save`.

    Raises
    ------
    FitFileError
        Not a lupusbayes fit, written by another lupusbayes version (major.minor), or for a
        different spec than ``spec`` (compared by the hash of the spec text).
    """
    from lupusbayes import __version__
    from lupusbayes.models.sledai import SledaiModel
    from lupusbayes.models.toxicity import ToxicityModel

    path = Path(path)
    if not path.exists():
        raise FitFileError(f"{path}: file not found")
    try:
        tree = az.from_netcdf(path)
    except Exception as error:  # noqa: BLE001 - any reader failure means "not a fit file"
        raise FitFileError(f"{path}: not a readable netCDF fit file ({type(error).__name__})") from None
    attrs = tree.attrs
    if "lupusbayes_file_format" not in attrs:
        raise FitFileError(f"{path}: not a lupusbayes fit (no lupusbayes_file_format attribute)")
    if int(attrs["lupusbayes_file_format"]) != FILE_FORMAT_VERSION:
        raise FitFileError(f"{path}: file format {attrs['lupusbayes_file_format']} is not {FILE_FORMAT_VERSION}; refit")
    written_by = str(attrs.get("lupusbayes_version", "?"))
    if _major_minor(written_by) != _major_minor(__version__):
        raise FitFileError(
            f"{path}: written by lupusbayes {written_by}, this is {__version__}; refit with this version "
            f"or install lupusbayes {written_by} to read it"
        )
    if spec is not None and attrs["spec_sha256"] != spec.sha256:
        raise FitFileError(
            f"{path}: fitted with another spec ({attrs.get('spec_source')}, sha256 {str(attrs['spec_sha256'])[:12]}...) "
            f"than {spec.source} (sha256 {spec.sha256[:12]}...); refit with this spec"
        )
    saved_spec = parse_spec(str(attrs["spec_toml"]), source=str(attrs.get("spec_source", path)))
    cohort: Cohort | None = None
    if attrs.get("cohort_csv"):
        cohort = _cohort_from_text(str(attrs["cohort_csv"]), source=str(attrs.get("cohort_source", path)),
                                   default_study_id=saved_spec.trial.id)
    settings_data = json.loads(str(attrs["model_settings"]))
    if attrs["model_class"] == "SledaiModel":
        model: BayesianModel = SledaiModel(cohort, saved_spec, _dataclass_from_dict(SledaiModelSettings, settings_data))
    else:
        model = ToxicityModel(cohort, saved_spec, _dataclass_from_dict(ToxicityModelSettings, settings_data))
    fit_settings = _dataclass_from_dict(FitSettings, json.loads(str(attrs["fit_settings"])))
    diagnostics_data = json.loads(str(attrs["diagnostics"]))
    attempts = [SamplingAttempt(**a) for a in diagnostics_data["attempts"]]
    tree = tree.copy()
    tree.attrs = {}
    diagnostics = _diagnostics(model, tree, fit_settings, attempts)
    return FitResult(model, tree, diagnostics, fit_settings, int(attrs["seed"]), float(attrs["seconds"]))
