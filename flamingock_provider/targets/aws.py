"""AWS targets: boto3 clients from an Airflow ``aws`` connection, and DynamoDB write transactions.

A unit's transactional writes (``dynamodb.put_items`` / ``delete_items``) go through
:meth:`AwsTargetSession.transact`: sent at once outside a transaction; buffered between ``begin`` and
``commit`` inside one, then sent as a single ``TransactWriteItems``. When the audit store is DynamoDB
on the same connection, it stages its entries and the lease check into that same buffer (TX_SHARED).

botocore errors of DynamoDB bookkeeping calls are translated here, once (:func:`dynamodb_call`).
Nothing here imports boto3 or Airflow at module level: template modules import this one at parse time.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from flamingock_provider.core.lease import Fence
from flamingock_provider.core.model import TargetConfig
from flamingock_provider.core.targets import marker_table
from flamingock_provider.exceptions import ConfigurationError, LeaseLostError, StoreError

if TYPE_CHECKING:
    from flamingock_provider.core.context import ChangeContext

T = TypeVar("T")

MAX_TRANSACTION_ACTIONS = 100  # DynamoDB's limit per TransactWriteItems (moto 5 allows 25)
TABLE_WAIT_S = 300.0
_CANCELLED = "TransactionCanceledException"
_CONDITION = "ConditionalCheckFailedException"


class ConditionFailed(Exception):
    """A conditional write did not match. ``reasons``: per action of a transaction, its code or None."""

    def __init__(self, reasons: Sequence[str | None] = ()) -> None:
        super().__init__(", ".join(str(r) for r in reasons) or "condition failed")
        self.reasons = list(reasons)


def dynamodb_call(doing: str, call: Callable[[], T]) -> T:
    """Run one DynamoDB request; a failed condition raises :class:`ConditionFailed`, others StoreError."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        return call()
    except ClientError as err:
        code = err.response.get("Error", {}).get("Code", "")
        if code == _CONDITION:
            raise ConditionFailed([_CONDITION]) from err
        if code == _CANCELLED:
            reasons = [_reason_code(r) for r in err.response.get("CancellationReasons", [])]
            if any(r == "ConditionalCheckFailed" for r in reasons):
                raise ConditionFailed(reasons) from err
        raise StoreError(
            f"DynamoDB failed to {doing}: {code or type(err).__name__}: {_message(err)}; check the table, the "
            f"connection's credentials and region, then run again"
        ) from err
    except BotoCoreError as err:
        raise StoreError(
            f"DynamoDB unreachable: could not {doing}: {type(err).__name__}: {err}; check the aws connection's "
            f"endpoint_url and region_name and that the service is reachable, then run again"
        ) from err


def _reason_code(reason: Mapping[str, Any]) -> str | None:
    code = reason.get("Code")
    return None if code in (None, "None") else str(code)


def _message(err: Any) -> str:
    return str(err.response.get("Error", {}).get("Message", err))


# -- tables -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class KeyAttr:
    name: str
    type: str  # S | N | B


def table_status(client: Any, table: str) -> Mapping[str, Any] | None:
    """Return DescribeTable's ``Table``, or None when the table does not exist."""
    try:
        reply: Mapping[str, Any] = dynamodb_call(
            f"describe table {table!r}", lambda: client.describe_table(TableName=table)
        )["Table"]
        return reply
    except StoreError as err:
        if "ResourceNotFoundException" in str(err):
            return None
        raise


def ensure_table(client: Any, table: str, hash_key: KeyAttr, range_key: KeyAttr | None = None) -> None:
    """Create a PAY_PER_REQUEST table if missing (racing creators are fine) and wait until ACTIVE."""
    wanted = [(hash_key.name, "HASH")] + ([(range_key.name, "RANGE")] if range_key else [])
    described = table_status(client, table)
    if described is None:
        _create_table(client, table, [hash_key, *([range_key] if range_key else [])], wanted)
    else:
        _check_key_schema(table, described, wanted)
    wait_until_active(client, table)


def _create_table(client: Any, table: str, attrs: list[KeyAttr], schema: list[tuple[str, str]]) -> None:
    request = {
        "TableName": table,
        "KeySchema": [{"AttributeName": n, "KeyType": t} for n, t in schema],
        "AttributeDefinitions": [{"AttributeName": a.name, "AttributeType": a.type} for a in attrs],
        "BillingMode": "PAY_PER_REQUEST",
    }
    try:
        dynamodb_call(f"create table {table!r}", lambda: client.create_table(**request))
    except StoreError as err:
        if "ResourceInUseException" not in str(err):  # another runner created it first
            raise


def _check_key_schema(table: str, described: Mapping[str, Any], wanted: list[tuple[str, str]]) -> None:
    found = [(k["AttributeName"], k["KeyType"]) for k in described.get("KeySchema", [])]
    if found != wanted:
        raise ConfigurationError(
            f"DynamoDB table {table!r} exists with key schema {found}, not flamingock's {wanted}; name another "
            f"table in pipeline.yaml (audit.table) or remove that one"
        )


