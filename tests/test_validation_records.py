"""The stored simulation-based calibration (docs/validation/) is uniform and still describes the models.

``make validate`` is too long for the test suite (about 10 minutes); its results are stored with
the commit. These tests check them: rank histograms within binomial bounds, and fingerprints of
the models they were run on equal to the shipped models', so a change to a prior or a likelihood
without a new calibration fails here instead of going stale silently.
"""

from __future__ import annotations

import json

import pandas as pd
import pytest
from conftest import ROOT

import lupusbayes as lb
from lupusbayes.fitting.calibration import SBCResult, model_fingerprint

VALIDATION = ROOT / "docs" / "validation"
SETTINGS = json.loads((VALIDATION / "sbc_settings.json").read_text())


@pytest.mark.parametrize("name", ["crs", "sledai"])
def test_stored_ranks_are_uniform_within_binomial_bounds(name):
    ranks = pd.read_csv(VALIDATION / f"sbc_ranks_{name}.csv")
    assert len(ranks) == SETTINGS["replicates"]
    result = SBCResult(ranks=ranks, n_draws=SETTINGS["thinned_to"], failed_gate=0)
    check = result.binomial_band_check(bins=20, level=0.99)
    assert check.passed, f"{int(check.outliers.sum())} bins outside the 99% band; allowed {check.allowed_outliers}"
    assert (result.uniformity_p_values(bins=20) > 0.001).all()


@pytest.mark.parametrize("name", ["crs", "sledai"])
def test_stored_calibration_was_run_on_the_shipped_model(name, kn5601, kn5601_spec):
    model = {"crs": lb.CRSModel, "sledai": lb.SledaiModel}[name](kn5601, kn5601_spec)
    stored = SETTINGS["models"][name]
    current = model_fingerprint(model)
    assert current == stored, (
        f"docs/validation holds a calibration of another {name} model (stored {stored}, now {current}); "
        "re-run `make validate` and commit its results"
    )
