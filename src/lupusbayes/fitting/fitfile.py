"""One self-describing netCDF file per fit: save, load, and the registry of model classes.

The file is the fit's ``DataTree`` (plain ``arviz.from_netcdf`` opens it) with root attributes
that make it self-contained: the spec (TOML text and its hash), the cohort (tidy CSV), the
model class and settings (JSON), the fit settings, the seed, the diagnostics and the version
of lupusbayes that wrote it. :func:`load_fit` rebuilds the model from them.
"""

from __future__ import annotations

import hashlib
import json
import typing
from dataclasses import asdict, fields, is_dataclass
from pathlib import Path
from typing import Any

import xarray as xr
import numpy as np

from lupusbayes._io import write_atomic
from lupusbayes._version import __version__
from lupusbayes.cohort import Cohort, parse_cohort_text
from lupusbayes.errors import FitFileError, LupusBayesError
from lupusbayes.fitting.diagnostics import SamplingAttempt, diagnose
from lupusbayes.fitting.result import FitResult
from lupusbayes.fitting.sample import seed_streams
from lupusbayes.models.base import BayesianModel
from lupusbayes.models.sledai import SledaiModel
from lupusbayes.models.toxicity import BLRM, CRSModel, ToxicityModel
from lupusbayes.spec import FitSettings, SledaiModelSettings, ToxicityModelSettings, TrialSpec, parse_spec

__all__ = ["save_fit", "load_fit", "FILE_FORMAT_VERSION", "MODEL_CLASSES", "REQUIRED_GROUPS"]

FILE_FORMAT_VERSION = 1

#: Model classes a fit file may name, with the settings class each is rebuilt from.
MODEL_CLASSES: dict[str, tuple[type[BayesianModel], type]] = {
    "CRSModel": (CRSModel, ToxicityModelSettings),
    "BLRM": (BLRM, ToxicityModelSettings),
    "ToxicityModel": (ToxicityModel, ToxicityModelSettings),
    "SledaiModel": (SledaiModel, SledaiModelSettings),
}


def _file_attrs(result: FitResult) -> dict[str, Any]:
    model = result.model
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
        "cohort_csv": model.cohort.to_csv(layout="long") if model.cohort is not None else "",
        "cohort_source": model.cohort.source if model.cohort is not None else "",
        "seed": int(result.seed),
        "fit_settings": json.dumps(asdict(result.settings)),
        "diagnostics": json.dumps(result.diagnostics.to_dict()),
        "seconds": float(result.seconds),
    }


def save_fit(result: FitResult, path: str | Path, *, overwrite: bool = False, mkdir: bool = False) -> Path:
    """Write ``result`` to ``path`` atomically (see the module docstring and :func:`~lupusbayes._io.write_atomic`)."""
    tree = result.tree.copy()
    tree.attrs.update(_file_attrs(result))
    return write_atomic(Path(path), lambda temporary: tree.to_netcdf(temporary, engine="h5netcdf"),
                        overwrite=overwrite, mkdir=mkdir)


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


#: Groups every fit file holds; a file without one of them is refused.
REQUIRED_GROUPS = ("posterior", "sample_stats", "observed_data", "constant_data", "dose_response", "prior",
                   "prior_predictive", "posterior_predictive", "log_likelihood", "prior_dose_response")


class _Attributes:
    """The root attributes of a fit file, read as untrusted input: each with its expected type."""

    def __init__(self, attrs, path: Path) -> None:
        self.attrs = dict(attrs)
        self.path = path

    def error(self, message: str) -> FitFileError:
        return FitFileError(f"{self.path}: {message}")

    def text(self, name: str) -> str:
        if name not in self.attrs:
            raise self.error(f"attribute '{name}' is missing; not a complete lupusbayes fit (refit)")
        value = self.attrs[name]
        if not isinstance(value, str):
            raise self.error(f"attribute '{name}' must be text, found {type(value).__name__}")
        return value

    def number(self, name: str, kind=float):
        if name not in self.attrs:
            raise self.error(f"attribute '{name}' is missing; not a complete lupusbayes fit (refit)")
        try:
            value = kind(self.attrs[name])
        except (TypeError, ValueError, OverflowError):
            raise self.error(f"attribute '{name}' must be a number, found {self.attrs[name]!r}") from None
        if isinstance(value, float) and not np.isfinite(value):
            raise self.error(f"attribute '{name}' must be finite, found {value}")
        return value

    def json(self, name: str) -> Any:
        try:
            return json.loads(self.text(name))
        except json.JSONDecodeError as error:
            raise self.error(f"attribute '{name}' is not valid JSON ({error.msg}, position {error.pos})") from None


