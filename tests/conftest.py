"""Shared fixtures, in two tiers.

* Real sampling (tests marked ``mcmc``): session-scoped fits with small but honest settings;
  each distinct design compiles once per session.
* Mock sampling (the ``mock_sampling`` fixture and the ``mock_*_fit`` fixtures): NUTS is
  replaced by independent draws from the model's prior, as ``pymc.testing.mock_sample`` does,
  so tests of plumbing (the command line, save and load, the gate's logic, reports) run the
  whole pipeline without MCMC.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import xarray as xr

import lupusbayes as lb
from lupusbayes.fitting import sample as sampling

ROOT = Path(__file__).resolve().parents[1]


#: AXA-NK02's three calibrated keys as they were before the calibration (docs/calibration.md): with
#: them no path of 9 patients reaches the top dose, the case the reachability tests are about.
AXA_BEFORE_CALIBRATION = (("model.blrm.prior", "sd_log_a = 1.2"), ("decision", "max_overdose_probability = 0.25"),
                          ("decision.efficacy", "dlt_penalty = 2.0"))


def axa_text_before_calibration(text: str | None = None) -> str:
    """The AXA-NK02 spec text (or ``text``, derived from it) with the values before its calibration."""
    text = text if text is not None else (ROOT / "models" / "axa_nk02.toml").read_text()
    for table, keys in AXA_BEFORE_CALIBRATION:
        text = spec_text_with(text, table, keys)
    return text


def spec_text_with(text: str, table: str, keys: str) -> str:
    """Spec TOML ``text`` with the ``key = value`` lines of ``keys`` set in ``[table]``.

    A key the table already has is replaced on its own line; a new one goes right under the table's
    header; a table the text lacks is added before ``[decision.boin]`` (or at the end). Shipped specs
    may already declare a table, so tests must not add a second ``[table]`` header by hand.
    """
    lines = text.splitlines()
    settings = [line for line in keys.strip().splitlines() if line.strip()]
    header = next((i for i, line in enumerate(lines) if line.split("#")[0].strip() == f"[{table}]"), None)
    if header is None:
        anchor = next((i for i, line in enumerate(lines) if line.startswith("[decision.boin]")), len(lines))
        return "\n".join([*lines[:anchor], f"[{table}]", *settings, "", *lines[anchor:]]) + "\n"
    end = next((i for i in range(header + 1, len(lines)) if lines[i].lstrip().startswith("[")), len(lines))
    for setting in settings:
        key = setting.split("=")[0].strip()
        existing = next((i for i in range(header + 1, end) if lines[i].split("=")[0].strip() == key), None)
        if existing is None:
            lines.insert(header + 1, setting)
            end += 1
        else:
            lines[existing] = setting
    return "\n".join(lines) + "\n"
DATA = Path(__file__).resolve().parent / "data"

#: Small but honest MCMC settings for tests (4 chains so R-hat means something).
FAST = lb.FitSettings(draws=500, tune=500, chains=4, sampler="nutpie")
#: Settings for mock-sampled fits: 2 x 300 independent prior draws pass the default gate.
MOCK = lb.FitSettings(draws=300, tune=0, chains=2, sampler="nutpie")


def mock_run_sampler(model, design, settings, target_accept, seed, progress=None) -> xr.DataTree:
    """Stand-in for :func:`lupusbayes.fitting.sample.run_sampler`: prior draws, no MCMC.

    Returns ``settings.chains x settings.draws`` independent draws of every free parameter and
    deterministic from the model's prior, with ``sample_stats`` holding no divergences and a
    standard-normal energy (as ``pymc.testing.mock_sample`` with sample-stat creators does).
    """
    chains, draws = settings.chains, settings.draws
    prior = sampling.draw_prior(design, chains * draws, seed)
    variables = {}
    for name, variable in prior.data_vars.items():
        values = variable.to_numpy().reshape((chains, draws) + variable.shape[2:])
        variables[name] = (variable.dims, values)
    coords = {name: coord for name, coord in prior.coords.items() if name not in ("chain", "draw")}
    posterior = xr.Dataset(variables, coords={"chain": np.arange(chains), "draw": np.arange(draws), **coords})
    rng = np.random.default_rng(seed)
    stats = xr.Dataset(
        {"diverging": (("chain", "draw"), np.zeros((chains, draws), dtype=bool)),
         "energy": (("chain", "draw"), rng.standard_normal((chains, draws)))},
        coords={"chain": np.arange(chains), "draw": np.arange(draws)},
    )
    return xr.DataTree.from_dict({"posterior": posterior, "sample_stats": stats})


@pytest.fixture(autouse=True)
def fit_cache_of_this_test(monkeypatch, tmp_path_factory):
    """Every test gets an empty fit cache of its own (never the user's, never another test's: a fit made
    under mock sampling must not be read back by a test that samples for real)."""
    from lupusbayes.fitting.fitcache import CACHE_ENVIRONMENT

    monkeypatch.setenv(CACHE_ENVIRONMENT, str(tmp_path_factory.mktemp("fit-cache")))


@pytest.fixture()
def mock_sampling(monkeypatch):
    """Replace NUTS by prior draws for the duration of one test."""
    monkeypatch.setattr(sampling, "run_sampler", mock_run_sampler)


def _mock_fit(model, seed: int):
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(sampling, "run_sampler", mock_run_sampler)
        return lb.fit(model, seed=seed, settings=MOCK, prior_draws=200)


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


# ---- real sampling ------------------------------------------------------------------------


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


# ---- mock sampling ------------------------------------------------------------------------


@pytest.fixture(scope="session")
def mock_crs_fit(kn5601, kn5601_spec):
    return _mock_fit(lb.CRSModel(kn5601, kn5601_spec), seed=21)


@pytest.fixture(scope="session")
def mock_blrm_fit(kn5601, kn5601_spec):
    return _mock_fit(lb.BLRM(kn5601, kn5601_spec), seed=22)


@pytest.fixture(scope="session")
def mock_sledai_fit(kn5601, kn5601_spec):
    return _mock_fit(lb.SledaiModel(kn5601, kn5601_spec), seed=23)


@pytest.fixture()
def write(tmp_path):
    """Write a text file in the test's folder and return its path."""

    def _write(name: str, text: str) -> Path:
        path = tmp_path / name
        path.write_text(text)
        return path

    return _write
