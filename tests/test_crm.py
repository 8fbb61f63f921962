"""CRM and TITE-CRM (lupusbayes.decisions.crm, lupusbayes.simulation.crm_simulation) against dfcrm.

Reference values and where they come from:

* Cheung (2011), *Dose Finding by the Continual Reassessment Method*, p.21 (also
  ../shared/reference/peers.md): skeleton .05 .12 .25 .40 .55, target .25, logistic model with
  intercept 3, beta ~ N(0, 1.34) (a variance), outcomes ``3N 5N 5T 3N 4N`` -> next dose 4.
* dfcrm 0.2-2.1 outputs printed in the ``escalation`` 0.2.3 vignettes (docs/articles/A205-CRM.html
  and A280-TITE.html of brockk/escalation; ``mean_prob_tox`` of a ``get_dfcrm`` fit is dfcrm's
  ``ptox``): the p.21 example with the logistic and the empiric model, and a TITE-CRM example.
* ``dfcrm::getprior(0.05, 0.3, 5, 10)``, printed to 2 decimals in trialr's vignette A300
  (NeuenschwanderBransonGsponer.R).
* dfcrm's own manual examples (man/crm.Rd, man/titecrm.Rd) print nothing, so their values are
  computed here by an independent route: dfcrm's integrals (``crmh``, ``crmht``, ``crmht2`` and
  the logistic ones) with ``scipy.integrate.quad`` over dfcrm's ranges, and dfcrm's adaptive
  weights written as its loop.
"""

from __future__ import annotations

import doctest
import itertools
import math

import numpy as np
import pytest
from scipy import integrate, optimize, special

from lupusbayes.decisions import crm
from lupusbayes.decisions.crm import (
    DEFAULT_PRIOR_VARIANCE,
    CrmModel,
    closest_level_to_target,
    crm_next_dose,
    crm_posterior,
    crm_posterior_batch,
    crm_select_mtd,
    crm_skeleton,
    tite_weights,
)
from lupusbayes.decisions.three_plus_three import parse_outcomes
from lupusbayes.simulation import crm_simulation
from lupusbayes.simulation.crm_simulation import simulate_crm, simulate_tite_crm

CHEUNG_SKELETON = (0.05, 0.12, 0.25, 0.40, 0.55)
CHEUNG_LOGISTIC = CrmModel(CHEUNG_SKELETON, target=0.25, model="logistic", intercept=3.0)
CHEUNG_EMPIRIC = CrmModel(CHEUNG_SKELETON, target=0.25, model="empiric")


def patients_from(outcome_string: str) -> tuple[list[int], list[bool]]:
    """0-based levels and DLT flags of an ``escalation`` outcome string such as ``"3N 5N 5T"``."""
    levels, dlt = [], []
    for cohort in parse_outcomes(outcome_string):
        levels += [cohort.dose_level] * cohort.n_patients
        dlt += list(cohort.dlt)
    return levels, dlt


def three_significant(values) -> list[float]:
    return [float(f"{value:.3g}") for value in values]


def test_docstring_examples_run():
    assert doctest.testmod(crm).failed == 0
    assert doctest.testmod(crm_simulation).failed == 0


# ---- published values -----------------------------------------------------------------------


def test_cheung_2011_page_21_next_dose_is_4():
    """Cheung (2011) p.21: 3N 5N 5T 3N 4N under the logistic model -> dose 4 (no restrictions)."""
    levels, dlt = patients_from("3N 5N 5T 3N 4N")
    decision = crm_next_dose(CHEUNG_LOGISTIC, levels, dlt, no_skipping=False)
    assert decision.next_level_index == 3  # dose 4, counted from 1
    assert decision.action == "stay"
    assert "level 4 (0.182) is the closest to the target 0.25" in decision.reason
    # the default no-skipping rule does not bind: the last patient was at dose 4
    assert crm_next_dose(CHEUNG_LOGISTIC, levels, dlt).next_level_index == 3


@pytest.mark.parametrize(
    ("model", "printed_ptox"),
    [
        # escalation A205-CRM vignette, `fit1 %>% summary()` (dfcrm, logistic, intcpt 3, scale sqrt(1.34))
        (CHEUNG_LOGISTIC, [0.00768, 0.0265, 0.0817, 0.182, 0.331]),
        # the same vignette, `fit3 %>% summary()` (dfcrm, empiric, scale sqrt(1.34))
        (CHEUNG_EMPIRIC, [0.00701, 0.0299, 0.101, 0.219, 0.372]),
    ],
    ids=["logistic", "empiric"],
)
def test_dfcrm_ptox_printed_in_the_escalation_vignette(model, printed_ptox):
    levels, dlt = patients_from("3N 5N 5T 3N 4N")
    posterior = crm_posterior(model, levels, dlt)
    assert three_significant(posterior.dlt_probability_plug_in) == printed_ptox