def load_fit(path: str | Path, *, spec: TrialSpec | None = None) -> FitResult:
    """Read a fit written by :meth:`FitResult.save`, treating every part of the file as untrusted.

    Checked before anything is used: the format version, the lupusbayes version (major.minor),
    every attribute's presence and type, the stored spec against its stored hash (recomputed
    from the text), ``spec`` (if given) against the stored spec's recomputed hash, the stored
    spec and cohort (validated like files), the model class (from a fixed registry), the
    required groups, the observed data against the stored cohort, and the ``dose_response``
    group against the posterior it was derived from (recomputed with the file's seed). The
    convergence diagnostics are recomputed, never read.

    Raises
    ------
    FitFileError
        One line naming the ``.nc`` file and what is wrong with it.
    """
    path = Path(path)
    if not path.exists():
        raise FitFileError(f"{path}: file not found")
    if path.is_dir():
        raise FitFileError(f"{path}: is a folder, not a fit file")
    try:
        tree = xr.open_datatree(path)  # what az.from_netcdf is
    except Exception as error:  # noqa: BLE001 - any reader failure means "not a fit file"
        raise FitFileError(f"{path}: not a readable netCDF fit file ({type(error).__name__})") from None
    attrs = _Attributes(tree.attrs, path)
    if "lupusbayes_file_format" not in attrs.attrs:
        raise FitFileError(f"{path}: not a lupusbayes fit (no lupusbayes_file_format attribute)")
    file_format = attrs.number("lupusbayes_file_format", int)
    if file_format != FILE_FORMAT_VERSION:
        raise attrs.error(f"file format {file_format} is not {FILE_FORMAT_VERSION}; refit")
    written_by = attrs.text("lupusbayes_version")
    if _major_minor(written_by) != _major_minor(__version__):
        raise attrs.error(f"written by lupusbayes {written_by}, this is {__version__}; refit with this version "
                          f"or install lupusbayes {written_by} to read it")
    spec_text = attrs.text("spec_toml")
    stored_hash = hashlib.sha256(spec_text.encode("utf-8")).hexdigest()
    if attrs.text("spec_sha256") != stored_hash:
        raise attrs.error("the stored spec does not match its stored hash: the file was altered; refit")
    if spec is not None and stored_hash != spec.sha256:
        raise attrs.error(
            f"fitted with another spec: {attrs.attrs.get('spec_source')}, sha256 {stored_hash[:12]}..., not "
            f"{spec.source}, sha256 {spec.sha256[:12]}...; refit with this spec"
        )
    missing = [group for group in REQUIRED_GROUPS if group not in tree.children]
    if missing:
        raise attrs.error(f"group '{missing[0]}' is missing; not a complete lupusbayes fit (refit)")
    try:
        saved_spec = parse_spec(spec_text, source="stored spec")
        cohort: Cohort | None = None
        cohort_text = attrs.text("cohort_csv")
        if cohort_text:
            cohort = parse_cohort_text(cohort_text, source="stored cohort",
                                       default_study_id=saved_spec.trial.id)
        model_class_name = attrs.text("model_class")
        if model_class_name not in MODEL_CLASSES:
            raise attrs.error(f"unknown model class '{model_class_name}' (known: {', '.join(MODEL_CLASSES)})")
        model_class, settings_class = MODEL_CLASSES[model_class_name]
        settings = _settings_from(attrs, "model_settings", settings_class)
        model = model_class(cohort, saved_spec, settings)
        fit_settings = _settings_from(attrs, "fit_settings", FitSettings)
        attempts = [SamplingAttempt(**attempt) for attempt in attrs.json("diagnostics")["attempts"]]
        seed = attrs.number("seed", int)
        seconds = attrs.number("seconds", float)
    except LupusBayesError as error:
        if isinstance(error, FitFileError):
            raise
        raise attrs.error(f"the stored model cannot be rebuilt: {error}") from None
    except (KeyError, TypeError, ValueError) as error:
        raise attrs.error(f"the stored diagnostics are malformed ({type(error).__name__}: {error})") from None
    tree = tree.copy()
    tree.attrs = {}
    _check_derived_groups(tree, model, seed, attrs)
    try:
        diagnostics = diagnose(model, tree, fit_settings, attempts)
    except (KeyError, TypeError, ValueError, IndexError) as error:
        raise attrs.error(f"the posterior does not fit the stored model ({type(error).__name__}: {error})") from None
    return FitResult(model, tree, diagnostics, fit_settings, seed, seconds)


def _settings_from(attrs: _Attributes, name: str, settings_class):
    data = attrs.json(name)
    if not isinstance(data, dict):
        raise attrs.error(f"attribute '{name}' must be a JSON object")
    unknown = sorted(set(data) - {item.name for item in fields(settings_class)})
    if unknown:
        raise attrs.error(f"attribute '{name}' has an unknown setting '{unknown[0]}'")
    try:
        return _dataclass_from_dict(settings_class, data)
    except (TypeError, ValueError) as error:
        raise attrs.error(f"attribute '{name}' holds invalid settings ({error})") from None


def _check_derived_groups(tree, model: BayesianModel, seed: int, attrs: _Attributes) -> None:
    """The observed data must be the stored cohort's, and ``dose_response`` must follow from the posterior."""
    observed, expected = tree["observed_data"].to_dataset(), model.observed_data()
    if set(observed.data_vars) != set(expected.data_vars) or not all(
        observed[name].shape == expected[name].shape and np.array_equal(observed[name].to_numpy(), expected[name].to_numpy())
        for name in expected.data_vars
    ):
        raise attrs.error("the observed_data group does not match the stored cohort: the file was altered; refit")
    try:
        posterior = tree["posterior"].to_dataset()
        recomputed = model.dose_response(posterior, np.random.default_rng(seed_streams(seed)["dose_response"]))
        stored = tree["dose_response"].to_dataset()
        consistent = set(stored.data_vars) == set(recomputed.data_vars) and all(
            stored[name].shape == recomputed[name].shape
            and np.allclose(stored[name].to_numpy(), recomputed[name].to_numpy(), rtol=1e-9, atol=1e-12, equal_nan=True)
            for name in recomputed.data_vars
        )
    except (KeyError, TypeError, ValueError, IndexError) as error:
        raise attrs.error(f"the posterior does not fit the stored model ({type(error).__name__}: {error})") from None
    if not consistent:
        raise attrs.error("the dose_response group does not follow from the posterior: the file was altered; refit")
