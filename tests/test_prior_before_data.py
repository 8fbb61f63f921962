"""``lupusbayes prior SPEC`` before any data: the DLT prior per dose, EWOC's verdict and the prior ESS.

The spec's prior is computed exactly (quadrature, no MCMC) and checked here against an independent
Monte Carlo of the bivariate normal prior; EWOC's verdict against ``decide``'s with no patient;
the ESS formulas against known answers. The co-data prior comes from an MCMC fit (mock-sampled here).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from scipy.special import expit

import lupusbayes as lb
from lupusbayes.cli import main
from lupusbayes.decisions import DrawsPosterior, state_from_outcomes
from lupusbayes.decisions.posterior import QUADRATURE_ERROR
from lupusbayes.decisions.prior_summary import (
    SPEC_PRIOR,
    dlt_prior_summary,
    moment_matched_beta_ess,
    morita_thall_mueller_ess,
)
from lupusbayes.dosing import dose_label
from lupusbayes.fitting import sample as sampling
from lupusbayes.spec import BivariateNormalPrior

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ("axa_nk02", "kn5601")
#: Independent Monte Carlo draws of (log a, log b) for the reference numbers.
MC_DRAWS = 400_000


@pytest.fixture()
def no_mcmc(monkeypatch):
    """Fail the test if anything samples."""
    def refuse(*args, **kwargs):
        raise AssertionError("the prior before data must not run MCMC")

    monkeypatch.setattr(sampling, "run_sampler", refuse)


def _prior_json(capsys, *arguments) -> dict:
    code = main(["prior", *arguments, "--json"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return json.loads(captured.out)


def _without_borrowing(spec_name: str, tmp_path: Path) -> lb.TrialSpec:
    """The shipped spec with ``hierarchy = "none"``: decide then reads the spec's prior exactly."""
    spec = lb.load_spec(spec_name)
    path = tmp_path / f"{spec_name}_no_borrowing.toml"
    path.write_text(spec.text.replace('hierarchy = "exnex"', 'hierarchy = "none"'), encoding="utf-8")
    return lb.load_spec(path)


# ---- runs, exactly, without MCMC --------------------------------------------------------------


@pytest.mark.parametrize("spec_name", SHIPPED)
def test_the_prior_before_data_runs_without_mcmc(spec_name, capsys, no_mcmc):
    assert main(["prior", spec_name, "--seed", "1"]) == 0
    out = capsys.readouterr().out
    spec = lb.load_spec(spec_name)
    assert out.startswith(f"DLT prior before any patient: trial {spec.trial.id}, model blrm")
    assert "prior: spec prior ([model.blrm.prior]" in out and "exact BLRM by quadrature (no MCMC)" in out
    assert "moment-matched Beta" in out and "Morita, Thall & Mueller (2008)" in out
    for level in spec.dosing.levels:
        assert dose_label(level, spec.dosing.unit.value) in out


def test_a_borrowing_spec_without_codata_says_which_prior_it_shows(capsys, no_mcmc):
    assert main(["prior", "axa_nk02", "--seed", "1"]) == 0
    out = " ".join(capsys.readouterr().out.split())  # the note is wrapped
    assert "hierarchy 'exnex' borrows from co-data" in out and "--codata FILE" in out


@pytest.mark.parametrize("spec_name", SHIPPED)
def test_the_numbers_match_an_independent_monte_carlo_of_the_prior(spec_name, capsys, no_mcmc):
    spec = lb.load_spec(spec_name)
    payload = _prior_json(capsys, spec_name, "--seed", "1")
    assert payload["source"] == SPEC_PRIOR
    prior = spec.models.blrm.prior
    rng = np.random.default_rng(20250601)
    theta = rng.multivariate_normal(prior.mean, prior.covariance, size=MC_DRAWS)
    x = np.log(np.asarray(spec.dosing.levels) / spec.dosing.reference_dose)
    p_dlt = expit(theta[:, :1] + np.exp(theta[:, 1:]) * x)  # (draws, doses)
    intervals = spec.dlt.intervals
    for level, row in enumerate(payload["doses"]):
        draws = p_dlt[:, level]
        assert row["dose"] == pytest.approx(spec.dosing.levels[level])
        mc_error = draws.std() / np.sqrt(MC_DRAWS)
        assert abs(row["p_dlt_mean"] - draws.mean()) < 4 * mc_error + QUADRATURE_ERROR
        # each quantile q: the Monte Carlo CDF at the reported value is q
        for key, q in (("p_dlt_q5", 0.05), ("p_dlt_median", 0.5), ("p_dlt_q95", 0.95)):
            cdf = np.mean(draws <= row[key])
            assert abs(cdf - q) < 4 * np.sqrt(q * (1 - q) / MC_DRAWS) + QUADRATURE_ERROR, (key, cdf)
        for (low, high), name in zip(intervals.bounds, intervals.names, strict=True):
            inside = np.mean((draws >= low) & ((draws < high) if high < 1 else (draws <= high)))
            tolerance = 4 * np.sqrt(inside * (1 - inside) / MC_DRAWS) + QUADRATURE_ERROR
            assert abs(row[f"p_{name}"] - inside) < tolerance, (name, row[f"p_{name}"], inside)
        assert row["p_overdose"] == row[f"p_{intervals.overdose}"]
        mc_ess = draws.mean() * (1 - draws.mean()) / draws.var() - 1
        assert row["ess_moment_matched_beta"] == pytest.approx(mc_ess, rel=0.02)


