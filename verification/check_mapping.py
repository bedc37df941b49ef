"""Check that every model step in verification/README.md's mapping table is still where the table says.

Each row of the table between ``<!-- mapping:begin -->`` and ``<!-- mapping:end -->`` names a model
step, a file, a function (``name`` or ``Class.method``) and an anchor: a snippet of code that must
appear inside that function's source (found with :mod:`ast`, compared with whitespace collapsed).
A row may also give a ``legacy`` cell (``function: anchor``, ``other/file.py::function: anchor``, or
``-`` for "no earlier counterpart"), used only while the primary function or anchor does not exist yet (the engine rows point at names the lead is introducing on main; the lead removes the
legacy cells after merging). Exit 1 naming every row that no longer matches, with the lines found.

Stdlib only: ``python3 verification/check_mapping.py [--update] [README]``; ``--update`` rewrites the
table's line column with the lines found now.
"""

from __future__ import annotations

import ast
import re
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BEGIN, END = "<!-- mapping:begin -->", "<!-- mapping:end -->"


@dataclass(frozen=True)
class Row:
    step: str
    file: str
    function: str
    line: str  # as of the last --update; a moved anchor is reported, not an error
    anchor: str
    legacy: str  # "function: anchor" or ""


def _cells(line: str) -> list[str]:
    return [c.strip() for c in re.split(r"(?<!\\)\|", line.strip().strip("|"))]


def _code(cell: str) -> str:
    """The text of a cell's inline code (`...`), unescaped; the cell itself when it has none."""
    found = re.findall(r"`([^`]*)`", cell)
    return (" ".join(found) if found else cell).replace("\\|", "|")


def parse(readme: Path) -> list[Row]:
    text = readme.read_text(encoding="utf-8")
    if BEGIN not in text or END not in text:
        raise SystemExit(f"{readme}: no mapping table between {BEGIN} and {END}")
    rows = []
    for line in text.split(BEGIN, 1)[1].split(END, 1)[0].splitlines():
        if not line.startswith("|") or set(line) <= set("|- :"):
            continue
        cells = _cells(line)
        if cells[0].lower() == "model step":
            continue
        if len(cells) < 6:
            raise SystemExit(
                f"{readme}: mapping row needs 6 cells (step, file, function, line, anchor, legacy): {line}"
            )
        rows.append(Row(cells[0], _code(cells[1]), _code(cells[2]), cells[3], _code(cells[4]), cells[5]))
    return rows


def spans(path: Path) -> dict[str, tuple[int, int]]:
    """Qualified name -> (first line, last line) of every function and method in ``path``."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: dict[str, tuple[int, int]] = {}

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                name = f"{prefix}{child.name}"
                if not isinstance(child, ast.ClassDef):
                    found[name] = (child.lineno, child.end_lineno or child.lineno)
                visit(child, f"{name}.")

    visit(tree, "")
    return found


def _squash(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def locate(path: Path, function: str, anchor: str) -> tuple[int, int, list[int]] | None:
    """(start, end, lines holding the anchor) of ``function`` in ``path``; None if no such function."""
    span = spans(path).get(function)
    if span is None:
        return None
    lines = path.read_text(encoding="utf-8").splitlines()
    start, end = span
    want = _squash(anchor)
    hits = [n for n in range(start, end + 1) if want in _squash(lines[n - 1])]
    if not hits:  # an anchor may run over two lines
        hits = [n for n in range(start, end) if want in _squash(lines[n - 1] + " " + lines[n])]
    return start, end, hits


def check(rows: list[Row]) -> tuple[list[str], list[str], dict[str, str]]:
    report, errors = [], []
    lines_now: dict[str, str] = {}  # step -> current line(s)
    for row in rows:
        if row.file in ("", "-"):
            report.append(f"  -    {row.step}: no code ({row.function})")
            continue
        path = ROOT / row.file
        if not path.is_file():
            errors.append(f"{row.step}: {row.file} does not exist")
            continue
        found = locate(path, row.function, row.anchor)
        where = f"{row.file}:{row.function}"
        if (found is None or not found[2]) and row.legacy:
            if row.legacy.strip() == "-":  # the lead's engine brings it; this branch has no counterpart
                report.append(f"  PENDING {row.step}: {where} not in this code yet (no earlier counterpart)")
                continue
            function, _, anchor = _code(row.legacy).partition(": ")
            function = function.strip()
            legacy_path = path
            if "::" in function:  # the legacy code lives in another file
                other, _, function = function.partition("::")
                legacy_path = ROOT / other
            legacy = locate(legacy_path, function, anchor) if legacy_path.is_file() else None
            if legacy is not None and legacy[2]:
                lines = ",".join(map(str, legacy[2]))
                report.append(f"  PENDING {row.step}: {where} not in this code yet; legacy {function}() line {lines}")
                continue
            errors.append(f"{row.step}: neither {where} nor legacy {function}() with {anchor!r} found")
            continue
        if found is None:
            errors.append(f"{row.step}: no function {row.function} in {row.file}")
            continue
        start, end, hits = found
        if not hits:
            errors.append(f"{row.step}: {where} (lines {start}-{end}) no longer contains {row.anchor!r}")
            continue
        now = ",".join(map(str, hits))
        lines_now[row.step] = now
        moved = f" (moved: the table says {row.line})" if row.line != now else ""
        report.append(f"  ok   {row.step}: {row.file}:{now} ({row.function}){moved}")
    return report, errors, lines_now


def update(readme: Path, lines_now: dict[str, str]) -> None:
    """Rewrite the line column of the mapping table with the lines found now."""
    text = readme.read_text(encoding="utf-8")
    head, rest = text.split(BEGIN, 1)
    table, tail = rest.split(END, 1)
    out = []
    for line in table.splitlines():
        cells = _cells(line) if line.startswith("|") else []
        if len(cells) >= 6 and cells[0] in lines_now:
            parts = re.split(r"(?<!\\)\|", line)
            parts[4] = f" {lines_now[cells[0]]} "
            line = "|".join(parts)
        out.append(line)
    ending = "\n" if table.endswith("\n") else ""
    readme.write_text(head + BEGIN + "\n".join(out) + ending + END + tail, encoding="utf-8")


def main(argv: list[str]) -> int:
    args = [a for a in argv[1:] if a != "--update"]
    readme = Path(args[0]) if args else ROOT / "verification" / "README.md"
    rows = parse(readme)
    report, errors, lines_now = check(rows)
    if "--update" in argv:
        update(readme, lines_now)
    print(f"mapping: {len(rows)} model steps checked against the code")
    print("\n".join(report))
    if errors:
        print("\nthe model no longer matches the code; update verification/README.md (and the model):", file=sys.stderr)
        for error in errors:
            print(f"  FAIL {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
