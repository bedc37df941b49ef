"""Snapshot a MongoDB target for a rollback rehearsal: collections, views, indexes, validators, counts.

The target's database only; ``system.*`` collections and the engine's marker collection are left out
(the rehearsal itself writes markers). Counts are exact (``count_documents``): a scratch copy is small.
"""

from __future__ import annotations

import json
from typing import Any

from flamingock_provider.core.rehearsal import Facts
from flamingock_provider.core.targets import TargetSession, marker_table

_IGNORED_OPTIONS = frozenset({"validator", "viewOn", "pipeline", "uuid"})


def snapshot_mongo(session: TargetSession) -> Facts:
    """Return ``{"collection c": {"index i": ..., "validator": ..., "documents": n}, "view v": {...}}``."""
    database = session.native
    facts: dict[str, dict[str, Any]] = {}
    for info in sorted(database.list_collections(), key=lambda i: str(i["name"])):
        name = str(info["name"])
        if name.startswith("system.") or name == marker_table(session.config):
            continue
        options = dict(info.get("options") or {})
        if info.get("type") == "view":
            facts[f"view {name}"] = {"on": options.get("viewOn"), "pipeline": _plain(options.get("pipeline", []))}
            continue
        facts[f"collection {name}"] = _collection(database[name], options)
    return facts


def _collection(collection: Any, options: dict[str, Any]) -> dict[str, Any]:
    facts: dict[str, Any] = {}
    for index in collection.list_indexes():
        described = {k: v for k, v in dict(index).items() if k not in ("v", "ns", "name")}
        facts[f"index {index['name']}"] = _plain(described)
    if options.get("validator"):
        facts["validator"] = _plain(options["validator"])
    for key, value in sorted(options.items()):
        if key not in _IGNORED_OPTIONS:
            facts[f"option {key}"] = _plain(value)
    facts["documents"] = int(collection.count_documents({}))
    return facts


def _plain(value: Any) -> Any:
    """A BSON value as plain JSON data (ordered keys kept as written: an index's key order matters)."""
    return json.loads(json.dumps(value, default=str))
