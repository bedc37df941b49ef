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

This module holds the collection, index and view operations and ``TEMPLATES``; the payload checks and
value conversions are in ``_mongo_values``, the base class in ``_mongo_base``, the document
operations in ``_mongo_documents``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flamingock_provider.exceptions import ConfigurationError
from flamingock_provider.templates._mongo_base import Call, MongoTemplate
from flamingock_provider.templates._mongo_documents import Delete, Insert, Update
from flamingock_provider.templates._mongo_values import (
    Problems,
    exactly_one,
    from_json,
    index_keys,
    index_name,
    payload_options,
    to_json,
)

INDEX_NOT_FOUND = 27

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
        options = payload_options(call.payload, COLLECTION_OPTIONS)
        call.db.create_collection(call.payload["collection"], session=call.session, **options)

    def undo(self, call: Call, state: Any) -> None:
        call.db.drop_collection(call.payload["collection"], session=call.session)


class DropCollection(MongoTemplate):
    op = "drop_collection"
    level = "destructive"
    effect = "drops the collection and every document in it"
    fields = {"collection": "name"}
    required = frozenset({"collection"})
    derived = False

    def run(self, call: Call) -> Any:
        call.db.drop_collection(call.payload["collection"], session=call.session)

    def touched(self, payload: Mapping[str, Any]) -> dict[str, Any] | None:
        return {}


class RenameCollection(MongoTemplate):
    op = "rename_collection"
    level = "destructive"
    effect = "renames the collection: readers of the old name break"
    fields = {"collection": "name", "to": "name"}
    required = frozenset({"collection", "to"})

    def run(self, call: Call) -> Any:
        call.collection().rename(call.payload["to"], session=call.session)

    def touched(self, payload: Mapping[str, Any]) -> dict[str, Any] | None:
        return {}

    def undo(self, call: Call, state: Any) -> None:
        if call.exists(call.payload["to"]) is not None:  # a failed apply may not have renamed anything
            call.collection("to").rename(call.payload["collection"], session=call.session)


class ModifyCollection(MongoTemplate):
    op = "modify_collection"
    level = "locking"
    effect = "collMod holds an exclusive lock and changes which writes the validator accepts"
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
        call.db.command("collMod", name, session=call.session, **payload_options(call.payload, VALIDATION))
        return to_json(previous)

    def undo(self, call: Call, state: Any) -> None:
        if state is not None:  # None: the collMod never ran
            call.db.command("collMod", call.payload["collection"], session=call.session, **from_json(state))


# -- indexes -----------------------------------------------------------------------------------

INDEX_OPTIONS = ("name", "unique", "sparse", "partial_filter_expression", "expire_after_seconds", "collation", "hidden")


class CreateIndex(MongoTemplate):
    op = "create_index"
    effect = "creates an index (built in the background)"
    fields = {"collection": "name", "keys": "keys", "name": "text", "unique": "bool", "sparse": "bool"}
    fields |= {"partial_filter_expression": "doc", "expire_after_seconds": "count", "collation": "doc"}
    fields |= {"hidden": "bool"}
    required = frozenset({"collection", "keys"})

    def run(self, call: Call) -> Any:
        options = payload_options(call.payload, INDEX_OPTIONS)
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
    level = "destructive"
    effect = "drops an index: queries that used it scan the collection"
    fields = {"collection": "name", "name": "text", "keys": "keys"}
    required = frozenset({"collection"})

    def rules(self, payload: Mapping[str, Any], where: str) -> Problems:
        return exactly_one(payload, ("name", "keys"), where)

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


# -- views -------------------------------------------------------------------------------------


class CreateView(MongoTemplate):
    op = "create_view"
    fields = {"view": "name", "view_on": "name", "pipeline": "stages", "collation": "doc"}
    required = frozenset({"view", "view_on", "pipeline"})

    def run(self, call: Call) -> Any:
        options = payload_options(call.payload, ("view_on", "pipeline", "collation"))
        call.db.create_collection(call.payload["view"], session=call.session, **options)

    def undo(self, call: Call, state: Any) -> None:
        call.db.drop_collection(call.payload["view"], session=call.session)


class DropView(MongoTemplate):
    op = "drop_view"
    level = "destructive"
    effect = "drops the view: its readers break"
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
