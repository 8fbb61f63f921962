"""Validation of per-level patient and DLT counts, shared by the BOIN and 3+3 functions."""

from __future__ import annotations

import numpy as np

__all__ = ["check_level_counts"]


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
