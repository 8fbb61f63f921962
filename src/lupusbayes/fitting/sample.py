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

__all__ = ["fit", "FitProgress", "SamplerProgress", "prior_predictive", "sample_prior", "draw_prior", "run_sampler",
           "assemble_tree", "seed_streams", "stream_seed", "SEED_STREAMS", "nutpie_draws", "count_divergences"]


class FitProgress(Protocol):
    """Where a fit reports what it is doing (the command line draws it on a terminal)."""

    def step(self, message: str) -> None:
        """A stage begins (one line)."""

    def sampling(self, finished_draws: int, total_draws: int, divergences: int, tuning: bool) -> None:
        """Sampler progress over all chains, called a few times a second.

        ``finished_draws`` and ``total_draws`` count tuning steps and kept draws of all chains;
        ``divergences`` counts divergent transitions among the kept draws only (the number the
        convergence gate checks; see :class:`SamplerProgress`); ``tuning`` is true until every
        chain has finished its tuning steps, then false for the rest of the run.
        """


class SamplerProgress:
    """One sampler run's progress over all chains, counted the way the convergence gate counts.

    The gate (:func:`count_divergences`, then :func:`~lupusbayes.fitting.diagnostics.diagnose`)
    counts the divergent transitions in the kept draws' ``sample_stats.diverging``: the tuning
    steps are discarded (nutpie's ``save_warmup=False``, PyMC's ``tune``), and a divergence
    while the step size is still being adapted says nothing about the draws the posterior is
    made of. The samplers' own counters do not all make that cut (PyMC flags divergences at
    every step, tuning included), so this class makes it: :attr:`divergences` are those after
    tuning, the gate's number; :attr:`tuning_divergences` are reported apart and not counted.

    The phase is "tuning" until every chain has finished its tuning steps, then "sampling" for
    the rest of the run: it never flips back when chains run at different speeds or one after
    another (4 chains on 2 cores).

    The samplers feed it through :meth:`record_chains` (nutpie: a snapshot of every chain) or
    :meth:`record_draw` (PyMC: one draw of one chain); it passes the totals on to a
    :class:`FitProgress` at most every ``interval`` seconds, and always when the run is complete.

    Examples
    --------
    >>> tally = SamplerProgress(None, chains=1, tune=2, draws=2)
    >>> for tuning, diverging in [(True, True), (True, False), (False, False), (False, True)]:
    ...     tally.record_draw(0, tuning=tuning, diverging=diverging)
    >>> tally.divergences, tally.tuning_divergences, tally.tuning, tally.complete
    (1, 1, False, True)
    >>> tally.summary()
    '1 divergence after tuning (the gate counts these); 1 during tuning, not counted'
    """

    def __init__(self, progress: FitProgress | None, *, chains: int, tune: int, draws: int,
                 interval: float = 0.2) -> None:
        self.progress = progress
        self.chains, self.tune, self.draws = int(chains), int(tune), int(draws)
        self.total_draws = self.chains * (self.tune + self.draws)
        self.interval = interval
        self._finished: dict[object, int] = {}  # per chain: tuning steps and draws done
        self._kept_divergences: dict[object, int] = {}  # per chain: divergences after tuning
        self._tuning_divergences: dict[object, int] = {}  # per chain: divergences while tuning
        self._sampling_started = self.tune == 0  # latched: the phase never goes back to tuning
        self._last_report = -np.inf

    # ---- what the run has done ----------------------------------------------------------------

    @property
    def finished_draws(self) -> int:
        """Tuning steps and draws finished, over all chains."""
        return sum(self._finished.values())

    @property
    def divergences(self) -> int:
        """Divergent transitions after tuning, over all chains: what the gate counts."""
        return sum(self._kept_divergences.values())

    @property
    def tuning_divergences(self) -> int:
        """Divergent transitions during tuning, over all chains (discarded with the tuning steps)."""
        return sum(self._tuning_divergences.values())

    @property
    def tuning(self) -> bool:
        """True until every chain has finished its tuning steps; false from then on."""
        return not self._sampling_started

    @property
    def complete(self) -> bool:
        """Every chain has finished its tuning steps and draws."""
        return self.finished_draws >= self.total_draws

    def summary(self) -> str:
        """``'0 divergences after tuning (the gate counts these); 4 during tuning, not counted'``."""
        kept, tuning = self.divergences, self.tuning_divergences
        line = f"{kept} divergence{'' if kept == 1 else 's'} after tuning (the gate counts these)"
        return line + (f"; {tuning} during tuning, not counted" if tuning else "")

    # ---- what the samplers report ---------------------------------------------------------------

    def record_draw(self, chain, *, tuning: bool, diverging: bool) -> None:
        """One step of one chain (PyMC's callback): a tuning step or a kept draw, divergent or not."""
        self._finished[chain] = self._finished.get(chain, 0) + 1
        if diverging:
            counter = self._tuning_divergences if tuning else self._kept_divergences
            counter[chain] = counter.get(chain, 0) + 1
        self._report()

    def record_chains(self, chains) -> None:
        """A snapshot of every chain (nutpie's callback: ``nutpie.ChainProgress`` objects).

        A chain's divergences are split by where they happened: ``divergent_draws`` numbers the
        steps from the first tuning step, so those numbered ``tune`` or later are kept draws.
        """
        for number, chain in enumerate(chains):
            divergent_steps = np.asarray(list(chain.divergent_draws), dtype=int)
            kept = int(np.sum(divergent_steps >= self.tune))
            self._finished[number] = int(chain.finished_draws)
            self._kept_divergences[number] = kept
            self._tuning_divergences[number] = divergent_steps.size - kept
        self._report()

    def _report(self) -> None:
        """Update the phase, then pass the totals on, at most every ``interval`` seconds and
        always once complete."""
        if not self._sampling_started:
            done_tuning = sum(1 for finished in self._finished.values() if finished >= self.tune)
            self._sampling_started = done_tuning >= self.chains
        if self.progress is None:
            return
        now = time.perf_counter()
        if now - self._last_report < self.interval and not self.complete:
            return
        self._last_report = now
        self.progress.sampling(self.finished_draws, self.total_draws, self.divergences, self.tuning)

    def finish(self, kept_divergences: int) -> None:
        """Close the run: if the sampler's last report came before its end, report the end, with
        the divergences counted in the kept draws (``kept_divergences``)."""
        if self.complete:
            return
        self._finished = {chain: self.tune + self.draws for chain in range(self.chains)}
        self._kept_divergences = {0: int(kept_divergences)}
        self._last_report = -np.inf
        self._report()


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
                seed: int, progress: FitProgress | SamplerProgress | None = None) -> xr.DataTree:
    """One NUTS run (PyMC or nutpie, as ``settings.sampler`` says): ``posterior`` and ``sample_stats``.

    ``progress`` receives the run's progress over all chains (see :class:`SamplerProgress`,
    which counts divergences as the gate does); pass a ``SamplerProgress`` to read its counts
    after the run. The single entry point to MCMC, so tests of plumbing can replace it (the mock tier).
    """
    tally = progress if isinstance(progress, SamplerProgress) or progress is None else \
        SamplerProgress(progress, chains=settings.chains, tune=settings.tune, draws=settings.draws)
    if settings.sampler == "nutpie":
        sampled = _sample_nutpie(model, design, settings, target_accept, seed, tally)
    else:
        sampled = _sample_pymc(model, design, settings, target_accept, seed, tally)
    if tally is not None:
        tally.finish(count_divergences(sampled))
    return sampled


