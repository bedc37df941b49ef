"""The fleet part of the Flamingock view (SPEC §13): a member-by-change matrix per fleet pipeline.

Read in one audit-store query for the whole fleet (``Workspace.observe_fleet``); a failed or blocked
cell carries the exact ``flamingock fix ... --member NAME`` command that resolves it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from jinja2 import Environment
from markupsafe import Markup

from flamingock_provider.commandline import decision_json

if TYPE_CHECKING:
    from flamingock_provider.core.workspace import Workspace


@dataclass(frozen=True)
class FleetCell:
    state: str | None
    action: str
    reason: str | None
    fix: str | None


@dataclass(frozen=True)
class FleetRow:
    member: str
    lock_owner: str | None
    cells: tuple[FleetCell, ...]

    @property
    def needs_attention(self) -> tuple[tuple[int, FleetCell], ...]:
        return tuple((i, c) for i, c in enumerate(self.cells) if c.action == "blocked")


@dataclass(frozen=True)
class FleetMatrix:
    changes: tuple[str, ...]
    rows: tuple[FleetRow, ...]
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "changes": list(self.changes),
            "members": [
                {"member": r.member, "lock": r.lock_owner, "cells": [c.__dict__ for c in r.cells]} for r in self.rows
            ],
            "error": self.error,
        }


def fleet_matrix(ws: Workspace) -> FleetMatrix:
    """Every member's state and next action per change; a member list that cannot be read is the error."""
    from flamingock_provider.fleet_commands import observe_matrix

    changes = tuple(u.id for u in ws.pipeline.units)
    try:
        members = ws.members()
    except Exception as err:  # e.g. the Variable is missing or invalid: say so, show the rest of the page
        return FleetMatrix(changes, (), f"{type(err).__name__}: {err}")
    rows = []
    for scoped, decisions, holder in observe_matrix(ws, members):
        member = scoped.pipeline.member or ""
        cells = tuple(_cell(decision_json(ws.pipeline_dir, d, member)) for d in decisions)
        rows.append(FleetRow(member, holder.owner if holder else None, cells))
    return FleetMatrix(changes, tuple(rows))


def _cell(data: dict[str, Any]) -> FleetCell:
    return FleetCell(data["state"], data["action"], data["reason"], data["fix"])


MATRIX = """<table data-role="fleet">
 <thead><tr><th>Member</th>{% for c in m.changes %}<th><code>{{ c }}</code></th>{% endfor %}<th>Lease</th></tr></thead>
 <tbody>
 {% for r in m.rows %}
  <tr data-member="{{ r.member }}"><td><strong>{{ r.member }}</strong></td>
  {% for cell in r.cells %}
   <td data-change="{{ m.changes[loop.index0] }}" title="{{ cell.reason or '' }}"><span class="state {{ state_class.get(cell.state or '', '') }}">{{ cell.state or '—' }}</span>
    <div class="action-{{ cell.action }}">{{ cell.action }}</div></td>
  {% endfor %}
   <td>{% if r.lock_owner %}<code>{{ r.lock_owner }}</code>{% else %}free{% endif %}</td></tr>
 {% endfor %}
 </tbody>
</table>
{% for r in m.rows %}{% for i, cell in r.needs_attention %}
 <div class="blocked" data-role="blocked" data-member="{{ r.member }}" data-unit="{{ m.changes[i] }}"><strong>{{ r.member }}</strong>:
  <strong>{{ m.changes[i] }}</strong> is blocked: {{ cell.reason }}<br>Resolve with: <code data-role="fix">{{ cell.fix }}</code></div>
{% endfor %}{% endfor %}
"""

_env = Environment(autoescape=True, trim_blocks=True, lstrip_blocks=True)
_matrix = _env.from_string(MATRIX)


def render_matrix(matrix: FleetMatrix, state_class: dict[str, str]) -> Markup:
    """The matrix as HTML to put inside a pipeline's section of the view."""
    if matrix.error:
        return Markup('<p class="errors" data-role="fleet-error">members not read: {}</p>').format(matrix.error)
    return Markup(_matrix.render(m=matrix, state_class=state_class))