def test_posterior_mean_of_p_is_near_trialr_mcmc():
    """trialr's stan_crm (A205-CRM vignette, `fit2`): MCMC posterior means, so only to about 0.01."""
    levels, dlt = patients_from("3N 5N 5T 3N 4N")
    posterior = crm_posterior(CHEUNG_LOGISTIC, levels, dlt)
    assert posterior.dlt_probability_mean == pytest.approx([0.0306, 0.0634, 0.128, 0.218, 0.338], abs=0.01)
    # E[p | data] and p(E[beta | data]) differ (peers.md pitfall 1): here by about 0.02 at dose 1
    assert posterior.dlt_probability_mean[0] - posterior.dlt_probability_plug_in[0] > 0.02


def test_tite_crm_ptox_printed_in_the_escalation_vignette():
    """escalation A280-TITE vignette, get_dfcrm_tite (dfcrm titecrm, logistic, intcpt 3): dose 3 recommended."""
    levels = [0, 0, 1, 1, 2, 2]
    dlt = [0, 0, 0, 0, 1, 0]
    weight = [1, 1, 1, 0.9, 1, 0.5]
    decision = crm_next_dose(CHEUNG_LOGISTIC, levels, dlt, patient_weight=weight)
    assert three_significant(decision.posterior.dlt_probability_plug_in) == [0.0748, 0.164, 0.310, 0.460, 0.599]
    assert decision.recommended_level_index == 2 and decision.next_level_index == 2
    assert "(TITE-CRM: 2 patients still in the DLT window, total weight 1.40)" in decision.reason


def test_getprior_printed_in_the_trialr_vignette():
    """trialr A300 vignette: `# Obtained using dfcrm::getprior(0.05, 0.3, 5, 10)`, 2 decimals."""
    skeleton = crm_skeleton(0.05, 0.3, 5, 10)
    assert skeleton.round(2).tolist() == [0.03, 0.06, 0.12, 0.20, 0.30, 0.40, 0.50, 0.59, 0.67, 0.74]


def test_stop_when_too_toxic_as_in_the_escalation_vignette():
    """escalation A205-CRM `fit7`: empiric, beta SD 1, target 0.3, '1NTT 1TTN', stop_when_too_toxic(dose = 1,
    tox_threshold = 0.3, confidence = 0.8) -> continue() is FALSE and no dose is recommended."""
    model = CrmModel(CHEUNG_SKELETON, target=0.3, prior_sd=1.0)
    levels, dlt = patients_from("1NTT 1TTN")
    decision = crm_next_dose(model, levels, dlt, stop_probability=0.8)
    assert decision.action == "stop" and decision.next_level_index is None
    assert decision.posterior.probability_above_target(0) == pytest.approx(0.905, abs=5e-4)
    assert decision.reason.startswith("P(DLT probability at level 1 > 0.30 | data) = 0.905 >= 0.8")
    assert crm_select_mtd(model, levels, dlt, stop_probability=0.8).selected_level_index is None


# ---- dfcrm's manual examples, by an independent route ----------------------------------------


def dfcrm_bayes_by_quad(skeleton, tox, level, weight, *, model, target, intercept=3.0, scale=math.sqrt(1.34)):
    """dfcrm ``crm``/``titecrm`` with ``method="bayes"``: its three integrals with scipy's adaptive quadrature.

    ``level`` is counted from 1, as in R. Returns (estimate, post.var, ptox, mtd counted from 1).
    """
    skeleton = np.asarray(skeleton, dtype=float)
    labels = skeleton if model == "empiric" else special.logit(skeleton) - intercept
    x = labels[np.asarray(level) - 1]
    tox = np.asarray(tox)
    weight = np.where(tox == 1, 1.0, np.asarray(weight, dtype=float))

    def curve(beta, dose_label):
        slope = math.exp(min(beta, 700.0))
        return dose_label**slope if model == "empiric" else special.expit(intercept + slope * dose_label)

    def integrand(beta, power):
        value = beta**power * math.exp(-beta * beta / 2 / scale**2)
        for dose_label, y, w in zip(x, tox, weight, strict=True):
            p = curve(beta, dose_label)
            value *= p**y * (1 - w * p) ** (1 - y)
        return value

    options = dict(epsabs=0, epsrel=1e-12, limit=500)
    denominator = integrate.quad(integrand, -np.inf, np.inf, args=(0,), **options)[0]
    estimate = integrate.quad(integrand, -10, 10, args=(1,), **options)[0] / denominator
    second_moment = integrate.quad(integrand, -10, 10, args=(2,), **options)[0] / denominator
    ptox = np.array([curve(estimate, dose_label) for dose_label in labels])
    if np.all(ptox <= target):
        mtd = len(skeleton)
    elif np.all(ptox >= target):
        mtd = 1
    else:
        mtd = int(np.argmin(np.abs(ptox - target))) + 1
    return estimate, second_moment - estimate**2, ptox, mtd


