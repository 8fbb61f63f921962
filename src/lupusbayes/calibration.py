"""Design calibration: the operating characteristics over a grid of a spec's design parameters.

A design's thresholds and priors (EWOC's overdose limit, the DLT prior's spread, how much the
decisions borrow from co-data, ...) are chosen before a protocol is signed, by simulation. Given a
spec, its scenarios and a grid of values for some *calibratable* keys (:data:`CALIBRATABLE`),
:func:`calibrate` simulates the trial at every setting of the grid, on the same simulated patients
(the same plan, seed and chunk size: common random numbers), and reports per setting the operating
characteristics of :mod:`lupusbayes.simulation.metrics` and their paired differences from the
current spec (the reference setting, ``#0``), trial by trial, with the paired Monte Carlo standard
error. The registered rules of the trial (group size, sentinel, windows, no skipping, sample size,
the DLT definition and its intervals, the dose levels) are not calibratable: they define the trial
and the yardstick (the true MTD) the settings are compared on.

Each setting is the spec's TOML text with the key's value replaced in place (comments kept; a
key the spec does not set is added under its table), checked by parsing it back: the edited text
must read as the spec's TOML with that one value changed, else the spec is rewritten from its
parsed TOML (:func:`dump_toml`) and checked the same way. :meth:`CalibrationResult.spec_for` gives
a setting's spec text, ready to save as the calibrated design.

Examples
--------
>>> import lupusbayes as lb
>>> from lupusbayes.calibration import calibrate
>>> spec = lb.load_spec("kn5601")
>>> scenarios = '''
... [simulation]
... accrual_gap_days = 14
... max_patients = 12
... [[scenario]]
... name = "safe"
... p_crs_at_least = [[0.1, 0.0, 0.0], [0.1, 0.0, 0.0], [0.1, 0.0, 0.0], [0.1, 0.0, 0.0]]
... p_other_dlt = [0.02, 0.03, 0.04, 0.05]
... p_response = [0.3, 0.4, 0.5, 0.6]
... '''
>>> from lupusbayes.simulation import parse_scenarios
>>> result = calibrate(spec, parse_scenarios(scenarios, spec, source="safe"), {"decision.boin.target": [0.2, 0.25]},
...                    designs=("boin",), n_trials=40, seed=1)
>>> [setting.label for setting in result.settings]
['current', 'target=0.2', 'target=0.25']
"""

from __future__ import annotations

import itertools
import json
import math
import re
import time
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lupusbayes._io import check_output_path, staged_directory, write_text_atomic
from lupusbayes._version import __version__
from lupusbayes.decisions import design_for
from lupusbayes.errors import LupusBayesError
from lupusbayes.simulation import (
    DEFAULT_CHUNK_SIZE,
    ScenarioSet,
    SimulationPlan,
    SimulationResult,
    comparison_table,
    differences_table,
    load_scenarios,
    paired_differences,
    simulate,
)
from lupusbayes.spec import DESIGNS, HETEROGENEITY_PRESETS, BivariateNormalMixture, TrialSpec, parse_spec
from lupusbayes.workflow import simulation_priors

__all__ = ["calibrate", "CalibrationResult", "CalibrationSetting", "CalibrationError", "CALIBRATABLE",
           "CalibratableKey", "calibratable_key", "calibration_grid", "parse_vary", "setting_text", "dump_toml",
           "CORRECT_SELECTION", "REFERENCE_LABEL", "correct_selection", "find_setting"]

#: The label of the reference setting: the spec as it is.
REFERENCE_LABEL = "current"
#: The quantity the trade-off is read on, added to the operating characteristics (see :func:`correct_selection`).
CORRECT_SELECTION = "selected correctly"

_BAYESIAN = ("lupusbayes", "blrm_ewoc", "blrm_loss")


class CalibrationError(LupusBayesError):
    """A key that is not calibratable, a value that is not usable, a setting that does not exist."""


@dataclass(frozen=True)
class CalibratableKey:
    """A spec key (dotted TOML path; ``*`` stands for a study id) that a calibration may vary."""

    pattern: str
    #: the designs whose decisions read it
    designs: tuple[str, ...]
    meaning: str
    #: read only through the co-data priors (how the decisions borrow): needs co-data
    borrowing: bool = False
    #: read only without co-data (with co-data the prior is matched to the SLEDAI-2K model instead)
    without_codata: bool = False

    def matches(self, key: str) -> bool:
        pattern, parts = self.pattern.split("."), key.split(".")
        return len(pattern) == len(parts) and all((p == "*" and bool(q)) or p == q
                                                  for p, q in zip(pattern, parts, strict=True))


def _prior_keys(table: str, designs: tuple[str, ...], meaning: str, **flags) -> list[CalibratableKey]:
    return [CalibratableKey(f"{table}.{name}", designs, f"{meaning}: {name}", **flags)
            for name in ("mean_log_a", "sd_log_a", "mean_log_b", "sd_log_b", "correlation")]


