"""Dose units, weight-tier schedules and honest conversion between total cells and cells/kg.

Cell-therapy doses are written three ways: per kg of body weight (autologous CAR-T,
AXA-NK02), as a flat number of cells (allogeneic CAR-NK, KN5601), or as a flat dose chosen by
weight band (a *weight-tier schedule*). Converting a flat dose to cells/kg needs the patient's
weight. When it was measured the conversion is exact; when it was not (KN5601 reports no
weights) the conversion is a *distribution*: weight-for-age from a growth reference (CDC 2000
LMS tables ship with the package; any LMS table can be supplied) gives a right-skewed weight
distribution, and ``cells/kg = cells / weight`` inherits it.

The LMS method (Cole 1990; Kuczmarski 2002): for a z-score ``z``,
``weight = M * (1 + L*S*z) ** (1/L)``. For ``|z| > 3`` the CDC extension is used (linear
continuation with the spacing between z = 2 and z = 3), which keeps the map finite and
monotone where ``1 + L*S*z`` would otherwise approach zero.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass, field
from enum import StrEnum
from importlib import resources
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from lupusbayes.errors import DosingError

__all__ = [
    "DoseUnit",
    "WeightBand",
    "WeightTierSchedule",
    "LMSWeightReference",
    "DoseDistribution",
    "lms_weight_kg",
    "lms_z_score",
    "parse_dose_unit",
    "cells_per_kg_distribution",
    "convert_dose",
    "dose_label",
    "effective_age_years",
]

AgeConvention = Literal["completed_years", "exact"]


class DoseUnit(StrEnum):
    """Unit of a cell dose (per infusion)."""

    CELLS = "cells"
    CELLS_PER_KG = "cells/kg"


_UNIT_ALIASES = {
    "cells": DoseUnit.CELLS,
    "cell": DoseUnit.CELLS,
    "total_cells": DoseUnit.CELLS,
    "cells/kg": DoseUnit.CELLS_PER_KG,
    "cells_per_kg": DoseUnit.CELLS_PER_KG,
    "cells per kg": DoseUnit.CELLS_PER_KG,
    "cells/kg body weight": DoseUnit.CELLS_PER_KG,
}


def parse_dose_unit(text: str | DoseUnit) -> DoseUnit:
    """Return the :class:`DoseUnit` written as ``text`` (``"cells"`` or ``"cells/kg"``).

    Raises
    ------
    DosingError
        For any other spelling, listing the accepted ones.
    """
    if isinstance(text, DoseUnit):
        return text
    key = " ".join(str(text).strip().lower().split())
    if key in _UNIT_ALIASES:
        return _UNIT_ALIASES[key]
    raise DosingError(f"unknown dose unit '{text}'; use 'cells' or 'cells/kg'")


def dose_label(value: float, unit: str) -> str:
    """``3e9`` -> ``'3.0e9 cells'``: compact, unambiguous dose text."""
    mantissa, exponent = f"{value:.2e}".split("e")
    mantissa = mantissa.rstrip("0").rstrip(".")
    if "." not in mantissa:
        mantissa += ".0"
    return f"{mantissa}e{int(exponent)} {unit}"


def effective_age_years(age_years: np.ndarray) -> np.ndarray:
    """Whole-number ages are completed years (13 means 13.0-13.99): use the mid-year, 13.5."""
    ages = np.asarray(age_years, dtype=float)
    return np.where(np.isclose(ages, np.round(ages)), ages + 0.5, ages)


# --------------------------------------------------------------------------------------------
# Weight-tier schedules
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WeightBand:
    """One band of a weight-tier schedule: ``min_weight_kg <= weight < max_weight_kg``."""

    min_weight_kg: float
    max_weight_kg: float
    dose_cells: float

    def contains(self, weight_kg: float) -> bool:
        return self.min_weight_kg <= weight_kg < self.max_weight_kg


@dataclass(frozen=True)
class WeightTierSchedule:
    """Flat doses chosen by weight band, e.g. ``< 40 kg: 1e9 cells; >= 40 kg: 2e9 cells``.

    Bands must be contiguous (each starts where the previous ends) and non-empty; the last band
    may be open (``max_weight_kg = inf``).

    Examples
    --------
    >>> schedule = WeightTierSchedule.from_bands([(0, 40, 1e9), (40, float("inf"), 2e9)])
    >>> schedule.dose_cells_for_weight(38.0)
    1000000000.0
    >>> round(schedule.cells_per_kg_for_weight(50.0))
    40000000
    """

    bands: tuple[WeightBand, ...]

    def __post_init__(self) -> None:
        if not self.bands:
            raise DosingError("a weight-tier schedule needs at least one band")
        for index, band in enumerate(self.bands):
            if not (band.min_weight_kg >= 0 and band.max_weight_kg > band.min_weight_kg):
                raise DosingError(
                    f"weight band {index + 1} must have 0 <= min_weight_kg < max_weight_kg "
                    f"(got {band.min_weight_kg}, {band.max_weight_kg})"
                )
            if not (band.dose_cells > 0 and math.isfinite(band.dose_cells)):
                raise DosingError(f"weight band {index + 1} needs a positive dose_cells (got {band.dose_cells})")
            if index and band.min_weight_kg != self.bands[index - 1].max_weight_kg:
                raise DosingError(
                    f"weight bands must be contiguous: band {index + 1} starts at {band.min_weight_kg} kg "
                    f"but band {index} ends at {self.bands[index - 1].max_weight_kg} kg"
                )

    @classmethod
    def from_bands(cls, bands: list[tuple[float, float, float]]) -> WeightTierSchedule:
        """Build from ``(min_weight_kg, max_weight_kg, dose_cells)`` triples."""
        return cls(tuple(WeightBand(float(lo), float(hi), float(dose)) for lo, hi, dose in bands))

    def dose_cells_for_weight(self, weight_kg: float) -> float:
        """Flat dose (cells) given to a patient weighing ``weight_kg``."""
        for band in self.bands:
            if band.contains(weight_kg):
                return band.dose_cells
        raise DosingError(
            f"weight {weight_kg} kg is outside the schedule's bands "
            f"({self.bands[0].min_weight_kg} to {self.bands[-1].max_weight_kg} kg)"
        )

    def cells_per_kg_for_weight(self, weight_kg: float) -> float:
        """Dose in cells/kg actually received at ``weight_kg`` under this schedule."""
        return self.dose_cells_for_weight(weight_kg) / weight_kg

    def cells_per_kg_draws(self, weight_kg_draws: np.ndarray) -> np.ndarray:
        """Vectorised :meth:`cells_per_kg_for_weight` over weight draws (e.g. from a reference)."""
        weights = np.asarray(weight_kg_draws, dtype=float)
        doses = np.full_like(weights, np.nan)
        for band in self.bands:
            inside = (weights >= band.min_weight_kg) & (weights < band.max_weight_kg)
            doses[inside] = band.dose_cells
        if np.isnan(doses).any():
            raise DosingError("some weights fall outside the schedule's bands")
        return doses / weights


# --------------------------------------------------------------------------------------------
# LMS growth references
# --------------------------------------------------------------------------------------------

_EXTENSION_Z = 3.0


def _lms_core(z, lam, median, cv, xp):
    """Plain LMS back-transform; valid where ``1 + L*S*z > 0`` (clamped just above 0)."""
    near_zero_l = xp.abs(lam) < 1e-8
    safe_l = xp.where(near_zero_l, 1.0, lam)
    base = xp.maximum(1.0 + safe_l * cv * z, 1e-12)
    return xp.where(near_zero_l, median * xp.exp(cv * z), median * xp.exp(xp.log(base) / safe_l))


def lms_weight_kg(z, L, M, S, *, xp=np):  # noqa: N803 - L, M, S are the method's names
    """Weight (kg) at z-score ``z`` for LMS parameters ``L, M, S`` (broadcasting).

    Uses the CDC extension beyond ``|z| = 3``: ``w(z) = w(3) + (z - 3) * (w(3) - w(2))`` above,
    and symmetrically below, so the map is finite and strictly increasing for every z.
    ``xp`` is the array module: NumPy by default; the models pass ``pytensor.tensor`` so the
    same formula runs inside the PyMC graph.

    Examples
    --------
    >>> round(float(lms_weight_kg(0.0, -0.654, 48.511, 0.1943)), 3)   # the median
    48.511
    """
    if xp is np:
        z, L, M, S = (np.asarray(v, dtype=float) for v in (z, L, M, S))  # noqa: N806
    inner = _lms_core(xp.clip(z, -_EXTENSION_Z, _EXTENSION_Z), L, M, S, xp)
    w3, w2 = (_lms_core(_EXTENSION_Z - k, L, M, S, xp) for k in (0, 1))
    wm3, wm2 = (_lms_core(-_EXTENSION_Z + k, L, M, S, xp) for k in (0, 1))
    upper = w3 + (z - _EXTENSION_Z) * (w3 - w2)
    lower = wm3 + (z + _EXTENSION_Z) * (wm2 - wm3)
    return xp.where(z > _EXTENSION_Z, upper, xp.where(z < -_EXTENSION_Z, lower, inner))


def lms_z_score(weight_kg, L, M, S) -> np.ndarray:  # noqa: N803
    """Inverse of :func:`lms_weight_kg`: the z-score of an observed weight (with the extension)."""
    weight = np.asarray(weight_kg, dtype=float)
    lam, median, cv = (np.asarray(v, dtype=float) for v in (L, M, S))
    with np.errstate(invalid="ignore", divide="ignore"):
        near_zero_l = np.abs(lam) < 1e-8
        safe_l = np.where(near_zero_l, 1.0, lam)
        z = np.where(near_zero_l, np.log(weight / median) / cv, ((weight / median) ** safe_l - 1.0) / (safe_l * cv))
    w3 = lms_weight_kg(_EXTENSION_Z, lam, median, cv)
    w2 = lms_weight_kg(_EXTENSION_Z - 1, lam, median, cv)
    wm3 = lms_weight_kg(-_EXTENSION_Z, lam, median, cv)
    wm2 = lms_weight_kg(-_EXTENSION_Z + 1, lam, median, cv)
    z = np.where(weight > w3, _EXTENSION_Z + (weight - w3) / (w3 - w2), z)
    return np.where(weight < wm3, -_EXTENSION_Z - (wm3 - weight) / (wm2 - wm3), z)


@dataclass(frozen=True)
class LMSWeightReference:
    """A weight-for-age reference as an LMS table (``sex, age_months, L, M, S``).

    Parameters are linearly interpolated in age between rows. Ages outside the table raise
    :class:`~lupusbayes.errors.DosingError` (no silent extrapolation: supply a measured weight
    or a reference that covers the age, e.g. an adult table for AXA-NK02's 18-35-year-olds).

    Use :meth:`cdc2000` for the shipped CDC 2000 table, :meth:`from_csv` for your own.
    """

    name: str
    table: pd.DataFrame = field(repr=False)

    def __post_init__(self) -> None:
        required = {"sex", "age_months", "L", "M", "S"}
        missing = required - set(self.table.columns)
        if missing:
            raise DosingError(f"weight reference '{self.name}' lacks columns {sorted(missing)}")
        for sex, rows in self.table.groupby("sex"):
            ages = rows["age_months"].to_numpy()
            if not np.all(np.diff(ages) > 0):
                raise DosingError(f"weight reference '{self.name}': age_months must increase within sex {sex}")
            if not ((rows["M"] > 0).all() and (rows["S"] > 0).all()):
                raise DosingError(f"weight reference '{self.name}': M and S must be positive (sex {sex})")

    @classmethod
    def cdc2000(cls) -> LMSWeightReference:
        """CDC 2000 weight-for-age (ages 2-20 years, both sexes), shipped with the package."""
        text = resources.files("lupusbayes.data").joinpath("cdc2000_weight_for_age_lms.csv").read_text()
        return cls._from_text(text, name="CDC 2000 weight-for-age", source="cdc2000_weight_for_age_lms.csv")

    @classmethod
    def from_csv(cls, path: str | Path, *, name: str | None = None) -> LMSWeightReference:
        """Read a user's LMS table: columns ``sex`` (F/M), ``age_months``, ``L``, ``M``, ``S``."""
        path = Path(path)
        try:
            text = path.read_text()
        except OSError as error:
            raise DosingError(f"{path}: cannot read weight reference ({error.strerror})") from None
        return cls._from_text(text, name=name or path.stem, source=str(path))

    @classmethod
    def _from_text(cls, text: str, *, name: str, source: str) -> LMSWeightReference:
        try:
            table = pd.read_csv(io.StringIO(text), comment="#")
        except (ValueError, pd.errors.ParserError) as error:
            raise DosingError(f"{source}: not a CSV weight reference ({error})") from None
        missing = {"sex", "age_months", "L", "M", "S"} - set(table.columns)
        if missing:
            raise DosingError(f"{source}: weight reference lacks columns {sorted(missing)}")
        table["sex"] = table["sex"].astype(str).str.strip().str.upper().replace({"1": "M", "2": "F"})
        if not set(table["sex"]).issubset({"F", "M"}):
            raise DosingError(f"{source}: column 'sex' must hold F or M (or CDC codes 2 and 1)")
        for column in ("age_months", "L", "M", "S"):
            table[column] = pd.to_numeric(table[column], errors="coerce")
            if table[column].isna().any():
                line = int(table.index[table[column].isna()][0]) + 2
                raise DosingError(f"{source}: row {line - 1}: field '{column}' is not a number")
        table = table.sort_values(["sex", "age_months"]).reset_index(drop=True)
        return cls(name=name, table=table)

    def age_range_years(self, sex: str) -> tuple[float, float]:
        ages = self.table.loc[self.table["sex"] == sex, "age_months"]
        return float(ages.min()) / 12.0, float(ages.max()) / 12.0

    def lms(self, age_years, sex) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Interpolated ``(L, M, S)`` at exact ages (years) for sexes ``"F"``/``"M"`` (broadcast)."""
        ages, sexes = np.broadcast_arrays(np.asarray(age_years, dtype=float), np.asarray(sex, dtype=object))
        shape = ages.shape
        ages, sexes = ages.reshape(-1), sexes.reshape(-1)
        out = np.empty((3, ages.size))
        for code in np.unique(sexes):
            if code not in ("F", "M"):
                raise DosingError(f"sex must be 'F' or 'M' for a weight reference (got '{code}')")
            rows = self.table[self.table["sex"] == code]
            if rows.empty:
                raise DosingError(f"weight reference '{self.name}' has no rows for sex {code}")
            months = ages[sexes == code] * 12.0
            low, high = rows["age_months"].min(), rows["age_months"].max()
            outside = (months < low - 1e-9) | (months > high + 1e-9)
            if outside.any():
                bad = float(months[outside][0]) / 12.0
                raise DosingError(
                    f"age {bad:g} years is outside the weight reference '{self.name}' "
                    f"({low / 12:g}-{high / 12:g} years for sex {code}); give weight_kg or another reference"
                )
            for row, column in enumerate(("L", "M", "S")):
                out[row][sexes == code] = np.interp(months, rows["age_months"], rows[column])
        return out[0].reshape(shape), out[1].reshape(shape), out[2].reshape(shape)

    def weight_quantile_kg(self, probability, age_years, sex) -> np.ndarray:
        """Weight (kg) at the given centile(s), e.g. ``probability=0.5`` for the median."""
        from scipy.special import ndtri

        lam, median, cv = self.lms(age_years, sex)
        return lms_weight_kg(ndtri(np.asarray(probability, dtype=float)), lam, median, cv)

    def sample_weight_kg(
        self,
        age_years: float,
        sex: str,
        *,
        size: int,
        rng: np.random.Generator,
        age_convention: AgeConvention = "completed_years",
    ) -> np.ndarray:
        """Draw weights for one patient.

        With ``age_convention="completed_years"`` (how trial tables report age: 13 means
        13.0 <= age < 14.0) the exact age is drawn uniformly within the year before the weight is
        drawn; with ``"exact"`` the age is taken as given.
        """
        if age_convention == "completed_years":
            ages = age_years + rng.uniform(0.0, 1.0, size=size)
        elif age_convention == "exact":
            ages = np.full(size, float(age_years))
        else:
            raise DosingError(f"age_convention must be 'completed_years' or 'exact' (got '{age_convention}')")
        lam, median, cv = self.lms(ages, sex)
        return lms_weight_kg(rng.standard_normal(size), lam, median, cv)


# --------------------------------------------------------------------------------------------
# Conversion
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DoseDistribution:
    """A dose in one unit: exact (``draws`` all equal) or a Monte Carlo distribution."""

    unit: DoseUnit
    draws: np.ndarray = field(repr=False)
    exact: bool
    basis: str

    @property
    def median(self) -> float:
        return float(np.median(self.draws))

    @property
    def mean(self) -> float:
        return float(np.mean(self.draws))

    def quantiles(self, probabilities=(0.05, 0.5, 0.95)) -> np.ndarray:
        return np.quantile(self.draws, probabilities)

    def log_mean_sd(self) -> tuple[float, float]:
        """Mean and SD of the natural log of the dose (the scale the models use)."""
        logs = np.log(self.draws)
        return float(logs.mean()), float(logs.std())


def cells_per_kg_distribution(
    dose_cells: float,
    *,
    weight_kg: float | None = None,
    age_years: float | None = None,
    sex: str | None = None,
    reference: LMSWeightReference | None = None,
    n_draws: int = 4000,
    seed: int | np.random.Generator | None = None,
    age_convention: AgeConvention = "completed_years",
) -> DoseDistribution:
    """Dose in cells/kg for a flat dose of ``dose_cells``.

    Exact when ``weight_kg`` is known; otherwise a distribution from the weight reference
    (CDC 2000 by default) at the patient's age and sex.

    Examples
    --------
    >>> exact = cells_per_kg_distribution(3e9, weight_kg=50.0)
    >>> exact.exact, exact.median
    (True, 60000000.0)
    >>> uncertain = cells_per_kg_distribution(3e9, age_years=13, sex="F", seed=1)
    >>> uncertain.exact, 4e7 < uncertain.median < 8e7
    (False, True)
    """
    if not (dose_cells > 0 and math.isfinite(dose_cells)):
        raise DosingError(f"dose_cells must be positive (got {dose_cells})")
    if weight_kg is not None and not (isinstance(weight_kg, float) and math.isnan(weight_kg)):
        if not weight_kg > 0:
            raise DosingError(f"weight_kg must be positive (got {weight_kg})")
        return DoseDistribution(DoseUnit.CELLS_PER_KG, np.full(1, dose_cells / weight_kg), True, "measured weight")
    if age_years is None or sex is None:
        raise DosingError("converting without a weight needs age_years and sex (or give weight_kg)")
    if seed is None:
        raise DosingError("converting through an uncertain weight is random: pass seed= for reproducibility")
    reference = reference or LMSWeightReference.cdc2000()
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    weights = reference.sample_weight_kg(age_years, sex, size=n_draws, rng=rng, age_convention=age_convention)
    return DoseDistribution(DoseUnit.CELLS_PER_KG, dose_cells / weights, False, f"weight from {reference.name}")


def convert_dose(
    value: float,
    *,
    from_unit: DoseUnit | str,
    to_unit: DoseUnit | str,
    weight_kg: float | None = None,
) -> float:
    """Convert a dose between units when the weight is known (exact conversion).

    For an unknown weight use :func:`cells_per_kg_distribution`, which returns a distribution.
    """
    source, target = parse_dose_unit(from_unit), parse_dose_unit(to_unit)
    if source == target:
        return float(value)
    if weight_kg is None or not weight_kg > 0:
        raise DosingError(
            f"converting {source} to {target} needs a positive weight_kg; "
            "without one use cells_per_kg_distribution(), which returns a distribution"
        )
    return float(value) / weight_kg if target == DoseUnit.CELLS_PER_KG else float(value) * weight_kg
