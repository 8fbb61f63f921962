"""Plots: every kind renders for KN5601 and for a simulated AXA-NK02 state, with domain labels.

Fits are mock-sampled (prior draws in place of MCMC, see conftest): the plots' plumbing and
labels are tested here, not posterior numbers. Each test reads labels back from the figure.
"""

from __future__ import annotations

from datetime import date

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from conftest import MOCK, mock_run_sampler  # noqa: E402
from matplotlib import pyplot  # noqa: E402

import lupusbayes as lb  # noqa: E402
import lupusbayes.cli as cli  # noqa: E402
from lupusbayes.decisions import (  # noqa: E402
    DecisionContext,
    decide,
    draws_from_dose_response,
    load_state,
    transition_table,
)
from lupusbayes.decisions.state import cohort_with  # noqa: E402
from lupusbayes.fitting import sample as sampling  # noqa: E402
from lupusbayes.report import plots  # noqa: E402

DIAGNOSTICS = ["trace", "rank", "posterior", "forest_doses", "forest_groups", "pair", "energy",
               "prior_predictive", "prior_predictive_pit", "posterior_predictive", "posterior_predictive_pit",
               "pareto_k", "prior_posterior"]
#: The kinds each fit draws (plot_kinds_for), by fit.
EXPECTED_KINDS = {
    "kn5601 crs": [*DIAGNOSTICS, "dose_crs", "dlt_intervals"],
    "kn5601 blrm": [*DIAGNOSTICS, "dlt_intervals"],
    "kn5601 sledai": [*DIAGNOSTICS, "sledai_months", "sledai_response"],
    "axa crs": [*DIAGNOSTICS, "dose_crs", "dlt_intervals"],
    "axa sledai": [*DIAGNOSTICS, "sledai_months", "sledai_response"],
}
AXA_CUT_OFF = date(2026, 6, 20)


# ---- fits and decisions -------------------------------------------------------------------------


def _mock_fit(model, seed: int):
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(sampling, "run_sampler", mock_run_sampler)
        return lb.fit(model, seed=seed, settings=MOCK, prior_draws=200)


@pytest.fixture(scope="module")
def axa_state(tmp_path_factory, axa_spec):
    """The shipped hypothetical AXA-NK02 cohort (the first dose group) at a data cut-off."""
    path = tmp_path_factory.mktemp("axa") / "axa_patients.csv"
    path.write_text(lb.cohort.example_cohort_text("axa_patients"))
    return load_state(path, axa_spec, as_of=AXA_CUT_OFF)


@pytest.fixture(scope="module")
def axa_fits(axa_state, axa_spec, kn5601):
    """CRS and SLEDAI-2K models of AXA-NK02's patients with KN5601 as co-data (EXNEX)."""
    cohort = cohort_with(axa_state, [kn5601])
    return {"crs": _mock_fit(lb.CRSModel(cohort, axa_spec), seed=31),
            "sledai": _mock_fit(lb.SledaiModel(cohort, axa_spec), seed=32)}


@pytest.fixture(scope="module")
def fits(mock_crs_fit, mock_blrm_fit, mock_sledai_fit, axa_fits):
    return {"kn5601 crs": mock_crs_fit, "kn5601 blrm": mock_blrm_fit, "kn5601 sledai": mock_sledai_fit,
            "axa crs": axa_fits["crs"], "axa sledai": axa_fits["sledai"]}


def _context(spec, state, toxicity_fit, sledai_fit):
    settings = spec.decision.efficacy
    toxicity = draws_from_dose_response(toxicity_fit.dose_response, source="mock crs")
    efficacy = draws_from_dose_response(sledai_fit.dose_response, response=settings.response, month=settings.month,
                                        final_month=settings.final_month, source="mock sledai")
    return DecisionContext(spec, state, toxicity, efficacy)


