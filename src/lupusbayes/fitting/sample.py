"""Sampling: NUTS with one retry, the prior, and every derived group, all from one seed.

:func:`fit` runs the sampler with an explicit seed and returns a
:class:`~lupusbayes.fitting.result.FitResult` holding one ``xarray.DataTree`` with the groups
``posterior``, ``sample_stats``, ``prior``, ``prior_predictive``, ``posterior_predictive``,
``log_likelihood``, ``observed_data``, ``constant_data``, ``dose_response`` and
``prior_dose_response``, and the convergence diagnostics.

Every random step takes its own stream spawned from the one ``seed`` (sampling, the retry,
prior draws, EXNEX indicators, predictive draws, the dose-response integration), so a fit is
reproducible from its seed and any part can be re-run alone.
"""

from __future__ import annotations

import json
import time
from typing import Protocol

import numpy as np
import xarray as xr

from lupusbayes.errors import ModelSetupError
from lupusbayes.fitting.cache import DEFAULT_CACHE, CompiledDesign, DesignCache
from lupusbayes.fitting.diagnostics import FREE_PARAMETERS_ATTR, SamplingAttempt, diagnose
from lupusbayes.fitting.quiet import quiet_pymc
from lupusbayes.fitting.result import FitResult, PriorPredictive
from lupusbayes.models.base import BayesianModel
from lupusbayes.spec import FitSettings

__all__ = ["fit", "FitProgress", "prior_predictive", "sample_prior", "draw_prior", "run_sampler", "assemble_tree",
           "seed_streams", "stream_seed", "SEED_STREAMS", "nutpie_draws", "count_divergences"]


class FitProgress(Protocol):
    """Where a fit reports what it is doing (the command line draws it on a terminal)."""

    def step(self, message: str) -> None:
        """A stage begins (one line)."""

    def sampling(self, finished_draws: int, total_draws: int, divergences: int, tuning: bool) -> None:
        """Sampler progress over all chains, called a few times a second."""


#: The named random streams spawned from a fit's master seed, in spawn order.
SEED_STREAMS = ("sampling", "retry", "prior", "completion", "predictive", "dose_response")


def seed_streams(seed: int) -> dict[str, np.random.SeedSequence]:
    """One independent ``SeedSequence`` per named stream of :data:`SEED_STREAMS`."""
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise ModelSetupError(f"seed must be a non-negative whole number (got {seed!r})")
    children = np.random.SeedSequence(int(seed)).spawn(len(SEED_STREAMS))
    return dict(zip(SEED_STREAMS, children, strict=True))


def stream_seed(sequence: np.random.SeedSequence) -> int:
    """A 32-bit integer seed drawn from ``sequence`` (for samplers that take an int)."""
    return int(sequence.generate_state(1, dtype=np.uint32)[0])


def run_sampler(model: BayesianModel, design: CompiledDesign, settings: FitSettings, target_accept: float,
                seed: int, progress: FitProgress | None = None) -> xr.DataTree:
    """One NUTS run (PyMC or nutpie, as ``settings.sampler`` says): ``posterior`` and ``sample_stats``.

    The single entry point to MCMC, so tests of plumbing can replace it (the mock tier).
    """
    if settings.sampler == "nutpie":
        return _sample_nutpie(model, design, settings, target_accept, seed, progress)
    import pymc as pm

    callback = None
    if progress is not None:
        total = settings.chains * (settings.draws + settings.tune)
        counter = {"draws": 0, "divergences": 0, "last": 0.0}

        def callback(trace, draw):  # PyMC calls this after every draw of every chain
            counter["draws"] += 1
            counter["divergences"] += int(bool(draw.stats[0].get("diverging", False))) if draw.stats else 0
            now = time.perf_counter()
            if now - counter["last"] > 0.2 or counter["draws"] == total:
                counter["last"] = now
                progress.sampling(counter["draws"], total, counter["divergences"], bool(draw.tuning))

    with quiet_pymc():
        return pm.sample(
            draws=settings.draws,
            tune=settings.tune,
            chains=settings.chains,
            cores=settings.cores,
            random_seed=seed,
            nuts_sampler="pymc",
            nuts={"target_accept": target_accept},
            model=design.graph_with_outcomes(model),
            quiet=True,
            progressbar=False,
            compute_convergence_checks=False,
            callback=callback,
        )


