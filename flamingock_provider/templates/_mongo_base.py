"""The base of the ``mongo.*`` templates: one operation's run (:class:`Call`) and :class:`MongoTemplate`.

No pymongo import at module level (parse time imports this).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from flamingock_provider.core.context import ChangeContext
from flamingock_provider.core.suggest import did_you_mean
from flamingock_provider.core.template import Template
from flamingock_provider.exceptions import ConfigurationError
from flamingock_provider.templates._mongo_values import Problems, check_kinds

if TYPE_CHECKING:
    from pymongo.collection import Collection
    from pymongo.database import Database


# -- the target --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Call:
    """One operation's run: the unit's context, its database, the rendered payload and the session."""

    ctx: ChangeContext
    db: Database[Any]
    payload: Mapping[str, Any]
    session: Any  # the unit's ClientSession while transactional, else None

    def collection(self, key: str = "collection") -> Collection[Any]:
        return self.db[self.payload[key]]

    def exists(self, name: str) -> Mapping[str, Any] | None:
        """The collection's (or view's) listCollections entry, or None."""
        found = list(self.db.list_collections(filter={"name": name}, session=self.session))
        return found[0] if found else None

    def missing(self, what: str) -> ConfigurationError:
        return ConfigurationError(f"change {self.ctx.change.id!r}: {what} was not recorded, so it cannot be undone")


def _db(ctx: ChangeContext, template: str) -> Database[Any]:
    session = ctx.target_session
    if session is None or session.kind != "mongo":
        kind = session.kind if session else "none"
        raise ConfigurationError(
            f"change {ctx.change.id!r}: template {template!r} needs a mongo target, got {kind!r}; point "
            f"'target:' at a mongo connection"
        )
    return session.native  # type: ignore[no-any-return]


def _operations() -> dict[str, MongoTemplate]:
    """Every ``mongo.<op>`` by op: what an explicit ``rollback: {op: ...}`` may name."""
    # The registry lives in templates.mongo, which imports the operation modules (and so this one).
    from flamingock_provider.templates.mongo import TEMPLATES

    return TEMPLATES


# -- the template base -------------------------------------------------------------------------


class MongoTemplate(Template, ABC):
    """One ``mongo.<op>`` operation: its payload fields, apply and derived undo."""

    target_kind = "mongo"
    op: ClassVar[str] = ""
    fields: ClassVar[dict[str, str]] = {}  # payload key -> kind (see KINDS)
    required: ClassVar[frozenset[str]] = frozenset()
    derived: ClassVar[bool] = True

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.name = f"mongo.{cls.op}"
        cls.apply_keys = frozenset(cls.fields)
        cls.required_apply_keys = cls.required

    def validate(self, apply: Mapping[str, Any], rollback: Mapping[str, Any] | None) -> list[str]:
        problems = super().validate(apply, None) + self.check(apply, "apply")
        if rollback is not None:
            problems += _check_rollback(rollback)
        return problems

    def check(self, payload: Mapping[str, Any], where: str) -> Problems:
        """Check value kinds and the operation's own rules; ``where`` prefixes the field names."""
        return check_kinds(payload, self.fields, where) + self.rules(payload, where)

    def rules(self, payload: Mapping[str, Any], where: str) -> Problems:
        return []

    def derives_rollback(self, apply: Mapping[str, Any]) -> bool:
        return self.derived

    def apply(self, ctx: ChangeContext, payload: Mapping[str, Any]) -> Any:
        return self.run(Call(ctx, _db(ctx, self.name), payload, ctx.session))

    def rollback(
        self,
        ctx: ChangeContext,
        payload: Mapping[str, Any],
        rollback: Mapping[str, Any] | None,
        undo_state: Any,
    ) -> None:
        if rollback is None:
            self.undo(Call(ctx, _db(ctx, self.name), payload, ctx.session), undo_state)
            return
        op = _operations()[rollback["op"]]
        op.run(Call(ctx, _db(ctx, op.name), {k: v for k, v in rollback.items() if k != "op"}, ctx.session))

    # -- risk and impact (SPEC §14) --------------------------------------------------------------

    level: ClassVar[str] = "safe"
    effect: ClassVar[str] = "creates"

    def risk(self, apply: Mapping[str, Any], *, dialect: str | None = None) -> list[tuple[str, str]]:
        where = apply.get("collection") or apply.get("view")
        return [(self.level, f"{self.name} {where}: {self.effect}")]

    def impact(self, ctx: ChangeContext, payload: Mapping[str, Any], *, timeout: float) -> str | None:
        query = self.touched(payload)
        if query is None:
            return None
        name = str(payload.get("collection") or payload.get("view"))
        db = _db(ctx, self.name)
        n = db[name].count_documents(query, maxTimeMS=max(1, int(timeout * 1000)))
        shown = f"collection {name}: {n:,} documents" + ("" if query == {} else " match the filter")
        return shown + ("" if payload.get("many", True) or n <= 1 else "; one of them is changed (many: false)")

    def touched(self, payload: Mapping[str, Any]) -> dict[str, Any] | None:
        """The filter of the documents the operation changes, None when it changes none."""
        return None

    @abstractmethod
    def run(self, call: Call) -> Any:
        """Apply the operation; return the JSON-safe undo state."""

    def undo(self, call: Call, state: Any) -> None:
        raise ConfigurationError(
            f"change {call.ctx.change.id!r}: {self.name!r} cannot derive a rollback; give 'rollback: {{op: ..., ...}}'"
        )


def _check_rollback(rollback: Mapping[str, Any]) -> Problems:
    operations = _operations()
    op = rollback.get("op")
    if op not in operations:
        hint = did_you_mean(str(op), operations) if op is not None else f" (one of: {', '.join(operations)})"
        return [f"field 'rollback.op': name the mongo operation that undoes apply{hint}"]
    template = operations[op]
    rest = {k: v for k, v in rollback.items() if k != "op"}
    problems = [f"field 'rollback.{k}': required by {template.name!r}" for k in sorted(template.required - set(rest))]
    problems += [
        f"field 'rollback.{k}': unknown key for {template.name!r}{did_you_mean(str(k), template.fields)}"
        for k in rest
        if k not in template.fields
    ]
    return problems + template.check(rest, "rollback")
