"""The ``mongo.*`` templates: collections, indexes, views and documents on a ``mongo`` target.

===================  ===========================================  ===================================
operation            apply                                        derived rollback
===================  ===========================================  ===================================
create_collection    create (validator, capped, timeseries, ...)  drop it
drop_collection      drop it                                     none: give ``rollback:``
rename_collection    rename ``collection`` to ``to``              rename it back
modify_collection    ``collMod``; capture the previous options     restore them
create_index         create it                                    drop it
drop_index           capture its spec; drop it                    re-create it
insert (TX)          insert ``documents`` (or a ``file:``)         delete them by ``_id``
update (TX)          capture the matched documents; update         put them back (and drop an upsert)
delete (TX)          capture the matched documents; delete         insert them back
create_view          create it                                    drop it
drop_view            capture its definition; drop it              re-create it
===================  ===========================================  ===================================

Payload keys are snake_case (``validation_level``); values may use MongoDB extended JSON
(``{$oid: ...}``, ``{$date: ...}``). What apply captures is kept as canonical extended JSON, so the
undo state is JSON-safe in any audit store. An explicit ``rollback:`` names another operation:
``rollback: {op: create_collection, collection: x}``. Every call runs in ``ctx.session`` when the
unit is transactional; DDL never is. No pymongo import at module level (parse time imports this).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from flamingock_provider.core.context import ChangeContext
from flamingock_provider.core.suggest import did_you_mean
from flamingock_provider.core.template import Template
from flamingock_provider.exceptions import ConfigurationError

if TYPE_CHECKING:
    from pymongo.collection import Collection
    from pymongo.database import Database

MAX_UNDO_DOCUMENTS = 10_000  # captured for update/delete rollbacks: the audit entry must stay well under
MAX_UNDO_BYTES = 4 << 20  # MongoDB's 16 MiB document limit, even as extended JSON text
INDEX_NOT_FOUND = 27
LEVELS = ("off", "strict", "moderate")
ACTIONS = ("error", "warn")
# snake_case payload keys -> MongoDB option names
OPTION_NAMES = {
    "validation_level": "validationLevel",
    "validation_action": "validationAction",
    "expire_after_seconds": "expireAfterSeconds",
    "partial_filter_expression": "partialFilterExpression",
    "view_on": "viewOn",
}
Problems = list[str]


# -- payload checks (parse time, no I/O) ------------------------------------------------------


def _templated(value: Any) -> bool:
    return isinstance(value, str) and "{{" in value


def _is_keys(value: Any) -> bool:
    if isinstance(value, Mapping):
        return bool(value) and all(isinstance(k, str) for k in value)
    pairs = isinstance(value, list) and bool(value)
    return pairs and all(_key_pair(item) is not None for item in value)


def _is_update(value: Any) -> bool:
    if isinstance(value, list):
        return bool(value) and all(isinstance(stage, Mapping) for stage in value)
    return isinstance(value, Mapping) and bool(value) and all(str(k).startswith("$") for k in value)


KINDS: dict[str, tuple[str, Any]] = {
    "name": ("a collection name", lambda v: isinstance(v, str) and bool(v) and "$" not in v),
    "text": ("a non-empty string", lambda v: isinstance(v, str) and bool(v)),
    "doc": ("a mapping", lambda v: isinstance(v, Mapping)),
    "docs": (
        "a non-empty list of mappings",
        lambda v: isinstance(v, list) and v and all(isinstance(d, Mapping) for d in v),
    ),
    "list": ("a list", lambda v: isinstance(v, list)),
    "stages": (
        "a list of pipeline stages (mappings)",
        lambda v: isinstance(v, list) and all(isinstance(s, Mapping) for s in v),
    ),
    "bool": ("true or false", lambda v: isinstance(v, bool)),
    "count": ("a whole number >= 0", lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 0),
    "keys": ("index keys: {field: 1|-1|'text'|...} or [[field, direction], ...]", _is_keys),
    "update": ("update operators ({$set: ...}) or an update pipeline (a list of stages)", _is_update),
    "level": (f"one of {', '.join(LEVELS)}", lambda v: v in LEVELS),
    "action": (f"one of {', '.join(ACTIONS)}", lambda v: v in ACTIONS),
}


def _check_kinds(payload: Mapping[str, Any], fields: Mapping[str, str], where: str) -> Problems:
    problems = []
    for key, value in payload.items():
        kind = fields.get(key)
        if kind is None or _templated(value):
            continue
        expected, check = KINDS[kind]
        if not check(value):
            problems.append(f"field '{where}.{key}': expected {expected}, got {value!r}")
    return problems


def _exactly_one(payload: Mapping[str, Any], keys: Sequence[str], where: str) -> Problems:
    if sum(key in payload for key in keys) == 1:
        return []
    return [f"field '{where}': give exactly one of {' or '.join(repr(k) for k in keys)}"]


# -- values: YAML/JSON payloads <-> BSON, undo state <-> canonical extended JSON --------------


def to_bson(value: Any) -> Any:
    """Turn payload values into BSON values: extended JSON (``{$oid: ..}``) and YAML dates included."""
    from bson import json_util

    if isinstance(value, Mapping):
        converted = {str(k): to_bson(v) for k, v in value.items()}
        return json_util.object_hook(converted, _json_options())
    if isinstance(value, list):
        return [to_bson(v) for v in value]
    if isinstance(value, date) and not isinstance(value, datetime):
        return datetime(value.year, value.month, value.day, tzinfo=timezone.utc)
    return value


def to_json(value: Any) -> Any:
    """Return ``value`` as canonical extended JSON made of plain JSON types (exact BSON round trip)."""
    import json

    from bson import json_util

    return json.loads(json_util.dumps(value, json_options=json_util.CANONICAL_JSON_OPTIONS))


def from_json(value: Any) -> Any:
    import json

    from bson import json_util

    return json_util.loads(json.dumps(value), json_options=_json_options())


def _json_options() -> Any:
    from bson import json_util

    return json_util.JSONOptions(tz_aware=True, tzinfo=timezone.utc)


def _options(payload: Mapping[str, Any], keys: Sequence[str]) -> dict[str, Any]:
    return {OPTION_NAMES.get(k, k): to_bson(payload[k]) for k in keys if k in payload}


def _key_pair(item: Any) -> tuple[str, Any] | None:
    if isinstance(item, list | tuple) and len(item) == 2 and isinstance(item[0], str):
        return item[0], item[1]
    if isinstance(item, Mapping) and len(item) == 1:
        [(field, direction)] = item.items()
        return (field, direction) if isinstance(field, str) else None
    return None


def index_keys(value: Any) -> list[tuple[str, Any]]:
    if isinstance(value, Mapping):
        return [(str(k), v) for k, v in value.items()]
    return [pair for pair in (_key_pair(item) for item in value) if pair is not None]


def index_name(keys: Sequence[tuple[str, Any]]) -> str:
    """MongoDB's default index name: ``field_direction`` joined by ``_``."""
    return "_".join(f"{field}_{direction}" for field, direction in keys)


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


