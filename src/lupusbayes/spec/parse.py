"""Reading trial specs: TOML text to a validated :class:`~lupusbayes.spec.schema.TrialSpec`.

The two shipped specs (``kn5601``, ``axa_nk02``) are package data; copies for editing live in
the repository's ``models/`` folder. ``docs/spec-format.md`` documents every key.

Validation is strict: an unknown key, a wrong unit, unsorted or non-positive dose levels, or a
value of the wrong type raises :class:`~lupusbayes.errors.SpecError` naming the file and the
key (``dosing.levels``), so a typo never silently falls back to a default.
"""

from __future__ import annotations

import math
import tomllib
import unicodedata
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any

from lupusbayes.dosing import DoseUnit, WeightTierSchedule
from lupusbayes.errors import DosingError, SpecError
from lupusbayes.spec.schema import (
    DESIGNS,
    FIELD_UNITS,
    RESPONSES,
    Boin12DecisionSettings,
    BoinSettings,
    CrmSettings,
    TiteBoinSettings,
    DecisionSettings,
    EfficacyRuleSettings,
    LossSettings,
    DLTDefinition,
    DoseObservation,
    DosingSpec,
    EfficacySpec,
    EligibilityCriterion,
    EscalationRules,
    ModelSpecs,
    ToxicityIntervals,
    TrialInfo,
    TrialSpec,
)
from lupusbayes.spec.settings import (
    HETEROGENEITY_PRESETS,
    BivariateNormalMixture,
    BivariateNormalPrior,
    ConvergenceGate,
    FitSettings,
    Heterogeneity,
    LogNormalPrior,
    ResponseModelSettings,
    SledaiModelSettings,
    ToxicityModelSettings,
)

__all__ = ["load_spec", "parse_spec", "shipped_spec_path", "SHIPPED_SPECS", "TomlTable", "parse_toml"]

#: Names of the specs shipped with the package (``load_spec("kn5601")``).
SHIPPED_SPECS = ("kn5601", "axa_nk02")

# --------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------


def shipped_spec_path(name: str) -> Path:
    """Path of a spec shipped with the package: ``"kn5601"`` or ``"axa_nk02"``."""
    key = name.lower().replace("-", "_").removesuffix(".toml")
    if key not in SHIPPED_SPECS:
        raise SpecError(f"no shipped spec called '{name}' (shipped: {', '.join(SHIPPED_SPECS)})", source=name)
    return Path(str(resources.files("lupusbayes.data.specs").joinpath(f"{key}.toml")))


def load_spec(path: str | Path) -> TrialSpec:
    """Read and validate a trial spec (TOML). ``"kn5601"`` / ``"axa_nk02"`` name the shipped ones.

    Examples
    --------
    >>> spec = load_spec("axa_nk02")
    >>> spec.dosing.levels
    (25000000.0, 75000000.0, 250000000.0)
    """
    path = Path(path)
    source = None
    if not path.exists() and path.suffix == "" and len(path.parts) == 1:
        source = f"{path.name.lower().replace('-', '_')} (shipped)"  # named so in messages, not by its installed path
        path = shipped_spec_path(path.name)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        shipped = path.stem.lower().replace("-", "_")
        hint = (f" ('{shipped}' names the shipped spec from any folder; `lupusbayes spec export {shipped}` writes an "
                "editable copy)") if shipped in SHIPPED_SPECS else ""
        raise SpecError(f"file not found{hint}", source=path) from None
    except IsADirectoryError:
        raise SpecError("is a folder, not a spec file", source=path) from None
    except OSError as error:
        raise SpecError(f"cannot read spec ({error.strerror})", source=path) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        line = raw.count(b"\n", 0, error.start) + 1
        raise SpecError(f"line {line}: not UTF-8 text (byte 0x{raw[error.start]:02X}); save the spec as UTF-8",
                        source=path) from None
    return parse_spec(text, source=source or str(path))


def parse_toml(text: str, *, source: str) -> TomlTable:
    """TOML text as a :class:`TomlTable` (a byte-order mark accepted; errors name ``source``)."""
    text = text.removeprefix("\ufeff")  # a byte-order mark, as spreadsheet and Windows editors write
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise SpecError(f"not valid TOML ({error})", source=source) from None
    except RecursionError:
        raise SpecError("not usable: values are nested too deeply", source=source) from None
    return TomlTable(document, "", source)


