"""SLEDAI-2K-only response flags, named for what they are.

KN5601 reports SLEDAI-2K only, so the published composite endpoints cannot be computed. Each
flag below is the *SLEDAI-2K component* of a composite, or a *proxy* for it, and its name
says so. :data:`RESPONSE_DEFINITIONS` records, for each, what the full definition also needs.

================================  ======================  ======================================
flag                              rule on SLEDAI-2K       full definition also needs
================================  ======================  ======================================
``sri4_sledai_component``         baseline - score >= 4   no new BILAG A, <= 1 new BILAG B,
                                                          PGA worsening < 0.3 (Furie 2009)
``lldas_sledai_proxy``            score <= 4              no major-organ or new activity,
                                                          PGA <= 1, prednisolone <= 7.5 mg/day,
                                                          tolerated immunosuppressants
                                                          (Franklyn 2016)
``doris_sledai_proxy``            score == 0              *clinical* SLEDAI (no serology) = 0,
                                                          PGA < 0.5, prednisolone <= 5 mg/day
                                                          (van Vollenhoven 2021); requiring the
                                                          full score to be 0 is conservative
================================  ======================  ======================================
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

__all__ = [
    "ResponseDefinition",
    "RESPONSE_DEFINITIONS",
    "SRI4_MINIMUM_REDUCTION",
    "LLDAS_MAXIMUM_SLEDAI",
    "sri4_sledai_component",
    "lldas_sledai_proxy",
    "doris_sledai_proxy",
    "add_response_flags",
]

#: Minimum SLEDAI-2K reduction from baseline, in points, for the SLEDAI component of SRI-4.
SRI4_MINIMUM_REDUCTION = 4
#: Maximum SLEDAI-2K, in points, for the LLDAS proxy.
LLDAS_MAXIMUM_SLEDAI = 4
SLEDAI_MAXIMUM = 105


@dataclass(frozen=True)
class ResponseDefinition:
    """What a SLEDAI-only flag computes and what the full clinical definition adds."""

    name: str
    label: str
    sledai_rule: str
    full_definition: str
    reference: str


#: The three SLEDAI-only flags by name: what each computes and what the full definition adds.
#:
#: :meta hide-value:
RESPONSE_DEFINITIONS: dict[str, ResponseDefinition] = {
    "sri4_sledai_component": ResponseDefinition(
        name="sri4_sledai_component",
        label="SRI-4 (SLEDAI component)",
        sledai_rule="SLEDAI-2K reduction from baseline >= 4",
        full_definition=(
            "SRI-4 also requires no new BILAG A and at most one new BILAG B domain score, "
            "and physician global assessment worsening < 0.3"
        ),
        reference="Furie 2009, Arthritis Rheum 61:1143",
    ),
    "lldas_sledai_proxy": ResponseDefinition(
        name="lldas_sledai_proxy",
        label="LLDAS proxy (SLEDAI-2K <= 4)",
        sledai_rule="SLEDAI-2K <= 4",
        full_definition=(
            "LLDAS also requires no activity in major organ systems, no new activity, PGA <= 1, "
            "prednisolone <= 7.5 mg/day and standard immunosuppressants at tolerated doses"
        ),
        reference="Franklyn 2016, Ann Rheum Dis 75:1615",
    ),
    "doris_sledai_proxy": ResponseDefinition(
        name="doris_sledai_proxy",
        label="DORIS proxy (SLEDAI-2K = 0)",
        sledai_rule="SLEDAI-2K = 0 (conservative: DORIS uses clinical SLEDAI, without serology)",
        full_definition=(
            "DORIS 2021 requires clinical SLEDAI (excluding anti-dsDNA and complement) = 0, "
            "PGA < 0.5 and prednisolone <= 5 mg/day"
        ),
        reference="van Vollenhoven 2021, Ann Rheum Dis 80:14",
    ),
}


def _as_float_array(values) -> np.ndarray:
    return np.asarray(pd.array(values, dtype="Float64").to_numpy(dtype=float, na_value=np.nan))


def _flag(condition: np.ndarray, missing: np.ndarray) -> pd.arrays.BooleanArray:
    return pd.array(np.where(missing, None, condition), dtype="boolean")


def sri4_sledai_component(sledai_baseline, sledai_followup) -> pd.arrays.BooleanArray:
    """SLEDAI-2K reduction of at least 4 points (the SLEDAI component of SRI-4).

    Missing follow-up scores give ``<NA>``, never ``False``.

    Examples
    --------
    >>> list(sri4_sledai_component([14, 10, 14], [10, 8, None]))
    [True, False, <NA>]
    """
    baseline, followup = _as_float_array(sledai_baseline), _as_float_array(sledai_followup)
    return _flag(baseline - followup >= SRI4_MINIMUM_REDUCTION, np.isnan(baseline) | np.isnan(followup))


def lldas_sledai_proxy(sledai) -> pd.arrays.BooleanArray:
    """SLEDAI-2K <= 4: the SLEDAI-only proxy for LLDAS (see :data:`RESPONSE_DEFINITIONS`)."""
    scores = _as_float_array(sledai)
    return _flag(scores <= LLDAS_MAXIMUM_SLEDAI, np.isnan(scores))


def doris_sledai_proxy(sledai) -> pd.arrays.BooleanArray:
    """SLEDAI-2K = 0: a conservative SLEDAI-only proxy for DORIS remission."""
    scores = _as_float_array(sledai)
    return _flag(scores == 0, np.isnan(scores))


def add_response_flags(
    frame: pd.DataFrame,
    *,
    baseline_column: str = "sledai_baseline",
    followup_column: str = "sledai_latest",
) -> pd.DataFrame:
    """Return a copy of ``frame`` with the three response flags and ``sledai_reduction`` added."""
    out = frame.copy()
    baseline, followup = out[baseline_column], out[followup_column]
    out["sledai_reduction"] = pd.array(
        _as_float_array(baseline) - _as_float_array(followup), dtype="Float64"
    )
    out["sri4_sledai_component"] = sri4_sledai_component(baseline, followup)
    out["lldas_sledai_proxy"] = lldas_sledai_proxy(followup)
    out["doris_sledai_proxy"] = doris_sledai_proxy(followup)
    return out