#: Every calibratable key: design parameters the simulated decisions read, none of the trial's registered rules.
CALIBRATABLE: tuple[CalibratableKey, ...] = (
    CalibratableKey("decision.max_overdose_probability", ("lupusbayes", "blrm_ewoc"),
                    "EWOC's limit on the posterior probability of the overdose interval"),
    CalibratableKey("decision.efficacy.insufficient_rate", ("lupusbayes",),
                    "efficacy-driven escalation: the response rate below which efficacy is insufficient"),
    CalibratableKey("decision.efficacy.insufficient_probability", ("lupusbayes",),
                    "efficacy-driven escalation: how sure the posterior must be that efficacy is insufficient"),
    CalibratableKey("decision.efficacy.dlt_penalty", ("lupusbayes",),
                    "the final selection's utility: P(response) - dlt_penalty x P(DLT)"),
    CalibratableKey("decision.loss.losses", ("blrm_loss",), "blrm_loss: the loss of each interval of P(DLT)"),
    CalibratableKey("decision.loss.max_overdose_probability", ("blrm_loss",), "blrm_loss: its overdose limit"),
    CalibratableKey("decision.boin.target", ("boin", "tite_boin"), "BOIN's target DLT rate"),
    CalibratableKey("decision.boin.p_saf", ("boin", "tite_boin"), "BOIN's highest sub-therapeutic DLT rate"),
    CalibratableKey("decision.boin.p_tox", ("boin", "tite_boin"), "BOIN's lowest overly toxic DLT rate"),
    CalibratableKey("decision.boin.cutoff_eliminate", ("boin", "tite_boin"), "BOIN's elimination cutoff"),
    *(CalibratableKey(f"decision.crm.{name}", ("crm", "tite_crm"), f"the CRM's {meaning}")
      for name, meaning in (("target", "target DLT rate"), ("prior_sd", "prior SD on beta"),
                            ("skeleton_halfwidth", "skeleton: the indifference half-width"),
                            ("prior_mtd_level", "skeleton: the prior MTD level"),
                            ("stop_probability", "stopping threshold at the lowest level"))),
    CalibratableKey("decision.tite_boin.max_pending_fraction", ("tite_boin",),
                    "TITE-BOIN: the fraction of pending patients above which accrual is suspended"),
    *(CalibratableKey(f"decision.boin12.{name}", ("boin12",), f"BOIN12's {meaning}")
      for name, meaning in (("target_toxicity", "highest acceptable DLT rate (phi_T)"),
                            ("efficacy_lower_limit", "lowest acceptable response rate (phi_E)"),
                            ("stay_patients", "N* (stay if n >= N*)"), ("toxicity_cutoff", "toxicity elimination cutoff"),
                            ("futility_cutoff", "futility elimination cutoff"))),
    *_prior_keys("model.blrm.prior", _BAYESIAN, "the DLT prior (BLRM) at the reference dose"),
    *_prior_keys("model.blrm.nex_prior", _BAYESIAN, "the BLRM's non-exchangeable (NEX) prior", borrowing=True),
    CalibratableKey("model.blrm.heterogeneity", _BAYESIAN,
                    f"between-study heterogeneity preset ({', '.join(HETEROGENEITY_PRESETS)})", borrowing=True),
    *(CalibratableKey(f"model.blrm.heterogeneity.{name}", _BAYESIAN, f"between-study heterogeneity: {name}",
                      borrowing=True) for name in ("median_tau_log_a", "median_tau_log_b", "log_sd")),
    CalibratableKey("model.blrm.p_exchangeable.*", _BAYESIAN, "EXNEX: a study's probability of being exchangeable",
                    borrowing=True),
    CalibratableKey("model.blrm.default_p_exchangeable", _BAYESIAN, "EXNEX: the exchangeability of unlisted studies",
                    borrowing=True),
    *_prior_keys("model.response.prior", ("lupusbayes",), "the response prior (without co-data)", without_codata=True),
)

#: Tables of the trial's registered rules and definitions: never calibratable (the reason said when refused).
_REGISTERED = {"trial": "the trial's identity", "dosing": "the dose levels (registered)",
               "dlt": "the DLT definition and its intervals (the yardstick the settings are compared on)",
               "escalation": "the trial's registered rules (group size, sentinel, windows, skipping, sample size)",
               "efficacy": "the efficacy summaries", "eligibility": "the eligibility criteria",
               "fitting": "MCMC settings, not a design parameter", "observations": "data, not a design parameter"}


def _compact_list() -> str:
    """The calibratable keys in a few words: ``decision.boin.{target,p_saf,...}``."""
    groups: dict[str, list[str]] = {}
    for key in CALIBRATABLE:
        table, _, name = key.pattern.rpartition(".")
        groups.setdefault(table, []).append(name)
    parts = []
    for table, names in groups.items():
        parts.append(f"{table}.{names[0]}" if len(names) == 1 else f"{table}.{{{','.join(names)}}}")
    return ", ".join(parts).replace("*", "<study id>")


def calibratable_key(key: str) -> CalibratableKey:
    """The :class:`CalibratableKey` ``key`` (a dotted TOML path) is, or :class:`CalibrationError` naming it."""
    key = key.strip()
    found = next((entry for entry in CALIBRATABLE if entry.matches(key)), None)
    if found is not None:
        return found
    head = key.split(".")[0]
    why = _REGISTERED.get(head, "not a design parameter the simulation reads")
    raise CalibrationError(f"{key or '(empty)'}: not calibratable: {why}; calibratable keys: {_compact_list()}")


# ---- values from the command line ------------------------------------------------------------------


def _split_top_level(text: str) -> list[str]:
    """``0.2,0.3`` or ``[1, 0, 1, 2],[1, 0, 2, 2]``: split at commas outside brackets, braces and quotes."""
    parts, depth, quote, current = [], 0, "", []
    for character in text:
        if quote:
            if character == quote:
                quote = ""
        elif character in "\"'":
            quote = character
        elif character in "[{":
            depth += 1
        elif character in "]}":
            depth -= 1
        elif character == "," and depth == 0:
            parts.append("".join(current))
            current = []
            continue
        current.append(character)
    parts.append("".join(current))
    return [part.strip() for part in parts]


def _toml_value(text: str, key: str) -> Any:
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_\-]*", text):  # a bare word: text (a preset name)
            return text
        raise CalibrationError(f"--vary {key}: {text!r} is not a TOML value (a number, true/false, \"text\" or "
                               "[a, list])") from None


def parse_vary(text: str) -> tuple[str, list]:
    """``KEY=v1,v2,...`` (each value a TOML value; a bare word is text): the key, checked, and its values."""
    key, equals, values = text.partition("=")
    key = key.strip()
    if not equals or not key or not values.strip():
        raise CalibrationError(f"--vary {text!r}: write KEY=v1,v2,... (e.g. decision.max_overdose_probability=0.25,0.3)")
    calibratable_key(key)
    parsed = [_toml_value(part, key) for part in _split_top_level(values) if part]
    if not parsed:
        raise CalibrationError(f"--vary {key}: give at least one value")
    return key, parsed


# ---- TOML: one value changed, comments kept --------------------------------------------------------------


_BARE = re.compile(r"[A-Za-z0-9_\-]+")


def _key_text(key: str) -> str:
    return key if _BARE.fullmatch(key) else json.dumps(key, ensure_ascii=False)


