"""The likelihood building blocks: normalised, stable, and identical in NumPy and PyTensor."""

from __future__ import annotations

import numpy as np
import pytensor
import pytensor.tensor as pt
import pytest
from scipy.stats import norm

from lupusbayes.dosing import lms_weight_kg
from lupusbayes.models._math import ordinal_logit_log_prob, rounded_normal_log_prob, tensor_ops
from lupusbayes.models.sledai import SledaiModel


def test_ordinal_probabilities_sum_to_one_and_match_cumulative_logit():
    rng = np.random.default_rng(0)
    cutpoints = np.array([0.0, 1.7, 3.1, 5.0])
    for eta in rng.normal(0, 4, size=20):
        logs = np.array([ordinal_logit_log_prob(np.array([k]), np.array([eta]), cutpoints)[0] for k in range(5)])
        assert np.exp(logs).sum() == pytest.approx(1.0, abs=1e-12)
        cumulative = 1 / (1 + np.exp(-(eta - cutpoints)))  # P(Y >= k), k = 1..4
        assert np.exp(logs[1:]).sum() == pytest.approx(cumulative[0], rel=1e-10)
        assert np.exp(logs[4]) == pytest.approx(cumulative[3], rel=1e-10)


def test_ordinal_extremes_stay_finite():
    logs = ordinal_logit_log_prob(np.array([0, 2, 4]), np.array([60.0, 0.0, -60.0]), np.array([0.0, 1.0, 2.0, 3.0]))
    assert np.all(np.isfinite(logs))
    assert logs[0] == pytest.approx(-60.0, rel=1e-6)  # log(1 - sigmoid(60))


def test_rounded_normal_is_a_distribution_on_0_to_105():
    for mean, sd in [(12.0, 3.0), (0.5, 1.0), (-4.0, 2.0), (30.0, 8.0)]:
        scores = np.arange(106)
        probabilities = np.exp(rounded_normal_log_prob(scores, mean, sd, 105))
        assert probabilities.sum() == pytest.approx(1.0, abs=1e-10)
        assert probabilities[0] == pytest.approx(norm.cdf((0.5 - mean) / sd), rel=1e-9)
        assert probabilities[7] == pytest.approx(norm.cdf((7.5 - mean) / sd) - norm.cdf((6.5 - mean) / sd), rel=1e-7)


def test_numpy_and_pytensor_give_the_same_numbers():
    ops = tensor_ops()
    y = pt.lvector("y")
    eta = pt.dvector("eta")
    cut = pt.dvector("cut")
    ordinal = pytensor.function([y, eta, cut], ordinal_logit_log_prob(y, eta, cut, ops))
    outcome, linear, cutpoints = np.array([0, 1, 2, 3]), np.array([-2.0, 0.3, 1.5, 4.0]), np.array([0.0, 1.2, 2.9])
    assert ordinal(outcome, linear, cutpoints) == pytest.approx(ordinal_logit_log_prob(outcome, linear, cutpoints), rel=1e-10)

    score, mean, sd = pt.dvector("score"), pt.dvector("mean"), pt.dscalar("sd")
    rounded = pytensor.function([score, mean, sd], rounded_normal_log_prob(score, mean, sd, 105, ops))
    scores, means = np.array([0.0, 4.0, 10.0, 105.0]), np.array([2.0, 5.0, 30.0, 100.0])
    assert rounded(scores, means, 2.5) == pytest.approx(rounded_normal_log_prob(scores, means, 2.5, 105), rel=1e-8)

    z = pt.dvector("z")
    weight = pytensor.function([z], lms_weight_kg(z, -1.869, 55.7, 0.1604, xp=pt))
    zs = np.array([-5.0, -1.0, 0.0, 2.0, 3.5, 6.0])
    assert weight(zs) == pytest.approx(lms_weight_kg(zs, -1.869, 55.7, 0.1604), rel=1e-10)


def test_expected_score_formula_matches_the_exact_sum():
    """E[max(0, round(X))] by the closed form used in summaries vs the exact series."""
    eta = np.array([[[0.4, 1.5]]])  # (chain, draw, dose)
    build_up = np.array([[[0.3, 0.9]]])  # (chain, draw, month)
    patient_sd, residual_sd = np.array([[0.8]]), np.array([[2.0]])
    cdf, expected = SledaiModel._new_patient_distribution(eta, build_up, patient_sd, residual_sd, 12, (0, 4, 8))
    nodes, weights = np.polynomial.hermite_e.hermegauss(60)
    weights = weights / weights.sum()
    for d in range(2):
        for m in range(2):
            plateau = 1 / (1 + np.exp(-(eta[0, 0, d] + 0.8 * nodes)))
            mean = 12 * (1 - plateau * build_up[0, 0, m])
            k = np.arange(1, 106)
            exact = weights @ norm.sf((k[None, :] - 0.5 - mean[:, None]) / 2.0).sum(axis=1)
            assert expected[0, 0, d, m] == pytest.approx(exact, abs=0.02)
            assert cdf[0, 0, d, m, 1] == pytest.approx(weights @ norm.cdf((4.5 - mean) / 2.0), abs=1e-4)  # 12 vs 60 nodes