#: Above this many sampled parameters nutpie adapts a diagonal mass matrix instead of a low-rank one.
LOW_RANK_MAX_PARAMETERS = 200


def _sample_nutpie(model: BayesianModel, design: CompiledDesign, settings: FitSettings, target_accept: float,
                   seed: int, progress: FitProgress | None) -> xr.DataTree:
    """nutpie on the design's compiled model: a refit only swaps the data."""
    def report(chains) -> None:
        progress.sampling(sum(c.finished_draws for c in chains), sum(c.total_draws for c in chains),
                          sum(c.divergences for c in chains), any(c.tuning for c in chains))

    return nutpie_draws(design.nutpie_model(model), settings, target_accept, seed,
                        progress_callback=None if progress is None else report)


def nutpie_draws(compiled, settings: FitSettings, target_accept: float, seed: int, *,
                 progress_callback=None) -> xr.DataTree:
    """One nutpie run of a compiled model (holding its data) with ``settings``: ``posterior`` and ``sample_stats``."""
    import nutpie

    # low-rank mass-matrix adaptation learns the correlations (slope vs dose-group effects: ~1.5x the
    # ESS on the small models) but re-estimates from a window of draws, which is too costly beyond a
    # few hundred parameters (510 parameters of a 500-patient SLEDAI-2K fit: 322 s against 44 s)
    adaptation = "low_rank" if compiled.n_dim <= LOW_RANK_MAX_PARAMETERS else "diag"
    tree = nutpie.sample(
        compiled, draws=settings.draws, tune=settings.tune, chains=settings.chains,
        cores=settings.cores or min(settings.chains, 2), seed=seed, progress_bar=False,
        progress_callback=progress_callback, progress_rate=250,
        target_accept=target_accept, save_warmup=False, adaptation=adaptation,
    )
    keep = [g for g in ("posterior", "sample_stats") if g in tree.children]
    return xr.DataTree.from_dict({g: tree[g].to_dataset() for g in keep})


