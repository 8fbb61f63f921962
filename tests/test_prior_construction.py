"""Constructing the DLT prior (``lupusbayes.prior_construction``, ``lupusbayes construct-prior``) and mixture priors
in a spec (``[[model.blrm.prior.components]]``).

crmPack reference values (openpharma/crmPack, tests/testthat/test-fromQuantiles.R): the minimal
informative Beta ``h_get_min_inf_beta(0.2, 0.5) = (2.322, 1)`` and ``(0.7, 0.1) = (1, 11.4272)``, and the
starting values of ``Quantiles2LogisticNormal`` for doses 1, 3, 5, 10 (reference 5) and medians 0.1-0.4:
``meanAlpha = -0.92619``, log-normal ``meanBeta = -0.23208``. crmPack prints no converged
``MinimalInformative`` model (its examples stop the annealing after 0.1 s, at a distance of 0.67), so the
fitted prior is checked against the quantiles it was asked to reproduce at the lowest and highest dose.
"""

from __future__ import annotations

import json
import math
import tomllib
import warnings

import numpy as np
import pytest

import lupusbayes as lb
from lupusbayes.calibration import CalibrationError, setting_text
from lupusbayes.cli import main
from lupusbayes.decisions.prior_summary import dlt_prior_summary
from lupusbayes.errors import ModelSetupError, PriorConstructionError, PriorConstructionWarning, SpecError
from lupusbayes.models.exact import blrm_exact_posterior
from lupusbayes.prior_construction import (
    ROBUST_WEIGHT,
    SLOPE_SD_COLLAPSED,
    construct_prior,
    constructed_prior,
    heterogeneity_classes_table,
    median_line,
    minimal_informative_beta,
    minimal_informative_prior,
    robust_mixture_prior,
)
from lupusbayes.sensitivity import prior_alternatives
from lupusbayes.spec import BivariateNormalMixture, BivariateNormalPrior, parse_spec

AXA_DOSES, AXA_REFERENCE = (2.5e7, 7.5e7, 2.5e8), 7.5e7
#: crmPack's MinimalInformative example grid (reference dose 1).
CRMPACK_GRID = (0.1, 0.5, 1, 3, 6, 10, 12, 15)
MIXTURE = BivariateNormalMixture((0.7, 0.3), (BivariateNormalPrior(-2.9, 0.1, 0.6, 0.3, 0.2),
                                              BivariateNormalPrior(-1.0, 0.5, 2.0, 1.0, -0.3)))
MIXTURE_TOML = """
[[model.blrm.prior.components]]
weight = 0.7
mean_log_a = -2.9
sd_log_a = 0.6
mean_log_b = 0.1
sd_log_b = 0.3
correlation = 0.2

[[model.blrm.prior.components]]
weight = 0.3
mean_log_a = -1.0
sd_log_a = 2.0
mean_log_b = 0.5
sd_log_b = 1.0
correlation = -0.3
"""


