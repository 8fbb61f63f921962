"""Does the recommendation rest on the prior? The same decision under named alternative priors.

A protocol statistician shows that a recommendation does not hinge on one prior choice (FDA's
2026 draft guidance on Bayesian methods asks for sensitivity analyses and prior-data conflict
checks). :func:`prior_sensitivity` decides again, on the same state and co-data, under each
alternative of :func:`prior_alternatives`:

* the DLT prior's SDs (``log a``, ``log b``) doubled (vaguer) and halved (firmer);
* the prior median P(DLT) at the reference dose doubled and halved (``mean_log_a`` moved on the
  logit scale);
* with co-data through EXNEX: the trial's prior probability of being exchangeable with the
  co-data (the co-data's weight) at 0 (no borrowing), 0.25 and 0.75.

Each alternative is the spec's TOML text with those keys changed
(:func:`lupusbayes.calibration.setting_text`), so every fit it needs is an honest fit of that
spec (and its own fit-cache entry). The answer says, per alternative, whether the action, the
level or the cohort size changes.

:func:`exchangeability_weights` is the prior-data conflict measure for co-data: each study's prior
probability of being exchangeable and its posterior mean given the data (Neuenschwander et al.
2016). A trial whose posterior weight falls well below its prior weight looks unlike the co-data.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

from lupusbayes.calibration import setting_text
from lupusbayes.cohort import Cohort
from lupusbayes.spec import BivariateNormalPrior, TrialSpec, parse_spec
from lupusbayes.workflow import Decision, borrows, recommend, recommendation_words

__all__ = ["PriorAlternative", "prior_alternatives", "SensitivityRow", "PriorSensitivity", "prior_sensitivity",
           "exchangeability_weights", "sensitivity_text"]


@dataclass(frozen=True)
class PriorAlternative:
    """A named change of the spec's priors: dotted TOML keys and their new values."""

    name: str
    changes: dict

    def describe(self) -> str:
        return ", ".join(f"{key} = {value:g}" if isinstance(value, float) else f"{key} = {value}"
                         for key, value in self.changes.items())


def _logit(p: float) -> float:
    return math.log(p / (1.0 - p))


#: Designs that read no prior of the spec: a sensitivity analysis of the prior does not apply to them.
DESIGNS_WITHOUT_PRIOR = ("boin", "3+3", "boin12", "tite_boin")


def prior_alternatives(spec: TrialSpec, *, with_codata: bool, design: str | None = None) -> tuple[PriorAlternative, ...]:
    """The named alternatives of the module docstring, for ``spec``'s DLT prior (a bivariate normal;
    a mixture prior gets only the co-data weights); for the CRM designs, its prior SD on beta; none for
    designs that read no prior (:data:`DESIGNS_WITHOUT_PRIOR`)."""
    design = design or spec.decision.design
    if design in DESIGNS_WITHOUT_PRIOR:
        return ()
    if design in ("crm", "tite_crm"):
        sd = spec.decision.crm.prior_sd
        return tuple(PriorAlternative(f"CRM prior SD on beta x {factor:g} ({words})",
                                      {"decision.crm.prior_sd": round(min(sd * factor, 10.0), 6)})
                     for factor, words in ((2.0, "vaguer"), (0.5, "firmer")))
    out: list[PriorAlternative] = []
    prior = spec.models.blrm.prior
    key = "model.blrm.prior"
    if isinstance(prior, BivariateNormalPrior):
        for factor, words in ((2.0, "vaguer"), (0.5, "firmer")):
            out.append(PriorAlternative(f"DLT prior SDs x {factor:g} ({words})",
                                        {f"{key}.sd_log_a": round(prior.sd_log_a * factor, 6),
                                         f"{key}.sd_log_b": round(prior.sd_log_b * factor, 6)}))
        median = 1.0 / (1.0 + math.exp(-prior.mean_log_a))
        for factor in (2.0, 0.5):
            moved = min(max(median * factor, 1e-4), 0.9)
            out.append(PriorAlternative(f"prior median P(DLT) at the reference dose x {factor:g} "
                                        f"({median:.3f} -> {moved:.3f})",
                                        {f"{key}.mean_log_a": round(_logit(moved), 6)}))
    if with_codata and borrows(spec) and spec.models.blrm.hierarchy == "exnex":
        current = spec.models.blrm.exchangeability(spec.trial.id)
        for weight in (0.0, 0.25, 0.75):
            if not math.isclose(weight, current):
                name = "no borrowing from the co-data" if weight == 0 else f"co-data weight {weight:g}"
                out.append(PriorAlternative(f"{name} (the trial exchangeable with probability {weight:g}, not "
                                            f"{current:g})", {f"model.blrm.p_exchangeable.{spec.trial.id}": weight}))
    return tuple(out)


@dataclass(frozen=True)
class SensitivityRow:
    alternative: PriorAlternative
    decision: Decision

    def changed(self, base: Decision) -> bool:
        a, b = self.decision.recommendation, base.recommendation
        return (a.action, a.next_level, a.n_next) != (b.action, b.next_level, b.n_next)