@pytest.fixture(scope="module")
def axa_decision(axa_state, axa_spec, axa_fits):
    context = _context(axa_spec, axa_state, axa_fits["crs"], axa_fits["sledai"])
    recommendation = decide(context)
    return recommendation, transition_table(context, recommendation=recommendation)


@pytest.fixture(scope="module")
def kn5601_decision(kn5601_spec, mock_crs_fit, mock_sledai_fit):
    context = _context(kn5601_spec, load_state("kn5601", kn5601_spec), mock_crs_fit, mock_sledai_fit)
    recommendation = decide(context)
    return recommendation, transition_table(context, recommendation=recommendation)


# ---- reading labels back ------------------------------------------------------------------------


def _texts(plot) -> dict[str, list[str]]:
    """Every label of a plot's figure, by kind of label."""
    figure = plots.figure_of(plot)
    axes = figure.axes
    legends = [*figure.legends, *(a.get_legend() for a in axes if a.get_legend() is not None)]
    return {
        "xlabel": [a.get_xlabel() for a in axes],
        "ylabel": [a.get_ylabel() for a in axes],
        "title": [a.get_title() for a in axes],
        "suptitle": [figure.get_suptitle()],
        "text": [t.get_text() for t in figure.texts] + [t.get_text() for a in axes for t in a.texts],
        "xticks": [t.get_text() for a in axes for t in a.get_xticklabels()],
        "legend": [t.get_text() for legend in legends for t in legend.get_texts()],
    }


def _has(labels: list[str], fragment: str) -> bool:
    return any(fragment in label for label in labels)


#: Pieces of the models' internal names (``crs (crs_grade, K=4, none)``), never in a title.
INTERNAL_LABELS = ("K=", "crs_grade", "crs_any", "(dlt,", "log_linear", ", none)", "exnex)", "(crs ", "(blrm ",
                   "sledai (")


def _assert_title_in_words(title: str, fit) -> None:
    """The title names the model in words, not by its internal label."""
    flat = " ".join(title.split())  # the title is wrapped to the figure's width
    assert fit.model.name not in flat
    assert not [label for label in INTERNAL_LABELS if label in flat], flat
    assert plots.model_in_words(fit.model) in flat