def _inline(value: Any) -> str:
    """A TOML value on one line (inline tables for tables)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_inline(item) for item in value) + "]"
    if isinstance(value, Mapping):
        return "{ " + ", ".join(f"{_key_text(k)} = {_inline(v)}" for k, v in value.items()) + " }" if value else "{}"
    raise CalibrationError(f"cannot write {type(value).__name__} {value!r} as TOML")


def _array_of_tables(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(item, Mapping) for item in value)


def dump_toml(data: Mapping[str, Any]) -> str:
    """TOML text for parsed TOML ``data`` (tables as sections, arrays of tables as ``[[...]]``)."""
    lines: list[str] = []

    def table(path: tuple[str, ...], values: Mapping[str, Any], header: str | None) -> None:
        if header is not None:
            lines.extend(["", header])
        for key, value in values.items():
            if not isinstance(value, Mapping) and not _array_of_tables(value):
                lines.append(f"{_key_text(key)} = {_inline(value)}")
        for key, value in values.items():
            name = ".".join(_key_text(part) for part in (*path, key))
            if isinstance(value, Mapping):
                table((*path, key), value, f"[{name}]")
            elif _array_of_tables(value):
                for item in value:  # an item's own tables are written inline
                    lines.extend(["", f"[[{name}]]"])
                    lines.extend(f"{_key_text(k)} = {_inline(v)}" for k, v in item.items())

    table((), data, None)
    return "\n".join(lines).lstrip("\n") + "\n"


def _set_path(data: dict, parts: Sequence[str], value: Any) -> Any:
    """Set ``parts`` in ``data`` (tables made as needed; a heterogeneity preset name becomes its table).
    Returns the value it replaced (None if none)."""
    node = data
    for depth, part in enumerate(parts[:-1]):
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        elif isinstance(child, str) and part == "heterogeneity" and child in HETEROGENEITY_PRESETS:
            tau_a, tau_b = HETEROGENEITY_PRESETS[child]
            child = node[part] = {"median_tau_log_a": tau_a, "median_tau_log_b": tau_b}
        elif not isinstance(child, dict):
            raise CalibrationError(f"{'.'.join(parts)}: {'.'.join(parts[:depth + 1])} is {child!r} in the spec, "
                                   "not a table")
        node = child
    previous = node.get(parts[-1])
    node[parts[-1]] = value
    return previous


def _get_path(data: Mapping, parts: Sequence[str]) -> Any:
    node: Any = data
    for part in parts:
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node


_HEADER = re.compile(r"^\s*\[(?P<array>\[)?\s*(?P<name>[^\[\]]+?)\s*\](?(array)\])\s*(#.*)?$")
_ASSIGNMENT = re.compile(r"^(?P<head>\s*(?P<key>[A-Za-z0-9_\-]+|\"[^\"\\]*\")\s*=\s*)(?P<rest>.*)$")


def _path_of(name: str) -> tuple[str, ...] | None:
    parts = []
    for part in name.split("."):
        part = part.strip()
        if part.startswith('"') and part.endswith('"') and len(part) >= 2:
            part = part[1:-1]
        elif not _BARE.fullmatch(part):
            return None  # quoted keys with dots, literal-string keys: not edited in place
        parts.append(part)
    return tuple(parts)


def _scan_value(rest: str) -> tuple[str, str, int] | None:
    """Split a value's line into (value, comment) and the bracket depth left open (None: a multi-line string)."""
    depth, quote, index = 0, "", 0
    while index < len(rest):
        character = rest[index]
        if quote:
            if character == "\\" and quote == '"':
                index += 2
                continue
            if character == quote:
                quote = ""
        elif rest.startswith(('"""', "'''"), index):
            return None
        elif character in "\"'":
            quote = character
        elif character in "[{":
            depth += 1
        elif character in "]}":
            depth -= 1
        elif character == "#":
            return rest[:index].rstrip(), rest[index + 1:].strip(), depth
        index += 1
    return rest.rstrip(), "", depth


def _layout(lines: list[str]) -> tuple[dict, dict] | None:
    """Where each table's header is and each one-line ``key = value`` is (None: a layout not edited in place)."""
    headers: dict[tuple[str, ...], int] = {}
    values: dict[tuple[str, ...], int] = {}
    table: tuple[str, ...] | None = ()
    open_depth = 0
    for number, line in enumerate(lines):
        if open_depth > 0:  # inside a value spanning lines
            scanned = _scan_value(line)
            if scanned is None:
                return None
            open_depth += scanned[2]
            continue
        header = _HEADER.match(line)
        if header:
            path = _path_of(header["name"])
            table = None if header["array"] or path is None else path
            if table is not None:
                headers[table] = number
            continue
        assignment = _ASSIGNMENT.match(line)
        if not assignment:
            continue
        scanned = _scan_value(assignment["rest"])
        if scanned is None:
            return None
        open_depth = scanned[2]
        if table is not None and open_depth == 0:
            key = assignment["key"]
            values[(*table, key[1:-1] if key.startswith('"') else key)] = number
    return headers, values


def _edited_text(text: str, parts: tuple[str, ...], new: Mapping[str, Any]) -> str | None:
    """``text`` with the value at ``parts`` set as in ``new`` (parsed TOML), comments kept; None if not possible."""
    lines = text.split("\n")
    layout = _layout(lines)
    if layout is None:
        return None
    headers, values = layout
    for end in range(len(parts), 1, -1):  # the deepest one-line value holding the key (itself, or an inline table)
        if parts[:end] in values:
            number = values[parts[:end]]
            assignment = _ASSIGNMENT.match(lines[number])
            old, comment, _ = _scan_value(assignment["rest"])
            lines[number] = (f"{assignment['head']}{_inline(_get_path(new, parts[:end]))}  # calibrated (was {old})"
                             + (f"; {comment}" if comment else ""))
            return "\n".join(lines)
    line = f"{_key_text(parts[-1])} = {_inline(_get_path(new, parts))}  # calibrated (the default before)"
    table = parts[:-1]
    if table in headers:
        lines.insert(headers[table] + 1, line)
        return "\n".join(lines)
    section = f"[{'.'.join(_key_text(part) for part in table)}]"
    below = [number for path, number in headers.items() if path[:len(table)] == table]
    if below:  # a new table goes before its first sub-table ([decision] before [decision.loss])
        lines[min(below):min(below)] = [section, line, ""]
        return "\n".join(lines)
    for length in range(len(table) - 1, 0, -1):  # else after its family ([decision.efficacy] after [decision.boin])
        family = [number for path, number in headers.items() if path[:length] == table[:length]]
        if family:
            after = [number for number in headers.values() if number > max(family)]
            if not after:
                break
            header = start = min(after)
            while start > 0 and (not lines[start - 1].strip() or lines[start - 1].lstrip().startswith("#")):
                start -= 1
            # at the first blank line before the next table: after the comments that end the family's last value,
            # before those that introduce the next table
            at = next((number for number in range(start, header) if not lines[number].strip()), header)
            lines[at:at] = ["", section, line]
            return "\n".join(lines)
    return text.rstrip("\n") + f"\n\n{section}\n{line}\n"


