"""Shared fixtures. Fitted models are session-scoped: each distinct design compiles once."""

from __future__ import annotations

from pathlib import Path

import pytest

import lupusbayes as lb

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(__file__).resolve().parent / "data"

#: Small but honest MCMC settings for tests (4 chains so R-hat means something).
FAST = lb.FitSettings(draws=500, tune=500, chains=4, sampler="nutpie")


@pytest.fixture(scope="session")
def kn5601() -> lb.Cohort:
    return lb.load_kn5601()


@pytest.fixture(scope="session")
def kn5601_spec() -> lb.TrialSpec:
    return lb.load_spec(ROOT / "models" / "kn5601.toml")


@pytest.fixture(scope="session")
def axa_spec() -> lb.TrialSpec:
    return lb.load_spec(ROOT / "models" / "axa_nk02.toml")


@pytest.fixture(scope="session")
def hist_sa_spec() -> lb.TrialSpec:
    return lb.load_spec(ROOT / "docs" / "examples" / "hist_sa.toml")


@pytest.fixture(scope="session")
def crs_fit(kn5601, kn5601_spec):
    return lb.fit(lb.CRSModel(kn5601, kn5601_spec), seed=11, settings=FAST)


@pytest.fixture(scope="session")
def blrm_fit(kn5601, kn5601_spec):
    return lb.fit(lb.BLRM(kn5601, kn5601_spec), seed=12, settings=FAST)


@pytest.fixture(scope="session")
def sledai_fit(kn5601, kn5601_spec):
    return lb.fit(lb.SledaiModel(kn5601, kn5601_spec), seed=13, settings=FAST)


@pytest.fixture(scope="session")
def axa_crs_fit(kn5601, axa_spec):
    return lb.fit(lb.CRSModel(kn5601, axa_spec), seed=14, settings=FAST)


@pytest.fixture()
def write(tmp_path):
    """Write a text file in the test's folder and return its path."""

    def _write(name: str, text: str) -> Path:
        path = tmp_path / name
        path.write_text(text)
        return path

    return _write