TARGET_OF_THE_EXAMPLES = 0.2
MANUAL_SKELETON = (0.05, 0.10, 0.20, 0.35, 0.50, 0.70)  # man/crm.Rd and man/titecrm.Rd


@pytest.mark.parametrize("model", ["empiric", "logistic"])
def test_dfcrm_crm_manual_example(model):
    """man/crm.Rd: level c(3, 4, 4, 3, 3, 4, 3, 2, 2, 2), y c(0, 0, 1, 0, 0, 1, 1, 0, 0, 0), target 0.2."""
    level = [3, 4, 4, 3, 3, 4, 3, 2, 2, 2]
    tox = [0, 0, 1, 0, 0, 1, 1, 0, 0, 0]
    estimate, variance, ptox, mtd = dfcrm_bayes_by_quad(MANUAL_SKELETON, tox, level, [1] * 10, model=model,
                                                        target=TARGET_OF_THE_EXAMPLES)
    crm_model = CrmModel(MANUAL_SKELETON, target=TARGET_OF_THE_EXAMPLES, model=model)
    posterior = crm_posterior(crm_model, np.array(level) - 1, tox)
    assert posterior.beta_mean == pytest.approx(estimate, abs=1e-9)
    assert posterior.beta_variance == pytest.approx(variance, abs=1e-9)
    assert posterior.dlt_probability_plug_in == pytest.approx(ptox, abs=1e-9)
    assert crm_next_dose(crm_model, np.array(level) - 1, tox, no_skipping=False).recommended_level_index == mtd - 1


TITECRM_EXAMPLE = dict(  # man/titecrm.Rd
    level=[3, 3, 3, 4, 4, 3, 2, 2, 2, 3],
    tox=[0, 0, 1, 0, 1, 0, 0, 0, 0, 0],
    followup=[178, 181, 168, 181, 24, 181, 179, 102, 42, 3],
    obswin=180,
)


def dfcrm_adaptive_weights(followup, tox, obswin):
    """dfcrm ``titecrm``'s ``scheme="adaptive"`` loop, then ``pmin(weights, 1)`` and ``weights[tox == 1] <- 1``."""
    support = sorted(u for u, y in zip(followup, tox, strict=True) if y == 1)
    z = len(support)
    weights = []
    for u in followup:
        m = sum(1 for s in support if s <= u)
        if m == 0:
            w = u / support[0] / (z + 1)
        elif m == z:
            w = (z + (u - support[z - 1]) / (obswin - support[z - 1])) / (z + 1)
        else:
            w = (m + (u - support[m - 1]) / (support[m] - support[m - 1])) / (z + 1)
        weights.append(min(w, 1.0))
    return [1.0 if y == 1 else w for w, y in zip(weights, tox, strict=True)]


@pytest.mark.parametrize("scheme", ["linear", "adaptive"])
def test_dfcrm_titecrm_manual_example(scheme):
    example = TITECRM_EXAMPLE
    if scheme == "linear":
        expected_weights = [1.0 if y else min(u / example["obswin"], 1.0)
                            for u, y in zip(example["followup"], example["tox"], strict=True)]
    else:
        expected_weights = dfcrm_adaptive_weights(example["followup"], example["tox"], example["obswin"])
    weights = tite_weights(example["followup"], example["obswin"], example["tox"], scheme=scheme)
    assert weights == pytest.approx(expected_weights, abs=1e-15)

    estimate, variance, ptox, mtd = dfcrm_bayes_by_quad(
        MANUAL_SKELETON, example["tox"], example["level"], expected_weights, model="empiric",
        target=TARGET_OF_THE_EXAMPLES)
    crm_model = CrmModel(MANUAL_SKELETON, target=TARGET_OF_THE_EXAMPLES)
    decision = crm_next_dose(crm_model, np.array(example["level"]) - 1, example["tox"], patient_weight=weights,
                             no_skipping=False)
    assert decision.posterior.beta_mean == pytest.approx(estimate, abs=1e-9)
    assert decision.posterior.beta_variance == pytest.approx(variance, abs=1e-9)
    assert decision.posterior.dlt_probability_plug_in == pytest.approx(ptox, abs=1e-9)
    assert decision.recommended_level_index == mtd - 1


