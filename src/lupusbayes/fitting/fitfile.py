"""One self-describing netCDF file per fit: save, load, and the registry of model classes.

The file is the fit's ``DataTree`` (plain ``arviz.from_netcdf`` opens it) with root attributes
that make it self-contained: the spec (TOML text and its hash), the cohort (tidy CSV), the
model class and settings (JSON), the fit settings, the seed, the diagnostics and the version
of lupusbayes that wrote it. :func:`load_fit` rebuilds the model from them.
"""

from __future__ import annotations

import json
import typing
from dataclasses import asdict, fields, is_dataclass
from pathlib import Path
from typing import Any

import arviz as az

from lupusbayes._io import write_atomic
from lupusbayes._version import __version__
from lupusbayes.cohort import Cohort, parse_cohort_text
from lupusbayes.errors import FitFileError
from lupusbayes.fitting.diagnostics import SamplingAttempt, diagnose
from lupusbayes.fitting.result import FitResult
from lupusbayes.models.base import BayesianModel
from lupusbayes.models.sledai import SledaiModel
from lupusbayes.models.toxicity import BLRM, CRSModel, ToxicityModel
from lupusbayes.spec import FitSettings, SledaiModelSettings, ToxicityModelSettings, TrialSpec, parse_spec

__all__ = ["save_fit", "load_fit", "FILE_FORMAT_VERSION", "MODEL_CLASSES"]

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


def save_fit(result: FitResult, path: str | Path, *, overwrite: bool = False) -> Path:
    """Write ``result`` to ``path`` atomically (see the module docstring)."""
    tree = result.tree.copy()
    tree.attrs.update(_file_attrs(result))
    return write_atomic(Path(path), lambda temporary: tree.to_netcdf(temporary, engine="h5netcdf"), overwrite=overwrite)


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
        cohort = parse_cohort_text(str(attrs["cohort_csv"]), source=str(attrs.get("cohort_source", path)),
                                   default_study_id=saved_spec.trial.id)
    model_class, settings_class = MODEL_CLASSES[str(attrs["model_class"])]
    settings = _dataclass_from_dict(settings_class, json.loads(str(attrs["model_settings"])))
    model = model_class(cohort, saved_spec, settings)
    fit_settings = _dataclass_from_dict(FitSettings, json.loads(str(attrs["fit_settings"])))
    attempts = [SamplingAttempt(**a) for a in json.loads(str(attrs["diagnostics"]))["attempts"]]
    tree = tree.copy()
    tree.attrs = {}
    diagnostics = diagnose(model, tree, fit_settings, attempts)
    return FitResult(model, tree, diagnostics, fit_settings, int(attrs["seed"]), float(attrs["seconds"]))