def wait_until_active(client: Any, table: str, timeout_s: float = TABLE_WAIT_S) -> Mapping[str, Any]:
    """Poll until the table and all its global indexes are ACTIVE; return the description."""
    deadline = time.monotonic() + timeout_s
    delay = 0.05
    while True:
        described = table_status(client, table)
        if described is None:
            raise StoreError(f"DynamoDB table {table!r} disappeared while waiting for it to become ACTIVE")
        if _active(described):
            return described
        if time.monotonic() > deadline:
            raise StoreError(
                f"DynamoDB table {table!r} is still {described.get('TableStatus')} after {timeout_s:.0f}s; "
                f"check it in the console and run again"
            )
        time.sleep(delay)
        delay = min(delay * 2, 5.0)


def _active(described: Mapping[str, Any]) -> bool:
    indexes = described.get("GlobalSecondaryIndexes") or []
    return described.get("TableStatus") == "ACTIVE" and all(i.get("IndexStatus") == "ACTIVE" for i in indexes)


def check_table_name(name: str, what: str) -> str:
    """Return ``name`` if it is a valid DynamoDB table name, else raise ConfigurationError."""
    ok = 3 <= len(name) <= 255 and all(c.isascii() and (c.isalnum() or c in "_.-") for c in name)
    if not ok:
        raise ConfigurationError(
            f"{what} {name!r} is not a valid DynamoDB table name; use 3-255 letters, digits, '_', '.', '-'"
        )
    return name


# -- clients ----------------------------------------------------------------------------------


class AwsClients:
    """boto3 clients of one Airflow ``aws`` connection (endpoint_url and region_name from its extras)."""

    def __init__(self, conn_id: str, preset: Mapping[str, Any] | None = None) -> None:
        self.conn_id = conn_id
        self._clients: dict[str, Any] = dict(preset or {})
        self._hook: Any = None

    @property
    def hook(self) -> Any:
        """The connection's ``AwsBaseHook`` (what a Python unit sees as ``ctx.hook``)."""
        if self._hook is None:
            self._hook = _base_hook(self.conn_id, None)
        return self._hook

    def client(self, service: str) -> Any:
        if service not in self._clients:
            self._clients[service] = _new_client(self.conn_id, service)
        return self._clients[service]


def _base_hook(conn_id: str, service: str | None) -> Any:
    try:
        from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook
    except ImportError as err:
        raise ConfigurationError(
            f"aws connection {conn_id!r} needs the Amazon provider; install flamingock-provider[amazon] "
            f"(apache-airflow-providers-amazon)"
        ) from err
    return AwsBaseHook(aws_conn_id=conn_id, client_type=service)


def _new_client(conn_id: str, service: str) -> Any:
    from botocore.exceptions import BotoCoreError

    try:
        return _base_hook(conn_id, service).get_conn()
    except BotoCoreError as err:
        raise ConfigurationError(
            f"aws connection {conn_id!r}: cannot build a {service!r} client: {err}; check the service name and "
            f"the connection's extras (region_name, endpoint_url)"
        ) from err


# -- the session ------------------------------------------------------------------------------


@dataclass(frozen=True)
class WriteAction:
    """One action of a TransactWriteItems; ``ident`` names the item (one action per item)."""

    action: Mapping[str, Any]
    ident: str
    label: str
    replaceable: bool = False  # a later action on the same item replaces it (the audit "latest" item)
    fence: Fence | None = None  # set on the lease check: its failure means the lease is lost


@dataclass
class _Transaction:
    actions: dict[str, WriteAction] = field(default_factory=dict)
    fence: Callable[[], WriteAction] | None = None

    def add(self, actions: Sequence[WriteAction]) -> None:
        for action in actions:
            earlier = self.actions.get(action.ident)
            if earlier is not None and not (earlier.replaceable and action.replaceable):
                raise ConfigurationError(
                    f"one DynamoDB transaction cannot write an item twice: {action.label} (also {earlier.label}); "
                    f"split the change into two units or remove the duplicate key"
                )
            self.actions.pop(action.ident, None)
            self.actions[action.ident] = action


