"""The SRC report: one self-contained HTML file, checked in a real browser (headless Chromium)."""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
import subprocess
from datetime import date
from html.parser import HTMLParser

import pytest

import lupusbayes as lb
from lupusbayes.decisions import DecisionContext, decide, draws_from_dose_response, load_state, transition_table
from lupusbayes.fitting import prior_predictive
from lupusbayes.report.html import ReportInputs, _html_table, report_figures, src_report_html, write_src_report

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
BROWSER_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--host-resolver-rules=MAP * ~NOTFOUND", "--virtual-time-budget=10000"]
#: The page width the SRC reads the report at; the page must not scroll sideways at it.
PAGE_WIDTH = 1280
CHECK_SCRIPT = """<script>window.addEventListener('load', () => {
  const widths = [...document.images].map(image => image.naturalWidth);
  const fetched = performance.getEntriesByType('resource').map(entry => entry.name);
  const page = document.documentElement;
  const sticking_out = [...document.body.querySelectorAll('*')]
    .filter(element => element.getBoundingClientRect().right > page.clientWidth + 1)
    .map(element => element.tagName + ': ' + element.textContent.slice(0, 80));
  const out = document.createElement('pre'); out.id = 'browser-check';
  out.textContent = JSON.stringify({widths, fetched, text: document.body.innerText.slice(0, 2000),
                                    scroll_width: page.scrollWidth, client_width: page.clientWidth, sticking_out});
  document.body.appendChild(out);
});</script>"""


class ReportStructure(HTMLParser):
    """What the tests read from a report: the text of every ``<pre>``, ``<h2>``, ``<h3>`` and
    ``<caption>`` (in order), the page's visible text, and whether each table is in a scroll box."""

    def __init__(self, page: str):
        super().__init__(convert_charrefs=True)
        self.pre: list[str] = []
        self.headings: list[tuple[str, str]] = []  # (tag, text) of h2, h3 and caption, in document order
        self.visible_text: list[str] = []
        self.tables_outside_a_box = 0
        self._open: list[tuple[str, dict]] = []
        self._captured: str | None = None
        self._buffer: list[str] = []
        self.feed(page)

    def handle_starttag(self, tag, attrs):
        if tag in ("br", "img", "meta", "wbr"):
            return
        attributes = dict(attrs)
        if tag == "table" and not any(t == "div" and "table-box" in a.get("class", "").split() for t, a in self._open):
            self.tables_outside_a_box += 1
        self._open.append((tag, attributes))
        if tag in ("pre", "h2", "h3", "caption"):
            self._captured, self._buffer = tag, []

    def handle_endtag(self, tag):
        while self._open and self._open.pop()[0] != tag:
            pass
        if tag == self._captured:
            content = "".join(self._buffer)
            (self.pre.append(content) if tag == "pre" else self.headings.append((tag, content.strip())))
            self._captured = None

    def handle_data(self, data):
        if self._captured:
            self._buffer.append(data)
        if not any(tag in ("style", "script", "title") for tag, _ in self._open):
            self.visible_text.append(data)

    def caption_after(self, heading: str) -> str:
        """The first table caption after the heading that starts with ``heading``."""
        position = next(i for i, (tag, text) in enumerate(self.headings) if tag != "caption" and text.startswith(heading))
        return next(text for tag, text in self.headings[position + 1:] if tag == "caption")


def looks_like_a_table(preformatted: str) -> bool:
    """Console table text: a line with 3+ columns separated by runs of 2+ spaces, or pandas' ``\\``
    line continuation."""
    return any(len(re.findall(r"\S {2,}(?=\S)", line)) >= 2 or line.rstrip().endswith("\\")
               for line in preformatted.splitlines())


@pytest.fixture(scope="module")
def kn5601_report(mock_crs_fit, mock_sledai_fit, kn5601_spec):
    spec = kn5601_spec
    state = load_state("kn5601", spec)
    e = spec.decision.efficacy
    context = DecisionContext(spec, state, draws_from_dose_response(mock_crs_fit.dose_response, source="crs"),
                              draws_from_dose_response(mock_sledai_fit.dose_response, response=e.response,
                                                       month=e.month, final_month=e.final_month, source="sledai"))
    recommendation = decide(context)
    transitions = transition_table(context, recommendation=recommendation)
    fits = {"toxicity": mock_crs_fit, "efficacy": mock_sledai_fit}
    return ReportInputs(
        spec=spec, state=state, recommendation=recommendation, command="lupusbayes report kn5601 --state kn5601",
        seed=1, cohort_summary=lb.summarise_cohort(state.cohort), screening=lb.screen(state.cohort.patients, spec),
        fits=fits, priors={"toxicity": prior_predictive(mock_crs_fit.model, seed=1, draws=200),
                           "efficacy": mock_sledai_fit.prior_check()},
        transitions=transitions, figures=report_figures(spec, fits, recommendation, transitions),
        made_on=date(2026, 11, 30),
    )


