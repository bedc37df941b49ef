"""The transactional ``mongo.*`` document operations: ``insert``, ``update`` and ``delete``.

``update`` and ``delete`` capture the documents they change (within :data:`MAX_UNDO_DOCUMENTS` and
:data:`MAX_UNDO_BYTES`) so the derived rollback puts them back. No pymongo import at module level.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from flamingock_provider.core.context import ChangeContext
from flamingock_provider.exceptions import ConfigurationError
from flamingock_provider.templates._mongo_base import Call, MongoTemplate
from flamingock_provider.templates._mongo_values import (
    Problems,
    exactly_one,
    from_json,
    json_options,
    payload_options,
    to_bson,
    to_json,
)

MAX_UNDO_DOCUMENTS = 10_000  # captured for update/delete rollbacks: the audit entry must stay well under
MAX_UNDO_BYTES = 4 << 20  # MongoDB's 16 MiB document limit, even as extended JSON text


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


def _scope(apply: Mapping[str, Any]) -> str:
    which = "every document matching" if apply.get("many") else "the first document matching"
    return "every document (empty filter)" if apply.get("filter") == {} and apply.get("many") else f"{which} its filter"


def _put_back(call: Call, documents: Sequence[Any]) -> None:
    for doc in documents:
        call.collection().replace_one({"_id": doc["_id"]}, doc, upsert=True, session=call.session)


class Insert(MongoTemplate):
    op = "insert"
    effect = "inserts documents"
    transactional = True
    fields = {"collection": "name", "documents": "docs", "file": "text"}
    required = frozenset({"collection"})

    def rules(self, payload: Mapping[str, Any], where: str) -> Problems:
        return exactly_one(payload, ("documents", "file"), where)

    def run(self, call: Call) -> Any:
        result = call.collection().insert_many(self.documents(call), session=call.session)
        return {"ids": to_json(list(result.inserted_ids))}

    def documents(self, call: Call) -> list[Any]:
        if "documents" in call.payload:
            return list(to_bson(call.payload["documents"]))
        from bson import json_util

        name = call.payload["file"]
        text = (Path(call.ctx.pipeline.path) / name).read_text(encoding="utf-8")
        loaded = json_util.loads(str(call.ctx.render(text)), json_options=json_options())
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
    level = "rewrite"

    def risk(self, apply: Mapping[str, Any], *, dialect: str | None = None) -> list[tuple[str, str]]:
        name, scope = apply.get("collection"), _scope(apply)
        upsert = " (upsert: inserts when none matches)" if apply.get("upsert") else ""
        return [("rewrite", f"{self.name} {name}: updates {scope}{upsert}")]

    def touched(self, payload: Mapping[str, Any]) -> dict[str, Any] | None:
        return dict(to_bson(payload["filter"]))

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
            **payload_options(payload, ("array_filters", "collation")),
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

    def risk(self, apply: Mapping[str, Any], *, dialect: str | None = None) -> list[tuple[str, str]]:
        name, scope = apply.get("collection"), _scope(apply)
        if apply.get("filter") == {} and apply.get("many"):
            return [("destructive", f"{self.name} {name}: an empty filter deletes every document")]
        return [("rewrite", f"{self.name} {name}: deletes {scope}")]

    def touched(self, payload: Mapping[str, Any]) -> dict[str, Any] | None:
        return dict(to_bson(payload["filter"]))

    def run(self, call: Call) -> Any:
        coll = call.collection()
        query, many = to_bson(call.payload["filter"]), bool(call.payload.get("many", False))
        before = _find_before(call, query, many) if _captures(call.ctx) else []
        write = coll.delete_many if many else coll.delete_one
        write(_restrict(query, before), session=call.session, **payload_options(call.payload, ("collation",)))
        return {"before": to_json(before)}

    def undo(self, call: Call, state: Any) -> None:
        if not isinstance(state, Mapping):
            raise call.missing("the deleted documents")
        _put_back(call, from_json(state["before"]))
