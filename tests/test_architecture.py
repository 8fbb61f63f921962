"""The package's layers: imports point down only, no module reaches into another's privates.

The layers, lowest first (see docs/architecture.md). A module may import from its own layer
(without cycles) and from any layer below; never from a layer above. The package face
(``lupusbayes/__init__.py``) re-exports names lazily and is exempt; no other module imports it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "lupusbayes"

#: Layers, lowest first: top-level module or subpackage names.
LAYERS: list[set[str]] = [
    {"errors", "_io", "_version"},
    {"dosing", "endpoints"},
    {"cohort"},
    {"spec", "data"},
    {"eligibility", "summary"},
    {"models"},
    {"fitting"},
    {"decisions"},
    {"simulation"},
    {"report"},
    {"workflow", "demo", "calibration", "sensitivity", "prior_construction"},
    {"cli"},
]
LAYER_OF = {name: rank for rank, names in enumerate(LAYERS) for name in names}
#: Modules that must not import PyMC (or PyTensor) at any level: decisions run thousands of times.
NO_PYMC = ("decisions", "simulation")
#: Modules that may import the fitting layer only inside a function (never at import time): the
#: simulator's MCMC fallback, used only when a quadrature cannot resolve a posterior.
FITTING_ONLY_LAZILY = ("simulation",)
#: What ``spec`` may import inside the package (the issue's "dosing, errors and the like").
SPEC_MAY_IMPORT = {"spec", "dosing", "errors", "_io", "_version"}


def _modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if p.name != "__init__.py" or p.parent != PACKAGE)


def _unit(path: Path) -> str:
    """The layer unit of a file: its top-level module or subpackage name."""
    relative = path.relative_to(PACKAGE)
    return relative.parts[0].removesuffix(".py")


def _function_body_lines(tree: ast.Module) -> set[int]:
    """Line numbers inside function bodies (an import there runs only when the function does)."""
    lines = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            lines.update(range(node.body[0].lineno, (node.end_lineno or node.body[0].lineno) + 1))
    return lines


def _imports(path: Path) -> list[tuple[int, str, tuple[str, ...]]]:
    """(line, imported module, imported names) of every import in ``path``, at any depth."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = ".".join(("lupusbayes", *path.relative_to(PACKAGE).with_suffix("").parts))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name, ()) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:  # relative import
                base = package.split(".")[: -node.level]
                module = ".".join([*base, module]) if module else ".".join(base)
            found.append((node.lineno, module, tuple(alias.name for alias in node.names)))
    return found


def _target_unit(module: str, names: tuple[str, ...]) -> str | None:
    parts = module.split(".")
    if parts[0] != "lupusbayes":
        return None
    if len(parts) == 1:
        return names[0] if len(names) == 1 and names[0] in LAYER_OF else "lupusbayes"
    return parts[1]


def test_every_module_is_in_a_layer():
    units = {_unit(path) for path in _modules()}
    assert units <= set(LAYER_OF), f"modules without a layer: {sorted(units - set(LAYER_OF))}"


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_point_down_only(path):
    unit = _unit(path)
    in_functions = _function_body_lines(ast.parse(path.read_text(), filename=str(path)))
    problems = []
    for line, module, names in _imports(path):
        target = _target_unit(module, names)
        if target is None:
            if unit in NO_PYMC and module.split(".")[0] in {"pymc", "pytensor", "nutpie"}:
                problems.append(f"line {line}: {unit} must not import {module}")
            continue
        if target == "lupusbayes":
            problems.append(f"line {line}: imports the package face; import the defining module instead")
            continue
        if LAYER_OF[target] > LAYER_OF[unit]:
            problems.append(f"line {line}: {unit} (layer {LAYER_OF[unit]}) imports {module} (layer {LAYER_OF[target]})")
        if unit == "spec" and target not in SPEC_MAY_IMPORT:
            problems.append(f"line {line}: spec imports {module}")
        if unit in NO_PYMC and target == "fitting" and not (unit in FITTING_ONLY_LAZILY and line in in_functions):
            problems.append(f"line {line}: {unit} must not import the fitting layer"
                            + (" at import time" if unit in FITTING_ONLY_LAZILY else ""))
    assert not problems, "\n".join(problems)


#: Public, documented names of the standard library that begin with an underscore.
DOCUMENTED_UNDERSCORE_NAMES = {("os", "_exit")}

#: Private functions of a dependency, read on purpose: nutpie's model building, used by
#: ``fitting/nutpie_numba.py`` only with the pinned, tested nutpie release (any other version takes nutpie's
#: public compile), and tests/test_nutpie_numba.py checks its draws equal nutpie's own.
PINNED_PRIVATE_NAMES = {("nutpie_pymc", "_make_functions"), ("nutpie_pymc", "_prepare_dims_and_coords")}


def test_private_names_stay_in_their_module():
    """No ``from x import _private`` across modules, and no ``obj._private`` except on self / cls.

    Private modules of the package (``_io``, ``_math``, ``_version``) may be imported, but only
    their public names.
    """
    problems = []
    for path in _modules():
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("lupusbayes"):
                for alias in node.names:
                    if alias.name.startswith("_") and not alias.name.startswith("__"):
                        problems.append(f"{path.name}:{node.lineno}: imports private {node.module}.{alias.name}")
            if isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__"):
                owner = node.value
                if isinstance(owner, ast.Name) and (owner.id in {"self", "cls"}
                                                    or (owner.id, node.attr) in DOCUMENTED_UNDERSCORE_NAMES
                                                    or (owner.id, node.attr) in PINNED_PRIVATE_NAMES):
                    continue
                problems.append(f"{path.relative_to(PACKAGE)}:{node.lineno}: reads or writes .{node.attr} of another object")
    assert not problems, "\n".join(problems)


def test_importing_the_package_and_the_decision_layers_does_not_import_pymc():
    import subprocess
    import sys

    code = (
        "import sys, lupusbayes, lupusbayes.decisions, lupusbayes.simulation, lupusbayes.models.exact; "
        "print(sorted(m for m in ('pymc', 'pytensor', 'nutpie') if m in sys.modules))"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert run.stdout.strip() == "[]"


#: What a command-line module must not use: the command line parses, calls the API, prints and exits.
#: Model construction, the decision engine's internals and the report's assembly live below it, so a
#: Python user can do everything a command does (``lb.recommend``, ``lb.src_report``, ...).
CLI_MUST_NOT_IMPORT = {
    "lupusbayes.models": "model construction (use lupusbayes.workflow.model_for)",
    "lupusbayes.decisions.rules": "the rules' internals (use lupusbayes.workflow.Decision)",
    "lupusbayes.decisions.boin": "the BOIN tables (use lupusbayes.workflow.Decision)",
    "pymc": "PyMC", "pytensor": "PyTensor", "nutpie": "nutpie",
}
CLI_MUST_NOT_CALL = {"decide", "transition_table", "report_figures", "summarise_cohort_for_report"}


@pytest.mark.parametrize("path", sorted((PACKAGE / "cli").glob("*.py")), ids=lambda p: p.name)
def test_the_command_line_holds_no_logic_the_api_lacks(path):
    problems = []
    for line, module, names in _imports(path):
        for banned, why in CLI_MUST_NOT_IMPORT.items():
            if module == banned or module.startswith(banned + "."):
                problems.append(f"line {line}: imports {module}: {why}")
        for name in names:
            if name in CLI_MUST_NOT_CALL:
                problems.append(f"line {line}: imports {name} from {module}: call the workflow instead")
    assert not problems, f"{path.name}:\n" + "\n".join(problems)
