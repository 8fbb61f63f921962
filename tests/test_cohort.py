"""The KN5601 cohort as data, and users' cohort files (wide and long)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import lupusbayes as lb
from lupusbayes.cohort import biopsy_classes, combine_cohorts, parse_crs_grade, parse_dose_cells

WIDE_HEADER = "patient_id,age_years,sex,dose,crs_grade,follow_up_months,sledai_baseline,sledai_latest"


def test_kn5601_reproduces_the_abstract(kn5601):
    patients = kn5601.patients
    assert kn5601.n_patients == 11
    assert list(patients["patient_id"]) == ["001", "002", "004", "005", "006", "007", "008", "009", "010", "011", "012"]
    # CRS in 4 patients: three grade I, one grade II.
    assert int((patients["crs_grade"] > 0).sum()) == 4
    assert patients["crs_grade"].value_counts().to_dict() == {0: 7, 1: 3, 2: 1}
    # Doses 1, 2, 3 and 4.5 x 10^9 cells.
    assert sorted(patients["dose_cells"].unique()) == [1e9, 2e9, 3e9, 4.5e9]
    assert set(patients["dose_unit"]) == {"cells"}
    # Longest follow-up 6 months; that patient (001) reached SLEDAI-2K 0 (DORIS proxy).
    longest = patients.loc[patients["follow_up_months"].idxmax()]
    assert longest["follow_up_months"] == 6 and longest["sledai_latest"] == 0
    # Six patients reached >= 3 months of follow-up.
    assert int((patients["follow_up_months"] >= 3).sum()) == 6
    # Everyone had active SLE (SLEDAI-2K > 6) at baseline.
    assert patients["sledai_baseline"].min() > 6


def test_kn5601_is_typed_with_units_in_names(kn5601):
    patients = kn5601.patients
    assert patients["age_years"].dtype == float
    assert patients["crs_grade"].dtype == np.int64
    assert str(patients["sex"].dtype) == "category"
    assert patients.loc[patients["patient_id"] == "011", "disease_duration_years"].item() == pytest.approx(0.67)
    assert patients.loc[patients["patient_id"] == "006", "biopsy_class"].item() == "III+III-V"
    assert patients["biopsy_class"].isna().sum() == 3  # "/" = none / not done
    assert patients["dose_cells_per_kg"].isna().all()  # no weights were reported
    assert set(kn5601.visits.columns) == {"study_id", "patient_id", "visit_month", "sledai"}
    assert len(kn5601.visits) == 22  # baseline + latest visit for each patient


def test_cell_parsers():
    assert parse_dose_cells("4.5*10^9") == 4.5e9
    assert parse_dose_cells("3x10^9") == 3e9
    assert parse_dose_cells("2.5×10^7") == 2.5e7
    assert parse_dose_cells("1e9") == 1e9
    assert [parse_crs_grade(t) for t in ["/", "0", "I", "II", "III", "IV", "V", "2", "grade 3"]] == [0, 0, 1, 2, 3, 4, 5, 2, 3]
    assert biopsy_classes("III+III-V") == {"III", "V"}
    assert biopsy_classes("IV-G (A)+V") == {"IV", "V"}


def test_user_wide_file_with_optional_columns(write):
    path = write(
        "axa.csv",
        "study_id,patient_id,age_years,sex,dose,dose_unit,weight_kg,crs_grade,follow_up_months,sledai_baseline,sledai_latest,upcr_g_per_g\n"
        "AXA-NK02,A01,24,F,2.5e7,cells/kg,52,0,2,12,6,1.8\n"
        "AXA-NK02,A02,31,M,2.5e7,cells/kg,,I,1,10,/,2.2\n",
    )
    cohort = lb.load_cohort(path)
    first, second = cohort.patients.iloc[0], cohort.patients.iloc[1]
    assert first["dose_cells_per_kg"] == 2.5e7 and first["dose_cells"] == pytest.approx(2.5e7 * 52)
    assert np.isnan(second["dose_cells"]) and second["crs_grade"] == 1
    assert pd.isna(second["sledai_latest"])
    assert cohort.patients["upcr_g_per_g"].tolist() == ["1.8", "2.2"]
    assert len(cohort.visits) == 3  # the second patient has no follow-up score yet


def test_long_layout_uses_every_visit(write):
    path = write(
        "long.csv",
        "patient_id,age_years,sex,dose,crs_grade,visit_month,sledai\n"
        "P1,14,F,3e9,0,0,12\nP1,14,F,3e9,0,1,8\nP1,14,F,3e9,0,3,4\nP1,14,F,3e9,0,6,0\n"
        "P2,16,M,4.5e9,1,0,10\nP2,16,M,4.5e9,1,3,6\n",
    )
    cohort = lb.load_cohort(path, study_id="S1")
    assert cohort.layout == "long"
    assert cohort.patients.set_index("patient_id")["follow_up_months"].to_dict() == {"P1": 6.0, "P2": 3.0}
    assert cohort.patients.set_index("patient_id")["sledai_latest"].to_dict() == {"P1": 0, "P2": 6}
    assert len(cohort.visits) == 6 and set(cohort.patients["study_id"]) == {"S1"}


def test_tidy_round_trip(kn5601, tmp_path):
    for layout in ("wide", "long"):
        path = tmp_path / f"kn5601_{layout}.csv"
        kn5601.to_csv(path, layout=layout)
        again = lb.load_cohort(path)
        columns = ["study_id", "patient_id", "dose_cells", "crs_grade", "sledai_baseline", "sledai_latest"]
        pd.testing.assert_frame_equal(again.patients[columns], kn5601.patients[columns])
        assert again.visits.equals(kn5601.visits)


def test_published_header_is_recognised(tmp_path):
    from importlib import resources

    text = resources.files("lupusbayes.data").joinpath("kn5601_published_table.csv").read_text()
    path = tmp_path / "table.csv"
    path.write_text(text)
    cohort = lb.load_cohort(path)
    assert cohort.n_patients == 11 and cohort.study_ids == ["KN5601"]


def test_combine_refuses_the_same_patient_twice(kn5601):
    with pytest.raises(lb.CohortError, match="patient 001 of study KN5601"):
        combine_cohorts([kn5601, kn5601])


def test_response_flags_are_proxies_and_missing_stays_missing(kn5601):
    flags = kn5601.with_response_flags()
    assert int(flags["sri4_sledai_component"].sum()) == 9
    assert int(flags["lldas_sledai_proxy"].sum()) == 5
    assert int(flags["doris_sledai_proxy"].sum()) == 2
    assert set(lb.RESPONSE_DEFINITIONS) == {"sri4_sledai_component", "lldas_sledai_proxy", "doris_sledai_proxy"}
    assert all("also require" in d.full_definition or "requires" in d.full_definition for d in lb.RESPONSE_DEFINITIONS.values())
    from lupusbayes.endpoints import sri4_sledai_component

    assert list(sri4_sledai_component([14, 10, 14], [10, 8, None])) == [True, False, pd.NA]


def test_summary_counts(kn5601):
    summary = lb.summarise_cohort(kn5601)
    by_dose = summary.crs_by_dose.set_index("dose")
    assert by_dose.loc["3.0e9 cells", "any_crs"] == 3 and by_dose.loc["4.5e9 cells", "crs_grade_2"] == 1
    assert summary.responses_overall["n_with_follow_up"].item() == 11
    # cells/kg through the CDC weight reference: ranges, not points, for every patient
    per_kg = summary.dose_per_kg.set_index("patient_id")
    assert (per_kg["q05_cells_per_kg"] < per_kg["median_cells_per_kg"]).all()
    assert 1.5e7 < per_kg.loc["001", "median_cells_per_kg"] < 3e7
    # reproducible from the seed
    again = lb.summarise_cohort(kn5601)
    pd.testing.assert_frame_equal(summary.dose_per_kg, again.dose_per_kg)


# ---- the day of a DLT (dlt_day, dlt_date): what the TITE-CRM's adaptive weights read -------------------------

DLT_HEADER = "patient_id,age_years,sex,dose,crs_grade,dlt,infusion_date,safety_days,dlt_day,dlt_date,follow_up_months,sledai_baseline,sledai_latest"
FIRST_ROW = "P1,14,F,3e9,0,no,2026-04-01,60,,,2,12,8"


def _dlt_row(dlt="yes", infused="2026-05-01", safety="30", day="", when=""):
    return f"P2,15,M,3e9,1,{dlt},{infused},{safety},{day},{when},1,10,6"


@pytest.mark.parametrize(("row", "field", "message"), [
    (_dlt_row(day="2.5"), "dlt_day", "must be a whole number of days from the first infusion to the DLT, 0 to 36500 (got 2.5)"),
    (_dlt_row(day="-3"), "dlt_day", "dlt_day must be >= 0 (got -3)"),
    (_dlt_row(day="day 3"), "dlt_day", "dlt_day 'day 3' is not a number"),
    (_dlt_row(day="40000"), "dlt_day", "dlt_day must be <= 36500 (got 40000)"),
    (_dlt_row(dlt="no", day="3"), "dlt_day", "dlt_day 3 is given but dlt is 'no': only a patient with a DLT has a DLT day"),
    (_dlt_row(day="31"), "dlt_day", "dlt_day 31 is after the patient's follow-up (safety_days 30): a DLT is recorded by "
                                    "the data cut-off"),
    (_dlt_row(when="2026-04-30"), "dlt_date", "dlt_date 2026-04-30 is before the first infusion (2026-05-01)"),
    (_dlt_row(when="2026-06-05"), "dlt_date", "dlt_date 2026-06-05 (day 35) is after the patient's follow-up "
                                             "(safety_days 30)"),
    (_dlt_row(infused="", when="2026-05-05"), "dlt_date", "dlt_date 2026-05-05 needs the patient's infusion_date"),
    (_dlt_row(day="5", when="2026-05-05"), "dlt_day", "dlt_day 5 disagrees with dlt_date 2026-05-05 and infusion_date "
                                                      "2026-05-01 (4 days)"),
    (_dlt_row(when="2026-05-32"), "dlt_date", "'2026-05-32' is not a date (write YYYY-MM-DD)"),
    (_dlt_row(dlt="no", when="2026-05-05"), "dlt_date", "dlt_date 2026-05-05 is given but dlt is 'no'"),
], ids=["not whole", "negative", "not a number", "beyond 100 years", "no DLT", "after the follow-up",
        "before the infusion", "date after the follow-up", "date without infusion", "day and date disagree",
        "not a date", "date without a DLT"])
def test_a_bad_dlt_day_is_one_line_naming_file_row_and_field(row, field, message, write):
    path = write("state.csv", f"{DLT_HEADER}\n{FIRST_ROW}\n{row}\n")
    with pytest.raises(lb.CohortError) as error:
        lb.load_cohort(path)
    text = str(error.value)
    assert "\n" not in text and text.startswith(f"{path}:3: field '{field}' (patient P2): "), text
    assert message in text and (error.value.line, error.value.field) == (3, field)


def test_dlt_days_are_optional_checked_text_and_read_back(write, tmp_path):
    """A DLT without its day is fine (only the adaptive TITE-CRM needs it); a day and a date that agree are fine;
    the column is kept as whole-day text and survives the round trip through both layouts."""
    path = write("state.csv", f"{DLT_HEADER}\n{FIRST_ROW}\n{_dlt_row(day='04', when='2026-05-05')}\n"
                              f"P3,16,F,3e9,0,yes,2026-05-01,30,,,1,10,6\n")
    cohort = lb.load_cohort(path)
    assert cohort.patients["dlt_day"].tolist() == ["", "4", ""]
    assert cohort.patients["dlt_date"].tolist() == ["", "2026-05-05", ""]
    for layout in ("wide", "long"):
        copy = tmp_path / f"again_{layout}.csv"
        cohort.to_csv(copy, layout=layout)
        assert lb.load_cohort(copy).patients["dlt_day"].fillna("").tolist() == ["", "4", ""], layout