class AwsTargetSession:
    """A unit's session on an ``aws`` connection: ``ctx.client(service)``; ``ctx.target`` is None."""

    kind = "aws"
    native = None
    session = None
    supports_transactions = True
    python_transactions = False  # a Python unit's boto3 calls cannot join a DynamoDB transaction

    def __init__(self, config: TargetConfig, clients: AwsClients) -> None:
        self.config = config
        self.clients = clients
        self._tx: _Transaction | None = None

    @property
    def hook(self) -> Any:
        return self.clients.hook

    def client(self, service: str) -> Any:
        return self.clients.client(service)

    def begin(self) -> None:
        self._tx = _Transaction()

    def transact(self, actions: Sequence[WriteAction]) -> None:
        """Write ``actions`` atomically: now, or at :meth:`commit` inside a transaction."""
        if self._tx is not None:
            self._tx.add(actions)
        elif actions:
            send_transaction(self.client("dynamodb"), actions)

    def stage_audit(self, actions: Sequence[WriteAction], fence: Callable[[], WriteAction] | None) -> None:
        """Add audit entries (and the lease check built at commit) to the open transaction."""
        if self._tx is None:
            raise StoreError("audit entry staged outside a transaction; this is a bug in the engine")
        self._tx.add(actions)
        if fence is not None:
            self._tx.fence = fence

    def commit(self) -> None:
        tx, self._tx = self._tx, None
        if tx is None:
            return
        actions = list(tx.actions.values())
        fence = tx.fence() if tx.fence is not None else None
        if fence is not None:
            actions.insert(0, fence)
        if actions:
            send_transaction(self.client("dynamodb"), actions)

    def rollback(self) -> None:
        self._tx = None

    # -- TX_SEPARATE marker -----------------------------------------------------------------

    def write_marker(self, pipeline: str, change_id: str, execution_id: str) -> None:
        client, table = self.client("dynamodb"), marker_table(self.config)
        ensure_table(client, table, KeyAttr("pipeline", "S"), KeyAttr("marker", "S"))
        marker = f"{change_id}#{execution_id}"
        item = {"pipeline": {"S": pipeline}, "marker": {"S": marker}, "created_at": {"N": str(time.time())}}
        action = {"Put": {"TableName": table, "Item": item}}
        self.transact([WriteAction(action, f"{table}/{pipeline}/{marker}", f"marker {marker}")])

    def has_marker(self, pipeline: str, change_id: str, execution_id: str) -> bool:
        client = self.client("dynamodb")
        key = {"pipeline": {"S": pipeline}, "marker": {"S": f"{change_id}#{execution_id}"}}
        try:
            reply = dynamodb_call(
                "read a marker",
                lambda: client.get_item(TableName=marker_table(self.config), Key=key, ConsistentRead=True),
            )
        except StoreError as err:
            if "ResourceNotFoundException" in str(err):
                return False
            raise
        return "Item" in reply

    def clear_marker(self, pipeline: str, change_id: str, execution_id: str) -> None:
        client = self.client("dynamodb")
        key = {"pipeline": {"S": pipeline}, "marker": {"S": f"{change_id}#{execution_id}"}}
        dynamodb_call("delete a marker", lambda: client.delete_item(TableName=marker_table(self.config), Key=key))

    def close(self) -> None:
        self._tx = None


def send_transaction(client: Any, actions: Sequence[WriteAction]) -> None:
    """Send one TransactWriteItems; a failed lease check raises LeaseLostError, other conditions StoreError."""
    if len(actions) > MAX_TRANSACTION_ACTIONS:
        raise StoreError(
            f"DynamoDB transaction of {len(actions)} writes is over the limit of {MAX_TRANSACTION_ACTIONS}; "
            f"split put_items/delete_items into several units"
        )
    items = [dict(a.action) for a in actions]
    try:
        dynamodb_call("write a transaction", lambda: client.transact_write_items(TransactItems=items))
    except ConditionFailed as failed:
        reasons = (failed.reasons + [None] * len(actions))[: len(actions)]
        fence = next((a.fence for a, r in zip(actions, reasons, strict=True) if r and a.fence is not None), None)
        if fence is not None:
            raise LeaseLostError(
                fence.key, fence.owner, fence.token, "the store refused the write: lease not held"
            ) from failed
        blamed = [a.label for a, r in zip(actions, reasons, strict=True) if r]
        raise StoreError(
            f"DynamoDB transaction cancelled: condition failed for {', '.join(blamed) or 'an item'}; nothing of "
            f"it was written"
        ) from failed


def aws_session(ctx: ChangeContext, template: str) -> AwsTargetSession:
    """The unit's aws session, or a ConfigurationError naming the unit and the template."""
    session = ctx.target_session
    if not isinstance(session, AwsTargetSession):
        kind = session.kind if session is not None else "none"
        raise ConfigurationError(
            f"change {ctx.change.id!r}: template {template!r} needs an aws target, got {kind!r}; point "
            f"'target:' at an aws connection"
        )
    return session


def item_ident(table: str, key: Mapping[str, Any]) -> str:
    """A stable name for the item ``key`` (typed attribute values) of ``table``."""
    return f"{table}/{json.dumps(key, sort_keys=True, default=str)}"


def open_aws_target(config: TargetConfig, conn: Any) -> AwsTargetSession:
    """Build a session on the Airflow ``aws`` connection ``conn``."""
    return AwsTargetSession(config, AwsClients(conn.conn_id or config.conn_id))
