"""Trial specs (validated TOML) and eligibility screening."""

from __future__ import annotations

import pytest

import lupusbayes as lb


def test_axa_nk02_spec_encodes_the_registration(axa_spec):
    assert axa_spec.dosing.unit == lb.DoseUnit.CELLS_PER_KG
    assert axa_spec.dosing.levels == (2.5e7, 7.5e7, 2.5e8)
    assert axa_spec.dosing.infusions_per_patient == 4
    rules = axa_spec.escalation
    assert (rules.group_size, rules.sentinel_patients, rules.sentinel_safety_days) == (3, 1, 28)
    assert rules.group_safety_days_before_next == 28 and not rules.allow_skipping
    assert rules.efficacy_driven_escalation and rules.max_patients == 9
    criteria = {c.id: c for c in axa_spec.eligibility}
    assert (criteria["I1-age"].min, criteria["I1-age"].max) == (5, 35)
    assert criteria["I5-sledai"].min == 8
    assert criteria["I6-upcr-adult"].min == 1.0 and criteria["I6-upcr-adult"].unit == "g/g"
    assert criteria["E12-egfr"].greater_than == 45
    assert criteria["E13-platelets"].min == 50 and criteria["E13-haemoglobin"].min == 80
    assert criteria["E13-creatinine"].max == 220 and criteria["E13-bilirubin"].max == 34
    assert criteria["I2-proliferative-ln"].any_of_classes == ("III", "IV")


def test_kn5601_spec(kn5601_spec):
    assert kn5601_spec.dosing.unit == lb.DoseUnit.CELLS
    assert kn5601_spec.dosing.levels == (1e9, 2e9, 3e9, 4.5e9)
    assert kn5601_spec.dlt.window_days == 28 and kn5601_spec.dlt.crs_grade_at_least == 3
    assert kn5601_spec.dosing.infusions_per_patient == 6


def test_shipped_specs_are_the_files_under_models(axa_spec):
    assert lb.load_spec("axa_nk02").sha256 == axa_spec.sha256


def test_screening_reports_every_failure_and_what_cannot_be_assessed(axa_spec, write):
    path = write(
        "screen.csv",
        "patient_id,age_years,sex,dose,crs_grade,follow_up_months,sledai_baseline,sledai_latest,biopsy_class,"
        "upcr_g_per_g,urine_protein_g_per_24h,egfr_ml_per_min_per_1_73m2,platelets_10e9_per_l,ana_positive,"
        "anti_dsdna_positive,anti_sm_positive,pregnant_or_lactating\n"
        "A,24,F,2.5e7,0,1,12,8,IV+V,1.5,,60,120,yes,yes,no,no\n"       # eligible by data
        "B,40,F,2.5e7,0,1,6,4,V,0.8,,40,30,yes,no,no,yes\n"            # fails many
        "C,12,M,2.5e7,0,1,10,4,III,,0.5,90,200,yes,no,,no\n",          # child: 24-h protein applies
    )
    report = lb.screen(lb.load_cohort(path).patients, axa_spec)
    failed = report.failures.groupby("patient_id")["criterion_id"].apply(set).to_dict()
    assert "A" not in failed
    assert failed["B"] == {"I1-age", "I2-proliferative-ln", "I5-sledai", "I6-upcr-adult", "I4-dsdna-or-sm",
                           "E12-egfr", "E13-platelets", "E15-pregnancy"}
    assert failed["C"] == {"I6-proteinuria-child"}
    status = report.results.set_index(["patient_id", "criterion_id"])["status"]
    assert status[("C", "I6-upcr-adult")] == "not applicable"
    assert status[("C", "I4-dsdna-or-sm")] == "not assessable"  # anti-Sm missing, dsDNA negative
    assert status[("A", "E13-neutrophils")] == "not assessable"  # column absent: never a pass
    assert {c.id for c in report.manual_criteria} >= {"I3-refractory", "I8-consent"}
    assert report.eligible_by_data().sum() == 0  # A still has unassessable criteria


def test_screening_kn5601_against_axa(kn5601, axa_spec):
    failures = lb.screen(kn5601.patients, axa_spec).failures
    assert sorted(failures["patient_id"]) == ["001", "007", "010", "012"]
    assert set(failures["criterion_id"]) == {"I2-proliferative-ln"}


def test_spec_model_sections_become_settings(axa_spec):
    crs = axa_spec.models.crs
    assert crs.hierarchy == "exnex" and crs.heterogeneity == lb.Heterogeneity.preset("substantial")
    assert crs.exchangeability("KN5601") == 0.5
    assert axa_spec.models.blrm.prior.mean_log_a == pytest.approx(-2.944)
    assert axa_spec.dlt.intervals.names == ("acceptable", "elevated", "excessive")
    assert axa_spec.dosing.dose_metric == "per_course" and axa_spec.dosing.infusions_by_study == {"KN5601": 6}
    assert axa_spec.fitting.sampler == "nutpie"


def test_spec_to_dict_is_json_ready(axa_spec):
    import json

    payload = json.loads(json.dumps(axa_spec.to_dict()))
    assert payload["dose_levels"] == [2.5e7, 7.5e7, 2.5e8]
    assert any(c["id"] == "I5-sledai" and c["requirement"] == "sledai_baseline >= 8 points"
               for c in payload["eligibility_criteria"])


def test_shipped_specs_are_package_data_and_match_the_models_folder():
    """The specs ship as real files (no symlinks) and models/ holds identical editable copies."""
    from importlib import resources

    from conftest import ROOT

    packaged = resources.files("lupusbayes.data.specs")
    for name in lb.spec.SHIPPED_SPECS:
        path = ROOT / "src" / "lupusbayes" / "data" / "specs" / f"{name}.toml"
        assert not path.is_symlink()
        assert packaged.joinpath(f"{name}.toml").read_text() == (ROOT / "models" / f"{name}.toml").read_text(), (
            f"models/{name}.toml and the packaged spec differ: copy one onto the other"
        )
        assert lb.load_spec(name).trial.id
    assert not [p for p in (ROOT / "src").rglob("*") if p.is_symlink()]


def test_the_dlt_definition_derives_a_dlt_only_where_none_is_recorded():
    import numpy as np

    from lupusbayes.spec import DLTDefinition

    definition = DLTDefinition(28, ("CRS >= 3", "ICANS >= 2"), crs_grade_at_least=3, icans_grade_at_least=2)
    crs, icans = [0, 3, 1, 1, 4], [np.nan, 0, 2, np.nan, 0]
    recorded = [np.nan, np.nan, np.nan, 1, 0]  # the last two: the recorded status wins over the grades
    assert definition.dlt_status(crs, icans, recorded).tolist() == [False, True, True, True, False]
    assert definition.dlt_status(crs).tolist() == [False, True, False, False, True]  # no ICANS column
    crs_only = DLTDefinition(28, ("CRS >= 3",), crs_grade_at_least=3, icans_grade_at_least=None)
    assert crs_only.dlt_status(crs, icans).tolist() == [False, True, False, False, True]