def parse_spec(text: str, *, source: str = "<spec>") -> TrialSpec:
    """Validate TOML ``text`` as a trial spec (``source`` names it in error messages)."""
    root = parse_toml(text, source=source)
    trial = _parse_trial(root.table("trial"))
    dosing = _parse_dosing(root.table("dosing"))
    dlt = _parse_dlt(root.table("dlt"), dosing)
    escalation = _parse_escalation(root.table("escalation", required=False))
    efficacy = _parse_efficacy(root.table("efficacy", required=False))
    decision_table = root.table("decision", required=False)
    decision = _parse_decision(decision_table, dlt, dosing)
    minimum_selected = decision.min_patients_at_selection
    if minimum_selected is not None and escalation.max_patients is not None and minimum_selected > escalation.max_patients:
        raise decision_table.error("min_patients_at_selection", f"{minimum_selected} is more than the trial's "
                                   f"max_patients ({escalation.max_patients}): no dose could ever be selected")
    eligibility = _parse_eligibility(root.table("eligibility", required=False))
    models = _parse_models(root.table("model", required=False))
    fitting = _parse_fitting(root.table("fitting", required=False))
    observations = _parse_observations(root.array_of_tables("observations"), trial.id, dosing)
    root.finish()
    return TrialSpec(
        trial=trial, dosing=dosing, dlt=dlt, escalation=escalation, efficacy=efficacy, decision=decision,
        eligibility=eligibility, models=models, fitting=fitting, observations=observations,
        source=source, text=text,
    )


