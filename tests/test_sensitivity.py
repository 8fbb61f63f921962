"""The recommendation under named alternative priors, and the prior-data conflict measure for co-data."""

from __future__ import annotations

import json
import math

import pytest

import lupusbayes as lb
from lupusbayes.cli import main
from lupusbayes.decisions import state_from_outcomes
from lupusbayes.sensitivity import (
    PriorAlternative,
    exchangeability_weights,
    prior_alternatives,
    prior_sensitivity,
    sensitivity_text,
)


def test_the_alternatives_change_only_their_keys_and_say_so():
    spec = lb.load_spec("kn5601")
    prior = spec.models.blrm.prior
    alternatives = {a.name.split(" (")[0]: a for a in prior_alternatives(spec, with_codata=False)}
    assert set(alternatives) == {"DLT prior SDs x 2", "DLT prior SDs x 0.5", "prior median P(DLT) at the reference "
                                 "dose x 2", "prior median P(DLT) at the reference dose x 0.5"}
    vaguer = alternatives["DLT prior SDs x 2"].changes
    assert vaguer == {"model.blrm.prior.sd_log_a": pytest.approx(2 * prior.sd_log_a),
                      "model.blrm.prior.sd_log_b": pytest.approx(2 * prior.sd_log_b)}
    doubled = alternatives["prior median P(DLT) at the reference dose x 2"].changes["model.blrm.prior.mean_log_a"]
    median = 1 / (1 + math.exp(-prior.mean_log_a))
    assert 1 / (1 + math.exp(-doubled)) == pytest.approx(2 * median, rel=1e-5)
    # with co-data through EXNEX: the co-data's weight too
    axa = lb.load_spec("axa_nk02")
    names = [a.name for a in prior_alternatives(axa, with_codata=True)]
    assert any(name.startswith("no borrowing") for name in names) and any("co-data weight 0.25" in n for n in names)


def test_a_decision_that_rests_on_the_prior_is_flagged_and_the_numbers_are_those_of_decide():
    spec = lb.load_spec("kn5601")
    result = prior_sensitivity(spec, "1NNN 2NNN 3NNT", design="blrm_ewoc")
    assert result.base.recommendation.action == "hold" and not result.robust
    by_name = {row.alternative.name.split(" (")[0]: row for row in result.rows}
    firmer = by_name["DLT prior SDs x 0.5"]
    assert firmer.changed(result.base) and firmer.decision.recommendation.next_level == 4
    # each alternative is the decision under a spec with only those keys changed
    changed = lb.parse_spec(spec.text.replace(f"sd_log_a = {spec.models.blrm.prior.sd_log_a:g}",
                                              f"sd_log_a = {spec.models.blrm.prior.sd_log_a * 0.5:g}", 1)
                            .replace(f"sd_log_b = {spec.models.blrm.prior.sd_log_b:g}",
                                     f"sd_log_b = {spec.models.blrm.prior.sd_log_b * 0.5:g}", 1), source="firmer")
    direct = lb.recommend(changed, state_from_outcomes(changed, "1NNN 2NNN 3NNT"), design="blrm_ewoc").recommendation
    assert (direct.action, direct.next_level) == (firmer.decision.recommendation.action,
                                                  firmer.decision.recommendation.next_level)
    text = sensitivity_text(result)
    assert "DLT prior SDs x 0.5 (firmer): escalate -> level 4" in text and "[CHANGED]" in text and "DEPENDS" in text


def test_a_robust_decision_says_so():
    spec = lb.load_spec("kn5601")
    result = prior_sensitivity(spec, "1TTT", design="3+3",
                               alternatives=[PriorAlternative("SDs x 2", {"model.blrm.prior.sd_log_a": 2.0})])
    assert result.robust and "does not depend" in sensitivity_text(result)


def test_decide_and_report_show_the_sensitivity(tmp_path, capsys):
    argv = ["decide", "kn5601", "--design", "blrm_ewoc", "--outcomes", "1NNN 2NNN 3NNT", "--sensitivity"]
    assert main(argv) == 0
    assert "Sensitivity to the prior" in capsys.readouterr().out
    assert main([*argv, "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)["sensitivity"]
    assert payload["robust"] is False and len(payload["alternatives"]) == 4
    assert {"name", "changes", "action", "next_level", "changed"} <= set(payload["alternatives"][0])
    out = tmp_path / "r.html"
    assert main(["report", "kn5601", "--design", "blrm_ewoc", "--outcomes", "1NNN 2NNN 3NNT", "--sensitivity",
                 "--out", str(out)]) == 0
    html_text = out.read_text(encoding="utf-8")
    assert "Sensitivity to the prior" in html_text and "The recommendation DEPENDS on the prior" in html_text


def test_the_exchangeability_weights_of_an_exnex_fit(mock_sampling):
    decision = lb.recommend("axa_nk02", "1NNN", codata=["kn5601"], design="blrm_ewoc")
    weights = exchangeability_weights(decision.fits["toxicity"])
    assert set(weights) == {"KN5601", "AXA-NK02"}
    for prior, posterior in weights.values():
        assert prior == 0.5 and 0.0 <= posterior <= 1.0
    assert exchangeability_weights(lb.recommend("kn5601", "kn5601").fits["efficacy"]) == {}