def test_adaptive_weights_by_hand():
    """One DLT at day 24 in a 180-day window: the weight function passes (24, 1/2) and (180, 1)."""
    weights = tite_weights([12, 24, 102, 180, 10], 180, [0, 1, 0, 0, 0], scheme="adaptive")
    assert weights.tolist() == pytest.approx([12 / 24 / 2, 1.0, (1 + 78 / 156) / 2, 1.0, 10 / 24 / 2])
    # no DLT yet: the linear weights
    assert tite_weights([45, 90], 180, [0, 0], scheme="adaptive").tolist() == [0.25, 0.5]


@pytest.mark.parametrize("model", ["empiric", "logistic"])
def test_posterior_matches_adaptive_quadrature_on_random_trials(model):
    """Every posterior summary against scipy.integrate.quad, for trials of 1 to 30 patients (some pending)."""
    rng = np.random.default_rng(11)
    crm_model = CrmModel(CHEUNG_SKELETON, target=0.25, model=model)
    thresholds = crm_model.beta_thresholds()
    for _ in range(6):
        n = int(rng.integers(1, 31))
        level = rng.integers(0, 5, n)
        tox = (rng.random(n) < 0.3).astype(int)
        weight = np.where(rng.random(n) < 0.3, rng.random(n), 1.0)
        posterior = crm_posterior(crm_model, level, tox, weight)
        estimate, variance, ptox, _ = dfcrm_bayes_by_quad(
            CHEUNG_SKELETON, tox, level + 1, weight, model=model, target=0.25)
        assert posterior.beta_mean == pytest.approx(estimate, abs=1e-8)
        assert posterior.beta_variance == pytest.approx(variance, abs=1e-8)
        assert posterior.dlt_probability_plug_in == pytest.approx(ptox, abs=1e-8)

        def density(beta):
            value = math.exp(-beta * beta / 2 / crm_model.prior_sd**2)
            for d, y, w in zip(level, tox, np.where(tox == 1, 1.0, weight), strict=True):
                p = crm_model.dlt_probability(min(beta, 700.0))[d]
                value *= p**y * (1 - w * p) ** (1 - y)
            return value

        total = integrate.quad(density, -np.inf, np.inf, epsabs=0, epsrel=1e-12, limit=500)[0]
        for d in (0, 2, 4):
            below = integrate.quad(density, -np.inf, thresholds[d], epsabs=0, epsrel=1e-12, limit=500)[0]
            assert posterior.probability_above_target(d) == pytest.approx(below / total, abs=1e-8)
            mean_p = integrate.quad(lambda b, d=d: density(b) * crm_model.dlt_probability(min(b, 700.0))[d],
                                    -np.inf, np.inf, epsabs=0, epsrel=1e-12, limit=500)[0] / total
            assert posterior.dlt_probability_mean[d] == pytest.approx(mean_p, abs=1e-8)


# ---- the skeleton -----------------------------------------------------------------------------


@pytest.mark.parametrize("model", ["empiric", "logistic"])
@pytest.mark.parametrize(("halfwidth", "target", "prior_mtd_level", "n_levels"),
                         [(0.05, 0.25, 3, 5), (0.10, 0.25, 3, 6), (0.04, 0.20, 1, 4), (0.05, 0.30, 6, 6)])
