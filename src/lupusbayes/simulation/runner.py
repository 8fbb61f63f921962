"""Running thousands of simulated trials: chunks, seeds, workers, a Dask cluster, resuming.

A :class:`SimulationPlan` (spec, scenarios, designs, number of trials, seed, chunk size) is cut
into chunks of ``chunk_size`` trials per scenario. Chunk ``c`` of scenario ``s`` draws its
latent patients from ``SeedSequence(seed, spawn_key=(s, c))`` and runs every design on them
(common random numbers: designs differ by their choices, not their luck). A chunk's result
depends on nothing but the plan and its own number, so running the chunks in one process, in
a pool of processes or on a Dask cluster gives the same numbers, bit for bit, and a run that
was interrupted can resume from the chunks it finished (``checkpoint``): each finished chunk
is written atomically as a CSV file next to a manifest of the plan, and a checkpoint of a
different plan is refused. Each chunk file opens with a line that names the plan's fingerprint,
the seed, the chunk's spawn key and trials, and the SHA-256 of the rest of the file: a chunk
copied in from a run with another seed, or edited, is refused when read back (an integrity
check against mistakes, not a defence against someone who recomputes the hash).
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import io
import json
import multiprocessing
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from lupusbayes._io import write_text_atomic
from lupusbayes._version import __version__
from lupusbayes.decisions import design_for
from lupusbayes.errors import LupusBayesError, SimulationError
from lupusbayes.simulation.engine import PosteriorBank, TrialResults, level_columns, max_patients_of, simulate_trials
from lupusbayes.simulation.metrics import operating_characteristics, paired_differences
from lupusbayes.simulation.patients import draw_latent_patients
from lupusbayes.simulation.scenarios import ScenarioSet
from lupusbayes.spec import DESIGNS, CodataPriors, TrialSpec

__all__ = ["SimulationPlan", "Chunk", "SimulationResult", "simulate", "run_chunk", "CheckpointError",
           "clear_posterior_cache", "DEFAULT_CHUNK_SIZE", "DEFAULT_DESIGNS", "MAX_TRIALS"]

DEFAULT_CHUNK_SIZE = 100
#: The designs a simulation compares unless told otherwise: the trial's own, the BLRM with EWOC, BOIN, 3+3.
DEFAULT_DESIGNS = ("lupusbayes", "blrm_ewoc", "boin", "3+3")
MAX_TRIALS = 1_000_000


class CheckpointError(LupusBayesError):
    """A checkpoint folder that belongs to another plan, or a chunk file that is not ours."""


@dataclass(frozen=True)
class Chunk:
    """Trials ``first`` to ``stop - 1`` of scenario number ``scenario`` (both 0-based)."""

    scenario: int
    number: int
    first: int
    stop: int

    @property
    def size(self) -> int:
        return self.stop - self.first

    @property
    def file_name(self) -> str:
        """Names the trials too: a partial last chunk of a shorter run is not this chunk."""
        return f"scenario-{self.scenario + 1:03d}-chunk-{self.number + 1:05d}-trials-{self.first + 1}-{self.stop}.csv"


@dataclass(frozen=True)
class SimulationPlan:
    """What to simulate. ``designs`` are names of :data:`lupusbayes.decisions.DESIGNS`."""

    spec: TrialSpec
    scenarios: ScenarioSet
    designs: tuple[str, ...]
    n_trials: int
    seed: int
    chunk_size: int = DEFAULT_CHUNK_SIZE
    #: the target study's priors given its co-data (None: the spec's priors, no borrowing)
    priors: CodataPriors | None = None

    def __post_init__(self) -> None:
        unknown = [name for name in self.designs if name not in DESIGNS]
        if not self.designs or unknown:
            raise ValueError(f"unknown design(s) {', '.join(unknown) or '(none given)'}; designs: {', '.join(DESIGNS)}")
        if len(set(self.designs)) != len(self.designs):
            raise ValueError("each design may be named once")
        for name, value, low, high in (("n_trials", self.n_trials, 1, MAX_TRIALS),
                                       ("chunk_size", self.chunk_size, 1, 100_000),
                                       ("seed", self.seed, 0, 2**63 - 1)):
            if isinstance(value, bool) or not isinstance(value, int | np.integer) or not low <= value <= high:
                raise ValueError(f"{name} must be a whole number from {low} to {high} (got {value!r})")
        max_patients_of(self.trial_spec)

    @property
    def trial_spec(self) -> TrialSpec:
        """The spec the trials run under: with the scenario file's ``[simulation]`` changes, if any."""
        return self.scenarios.applied_to(self.spec)

    def chunks(self) -> list[Chunk]:
        out = []
        for scenario in range(len(self.scenarios.scenarios)):
            for number, first in enumerate(range(0, self.n_trials, self.chunk_size)):
                out.append(Chunk(scenario, number, first, min(first + self.chunk_size, self.n_trials)))
        return out

    def describe(self) -> dict:
        """What identifies the results (contents, not file names): a chunk computed under the same
        description is the same chunk. ``n_trials`` is not part of it: more trials extend a run."""
        return {"lupusbayes": __version__, "spec_sha256": self.spec.sha256, "scenarios_sha256": self.scenarios.sha256,
                "scenario_names": list(self.scenarios.names()), "designs": list(self.designs), "seed": int(self.seed),
                "chunk_size": int(self.chunk_size),
                "priors": None if self.priors is None else self.priors.describe()}

    @property
    def fingerprint(self) -> str:
        return hashlib.sha256(json.dumps(self.describe(), sort_keys=True).encode("utf-8")).hexdigest()


