"""The DynamoDB store: audit log and lease in two tables, through the Amazon provider's AwsBaseHook.

Audit table (``audit.table``), key ``pipeline`` (hash) + ``sk`` (range), three kinds of items::

    sk = "seq"                  the pipeline's entry counter (UpdateItem ADD: numbers never repeat; a
                                STARTED entry takes two, the second for the entry that ends it)
    sk = "log#<seq:020d>"       one item per audit entry, append-only
    sk = "latest#<change_id>"   a copy of the change's newest entry, written in the same transaction

``latest(pipeline)`` is one paginated Query over ``latest#``; ``history`` one over ``log#``. An item
holds the JSON of :meth:`AuditEntry.to_dict` (zlib-compressed, binary, past 64 KiB).

Lock table (``audit.lock_table``), key ``key``, with ``owner, token, acquired_at, expires_at`` (epoch
seconds on this host's clock: DynamoDB has none). Every lease write is one conditional UpdateItem and
a failed condition means "held" (None/False), never an error. ``acquire`` re-reads with
ConsistentRead and treats another owner or token as not acquired (moto's conditional writes are not
atomic under concurrency). A fenced append is a TransactWriteItems whose first action is a
ConditionCheck on the lock item; TX_SHARED stages the same actions into the unit's transaction.
"""

from __future__ import annotations

import json
import time
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime, timezone
from functools import partial
from typing import Any

from flamingock_provider.core.audit import by_member
from flamingock_provider.core.lease import Fence
from flamingock_provider.core.model import AuditEntry, LeaseInfo, State, TargetConfig
from flamingock_provider.core.targets import TargetSession
from flamingock_provider.exceptions import StoreError
from flamingock_provider.targets.aws import (
    AwsClients,
    AwsTargetSession,
    ConditionFailed,
    KeyAttr,
    WriteAction,
    check_table_name,
    dynamodb_call,
    ensure_table,
    send_transaction,
)

_LOG = "log#"
_LATEST = "latest#"
_FLEET = "member#"  # in the fleet's partition: the latest entry of each member's change (SPEC §13)
_KEYS_PER_BATCH = 100  # BatchGetItem's limit
_COUNTER = "seq"
_COMPRESS_OVER = 64 * 1024
_LOCK_NAMES = {"#owner": "owner", "#token": "token", "#acq": "acquired_at", "#exp": "expires_at"}


def _s(value: str) -> dict[str, str]:
    return {"S": value}


def _n(value: float) -> dict[str, str]:
    return {"N": repr(value) if isinstance(value, float) else str(value)}


def _names(expression: str) -> dict[str, str]:
    """Only the placeholders ``expression`` uses (DynamoDB rejects unused ones)."""
    return {k: v for k, v in _LOCK_NAMES.items() if k in expression}


def _utc(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, tz=timezone.utc)


