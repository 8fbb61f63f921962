"""Scenarios: the true dose-toxicity and dose-response a simulated trial is run against.

A scenario file (TOML, validated like a spec: unknown keys, wrong lengths and probabilities
outside 0-1 are one-line errors naming the file and the key) holds a ``[simulation]`` table
and one ``[[scenario]]`` table per scenario:

``p_crs_at_least``
    per dose level, P(CRS grade >= 1, 2, ...), non-increasing in grade;
``p_other_dlt``
    per dose level, the probability of a DLT from other causes;
``p_response``
    per dose level, the probability of the spec's response (``[decision.efficacy] response``)
    at the decision month;
``accrual_gap_days`` / ``accrual_patients_per_month``
    fixed gaps between patients, or a Poisson stream (in ``[simulation]`` or per scenario).

``[simulation]`` may also change the trial's rules for the simulation, to ask what a shorter
window or a larger trial would cost: ``max_patients``, ``sentinel_safety_days`` and
``group_safety_days_before_next`` replace the spec's ``[escalation]`` values.

A patient's DLT is CRS of at least the spec's ``crs_grade_at_least``, or a DLT from other
causes: ``P(DLT) = 1 - (1 - P(CRS >= k)) (1 - p_other_dlt)``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path

import numpy as np

from lupusbayes.errors import SpecError
from lupusbayes.spec import TrialSpec
from lupusbayes.spec.parse import TomlTable, parse_toml

__all__ = ["Scenario", "ScenarioSet", "load_scenarios", "SHIPPED_SCENARIOS"]

#: Scenario files shipped with the package, by the spec they are for.
SHIPPED_SCENARIOS = ("axa_nk02",)


@dataclass(frozen=True)
class Scenario:
    """One truth. Arrays are per dose level of the spec (0-based)."""

    name: str
    description: str
    p_crs_at_least: np.ndarray  # (levels, grades)
    p_other_dlt: np.ndarray
    p_response: np.ndarray
    accrual_gap_days: float | None
    accrual_patients_per_month: float | None
    #: probability that a patient is not DLT-evaluable (leaves within the window without a DLT) and is replaced
    p_not_evaluable: float = 0.0
    #: when a DLT occurs, as a fraction of the DLT window: Beta(a, b); (1, 1), uniform over the window, by default
    dlt_onset_beta: tuple[float, float] = (1.0, 1.0)

    def onset_days(self, window_days: int, onset_uniforms: np.ndarray) -> np.ndarray:
        """The day after dosing on which each patient's DLT (if any) occurs: ``window x F^-1(u)`` for the
        Beta(a, b) of ``dlt_onset_beta``, in (0, window]."""
        a, b = self.dlt_onset_beta
        if (a, b) == (1.0, 1.0):
            fraction = onset_uniforms
        else:
            from scipy.stats import beta as beta_distribution  # scipy.stats is slow to import: only when needed

            fraction = beta_distribution.ppf(onset_uniforms, a, b)
        return np.clip(fraction * window_days, 1e-9, window_days)

    def p_dlt(self, spec: TrialSpec) -> np.ndarray:
        """The true P(DLT) per level: CRS >= the spec's threshold, or a DLT from other causes."""
        grade = spec.dlt.crs_grade_at_least
        crs = self.p_crs_at_least[:, grade - 1] if grade is not None and grade <= self.p_crs_at_least.shape[1] else 0.0
        return 1.0 - (1.0 - crs) * (1.0 - self.p_other_dlt)

    def true_mtd(self, spec: TrialSpec) -> int | None:
        """The highest level whose true P(DLT) is below the spec's overdose threshold (None: none is)."""
        safe = np.flatnonzero(self.p_dlt(spec) < spec.dlt.intervals.overdose_threshold)
        return int(safe[-1]) if safe.size else None

    def safe_and_efficacious(self, spec: TrialSpec, efficacious_response: float) -> np.ndarray:
        """Levels below the overdose threshold whose response probability is at least ``efficacious_response``."""
        return (self.p_dlt(spec) < spec.dlt.intervals.overdose_threshold) & (self.p_response >= efficacious_response)


@dataclass(frozen=True)
class ScenarioSet:
    """The scenarios of one file, for one spec."""

    scenarios: tuple[Scenario, ...]
    efficacious_response: float
    source: str
    sha256: str = ""  # of the file's text: a simulation's checkpoint records it
    escalation_overrides: dict[str, int] = field(default_factory=dict)
    #: correlation of the latent normals behind a patient's toxicity and response (Gaussian copula); 0: independent
    toxicity_response_correlation: float = 0.0

    def names(self) -> tuple[str, ...]:
        return tuple(scenario.name for scenario in self.scenarios)

    def applied_to(self, spec: TrialSpec) -> TrialSpec:
        """``spec`` with the ``[simulation]`` table's changes to its ``[escalation]`` rules."""
        if not self.escalation_overrides:
            return spec
        return replace(spec, escalation=replace(spec.escalation, **self.escalation_overrides))


def _probabilities(table: TomlTable, name: str, count: int) -> np.ndarray:
    values = table.numbers(name, required=True)
    if len(values) != count:
        raise table.error(name, f"give one value per dose level ({count}; got {len(values)})")
    if any(not 0.0 <= v <= 1.0 for v in values):
        raise table.error(name, "probabilities must be between 0 and 1")
    return np.array(values, dtype=float)


def _accrual(table: TomlTable, gap_default, rate_default) -> tuple[float | None, float | None]:
    gap = table.number("accrual_gap_days", gap_default, positive=True, maximum=3650)
    rate = table.number("accrual_patients_per_month", rate_default, positive=True, maximum=1000)
    return gap, rate