def test_skeleton_indifference_intervals_are_target_plus_minus_halfwidth(model, halfwidth, target, prior_mtd_level,
                                                                         n_levels):
    """Lee & Cheung (2009), computed as dfcrm's ``crmsens``: b_k solves p_(k-1)(b) + p_k(b) = 2 target, and the
    indifference interval of true MTD k is (p_(k-1)(b_k), p_(k+1)(b_(k+1))). For the calibrated skeleton it is
    target -/+ halfwidth at every level that has neighbours, and the prior MTD gets the target."""
    skeleton = crm_skeleton(halfwidth, target, prior_mtd_level, n_levels, model=model)
    assert skeleton[prior_mtd_level - 1] == pytest.approx(target, abs=1e-14)
    assert np.all(np.diff(skeleton) > 0)
    crm_model = CrmModel(skeleton, target=target, model=model)
    switch = [optimize.brentq(lambda b, k=k: crm_model.dlt_probability(b)[k - 1] + crm_model.dlt_probability(b)[k]
                              - 2 * target, -20, 20, xtol=1e-14) for k in range(1, n_levels)]
    for k in range(1, n_levels):  # lower limit of the interval for true MTD k + 1 (0-based k)
        assert crm_model.dlt_probability(switch[k - 1])[k - 1] == pytest.approx(target - halfwidth, abs=1e-10)
        assert crm_model.dlt_probability(switch[k - 1])[k] == pytest.approx(target + halfwidth, abs=1e-10)


def test_skeleton_rejects_impossible_settings():
    with pytest.raises(ValueError, match="halfwidth"):
        crm_skeleton(0.3, 0.25, 3, 5)
    with pytest.raises(ValueError, match="counted from 1"):
        crm_skeleton(0.05, 0.25, 0, 5)
    with pytest.raises(ValueError, match="intercept must exceed"):
        crm_skeleton(0.05, 0.25, 3, 5, model="logistic", intercept=-1.5)


# ---- the model and its checks -----------------------------------------------------------------


def test_prior_sd_is_a_standard_deviation():
    assert CHEUNG_EMPIRIC.prior_sd == math.sqrt(DEFAULT_PRIOR_VARIANCE) == math.sqrt(1.34)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (dict(skeleton=[0.1, 0.1, 0.3], target=0.25), "strictly increasing"),
        (dict(skeleton=[0.0, 0.1, 0.3], target=0.25), "strictly between 0 and 1"),
        (dict(skeleton=[], target=0.25), "non-empty"),
        (dict(skeleton=[0.1, 0.3], target=1.0), "target"),
        (dict(skeleton=[0.1, 0.3], target=0.25, prior_sd=0), "prior_sd"),
        (dict(skeleton=[0.1, 0.3], target=0.25, prior_sd=math.inf), "prior_sd"),
        (dict(skeleton=[0.1, 0.3], target=0.25, model="probit"), "empiric"),
        (dict(skeleton=[0.1, 0.96], target=0.25, model="logistic"), "intercept"),
    ],
)
def test_model_rejects_bad_settings(arguments, message):
    with pytest.raises(ValueError, match=message):
        CrmModel(**arguments)


def test_decision_rejects_bad_patients():
    with pytest.raises(ValueError, match="before the first patient"):
        crm_next_dose(CHEUNG_EMPIRIC, [], [])
    with pytest.raises(ValueError, match="0-based levels"):
        crm_next_dose(CHEUNG_EMPIRIC, [5], [0])
    with pytest.raises(ValueError, match="weight"):
        crm_next_dose(CHEUNG_EMPIRIC, [0, 1], [0, 0], patient_weight=[1, 1.5])
    with pytest.raises(ValueError, match="stop_probability"):
        crm_next_dose(CHEUNG_EMPIRIC, [0], [0], stop_probability=1.0)
    with pytest.raises(ValueError, match="scheme"):
        tite_weights([1.0], 10, [0], scheme="quadratic")


def test_closest_level_rule_and_its_tie_break():
    """dfcrm: all estimates <= target -> the highest level; all >= target -> the lowest; ties -> the lower level."""
    assert int(closest_level_to_target([0.01, 0.02, 0.03], 0.25)) == 2
    assert int(closest_level_to_target([0.30, 0.40, 0.50], 0.25)) == 0
    assert int(closest_level_to_target([0.05, 0.20, 0.30], 0.25)) == 1  # 0.20 and 0.30 are both 0.05 away
    rows = closest_level_to_target([[0.05, 0.20, 0.30], [0.05, 0.20, 0.30]], 0.25,
                                   eligible=[[True, False, True], [False, False, False]])
    assert rows.tolist() == [2, -1]


# ---- restrictions -----------------------------------------------------------------------------