def setting_text(spec: TrialSpec, changes: Mapping[str, Any]) -> str:
    """``spec``'s TOML text with each ``key = value`` of ``changes`` set (see the module docstring).

    Raises
    ------
    CalibrationError
        A key is not calibratable, or a value cannot be written where the spec holds another kind of value (a
        key of ``[model.blrm.prior]`` when the spec's DLT prior is a mixture).
    """
    source = spec.text.removeprefix("\ufeff")
    data = tomllib.loads(source)
    text: str | None = source
    for key, value in changes.items():
        calibratable_key(key)
        if key.startswith("model.blrm.prior.") and isinstance(spec.models.blrm.prior, BivariateNormalMixture):
            raise CalibrationError(f"{key}: the spec's DLT prior is a mixture ([[model.blrm.prior.components]]), which "
                                   "has no single value of this key; vary copies of the spec with the components changed")
        parts = tuple(key.split("."))
        _set_path(data, parts, value)
        if text is not None:
            text = _edited_text(text, parts, data)
    try:
        if text is not None and tomllib.loads(text) == data:
            return text
    except tomllib.TOMLDecodeError:
        pass
    dumped = ("# written by lupusbayes calibrate from the spec's parsed TOML (its comments could not be kept)\n"
              + dump_toml(data))
    if tomllib.loads(dumped) != data:  # pragma: no cover - a value dump_toml cannot write
        raise CalibrationError(f"{spec.source}: cannot write the spec with {', '.join(changes)} changed")
    return dumped


# ---- the grid -------------------------------------------------------------------------------------------


def _format(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_format(item) for item in value) + "]"
    return str(value)


def _short_names(keys: Sequence[str]) -> dict[str, str]:
    """Each key's shortest dotted suffix that no other key ends with (``max_overdose_probability``)."""
    names = {}
    for key in keys:
        parts = key.split(".")
        for length in range(1, len(parts) + 1):
            suffix = ".".join(parts[-length:])
            if not any(other != key and (other == suffix or other.endswith("." + suffix)) for other in keys):
                names[key] = suffix
                break
        else:
            names[key] = key
    return names


@dataclass(frozen=True)
class CalibrationSetting:
    """One point of the grid (``index`` 0: the current spec, the reference)."""

    index: int
    label: str
    #: key -> value this setting sets (empty for the current spec)
    changes: Mapping[str, Any]
    spec: TrialSpec = field(repr=False)
    #: the setting's design is the current spec's (a value equal to the spec's own): its results are the reference's
    same_as_current: bool = False

    @property
    def name(self) -> str:
        """``#k``: how tables and the figure name the setting."""
        return f"#{self.index}"

    def describe(self) -> dict:
        return {"index": self.index, "label": self.label, "changes": {k: v for k, v in self.changes.items()},
                "spec_sha256": self.spec.sha256, "same_as_current": self.same_as_current}


def _design_of(spec: TrialSpec) -> TrialSpec:
    return replace(spec, text="", source="")


def calibration_grid(spec: TrialSpec, vary: Mapping[str, Sequence]) -> tuple[CalibrationSetting, ...]:
    """The current spec (``#0``) and the Cartesian product of ``vary``'s values (``#1`` ...), each parsed as a spec.

    Raises
    ------
    CalibrationError
        A key that is not calibratable (naming it and the calibratable ones), no values, a value twice.
    SpecError
        A value the spec refuses (a probability above 1, a negative SD: naming the setting and the key).
    """
    if not vary:
        raise CalibrationError("give at least one key to vary (--vary KEY=v1,v2,...)")
    keys = list(vary)
    for key in keys:
        calibratable_key(key)
        values = list(vary[key])
        if not values:
            raise CalibrationError(f"--vary {key}: give at least one value")
        shown = [_format(value) for value in values]
        if len(set(shown)) != len(shown):
            raise CalibrationError(f"--vary {key}: a value is given twice ({', '.join(shown)})")
    short = _short_names(keys)
    reference = _design_of(spec)
    settings = [CalibrationSetting(0, REFERENCE_LABEL, {}, spec, True)]
    for index, values in enumerate(itertools.product(*(list(vary[key]) for key in keys)), start=1):
        changes = dict(zip(keys, values, strict=True))
        label = ", ".join(f"{short[key]}={_format(value)}" for key, value in changes.items())
        text = setting_text(spec, changes)
        setting_spec = parse_spec(text, source=f"{spec.source} with {label}")
        settings.append(CalibrationSetting(index, label, changes, setting_spec, _design_of(setting_spec) == reference))
    return tuple(settings)


def _check_keys_against(keys: Sequence[str], designs: Sequence[str], codata: bool) -> None:
    """Refuse, before any work, a grid that cannot change the simulated decisions."""
    for key in keys:
        entry = calibratable_key(key)
        if not set(entry.designs) & set(designs):
            raise CalibrationError(f"{key}: read only by {', '.join(entry.designs)}, and the calibration simulates "
                                   f"{', '.join(designs)} (add the design: --designs)")
        if entry.borrowing and not codata:
            raise CalibrationError(f"{key}: changes only how the decisions borrow from co-data; give the co-data "
                                   "(--codata FILE, e.g. kn5601)")
        if entry.without_codata and codata:
            raise CalibrationError(f"{key}: not read when the decisions borrow from co-data (the response prior is "
                                   "then matched to the SLEDAI-2K model fitted to the co-data)")


# ---- correct selection --------------------------------------------------------------------------------


