"""Fleets (SPEC §13): ``fleet:`` parsing, member lists, the wave split, a member's view of the pipeline.

Pure: nothing here reads a Variable or a connection. The same :func:`parse_members` checks inline
members at parse time and a Variable's value at run time, so both fail with the same messages.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from flamingock_provider.core.documents import Fields, describe
from flamingock_provider.core.model import REST, FleetConfig, Member, OnError, Pipeline, TargetConfig
from flamingock_provider.core.suggest import did_you_mean
from flamingock_provider.exceptions import ConfigurationError, UnknownMemberError

FLEET_KEYS = ("members", "members_from", "waves", "max_parallel", "on_error")
MEMBER_KEYS = ("name", "targets")
MEMBER_NAME = r"[a-z0-9_]+"
VARIABLE_NAME = r"[A-Za-z0-9._-]+"
PERCENT = re.compile(r"([0-9]+(?:\.[0-9]+)?)%")


def parse_fleet(fields: Fields, targets: Mapping[str, TargetConfig] | None) -> FleetConfig | None:
    """Read ``fleet:`` of pipeline.yaml (None when absent); problems go to ``fields.errors``."""
    data = fields.mapping("fleet")
    if data is None:
        return None
    sub = Fields(data, fields.errors, prefix="fleet.")
    sub.check_keys(FLEET_KEYS)
    members, variable = _member_source(sub, targets)
    return FleetConfig(
        members=members,
        variable=variable,
        waves=_waves(sub),
        max_parallel=_max_parallel(sub),
        on_error=sub.choice("on_error", OnError) or OnError.HALT,
    )


def _member_source(
    sub: Fields, targets: Mapping[str, TargetConfig] | None
) -> tuple[tuple[Member, ...] | None, str | None]:
    has_inline, has_variable = "members" in sub.data, "members_from" in sub.data
    if has_inline == has_variable:
        sub.errors.append(
            "field 'fleet': give exactly one of 'members' (the list) or 'members_from: {variable: NAME}', got "
            + ("both" if has_inline else "neither")
        )
        return None, None
    if has_variable:
        source = Fields(sub.mapping("members_from", required=True) or {}, sub.errors, prefix="fleet.members_from.")
        source.check_keys(("variable",))
        return None, source.text(
            "variable", required=True, pattern=VARIABLE_NAME, rule="use letters, digits, '.', '_', '-'"
        )
    problems: list[str] = []
    members = parse_members(sub.data["members"], targets, problems)
    sub.errors.extend(f"field 'fleet.members': {problem}" for problem in problems)
    return members, None


def parse_members(raw: Any, targets: Mapping[str, TargetConfig] | None, problems: list[str]) -> tuple[Member, ...]:
    """Check a member list (inline or a Variable's decoded JSON); append every problem to ``problems``."""
    if not isinstance(raw, list) or not raw:
        problems.append(f"must be a non-empty list of {{name, targets}}, got {describe(raw)}")
        return ()
    members: list[Member] = []
    seen: set[str] = set()
    for index, item in enumerate(raw):
        member = _member(index, item, targets, problems)
        if member is None:
            continue
        if member.name in seen:
            problems.append(f"[{index}]: member name {member.name!r} is used twice; names must be unique")
            continue
        seen.add(member.name)
        members.append(member)
    return tuple(members)


def _member(index: int, item: Any, targets: Mapping[str, TargetConfig] | None, problems: list[str]) -> Member | None:
    if not isinstance(item, Mapping):
        problems.append(f"[{index}]: must be a mapping {{name, targets}}, got {describe(item)}")
        return None
    before = len(problems)
    fields = Fields(item, problems, prefix=f"[{index}].")
    fields.check_keys(MEMBER_KEYS)
    name = fields.text("name", required=True, pattern=MEMBER_NAME, rule="member names match [a-z0-9_]+")
    mapped = fields.mapping("targets") or {}
    own = {
        key: spec
        for key, spec in ((k, _member_target(name or "?", k, v, targets, problems)) for k, v in mapped.items())
    }
    if len(problems) > before or name is None:
        return None
    return Member(name=name, targets={key: spec for key, spec in own.items() if spec is not None})


def _member_target(
    member: str, name: Any, spec: Any, targets: Mapping[str, TargetConfig] | None, problems: list[str]
) -> TargetConfig | None:
    """A member's own connection for the pipeline target ``name``: ``conn_id`` or ``{conn_id, database}``."""
    where = f"member {member!r}: target {name!r}"
    if targets is not None and name not in targets:
        hint = did_you_mean(str(name), targets) if targets else "; the pipeline has no 'targets:'"
        problems.append(f"{where} is not a pipeline target{hint}; a member maps the pipeline's own target names")
        return None
    base = targets[name] if targets is not None else TargetConfig(name=str(name), conn_id="")
    if isinstance(spec, str) and spec.strip():
        return replace(base, conn_id=spec)
    if isinstance(spec, Mapping) and set(spec) <= {"conn_id", "database"} and isinstance(spec.get("conn_id"), str):
        database = spec.get("database", base.database)
        return replace(base, conn_id=spec["conn_id"], database=database)
    problems.append(f"{where}: give a connection id or {{conn_id, database}}, got {describe(spec)}")
    return None


def _waves(sub: Fields) -> tuple[int | str, ...]:
    raw = sub.data.get("waves")
    if raw is None:
        return (REST,)
    if not isinstance(raw, list) or not raw:
        sub.error("waves", f'must be a non-empty list like [1, "25%", rest], got {describe(raw)}')
        return (REST,)
    waves: list[int | str] = []
    for index, entry in enumerate(raw):
        wave = _wave(entry)
        if wave is None:
            sub.error(
                "waves", f'entry {index + 1} {entry!r}: give a member count (>= 1), a percentage like "25%", or rest'
            )
        elif wave == REST and index != len(raw) - 1:
            sub.error("waves", f"entry {index + 1}: 'rest' takes every remaining member, so it must be the last entry")
        else:
            waves.append(wave)
    if not waves or waves[-1] != REST:
        waves.append(REST)  # members the declared waves leave over form one more wave
    return tuple(waves)


def _wave(entry: Any) -> int | str | None:
    if isinstance(entry, bool):
        return None
    if isinstance(entry, int):
        return entry if entry >= 1 else None
    if isinstance(entry, str):
        text = entry.strip()
        if text == REST:
            return REST
        match = PERCENT.fullmatch(text)
        if match and 0 < float(match.group(1)) <= 100:
            return text
    return None


def _max_parallel(sub: Fields) -> int:
    value = sub.data.get("max_parallel", 1)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        sub.error("max_parallel", f"must be a whole number >= 1, got {describe(value)}")
        return 1
    return value


def split_waves(members: Sequence[Member], waves: Sequence[int | str]) -> list[tuple[Member, ...]]:
    """Split ``members`` (in order) into one tuple per declared wave entry; a wave may be empty.

    An int takes that many members, ``"P%"`` takes P% of ALL members rounded up (at least 1), ``rest``
    takes what is left. Entries past the last member get empty waves, so wave numbers stay the
    declared ones whatever the member count.
    """
    total = len(members)
    out: list[tuple[Member, ...]] = []
    start = 0
    for wave in waves:
        if wave == REST:
            size = total - start
        elif isinstance(wave, int):
            size = wave
        else:
            size = max(1, math.ceil(float(str(wave).rstrip("%")) * total / 100))
        out.append(tuple(members[start : start + size]))
        start = min(total, start + size)
    return out


def members_from_json(raw: str | None, variable: str, targets: Mapping[str, TargetConfig]) -> tuple[Member, ...]:
    """Parse the Airflow Variable ``variable``'s value into members, or raise naming the Variable."""
    if raw is None:
        raise ConfigurationError(
            f"fleet.members_from: Airflow Variable {variable!r} is not set; set it to a JSON list like "
            f'[{{"name": "acme", "targets": {{"app": "acme_db"}}}}] (or AIRFLOW_VAR_{variable.upper()})'
        )
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as err:
        raise ConfigurationError(
            f"fleet.members_from: Airflow Variable {variable!r} is not JSON ({err.msg} at line {err.lineno}, column "
            f"{err.colno}); set it to a JSON list of {{name, targets}}"
        ) from err
    problems: list[str] = []
    members = parse_members(data, targets, problems)
    if problems:
        raise ConfigurationError(
            f"fleet.members_from: Airflow Variable {variable!r}: " + "; ".join(problems) + "; correct the Variable"
        )
    return members


def member_pipeline(pipeline: Pipeline, member: Member) -> Pipeline:
    """The pipeline as one member sees it: its own connections for the targets it names, its own audit key."""
    return replace(pipeline, targets={**pipeline.targets, **member.targets}, member=member.name)


def find_member(members: Sequence[Member], name: str) -> Member:
    """The member called ``name``, or a usage error listing the members."""
    for member in members:
        if member.name == name:
            return member
    names = [m.name for m in members]
    raise UnknownMemberError(name, names)