def _quiet(function, *args, **kwargs):
    """``function(...)`` and the prior-construction warnings it issued."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = function(*args, **kwargs)
    return result, [str(w.message) for w in caught if issubclass(w.category, PriorConstructionWarning)]


def _spec_with_prior(block: str, *, hierarchy: str = "none", extra: str = "") -> lb.TrialSpec:
    """The shipped AXA-NK02 spec with ``block`` in place of its ``[model.blrm.prior]``."""
    text = lb.load_spec("axa_nk02").text.replace('hierarchy = "exnex"', f'hierarchy = "{hierarchy}"')
    start = text.index("[model.blrm.prior]")
    end = text.index("\n[", start + 1)
    return parse_spec(text[:start] + block.strip() + "\n" + extra + text[end:], source="mixture.toml")


# ---- crmPack's minimal informative construction ----------------------------------------------------


@pytest.mark.parametrize(("probability", "quantile", "expected"),
                         [(0.2, 0.5, (2.322, 1.0)), (0.7, 0.1, (1.0, 11.4272)), (0.1, 0.1, (1.0, 1.0))])
def test_the_minimal_informative_beta_is_crmpacks(probability, quantile, expected):
    assert minimal_informative_beta(probability, quantile) == pytest.approx(expected, rel=1e-4)


def test_the_starting_line_is_crmpacks():
    assert median_line([1, 3, 5, 10], 5, [0.1, 0.2, 0.3, 0.4]) == pytest.approx((-0.92619, -0.23208), abs=1e-5)


def test_the_minimal_informative_prior_reproduces_the_asked_quantiles_at_the_ends():
    result, _ = _quiet(minimal_informative_prior, CRMPACK_GRID, 1.0, threshold_lowest=0.2, threshold_highest=0.3)
    details = result.details
    # the two Betas: Beta(1, log 0.05 / log 0.8) at the lowest dose, Beta(log 0.05 / log 0.3, 1) at the highest
    assert details["beta_lowest"] == pytest.approx([1.0, math.log(0.05) / math.log(0.8)])
    assert details["beta_highest"] == pytest.approx([math.log(0.05) / math.log(0.3), 1.0])
    assert details["median_lowest"] == pytest.approx(1 - 0.5 ** (math.log(0.8) / math.log(0.05)))
    assert details["p_above_threshold_lowest"] == pytest.approx(0.05, abs=0.02)  # asked: 0.05
    assert details["p_above_threshold_highest"] == pytest.approx(0.95, abs=0.02)  # asked: 1 - 0.05
    assert details["distance"] < 0.05  # largest difference over every dose's 2.5%, 50%, 97.5% quantile
    table = result.per_dose
    assert np.abs(table[["fitted_q2_5", "fitted_median", "fitted_q97_5"]].to_numpy()
                  - table[["required_q2_5", "required_median", "required_q97_5"]].to_numpy()).max() == \
        pytest.approx(details["distance"])
    assert table["required_median"].iloc[[0, -1]].tolist() == pytest.approx(
        [details["median_lowest"], details["median_highest"]])


def test_the_pitfall_is_stated_with_this_results_numbers():
    result, issued = _quiet(minimal_informative_prior, AXA_DOSES, AXA_REFERENCE, overdose_threshold=0.2,
                            max_overdose_probability=0.35)
    assert issued == list(result.warnings) and len(issued) == 3
    top, ewoc, slope = result.warnings
    assert f"{result.details['p_above_threshold_highest']:.3f}" in top and "pessimistic" in top
    assert "closes level 2" in ewoc and ", 3 (" in ewoc  # P(P(DLT) >= 0.2) 0.62 and 0.98 against 0.35
    assert result.prior.sd_log_b < SLOPE_SD_COLLAPSED and "has collapsed to 0.0696" in slope
    assert result.ess_whole_prior.log_b > 1000  # a collapsed slope is worth thousands of patients
    assert result.per_dose["p_overdose"].iloc[-1] > 0.9


def test_contradicting_thresholds_are_one_line_errors():
    with pytest.raises(PriorConstructionError, match="at or below the lowest"):
        minimal_informative_prior(AXA_DOSES, AXA_REFERENCE, threshold_lowest=0.9, threshold_highest=0.01)
    with pytest.raises(PriorConstructionError, match="at least two"):
        minimal_informative_prior([1.0], 1.0)


# ---- P(DLT) under a prior: quadrature against the exact BLRM ------------------------------------------


@pytest.mark.parametrize("prior", [BivariateNormalPrior(-2.944, 0.0, 1.5, 0.8), MIXTURE], ids=["bvn", "mixture"])
def test_the_implied_p_dlt_is_the_exact_blrms(prior):
    exact = blrm_exact_posterior(AXA_DOSES, [0, 0, 0], [0, 0, 0], prior=prior, reference_dose=AXA_REFERENCE,
                                 points=101, span=14.0)
    result = constructed_prior(prior, AXA_DOSES, AXA_REFERENCE, method="test", overdose_threshold=0.2)
    assert result.per_dose["p_dlt_mean"].to_numpy() == pytest.approx(exact.mean_p_dlt(AXA_DOSES), abs=1e-4)
    assert result.per_dose["p_overdose"].to_numpy() == pytest.approx(
        exact.probability_at_least(AXA_DOSES, 0.2), abs=2e-3)


def test_a_mixtures_exact_p_dlt_mean_is_the_weighted_mean_of_its_components():
    def exact_mean(prior):
        return blrm_exact_posterior(AXA_DOSES, [0, 0, 0], [0, 0, 0], prior=prior, reference_dose=AXA_REFERENCE,
                                    points=101, span=14.0).mean_p_dlt(AXA_DOSES)

    weighted = sum(w * exact_mean(c) for w, c in zip(MIXTURE.weights, MIXTURE.components, strict=True))
    assert exact_mean(MIXTURE) == pytest.approx(weighted, abs=1e-4)
    summary = constructed_prior(MIXTURE, AXA_DOSES, AXA_REFERENCE, method="test")
    assert summary.per_dose["p_dlt_mean"].to_numpy() == pytest.approx(weighted, abs=1e-4)
    assert summary.ess_whole_prior is None and "ill-defined" in summary.ess_method and "moment" in summary.ess_method


# ---- the robust mixture and the heterogeneity classes --------------------------------------------------


def test_the_robust_mixture_has_the_stated_weight_and_a_weakly_informative_component():
    informative = BivariateNormalPrior(-3.0, 0.1, 0.5, 0.3, 0.2)
    mixture = robust_mixture_prior(informative)
    assert mixture.weights == (1 - ROBUST_WEIGHT, ROBUST_WEIGHT)
    assert mixture.components == (informative, BivariateNormalPrior(-3.0, 0.1, 2.0, 1.0, 0.0))
    assert robust_mixture_prior(informative, robust_weight=0.25).weights == (0.75, 0.25)
    with pytest.raises(PriorConstructionError, match="robust_weight"):
        robust_mixture_prior(informative, robust_weight=1.0)
    with pytest.raises(PriorConstructionError, match="mixture already"):
        robust_mixture_prior(MIXTURE)


def test_heterogeneity_classes_borrow_less_as_tau_grows(axa_spec):
    table = heterogeneity_classes_table(axa_spec)
    by_class = table[table["level"] == 2].set_index("heterogeneity")
    assert list(by_class.index) == ["small", "moderate", "substantial", "large"]
    assert by_class["ess_ceiling"].is_monotonic_decreasing
    substantial = by_class.loc["substantial"]
    spread = math.exp(1.645 * math.log(2.0) / 1.96)
    assert (substantial["tau_log_a_median"], substantial["tau_log_a_q95"]) == pytest.approx((0.5, 0.5 * spread))
    # the ceiling under 'large' heterogeneity is about the ESS of N(mu, 1): near the spec prior's own at 7.5e7
    assert 5 < by_class.loc["large", "ess_ceiling"] < 10


def test_the_codata_map_prior_is_robustified(axa_spec, mock_sampling, monkeypatch):
    from dataclasses import replace

    spec = replace(axa_spec, fitting=lb.FitSettings(draws=1000, tune=0, chains=2, sampler="nutpie"))
    result, _ = _quiet(construct_prior, spec, "robust-mixture", codata=[lb.load_kn5601()], seed=1)
    informative, weak = result.prior.components
    assert result.prior.weights == (0.9, 0.1) and weak.sd_log_a == 2.0
    assert (weak.mean_log_a, weak.mean_log_b) == (informative.mean_log_a, informative.mean_log_b)
    assert "MAP prior given co-data KN5601 (11 patients)" in result.sources[0]
    assert any("count twice" in note for note in result.notes)


# ---- a mixture prior in a spec ---------------------------------------------------------------------------


def test_a_mixture_prior_parses():
    spec = _spec_with_prior(MIXTURE_TOML)
    assert spec.models.blrm.prior == MIXTURE


@pytest.mark.parametrize(("change", "key", "words"), [
    (("weight = 0.3", "weight = 0.2"), "model.blrm.prior.components'", "must sum to 1 (got 0.7 + 0.2 = 0.9)"),
    (("weight = 0.3", "weight = 0"), "model.blrm.prior.components[1].weight", "must be positive"),
    (("weight = 0.3\n", ""), "model.blrm.prior.components[1].weight", "required key is missing"),
    (("sd_log_a = 0.6", "sd_log_a = 0.6\nmedian = 1"), "model.blrm.prior.components[0].median", "unknown key"),
])
def test_bad_mixture_weights_are_one_line_errors_naming_the_key(change, key, words):
    with pytest.raises(SpecError) as error:
        _spec_with_prior(MIXTURE_TOML.replace(*change))
    message = str(error.value)
    assert "\n" not in message and f"field '{key}" in message and words in message


def test_a_mixture_and_single_prior_keys_together_are_refused():
    with pytest.raises(SpecError, match="field 'model.blrm.prior.mean_log_a'.*not in"):
        _spec_with_prior("[model.blrm.prior]\nmean_log_a = -2\n" + MIXTURE_TOML)
    one = MIXTURE_TOML[:MIXTURE_TOML.index("[[", 10)]
    with pytest.raises(SpecError, match="at least two components"):
        _spec_with_prior(one.replace("weight = 0.7", "weight = 1.0"))


def test_lupusbayes_prior_summarises_a_mixture_spec(capsys, tmp_path):
    spec = _spec_with_prior(MIXTURE_TOML)
    summary = dlt_prior_summary(spec)
    assert summary.rows["p_dlt_mean"].to_numpy() == pytest.approx(
        constructed_prior(MIXTURE, AXA_DOSES, AXA_REFERENCE, method="test").per_dose["p_dlt_mean"], abs=1e-3)
    assert np.isfinite(summary.rows["ess_moment_matched_beta"]).all()
    path = tmp_path / "mixture.toml"
    path.write_text(spec.text, encoding="utf-8")
    assert main(["prior", str(path), "--seed", "1"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "a mixture: 0.7 x N(log a: -2.9, sd 0.6" in out and "this prior is a mixture" in out


def test_the_blrm_samples_a_mixture_prior_for_mu(mock_sampling, kn5601):
    """Mock sampling draws from the model's prior: the population mean's draws follow the mixture."""
    from lupusbayes.fitting import sample_prior

    spec = _spec_with_prior(MIXTURE_TOML, hierarchy="exchangeable")  # the mixture is the population mean's prior
    draws = sample_prior(lb.BLRM(kn5601, spec), 4000, 1)["mu"].to_numpy().reshape(-1, 2)
    assert draws.mean(axis=0) == pytest.approx(MIXTURE.mean, abs=0.08)
    second_moment = sum(w * (c.sd_log_a**2 + c.mean_log_a**2) for w, c in zip(MIXTURE.weights, MIXTURE.components))
    assert draws[:, 0].std() == pytest.approx(math.sqrt(second_moment - MIXTURE.mean[0] ** 2), rel=0.05)
    fit = lb.fit(lb.BLRM(kn5601, spec), seed=2, settings=lb.FitSettings(draws=300, tune=0, chains=2,
                                                                        sampler="nutpie"), prior_draws=100)
    assert "mu" in fit.posterior and "z_population" not in fit.posterior


def test_exnex_refuses_a_mixture_as_its_nex_prior(kn5601):
    spec = _spec_with_prior(MIXTURE_TOML, hierarchy="exnex")
    with pytest.raises(ModelSetupError, match=r"give a bivariate normal \[model.blrm.nex_prior\]"):
        lb.BLRM(kn5601, spec)
    with_nex = _spec_with_prior(MIXTURE_TOML, hierarchy="exnex",
                                extra="\n[model.blrm.nex_prior]\nmean_log_a = -2.944\nsd_log_a = 1.5\n")
    assert lb.BLRM(kn5601, with_nex).hierarchy == "exnex"


def test_calibration_and_sensitivity_refuse_or_skip_a_mixtures_keys():
    spec = _spec_with_prior(MIXTURE_TOML)
    with pytest.raises(CalibrationError) as error:
        setting_text(spec, {"model.blrm.prior.sd_log_a": 2.0})
    assert "\n" not in str(error.value) and "is a mixture" in str(error.value)
    assert setting_text(spec, {"decision.max_overdose_probability": 0.3})  # other keys still vary
    assert prior_alternatives(spec, with_codata=False) == ()  # no SD / median alternatives of a mixture


# ---- the command line ---------------------------------------------------------------------------------------


def test_construct_prior_prints_a_block_to_paste(capsys):
    assert main(["construct-prior", "axa_nk02", "--method", "minimal-informative"]) == 0
    captured = capsys.readouterr()
    parsed = tomllib.loads(captured.out)["model"]["blrm"]["prior"]  # the whole output is TOML
    assert parsed == pytest.approx({"mean_log_a": -1.0131, "sd_log_a": 1.1941, "mean_log_b": 0.6358,
                                    "sd_log_b": 0.0696, "correlation": 0.95}, abs=2e-4)
    assert "# warning: pitfall: the top dose's prior is pessimistic" in captured.out
    assert "Morita, Thall & Mueller" in captured.out and captured.err == ""  # warnings shown once, in the output


def test_construct_prior_writes_atomically_and_refuses_to_overwrite(tmp_path, capsys):
    out = tmp_path / "robust.toml"
    arguments = ["construct-prior", "axa_nk02", "--method", "robust-mixture", "--out", str(out)]
    assert main(arguments) == 0
    written = out.read_text(encoding="utf-8")
    assert [p.name for p in tmp_path.iterdir()] == ["robust.toml"]  # no partial file left
    spec = _spec_with_prior(written[written.index("[[model.blrm.prior.components]]"):], hierarchy="exnex")
    assert spec.models.blrm.prior.weights == (0.9, 0.1) and spec.models.blrm.nex_prior.sd_log_a == 1.5
    capsys.readouterr()
    out.write_text("mine", encoding="utf-8")
    assert main(arguments) == 2
    assert "exists" in capsys.readouterr().err and out.read_text(encoding="utf-8") == "mine"
    assert main([*arguments, "--overwrite", "--json"]) == 0
    payload = json.loads(out.read_text(encoding="utf-8"))
    assert payload["prior"]["components"][1]["weight"] == 0.1 and len(payload["per_dose"]) == 3
    assert "ill-defined" in payload["ess"]["per_dose_method"]


def test_construct_prior_refuses_a_mixture_spec_without_codata(tmp_path, capsys):
    path = tmp_path / "mixture.toml"
    path.write_text(_spec_with_prior(MIXTURE_TOML).text, encoding="utf-8")
    assert main(["construct-prior", str(path), "--method", "robust-mixture"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "mixture already" in err


def test_the_docstring_examples_run():
    """They hold the crmPack reference values (minimal informative Beta, starting line)."""
    import doctest

    from lupusbayes import prior_construction

    assert doctest.testmod(prior_construction).failed == 0