def count_divergences(tree: xr.DataTree) -> int:
    """Divergent transitions recorded in a sampled tree's ``sample_stats`` (0 when not recorded)."""
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
    cache: DesignCache | None = None,
    progress: FitProgress | None = None,
) -> FitResult:
    """Sample ``model``'s posterior with NUTS and run every check a statistician expects.

    Parameters
    ----------
    model
        A :class:`~lupusbayes.CRSModel`, :class:`~lupusbayes.BLRM` or :class:`~lupusbayes.SledaiModel`.
    seed
        Master seed; every random step uses a stream spawned from it.
    settings
        Draws, tune, chains, sampler, target_accept and the convergence gate
        (default: the spec's ``[fitting]`` table).
    prior_draws
        Number of prior draws for the prior predictive checks.
    cache
        Where compiled designs are kept (default: the process-wide
        :data:`~lupusbayes.fitting.cache.DEFAULT_CACHE`).
    progress
        Receives a line per stage and the sampler's progress (see :class:`FitProgress`);
        ``None`` (the default) is silent.

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
    streams = seed_streams(seed)
    say = progress.step if progress is not None else (lambda message: None)
    started = time.perf_counter()
    cache = cache or DEFAULT_CACHE
    say(f"{model.name}: {'building' if model not in cache else 'reusing'} the model graph")
    design = cache.get(model)
    attempts: list[SamplingAttempt] = []
    say(f"{model.name}: sampling {settings.chains} chains x {settings.draws} draws after {settings.tune} tuning steps"
        f" ({settings.sampler}; compiling on first use)")
    tick = time.perf_counter()
    sampled = run_sampler(model, design, settings, settings.target_accept, stream_seed(streams["sampling"]), progress)
    attempts.append(SamplingAttempt(settings.target_accept, count_divergences(sampled), time.perf_counter() - tick))
    if attempts[-1].divergences > settings.gate.divergences_max:
        say(f"{model.name}: {attempts[-1].divergences} divergences; sampling again at target_accept "
            f"{settings.retry_target_accept:g}")
        tick = time.perf_counter()
        sampled = run_sampler(model, design, settings, settings.retry_target_accept, stream_seed(streams["retry"]),
                              progress)
        attempts.append(SamplingAttempt(settings.retry_target_accept, count_divergences(sampled),
                                        time.perf_counter() - tick))
    say(f"{model.name}: prior draws, predictive checks, log-likelihood, dose-response, diagnostics")
    tree = assemble_tree(model, design, sampled, streams, prior_draws=prior_draws)
    diagnostics = diagnose(model, tree, settings, attempts)
    return FitResult(model, tree, diagnostics, settings, int(seed), time.perf_counter() - started)


def sample_prior(model: BayesianModel, draws: int, seed: int, *, cache: DesignCache | None = None) -> xr.Dataset:
    """Draws of every random variable and deterministic from the model's prior (one chain).

    What ``pm.sample_prior_predictive`` does, with the forward sampler compiled once per design
    (see :mod:`lupusbayes.fitting.cache`) and only reseeded on later calls.
    """
    return draw_prior((cache or DEFAULT_CACHE).get(model), draws, seed)


def draw_prior(design: CompiledDesign, draws: int, seed: int) -> xr.Dataset:
    """:func:`sample_prior` for an already compiled design."""
    import pymc as pm
    from pymc.pytensorf import reseed_rngs

    names, function, generators = design.prior_function()
    reseed_rngs(generators, seed)
    values = zip(*(function() for _ in range(draws)), strict=True)
    prior = {name: np.stack(column) for name, column in zip(names, values, strict=True)}
    with quiet_pymc():
        return pm.to_inference_data(prior=prior, model=design.graph)["prior"].to_dataset()


def prior_predictive(model: BayesianModel, *, seed: int, draws: int = 4000,
                     cache: DesignCache | None = None) -> PriorPredictive:
    """Draw from ``model``'s prior: parameters, replicated outcomes and the per-dose quantities.

    No MCMC. The streams are those of :func:`fit` with the same seed, so the prior group of a
    fit and this agree in distribution.

    Examples
    --------
    >>> import lupusbayes as lb
    >>> from lupusbayes.fitting import prior_predictive
    >>> check = prior_predictive(lb.BLRM(lb.load_kn5601(), lb.load_spec("kn5601")), seed=1)  # doctest: +SKIP
    >>> check.dose_summary()                                                                 # doctest: +SKIP
    """
    streams = seed_streams(seed)
    rng = {name: np.random.default_rng(sequence) for name, sequence in streams.items()}
    design = (cache or DEFAULT_CACHE).get(model)
    prior = model.complete_draws(draw_prior(design, draws, stream_seed(streams["prior"])), rng["completion"],
                                 prior=True)
    tree = xr.DataTree.from_dict({
        "prior": prior,
        "prior_predictive": model.simulate_outcomes(prior, rng["predictive"]),
        "observed_data": model.observed_data(),
        "prior_dose_response": model.dose_response(prior, rng["dose_response"]),
    })
    return PriorPredictive(model, tree, int(seed))


def assemble_tree(model: BayesianModel, design: CompiledDesign, sampled: xr.DataTree,
                  streams: dict[str, np.random.SeedSequence], *, prior_draws: int) -> xr.DataTree:
    """Complete raw draws into the full DataTree (prior, predictive, log-likelihood, derived)."""
    rng = {name: np.random.default_rng(sequence) for name, sequence in streams.items()}
    posterior = model.complete_draws(sampled["posterior"].to_dataset(), rng["completion"])
    posterior.attrs[FREE_PARAMETERS_ATTR] = json.dumps(list(design.free_parameters))
    prior = model.complete_draws(draw_prior(design, prior_draws, stream_seed(streams["prior"])), rng["completion"],
                                 prior=True)
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
    return xr.DataTree.from_dict(dict(groups.items()))