def test_no_skipping_is_relative_to_the_current_level():
    """dfcrm crmsim (restrict) and escalation's dont_skip_doses cap the next level at the last level + 1."""
    levels, dlt = [0, 0, 0], [0, 0, 0]
    free = crm_next_dose(CHEUNG_EMPIRIC, levels, dlt, no_skipping=False)
    assert free.next_level_index > 1
    capped = crm_next_dose(CHEUNG_EMPIRIC, levels, dlt)
    assert capped.next_level_index == 1 and capped.recommended_level_index == free.next_level_index
    assert "no skipping allows at most one level above the current level 1" in capped.reason
    # after a de-escalation from level 3 to level 2 the cap is level 3 (current + 1), not level 4 (highest tried + 1)
    levels, dlt = [0, 1, 2] + [1] * 8, [0, 0, 1] + [0] * 8
    assert crm_next_dose(CHEUNG_EMPIRIC, levels, dlt, no_skipping=False).next_level_index == 3
    assert crm_next_dose(CHEUNG_EMPIRIC, levels, dlt).next_level_index == 2


def test_coherent_escalation_blocks_escalation_after_a_toxic_cohort():
    """dfcrm crmsim, restrict=TRUE: no escalation when the last cohort's DLT rate is >= target."""
    levels, dlt = [0] * 6 + [1] * 3, [0] * 6 + [0, 0, 1]
    plain = crm_next_dose(CHEUNG_EMPIRIC, levels, dlt)
    assert plain.action == "escalate"
    coherent = crm_next_dose(CHEUNG_EMPIRIC, levels, dlt, coherent_escalation=True, last_cohort_size=3)
    assert coherent.action == "stay" and coherent.next_level_index == 1
    assert "1 DLT in 3 patients (rate 0.33 >= target)" in coherent.reason


# ---- properties -------------------------------------------------------------------------------


def all_count_states(n_levels: int, max_per_level: int):
    """Every (patients, DLTs) per level with up to ``max_per_level`` patients at each level."""
    per_level = [(n, y) for n in range(max_per_level + 1) for y in range(n + 1)]
    for state in itertools.product(per_level, repeat=n_levels):
        yield [n for n, _ in state], [y for _, y in state]


@pytest.mark.parametrize("model", ["empiric", "logistic"])
def test_one_more_dlt_never_raises_the_recommendation(model):
    """Coherence of the CRM (Cheung 2005): for every state with up to 3 patients at each of 3 levels, turning one
    patient's outcome into a DLT never gives a higher recommended level."""
    crm_model = CrmModel([0.10, 0.25, 0.40], target=0.25, model=model)
    before_n, before_y, after_y = [], [], []
    for n, y in all_count_states(3, 3):
        if sum(n) == 0:
            continue
        for level in range(3):
            if y[level] < n[level]:
                before_n.append(n)
                before_y.append(y)
                after_y.append([count + (d == level) for d, count in enumerate(y)])
    recommend = lambda n, y: closest_level_to_target(  # noqa: E731
        crm_posterior_batch(crm_model, n, y).dlt_probability_plug_in, crm_model.target)
    before, after = recommend(before_n, before_y), recommend(before_n, after_y)
    assert len(before_n) > 1000
    assert np.all(after <= before)
    assert np.any(after < before)


@pytest.mark.parametrize("model", ["empiric", "logistic"])
def test_a_pending_patient_recommends_between_weight_0_and_weight_1(model):
    """TITE-CRM: the recommendation with a pending patient of weight w lies between those with w = 0 (no
    information) and w = 1 (a complete patient without DLT), and does not decrease with w."""
    crm_model = CrmModel(CHEUNG_SKELETON, target=0.25, model=model)
    rng = np.random.default_rng(5)
    weight_mattered = False
    for _ in range(60):
        n = int(rng.integers(1, 8))
        levels = list(rng.integers(0, 5, n))
        dlt = list(rng.random(n) < 0.35)
        pending_level = int(rng.integers(0, 5))
        chosen = [crm_next_dose(crm_model, [*levels, pending_level], [*dlt, False], patient_weight=[1.0] * n + [w],
                                no_skipping=False).next_level_index for w in (0.0, 0.25, 0.5, 0.75, 1.0)]
        assert chosen == sorted(chosen)
        assert chosen[0] == crm_next_dose(crm_model, levels, dlt, no_skipping=False).next_level_index
        weight_mattered |= chosen[0] < chosen[-1]
    assert weight_mattered


# ---- simulation: agreement with the scalar decisions ----------------------------------------------