# ---- the ESS ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("a", "b"), [(1.0, 1.0), (0.5, 0.5), (2.0, 18.0), (30.0, 70.0)])
def test_the_moment_matched_beta_ess_of_a_beta_is_a_plus_b(a, b):
    mean = a / (a + b)
    variance = a * b / ((a + b) ** 2 * (a + b + 1))
    assert float(moment_matched_beta_ess(mean, variance)) == pytest.approx(a + b, rel=1e-12)


def test_the_summary_of_beta_draws_gives_a_plus_b_per_dose(kn5601_spec):
    """A prior held as draws (the co-data case): the ESS column is a + b of the Beta behind each dose."""
    shapes = [(1.0, 19.0), (2.0, 18.0), (3.0, 12.0), (6.0, 14.0)]  # one Beta per level of KN5601
    rng = np.random.default_rng(5)
    n = 200_000
    draws = np.column_stack([rng.beta(a, b, size=n) for a, b in shapes])
    prior = DrawsPosterior(doses=np.asarray(kn5601_spec.dosing.levels), values={"p_dlt": draws},
                           weights=np.full(n, 1.0 / n), source="Beta draws")
    summary = dlt_prior_summary(kn5601_spec, prior, source="Beta draws")
    assert summary.rows["ess_moment_matched_beta"].to_numpy() == pytest.approx([a + b for a, b in shapes], rel=0.03)
    assert summary.ess_whole_prior is None and "MCMC draws" in summary.ess_whole_prior_missing
    medians = [np.median(draws[:, level]) for level in range(len(shapes))]
    assert summary.rows["p_dlt_median"].to_numpy() == pytest.approx(medians, rel=1e-3)


def test_the_morita_thall_mueller_ess_matches_a_numerical_information_count(axa_spec):
    """Independent check of the algebra: the expected information per patient by finite differences of the
    Bernoulli log-likelihood at the prior mean (linear in the DLT, so its prior-predictive mean is exact)."""
    prior = BivariateNormalPrior(-2.0, 0.3, 1.1, 0.7, 0.2)
    doses = np.asarray(axa_spec.dosing.levels)
    reference = axa_spec.dosing.reference_dose
    expected_dlt = np.array([0.04, 0.1, 0.3])
    ess = morita_thall_mueller_ess(prior, doses, reference, prior_mean_p_dlt=expected_dlt)

    def log_likelihood(theta, x, y):
        eta = theta[0] + np.exp(theta[1]) * x
        return y * eta - np.log1p(np.exp(eta))

    step = 1e-4
    information = np.zeros(2)
    for x, y in zip(np.log(doses / reference), expected_dlt, strict=True):
        for j in range(2):
            shift = np.zeros(2)
            shift[j] = step
            second = (log_likelihood(prior.mean + shift, x, y) - 2 * log_likelihood(prior.mean, x, y)
                      + log_likelihood(prior.mean - shift, x, y)) / step**2
            information[j] -= second / len(doses)
    needed = np.diag(np.linalg.inv(prior.covariance)) * (1 - 1 / ess.vague_factor)
    assert ess.information_per_patient == pytest.approx(tuple(information), rel=1e-5)
    assert ess.total == pytest.approx(needed.sum() / information.sum(), rel=1e-5)
    assert (ess.log_a, ess.log_b) == pytest.approx(tuple(needed / information), rel=1e-5)


def test_a_prior_twice_as_precise_has_twice_the_morita_thall_mueller_ess(axa_spec):
    wide = BivariateNormalPrior(-2.944, 0.0, 1.2, 0.8)
    narrow = BivariateNormalPrior(-2.944, 0.0, 1.2 / np.sqrt(2), 0.8 / np.sqrt(2))
    doses, reference = axa_spec.dosing.levels, axa_spec.dosing.reference_dose
    mean_p = [0.03, 0.08, 0.28]
    assert (morita_thall_mueller_ess(narrow, doses, reference, prior_mean_p_dlt=mean_p).total
            == pytest.approx(2 * morita_thall_mueller_ess(wide, doses, reference, prior_mean_p_dlt=mean_p).total))


# ---- EWOC: the verdict decide gives before the first patient -------------------------------------