def correct_selection(scenario, spec: TrialSpec, efficacious_response: float) -> tuple[np.ndarray, str]:
    """The levels whose selection is correct in ``scenario`` (a boolean per level and 'no dose' last), in words.

    The levels that are safe (true P(DLT) below the overdose threshold) and efficacious; when there
    is none and no level is safe, selecting no dose; when some are safe but none is efficacious, a
    safe level (at or below the true MTD).
    """
    n_levels = len(spec.dosing.levels)
    target = scenario.safe_and_efficacious(spec, efficacious_response)
    if target.any():
        return np.append(target, False), "selected a safe, efficacious dose"
    mtd = scenario.true_mtd(spec)
    if mtd is None:
        return np.append(np.zeros(n_levels, dtype=bool), True), "no dose selected (no level is safe)"
    return np.append(np.arange(n_levels) <= mtd, False), "selected a level at or below the true MTD (none efficacious)"


def _correct_flags(results, correct: np.ndarray) -> np.ndarray:
    order = np.argsort(results.trial, kind="stable")
    selected = np.asarray(results.selected_level)[order]
    return correct[np.where(selected >= 0, selected, correct.size - 1)]


# ---- the result --------------------------------------------------------------------------------------------


def _percent(quantity: str) -> bool:
    return quantity.startswith(("selected", "no dose", "stopped", "correct"))


@dataclass(frozen=True, eq=False)
class CalibrationResult:
    """What :func:`calibrate` returns: every setting's simulation, and the tidy summary.

    ``summary`` has a row per setting, design, scenario, quantity and level: the value and its MCSE,
    and the paired difference from the current spec (``#0``) with its paired MCSE (0 for the
    current spec itself); a column per varied key holds the setting's value.
    """

    spec: TrialSpec
    scenarios: ScenarioSet
    vary: Mapping[str, list]
    designs: tuple[str, ...]
    settings: tuple[CalibrationSetting, ...]
    results: Mapping[str, SimulationResult] = field(repr=False)
    summary: pd.DataFrame = field(repr=False)
    n_trials: int
    seed: int
    chunk_size: int
    elapsed_seconds: float
    chunks_resumed: int = 0
    #: scenario name -> what counts as a correct selection there (see :func:`correct_selection`)
    correct: Mapping[str, str] = field(default_factory=dict)

    def __repr__(self) -> str:
        return (f"CalibrationResult({len(self.settings)} settings x {len(self.scenarios.scenarios)} scenarios x "
                f"{len(self.designs)} designs, {self.n_trials} trials each, seed {self.seed})")

    # -- settings
    def setting(self, choice: int | str) -> CalibrationSetting:
        """A setting by number (``2`` or ``"#2"``), by label (``"max_overdose_probability=0.3"``) or ``"current"``."""
        return find_setting(self.settings, choice)

    def spec_for(self, choice: int | str) -> str:
        """The chosen setting's spec as TOML text, opening with a comment naming the calibration."""
        setting = self.setting(choice)
        grid = "; ".join(f"{key} = {', '.join(_format(v) for v in values)}" for key, values in self.vary.items())
        changed = "; ".join(f"{key} = {_format(value)}" for key, value in setting.changes.items()) or "nothing"
        header = [
            f"# Calibrated with lupusbayes {__version__} (`lupusbayes calibrate`): setting {setting.name} "
            f"({setting.label}) of the grid",
            f"#   {grid}",
            f"# on {self.spec.source} (sha256 {self.spec.sha256[:16]}), scenarios {self.scenarios.source}, "
            f"designs {', '.join(self.designs)},",
            f"# {self.n_trials} simulated trials per scenario, seed {self.seed}, chunk size {self.chunk_size}. "
            f"Changed: {changed}.",
            "",
        ]
        return "\n".join(header) + setting.spec.text

    def write_spec(self, path: str | Path, choice: int | str, *, overwrite: bool = False, mkdir: bool = False) -> Path:
        """Write :meth:`spec_for` to ``path`` atomically (an existing file only with ``overwrite``)."""
        path = check_output_path(path, overwrite=overwrite, mkdir=mkdir)
        return write_text_atomic(path, self.spec_for(choice), overwrite=overwrite)

    # -- tables
    def _frame(self, scenario: str, design: str | None) -> pd.DataFrame:
        design = design or self.designs[0]
        names = {setting.label: setting.name for setting in self.settings}
        part = self.summary[(self.summary["scenario"] == scenario) & (self.summary["design"] == design)]
        if part.empty:
            raise CalibrationError(f"no results for scenario {scenario!r} and design {design!r}")
        return part.assign(design=part["setting"].map(names))

    def table(self, scenario: str, design: str | None = None) -> pd.DataFrame:
        """One scenario's settings side by side: a row per quantity, ``value (MCSE)`` per setting (``#k``)."""
        return comparison_table(self._frame(scenario, design), scenario)

    def differences(self, scenario: str, design: str | None = None) -> pd.DataFrame:
        """Each setting minus the current spec, on the same simulated patients: ``difference (paired MCSE)``."""
        part = self._frame(scenario, design)
        part = part[part["index"] > 0].rename(columns={"mcse": "mcse_value", "mcse_paired": "mcse"})
        return differences_table(part, scenario)

    def tradeoff_table(self, scenario: str, design: str | None = None) -> pd.DataFrame:
        """A row per setting: correct selection, overdosing and their paired differences from the current spec."""
        part = self._frame(scenario, design)
        rows = []
        for setting in self.settings:
            mine = part[part["setting"] == setting.label].set_index(["quantity", "level"])
            row = {"": setting.name, "setting": setting.label}
            for quantity, short in ((CORRECT_SELECTION, "correct"), ("selected above the true MTD", "selected > MTD"),
                                    ("patients above the true MTD", "patients > MTD"),
                                    ("no dose selected", "no dose"), ("patients", "patients")):
                cell = mine.loc[(quantity, 0)]
                if _percent(quantity):
                    row[short] = f"{100 * cell['value']:5.1f}% ({100 * cell['mcse']:.1f})"
                    change = f"{100 * cell['difference']:+5.1f} ({100 * cell['mcse_paired']:.1f})"
                else:
                    row[short] = f"{cell['value']:5.2f} ({cell['mcse']:.2f})"
                    change = f"{cell['difference']:+5.2f} ({cell['mcse_paired']:.2f})"
                if short in ("correct", "patients > MTD"):
                    row[f"{short}: vs #0"] = "" if setting.index == 0 else change
            rows.append(row)
        return pd.DataFrame(rows)

    def text(self) -> str:
        """What ``calibration.txt`` holds: the settings, then per scenario and design the trade-off and the tables."""
        parts = [self._settings_text(), ""]
        for scenario in self.scenarios.scenarios:
            parts.append(_header(scenario, self.spec))
            parts.append(f"   correct selection: {self.correct[scenario.name]}")
            for design in self.designs:
                parts += ["", f"-- {design}: the trade-off (value (MCSE); vs #0: paired difference (paired MCSE))",
                          self.tradeoff_table(scenario.name, design).to_string(index=False), "",
                          f"-- {design}: operating characteristics per setting",
                          self.table(scenario.name, design).to_string(index=False)]
                differences = self.differences(scenario.name, design)
                if not differences.empty:
                    parts += ["", f"-- {design}: minus #0 (the current spec), on the same simulated patients "
                              "(paired MCSE)", differences.to_string(index=False)]
            parts.append("")
        return "\n".join(parts)

    def summary_text(self) -> str:
        """The settings and, per scenario and design, the trade-off table (what ``lupusbayes calibrate`` prints)."""
        parts = [self._settings_text(), ""]
        for scenario in self.scenarios.scenarios:
            parts.append(f"== {scenario.name} ==  (correct: {self.correct[scenario.name]})")
            for design in self.designs:
                if len(self.designs) > 1:
                    parts.append(f"-- {design}")
                parts.append(self.tradeoff_table(scenario.name, design).drop(columns="setting").to_string(index=False))
            parts.append("")
        return "\n".join(parts)

    def _settings_text(self) -> str:
        lines = [f"settings ({self.n_trials} simulated trials each, seed {self.seed}, the same simulated patients):"]
        for setting in self.settings:
            note = " (the spec as it is: the reference)" if setting.index == 0 else (
                " (= the current spec's design)" if setting.same_as_current else "")
            lines.append(f"  {setting.name}: {setting.label}{note}")
        return "\n".join(lines)

    @property
    def mcmc_fallback_decisions(self) -> int:
        """Decisions made from the MCMC fallback, in every setting simulated (see lupusbayes.simulation.fast)."""
        distinct = {id(result): result for result in self.results.values()}.values()
        return int(sum(int(result.trials["n_mcmc_decisions"].sum()) for result in distinct))

    # -- figure and files
    def tradeoff_figure(self):
        """Per scenario: correct selection against patients treated above the true MTD, a point per setting
        (and design), error bars +/- 2 MCSE. A matplotlib ``Figure``."""
        return _tradeoff_figure(self)

    def describe(self) -> dict:
        """What ``plan.json`` records (without the command)."""
        return {"spec": self.spec.source, "spec_sha256": self.spec.sha256, "scenarios": self.scenarios.source,
                "scenarios_sha256": self.scenarios.sha256, "scenario_names": list(self.scenarios.names()),
                "designs": list(self.designs), "n_trials": self.n_trials, "seed": self.seed,
                "chunk_size": self.chunk_size, "grid": {key: list(values) for key, values in self.vary.items()},
                "settings": [{**setting.describe(), "priors": _priors_of(self.results[setting.label])}
                             for setting in self.settings],
                "correct_selection": dict(self.correct),
                "elapsed_seconds": round(self.elapsed_seconds, 3), "chunks_resumed": self.chunks_resumed,
                "mcmc_fallback_decisions": self.mcmc_fallback_decisions,
                "lupusbayes_version": __version__}

    def save(self, folder: str | Path, *, overwrite: bool = False, mkdir: bool = False,
             command: str | None = None) -> Path:
        """Write ``calibration.csv``, ``calibration.txt``, ``tradeoff.png`` and ``plan.json`` into ``folder``,
        atomically (an existing folder only with ``overwrite``)."""
        import matplotlib.pyplot as plt

        manifest = {**self.describe(), "command": command}
        with staged_directory(Path(folder), overwrite=overwrite, mkdir=mkdir) as staging:
            self.summary.to_csv(staging / "calibration.csv", index=False)
            (staging / "calibration.txt").write_text(self.text(), encoding="utf-8")
            (staging / "plan.json").write_text(json.dumps(manifest, indent=2, default=_json_default), encoding="utf-8")
            figure = self.tradeoff_figure()
            try:
                figure.savefig(staging / "tradeoff.png", format="png", dpi=120)
            finally:
                plt.close(figure)
        return Path(folder)


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    return str(value)