@dataclass(frozen=True)
class PriorSensitivity:
    """The recommendation under the spec's priors (``base``) and under each alternative."""

    base: Decision
    rows: tuple[SensitivityRow, ...]
    exchangeability: dict  # study -> (prior weight, posterior weight): the prior-data conflict measure

    @property
    def robust(self) -> bool:
        """True when no alternative changes the action, the level or the cohort size."""
        return not any(row.changed(self.base) for row in self.rows)

    def table_rows(self) -> list[dict]:
        """One row per prior (the spec's first): its changes, the recommendation, whether it changed."""
        rows = [{"prior": "the spec's prior", "changes": "",
                 "recommendation": recommendation_words(self.base.recommendation), "changed": ""}]
        rows += [{"prior": row.alternative.name, "changes": row.alternative.describe(),
                  "recommendation": recommendation_words(row.decision.recommendation),
                  "changed": "CHANGED" if row.changed(self.base) else "same"} for row in self.rows]
        return rows

    def to_dict(self) -> dict:
        def short(decision: Decision) -> dict:
            r = decision.recommendation
            return {"action": r.action, "next_level": r.next_level, "next_dose_label": r.next_dose_label,
                    "n_next": r.n_next, "selected_level": r.selection.level if r.selection is not None else None}

        return {"robust": self.robust, "base": short(self.base),
                "alternatives": [{"name": row.alternative.name, "changes": row.alternative.changes,
                                  **short(row.decision), "changed": row.changed(self.base)} for row in self.rows],
                "exchangeability": {study: {"prior": prior, "posterior": posterior}
                                    for study, (prior, posterior) in self.exchangeability.items()}}


def exchangeability_weights(result) -> dict:
    """Each study's prior probability of being exchangeable and its posterior mean, from an EXNEX
    toxicity fit (empty for other fits)."""
    model, posterior = result.model, result.posterior
    if getattr(model, "hierarchy", None) != "exnex" or "p_exchangeable_given_draw" not in posterior:
        return {}
    weights = posterior["p_exchangeable_given_draw"].mean(dim=("chain", "draw"))
    return {str(study): (float(prior), float(weights.sel(study=study)))
            for study, prior in zip(model.studies, model.p_exchangeable, strict=True)}


def _with_spec(state, spec: TrialSpec):
    return replace(state, spec=spec)


def prior_sensitivity(spec, state, *, design=None, codata: Sequence[Cohort] = (), seed: int = 20251108, cache=None,
                      alternatives: Sequence[PriorAlternative] | None = None, base: Decision | None = None,
                      progress=None) -> PriorSensitivity:
    """The recommendation under the spec's priors and under each alternative (see the module docstring).

    ``base`` is the decision already made under the spec's priors (decided here when not given).
    Fits are made (or read from ``cache``) per alternative: with co-data, one EXNEX fit each.
    """
    base = base or recommend(spec, state, design=design, codata=codata, seed=seed, cache=cache, transitions=False,
                             progress=progress)
    spec, state = base.inputs.spec, base.inputs.context.state
    design_name = base.inputs.design.name
    alternatives = (prior_alternatives(spec, with_codata=bool(codata), design=design_name) if alternatives is None
                    else alternatives)
    rows = []
    for alternative in alternatives:
        other = parse_spec(setting_text(spec, alternative.changes), source=f"{spec.source}, {alternative.name}")
        # the SLEDAI-2K model does not read the DLT prior: its fit is the base decision's, not refitted
        efficacy = {"efficacy": base.fits["efficacy"]} if "efficacy" in base.fits else None
        decision = recommend(other, _with_spec(state, other), design=design_name, codata=codata, seed=seed,
                             cache=cache, transitions=False, progress=progress, fits=efficacy)
        rows.append(SensitivityRow(alternative, decision))
    toxicity = base.fits.get("toxicity")
    weights = exchangeability_weights(toxicity) if toxicity is not None else {}
    return PriorSensitivity(base, tuple(rows), weights)


def sensitivity_text(result: PriorSensitivity) -> str:
    """The sensitivity table: each alternative, its recommendation, and whether it changed."""
    if not result.rows:
        return (f"Sensitivity to the prior: not applicable: the {result.base.recommendation.design} design reads no "
                "prior (its rule uses the counts alone)")
    lines = ["Sensitivity to the prior: the same decision under named alternative priors",
             f"  the spec's prior: {recommendation_words(result.base.recommendation)}"]
    for row in result.rows:
        flag = "CHANGED" if row.changed(result.base) else "same"
        lines.append(f"  {row.alternative.name}: {recommendation_words(row.decision.recommendation)} [{flag}]")
    lines.append("  the recommendation " + ("does not depend on these prior choices" if result.robust else
                                              "DEPENDS on the prior: say which prior the decision rests on and why"))
    if result.exchangeability:
        lines.append("Prior-data conflict (EXNEX): each study's probability of being exchangeable with the others, "
                     "prior -> posterior")
        for study, (prior, posterior) in result.exchangeability.items():
            note = " (well below its prior: the data look unlike the co-data)" if posterior < prior - 0.2 else ""
            lines.append(f"  {study}: {prior:.2f} -> {posterior:.2f}{note}")
    return "\n".join(lines)