SIMULATION_SETTINGS = [
    dict(skeleton=(0.05, 0.12, 0.25, 0.40, 0.55), p_true=(0.05, 0.10, 0.30, 0.50, 0.70), cohort_size=1,
         n_cohorts=14, start_level=0, no_skipping=True, coherent_escalation=False, stop_probability=None,
         min_patients_at_selection=0, model="empiric"),
    dict(skeleton=(0.05, 0.12, 0.25, 0.40, 0.55), p_true=(0.02, 0.04, 0.08, 0.15, 0.30), cohort_size=2,
         n_cohorts=6, start_level=1, no_skipping=False, coherent_escalation=True, stop_probability=None,
         min_patients_at_selection=1, model="logistic"),
    dict(skeleton=(0.10, 0.25, 0.40), p_true=(0.35, 0.50, 0.65), cohort_size=3, n_cohorts=8, start_level=0,
         no_skipping=True, coherent_escalation=True, stop_probability=0.75, min_patients_at_selection=3,
         model="empiric"),
]


@pytest.mark.parametrize("setting", SIMULATION_SETTINGS, ids=["cohorts of 1", "no skipping off", "stopping"])
def test_simulate_crm_replays_the_scalar_decisions(setting):
    rng = np.random.default_rng(21)
    model = CrmModel(setting["skeleton"], target=0.25, model=setting["model"])
    cohort_size, n_cohorts = setting["cohort_size"], setting["n_cohorts"]
    uniforms = rng.random((25, cohort_size * n_cohorts))
    options = {key: setting[key] for key in ("no_skipping", "coherent_escalation", "stop_probability")}
    simulation = simulate_crm(uniforms, setting["p_true"], model=model, cohort_size=cohort_size, n_cohorts=n_cohorts,
                              start_level=setting["start_level"],
                              min_patients_at_selection=setting["min_patients_at_selection"], **options)
    actions = set()
    for trial in range(uniforms.shape[0]):
        levels, dlt = [], []
        level = setting["start_level"]
        for cohort in range(n_cohorts):
            columns = range(cohort * cohort_size, (cohort + 1) * cohort_size)
            assert simulation.patient_level[trial, columns[0]] == level
            levels += [level] * cohort_size
            dlt += [bool(uniforms[trial, j] < setting["p_true"][level]) for j in columns]
            if cohort == n_cohorts - 1:
                break
            decision = crm_next_dose(model, levels, dlt, last_cohort_size=cohort_size, **options)
            actions.add(decision.action)
            if decision.action == "stop":
                assert simulation.stopped_early[trial] and simulation.selected_level[trial] == -1
                assert np.all(simulation.patient_level[trial, len(levels):] == -1)
                break
            level = decision.next_level_index
        else:
            selection = crm_select_mtd(model, levels, dlt, stop_probability=setting["stop_probability"],
                                       min_patients_at_selection=setting["min_patients_at_selection"])
            expected = -1 if selection.selected_level_index is None else selection.selected_level_index
            assert simulation.selected_level[trial] == expected
            assert not simulation.stopped_early[trial]
        assert simulation.n_patients[trial].tolist() == np.bincount(levels, minlength=model.n_levels).tolist()
        assert simulation.n_dlt[trial].tolist() == np.bincount(np.array(levels)[dlt], minlength=model.n_levels).tolist()
    assert len(actions) >= 2  # the replay exercised more than one kind of decision


TITE_SETTINGS = [
    dict(weights="linear", cohort_size=1, n_cohorts=12, stop_probability=None, p_true=(0.05, 0.25, 0.50)),
    dict(weights="adaptive", cohort_size=2, n_cohorts=8, stop_probability=0.8, p_true=(0.30, 0.45, 0.60)),
]


