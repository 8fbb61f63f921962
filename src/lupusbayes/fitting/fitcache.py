"""Fit once, use many times: a content-addressed cache of fits.

``decide`` and ``report`` on the same data and seed need the same fits; each used to refit
(tens of seconds). :func:`cached_fit` keeps every fit it makes in a folder, under a key that is
a hash of everything the fit depends on: the spec's text (its SHA-256), the model's class and
settings, its data (every observed and constant value and the cohort it came from), the
sampling settings, the seed, the prior draws and the lupusbayes version. The same key is the
same fit, bit for bit; anything else is another key, so a stale fit can never be returned.

A cached fit is a fit file (:meth:`FitResult.save`) and is read back with every check of
:func:`~lupusbayes.fitting.fitfile.load_fit` (a tampered or truncated entry is refused, removed
and refitted, with a warning). Next to each file a small JSON says what it is, for
``lupusbayes cache list``.

The folder: ``$LUPUSBAYES_CACHE_DIR``, else ``$XDG_CACHE_HOME/lupusbayes/fits``, else
``~/.cache/lupusbayes/fits``.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lupusbayes._io import write_text_atomic
from lupusbayes._version import __version__
from lupusbayes.errors import FitFileError, LupusBayesWarning
from lupusbayes.spec import FitSettings

__all__ = ["FitCache", "CacheEntry", "cached_fit", "default_cache_folder", "fit_key", "CACHE_ENVIRONMENT"]

CACHE_ENVIRONMENT = "LUPUSBAYES_CACHE_DIR"


def default_cache_folder() -> Path:
    """``$LUPUSBAYES_CACHE_DIR``, ``$XDG_CACHE_HOME/lupusbayes/fits`` or ``~/.cache/lupusbayes/fits``."""
    if os.environ.get(CACHE_ENVIRONMENT):
        return Path(os.environ[CACHE_ENVIRONMENT])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "lupusbayes" / "fits"


def _digest_dataset(digest, dataset) -> None:
    for name in sorted(dataset.data_vars):
        variable = dataset[name]
        digest.update(name.encode())
        digest.update(repr(variable.dims).encode())
        values = variable.to_numpy()
        digest.update(values.astype(str).tobytes() if values.dtype.kind in "OUS" else np.ascontiguousarray(values).tobytes())
    for name in sorted(dataset.coords):
        digest.update(name.encode())
        digest.update(np.asarray(dataset[name].to_numpy()).astype(str).tobytes())


def fit_key(model, *, seed: int, settings: FitSettings, prior_draws: int) -> str:
    """The cache key of a fit: a SHA-256 of everything the fit depends on (see the module docstring)."""
    digest = hashlib.sha256()
    for part in (__version__, model.spec.sha256, type(model).__name__, repr(model.settings), repr(settings),
                 str(int(seed)), str(int(prior_draws))):
        digest.update(part.encode())
        digest.update(b"\x00")
    _digest_dataset(digest, model.observed_data())
    _digest_dataset(digest, model.constant_data())
    if model.cohort is not None:
        digest.update(model.cohort.to_csv(layout="long").encode())
    digest.update(repr(model.spec.observations).encode())
    return digest.hexdigest()


@dataclass(frozen=True)
class CacheEntry:
    """One cached fit, as ``lupusbayes cache list`` shows it."""

    key: str
    path: Path
    size_bytes: int
    created: str
    description: str


class FitCache:
    """A folder of fits by key (see the module docstring). ``folder=None``: :func:`default_cache_folder`."""

    def __init__(self, folder: str | Path | None = None) -> None:
        self.folder = Path(folder) if folder is not None else default_cache_folder()

    def path(self, key: str) -> Path:
        return self.folder / f"{key}.nc"

    def get(self, model, key: str):
        """The cached fit under ``key``, checked like any fit file; None when absent (or refused and removed)."""
        from lupusbayes.fitting.fitfile import load_fit

        path = self.path(key)
        if not path.is_file():
            return None
        try:
            result = load_fit(path, spec=model.spec)
        except FitFileError as error:
            warnings.warn(f"the cached fit {path} was refused ({error}); it is removed and the model refitted",
                          LupusBayesWarning, stacklevel=3)
            self._remove(key)
            return None
        return result

    def put(self, result, key: str) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        result.save(self.path(key), overwrite=True)
        description = {"model": result.model.name, "trial": result.model.spec.trial.id, "seed": result.seed,
                       "observations": result.model.n_observations, "converged": bool(result.converged),
                       "created": time.strftime("%Y-%m-%d %H:%M:%S"), "lupusbayes": __version__}
        write_text_atomic(self.folder / f"{key}.json", json.dumps(description, indent=1), overwrite=True)

    def entries(self) -> list[CacheEntry]:
        """Every cached fit, oldest first."""
        if not self.folder.is_dir():
            return []
        out = []
        for path in sorted(self.folder.glob("*.nc"), key=lambda p: p.stat().st_mtime):
            key = path.stem
            sidecar = self.folder / f"{key}.json"
            try:
                info = json.loads(sidecar.read_text(encoding="utf-8"))
                description = (f"{info['trial']}: {info['model']}, {info['observations']} observations, seed "
                               f"{info['seed']}, gate {'passed' if info['converged'] else 'FAILED'}")
                created = str(info["created"])
            except (OSError, ValueError, KeyError, TypeError):
                description, created = "(no description)", ""
            out.append(CacheEntry(key, path, path.stat().st_size, created, description))
        return out

    def _remove(self, key: str) -> None:
        for suffix in (".nc", ".json"):
            (self.folder / f"{key}{suffix}").unlink(missing_ok=True)

    def clear(self) -> int:
        """Remove every cached fit; returns how many."""
        entries = self.entries()
        for entry in entries:
            self._remove(entry.key)
        return len(entries)


def cached_fit(model, *, seed: int, settings: FitSettings | None = None, prior_draws: int = 1000,
               cache: FitCache | None = None, progress=None):
    """:func:`~lupusbayes.fitting.sample.fit`, read from ``cache`` when this exact fit was made before.

    ``cache=None`` fits without a cache. The fit returned is the same, bit for bit, either way.
    """
    from lupusbayes.fitting.sample import fit

    settings = settings or model.spec.fitting
    if cache is None:
        return fit(model, seed=seed, settings=settings, prior_draws=prior_draws, progress=progress)
    key = fit_key(model, seed=seed, settings=settings, prior_draws=prior_draws)
    cached = cache.get(model, key)
    if cached is not None:
        if progress is not None:
            progress.step(f"{model.name}: the fit is in the cache ({cache.path(key).name[:12]}...), not refitted")
        return cached
    result = fit(model, seed=seed, settings=settings, prior_draws=prior_draws, progress=progress)
    cache.put(result, key)
    return result