def _onset_beta(table: TomlTable, default: tuple[float, float]) -> tuple[float, float]:
    values = table.numbers("dlt_onset_beta", default)
    if len(values) != 2 or any(not 0.05 <= v <= 100 for v in values):
        raise table.error("dlt_onset_beta", "give [a, b] of the Beta distribution of a DLT's time as a fraction of "
                          "the window, each between 0.05 and 100 ([1, 1]: uniform over the window)")
    return (float(values[0]), float(values[1]))


def _scenario(table: TomlTable, spec: TrialSpec, gap_default, rate_default, not_evaluable_default,
              onset_default) -> Scenario:
    n_levels = len(spec.dosing.levels)
    name = table.string("name", required=True).strip()
    if not name or len(name) > 200 or any(not character.isprintable() for character in name):
        raise table.error("name", "give the scenario a name of printable characters (at most 200)")
    raw = table.raw("p_crs_at_least")
    if not isinstance(raw, list) or len(raw) != n_levels or not all(isinstance(row, list) and row for row in raw):
        raise table.error("p_crs_at_least", f"give one list of P(CRS >= grade) per dose level ({n_levels})")
    grades = len(raw[0])
    crs = np.zeros((n_levels, grades))
    for level, row in enumerate(raw):
        if len(row) != grades or any(isinstance(v, bool) or not isinstance(v, int | float) for v in row):
            raise table.error("p_crs_at_least", f"row {level + 1} must hold {grades} numbers like the first")
        crs[level] = row
    if not np.all(np.isfinite(crs)):
        raise table.error("p_crs_at_least", "must hold finite numbers (nan and inf are not probabilities)")
    if np.any((crs < 0) | (crs > 1)) or np.any(np.diff(crs, axis=1) > 0):
        raise table.error("p_crs_at_least", "each row must be probabilities that do not increase with the grade")
    threshold = spec.dlt.crs_grade_at_least
    if threshold is not None and grades < threshold:  # else CRS would silently leave P(DLT)
        raise table.error("p_crs_at_least", f"gives P(CRS >= 1..{grades}), but a DLT is CRS >= {threshold} "
                          f"({spec.trial.id}'s [dlt] crs_grade_at_least): give P(CRS >= g) up to at least grade "
                          f"{threshold}")
    gap, rate = _accrual(table, gap_default, rate_default)
    if (gap is None) == (rate is None):
        raise table.error("accrual_gap_days", "give exactly one of accrual_gap_days and accrual_patients_per_month "
                          "(here or in [simulation])")
    description = table.string("description", "").strip()
    if len(description) > 1000 or any(not character.isprintable() for character in description):
        raise table.error("description", "must be printable text of at most 1000 characters")
    scenario = Scenario(name=name, description=description, p_crs_at_least=crs,
                        p_other_dlt=_probabilities(table, "p_other_dlt", n_levels),
                        p_response=_probabilities(table, "p_response", n_levels),
                        accrual_gap_days=gap if rate is None else None, accrual_patients_per_month=rate,
                        p_not_evaluable=table.number("p_not_evaluable", not_evaluable_default, minimum=0.0,
                                                     maximum=0.5),
                        dlt_onset_beta=_onset_beta(table, onset_default))
    table.finish()
    return scenario


def parse_scenarios(text: str, spec: TrialSpec, *, source: str) -> ScenarioSet:
    """Validate scenario TOML ``text`` against ``spec``'s dose levels."""
    root = parse_toml(text, source=source)
    settings = root.table("simulation", required=False)
    efficacious = settings.number("efficacious_response", 0.5, minimum=0.0, maximum=1.0)
    gap_default = settings.number("accrual_gap_days", None, positive=True, maximum=3650)
    rate_default = settings.number("accrual_patients_per_month", None, positive=True, maximum=1000)
    correlation = settings.number("toxicity_response_correlation", 0.0, minimum=-0.99, maximum=0.99)
    not_evaluable = settings.number("p_not_evaluable", 0.0, minimum=0.0, maximum=0.5)
    onset = _onset_beta(settings, (1.0, 1.0))
    overrides = {}
    for key, low in (("max_patients", 1), ("sentinel_safety_days", 0), ("group_safety_days_before_next", 0)):
        value = settings.integer(key, None, minimum=low, maximum=1000 if key == "max_patients" else 3650)
        if value is not None:
            overrides[key] = value
    settings.finish()
    tables = root.array_of_tables("scenario")
    if not tables:
        raise root.error("scenario", "give at least one [[scenario]]")
    scenarios = tuple(_scenario(table, spec, gap_default, rate_default, not_evaluable, onset) for table in tables)
    names = [s.name for s in scenarios]
    if len(set(names)) != len(names):
        raise root.error("scenario", "scenario names must be distinct")
    root.finish()
    return ScenarioSet(scenarios, efficacious, source, hashlib.sha256(text.encode("utf-8")).hexdigest(), overrides,
                       correlation)


def load_scenarios(path: str | Path, spec: TrialSpec) -> ScenarioSet:
    """Read a scenario file, or a shipped set by name (``"axa_nk02"``)."""
    path = Path(path)
    key = path.name.lower().removesuffix(".toml")
    if not path.exists() and key in SHIPPED_SCENARIOS:
        text = resources.files("lupusbayes.data.scenarios").joinpath(f"{key}.toml").read_text(encoding="utf-8")
        return parse_scenarios(text, spec, source=f"{key} (shipped scenarios)")
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError("file not found", source=path) from None
    except (OSError, UnicodeDecodeError) as error:
        raise SpecError(f"cannot read scenarios ({error})", source=path) from None
    return parse_scenarios(text, spec, source=str(path))