@pytest.mark.parametrize("setting", TITE_SETTINGS, ids=["linear", "adaptive with stopping"])
def test_simulate_tite_crm_replays_the_scalar_decisions(setting):
    rng = np.random.default_rng(8)
    model = CrmModel((0.10, 0.25, 0.40), target=0.25)
    window = 28.0
    n_trials, n = 20, setting["cohort_size"] * setting["n_cohorts"]
    uniforms = rng.random((n_trials, n))
    onset = rng.uniform(0.5, window, (n_trials, n))
    gaps = rng.exponential(7.0, (n_trials, n))
    arrival = np.round(np.cumsum(gaps, axis=1) - gaps[:, :1])  # whole days, so several patients share a day
    simulation = simulate_tite_crm(uniforms, onset, arrival, setting["p_true"], model=model, window_days=window,
                                   cohort_size=setting["cohort_size"], n_cohorts=setting["n_cohorts"],
                                   weights=setting["weights"], stop_probability=setting["stop_probability"])
    pending_seen = 0
    for trial in range(n_trials):
        levels = []
        level = 0
        for cohort in range(setting["n_cohorts"]):
            first = cohort * setting["cohort_size"]
            if cohort > 0:
                day = arrival[trial, first]
                dlt = np.array([uniforms[trial, j] < setting["p_true"][levels[j]] for j in range(first)])
                observed = dlt & (arrival[trial, :first] + onset[trial, :first] <= day)
                dlt_day = np.floor(onset[trial, :first] + 1e-9)  # a DLT's day in whole days, as a state records it
                follow_up = np.where(observed, dlt_day, np.minimum(day - arrival[trial, :first], window))
                weight = tite_weights(follow_up, window, observed, scheme=setting["weights"])
                pending_seen += int(np.sum((weight > 0) & (weight < 1)))
                decision = crm_next_dose(model, levels, observed, patient_weight=weight,
                                         stop_probability=setting["stop_probability"])
                if decision.action == "stop":
                    assert simulation.stopped_early[trial] and simulation.selected_level[trial] == -1
                    assert np.all(simulation.patient_level[trial, first:] == -1)
                    assert np.all(np.isnan(simulation.patient_dose_day[trial, first:]))
                    break
                level = decision.next_level_index
            for j in range(first, first + setting["cohort_size"]):
                assert simulation.patient_level[trial, j] == level
                assert simulation.patient_dose_day[trial, j] == arrival[trial, j]
                levels.append(level)
        else:
            dlt = [bool(uniforms[trial, j] < setting["p_true"][levels[j]]) for j in range(n)]
            selection = crm_select_mtd(model, levels, dlt, stop_probability=setting["stop_probability"])
            expected = -1 if selection.selected_level_index is None else selection.selected_level_index
            assert simulation.selected_level[trial] == expected
        assert simulation.duration_days[trial] == arrival[trial, len(levels) - 1] + window
    assert pending_seen > 20  # decisions really used partial follow-up


def test_simulations_select_the_right_level_in_an_easy_scenario():
    """Target 0.25 at level 2 of 3, with neighbours far from it: the CRM should find it most of the time."""
    model = CrmModel((0.10, 0.25, 0.40), target=0.25)
    rng = np.random.default_rng(4)
    p_true = (0.03, 0.25, 0.65)
    crm_summary = simulate_crm(rng.random((4000, 30)), p_true, model=model, cohort_size=3, n_cohorts=10).summary()
    assert crm_summary.selection_probability[1] > 0.8
    assert crm_summary.mean_patients[1] > crm_summary.mean_patients[2]
    n = 30
    gaps = rng.exponential(10.0, (2000, n))
    tite = simulate_tite_crm(rng.random((2000, n)), rng.uniform(1, 28, (2000, n)), np.cumsum(gaps, 1) - gaps[:, :1],
                             p_true, model=model, window_days=28, cohort_size=1, n_cohorts=n)
    assert tite.summary().selection_probability[1] > 0.8
    assert np.array_equal(tite.duration_days, np.nanmax(tite.patient_dose_day, axis=1) + 28)
    # an overly toxic scenario with the stopping rule: most trials stop early, never selecting a level
    toxic = simulate_crm(rng.random((2000, 30)), (0.55, 0.70, 0.80), model=model, cohort_size=3, n_cohorts=10,
                         stop_probability=0.9)
    assert toxic.stopped_early.mean() > 0.5
    assert np.all(toxic.selected_level[toxic.stopped_early] == -1)


def test_simulators_reject_bad_inputs():
    model = CrmModel((0.10, 0.25, 0.40), target=0.25)
    with pytest.raises(ValueError, match="uniforms"):
        simulate_crm(np.zeros((3, 5)), (0.1, 0.2, 0.3), model=model, cohort_size=3, n_cohorts=2)
    with pytest.raises(ValueError, match="one per level"):
        simulate_crm(np.zeros((3, 6)), (0.1, 0.2), model=model, cohort_size=3, n_cohorts=2)
    arrival = np.tile([0.0, 5.0, 3.0], (2, 1))
    with pytest.raises(ValueError, match="non-decreasing"):
        simulate_tite_crm(np.zeros((2, 3)), np.ones((2, 3)), arrival, (0.1, 0.2, 0.3), model=model, window_days=28,
                          cohort_size=1, n_cohorts=3)
    with pytest.raises(ValueError, match="onset_days"):
        simulate_tite_crm(np.zeros((2, 3)), np.full((2, 3), 40.0), np.zeros((2, 3)), (0.1, 0.2, 0.3), model=model,
                          window_days=28, cohort_size=1, n_cohorts=3)