def test_the_report_is_one_self_contained_file(kn5601_report, tmp_path):
    path = write_src_report(tmp_path / "report.html", kn5601_report)
    html = path.read_text()
    assert html.startswith("<!DOCTYPE html>") and "</html>" in html
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:|//)""", html)  # nothing to fetch
    assert "<script" not in html
    for heading in ("Recommendation", "Every rule", "Data", "Eligibility screening", "Models, priors",
                    "Convergence gate", "Predictive checks", "Dose-response", "Figures", "Reproducibility"):
        assert heading in html, heading
    assert kn5601_report.spec.sha256 in html and "pymc" in html and "lupusbayes report kn5601" in html
    assert html.count("data:image/png;base64,") == len(kn5601_report.figures) > 3
    assert "@media print" in html
    with pytest.raises(lb.OutputExistsError):
        write_src_report(path, kn5601_report)


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (.ci/run installs it; "
                                             "apt-get install chromium to run this test here)")
def test_the_report_renders_in_a_real_browser_with_every_image_and_no_network(kn5601_report, tmp_path):
    report = write_src_report(tmp_path / "report.html", kn5601_report)
    screenshot = tmp_path / "report.png"
    run = subprocess.run([CHROMIUM, *BROWSER_FLAGS, f"--user-data-dir={tmp_path / 'profile-1'}", "--window-size=1200,6000",
                          f"--screenshot={screenshot}", report.as_uri()], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0 and screenshot.stat().st_size > 10_000, run.stderr[-2000:]
    probe = tmp_path / "probe.html"
    probe.write_text(report.read_text().replace("</body>", CHECK_SCRIPT + "</body>"))
    dom = subprocess.run([CHROMIUM, *BROWSER_FLAGS, f"--user-data-dir={tmp_path / 'profile-2'}", "--dump-dom",
                          f"--window-size={PAGE_WIDTH},900", probe.as_uri()], capture_output=True, text=True,
                         timeout=120).stdout
    found = re.search(r'<pre id="browser-check">(.*?)</pre>', dom, re.S)
    assert found, dom[-2000:]
    check = json.loads(found.group(1).replace("&quot;", '"').replace("&amp;", "&").replace("&lt;", "<").replace("&gt;", ">"))
    assert check["widths"] and all(width > 0 for width in check["widths"])  # every image loaded
    assert check["fetched"] == []  # nothing was fetched
    action = kn5601_report.recommendation.action.upper()
    assert action in check["text"] and "Recommendation" in check["text"]
    # at 1280 px the page does not scroll sideways: a wide table scrolls inside its own box
    assert check["client_width"] > PAGE_WIDTH - 40, check  # the window was as wide as asked (less a scroll bar)
    assert check["scroll_width"] <= check["client_width"], check["sticking_out"]


def test_src_report_html_is_deterministic_for_its_inputs(kn5601_report):
    assert src_report_html(kn5601_report) == src_report_html(kn5601_report)


def test_a_forced_report_still_shows_the_action_and_says_forced_once(kn5601_report):
    """The headline is the action line, never the FORCED line that precedes it in the text rendering."""
    from lupusbayes.report.text import action_line

    forced = dataclasses.replace(kn5601_report, recommendation=dataclasses.replace(kn5601_report.recommendation,
                                                                                   forced=True))
    page = src_report_html(forced)
    headline = re.search(r'<div class="action">(.*?)</div>', page).group(1)
    assert headline and headline.split(":")[0] in {"START", "ESCALATE", "HOLD", "DE-ESCALATE", "STOP"}
    assert headline == action_line(forced.recommendation, forced.spec).replace("&", "&amp;")
    assert page.count("FORCED: a fit behind this recommendation FAILED") == 1


def test_every_table_is_an_html_table_and_no_pre_holds_one(kn5601_report):
    page = ReportStructure(src_report_html(kn5601_report))
    assert page.pre  # the command line is preformatted text
    assert not [text for text in page.pre if looks_like_a_table(text)]
    assert page.tables_outside_a_box == 0  # a table wider than the page scrolls inside its box
    assert looks_like_a_table("dose  P(DLT) mean  P(DLT) q5\n1.0e9 cells  0.009  0.000")  # the check bites
    assert looks_like_a_table("study_id patient_id  \\")


def test_sections_are_numbered_once_and_in_order(kn5601_report):
    titles = [text for tag, text in ReportStructure(src_report_html(kn5601_report)).headings if tag == "h2"]
    numbers = [int(re.match(r"(\d+)\. ", title).group(1)) for title in titles]
    assert numbers == list(range(1, len(titles) + 1)), titles
    assert any(title.endswith("Fit of the toxicity model: " + kn5601_report.fits["toxicity"].model.name)
               for title in titles)
    assert any("Fit of the efficacy model" in title for title in titles)


def test_each_dose_response_table_says_what_it_holds(kn5601_report):
    """Only the toxicity model's tables speak of toxicity intervals; the SLEDAI-2K model's are per dose and month."""
    page = ReportStructure(src_report_html(kn5601_report))
    toxicity_prior = page.caption_after("Prior of the toxicity model")
    efficacy_prior = page.caption_after("Prior of the efficacy model")
    assert "toxicity interval" in toxicity_prior and "per dose:" in toxicity_prior
    assert "toxicity" not in efficacy_prior.lower() and "per dose and month" in efficacy_prior
    toxicity_posterior, efficacy_posterior = [text for tag, text in page.headings
                                              if tag == "caption" and text.startswith("Posterior per dose")]
    assert "toxicity interval" in toxicity_posterior
    assert "toxicity" not in efficacy_posterior.lower() and "per dose and month" in efficacy_posterior


def test_a_dose_nobody_has_had_says_no_patients_and_nan_is_never_shown(kn5601_report, kn5601, kn5601_spec):
    """The SLEDAI-2K prior of a trial with nobody yet at the highest dose: its follow-up is 'no patients'."""
    from lupusbayes.cohort import cohort_from_frame

    patients = kn5601.to_frame()
    without_top_dose = cohort_from_frame(patients[patients["dose"] < max(kn5601_spec.dosing.levels)], study_id="KN5601")
    prior = prior_predictive(lb.SledaiModel(without_top_dose, kn5601_spec), seed=1, draws=100)
    assert prior.dose_summary()["observed to month"].isna().any()  # what used to print as NaN
    page_text = src_report_html(dataclasses.replace(kn5601_report, priors={"efficacy": prior}))
    visible = "".join(ReportStructure(page_text).visible_text)
    assert "no patients" in visible
    assert not re.search(r"\bnan\b", visible, re.IGNORECASE)
    assert not re.search(r"\bnan\b", "".join(ReportStructure(src_report_html(kn5601_report)).visible_text), re.I)


def test_html_table_escapes_formats_numbers_and_transposes():
    import pandas as pd

    frame = pd.DataFrame({"dose": ["1.0e9 cells", "<b>2.0e9</b>"], "P(DLT)": [0.01234, 0.5],
                          "patients": [3, 0], "dose_cells": [1e9, 4.5e9], "observed to month": [6.0, float("nan")],
                          "extrapolated": [False, True], "sd": [2.345678, 12.0]})
    table = _html_table(frame, "a <caption>")
    assert "<b>" not in table and "&lt;b&gt;2.0e9&lt;/b&gt;" in table and "a &lt;caption&gt;" in table
    cells = re.findall(r"<td[^>]*>(.*?)</td>", table)
    assert cells[:7] == ["1.0e9 cells", "0.012", "3", "1e9", "6", "no", "2.35"]
    assert cells[7:] == ["&lt;b&gt;2.0e9&lt;/b&gt;", "0.500", "0", "4.5e9", "no patients", "yes", "12"]
    long = _html_table(frame[["dose", "P(DLT)", "patients"]], transpose=True)
    assert re.findall(r'<th scope="row">(.*?)</th>', long) == ["P(DLT)", "patients"]
    assert '<th scope="col">1.0e9 cells</th>' in long