def _priors_of(result: SimulationResult) -> dict | None:
    priors = result.plan.priors
    return None if priors is None else priors.describe()


def find_setting(settings: Sequence[CalibrationSetting], choice: int | str) -> CalibrationSetting:
    """The setting ``choice`` of a grid (:func:`calibration_grid`): its number (``2`` or ``"#2"``), its label or
    ``"current"``; else :class:`CalibrationError` listing the settings."""
    text = str(choice).strip()
    number = text.removeprefix("#")
    if number.isdigit():
        index = int(number)
        if index < len(settings):
            return settings[index]
    for setting in settings:
        if text in (setting.label, setting.name):
            return setting
    names = "; ".join(f"{s.name} {s.label}" for s in settings)
    raise CalibrationError(f"no setting {text!r} in the grid (settings: {names})")


def _header(scenario, spec: TrialSpec) -> str:
    p_dlt = scenario.p_dlt(spec)
    levels = "; ".join(f"level {level + 1}: P(DLT) {p_dlt[level]:.2f}, P(response) {scenario.p_response[level]:.2f}"
                       for level in range(len(p_dlt)))
    description = f"\n   {scenario.description}" if scenario.description else ""
    return f"== {scenario.name} =={description}\n   truth: {levels}"


# ---- the run ---------------------------------------------------------------------------------------------

Progress = Callable[[CalibrationSetting, int, int, int], None]  # (setting, chunks done, chunks in all, trials done)


