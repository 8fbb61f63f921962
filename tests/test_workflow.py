"""The one-call Python API (``lb.recommend``, ``lb.src_report``) does what the command line does."""

from __future__ import annotations

import json
import re

import pytest

import lupusbayes as lb
from lupusbayes.cli import main


def test_recommend_takes_names_and_outcome_strings_and_answers_as_decide(capsys):
    decision = lb.recommend("kn5601", "1NNN 2NNN", design="3+3")
    assert decision.recommendation.action == "escalate"
    assert decision.recommendation.next_dose_label == "3.0e9 cells"
    assert decision.fits == {} and len(decision.transitions) > 0  # the 3+3 fits nothing
    assert main(["decide", "kn5601", "--design", "3+3", "--outcomes", "1NNN 2NNN", "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload == decision.to_dict(transitions=False)  # the recommendation and which levels can be reached
    recommendation = decision.recommendation
    assert payload["next_level"] == recommendation.next_level == recommendation.next_level_index + 1 == 3  # from 1


def test_recommend_with_a_patients_file_keeps_its_fits_and_reads_the_cache(mock_sampling):
    cache = lb.FitCache()
    first = lb.recommend("kn5601", "kn5601", cache=cache)
    assert set(first.fits) == {"efficacy"}  # one study: the exact BLRM needs no fit
    assert len(cache.entries()) == 1
    again = lb.recommend("kn5601", "kn5601", cache=cache)
    assert again.recommendation.to_dict() == first.recommendation.to_dict()
    # the fits of one decision decide again without refitting (they are checked against the state)
    reused = lb.recommend("kn5601", "kn5601", fits=first.fits)
    assert reused.recommendation.to_dict() == first.recommendation.to_dict()
    assert "Decision(KN5601" in repr(first) and "fits: efficacy" in repr(first)


def test_recommend_refuses_a_fit_of_other_data(mock_sampling, mock_crs_fit):
    with pytest.raises(lb.DecisionError, match="efficacy fit"):
        lb.recommend("kn5601", "kn5601", fits={"efficacy": mock_crs_fit})


def test_src_report_returns_and_writes_the_html_and_never_overwrites_silently(tmp_path, mock_sampling):
    decision = lb.recommend("kn5601", "kn5601")
    out = tmp_path / "src.html"
    html_text = lb.src_report("kn5601", "kn5601", decision=decision, out=out)
    assert out.read_text(encoding="utf-8") == html_text
    assert html_text.startswith("<!DOCTYPE html>") and decision.recommendation.action.upper() in html_text
    with pytest.raises(lb.LupusBayesError, match="exists"):
        lb.src_report("kn5601", "kn5601", decision=decision, out=out)
    assert out.read_text(encoding="utf-8") == html_text
    # without a decision given, it decides (the same seed: the same report, but for the fit's time)
    def timeless(text):
        return re.sub(r"\d+\.\d+ s\b", "", text)

    assert timeless(lb.src_report("kn5601", "kn5601")) == timeless(html_text)
