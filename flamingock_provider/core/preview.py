"""What ``apply`` (or ``undo``) would do, shown before it runs: rendered payloads and data impact (SPEC §14).

- :func:`rendered` gives the exact statements or payloads a unit's apply sends, rendered with the
  run's params through the same template code apply uses (``plan --sql``).
- :func:`rollbacks` gives what an undo of a unit would send (``undo --plan``).
- :func:`impact` reads, never writes, what a pending rewrite or destructive unit would touch, within
  a time bound; None when it cannot tell (the target is down, the table does not exist yet, ...).

No driver imports: targets come from the caller's :data:`TargetFactory`.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from flamingock_provider.core.context import ChangeContext, StringRenderer
from flamingock_provider.core.model import AuditEntry, ChangeUnit, Pipeline
from flamingock_provider.core.targets import TargetFactory, TargetSession
from flamingock_provider.core.template import get_template

log = logging.getLogger("flamingock.preview")
IMPACT_TIMEOUT_S = 10.0  # per unit: plan must stay quick even on a big table


def _context(
    pipeline: Pipeline, unit: ChangeUnit, renderer: StringRenderer | None, session: Any = None
) -> ChangeContext:
    return ChangeContext(
        change=unit,
        pipeline=pipeline,
        run_id=None,
        execution_id="plan",
        renderer=renderer,
        target_session=session,
        log=log,
    )


def rendered(pipeline: Pipeline, unit: ChangeUnit, renderer: StringRenderer | None) -> Any:
    """The statements (SQL: one flat list) or payloads (one per step) apply would send; None for Python."""
    if unit.kind == "python":
        return None
    template = get_template(unit.template or "")
    ctx = _context(pipeline, unit, renderer)
    shown = [template.rendered(ctx, ctx.render(step.apply)) for step in unit.steps]
    if template.target_kind == "sql":
        return [statement for statements in shown for statement in statements]
    return shown


def rollbacks(pipeline: Pipeline, unit: ChangeUnit, renderer: StringRenderer | None, entry: AuditEntry | None) -> Any:
    """What undoing ``unit`` would send, newest step first: explicit rollbacks rendered, derived ones named."""
    if unit.kind == "python":
        return [f"rollback(ctx) of {unit.source_file}"] if unit.has_rollback else None
    template = get_template(unit.template or "")
    ctx = _context(pipeline, unit, renderer)
    states = entry.undo_state if entry is not None and isinstance(entry.undo_state, list) else []
    out: list[Any] = []
    for n in reversed(range(len(unit.steps))):
        step = unit.steps[n]
        if step.rollback is not None:
            out.append(template.rendered(ctx, ctx.render(step.rollback)))
        elif template.derives_rollback(step.apply):
            state = states[n] if n < len(states) else None
            out.append({"derived": f"{template.name} reverses its apply", "from_audit": _abridged(state)})
        else:
            out.append(None)
    if template.target_kind == "sql":
        return [s for part in out if isinstance(part, list) for s in part]
    return out


MAX_SHOWN_STATE = 2000  # characters of a recorded undo state shown by `undo --plan`


def _abridged(state: Any) -> Any:
    """The undo state apply recorded, or a note of its size when it is long (captured documents, objects)."""
    text = json.dumps(state, default=str)
    if len(text) <= MAX_SHOWN_STATE:
        return state
    return f"{len(text):,} characters recorded in its APPLIED entry (see `flamingock history --change ... --json`)"


def impact(
    pipeline: Pipeline,
    unit: ChangeUnit,
    targets: TargetFactory,
    renderer: StringRenderer | None,
    *,
    timeout: float = IMPACT_TIMEOUT_S,
) -> str | None:
    """What the unit's apply would touch, read within ``timeout`` seconds; None when it cannot tell."""
    config = pipeline.target_of(unit)
    if unit.kind == "python" or config is None:
        return None
    template = get_template(unit.template or "")
    deadline = time.monotonic() + timeout
    try:
        session: TargetSession = targets(config)
    except Exception as err:
        log.info("impact of %s: target %s not reachable: %s", unit.id, config.name, err)
        return None
    seen: list[str] = []
    try:
        ctx = _context(pipeline, unit, renderer, session)
        for step in unit.steps:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            found = template.impact(ctx, ctx.render(step.apply), timeout=left)
            if found:
                seen.append(found)
    except Exception as err:  # e.g. the table an earlier pending unit creates: nothing to count yet
        log.info("impact of %s: cannot tell: %s: %s", unit.id, type(err).__name__, err)
        return "; ".join(seen) or None
    finally:
        session.close()
    return "; ".join(seen) or None
