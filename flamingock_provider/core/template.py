"""The template contract and registry.

A template is a no-code operation on one kind of target (``sql``, ``mongo``, ``aws``, ``http``, ``kafka``).
It validates its payload at parse time (no I/O, no client imports at module level), applies it at
run time, and knows its rollback: given explicitly, derived from the payload, or from the
``undo_state`` its apply returned (what only apply could know: generated ids, previous objects).
Custom templates register in the entry-point group ``flamingock.templates`` as ``name = module:Class``.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from functools import cache
from importlib.metadata import entry_points
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, cast

from flamingock_provider.exceptions import ConfigurationError

if TYPE_CHECKING:
    from flamingock_provider.core.context import ChangeContext

ENTRY_POINT_GROUP = "flamingock.templates"

_MONGO = "flamingock_provider.templates.mongo"
_DYNAMO = "flamingock_provider.templates.dynamodb"
_S3 = "flamingock_provider.templates.s3"
_KAFKA = "flamingock_provider.templates.kafka"

# name -> "module:attribute"; modules are imported only when a unit uses one of their templates.
BUILTIN_TEMPLATES: dict[str, str] = {
    "sql": "flamingock_provider.templates.sql:SqlTemplate",
    "http.request": "flamingock_provider.templates.http:HttpRequestTemplate",
    **{
        f"mongo.{op}": f"{_MONGO}:TEMPLATES.{op}"
        for op in (
            "create_collection",
            "drop_collection",
            "rename_collection",
            "modify_collection",
            "create_index",
            "drop_index",
            "insert",
            "update",
            "delete",
            "create_view",
            "drop_view",
        )
    },
    **{
        f"dynamodb.{op}": f"{_DYNAMO}:TEMPLATES.{op}"
        for op in ("create_table", "delete_table", "update_table", "put_items", "delete_items", "update_ttl")
    },
    **{
        f"s3.{op}": f"{_S3}:TEMPLATES.{op}"
        for op in (
            "create_bucket",
            "delete_bucket",
            "put_object",
            "delete_object",
            "put_bucket_versioning",
            "put_bucket_lifecycle",
            "put_bucket_policy",
            "put_bucket_tagging",
        )
    },
    **{
        f"kafka.{op}": f"{_KAFKA}:TEMPLATES.{op}"
        for op in ("create_topic", "delete_topic", "update_topic_config", "add_partitions")
    },
}


class Template:
    """Base class of every template. Subclasses set the class attributes and override the methods."""

    name: ClassVar[str] = ""
    target_kind: ClassVar[str] = ""
    transactional: ClassVar[bool] = False  # the operation can run inside a target transaction
    apply_keys: ClassVar[frozenset[str]] = frozenset()
    required_apply_keys: ClassVar[frozenset[str]] = frozenset()
    rollback_keys: ClassVar[frozenset[str]] = frozenset()
    # what `validate` tells a user whose unit of this template has no rollback (not compensable)
    no_rollback_hint: ClassVar[str] = "add 'rollback:'"

    def validate(self, apply: Mapping[str, Any], rollback: Mapping[str, Any] | None) -> list[str]:
        """Return problems as ``"field 'x': ..."`` messages. The default checks keys only."""
        problems = [
            f"field 'apply.{k}': required by template {self.name!r}"
            for k in sorted(self.required_apply_keys - set(apply))
        ]
        problems += _unknown(apply, self.apply_keys, "apply")
        if rollback is not None:
            problems += _unknown(rollback, self.rollback_keys or self.apply_keys, "rollback")
        return problems

    def warnings(self, apply: Mapping[str, Any]) -> list[str]:
        """Return what `validate` should warn about a valid payload (e.g. data a rollback cannot restore)."""
        return []

    def derives_rollback(self, apply: Mapping[str, Any]) -> bool:
        """Return True when a rollback can be derived without an explicit ``rollback:``."""
        return False

    def is_transactional(self, apply: Mapping[str, Any]) -> bool:
        return self.transactional

    def risk(self, apply: Mapping[str, Any], *, dialect: str | None = None) -> list[tuple[str, str]]:
        """Return ``(level, reason)`` pairs for one apply payload (see core.risk); reasons name the operation."""
        return [("unknown", f"template {self.name!r} reports no risk of its own; declare 'risk:' in the unit")]

    def rendered(self, ctx: ChangeContext, payload: Mapping[str, Any]) -> Any:
        """What :meth:`apply` sends for ``payload`` (already Jinja-rendered): ``plan --sql`` shows it."""
        return dict(payload)

    def impact(self, ctx: ChangeContext, payload: Mapping[str, Any], *, timeout: float) -> str | None:
        """Read (never write), within ``timeout`` seconds, what ``payload`` would touch; None when unknown.

        ``payload`` is Jinja-rendered; ``ctx.target_session`` is the unit's target.

        The hook ``plan`` calls for a pending rewrite or destructive unit: the SQL, mongo, dynamodb and s3
        templates count rows, documents, items and objects; a template family that can tell (e.g. kafka
        topic partitions) overrides it.
        """
        return None

    def is_transactional_on(self, apply: Mapping[str, Any], session: Any, root: Path) -> bool:
        """Whether the payload runs in a transaction on this target session (e.g. no DDL on MySQL)."""
        return self.is_transactional(apply)

    def transaction_problems(self, apply: Mapping[str, Any], root: Path) -> list[str]:
        """Parse-time problems of running the payload inside a transaction (statements that cannot)."""
        return []

    def apply(self, ctx: ChangeContext, payload: Mapping[str, Any]) -> Any:
        """Apply the payload; return a JSON-safe undo state (or None)."""
        raise ConfigurationError(f"template {self.name!r} defines no apply; fix the template class")

    def rollback(
        self,
        ctx: ChangeContext,
        payload: Mapping[str, Any],
        rollback: Mapping[str, Any] | None,
        undo_state: Any,
    ) -> None:
        """Undo what :meth:`apply` did, from the explicit rollback or what apply recorded."""
        raise ConfigurationError(f"template {self.name!r} cannot derive a rollback; give 'rollback:' in the unit")


def _unknown(payload: Mapping[str, Any], allowed: frozenset[str], where: str) -> list[str]:
    from flamingock_provider.core.suggest import did_you_mean

    if not allowed:
        return []
    return [
        f"field '{where}.{key}': unknown key{did_you_mean(str(key), allowed)}" for key in payload if key not in allowed
    ]


@cache
def _entry_point_specs() -> dict[str, str]:
    return {ep.name: ep.value for ep in entry_points(group=ENTRY_POINT_GROUP)}


def template_names() -> list[str]:
    """Every known template name: built-in and registered through entry points."""
    return sorted({*BUILTIN_TEMPLATES, *_entry_point_specs()})


@cache
def get_template(name: str) -> Template:
    """Return the template instance for ``name``; KeyError when unknown."""
    spec = BUILTIN_TEMPLATES.get(name) or _entry_point_specs()[name]
    module_name, _, attr = spec.partition(":")
    obj: Any = importlib.import_module(module_name)
    for part in attr.split("."):
        obj = obj[part] if isinstance(obj, Mapping) else getattr(obj, part)
    return cast(Template, obj() if isinstance(obj, type) else obj)
