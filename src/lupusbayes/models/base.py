"""What every lupusbayes model provides, so the fitting layer can treat them alike.

A model is *configuration plus data*: a trial spec, a cohort, settings. It knows how to

* build its PyMC graph (outcomes are ``pm.Data``, so a graph built once serves every model of
  the same design; :mod:`lupusbayes.fitting.cache` keeps the compiled ones),
* complete raw posterior draws with the quantities users read (per-study parameters,
  latent weights),
* evaluate the pointwise log-likelihood, simulate replicated outcomes and compute
  posterior-predictive statistics, all in NumPy on the draws,
* turn draws into the dose-level summaries decisions are made from.

Everything after sampling is NumPy on ``xarray`` draws (the same formulas as the PyMC graph,
see :mod:`lupusbayes.models._math`), so the planned trial simulator can reuse it without PyMC.
"""

from __future__ import annotations

import copy
import hashlib
import json
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import xarray as xr

from lupusbayes.cohort import Cohort
from lupusbayes.dosing import LMSWeightReference
from lupusbayes.errors import ModelSetupError
from lupusbayes.spec import TrialSpec

__all__ = ["BayesianModel", "DecisionQuantity", "SAMPLE_DIMS", "draws_array", "as_draws"]

SAMPLE_DIMS = ("chain", "draw")


@dataclass(frozen=True)
class DecisionQuantity:
    """A posterior quantity a decision may rest on; its Monte Carlo error is always reported.

    ``values`` holds per-draw values (a probability or an indicator), dims ``chain, draw`` and
    possibly ``dose``; the posterior mean is the reported number. For an indicator,
    ``reference`` is the continuous quantity it is read from (P(DLT) for an interval
    probability), whose ESS bounds the Monte Carlo error when every draw agrees.
    """

    name: str
    description: str
    values: xr.DataArray
    reference: xr.DataArray | None = None


def draws_array(dataset: xr.Dataset, name: str) -> np.ndarray:
    """Values of ``name`` with the sample dims first, as a NumPy array."""
    variable = dataset[name]
    other = [d for d in variable.dims if d not in SAMPLE_DIMS]
    return variable.transpose(*SAMPLE_DIMS, *other).to_numpy()


def as_draws(values: np.ndarray, dims: tuple[str, ...], coords: dict[str, Any], like: xr.Dataset) -> xr.DataArray:
    """Wrap ``values`` (chain, draw, ...) as a DataArray with the sample coords of ``like``."""
    all_coords = {dim: like.coords[dim].to_numpy() for dim in SAMPLE_DIMS}
    all_coords.update({dim: coords[dim] for dim in dims if dim in coords})
    return xr.DataArray(values, dims=SAMPLE_DIMS + tuple(dims), coords=all_coords)