# ---- one chunk --------------------------------------------------------------------------------

_BANKS: dict[str, PosteriorBank] = {}  # per process: exact posteriors do not depend on who else is in the batch


def clear_posterior_cache() -> None:
    """Forget this process's cached exact posteriors (benchmarks time a run as a fresh process would)."""
    _BANKS.clear()


def _bank(spec: TrialSpec, seed: int, priors: CodataPriors | None) -> PosteriorBank:
    key = spec.sha256 + repr((spec.models.blrm.prior, spec.models.response.prior, spec.fitting, seed,
                              None if priors is None else (priors.toxicity, priors.response, priors.response_final)))
    if key not in _BANKS:
        _BANKS.clear()  # one spec at a time is the common case; keep memory bounded
        _BANKS[key] = PosteriorBank.for_spec(spec, priors=priors, fallback_seed=seed)
    return _BANKS[key]


def run_chunk(plan: SimulationPlan, chunk: Chunk) -> pd.DataFrame:
    """Every design of the plan on one chunk's latent patients: one row per trial and design."""
    scenario = plan.scenarios.scenarios[chunk.scenario]
    spec = plan.trial_spec
    sequence = np.random.SeedSequence(plan.seed, spawn_key=(chunk.scenario, chunk.number))
    latent = draw_latent_patients(sequence, chunk.size, max_patients_of(spec),
                                  p_not_evaluable=scenario.p_not_evaluable).with_correlation(
        plan.scenarios.toxicity_response_correlation)
    bank = _bank(spec, plan.seed, plan.priors)
    frames = [simulate_trials(spec, design_for(spec, name), scenario, latent, bank=bank,
                              first_trial=chunk.first).to_frame() for name in plan.designs]
    return pd.concat(frames, ignore_index=True)


def _run_chunk_task(plan: SimulationPlan, chunk: Chunk) -> tuple[Chunk, pd.DataFrame]:
    return chunk, run_chunk(plan, chunk)


# ---- checkpoints ----------------------------------------------------------------------------------