def calibrate(spec: TrialSpec, scenarios: ScenarioSet | str | Path, vary: Mapping[str, Sequence], *, n_trials: int,
              seed: int, designs: Sequence[str] | None = None, codata: Sequence = (), workers: int = 1,
              dask_client=None, checkpoint: str | Path | None = None, cache=None,
              chunk_size: int = DEFAULT_CHUNK_SIZE, progress: Progress | None = None) -> CalibrationResult:
    """Simulate ``spec``'s trial at every setting of the grid ``vary`` (key -> values) and the current spec.

    Every setting runs the same :class:`~lupusbayes.simulation.SimulationPlan` (``scenarios``,
    ``designs`` (default: the spec's own design), ``n_trials``, ``seed``, ``chunk_size``) with its
    own spec, so every setting decides on the same simulated patients; the paired differences from
    the current spec are trial by trial. With ``codata`` (cohorts), the decisions borrow as the
    trial's will (:func:`lupusbayes.workflow.simulation_priors`); a setting that changes a
    ``model.`` key derives its own co-data priors (read from ``cache``, a
    :class:`~lupusbayes.fitting.fitcache.FitCache`, when made before), the others use the current
    spec's. ``checkpoint``: a folder holding one checkpoint per setting and plan
    (``setting-<spec sha256>-plan-<plan fingerprint>``, each the first 12 hex digits), so a rerun
    resumes, and runs with another seed or other designs keep their own chunks side by side. ``workers`` / ``dask_client`` as :func:`~lupusbayes.simulation.simulate`:
    the numbers do not depend on them.

    Raises
    ------
    CalibrationError
        A key that is not calibratable, or that no simulated design reads, before any work.
    """
    started = time.perf_counter()
    settings = calibration_grid(spec, vary)
    designs = tuple(designs) if designs else (spec.decision.design,)
    unknown = [name for name in designs if name not in DESIGNS]
    if unknown:
        raise CalibrationError(f"unknown design {', '.join(unknown)}; designs: {', '.join(DESIGNS)}")
    codata = list(codata)
    _check_keys_against(list(vary), designs, bool(codata))
    if not isinstance(scenarios, ScenarioSet):
        scenarios = load_scenarios(scenarios, spec)
    needs_priors = any(design_for(spec, name).needs_toxicity_model for name in designs)
    priors_by_model: dict[str, Any] = {}

    def priors_for(setting: CalibrationSetting):
        if not needs_priors:
            return None
        # the co-data fits read the spec's models (and fitting settings); the decision keys change neither
        models = repr((setting.spec.models, setting.spec.fitting))
        if models not in priors_by_model:
            reference = repr((spec.models, spec.fitting)) == models
            priors_by_model[models] = simulation_priors(spec if reference else setting.spec, codata, seed=seed,
                                                        error=CalibrationError, cache=cache)
        return priors_by_model[models]

    results: dict[str, SimulationResult] = {}
    resumed = 0
    for setting in settings:
        if setting.index > 0 and setting.same_as_current:
            results[setting.label] = results[REFERENCE_LABEL]
            continue
        try:
            plan = SimulationPlan(setting.spec, scenarios, designs, n_trials=n_trials, seed=seed,
                                  chunk_size=chunk_size, priors=priors_for(setting))
        except ValueError as error:
            raise CalibrationError(str(error)) from None
        folder = None if checkpoint is None else (
            Path(checkpoint) / f"setting-{setting.spec.sha256[:12]}-plan-{plan.fingerprint[:12]}")
        report = None if progress is None else (lambda done, total, trials, s=setting: progress(s, done, total, trials))
        results[setting.label] = simulate(plan, workers=workers, dask_client=dask_client, checkpoint=folder,
                                          progress=report)
        resumed += results[setting.label].chunks_resumed
    summary, correct = _summary(spec, scenarios, designs, settings, results, list(vary))
    return CalibrationResult(spec, scenarios, {key: list(values) for key, values in vary.items()}, designs, settings,
                             results, summary, n_trials, int(seed), chunk_size, time.perf_counter() - started, resumed,
                             correct)


def _effective_value(spec: TrialSpec, key: str) -> Any:
    """What ``spec`` reads for ``key`` (its default when the TOML does not set it), for the tables."""
    raw = _get_path(tomllib.loads(spec.text.removeprefix("\ufeff")), key.split("."))
    if raw is not None:
        return raw
    parts = key.split(".")
    if parts[:3] == ["model", "blrm", "p_exchangeable"]:
        return spec.models.blrm.exchangeability(parts[3])
    if parts == ["model", "blrm", "heterogeneity"]:
        found = spec.models.blrm.heterogeneity
        return next((name for name, (a, b) in HETEROGENEITY_PRESETS.items()
                     if (a, b) == (found.median_tau_log_a, found.median_tau_log_b)), "custom")
    node: Any = spec
    for part in parts:
        if part == "nex_prior":
            node = node.nex
            continue
        node = getattr(node, {"model": "models"}.get(part, part), None)
        if node is None:
            return None
    return list(node) if isinstance(node, tuple) else node


