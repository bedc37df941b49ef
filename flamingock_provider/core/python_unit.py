"""Python change units: read their settings with ``ast`` at parse time, import them only to run.

Parsing never executes the file: ``ID = "x"`` and friends are read as literals, and ``apply`` /
``rollback`` are found as top-level ``def`` statements. The module is imported only when a unit runs.
"""

from __future__ import annotations

import ast
import difflib
import importlib.util
import re
import sys
import types
from dataclasses import dataclass, field
from typing import Any

from flamingock_provider.core.model import ChangeUnit, Pipeline, UnitKind
from flamingock_provider.exceptions import ConfigurationError

SETTINGS = (
    *("ID", "AUTHOR", "DESCRIPTION", "TARGET", "TRANSACTIONAL", "RECOVERY", "RUN_ALWAYS", "WHEN"),
    *("RISK", "ON_CHECK_FAIL"),
)
MODULE_PREFIX = "flamingock_units"


@dataclass
class PythonSource:
    """What a Python unit declares: literal settings (lower-cased keys) and its top-level functions."""

    parsed: bool = True  # False: a syntax error, nothing else was read
    settings: dict[str, Any] = field(default_factory=dict)
    invalid: set[str] = field(default_factory=set)  # settings already reported as not literal
    functions: dict[str, ast.FunctionDef | ast.AsyncFunctionDef] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def parse_python_source(text: str) -> PythonSource:
    """Read a unit's settings and functions from its source without executing it."""
    found = PythonSource()
    try:
        tree = ast.parse(text)
    except SyntaxError as err:
        found.errors.append(f"syntax error at line {err.lineno}: {err.msg}")
        found.parsed = False
        return found
    except (ValueError, RecursionError, MemoryError) as err:
        found.errors.append(f"cannot parse Python source: {err}")
        found.parsed = False
        return found
    for node in tree.body:
        _read_statement(node, found)
    _check_functions(found)
    return found


def _read_statement(node: ast.stmt, found: PythonSource) -> None:
    if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
        found.functions[node.name] = node
        return
    target, value = _assignment(node)
    if target is not None and target not in SETTINGS and target.isupper():
        close = difflib.get_close_matches(target, SETTINGS, n=1, cutoff=0.75)
        if close:  # a typo of a setting would silently not apply (e.g. ON_CHECK_FAILS, RISKS)
            found.warnings.append(
                f"field {target!r} (line {node.lineno}): not a unit setting (did you mean {close[0]!r}?)"
            )
    if target in SETTINGS and value is not None:
        try:
            found.settings[target.lower()] = ast.literal_eval(value)
        except (ValueError, TypeError, SyntaxError, RecursionError, MemoryError):
            found.invalid.add(target.lower())
            found.errors.append(
                f"field {target!r} (line {node.lineno}): not a literal; write a plain value such as "
                f'{target} = "..." (the file is not executed when the pipeline is parsed)'
            )


def _assignment(node: ast.stmt) -> tuple[str | None, ast.expr | None]:
    """Return (name, value) of ``NAME = value`` or ``NAME: type = value``, else (None, None)."""
    if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
        return node.targets[0].id, node.value
    if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
        return node.target.id, node.value
    return None, None


def _check_functions(found: PythonSource) -> None:
    if "apply" not in found.functions:
        found.errors.append("no top-level 'def apply(ctx)': a Python unit must define apply(ctx)")
    for name in ("apply", "rollback", "check"):
        func = found.functions.get(name)
        if func is None:
            continue
        if isinstance(func, ast.AsyncFunctionDef):
            found.errors.append(f"'async def {name}' (line {func.lineno}): use a plain 'def {name}(ctx)'")
        elif not _takes_one_argument(func.args):
            found.errors.append(f"'def {name}' (line {func.lineno}): must take one argument, 'def {name}(ctx)'")


def _takes_one_argument(args: ast.arguments) -> bool:
    positional = len(args.posonlyargs) + len(args.args)
    required = positional - len(args.defaults)
    return (positional >= 1 or args.vararg is not None) and required <= 1


def module_name(pipeline: Pipeline, unit: ChangeUnit) -> str:
    """Return the unique module name a unit is imported under."""
    return f"{MODULE_PREFIX}.{pipeline.id}.{re.sub(r'[^A-Za-z0-9_]', '_', unit.id)}"


def load_unit_module(pipeline: Pipeline, unit: ChangeUnit) -> types.ModuleType:
    """Import a Python unit's file by path, leaving no trace in ``sys.modules``."""
    if unit.kind is not UnitKind.PYTHON:
        raise ConfigurationError(f"change {unit.id!r} ({unit.source_file}) is not a Python unit")
    path = pipeline.path / unit.source_file
    name = module_name(pipeline, unit)
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ConfigurationError(f"cannot import change {unit.id!r}: {path} is not a loadable Python file")
    module = importlib.util.module_from_spec(spec)
    previous = sys.modules.get(name)
    # Registered while it executes (dataclasses and typing look the module up), removed afterwards so
    # two pipelines with the same unit id never share or shadow each other's module.
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as err:
        raise ConfigurationError(
            f"cannot import change {unit.id!r} from {path}: {type(err).__name__}: {err}; fix the file"
        ) from err
    finally:
        _restore(name, previous)
    if not callable(getattr(module, "apply", None)):
        raise ConfigurationError(f"change {unit.id!r} ({path}) has no callable apply(ctx); define one")
    return module


def _restore(name: str, previous: types.ModuleType | None) -> None:
    if previous is None:
        sys.modules.pop(name, None)
    else:
        sys.modules[name] = previous