@pytest.mark.parametrize("spec_name", SHIPPED)
def test_ewoc_verdict_is_decides_with_no_patient(spec_name, tmp_path, capsys, no_mcmc):
    spec = _without_borrowing(spec_name, tmp_path)  # decide reads the spec's prior exactly (no co-data)
    payload = _prior_json(capsys, str(spec.source), "--seed", "1")
    decision = lb.recommend(spec, state_from_outcomes(spec, ""), design="blrm_ewoc", transitions=False)
    ewoc = next(verdict for verdict in decision.recommendation.verdicts if verdict.rule == "EWOC")
    assert payload["ewoc"]["verdict"] == ewoc.verdict
    assert payload["ewoc"]["allowed_levels"] == sorted(level + 1 for level in ewoc.allowed)
    assert [row["ewoc_allows"] for row in payload["doses"]] == [check.passed for check in ewoc.checks]
    assert [row["p_overdose"] for row in payload["doses"]] == [check.estimate.value for check in ewoc.checks]


def test_ewoc_forbids_axa_nk02s_top_dose_under_its_prior(capsys, no_mcmc):
    payload = _prior_json(capsys, "axa_nk02", "--seed", "1")
    assert [row["ewoc_allows"] for row in payload["doses"]] == [True, True, False]
    assert payload["ewoc"]["limit"] == 0.35 and payload["overdose_interval"] == "excessive"  # calibrated


# ---- with co-data: the prior decide reads (an EXNEX fit, mock-sampled here) ----------------------


def test_the_codata_prior_is_the_exnex_prior_decide_reads(axa_spec, capsys, mock_sampling):
    payload = _prior_json(capsys, "axa_nk02", "--codata", "kn5601", "--seed", "3")
    assert payload["source"].startswith("EXNEX given co-data: KN5601 (11 patients)")
    assert "MCMC draws" in payload["computation"] and payload["ess_morita_thall_mueller"] is None
    decision = lb.recommend(axa_spec, state_from_outcomes(axa_spec, ""), design="blrm_ewoc", codata=["kn5601"],
                            seed=3, transitions=False)
    ewoc = next(verdict for verdict in decision.recommendation.verdicts if verdict.rule == "EWOC")
    assert [row["p_overdose"] for row in payload["doses"]] == pytest.approx(
        [check.estimate.value for check in ewoc.checks], abs=1e-12)
    assert [row["ewoc_allows"] for row in payload["doses"]] == [check.passed for check in ewoc.checks]

    assert main(["prior", "axa_nk02", "--codata", "kn5601", "--seed", "3"]) == 0
    out = capsys.readouterr().out
    assert "prior: EXNEX given co-data: KN5601" in out and "MCMC draws" in out


# ---- JSON and bad input -----------------------------------------------------------------------


def test_the_json_has_every_number_per_dose(capsys, no_mcmc):
    payload = _prior_json(capsys, "axa_nk02", "--seed", "1")
    assert {"model", "trial_id", "source", "methods", "ewoc", "doses", "intervals",
            "ess_morita_thall_mueller"} <= set(payload)
    assert payload["model"] == "blrm" and payload["trial_id"] == "AXA-NK02" and payload["source"] == "spec prior"
    assert {"p_dlt", "ewoc", "ess_moment_matched_beta", "ess_morita_thall_mueller"} <= set(payload["methods"])
    assert "Morita, Thall & Mueller (2008)" in payload["methods"]["ess_morita_thall_mueller"]
    keys = {"dose", "dose_label", "p_dlt_mean", "p_dlt_median", "p_dlt_q5", "p_dlt_q95", "p_acceptable",
            "p_elevated", "p_excessive", "ewoc_allows", "ess_moment_matched_beta"}
    assert len(payload["doses"]) == 3
    for row in payload["doses"]:
        assert keys <= set(row)
        assert isinstance(row["dose"], float) and isinstance(row["ewoc_allows"], bool)
        assert row["p_dlt_q5"] < row["p_dlt_median"] < row["p_dlt_q95"]
        assert row["p_acceptable"] + row["p_elevated"] + row["p_excessive"] == pytest.approx(1.0)
    assert payload["ess_morita_thall_mueller"]["total"] > 0


@pytest.mark.parametrize(("arguments", "words"), [
    (["axa_nk02", "--model", "crs"], "--model blrm"),
    (["axa_nk02", "--model", "sledai"], "--model blrm"),
    (["axa_nk02", "--data", "kn5601", "--codata", "kn5601"], "--codata goes with the prior before any data"),
    (["kn5601", "--codata", "kn5601"], "the spec's own trial"),
    ([str(ROOT / "docs" / "examples" / "hist_sa.toml"), "--codata", "kn5601"], "[[observations]] are data"),
])
def test_bad_input_is_one_line_and_exit_2(arguments, words, capsys, no_mcmc):
    assert main(["prior", *arguments, "--seed", "1"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("lupusbayes: error: ") and words in lines[0]


def test_with_data_the_prior_predictive_is_unchanged(capsys):
    assert main(["prior", "kn5601", "--data", "kn5601", "--model", "blrm", "--seed", "1", "--draws", "200"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("Prior of blrm (dlt, none) (trial KN5601; seed 1; 200 draws)")
    assert "Prior predictive checks" in out
