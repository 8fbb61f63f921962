"""The SRC report: one self-contained HTML file, checked in a real browser (headless Chromium)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from datetime import date

import pytest

import lupusbayes as lb
from lupusbayes.decisions import DecisionContext, decide, draws_from_dose_response, load_state, transition_table
from lupusbayes.fitting import prior_predictive
from lupusbayes.report.html import ReportInputs, report_figures, src_report_html, write_src_report

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
BROWSER_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--host-resolver-rules=MAP * ~NOTFOUND", "--virtual-time-budget=10000"]
CHECK_SCRIPT = """<script>window.addEventListener('load', () => {
  const widths = [...document.images].map(image => image.naturalWidth);
  const fetched = performance.getEntriesByType('resource').map(entry => entry.name);
  const out = document.createElement('pre'); out.id = 'browser-check';
  out.textContent = JSON.stringify({widths, fetched, text: document.body.innerText.slice(0, 2000)});
  document.body.appendChild(out);
});</script>"""


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
        fits=fits, priors={"toxicity": prior_predictive(mock_crs_fit.model, seed=1, draws=200)},
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
                          probe.as_uri()], capture_output=True, text=True, timeout=120).stdout
    found = re.search(r'<pre id="browser-check">(.*?)</pre>', dom, re.S)
    assert found, dom[-2000:]
    check = json.loads(found.group(1).replace("&quot;", '"').replace("&amp;", "&").replace("&lt;", "<").replace("&gt;", ">"))
    assert check["widths"] and all(width > 0 for width in check["widths"])  # every image loaded
    assert check["fetched"] == []  # nothing was fetched
    action = kn5601_report.recommendation.action.upper()
    assert action in check["text"] and "Recommendation" in check["text"]


def test_src_report_html_is_deterministic_for_its_inputs(kn5601_report):
    assert src_report_html(kn5601_report) == src_report_html(kn5601_report)


def test_a_forced_report_still_shows_the_action_and_says_forced_once(kn5601_report):
    """The headline is the action line, never the FORCED line that precedes it in the text rendering."""
    import dataclasses

    from lupusbayes.report.text import action_line

    forced = dataclasses.replace(kn5601_report, recommendation=dataclasses.replace(kn5601_report.recommendation,
                                                                                   forced=True))
    page = src_report_html(forced)
    headline = re.search(r'<div class="action">(.*?)</div>', page).group(1)
    assert headline and headline.split(":")[0] in {"START", "ESCALATE", "HOLD", "DE-ESCALATE", "STOP"}
    assert headline == action_line(forced.recommendation, forced.spec).replace("&", "&amp;")
    assert page.count("FORCED: a fit behind this recommendation FAILED") == 1