class TomlTable:
    """A TOML table being consumed: typed getters, and ``finish()`` rejects unknown keys.

    Every getter names the file and the key path in its error (``field 'dosing.levels'``); other
    validated TOML files (simulation scenarios) use it too.
    """

    def __init__(self, data: Mapping[str, Any] | None, path: str, source: str) -> None:
        self.data = dict(data or {})
        self.path = path
        self.source = source
        self.used: set[str] = set()
        self.present = data is not None

    def key(self, name: str) -> str:
        return f"{self.path}.{name}" if self.path else name

    def error(self, name: str | None, message: str) -> SpecError:
        return SpecError(message, source=self.source, field=self.key(name) if name else (self.path or None))

    def raw(self, name: str, default: Any = None, *, required: bool = False) -> Any:
        self.used.add(name)
        if name not in self.data:
            if required:
                raise self.error(name, "required key is missing")
            return default
        return self.data[name]

    def table(self, name: str, *, required: bool = True) -> TomlTable:
        value = self.raw(name, None, required=required)
        if value is not None and not isinstance(value, dict):
            raise self.error(name, "must be a table ([section])")
        return TomlTable(value, self.key(name), self.source)

    def array_of_tables(self, name: str) -> list[TomlTable]:
        value = self.raw(name, [])
        if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
            raise self.error(name, "must be an array of tables ([[section]])")
        return [TomlTable(item, f"{self.key(name)}[{index}]", self.source) for index, item in enumerate(value)]

    def string(self, name: str, default: str | None = None, *, required: bool = False) -> str | None:
        value = self.raw(name, default, required=required)
        if value is not None and not isinstance(value, str):
            raise self.error(name, f"must be text (got {value!r})")
        self._printable(name, value)
        return value

    def _printable(self, name: str, *values: str | None) -> None:
        for value in values:
            bad = next((c for c in value or "" if unicodedata.category(c) == "Cc"), None)
            if bad is not None:
                raise self.error(name, f"contains the control character U+{ord(bad):04X}; text must be printable")

    def number(self, name: str, default: float | None = None, *, required: bool = False,
               positive: bool = False, minimum: float | None = None, maximum: float | None = None,
               below: float | None = None, allow_infinity: bool = False) -> float | None:
        value = self.raw(name, default, required=required)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.error(name, f"must be a number (got {value!r})")
        value = float(value)
        if math.isnan(value) or (math.isinf(value) and not (allow_infinity and value > 0)):
            raise self.error(name, f"must be a finite number (got {value}; a literal like 1e400 overflows to inf)")
        if below is not None and value >= below:
            raise self.error(name, f"must be below {below:g} (got {value:g})")
        if positive and value <= 0:
            raise self.error(name, f"must be positive (got {value:g})")
        if minimum is not None and value < minimum:
            raise self.error(name, f"must be >= {minimum:g} (got {value:g})")
        if maximum is not None and value > maximum:
            raise self.error(name, f"must be <= {maximum:g} (got {value:g})")
        return value

    def integer(self, name: str, default: int | None = None, *, required: bool = False,
                minimum: int | None = None, maximum: int | None = None) -> int | None:
        value = self.raw(name, default, required=required)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(name, f"must be a whole number (got {value!r})")
        if minimum is not None and value < minimum:
            raise self.error(name, f"must be >= {minimum} (got {value})")
        if maximum is not None and value > maximum:
            raise self.error(name, f"must be <= {maximum} (got {value})")
        return value

    def boolean(self, name: str, default: bool | None = None) -> bool | None:
        value = self.raw(name, default)
        if value is not None and not isinstance(value, bool):
            raise self.error(name, f"must be true or false (got {value!r})")
        return value

    def numbers(self, name: str, default=None, *, required: bool = False) -> tuple[float, ...] | None:
        value = self.raw(name, default, required=required)
        if value is None:
            return None
        if not isinstance(value, list | tuple) or not all(
            isinstance(v, int | float) and not isinstance(v, bool) for v in value
        ):
            raise self.error(name, f"must be a list of numbers (got {value!r})")
        numbers = tuple(float(v) for v in value)
        bad = [v for v in numbers if not math.isfinite(v)]
        if bad:
            raise self.error(name, f"must hold finite numbers (got {bad[0]}; a literal like 1e400 overflows to inf)")
        return numbers

    def strings(self, name: str, default=None) -> tuple[str, ...] | None:
        value = self.raw(name, default)
        if value is None:
            return None
        if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
            raise self.error(name, f"must be a list of text values (got {value!r})")
        self._printable(name, *value)
        return tuple(value)

    def choice(self, name: str, options: tuple[str, ...], default: str | None = None) -> str | None:
        value = self.string(name, default)
        if value is not None and value not in options:
            raise self.error(name, f"must be one of {', '.join(options)} (got '{value}')")
        return value

    def finish(self) -> None:
        unknown = sorted(set(self.data) - self.used)
        if unknown:
            import difflib

            close = difflib.get_close_matches(unknown[0], sorted(self.used), n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise self.error(unknown[0], f"unknown key{hint}")


def _parse_trial(table: TomlTable) -> TrialInfo:
    info = TrialInfo(
        id=table.string("id", required=True),
        title=table.string("title", ""),
        product=table.string("product", ""),
        population=table.string("population", ""),
        phase=table.string("phase", ""),
        source=table.string("source", ""),
    )
    if not info.id.strip():
        raise table.error("id", "must not be empty")
    table.finish()
    return info


def _parse_dose_unit(table: TomlTable, name: str) -> DoseUnit:
    text = table.string(name, required=True)
    try:
        return DoseUnit(text)
    except ValueError:
        raise table.error(name, f"wrong unit '{text}': dose units are 'cells' or 'cells/kg'") from None


def _parse_dosing(table: TomlTable) -> DosingSpec:
    unit = _parse_dose_unit(table, "unit")
    levels = table.numbers("levels", required=True)
    if not levels:
        raise table.error("levels", "needs at least one dose level")
    for index, level in enumerate(levels):
        if not level > 0:
            raise table.error("levels", f"dose levels must be positive (level {index + 1} is {level:g})")
    if any(later <= earlier for earlier, later in zip(levels, levels[1:], strict=False)):
        raise table.error("levels", f"dose levels must be strictly increasing (got {', '.join(f'{v:g}' for v in levels)})")
    if unit == DoseUnit.CELLS_PER_KG and max(levels) > 1e9:
        raise table.error("levels", f"{max(levels):g} cells/kg is implausible; is the unit 'cells'?")
    if unit == DoseUnit.CELLS and max(levels) < 1e5:
        raise table.error("levels", f"{max(levels):g} total cells is implausible; is the unit 'cells/kg'?")
    reference = table.number("reference_dose", required=True, positive=True)
    if not levels[0] / 100 <= reference <= levels[-1] * 100:
        raise table.error("reference_dose", f"{reference:g} is implausible for levels {levels[0]:g}-{levels[-1]:g} "
                          "(it should be within a factor 100 of them; usually one of the levels)")
    starting = table.integer("starting_level", 1, minimum=1, maximum=len(levels))
    infusions = table.integer("infusions_per_patient", 1, minimum=1, maximum=100)
    metric = table.choice("dose_metric", ("per_infusion", "per_course"), "per_infusion")
    by_study = table.raw("infusions_by_study", {})
    if not isinstance(by_study, dict):
        raise table.error("infusions_by_study", "must be a table of study id = number of infusions")
    for study, count in by_study.items():
        if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= 100:
            raise table.error(f"infusions_by_study.{study}", f"must be a whole number of infusions, 1-100 (got {count!r})")
    tiers = None
    tier_tables = table.array_of_tables("weight_tiers")
    if tier_tables:
        bands = []
        for tier in tier_tables:
            bands.append(
                (
                    tier.number("min_weight_kg", required=True, minimum=0.0),
                    tier.number("max_weight_kg", math.inf, positive=True, allow_infinity=True),
                    tier.number("dose_cells", required=True, positive=True),
                )
            )
            tier.finish()
        try:
            tiers = WeightTierSchedule.from_bands(bands)
        except DosingError as error:
            raise table.error("weight_tiers", str(error)) from None
    table.finish()
    return DosingSpec(unit, levels, reference, starting, infusions, tiers, metric,
                      {str(k): int(v) for k, v in by_study.items()})


def _parse_dlt(table: TomlTable, dosing: DosingSpec) -> DLTDefinition:
    window = table.integer("window_days", required=True, minimum=1, maximum=365)
    definition = table.strings("definition", ())
    crs = table.integer("crs_grade_at_least", None, minimum=1, maximum=5)
    icans = table.integer("icans_grade_at_least", None, minimum=1, maximum=4)
    intervals = _parse_intervals(table.table("intervals", required=False))
    if not definition:
        raise table.error("definition", "list what counts as a DLT, e.g. [\"CRS grade >= 3\"]")
    table.finish()
    return DLTDefinition(window, definition, crs, icans, intervals)


def _parse_intervals(table: TomlTable) -> ToxicityIntervals:
    """``[dlt.intervals]``: edges, their names and the overdose interval (default: oncology's)."""
    if not table.present:
        return ToxicityIntervals.oncology()
    edges = table.numbers("edges", required=True)
    names = table.strings("names")
    if names is None:
        raise table.error("names", f"name the {max(len(edges) - 1, 1)} intervals, e.g. [\"acceptable\", \"overdosing\"]")
    overdose = table.string("overdose", names[-1] if names else "")
    table.finish()
    try:
        return ToxicityIntervals(edges, names, overdose)
    except ValueError as error:
        raise table.error("edges" if "edges" in str(error) else ("overdose" if "overdose" in str(error) else "names"),
                          str(error)) from None


def _parse_escalation(table: TomlTable) -> EscalationRules:
    rules = EscalationRules(
        group_size=table.integer("group_size", 3, minimum=1, maximum=12),
        sentinel_patients=table.integer("sentinel_patients", 0, minimum=0),
        sentinel_safety_days=table.integer("sentinel_safety_days", 0, minimum=0),
        group_safety_days_before_next=table.integer("group_safety_days_before_next", 28, minimum=0),
        allow_skipping=table.boolean("allow_skipping", False),
        efficacy_driven_escalation=table.boolean("efficacy_driven_escalation", False),
        max_patients=table.integer("max_patients", None, minimum=1),
        pause_crs_grade_at_least=table.integer("pause_crs_grade_at_least", None, minimum=1, maximum=5),
        pause_icans_grade_at_least=table.integer("pause_icans_grade_at_least", None, minimum=1, maximum=4),
    )
    if rules.sentinel_patients >= rules.group_size:
        raise table.error("sentinel_patients", "must be smaller than group_size")
    if rules.sentinel_patients and not rules.sentinel_safety_days:
        raise table.error("sentinel_safety_days", "sentinel patients need a safety period in days")
    table.finish()
    return rules


def _parse_decision(table: TomlTable, dlt: DLTDefinition, dosing: DosingSpec) -> DecisionSettings:
    defaults = DecisionSettings()
    if not table.present:
        return defaults
    efficacy_table = table.table("efficacy", required=False)
    base = defaults.efficacy
    efficacy = EfficacyRuleSettings(
        response=efficacy_table.choice("response", RESPONSES, base.response),
        month=efficacy_table.number("month", base.month, positive=True, maximum=120),
        insufficient_rate=efficacy_table.number("insufficient_rate", base.insufficient_rate, minimum=0.0, below=1.0),
        insufficient_probability=efficacy_table.number("insufficient_probability", base.insufficient_probability,
                                                       minimum=0.5, below=1.0),
        final_month=efficacy_table.number("final_month", base.final_month, positive=True, maximum=120),
        dlt_penalty=efficacy_table.number("dlt_penalty", base.dlt_penalty, minimum=0.0, maximum=100.0),
        wait_for_response=efficacy_table.boolean("wait_for_response", base.wait_for_response),
    )
    efficacy_table.finish()
    loss_table = table.table("loss", required=False)
    edges = loss_table.numbers("edges", defaults.loss.edges)
    losses = loss_table.numbers("losses", defaults.loss.losses)
    if len(edges) < 3 or edges[0] != 0.0 or edges[-1] != 1.0 or any(b <= a for a, b in zip(edges, edges[1:])):
        raise loss_table.error("edges", "must increase from 0 to 1 with at least two intervals")
    if len(losses) != len(edges) - 1 or any(v < 0 for v in losses):
        raise loss_table.error("losses", f"give one loss >= 0 per interval ({len(edges) - 1})")
    overdose_from = loss_table.number("overdose_from", defaults.loss.overdose_from, minimum=0.0, maximum=1.0)
    if overdose_from not in edges[1:-1]:
        raise loss_table.error("overdose_from", f"must be one of the inner edges ({', '.join(f'{e:g}' for e in edges[1:-1])})")
    loss = LossSettings(edges, losses, overdose_from,
                        loss_table.number("max_overdose_probability", defaults.loss.max_overdose_probability,
                                          minimum=0.0, maximum=1.0))
    loss_table.finish()
    boin_table = table.table("boin", required=False)
    target = boin_table.number("target", defaults.boin.target, minimum=0.05, maximum=0.6)
    boin = BoinSettings(
        target=target,
        p_saf=boin_table.number("p_saf", None, positive=True, below=target),
        p_tox=boin_table.number("p_tox", None, minimum=target, below=1.0),
        cutoff_eliminate=boin_table.number("cutoff_eliminate", defaults.boin.cutoff_eliminate, minimum=0.5, below=1.0),
    )
    # BOIN's own limits (BOIN 2.7.2 get.boundary; decisions.boin.boin_boundaries): the intervals
    # around the target must be at least 10% of it wide, or the boundaries are undefined
    if boin.p_saf is not None and boin.p_saf > 0.9 * target + 1e-12:
        raise boin_table.error("p_saf", f"must be at most 0.9 x target = {0.9 * target:.4g} (got {boin.p_saf:g}): "
                               "BOIN needs the sub-therapeutic rate clearly below the target")
    if boin.p_tox is not None and boin.p_tox < 1.1 * target - 1e-12:
        raise boin_table.error("p_tox", f"must be at least 1.1 x target = {1.1 * target:.4g} (got {boin.p_tox:g}): "
                               "BOIN needs the overly toxic rate clearly above the target")
    boin_table.finish()
    crm = _parse_crm(table.table("crm", required=False), len(dosing.levels))
    boin12 = _parse_boin12(table.table("boin12", required=False))
    tite_table = table.table("tite_boin", required=False)
    tite_boin = TiteBoinSettings(tite_table.number("max_pending_fraction", TiteBoinSettings().max_pending_fraction,
                                                   minimum=0.0, below=1.0))
    tite_table.finish()
    settings = DecisionSettings(
        design=table.choice("design", DESIGNS, defaults.design),
        toxicity_model=table.choice("toxicity_model", ("crs", "blrm"), defaults.toxicity_model),
        max_overdose_probability=table.number("max_overdose_probability", defaults.max_overdose_probability,
                                              minimum=0.0, maximum=1.0),
        close_call_mcse=table.number("close_call_mcse", defaults.close_call_mcse, minimum=0.0, maximum=10.0),
        min_patients_at_selection=table.integer("min_patients_at_selection", None, minimum=1, maximum=100),
        efficacy=efficacy, loss=loss, boin=boin, crm=crm, boin12=boin12, tite_boin=tite_boin,
    )
    if settings.toxicity_model == "crs" and dlt.crs_grade_at_least is None:
        raise table.error("toxicity_model", "'crs' reads P(DLT) as P(CRS >= dlt.crs_grade_at_least), which is not set")
    table.finish()
    return settings


def _parse_crm(table: TomlTable, n_levels: int) -> CrmSettings:
    """``[decision.crm]``: the CRM's model, skeleton and prior, its stopping and the TITE weights."""
    defaults = CrmSettings()
    if not table.present:
        return defaults
    target = table.number("target", defaults.target, positive=True, below=0.6)
    model = table.choice("model", ("empiric", "logistic"), defaults.model)
    intercept = table.number("intercept", defaults.intercept, positive=True, maximum=10.0)
    skeleton = table.numbers("skeleton", None)
    if skeleton is not None:
        if len(skeleton) != n_levels:
            raise table.error("skeleton", f"give one prior P(DLT) per dose level ({n_levels}; got {len(skeleton)})")
        if any(not 0.0 < value < 1.0 for value in skeleton) or any(b <= a for a, b in zip(skeleton, skeleton[1:])):
            raise table.error("skeleton", "must increase strictly, each value between 0 and 1 (exclusive)")
        if model == "logistic" and math.log(skeleton[-1] / (1.0 - skeleton[-1])) >= intercept:
            raise table.error("skeleton", f"the logistic model needs logit(skeleton) below the intercept ({intercept:g})")
    halfwidth = table.number("skeleton_halfwidth", defaults.skeleton_halfwidth, positive=True,
                             below=min(target, 1.0 - target))
    prior_mtd_level = table.integer("prior_mtd_level", None, minimum=1, maximum=n_levels)
    stop = table.raw("stop_probability", defaults.stop_probability)
    stop_probability = (None if stop is False
                        else table.number("stop_probability", defaults.stop_probability, minimum=0.5, below=1.0))
    settings = CrmSettings(
        target=target, model=model, skeleton=skeleton, skeleton_halfwidth=halfwidth, prior_mtd_level=prior_mtd_level,
        prior_sd=table.number("prior_sd", defaults.prior_sd, positive=True, maximum=10.0), intercept=intercept,
        stop_probability=stop_probability,
        coherent_escalation=table.boolean("coherent_escalation", defaults.coherent_escalation),
        # the adaptive weights read each DLT's day (the state's dlt_day or dlt_date)
        tite_weights=table.choice("tite_weights", ("linear", "adaptive"), defaults.tite_weights),
    )
    table.finish()
    return settings


def _parse_boin12(table: TomlTable) -> Boin12DecisionSettings:
    """``[decision.boin12]``: BOIN12's limits, utilities and cut-offs (additive utilities only)."""
    defaults = Boin12DecisionSettings()
    if not table.present:
        return defaults
    utilities = {name: table.number(name, getattr(defaults, name), minimum=0.0, maximum=100.0)
                 for name in ("utility_response_no_dlt", "utility_no_response_no_dlt", "utility_response_and_dlt",
                              "utility_dlt_no_response")}
    best, worst = utilities["utility_response_no_dlt"], utilities["utility_dlt_no_response"]
    for name in ("utility_no_response_no_dlt", "utility_response_and_dlt"):
        if not worst <= utilities[name] <= best or worst >= best:
            raise table.error(name, f"must lie between utility_dlt_no_response ({worst:g}) and utility_response_no_dlt "
                              f"({best:g}), the worst and the best outcome")
    if not math.isclose(best + worst, utilities["utility_no_response_no_dlt"] + utilities["utility_response_and_dlt"],
                        abs_tol=1e-9):
        raise table.error("utility_response_and_dlt", "the utilities must be additive: utility_response_no_dlt + "
                          "utility_dlt_no_response = utility_no_response_no_dlt + utility_response_and_dlt "
                          f"({best:g} + {worst:g} is not {utilities['utility_no_response_no_dlt']:g} + "
                          f"{utilities['utility_response_and_dlt']:g}), as the published 100, 0, 40, 60")
    settings = Boin12DecisionSettings(
        target_toxicity=table.number("target_toxicity", defaults.target_toxicity, minimum=0.05, maximum=0.6),
        efficacy_lower_limit=table.number("efficacy_lower_limit", defaults.efficacy_lower_limit, positive=True,
                                          below=1.0),
        **utilities,
        stay_patients=table.integer("stay_patients", defaults.stay_patients, minimum=1, maximum=100),
        toxicity_cutoff=table.number("toxicity_cutoff", defaults.toxicity_cutoff, minimum=0.5, below=1.0),
        futility_cutoff=table.number("futility_cutoff", defaults.futility_cutoff, minimum=0.5, below=1.0),
    )
    table.finish()
    return settings


def _parse_efficacy(table: TomlTable) -> EfficacySpec:
    months = table.numbers("months", (1.0, 3.0, 6.0))
    if not months or any(m <= 0 for m in months):
        raise table.error("months", "must be positive months since the first infusion")
    spec = EfficacySpec(
        months=tuple(sorted(months)),
        reference_sledai_baseline=table.integer("reference_sledai_baseline", 12, minimum=1, maximum=105),
    )
    table.finish()
    return spec


def _parse_eligibility(table: TomlTable) -> tuple[EligibilityCriterion, ...]:
    criteria = []
    seen: set[str] = set()
    for item in table.array_of_tables("criteria"):
        criterion_id = item.string("id", required=True)
        if criterion_id in seen:
            raise item.error("id", f"duplicate criterion id '{criterion_id}'")
        seen.add(criterion_id)
        kind = item.choice("kind", ("inclusion", "exclusion"), "inclusion")
        field_name = item.string("field")
        unit = item.string("unit")
        any_true = item.strings("any_true")
        classes = item.strings("any_of_classes")
        equals = item.raw("equals")
        if equals is not None and not isinstance(equals, bool | str):
            raise item.error("equals", "must be true, false or text")
        rule = dict(
            min=item.number("min"), max=item.number("max"),
            greater_than=item.number("greater_than"), less_than=item.number("less_than"),
        )
        applies_when = item.raw("applies_when")
        if applies_when is not None:
            condition = TomlTable(applies_when, item.key("applies_when"), item.source)
            condition.string("field", required=True)
            for bound in ("min", "max", "greater_than", "less_than"):
                condition.number(bound)
            condition.raw("equals")
            condition.finish()
        has_numeric = any(v is not None for v in rule.values())
        n_rules = sum([has_numeric, equals is not None, classes is not None, any_true is not None])
        if field_name is None and any_true is None and n_rules:
            raise item.error("field", "a criterion with a rule needs the field it tests")
        if (field_name is not None or any_true is not None) and n_rules != 1:
            raise item.error(None, "give exactly one rule: min/max/greater_than/less_than, equals, any_of_classes or any_true")
        if field_name in FIELD_UNITS and has_numeric:
            expected = FIELD_UNITS[field_name]
            if unit is None:
                raise item.error("unit", f"state the unit of {field_name} ('{expected}')")
            if unit != expected:
                raise item.error("unit", f"wrong unit '{unit}' for {field_name}; it is measured in '{expected}'")
        if rule["min"] is not None and rule["max"] is not None and rule["min"] > rule["max"]:
            raise item.error("min", f"min {rule['min']:g} is above max {rule['max']:g}")
        criteria.append(
            EligibilityCriterion(
                id=criterion_id, kind=kind, text=item.string("text", ""), field=field_name, unit=unit,
                equals=equals, any_of_classes=classes, any_true=any_true, applies_when=applies_when, **rule,
            )
        )
        item.finish()
    table.finish()
    return tuple(criteria)


def _parse_bvn(table: TomlTable, default: BivariateNormalPrior) -> BivariateNormalPrior:
    if not table.present:
        return default
    prior = BivariateNormalPrior(
        mean_log_a=table.number("mean_log_a", default.mean_log_a),
        mean_log_b=table.number("mean_log_b", default.mean_log_b),
        sd_log_a=table.number("sd_log_a", default.sd_log_a, positive=True),
        sd_log_b=table.number("sd_log_b", default.sd_log_b, positive=True),
        correlation=table.number("correlation", default.correlation, minimum=-0.999, maximum=0.999),
    )
    table.finish()
    return prior


#: How far the mixture weights of a spec may sum from 1 (they are written with a few decimals).
MIXTURE_WEIGHT_TOLERANCE = 1e-6


def _parse_prior(table: TomlTable, default: BivariateNormalPrior) -> BivariateNormalPrior | BivariateNormalMixture:
    """``[model.*.prior]``: one bivariate normal (its keys), or a mixture (``[[model.*.prior.components]]``,
    each with ``weight`` and the five keys; weights positive, summing to 1, at least two components)."""
    if "components" not in table.data:
        return _parse_bvn(table, default)
    others = sorted(set(table.data) - {"components"})
    if others:
        raise table.error(others[0], "a mixture prior ([[...prior.components]]) takes its keys in each component, "
                          "not in [...prior] itself: move this key into the components or remove the components")
    components = table.array_of_tables("components")
    if len(components) < 2:
        raise table.error("components", f"a mixture needs at least two components (got {len(components)}); write "
                          "one bivariate normal with the keys of [...prior] itself")
    weights, priors = [], []
    for component in components:
        weights.append(component.number("weight", required=True, positive=True, maximum=1.0))
        priors.append(BivariateNormalPrior(
            mean_log_a=component.number("mean_log_a", required=True),
            mean_log_b=component.number("mean_log_b", required=True),
            sd_log_a=component.number("sd_log_a", required=True, positive=True),
            sd_log_b=component.number("sd_log_b", required=True, positive=True),
            correlation=component.number("correlation", 0.0, minimum=-0.999, maximum=0.999),
        ))
        component.finish()
    if abs(sum(weights) - 1.0) > MIXTURE_WEIGHT_TOLERANCE:
        raise table.error("components", f"the components' weights must sum to 1 (got {' + '.join(f'{w:g}' for w in weights)}"
                          f" = {sum(weights):.6g})")
    table.finish()
    total = sum(weights)
    return BivariateNormalMixture(tuple(w / total for w in weights), tuple(priors))


def _parse_lognormal(table: TomlTable, default: LogNormalPrior) -> LogNormalPrior:
    if not table.present:
        return default
    prior = LogNormalPrior(
        median=table.number("median", default.median, positive=True),
        log_sd=table.number("log_sd", default.log_sd, positive=True),
    )
    table.finish()
    return prior


def _parse_toxicity(table: TomlTable, default: ToxicityModelSettings) -> ToxicityModelSettings:
    if not table.present:
        return default
    outcome = table.choice("outcome", ("crs_grade", "dlt", "crs_any"), default.outcome)
    heterogeneity = default.heterogeneity
    het = table.raw("heterogeneity")
    if isinstance(het, str):
        if het not in HETEROGENEITY_PRESETS:
            raise table.error("heterogeneity", f"unknown preset '{het}' (use {', '.join(HETEROGENEITY_PRESETS)})")
        heterogeneity = Heterogeneity.preset(het)
    elif isinstance(het, dict):
        het_table = TomlTable(het, table.key("heterogeneity"), table.source)
        heterogeneity = Heterogeneity(
            median_tau_log_a=het_table.number("median_tau_log_a", heterogeneity.median_tau_log_a, positive=True),
            median_tau_log_b=het_table.number("median_tau_log_b", heterogeneity.median_tau_log_b, positive=True),
            log_sd=het_table.number("log_sd", heterogeneity.log_sd, positive=True),
        )
        het_table.finish()
    elif het is not None:
        raise table.error("heterogeneity", "must be a preset name or a table")
    p_exch = table.raw("p_exchangeable", {})
    if not isinstance(p_exch, dict):
        raise table.error("p_exchangeable", "must be a table of study id = probability")
    for study, weight in p_exch.items():
        if isinstance(weight, bool) or not isinstance(weight, int | float) or not 0 <= weight <= 1:
            raise table.error(f"p_exchangeable.{study}", f"must be a probability between 0 and 1 (got {weight!r})")
    nex = table.table("nex_prior", required=False)
    settings = ToxicityModelSettings(
        outcome=outcome,
        max_grade=table.integer("max_grade", default.max_grade, minimum=1, maximum=5),
        dose_effect=table.boolean("dose_effect", default.dose_effect),
        prior=_parse_prior(table.table("prior", required=False), default.prior),
        grade_gap=_parse_lognormal(table.table("grade_gap", required=False), default.grade_gap),
        hierarchy=table.choice("hierarchy", ("auto", "none", "exchangeable", "exnex"), default.hierarchy),
        heterogeneity=heterogeneity,
        nex_prior=_parse_bvn(nex, default.prior) if nex.present else default.nex_prior,
        p_exchangeable={str(k): float(v) for k, v in p_exch.items()},
        default_p_exchangeable=table.number("default_p_exchangeable", default.default_p_exchangeable,
                                            minimum=0.0, maximum=1.0),
    )
    table.finish()
    return settings


def _parse_sledai(table: TomlTable, default: SledaiModelSettings) -> SledaiModelSettings:
    if not table.present:
        return default
    intercept = table.table("intercept", required=False)
    if intercept.present:
        intercept_prior = (intercept.number("mean", default.intercept[0]),
                           intercept.number("sd", default.intercept[1], positive=True))
        intercept.finish()
    else:
        intercept_prior = default.intercept
    settings = SledaiModelSettings(
        dose_response=table.choice("dose_response", ("log_linear", "emax"), default.dose_response),
        monotone=table.boolean("monotone", default.monotone),
        intercept=intercept_prior,
        slope_scale=table.number("slope_scale", default.slope_scale, positive=True),
        emax_scale=table.number("emax_scale", default.emax_scale, positive=True),
        ed50_relative=_parse_lognormal(table.table("ed50_relative", required=False), default.ed50_relative),
        onset_months=_parse_lognormal(table.table("onset_months", required=False), default.onset_months),
        patient_sd_scale=table.number("patient_sd_scale", default.patient_sd_scale, positive=True),
        dose_group_sd_scale=table.number("dose_group_sd_scale", default.dose_group_sd_scale, minimum=0.0),
        residual_sd=_parse_lognormal(table.table("residual_sd", required=False), default.residual_sd),
        study_sd=_parse_lognormal(table.table("study_sd", required=False), default.study_sd),
    )
    table.finish()
    return settings


def _parse_response(table: TomlTable, default: ResponseModelSettings) -> ResponseModelSettings:
    if not table.present:
        return default
    settings = ResponseModelSettings(prior=_parse_bvn(table.table("prior", required=False), default.prior))
    table.finish()
    return settings


def _parse_models(table: TomlTable) -> ModelSpecs:
    defaults = ModelSpecs()
    try:
        models = ModelSpecs(
            crs=_parse_toxicity(table.table("crs", required=False), defaults.crs),
            blrm=_parse_toxicity(table.table("blrm", required=False), defaults.blrm),
            sledai=_parse_sledai(table.table("sledai", required=False), defaults.sledai),
            response=_parse_response(table.table("response", required=False), defaults.response),
        )
    except ValueError as error:
        if isinstance(error, SpecError):
            raise
        raise table.error(None, str(error)) from None
    table.finish()
    return models


def _parse_fitting(table: TomlTable) -> FitSettings:
    defaults = FitSettings()
    if not table.present:
        return defaults
    gate_table = table.table("gate", required=False)
    gate = ConvergenceGate(
        rhat_max=gate_table.number("rhat_max", defaults.gate.rhat_max, minimum=1.0),
        ess_bulk_min=gate_table.number("ess_bulk_min", defaults.gate.ess_bulk_min, minimum=0.0),
        ess_tail_min=gate_table.number("ess_tail_min", defaults.gate.ess_tail_min, minimum=0.0),
        divergences_max=gate_table.integer("divergences_max", defaults.gate.divergences_max, minimum=0),
        bfmi_min=gate_table.number("bfmi_min", defaults.gate.bfmi_min, minimum=0.0),
    )
    gate_table.finish()
    settings = FitSettings(
        draws=table.integer("draws", defaults.draws, minimum=10, maximum=1_000_000),
        tune=table.integer("tune", defaults.tune, minimum=0, maximum=1_000_000),
        chains=table.integer("chains", defaults.chains, minimum=1, maximum=64),
        cores=table.integer("cores", defaults.cores, minimum=1, maximum=1024),
        target_accept=table.number("target_accept", defaults.target_accept, minimum=0.5, below=1.0),
        retry_target_accept=table.number("retry_target_accept", defaults.retry_target_accept, minimum=0.5, below=1.0),
        sampler=table.choice("sampler", ("pymc", "nutpie"), defaults.sampler),
        gate=gate,
    )
    table.finish()
    return settings


def _parse_observations(tables: list[TomlTable], trial_id: str, dosing: DosingSpec) -> tuple[DoseObservation, ...]:
    observations = []
    for table in tables:
        n_patients = table.integer("n_patients", required=True, minimum=1)
        n_dlt = table.integer("n_dlt", required=True, minimum=0)
        if n_dlt > n_patients:
            raise table.error("n_dlt", f"cannot exceed n_patients ({n_dlt} > {n_patients})")
        observation = DoseObservation(
            study_id=table.string("study_id", trial_id),
            dose=table.number("dose", required=True, positive=True),
            n_patients=n_patients,
            n_dlt=n_dlt,
        )
        table.finish()
        observations.append(observation)
    return tuple(observations)