class _Checkpoint:
    """A folder of finished chunks for one plan (see the module docstring)."""

    MANIFEST = "manifest.json"

    def __init__(self, folder: Path, plan: SimulationPlan) -> None:
        self.folder, self.plan = folder, plan
        manifest = folder / self.MANIFEST
        if folder.exists() and not folder.is_dir():
            raise CheckpointError(f"{folder}: is a file; give a folder for the checkpoint")
        if manifest.exists():
            try:
                recorded = json.loads(manifest.read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
                raise CheckpointError(f"{manifest}: not a lupusbayes checkpoint manifest ({error})") from None
            if not isinstance(recorded, dict) or recorded.get("fingerprint") != plan.fingerprint:
                differs = ""
                if isinstance(recorded, dict) and isinstance(recorded.get("plan"), dict):
                    names = [key for key, value in plan.describe().items() if recorded["plan"].get(key) != value]
                    differs = f" (differs in: {', '.join(names)})" if names else ""
                raise CheckpointError(f"{folder}: the checkpoint belongs to another simulation plan{differs}; give "
                                      "another --checkpoint folder or remove this one")
        else:
            if folder.exists() and any(folder.iterdir()):
                raise CheckpointError(f"{folder}: the folder is not empty and has no {self.MANIFEST}; give an empty or "
                                      "new folder for the checkpoint")
            folder.mkdir(parents=True, exist_ok=True)
            write_text_atomic(manifest, json.dumps({"fingerprint": plan.fingerprint, "plan": plan.describe()},
                                                   indent=2), overwrite=True)

    def _provenance(self, chunk: Chunk, body: str) -> str:
        """The first line of a chunk file: the plan, the chunk's seed key and trials, and the body's hash."""
        digest = hashlib.sha256(body.encode("utf-8")).hexdigest()
        return (f"# lupusbayes chunk: plan {self.plan.fingerprint}; seed {int(self.plan.seed)}; spawn key "
                f"({chunk.scenario}, {chunk.number}); trials {chunk.first + 1}-{chunk.stop}; sha256 {digest}")

    def load(self, chunk: Chunk) -> pd.DataFrame | None:
        path = self.folder / chunk.file_name
        if not path.exists():
            return None
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            raise CheckpointError(f"{path}: cannot read the chunk ({error}); remove the file to recompute it") from None
        first, _, body = text.partition("\n")
        if first != self._provenance(chunk, body):  # another plan or seed, another chunk, or changed numbers
            recorded = re.search(r"plan ([0-9a-f]{64}); seed ([0-9]+); spawn key \(([0-9]+), ([0-9]+)\)", first)
            if recorded is None:
                why = "it does not say which plan and seed it belongs to"
            elif recorded[1] != self.plan.fingerprint:
                why = f"it was computed for another plan (seed {recorded[2]})" if recorded[2] != str(self.plan.seed) \
                    else "it was computed for another plan"
            elif (int(recorded[3]), int(recorded[4])) != (chunk.scenario, chunk.number):
                why = "it holds another chunk"
            else:
                why = "its contents do not match its recorded hash (edited or truncated)"
            raise CheckpointError(f"{path}: not a chunk of this plan: {why}; remove it to recompute")
        try:
            frame = pd.read_csv(io.StringIO(body), keep_default_na=False)
        except (ValueError, pd.errors.ParserError) as error:
            raise CheckpointError(f"{path}: cannot read the chunk ({error}); remove the file to recompute it") from None
        expected = pd.concat([_expected_index(chunk, name) for name in self.plan.designs], ignore_index=True)
        n_levels = len(self.plan.spec.dosing.levels)
        columns = set(_frame_columns(n_levels))
        if set(frame.columns) != columns or len(frame) != len(expected):
            raise CheckpointError(f"{path}: not a chunk of this plan (columns or rows differ); remove it to recompute")
        if (frame["design"].astype(str).tolist() != expected["design"].tolist()
                or frame["trial"].tolist() != expected["trial"].tolist()
                or set(frame["scenario"].astype(str)) != {self.plan.scenarios.scenarios[chunk.scenario].name}):
            raise CheckpointError(f"{path}: holds other trials than chunk {chunk.number + 1} of scenario "
                                  f"{chunk.scenario + 1}; remove it to recompute")
        try:
            for name in columns - {"scenario", "design", "stop_reason", "final_analysis_changed", "duration_days"}:
                values = pd.to_numeric(frame[name], errors="raise")
                if not np.all(np.mod(values.to_numpy(dtype=float), 1) == 0):
                    raise ValueError(f"{name} holds a value that is not a whole number")
                frame[name] = values.astype(np.int64)
            frame["duration_days"] = pd.to_numeric(frame["duration_days"], errors="raise").astype(float)
            flags = frame["final_analysis_changed"].map({"True": True, "False": False, True: True, False: False})
            if flags.isna().any():
                raise ValueError("final_analysis_changed holds a value that is not True or False")
            frame["final_analysis_changed"] = flags.astype(bool)
        except (ValueError, TypeError) as error:
            raise CheckpointError(f"{path}: a value is not a number ({error}); remove it to recompute") from None
        problem = _implausible(frame, n_levels, max_patients_of(self.plan.trial_spec))
        if problem:
            raise CheckpointError(f"{path}: {problem}; not a chunk this plan wrote (remove it to recompute)")
        return frame[list(_frame_columns(n_levels))]

    def save(self, chunk: Chunk, frame: pd.DataFrame) -> None:
        body = frame.to_csv(index=False)
        write_text_atomic(self.folder / chunk.file_name, self._provenance(chunk, body) + "\n" + body, overwrite=True)


def _implausible(frame: pd.DataFrame, n_levels: int, max_patients: int) -> str:
    """What in a chunk read back cannot come from a simulation of this plan ('' if nothing)."""
    def per_level(name):
        return frame[level_columns(name, n_levels)].to_numpy()

    patients, dlts, responders = per_level("n_patients"), per_level("n_dlt"), per_level("n_responders")
    replaced = frame["n_not_evaluable"].to_numpy()
    if (replaced < 0).any() or (replaced > patients.sum(axis=1)).any():
        return "more replaced patients than patients"
    if (patients < 0).any() or (patients.sum(axis=1) - replaced > max_patients).any():
        return f"evaluable patients per trial outside 0-{max_patients}"
    if (dlts < 0).any() or (dlts > patients).any() or (responders < 0).any() or (responders > patients).any():
        return "DLTs or responders outside 0 to the patients treated"
    if not frame["selected_level"].between(0, n_levels).all():
        return f"a selected level outside 0-{n_levels}"
    duration = frame["duration_days"].to_numpy()
    if not np.isfinite(duration).all() or (duration < 0).any() or (frame["n_decisions"] < 1).any():
        return "a duration or a number of decisions that is not possible"
    if (frame["n_mcmc_decisions"] < 0).any() or (frame["n_mcmc_decisions"] > frame["n_decisions"]).any():
        return "more decisions from the MCMC fallback than decisions"
    return ""


def _frame_columns(n_levels: int) -> tuple[str, ...]:
    base = ("scenario", "design", "trial", "selected_level", "stop_reason", "duration_days", "n_decisions",
            "final_analysis_changed", "n_mcmc_decisions", "n_not_evaluable")
    return base + tuple(column for name in ("n_patients", "n_dlt", "n_responders")
                        for column in level_columns(name, n_levels))


def _expected_index(chunk: Chunk, design: str) -> pd.DataFrame:
    return pd.DataFrame({"design": design, "trial": np.arange(chunk.first, chunk.stop)})


# ---- the run ---------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class SimulationResult:
    """Every simulated trial, and the operating characteristics (see :mod:`lupusbayes.simulation.metrics`)."""

    plan: SimulationPlan
    trials: pd.DataFrame = field(repr=False)
    summary: pd.DataFrame = field(repr=False)
    elapsed_seconds: float
    chunks_resumed: int = 0
    #: each design minus the plan's first design, trial by trial, with the paired MCSE (see metrics.paired_differences)
    differences: pd.DataFrame = field(default_factory=pd.DataFrame, repr=False)

    def results(self, scenario: str, design: str) -> TrialResults:
        part = self.trials[(self.trials["scenario"] == scenario) & (self.trials["design"] == design)]
        return TrialResults.from_frame(part, len(self.plan.spec.dosing.levels))

    def __repr__(self) -> str:
        return (f"SimulationResult({self.plan.n_trials} trials x {len(self.plan.scenarios.scenarios)} scenarios x "
                f"{len(self.plan.designs)} designs, seed {self.plan.seed}, {self.elapsed_seconds:.1f} s)")


Progress = Callable[[int, int, int], None]  # (chunks done, chunks in all, trials done per design)


def _executor_results(plan: SimulationPlan, todo: list[Chunk], workers: int, dask_client) -> Iterable[tuple[Chunk, pd.DataFrame]]:
    if dask_client is not None:
        from distributed import as_completed

        plan_future = dask_client.scatter(plan, broadcast=True)
        futures = [dask_client.submit(_run_chunk_task, plan_future, chunk, pure=False) for chunk in todo]
        for future in as_completed(futures):
            yield future.result()
        return
    if workers <= 1 or len(todo) <= 1:
        for chunk in todo:
            yield chunk, run_chunk(plan, chunk)
        return
    # workers start from a clean server process, never from a fork of this (possibly threaded) one
    methods = multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")
    with concurrent.futures.ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        futures = [pool.submit(_run_chunk_task, plan, chunk) for chunk in todo]
        try:
            for future in concurrent.futures.as_completed(futures):
                yield future.result()
        except concurrent.futures.process.BrokenProcessPool:
            raise SimulationError("a worker process died; in a script, call simulate(..., workers=N) under "
                                  "`if __name__ == \"__main__\":` (Python starts workers by importing the script), "
                                  "or use workers=1") from None
        finally:
            for future in futures:
                future.cancel()


def simulate(plan: SimulationPlan, *, workers: int = 1, dask_client=None, checkpoint: str | Path | None = None,
             progress: Progress | None = None) -> SimulationResult:
    """Run the plan: in this process (``workers=1``), a pool of ``workers`` processes, or on ``dask_client``.

    The result is the same whichever way it runs (see the module docstring). With
    ``checkpoint``, finished chunks are kept in that folder and reused by a later call with the
    same plan.

    Examples
    --------
    >>> import lupusbayes as lb
    >>> from lupusbayes.simulation import SimulationPlan, load_scenarios, simulate
    >>> spec = lb.load_spec("axa_nk02")
    >>> plan = SimulationPlan(spec, load_scenarios("axa_nk02", spec), ("3+3",), n_trials=40, seed=1)
    >>> result = simulate(plan)
    >>> sorted(set(result.summary["design"]))
    ['3+3']
    """
    started = time.perf_counter()
    chunks = plan.chunks()
    store = _Checkpoint(Path(checkpoint), plan) if checkpoint is not None else None
    frames: dict[Chunk, pd.DataFrame] = {}
    if store is not None:
        for chunk in chunks:
            loaded = store.load(chunk)
            if loaded is not None:
                frames[chunk] = loaded
    resumed = len(frames)
    todo = [chunk for chunk in chunks if chunk not in frames]
    done_trials = sum(chunk.size for chunk in frames)
    if progress is not None:
        progress(len(frames), len(chunks), done_trials)
    workers = max(1, min(int(workers), len(todo) or 1))  # as asked, even beyond the cores: results do not change
    for chunk, frame in _executor_results(plan, todo, workers, dask_client):
        frames[chunk] = frame
        if store is not None:
            store.save(chunk, frame)
        done_trials += chunk.size
        if progress is not None:
            progress(len(frames), len(chunks), done_trials)
    ordered = [frames[chunk] for chunk in chunks]  # plan order, whatever order the chunks finished in
    trials = pd.concat(ordered, ignore_index=True)
    design_rank = {name: rank for rank, name in enumerate(plan.designs)}
    scenario_rank = {name: rank for rank, name in enumerate(plan.scenarios.names())}
    order = np.lexsort((trials["trial"].to_numpy(), trials["design"].map(design_rank).to_numpy(),
                        trials["scenario"].map(scenario_rank).to_numpy()))
    trials = trials.iloc[order].reset_index(drop=True)
    summaries, differences = [], []
    n_levels = len(plan.spec.dosing.levels)
    for scenario in plan.scenarios.scenarios:
        per_design = {}
        for name in plan.designs:
            part = trials[(trials["scenario"] == scenario.name) & (trials["design"] == name)]
            per_design[name] = TrialResults.from_frame(part, n_levels)
            summaries.append(operating_characteristics(per_design[name], scenario, plan.trial_spec,
                                                       plan.scenarios.efficacious_response))
        if len(plan.designs) > 1:
            differences.append(paired_differences(per_design, scenario, plan.trial_spec,
                                                  plan.scenarios.efficacious_response, reference=plan.designs[0]))
    summary = pd.concat(summaries, ignore_index=True)
    paired = pd.concat(differences, ignore_index=True) if differences else pd.DataFrame()
    return SimulationResult(plan, trials, summary, time.perf_counter() - started, resumed, paired)