def _title_inside_figure(plot, path) -> None:
    """Save ``plot`` as PNG, draw it, and check its title lies inside the figure on every side."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    figure = plots.figure_of(plot)
    plots.save_plot(plot, path, dpi=60)
    renderer = FigureCanvasAgg(figure).get_renderer()
    figure.draw(renderer)
    title = next(text for text in figure.texts if text.get_text() == figure.get_suptitle())
    extent, page = title.get_window_extent(renderer), figure.bbox
    assert page.x0 <= extent.x0 and extent.x1 <= page.x1 and page.y0 <= extent.y0 and extent.y1 <= page.y1, \
        (title.get_text(), extent, page)


def _save(plot, path):
    written = plots.save_plot(plot, path, dpi=40)
    assert written.exists() and written.read_bytes()[:4] == b"\x89PNG"
    pyplot.close(plots.figure_of(plot))


# ---- every kind ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(EXPECTED_KINDS))
def test_each_fit_lists_the_kinds_that_apply_to_it(name, fits):
    assert plots.plot_kinds_for(fits[name]) == EXPECTED_KINDS[name]


@pytest.mark.parametrize(("name", "kind"), [(name, kind) for name, kinds in EXPECTED_KINDS.items() for kind in kinds])
def test_every_kind_renders_with_the_dose_unit_where_it_shows_doses(name, kind, fits, tmp_path):
    fit = fits[name]
    plot = plots.make_plot(kind, fit)
    labels = _texts(plot)
    assert labels["suptitle"][0] and fit.model.spec.trial.id in labels["suptitle"][0]
    _assert_title_in_words(labels["suptitle"][0], fit)
    unit = fit.model.spec.dosing.unit.value
    if kind in ("dose_crs", "dlt_intervals", "sledai_response", "prior_posterior"):
        assert _has(labels["xlabel"], f"({unit})")
        assert _has(labels["xlabel"], "cells/kg") == (unit == "cells/kg")
    if kind == "forest_doses":  # each row names its dose with the unit
        assert _has(labels["text"], f"e{int(np.log10(fit.model.spec.dosing.levels[0]))} {unit}")
    _save(plot, tmp_path / f"{kind}.png")


def test_dose_crs_has_a_panel_per_grade_and_the_patients_seen(fits):
    kn5601, axa = plots.plot_dose_crs(fits["kn5601 crs"]), plots.plot_dose_crs(fits["axa crs"])
    labels = _texts(kn5601)
    for grade in (1, 2, 3, 4):
        assert f"P(CRS >= {grade})" in labels["ylabel"]
        assert _has(labels["title"], f"CRS >= {grade} (ASTCT)")
    assert _has(labels["title"], "CRS >= 3 (ASTCT): the CRS part of a DLT")  # the spec's DLT grade
    assert set(labels["xlabel"]) == {"dose per infusion (cells)"}
    assert _has(labels["text"], "/5")  # k/n of the 3.0e9 group (5 patients)
    axa_labels = _texts(axa)
    assert set(axa_labels["xlabel"]) == {"dose per infusion (cells/kg)"}
    assert "KN5601 (co-data)" in axa_labels["legend"] and "AXA-NK02 patients" in axa_labels["legend"]
    assert _has(axa_labels["text"], "per course")  # co-data doses are on AXA-NK02's per-course scale


def test_dlt_intervals_use_the_spec_intervals_the_ewoc_limit_and_name_the_dlt_basis(fits, axa_spec):
    fit = fits["axa crs"]
    labels = _texts(plots.plot_dlt_intervals(fit))
    intervals = axa_spec.dlt.intervals
    for k in range(len(intervals.names)):
        assert intervals.label(k) in labels["legend"]
    assert f"EWOC limit: P({intervals.overdose}) < {axa_spec.decision.max_overdose_probability:g}" in labels["legend"]
    basis = fit.dose_response["p_dlt"].attrs["definition"]
    assert basis and _has(labels["text"], f"DLT basis: {basis[:40]}")
    assert _has(labels["xticks"], "(n = 3)")  # the first AXA-NK02 group
    stricter = _texts(plots.plot_dlt_intervals(fit, max_overdose_probability=0.1))
    assert _has(stricter["legend"], "< 0.1")


def _panel_values(axis) -> np.ndarray:
    """Every y value a panel draws: its lines and the outline of its bands."""
    values = [np.asarray(line.get_ydata(), dtype=float) for line in axis.get_lines()]
    values += [path.vertices[:, 1] for collection in axis.collections for path in collection.get_paths()]
    values = np.concatenate([v.ravel() for v in values if np.size(v)])
    return values[np.isfinite(values)]


@pytest.mark.parametrize("name", ["kn5601 crs", "axa crs"])
def test_dose_crs_panels_each_have_a_y_axis_scaled_to_their_data(name, fits):
    figure = plots.plot_dose_crs(fits[name])
    panels = [axis for axis in figure.axes if axis.get_ylabel().startswith("P(CRS >=")]
    assert len(panels) == 4
    tops = []
    for axis in panels:
        bottom, top = axis.get_ylim()
        values = _panel_values(axis)
        assert bottom <= values.min() and values.max() <= top  # the panel holds all it draws
        assert top <= max(1.2 * values.max(), 0.03) and top <= 1.03  # and is scaled to it, not to 0-1
        tops.append(top)
    assert len(set(np.round(tops, 6))) > 1  # no shared y-axis: the rare grades are not flattened
    grade_3 = next(axis for axis in panels if axis.get_ylabel() == "P(CRS >= 3)")
    assert grade_3.get_ylim()[1] < tops[0]  # P(CRS >= 3), the CRS part of a DLT, gets its own scale
    assert _has(_texts(figure)["text"], "each panel has its own probability scale")


@pytest.mark.parametrize("name", ["kn5601 crs", "kn5601 blrm", "axa crs"])
def test_the_ewoc_limit_is_drawn_on_the_overdose_interval_only(name, fits):
    fit = fits[name]
    intervals, limit = fit.model.spec.dlt.intervals, fit.model.spec.decision.max_overdose_probability
    figure = plots.plot_dlt_intervals(fit)
    stacked, overdose = figure.axes[:2]
    ewoc_lines = [(axis, line) for axis in figure.axes for line in axis.get_lines()
                  if line.get_label().startswith("EWOC limit")]
    assert [axis for axis, _ in ewoc_lines] == [overdose]  # one line, on the overdose panel
    assert np.allclose(ewoc_lines[0][1].get_ydata(), limit)
    assert overdose.get_ylabel() == f"posterior P({intervals.overdose})"
    # nothing on the stacked panel sits at the limit: no line cuts through the acceptable segments
    assert not [line for line in stacked.get_lines() if np.allclose(line.get_ydata(), limit)]
    assert not _has([t.get_text() for t in stacked.texts], "EWOC")
    # the overdose panel's bars are the overdose interval: the bottom segments of the stacked bars
    segments = next(bars for bars in stacked.containers if bars.get_label() == intervals.label(intervals.overdose_index))
    assert all(bar.get_y() == 0 for bar in segments)
    assert np.allclose([bar.get_height() for bar in overdose.patches], [bar.get_height() for bar in segments])
    strict = plots.plot_dlt_intervals(fit, max_overdose_probability=1e-9).axes[1]  # every dose with a chance fails
    failing = [bar.get_height() >= 1e-9 for bar in strict.patches]
    assert any(failing)
    assert [bool(bar.get_hatch()) for bar in strict.patches] == failing
    assert sum("fails EWOC" in t.get_text() for t in strict.texts) == sum(failing)


def test_the_recommendation_title_is_not_clipped(kn5601_spec, axa_spec, kn5601_decision, axa_decision, tmp_path):
    for spec, (recommendation, _) in ((kn5601_spec, kn5601_decision), (axa_spec, axa_decision)):
        figure = plots.plot_recommendation(recommendation, spec)
        assert len(figure.axes) >= 1
        _title_inside_figure(figure, tmp_path / f"{spec.trial.id}.png")
        flat = " ".join(figure.get_suptitle().split())
        assert flat.startswith(f"{recommendation.trial_id} (") and recommendation.action.upper() in flat


@pytest.mark.parametrize(("name", "kind"), [("kn5601 crs", "dose_crs"), ("axa crs", "dlt_intervals"),
                                            ("axa sledai", "sledai_months"), ("kn5601 sledai", "sledai_response"),
                                            ("kn5601 blrm", "prior_posterior"), ("kn5601 crs", "trace")])
def test_figure_titles_lie_inside_the_figure(name, kind, fits, tmp_path):
    _title_inside_figure(plots.make_plot(kind, fits[name]), tmp_path / f"{kind}.png")


def test_a_long_title_is_wrapped_to_the_figure_width(tmp_path):
    from matplotlib.figure import Figure

    figure = Figure(figsize=(3, 2), layout="constrained")
    figure.subplots()
    long_title = "A trial with a very long identifier: " + "escalate to the next dose level " * 4
    plots.set_figure_title(figure, long_title)
    assert figure.get_suptitle().count("\n") >= 3 and " ".join(figure.get_suptitle().split()) == long_title.strip()
    _title_inside_figure(figure, tmp_path / "long.png")


def test_models_are_described_in_words(fits):
    assert plots.model_in_words(fits["kn5601 crs"].model) == "ordinal CRS model (ASTCT grades 0-4)"
    assert plots.model_in_words(fits["kn5601 blrm"].model) == "BLRM of DLT (yes / no)"
    assert plots.model_in_words(fits["kn5601 sledai"].model) == "SLEDAI-2K reduction model (log-linear in dose)"
    assert plots.model_in_words(fits["axa crs"].model) == ("ordinal CRS model (ASTCT grades 0-4), borrowing from "
                                                           "KN5601 (EXNEX)")
    assert plots.model_in_words(fits["axa sledai"].model) == ("SLEDAI-2K reduction model (log-linear in dose), "
                                                              "with KN5601 (a level per study)")
    title = _texts(plots.plot_dose_crs(fits["kn5601 crs"]))["suptitle"][0]
    assert title == ("P(CRS grade >= g) by dose, one panel per grade\n"
                     "KN5601: ordinal CRS model (ASTCT grades 0-4), seed 21")


def test_sledai_months_shade_extrapolation_and_draw_the_patients(fits):
    labels = _texts(plots.plot_sledai_months(fits["kn5601 sledai"]))
    assert set(labels["ylabel"]) == {"SLEDAI-2K (points)"}
    assert "1.0e9 cells (observed to month 6)" in labels["title"]
    assert "4.5e9 cells (observed to month 3)" in labels["title"]
    assert {"beyond observed follow-up", "KN5601 patients"} <= set(labels["legend"])
    axa = _texts(plots.plot_sledai_months(fits["axa sledai"]))
    assert "2.5e7 cells/kg (observed to month 2)" in axa["title"]
    assert "7.5e7 cells/kg (no patient yet)" in axa["title"] and "no patient yet" in axa["legend"]


def test_sledai_months_are_the_same_for_the_same_seed(fits, tmp_path):
    fit = fits["axa sledai"]  # doses without patients draw a dose-group effect: seeded
    first = plots.save_plot(plots.plot_sledai_months(fit, seed=5), tmp_path / "a.svg").read_bytes()
    again = plots.save_plot(plots.plot_sledai_months(fit, seed=5), tmp_path / "b.svg").read_bytes()
    assert first == again


def test_sledai_response_has_a_panel_per_month(fits):
    labels = _texts(plots.plot_sledai_response(fits["kn5601 sledai"]))
    assert labels["title"] == ["month 1 after infusion", "month 3 after infusion", "month 6 after infusion"]
    assert "P(SRI-4 SLEDAI)" in labels["legend"]


def test_diagnostics_label_parameters_studies_grades_and_patients(fits):
    trace = _texts(plots.plot_trace(fits["axa crs"]))
    assert _has(trace["ylabel"], "log a\nstudy KN5601") and _has(trace["ylabel"], "study AXA-NK02")
    assert _has(trace["ylabel"], "CRS grade 1->2") and _has(trace["xlabel"], "MCMC draw")
    forest = _texts(plots.plot_dose_forest(fits["kn5601 sledai"]))
    assert _has(forest["text"], "month 3") and _has(forest["text"], "3.0e9 cells")
    patients = _texts(plots.plot_group_forest(fits["kn5601 sledai"]))
    assert _has(patients["text"], "patient KN5601/001 (1.0e9 cells)")
    predictive = _texts(plots.plot_predictive(fits["kn5601 crs"]))
    assert predictive["xlabel"][0] == "CRS grade (ASTCT)"
    assert _texts(plots.plot_predictive(fits["kn5601 blrm"], prior=True))["xlabel"][0] == "DLT (0 no, 1 yes)"
    pareto = _texts(plots.plot_pareto_k(fits["kn5601 sledai"]))
    assert pareto["ylabel"][0] == "Pareto k" and "KN5601/001" in pareto["xticks"]


def test_prior_posterior_shows_the_decision_quantities(fits):
    toxicity = _texts(plots.plot_prior_posterior_doses(fits["kn5601 crs"]))
    assert toxicity["title"] == ["P(CRS >= 1)", "P(DLT)"] and _has(toxicity["text"], "DLT basis")
    efficacy = _texts(plots.plot_prior_posterior_doses(fits["axa sledai"]))
    assert efficacy["title"][1] == "P(SRI-4 SLEDAI), month 1"
    assert _has(efficacy["xlabel"], "cells/kg")


# ---- decisions --------------------------------------------------------------------------------


@pytest.mark.parametrize("trial", ["kn5601", "axa"])
def test_recommendation_and_transitions_render(trial, request, tmp_path):
    spec = request.getfixturevalue(f"{trial}_spec" if trial == "kn5601" else "axa_spec")
    recommendation, transitions = request.getfixturevalue(f"{trial}_decision")
    figure = plots.plot_recommendation(recommendation, spec)
    labels = _texts(figure)
    assert recommendation.action.upper() in labels["suptitle"][0]
    overdose = spec.dlt.intervals.overdose
    assert f"P({overdose})" in labels["ylabel"]  # EWOC's number per dose, against its limit
    assert _has(labels["text"], f"threshold {spec.decision.max_overdose_probability:g}")
    assert _has(labels["xlabel"], f"({spec.dosing.unit.value})")
    _save(figure, tmp_path / "recommendation.png")
    grid = plots.make_plot("transitions", transitions, spec=spec)
    grid_labels = _texts(grid)
    if transitions:
        assert _has(grid_labels["ylabel"], "DLTs among the next") and _has(grid_labels["xlabel"], "responders")
        assert set(grid_labels["legend"]) == {t.recommendation.action for t in transitions}
    _save(grid, tmp_path / "transitions.png")


def test_axa_transitions_name_the_next_doses(axa_decision, axa_spec):
    recommendation, transitions = axa_decision
    assert recommendation.action != "stop" and transitions
    texts = _texts(plots.plot_transitions(transitions, axa_spec))["text"]
    for transition in transitions:
        r = transition.recommendation
        if r.action != "stop":
            dose = lb.dosing.dose_label(axa_spec.dosing.levels[r.next_level_index], "cells/kg").removesuffix(" cells/kg")
            assert _has(texts, f"{r.action}\n{dose}")


# ---- operating characteristics ----------------------------------------------------------------


def _oc_summary(scenarios, spec, designs=("3+3", "boin")):
    """A summary table as ``operating_characteristics`` writes it, with values that differ per
    quantity (durations near 20 months, patients above the MTD near 1), so a panel showing one
    quantity's bars with another's numbers cannot pass."""
    import pandas as pd

    rows = []
    for s_index, scenario in enumerate(scenarios.scenarios):
        for d_index, design in enumerate(designs):
            def row(quantity, level, value, mcse=0.1):
                rows.append({"scenario": scenario.name, "design": design, "quantity": quantity, "level": level,
                             "value": value, "mcse": mcse, "trials": 40})
            row("no dose selected", 0, 0.1, 0.02)
            for level in range(1, len(spec.dosing.levels) + 1):
                row("selected", level, 0.9 / len(spec.dosing.levels), 0.02)
                row("patients", level, 3.0 + level, 0.2)
            row("duration (months)", 0, 20.0 + 2 * s_index + d_index, 0.8)
            row("patients above the true MTD", 0, 0.5 + 0.3 * s_index + 0.1 * d_index, 0.05)
    return pd.DataFrame(rows)


def test_operating_characteristics_panels_label_their_bars_with_their_own_quantity(axa_spec):
    from conftest import ROOT

    from lupusbayes.report.simulation_plots import PER_TRIAL_ROWS, plot_operating_characteristics
    from lupusbayes.simulation import load_scenarios

    scenarios = load_scenarios(ROOT / "src" / "lupusbayes" / "data" / "scenarios" / "axa_nk02.toml", axa_spec)
    summary = _oc_summary(scenarios, axa_spec)
    figure = plot_operating_characteristics(summary, scenarios, axa_spec)
    grid = np.array(figure.axes).reshape(-1, len(scenarios.scenarios))  # row-major, as subplots made them
    assert grid.shape[0] == 2 + len(PER_TRIAL_ROWS)
    for number, (quantity, label, written) in enumerate(PER_TRIAL_ROWS):
        row = grid[2 + number]
        assert row[0].get_ylabel() == label
        for column, scenario in enumerate(scenarios.scenarios):
            axis = row[column]
            expected = summary[(summary["scenario"] == scenario.name) & (summary["quantity"] == quantity)]
            heights = [bar.get_height() for bar in axis.patches]
            assert np.allclose(heights, expected["value"])  # the bars are the quantity ...
            assert [t.get_text() for t in axis.texts] == [written.format(h) for h in heights]  # ... and so are the numbers
            assert axis.get_ylim()[1] > max(heights)
    assert "months" in grid[2, 0].get_ylabel() and "MTD" in grid[3, 0].get_ylabel()
    assert grid[0, 0].get_ylabel() == "selected (% of trials)" and "per level" in grid[1, 0].get_ylabel()
    assert all(axis.get_xlabel() for axis in grid[:, 0])
    pyplot.close(figure)


# ---- files and errors -------------------------------------------------------------------------


def test_save_plot_refuses_unknown_formats_and_existing_files(fits, tmp_path):
    figure = plots.plot_dlt_intervals(fits["kn5601 blrm"])
    with pytest.raises(lb.OutputPathError, match=r"\.gif"):
        plots.save_plot(figure, tmp_path / "p.gif")
    path = plots.save_plot(figure, tmp_path / "p.svg")
    with pytest.raises(lb.OutputExistsError):
        plots.save_plot(figure, path)
    plots.save_plot(plots.plot_dlt_intervals(fits["kn5601 blrm"]), path, overwrite=True)
    again = plots.save_plot(plots.plot_dlt_intervals(fits["kn5601 blrm"]), tmp_path / "again.svg")
    assert path.read_bytes() == again.read_bytes()  # no date in the file: the same plot, the same bytes


def test_make_plot_refuses_unknown_or_inapplicable_kinds_in_one_line(fits):
    with pytest.raises(plots.PlotError, match="unknown plot kind 'violin'"):
        plots.make_plot("violin", fits["kn5601 crs"])
    with pytest.raises(plots.PlotError) as error:
        plots.make_plot("sledai_months", fits["kn5601 crs"])
    assert "needs a SLEDAI-2K fit" in str(error.value) and "\n" not in str(error.value)
    with pytest.raises(plots.PlotError, match="p_crs_at_least"):
        plots.make_plot("dose_crs", fits["kn5601 blrm"])
    with pytest.raises(plots.PlotError, match="not from a fit"):
        plots.make_plot("recommendation", fits["kn5601 crs"])


def test_kinds_registry_says_what_each_kind_needs_and_shows(fits):
    assert all(kind.needs in plots.NEEDS for kind in plots.KINDS.values())
    assert {name for name, kind in plots.KINDS.items() if kind.needs == "recommendation"} == {"recommendation"}
    function, needs = plots.KINDS["dose_crs"]
    assert function is plots.plot_dose_crs and needs == "toxicity fit"
    titles = [kind.title for kind in plots.KINDS.values()]
    assert all(titles) and len(set(titles)) == len(titles) and not any("\n" in t for t in titles)
    assert plots.report_kinds_for(fits["axa crs"]) == ["dose_crs", "dlt_intervals", "prior_posterior"]
    assert plots.report_kinds_for(fits["kn5601 sledai"]) == ["sledai_months", "sledai_response", "prior_posterior"]


def test_the_gallery_page_shows_every_kind_with_the_command_that_draws_it():
    """docs/gallery.md and scripts/make_gallery.py agree: each picture, its command, every kind."""
    import importlib.util

    from conftest import ROOT

    loader = importlib.util.spec_from_file_location("make_gallery", ROOT / "scripts" / "make_gallery.py")
    gallery = importlib.util.module_from_spec(loader)
    loader.loader.exec_module(gallery)
    page = (ROOT / "docs" / "gallery.md").read_text()
    commands = {line.removeprefix("$ lupusbayes ") for line in page.splitlines() if line.startswith("$ lupusbayes ")}
    images = {line.split("](_generated/gallery/")[1].rstrip(")") for line in page.splitlines()
              if line.startswith("![")}
    assert images == {image for image, _ in gallery.PLOTS}
    assert commands == {" ".join(a) for a in gallery.FITS} | {" ".join(gallery.plot_command(image, a))
                                                              for image, a in gallery.PLOTS}
    assert {a[a.index("--kind") + 1] for _, a in gallery.PLOTS} == set(plots.KINDS)


# ---- command line -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def saved_fits(tmp_path_factory, fits):
    folder = tmp_path_factory.mktemp("fits")
    return {name: fits[name].save(folder / f"{name.replace(' ', '_')}.nc")
            for name in ("kn5601 crs", "kn5601 blrm", "kn5601 sledai")}


def test_cli_draws_one_kind_into_a_file(saved_fits, tmp_path, capsys):
    out = tmp_path / "dose_crs.png"
    assert cli.main(["plot", str(saved_fits["kn5601 crs"]), "--kind", "dose_crs", "--out", str(out)]) == 0
    assert out.read_bytes()[:4] == b"\x89PNG" and f"written: {out}" in capsys.readouterr().out
    assert cli.main(["plot", str(saved_fits["kn5601 crs"]), "--kind", "dose_crs", "--out", str(out)]) == 2
    assert "--overwrite" in capsys.readouterr().err


@pytest.mark.parametrize(("arguments", "message"), [
    (["--kind", "violin", "--out", "x.png"], "unknown plot kind 'violin'"),
    (["--kind", "sledai_months", "--out", "x.png"], "needs a SLEDAI-2K fit"),
    (["--kind", "dose_crs", "--out", "x.jpeg"], "unknown plot format '.jpeg'"),
    (["--kind", "recommendation", "--out", "x.png"], "needs the trial's state: add --state"),
    (["--kind", "dose_crs"], "give --out"),
])
def test_cli_errors_are_one_line_and_exit_2(arguments, message, saved_fits, tmp_path, capsys,
                                            monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert cli.main(["plot", str(saved_fits["kn5601 crs"]), *arguments]) == 2
    error = capsys.readouterr().err
    assert message in error and error.count("\n") == 1
    assert not list(tmp_path.iterdir())


def test_cli_draws_every_kind_of_a_fit_into_a_folder(saved_fits, tmp_path, capsys):
    out = tmp_path / "plots"
    assert cli.main(["plot", str(saved_fits["kn5601 blrm"]), "--kind", "all", "--out", str(out),
                     "--format", "svg"]) == 0
    assert sorted(p.name for p in out.iterdir()) == sorted(f"{k}.svg" for k in EXPECTED_KINDS["kn5601 blrm"])
    assert capsys.readouterr().out.count("written:") == len(EXPECTED_KINDS["kn5601 blrm"])


def test_cli_draws_the_recommendation_from_a_fit_and_the_state(saved_fits, tmp_path, capsys):
    out = tmp_path / "recommendation.pdf"
    assert cli.main(["plot", str(saved_fits["kn5601 blrm"]), "--kind", "recommendation", "--out", str(out),
                     "--state", "kn5601", "--efficacy-fit", str(saved_fits["kn5601 sledai"])]) == 0
    assert out.read_bytes()[:4] == b"%PDF"
    assert cli.main(["plot", str(saved_fits["kn5601 crs"]), "--list"]) == 0
    listed = capsys.readouterr().out
    assert "dose_crs" in listed and "sledai_months" not in listed and "transitions" in listed
