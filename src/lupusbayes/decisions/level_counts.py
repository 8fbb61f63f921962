"""Argument checks and wording shared by the BOIN and 3+3 functions and their simulators."""

from __future__ import annotations

import numpy as np

__all__ = ["check_level_counts", "check_level", "check_positive_int", "check_min_patients", "check_eliminated",
           "plural"]


def check_level_counts(n_patients_by_level, n_dlt_by_level) -> tuple[np.ndarray, np.ndarray]:
    """The counts as int64 arrays, or a ``ValueError`` saying what is wrong with them.

    Both must be non-empty 1-D sequences of the same length holding whole numbers >= 0, with no
    more DLTs than patients at any level.
    """
    n_patients = np.asarray(n_patients_by_level)
    n_dlt = np.asarray(n_dlt_by_level)
    if n_patients.ndim != 1 or n_patients.size == 0 or n_patients.shape != n_dlt.shape:
        raise ValueError("n_patients_by_level and n_dlt_by_level must be non-empty 1-D sequences of the same length")
    for name, counts in (("n_patients_by_level", n_patients), ("n_dlt_by_level", n_dlt)):
        if counts.dtype == bool or not np.all(np.mod(counts, 1) == 0) or np.any(counts < 0):
            raise ValueError(f"{name} must hold whole numbers >= 0 (got {counts.tolist()})")
    n_patients, n_dlt = n_patients.astype(np.int64), n_dlt.astype(np.int64)
    if np.any(n_dlt > n_patients):
        raise ValueError(
            "n_dlt_by_level cannot exceed n_patients_by_level at any level "
            f"(got {n_dlt.tolist()} DLTs in {n_patients.tolist()} patients)"
        )
    return n_patients, n_dlt


def check_level(level, n_levels: int, name: str) -> int:
    """``level`` as an int, checked to be a 0-based level from 0 to ``n_levels - 1``.

    ``name`` is the argument's name in the ValueError raised otherwise (also for a bool or a
    non-integer). Shared by BOIN, the 3+3 and their simulators.

    Examples
    --------
    >>> check_level(2, 5, "start_level")
    2
    """
    if isinstance(level, bool) or not isinstance(level, (int, np.integer)) or not 0 <= level < n_levels:
        raise ValueError(f"{name} must be a 0-based level from 0 to {n_levels - 1} (got {level!r})")
    return int(level)


def check_positive_int(value, name: str) -> int:
    """``value`` as an int, checked to be a positive integer (not a bool).

    ``name`` is the argument's name in the ValueError raised otherwise. Shared by BOIN, the 3+3
    and their simulators.

    Examples
    --------
    >>> check_positive_int(3, "cohort_size")
    3
    """
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer (got {value!r})")
    return int(value)


def check_min_patients(value) -> int:
    """``min_patients_at_selection`` as an int, checked to be a whole number >= 0 (not a bool). Shared by the
    CRM's selection and the simulators that select among levels given to at least this many patients."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise ValueError(f"min_patients_at_selection must be a whole number >= 0 (got {value!r})")
    return int(value)


def plural(count: int, word: str) -> str:
    """``1 DLT``, ``2 DLTs``."""
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


def check_eliminated(eliminated_by_level, n_levels: int, *, nested: bool = True) -> np.ndarray:
    """``eliminated_by_level`` (None: no level) as a new boolean array, or a ``ValueError``. With ``nested``
    (eliminations for toxicity: BOIN, TITE-BOIN) every level above an eliminated one must be eliminated too;
    BOIN12 also eliminates single levels for futility."""
    if eliminated_by_level is None:
        return np.zeros(n_levels, dtype=bool)
    eliminated = np.asarray(eliminated_by_level)
    if eliminated.shape != (n_levels,) or eliminated.dtype != bool:
        raise ValueError(f"eliminated_by_level must be {n_levels} booleans, one per level")
    if nested and np.any(eliminated[:-1] & ~eliminated[1:]):
        raise ValueError("eliminated_by_level must eliminate every level above an eliminated level")
    return eliminated.copy()
