"""Dose units, weight tiers, LMS weight references and honest cells/kg conversion."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import ndtri

import lupusbayes as lb
from lupusbayes.dosing import LMSWeightReference, WeightTierSchedule, lms_weight_kg, lms_z_score, parse_dose_unit

CDC = LMSWeightReference.cdc2000()


def test_lms_reproduces_cdc_published_percentiles():
    # CDC wtage.csv, boys, 162.5 months: P3 = 34.95474943, P50 = 48.51113138, P97 = 73.66497514
    L, M, S = -0.654142602, 48.51113138, 0.19434441  # noqa: N806
    for probability, published in [(0.03, 34.95474943), (0.5, 48.51113138), (0.97, 73.66497514)]:
        assert lms_weight_kg(ndtri(probability), L, M, S) == pytest.approx(published, rel=1e-6)


def test_shipped_table_matches_the_clinical_reference_and_interpolates_accurately():
    # ../shared/reference/clinical.md, girls age 13 (mid-year): L -1.003, M 47.837, S 0.1933
    lam, median, cv = CDC.lms(162.5 / 12, "F")  # the CDC row for "13" is at 162.5 months
    assert (float(lam), float(median), float(cv)) == pytest.approx((-1.003, 47.837, 0.1933), abs=2e-3)
    # Rows left out of the shipped (6-monthly) table, from the CDC file: interpolation error < 0.05 kg
    for sex, months, published_median in [("M", 99.5, 26.44679027), ("F", 165.5, 48.69017613), ("M", 171.5, 52.58058583)]:
        assert float(CDC.lms(months / 12, sex)[1]) == pytest.approx(published_median, abs=0.05)


def test_extension_beyond_three_sd_is_finite_and_monotone():
    lam, median, cv = CDC.lms(17.5, "F")  # L*S ~ -0.30: plain LMS breaks down above z = 3.3
    z = np.linspace(-6, 6, 241)
    weights = lms_weight_kg(z, lam, median, cv)
    assert np.all(np.isfinite(weights)) and np.all(np.diff(weights) > 0)
    assert lms_z_score(weights, lam, median, cv) == pytest.approx(z, abs=1e-8)


def test_age_outside_the_reference_is_an_error_not_an_extrapolation():
    with pytest.raises(lb.DosingError, match="outside the weight reference"):
        CDC.lms(25.0, "F")


def test_exact_and_uncertain_cells_per_kg():
    exact = lb.cells_per_kg_distribution(3e9, weight_kg=60.0)
    assert exact.exact and exact.median == pytest.approx(5e7)
    uncertain = lb.cells_per_kg_distribution(3e9, age_years=13, sex="F", seed=3, n_draws=20000)
    assert not uncertain.exact
    weights = 3e9 / uncertain.draws
    # completed-years convention: the median weight is near the CDC median at about 13.5 years
    assert np.median(weights) == pytest.approx(float(CDC.lms(13.5, "F")[1]), rel=0.03)
    # right-skewed weight: mean above median
    assert weights.mean() > np.median(weights)
    again = lb.cells_per_kg_distribution(3e9, age_years=13, sex="F", seed=3, n_draws=20000)
    assert np.array_equal(uncertain.draws, again.draws)
    with pytest.raises(lb.DosingError, match="seed"):
        lb.cells_per_kg_distribution(3e9, age_years=13, sex="F")


def test_convert_dose_needs_a_weight():
    assert lb.convert_dose(2.5e7, from_unit="cells/kg", to_unit="cells", weight_kg=40) == pytest.approx(1e9)
    with pytest.raises(lb.DosingError, match="distribution"):
        lb.convert_dose(2.5e7, from_unit="cells/kg", to_unit="cells")
    assert parse_dose_unit(" Cells per KG ") == lb.DoseUnit.CELLS_PER_KG
    with pytest.raises(lb.DosingError, match="unknown dose unit"):
        parse_dose_unit("mg")


def test_weight_tier_schedule():
    schedule = WeightTierSchedule.from_bands([(0, 40, 1e9), (40, float("inf"), 2e9)])
    assert schedule.dose_cells_for_weight(39.9) == 1e9 and schedule.dose_cells_for_weight(40) == 2e9
    per_kg = schedule.cells_per_kg_draws(np.array([20.0, 40.0, 80.0]))
    assert per_kg == pytest.approx([5e7, 5e7, 2.5e7])
    with pytest.raises(lb.DosingError, match="contiguous"):
        WeightTierSchedule.from_bands([(0, 40, 1e9), (45, 90, 2e9)])


def test_user_reference_table(tmp_path):
    path = tmp_path / "national.csv"
    path.write_text("sex,age_months,L,M,S\nF,216,-1.0,60.0,0.15\nF,480,-1.0,64.0,0.15\nM,216,-1.0,70.0,0.15\nM,480,-1.0,78.0,0.15\n")
    reference = LMSWeightReference.from_csv(path)
    assert float(reference.lms(29.0, "F")[1]) == pytest.approx(62.0, rel=1e-9)
    distribution = lb.cells_per_kg_distribution(2e9, age_years=29, sex="F", reference=reference, seed=1)
    assert 2e9 / distribution.median == pytest.approx(62.0, rel=0.05)
    path.write_text("sex,age,L\nF,1,2\n")
    with pytest.raises(lb.DosingError, match="lacks columns"):
        LMSWeightReference.from_csv(path)