def _summary(spec, scenarios: ScenarioSet, designs, settings, results, keys) -> tuple[pd.DataFrame, dict[str, str]]:
    reference = results[REFERENCE_LABEL]
    trial_spec = reference.plan.trial_spec  # the yardstick (true MTD, targets): the same for every setting
    frames, correct_words = [], {}
    for scenario in scenarios.scenarios:
        correct, words = correct_selection(scenario, trial_spec, scenarios.efficacious_response)
        correct_words[scenario.name] = words
        for design in designs:
            per_setting = {setting.label: results[setting.label].results(scenario.name, design) for setting in settings}
            differences = paired_differences(per_setting, scenario, trial_spec, scenarios.efficacious_response,
                                             reference=REFERENCE_LABEL)
            differences = differences.rename(columns={"design": "setting", "mcse": "mcse_paired"})
            base = _correct_flags(per_setting[REFERENCE_LABEL], correct).astype(float)
            for setting in settings:
                summary = results[setting.label].summary
                part = summary[(summary["scenario"] == scenario.name) & (summary["design"] == design)].copy()
                flags = _correct_flags(per_setting[setting.label], correct).astype(float)
                n = flags.size
                d = flags - base
                part = pd.concat([part, pd.DataFrame([{
                    "scenario": scenario.name, "design": design, "quantity": CORRECT_SELECTION, "level": 0,
                    "value": float(flags.mean()), "mcse": float(np.sqrt(flags.mean() * (1 - flags.mean()) / n)),
                    "trials": n}])], ignore_index=True)
                part.insert(0, "setting", setting.label)
                part.insert(1, "index", setting.index)
                if setting.index == 0:
                    part["difference"], part["mcse_paired"], part["mcse_unpaired"] = 0.0, 0.0, 0.0
                else:
                    mine = differences[differences["setting"] == setting.label][
                        ["quantity", "level", "difference", "mcse_paired", "mcse_unpaired"]]
                    extra = pd.DataFrame([{"quantity": CORRECT_SELECTION, "level": 0, "difference": float(d.mean()),
                                           "mcse_paired": float(d.std(ddof=1) / np.sqrt(n)) if n > 1 else float("nan"),
                                           "mcse_unpaired": float(np.sqrt(flags.var(ddof=1) / n + base.var(ddof=1) / n))
                                           if n > 1 else float("nan")}])
                    part = part.merge(pd.concat([mine, extra], ignore_index=True), on=["quantity", "level"],
                                      how="left")
                frames.append(part)
    summary = pd.concat(frames, ignore_index=True)
    by_label = {setting.label: setting for setting in settings}
    for position, key in enumerate(keys):
        current = _effective_value(spec, key)
        values = [by_label[label].changes.get(key, current) for label in summary["setting"]]
        shown = ["(default)" if value is None else _format(value) if isinstance(value, list | tuple | bool) else value
                 for value in values]
        summary.insert(2 + position, key, shown)
    columns = ["setting", "index", *keys, "design", "scenario", "quantity", "level", "value", "mcse", "difference",
               "mcse_paired", "mcse_unpaired", "trials"]
    return summary[columns], correct_words


# ---- the figure -----------------------------------------------------------------------------------------


def _tradeoff_figure(result: CalibrationResult):
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    from lupusbayes.report.plots import literal_text, set_figure_title

    scenarios = result.scenarios.scenarios
    figure, axes = plt.subplots(1, len(scenarios), figsize=(3.9 * len(scenarios) + 0.6, 4.9), squeeze=False,
                                layout="constrained")
    colours = plt.get_cmap("tab10")(np.arange(max(len(result.designs), 1)))
    summary = result.summary
    for column, scenario in enumerate(scenarios):
        ax = axes[0, column]
        points = []  # (design number, setting, x, x error, y, y error): x, y the means, errors 2 MCSE
        for number, design in enumerate(result.designs):
            part = summary[(summary["scenario"] == scenario.name) & (summary["design"] == design)
                           & (summary["level"] == 0)]
            for setting in result.settings:
                rows = part[part["setting"] == setting.label].set_index("quantity")
                x, x_error = (float(v) for v in rows.loc["patients above the true MTD", ["value", "mcse"]])
                y, y_error = (100 * float(v) for v in rows.loc[CORRECT_SELECTION, ["value", "mcse"]])
                points.append((number, setting, x, 2 * np.nan_to_num(x_error), y, 2 * np.nan_to_num(y_error)))
        x_low = min(x - e for _, _, x, e, _, _ in points)
        x_high = max(1.0, *(x + e for _, _, x, e, _, _ in points))
        x_low = 0.0 if x_low < 0.5 * x_high else x_low - 0.1 * (x_high - x_low)  # from 0 unless far from it
        y_low, y_high = min(y - e for *_, y, e in points), max(y + e for *_, y, e in points)
        middle, half = (y_low + y_high) / 2, max((y_high - y_low) / 2, 5.0) * 1.15
        ax.set_xlim(x_low - 0.04 * (x_high - x_low), x_high + 0.15 * (x_high - x_low))
        ax.set_ylim(max(middle - half, -2.0), min(middle + half, 102.0))
        x_step, y_step = (x_high - x_low) / 40, 2 * half / 40  # points closer than this share one label
        labels: dict[tuple[int, int], list[str]] = {}
        for number, setting, x, x_error, y, y_error in points:
            current = setting.index == 0
            ax.errorbar(x, y, xerr=x_error, yerr=y_error, fmt="D" if current else "o", color=colours[number],
                        markersize=7 if current else 5, markeredgecolor="black" if current else colours[number],
                        elinewidth=0.8, capsize=2, zorder=3 if current else 2,
                        label=result.designs[number] if len(result.designs) > 1 and current else None)
        for number, design in enumerate(result.designs):
            mine = [point for point in points if point[0] == number]
            if len(mine) > 1 and len({(round(x, 9), round(y, 9)) for _, _, x, _, y, _ in mine}) == 1:
                labels.setdefault((round(mine[0][2] / x_step), round(mine[0][4] / y_step)), []).append(
                    f"{design}: every setting")  # a design the grid does not change
                continue
            for _, setting, x, _, y, _ in mine:
                labels.setdefault((round(x / x_step), round(y / y_step)), []).append(setting.name)
        for (x, y), names in labels.items():
            ax.annotate(" ".join(dict.fromkeys(names)), (x * x_step, y * y_step), xytext=(5, 3),
                        textcoords="offset points", fontsize=7)
        ax.set_title(scenario.name, fontsize=9)
        ax.set_xlabel("patients treated above the true MTD\n(mean per trial)", fontsize=8)
        ax.set_ylabel(f"correct selection (% of trials):\n{result.correct[scenario.name]}", fontsize=7)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
        ax.set_axisbelow(True)
    legend = "; ".join(f"{setting.name} {setting.label}" for setting in result.settings)
    if len(result.designs) > 1:
        handles, names = axes[0, 0].get_legend_handles_labels()
        figure.legend(handles, names, loc="outside right upper", fontsize=8, frameon=False)
    figure.supxlabel(_wrap(f"settings: {legend} (diamond: the current spec)", 28 * len(scenarios)), fontsize=7)
    set_figure_title(figure, f"{result.spec.trial.id}: calibration trade-off ({result.n_trials} trials per scenario "
                             f"and setting, seed {result.seed}; bars +/- 2 MCSE)", fontsize=9)
    return literal_text(figure)


def _wrap(text: str, width: int) -> str:
    import textwrap

    return "\n".join(textwrap.wrap(text, width=max(width, 40)))