def _captures(ctx: ChangeContext) -> bool:
    """Capture documents for the derived rollback, unless every step gives its own rollback."""
    return not all(step.rollback is not None for step in ctx.change.steps)


def _find_before(call: Call, query: Mapping[str, Any], many: bool) -> list[Any]:
    """The documents an update or delete will change, within the undo-state budget."""
    from bson import encode

    coll = call.collection()
    found = list(coll.find(query, session=call.session, limit=MAX_UNDO_DOCUMENTS + 1 if many else 1))
    size = sum(len(encode(doc)) for doc in found)
    if len(found) > MAX_UNDO_DOCUMENTS or size > MAX_UNDO_BYTES:
        raise ConfigurationError(
            f"{coll.name}: the filter matches more than {MAX_UNDO_DOCUMENTS:,} documents or "
            f"{MAX_UNDO_BYTES >> 20} MiB, too much to keep for the derived rollback; narrow the filter, split "
            f"the change, or give an explicit 'rollback:'"
        )
    return found


def _restrict(query: Mapping[str, Any], before: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The query limited to the captured documents, so the rollback restores exactly what changed."""
    if not before:
        return dict(query)
    return {"$and": [dict(query), {"_id": {"$in": [doc["_id"] for doc in before]}}]}


def _put_back(call: Call, documents: Sequence[Any]) -> None:
    for doc in documents:
        call.collection().replace_one({"_id": doc["_id"]}, doc, upsert=True, session=call.session)


# -- the template base -------------------------------------------------------------------------


class MongoTemplate(Template):
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
        return _check_kinds(payload, self.fields, where) + self.rules(payload, where)

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
        op = TEMPLATES[rollback["op"]]
        op.run(Call(ctx, _db(ctx, op.name), {k: v for k, v in rollback.items() if k != "op"}, ctx.session))

    def run(self, call: Call) -> Any:
        """Apply the operation; return the JSON-safe undo state."""
        raise NotImplementedError

    def undo(self, call: Call, state: Any) -> None:
        raise ConfigurationError(
            f"change {call.ctx.change.id!r}: {self.name!r} cannot derive a rollback; give 'rollback: {{op: ..., ...}}'"
        )


def _check_rollback(rollback: Mapping[str, Any]) -> Problems:
    op = rollback.get("op")
    if op not in TEMPLATES:
        hint = did_you_mean(str(op), TEMPLATES) if op is not None else f" (one of: {', '.join(TEMPLATES)})"
        return [f"field 'rollback.op': name the mongo operation that undoes apply{hint}"]
    template = TEMPLATES[op]
    rest = {k: v for k, v in rollback.items() if k != "op"}
    problems = [f"field 'rollback.{k}': required by {template.name!r}" for k in sorted(template.required - set(rest))]
    problems += [
        f"field 'rollback.{k}': unknown key for {template.name!r}{did_you_mean(str(k), template.fields)}"
        for k in rest
        if k not in template.fields
    ]
    return problems + template.check(rest, "rollback")


# -- collections ---------------------------------------------------------------------------------

VALIDATION = ("validator", "validation_level", "validation_action")
COLLECTION_OPTIONS = (*VALIDATION, "capped", "size", "max", "collation", "timeseries", "expire_after_seconds")


class CreateCollection(MongoTemplate):
    op = "create_collection"
    fields = {"collection": "name", "validator": "doc", "validation_level": "level", "validation_action": "action"}
    fields |= {"capped": "bool", "size": "count", "max": "count", "collation": "doc", "timeseries": "doc"}
    fields |= {"expire_after_seconds": "count"}
    required = frozenset({"collection"})

    def run(self, call: Call) -> Any:
        options = _options(call.payload, COLLECTION_OPTIONS)
        call.db.create_collection(call.payload["collection"], session=call.session, **options)

    def undo(self, call: Call, state: Any) -> None:
        call.db.drop_collection(call.payload["collection"], session=call.session)


class DropCollection(MongoTemplate):
    op = "drop_collection"
    fields = {"collection": "name"}
    required = frozenset({"collection"})
    derived = False

    def run(self, call: Call) -> Any:
        call.db.drop_collection(call.payload["collection"], session=call.session)


class RenameCollection(MongoTemplate):
    op = "rename_collection"
    fields = {"collection": "name", "to": "name"}
    required = frozenset({"collection", "to"})

    def run(self, call: Call) -> Any:
        call.collection().rename(call.payload["to"], session=call.session)

    def undo(self, call: Call, state: Any) -> None:
        if call.exists(call.payload["to"]) is not None:  # a failed apply may not have renamed anything
            call.collection("to").rename(call.payload["collection"], session=call.session)


class ModifyCollection(MongoTemplate):
    op = "modify_collection"
    fields = {"collection": "name", "validator": "doc", "validation_level": "level", "validation_action": "action"}
    required = frozenset({"collection"})

    def rules(self, payload: Mapping[str, Any], where: str) -> Problems:
        if any(key in payload for key in VALIDATION):
            return []
        return [f"field '{where}': give at least one of {', '.join(VALIDATION)}"]

    def run(self, call: Call) -> Any:
        name = call.payload["collection"]
        info = call.exists(name)
        if info is None:
            raise ConfigurationError(f"collection {name!r} does not exist in {call.db.name!r}; create it first")
        options = info.get("options", {})
        previous = {
            "validator": options.get("validator", {}),
            "validationLevel": options.get("validationLevel", "strict"),
            "validationAction": options.get("validationAction", "error"),
        }
        call.db.command("collMod", name, session=call.session, **_options(call.payload, VALIDATION))
        return to_json(previous)

    def undo(self, call: Call, state: Any) -> None:
        if state is not None:  # None: the collMod never ran
            call.db.command("collMod", call.payload["collection"], session=call.session, **from_json(state))


# -- indexes -----------------------------------------------------------------------------------

INDEX_OPTIONS = ("name", "unique", "sparse", "partial_filter_expression", "expire_after_seconds", "collation", "hidden")


class CreateIndex(MongoTemplate):
    op = "create_index"
    fields = {"collection": "name", "keys": "keys", "name": "text", "unique": "bool", "sparse": "bool"}
    fields |= {"partial_filter_expression": "doc", "expire_after_seconds": "count", "collation": "doc"}
    fields |= {"hidden": "bool"}
    required = frozenset({"collection", "keys"})

    def run(self, call: Call) -> Any:
        options = _options(call.payload, INDEX_OPTIONS)
        name = call.collection().create_index(index_keys(call.payload["keys"]), session=call.session, **options)
        return {"name": name}

    def undo(self, call: Call, state: Any) -> None:
        from pymongo.errors import OperationFailure

        name = state["name"] if isinstance(state, Mapping) else call.payload.get("name")
        try:
            call.collection().drop_index(name or index_name(index_keys(call.payload["keys"])), session=call.session)
        except OperationFailure as err:
            if err.code != INDEX_NOT_FOUND:  # already gone: a failed apply never created it
                raise


class DropIndex(MongoTemplate):
    op = "drop_index"
    fields = {"collection": "name", "name": "text", "keys": "keys"}
    required = frozenset({"collection"})

    def rules(self, payload: Mapping[str, Any], where: str) -> Problems:
        return _exactly_one(payload, ("name", "keys"), where)

    def run(self, call: Call) -> Any:
        coll = call.collection()
        name = call.payload.get("name") or index_name(index_keys(call.payload["keys"]))
        spec = coll.index_information(session=call.session).get(name)
        if spec is None:
            raise ConfigurationError(f"index {name!r} not found on {coll.full_name!r}; check 'name' or 'keys'")
        coll.drop_index(name, session=call.session)
        options = {k: v for k, v in spec.items() if k not in ("key", "v", "ns")}
        return to_json({"keys": [list(pair) for pair in spec["key"]], "options": {"name": name, **options}})

    def undo(self, call: Call, state: Any) -> None:
        if state is None:
            raise call.missing("the dropped index's definition")
        spec = from_json(state)
        call.collection().create_index(index_keys(spec["keys"]), session=call.session, **spec["options"])


# -- documents (transactional) -----------------------------------------------------------------


class Insert(MongoTemplate):
    op = "insert"
    transactional = True
    fields = {"collection": "name", "documents": "docs", "file": "text"}
    required = frozenset({"collection"})

    def rules(self, payload: Mapping[str, Any], where: str) -> Problems:
        return _exactly_one(payload, ("documents", "file"), where)

    def run(self, call: Call) -> Any:
        result = call.collection().insert_many(self.documents(call), session=call.session)
        return {"ids": to_json(list(result.inserted_ids))}

    def documents(self, call: Call) -> list[Any]:
        if "documents" in call.payload:
            return list(to_bson(call.payload["documents"]))
        from bson import json_util

        name = call.payload["file"]
        text = (Path(call.ctx.pipeline.path) / name).read_text(encoding="utf-8")
        loaded = json_util.loads(str(call.ctx.render(text)), json_options=_json_options())
        docs = loaded if isinstance(loaded, list) else [loaded]
        if not docs or not all(isinstance(d, Mapping) for d in docs):
            raise ConfigurationError(f"{name}: expected a JSON array of documents (extended JSON allowed)")
        return docs

    def undo(self, call: Call, state: Any) -> None:
        if isinstance(state, Mapping):
            ids = from_json(state["ids"])
        else:  # a failed non-transactional insert: only explicit _ids are known
            ids = [doc["_id"] for doc in self.documents(call) if "_id" in doc]
        if ids:
            call.collection().delete_many({"_id": {"$in": ids}}, session=call.session)


class Update(MongoTemplate):
    op = "update"
    transactional = True
    fields = {"collection": "name", "filter": "doc", "update": "update", "many": "bool", "upsert": "bool"}
    fields |= {"array_filters": "list", "collation": "doc"}
    required = frozenset({"collection", "filter", "update"})

    def run(self, call: Call) -> Any:
        payload, coll = call.payload, call.collection()
        query, many = to_bson(payload["filter"]), bool(payload.get("many", False))
        before = _find_before(call, query, many) if _captures(call.ctx) else []
        write = coll.update_many if many else coll.update_one
        result = write(
            _restrict(query, before),
            to_bson(payload["update"]),
            upsert=bool(payload.get("upsert", False)),
            session=call.session,
            **_options(payload, ("array_filters", "collation")),
        )
        return {"before": to_json(before), "upserted_id": to_json(result.upserted_id)}

    def undo(self, call: Call, state: Any) -> None:
        if not isinstance(state, Mapping):
            raise call.missing("the updated documents")
        _put_back(call, from_json(state["before"]))
        upserted = from_json(state.get("upserted_id"))
        if upserted is not None:
            call.collection().delete_one({"_id": upserted}, session=call.session)


class Delete(MongoTemplate):
    op = "delete"
    transactional = True
    fields = {"collection": "name", "filter": "doc", "many": "bool", "collation": "doc"}
    required = frozenset({"collection", "filter"})

    def run(self, call: Call) -> Any:
        coll = call.collection()
        query, many = to_bson(call.payload["filter"]), bool(call.payload.get("many", False))
        before = _find_before(call, query, many) if _captures(call.ctx) else []
        write = coll.delete_many if many else coll.delete_one
        write(_restrict(query, before), session=call.session, **_options(call.payload, ("collation",)))
        return {"before": to_json(before)}

    def undo(self, call: Call, state: Any) -> None:
        if not isinstance(state, Mapping):
            raise call.missing("the deleted documents")
        _put_back(call, from_json(state["before"]))


# -- views -------------------------------------------------------------------------------------


class CreateView(MongoTemplate):
    op = "create_view"
    fields = {"view": "name", "view_on": "name", "pipeline": "stages", "collation": "doc"}
    required = frozenset({"view", "view_on", "pipeline"})

    def run(self, call: Call) -> Any:
        options = _options(call.payload, ("view_on", "pipeline", "collation"))
        call.db.create_collection(call.payload["view"], session=call.session, **options)

    def undo(self, call: Call, state: Any) -> None:
        call.db.drop_collection(call.payload["view"], session=call.session)


class DropView(MongoTemplate):
    op = "drop_view"
    fields = {"view": "name"}
    required = frozenset({"view"})

    def run(self, call: Call) -> Any:
        name = call.payload["view"]
        info = call.exists(name)
        if info is None or info.get("type") != "view":
            found = "nothing" if info is None else f"a {info.get('type', 'collection')}"
            raise ConfigurationError(
                f"{name!r} in {call.db.name!r} is {found}, not a view; use mongo.drop_collection for collections"
            )
        call.db.drop_collection(name, session=call.session)
        options = info.get("options", {})
        return to_json({k: options[k] for k in ("viewOn", "pipeline", "collation") if k in options})

    def undo(self, call: Call, state: Any) -> None:
        if state is None:
            raise call.missing("the dropped view's definition")
        call.db.create_collection(call.payload["view"], session=call.session, **from_json(state))


TEMPLATES: dict[str, MongoTemplate] = {
    cls.op: cls()
    for cls in (
        CreateCollection,
        DropCollection,
        RenameCollection,
        ModifyCollection,
        CreateIndex,
        DropIndex,
        Insert,
        Update,
        Delete,
        CreateView,
        DropView,
    )
}