class DynamoDBStore:
    """Audit store and lease backend on DynamoDB."""

    def __init__(
        self,
        client: Any,
        *,
        table: str = "flamingock_audit_log",
        lock_table: str = "flamingock_lock",
        conn_id: str | None = None,
        clients: AwsClients | None = None,
        hook: Any = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.client = client
        self.conn_id = conn_id
        self.hook = hook
        self.table = check_table_name(table, "audit.table")
        self.lock_table = check_table_name(lock_table, "the lock table")
        self._clock = clock
        self._clients = clients
        self._spare: dict[tuple[str, str], int] = {}  # (pipeline, change) -> the number its STARTED reserved
        ensure_table(client, self.table, KeyAttr("pipeline", "S"), KeyAttr("sk", "S"))
        ensure_table(client, self.lock_table, KeyAttr("key", "S"))

    def close(self) -> None:
        """Nothing to release: boto3 clients keep no server-side session."""

    # -- audit ------------------------------------------------------------------------------

    def append(self, entry: AuditEntry, *, fence: Fence | None = None, tx: TargetSession | None = None) -> AuditEntry:
        stored = replace(entry, seq=self._seq_for(entry))
        actions = self._entry_actions(stored)
        if tx is not None:
            check = partial(self._fence_check, fence) if fence is not None else None
            self._shared(tx).stage_audit(actions, check)
            return stored
        send_transaction(self.client, ([self._fence_check(fence)] if fence else []) + actions)
        return stored

    def _seq_for(self, entry: AuditEntry) -> int:
        """The entry's number. A STARTED entry takes two in one UpdateItem and keeps the second for the
        entry that ends the same change (APPLIED, FAILED, ...): one counter write per unit, not two.
        A reserved number never used (the process died) is a gap, which readers never rely on.
        """
        mine = (entry.audit_key, entry.change_id)
        if entry.state is State.STARTED:
            last = self._next_seq(entry.audit_key, 2)
            self._spare[mine] = last
            return last - 1
        spare = self._spare.pop(mine, None)
        return spare if spare is not None else self._next_seq(entry.audit_key, 1)

    def _next_seq(self, pipeline: str, count: int = 1) -> int:
        """Add ``count`` to the pipeline's counter; return the last number taken."""
        reply = dynamodb_call(
            "number an audit entry",
            lambda: self.client.update_item(
                TableName=self.table,
                Key={"pipeline": _s(pipeline), "sk": _s(_COUNTER)},
                UpdateExpression="ADD #seq :count",
                ExpressionAttributeNames={"#seq": "seq"},
                ExpressionAttributeValues={":count": _n(count)},
                ReturnValues="UPDATED_NEW",
            ),
        )
        return int(reply["Attributes"]["seq"]["N"])

    def _entry_actions(self, entry: AuditEntry) -> list[WriteAction]:
        seq = entry.seq or 0
        log_item = {**_entry_item(entry), "sk": _s(f"{_LOG}{seq:020d}")}
        latest_item = {**_entry_item(entry), "sk": _s(f"{_LATEST}{entry.change_id}")}
        where = f"{self.table}/{entry.audit_key}"
        log = {
            "Put": {
                "TableName": self.table,
                "Item": log_item,
                "ConditionExpression": "attribute_not_exists(#sk)",
                "ExpressionAttributeNames": {"#sk": "sk"},
            }
        }
        latest = {
            "Put": {
                "TableName": self.table,
                "Item": latest_item,
                "ConditionExpression": "attribute_not_exists(#seq) OR #seq < :seq",
                "ExpressionAttributeNames": {"#seq": "seq"},
                "ExpressionAttributeValues": {":seq": _n(seq)},
            }
        }
        actions = [
            WriteAction(log, f"{where}/{_LOG}{seq}", f"audit entry {seq} of {entry.change_id!r}"),
            WriteAction(latest, f"{where}/{_LATEST}{entry.change_id}", f"latest entry of {entry.change_id!r}", True),
        ]
        if entry.member is not None:
            actions.append(self._fleet_copy(entry, latest))
        return actions

    def _fleet_copy(self, entry: AuditEntry, latest: Mapping[str, Any]) -> WriteAction:
        """A member's latest entry, copied into the fleet's own partition: the whole fleet is one Query."""
        sk = f"{_FLEET}{entry.member}#{entry.change_id}"
        item = {**latest["Put"]["Item"], "pipeline": _s(entry.pipeline), "sk": _s(sk)}
        copy = {"Put": {**latest["Put"], "Item": item}}
        return WriteAction(copy, f"{self.table}/{entry.pipeline}/{sk}", f"fleet copy of {entry.change_id!r}", True)

    def _shared(self, tx: TargetSession) -> AwsTargetSession:
        if not isinstance(tx, AwsTargetSession):
            raise StoreError(
                f"the DynamoDB audit store cannot join a {getattr(tx, 'kind', type(tx).__name__)!r} transaction; "
                f"this is a bug in the engine"
            )
        return tx

    def latest(self, pipeline: str) -> Mapping[str, AuditEntry]:
        return {e.change_id: e for e in self._query(pipeline, _LATEST)}

    def latest_members(self, pipeline: str, members: Sequence[str]) -> Mapping[str, Mapping[str, AuditEntry]]:
        return by_member(pipeline, members, self._query(pipeline, _FLEET))

    def history(self, pipeline: str, change_id: str | None = None) -> Sequence[AuditEntry]:
        return self._query(pipeline, _LOG, change_id)

    def _query(self, pipeline: str, prefix: str, change_id: str | None = None) -> list[AuditEntry]:
        request: dict[str, Any] = {
            "TableName": self.table,
            "KeyConditionExpression": "#p = :p AND begins_with(#sk, :prefix)",
            "ExpressionAttributeNames": {"#p": "pipeline", "#sk": "sk"},
            "ExpressionAttributeValues": {":p": _s(pipeline), ":prefix": _s(prefix)},
            "ConsistentRead": True,
        }
        if change_id is not None:
            request["FilterExpression"] = "#c = :c"
            request["ExpressionAttributeNames"]["#c"] = "change_id"
            request["ExpressionAttributeValues"][":c"] = _s(change_id)
        entries: list[AuditEntry] = []
        while True:
            page = dynamodb_call("read the audit log", partial(self.client.query, **request))
            entries += [_decode(item) for item in page.get("Items", [])]
            if not page.get("LastEvaluatedKey"):
                return entries
            request["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def shared_target(self, target: TargetConfig) -> AwsTargetSession | None:
        if self.conn_id is None or target.conn_id != self.conn_id:
            return None
        if self._clients is None:
            self._clients = AwsClients(self.conn_id, preset={"dynamodb": self.client})
        return AwsTargetSession(target, self._clients)

    # -- lease ------------------------------------------------------------------------------

    def acquire(self, key: str, owner: str, ttl_s: float) -> LeaseInfo | None:
        now = self._clock()
        update = "SET #owner = :owner, #acq = :now, #exp = :exp ADD #token :one"
        condition = "attribute_not_exists(#owner) OR #exp <= :now OR #owner = :owner"
        values = {":owner": _s(owner), ":now": _n(now), ":exp": _n(now + ttl_s), ":one": _n(1)}
        reply = self._lock_write(f"acquire the lease of {key!r}", key, update, condition, values, "ALL_NEW")
        if reply is None:
            return None
        granted = _lease_info(key, reply)
        seen = self._read_lock(key)  # a non-atomic conditional write (moto) shows up here
        if seen is None or seen.get("owner") != _s(owner) or _token(seen) != granted.token:
            return None
        return granted

    def extend(self, key: str, owner: str, token: int, ttl_s: float) -> LeaseInfo | None:
        values = {":owner": _s(owner), ":token": _n(token), ":exp": _n(self._clock() + ttl_s)}
        condition = "#owner = :owner AND #token = :token"
        reply = self._lock_write(f"extend the lease of {key!r}", key, "SET #exp = :exp", condition, values, "ALL_NEW")
        return None if reply is None else _lease_info(key, reply)

    def release(self, key: str, owner: str, token: int) -> bool:
        values = {":owner": _s(owner), ":token": _n(token), ":zero": _n(0)}
        condition = "#owner = :owner AND #token = :token"
        update = "REMOVE #owner SET #exp = :zero"
        return self._lock_write(f"release the lease of {key!r}", key, update, condition, values, "NONE") is not None

    def current(self, key: str) -> LeaseInfo | None:
        item = self._read_lock(key)
        if item is None or "owner" not in item or float(item["expires_at"]["N"]) <= self._clock():
            return None
        return _lease_info(key, item)

    def current_many(self, keys: Sequence[str]) -> Mapping[str, LeaseInfo]:
        """The live holders of ``keys``: one BatchGetItem per 100 keys (a fleet's member leases)."""
        out: dict[str, LeaseInfo] = {}
        for start in range(0, len(keys), _KEYS_PER_BATCH):
            pending: Any = {
                self.lock_table: {
                    "Keys": [{"key": _s(k)} for k in keys[start : start + _KEYS_PER_BATCH]],
                    "ConsistentRead": True,
                }
            }
            while pending:
                reply = dynamodb_call(
                    "read the fleet's leases", partial(self.client.batch_get_item, RequestItems=pending)
                )
                for item in reply.get("Responses", {}).get(self.lock_table, []):
                    if "owner" in item and float(item["expires_at"]["N"]) > self._clock():
                        out[item["key"]["S"]] = _lease_info(item["key"]["S"], item)
                pending = reply.get("UnprocessedKeys") or None
        return out

    def force_release(self, key: str) -> LeaseInfo | None:
        update = "REMOVE #owner SET #exp = :zero"
        reply = self._lock_write(
            f"force-release the lease of {key!r}", key, update, "attribute_exists(#owner)", {":zero": _n(0)}, "ALL_OLD"
        )
        return None if reply is None else _lease_info(key, reply)

    def _lock_write(
        self, doing: str, key: str, update: str, condition: str, values: dict[str, Any], returns: str
    ) -> dict[str, Any] | None:
        """One conditional UpdateItem on the lock item: its attributes, or None when the condition failed."""
        try:
            reply = dynamodb_call(
                doing,
                lambda: self.client.update_item(
                    TableName=self.lock_table,
                    Key={"key": _s(key)},
                    UpdateExpression=update,
                    ConditionExpression=condition,
                    ExpressionAttributeNames=_names(update + " " + condition),
                    ExpressionAttributeValues=values,
                    ReturnValues=returns,
                ),
            )
        except ConditionFailed:
            return None
        return dict(reply.get("Attributes") or {})

    def _read_lock(self, key: str) -> dict[str, Any] | None:
        reply = dynamodb_call(
            f"read the lease of {key!r}",
            lambda: self.client.get_item(TableName=self.lock_table, Key={"key": _s(key)}, ConsistentRead=True),
        )
        item = reply.get("Item")
        return dict(item) if item else None

    def _fence_check(self, fence: Fence) -> WriteAction:
        condition = "#owner = :owner AND #token = :token AND #exp > :now"
        check = {
            "ConditionCheck": {
                "TableName": self.lock_table,
                "Key": {"key": _s(fence.key)},
                "ConditionExpression": condition,
                "ExpressionAttributeNames": _names(condition),
                "ExpressionAttributeValues": {
                    ":owner": _s(fence.owner),
                    ":token": _n(fence.token),
                    ":now": _n(self._clock()),
                },
            }
        }
        return WriteAction(check, f"{self.lock_table}/{fence.key}", f"lease of {fence.key!r}", fence=fence)


def _entry_item(entry: AuditEntry) -> dict[str, Any]:
    data = entry.to_dict()
    data.pop("seq", None)
    raw = json.dumps(data, default=str)
    body = {"entry": _s(raw)} if len(raw) <= _COMPRESS_OVER else {"entry_z": {"B": zlib.compress(raw.encode())}}
    return {
        "pipeline": _s(entry.audit_key),
        "change_id": _s(entry.change_id),
        "state": _s(entry.state.value),
        "action": _s(entry.action.value),
        "created_at": _s(data["created_at"]),
        "execution_id": _s(entry.execution_id),
        "seq": _n(entry.seq or 0),
        **body,
    }


def _decode(item: Mapping[str, Any]) -> AuditEntry:
    raw = zlib.decompress(item["entry_z"]["B"]).decode() if "entry_z" in item else item["entry"]["S"]
    data = json.loads(raw)
    data["seq"] = int(item["seq"]["N"])
    return AuditEntry.from_dict(data)


def _token(item: Mapping[str, Any]) -> int:
    return int(item.get("token", {}).get("N", 0))


def _lease_info(key: str, item: Mapping[str, Any]) -> LeaseInfo:
    return LeaseInfo(
        key=key,
        owner=item["owner"]["S"],
        token=_token(item),
        acquired_at=_utc(float(item.get("acquired_at", {}).get("N", 0))),
        expires_at=_utc(float(item.get("expires_at", {}).get("N", 0))),
    )


def open_dynamodb_store(config: Any, conn: Any) -> DynamoDBStore:
    """Build the store on the Airflow ``aws`` connection ``conn`` (endpoint_url, region_name in extras).

    A plain client from ``AwsBaseHook``: DynamoDBHook's is a resource client, whose event handlers
    re-serialize the typed attribute values this store sends.
    """
    clients = AwsClients(conn.conn_id or config.conn_id)
    client = clients.client("dynamodb")
    return DynamoDBStore(
        client,
        table=config.table,
        lock_table=config.lock_table,
        conn_id=config.conn_id,
        clients=clients,
        hook=clients.hook,
    )