class BayesianModel(ABC):
    """Base class of the toxicity and SLEDAI-2K models (see module docstring)."""

    #: Short name used in files and the CLI: "crs", "blrm", "sledai".
    kind: ClassVar[str]

    def __init__(
        self,
        cohort: Cohort | None,
        spec: TrialSpec,
        *,
        weight_reference: LMSWeightReference | None = None,
    ) -> None:
        self.cohort = cohort
        self.spec = spec
        self.weight_reference = weight_reference

    # ---- identity and description --------------------------------------------------------

    @property
    @abstractmethod
    def settings(self) -> Any:
        """The model's settings dataclass."""

    @property
    def name(self) -> str:
        """A label for tables, e.g. ``"crs (crs_grade, exnex)"``."""
        return self.kind

    def describe(self) -> dict[str, Any]:
        """JSON-ready description: kind, settings, data size (saved with each fit)."""
        return {
            "kind": self.kind,
            "name": self.name,
            "settings": _jsonable(asdict(self.settings)),
            "n_observations": int(self.n_observations),
            "trial_id": self.spec.trial.id,
        }

    def settings_json(self) -> str:
        return json.dumps(self.describe()["settings"], sort_keys=True)

    # ---- data --------------------------------------------------------------------------

    @property
    @abstractmethod
    def n_observations(self) -> int:
        """Number of likelihood terms (patients, or visits for SLEDAI-2K)."""

    @abstractmethod
    def observed_data(self) -> xr.Dataset:
        """The outcomes, dims ``observation``."""

    @abstractmethod
    def constant_data(self) -> xr.Dataset:
        """Covariates and design (doses, studies, months, baselines)."""

    @abstractmethod
    def with_outcomes(self, outcomes: xr.Dataset | np.ndarray) -> BayesianModel:
        """The same design with other outcomes (simulation, calibration): same ``design_key``."""

    def _replacing(self, attribute: str, variable: str, outcomes: xr.Dataset | np.ndarray, maximum: int,
                   what: str) -> BayesianModel:
        """A shallow copy with ``attribute`` replaced by ``outcomes`` (the dataset's ``variable``, or an
        array), checked to be whole numbers from 0 to ``maximum`` in the current shape."""
        values = np.asarray(outcomes[variable].to_numpy() if isinstance(outcomes, xr.Dataset) else outcomes)
        current = getattr(self, attribute)
        if (values.shape != current.shape or not np.all(values == np.round(values))
                or values.min(initial=0) < 0 or values.max(initial=0) > maximum):
            raise ModelSetupError(f"replacement {what} do not fit the model's design")
        model = copy.copy(self)
        setattr(model, attribute, values.astype(int))
        return model

    # ---- PyMC ------------------------------------------------------------------------

    @abstractmethod
    def build_pymc_model(self):
        """Build a new PyMC model of this design, holding this model's outcomes.

        Building and compiling is the slow part of a fit; :mod:`lupusbayes.fitting.cache`
        builds a graph once per :meth:`design_key` and swaps the outcomes with :meth:`graph_data`.
        """

    @abstractmethod
    def graph_data(self) -> dict[str, np.ndarray]:
        """Values of the graph's ``pm.Data`` containers for this model's outcomes."""

    def design_key(self) -> str:
        """Hash of everything that shapes the PyMC graph except the outcomes."""
        digest = hashlib.sha256()
        digest.update(type(self).__name__.encode())
        digest.update(self.settings_json().encode())
        constants = self.constant_data()
        for name in sorted(constants.data_vars):
            digest.update(name.encode())
            digest.update(np.ascontiguousarray(constants[name].to_numpy()).tobytes())
        for name in sorted(constants.coords):
            digest.update(repr(constants.coords[name].to_numpy().tolist()).encode())
        digest.update(repr(sorted(constants.attrs.items())).encode())
        digest.update(repr(self._design_extras()).encode())
        return digest.hexdigest()

    def _design_extras(self) -> tuple:
        """Graph-shaping values not in ``constant_data`` (subclasses add theirs)."""
        return ()

    # ---- NumPy on draws ------------------------------------------------------------------

    def _log_relative_dose(self, draws: xr.Dataset) -> np.ndarray:
        """``x = log(dose / d*)`` per draw and patient (latent weights taken from the draws)."""
        if self.dose.n_latent:
            return self.dose.log_relative_dose(draws_array(draws, "weight_z"))
        return np.broadcast_to(self.dose.base, (draws.sizes["chain"], draws.sizes["draw"], self.dose.base.size))

    def _dose_grid(self, doses) -> np.ndarray:
        """The doses to summarise: the spec's levels unless given (in the spec's unit)."""
        levels = np.asarray(self.spec.dosing.levels if doses is None else doses, dtype=float)
        if levels.ndim != 1 or not np.all(levels > 0):
            raise ModelSetupError("doses must be a list of positive numbers in the spec's dose unit")
        return levels

    @abstractmethod
    def complete_draws(self, draws: xr.Dataset, rng: np.random.Generator, *, prior: bool = False) -> xr.Dataset:
        """Add the reported parameters to raw draws; ``prior=True`` for draws from the prior.

        Parameters that are drawn after sampling (the EXNEX indicators) are drawn from their
        prior for prior draws, and from their conditional posterior given the data otherwise.
        """

    @abstractmethod
    def pointwise_log_likelihood(self, draws: xr.Dataset) -> xr.Dataset:
        """log p(y_i | draw) for each observation, dims ``chain, draw, observation``."""

    @abstractmethod
    def simulate_outcomes(self, draws: xr.Dataset, rng: np.random.Generator) -> xr.Dataset:
        """Replicated outcomes, one set per draw (posterior or prior predictive)."""

    @abstractmethod
    def check_statistics(self, outcomes: xr.Dataset) -> dict[str, xr.DataArray]:
        """Test statistics for predictive checks; works on observed (no sample dims) or replicated outcomes."""

    @abstractmethod
    def dose_response(self, draws: xr.Dataset, rng: np.random.Generator, *, doses=None) -> xr.Dataset:
        """Per-dose derived quantities for the target trial (dims ``chain, draw, dose, ...``)."""

    @abstractmethod
    def decision_quantities(self, dose_response: xr.Dataset) -> list[DecisionQuantity]:
        """The probabilities decisions rest on (their MCSE is part of the diagnostics)."""

    @abstractmethod
    def summary_table(self, dose_response: xr.Dataset, *, interval: float = 0.9) -> pd.DataFrame:
        """Dose-level table: mean, interval and MCSE of each derived quantity."""

    def notes(self) -> list[str]:
        """Caveats that go with this model's numbers, each one sentence (shown with every summary)."""
        return []

    def parameters_of_interest(self) -> list[str]:
        """Variables whose R-hat / ESS the convergence gate checks (besides all free ones)."""
        return []


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return str(value)
    return value