def _sample_pymc(model: BayesianModel, design: CompiledDesign, settings: FitSettings, target_accept: float,
                 seed: int, tally: SamplerProgress | None) -> xr.DataTree:
    """PyMC's NUTS; its callback sees every step of every chain, tuning steps included."""
    import pymc as pm

    def record(trace, draw) -> None:  # PyMC calls this after every step of every chain
        diverging = any(bool(stats.get("diverging", False)) for stats in (draw.stats or ()))
        tally.record_draw(draw.chain, tuning=bool(draw.tuning), diverging=diverging)

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
            callback=None if tally is None else record,
        )


#: Above this many sampled parameters nutpie adapts a diagonal mass matrix instead of a low-rank one.
LOW_RANK_MAX_PARAMETERS = 200


def _sample_nutpie(model: BayesianModel, design: CompiledDesign, settings: FitSettings, target_accept: float,
                   seed: int, tally: SamplerProgress | None) -> xr.DataTree:
    """nutpie on the design's compiled model: a refit only swaps the data."""
    return nutpie_draws(design.nutpie_model(model), settings, target_accept, seed,
                        progress_callback=None if tally is None else tally.record_chains)


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

    def sample(target_accept: float, stream: str) -> xr.DataTree:
        """One run, recorded in ``attempts``; with progress, a closing line of its divergences."""
        tally = None if progress is None else \
            SamplerProgress(progress, chains=settings.chains, tune=settings.tune, draws=settings.draws)
        tick = time.perf_counter()
        sampled = run_sampler(model, design, settings, target_accept, stream_seed(streams[stream]), tally)
        attempts.append(SamplingAttempt(target_accept, count_divergences(sampled), time.perf_counter() - tick))
        if tally is not None:
            tally.finish(attempts[-1].divergences)  # no-op when the sampler reported its end
            say(f"{model.name}: sampled, {tally.summary()}")
        return sampled

    sampled = sample(settings.target_accept, "sampling")
    if attempts[-1].divergences > settings.gate.divergences_max:
        say(f"{model.name}: {attempts[-1].divergences} divergences after tuning, more than the gate's "
            f"{settings.gate.divergences_max}; sampling again at target_accept {settings.retry_target_accept:g}")
        sampled = sample(settings.retry_target_accept, "retry")
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

