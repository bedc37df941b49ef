"""DynamoDB table schemas and settings: create requests, DescribeTable → payload, index/billing/TTL updates.

No boto3 import at module level.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from flamingock_provider.targets.aws import table_status, wait_until_active
from flamingock_provider.templates._dynamodb_base import describe


def wait_gone(client: Any, table: str) -> None:
    import time

    deadline = time.monotonic() + 300
    while table_status(client, table) is not None:
        if time.monotonic() > deadline:
            raise TimeoutError(f"DynamoDB table {table!r} still exists 300s after DeleteTable")
        time.sleep(0.2)


# -- payload → requests ---------------------------------------------------------------------------


def _key_schema(spec: Mapping[str, Any]) -> list[dict[str, str]]:
    schema = [{"AttributeName": spec["partition_key"]["name"], "KeyType": "HASH"}]
    if spec.get("sort_key"):
        schema.append({"AttributeName": spec["sort_key"]["name"], "KeyType": "RANGE"})
    return schema


def _key_attrs(spec: Mapping[str, Any]) -> dict[str, str]:
    return {spec[k]["name"]: spec[k]["type"] for k in ("partition_key", "sort_key") if spec.get(k)}


def _projection(value: Any) -> dict[str, Any]:
    if isinstance(value, list):
        return {"ProjectionType": "INCLUDE", "NonKeyAttributes": [str(v) for v in value]}
    return {"ProjectionType": str(value or "ALL")}


def _throughput(spec: Mapping[str, Any], fallback: Mapping[str, Any]) -> dict[str, int]:
    read = spec.get("read_capacity", fallback.get("read_capacity", 1))
    write = spec.get("write_capacity", fallback.get("write_capacity", 1))
    return {"ReadCapacityUnits": int(read), "WriteCapacityUnits": int(write)}


def _index_request(index: Mapping[str, Any], table: Mapping[str, Any]) -> dict[str, Any]:
    request: dict[str, Any] = {
        "IndexName": index["name"],
        "KeySchema": _key_schema(index),
        "Projection": _projection(index.get("projection")),
    }
    if table.get("billing_mode") == "PROVISIONED":
        request["ProvisionedThroughput"] = _throughput(index, table)
    return request


def create_request(table: str, spec: Mapping[str, Any]) -> dict[str, Any]:
    indexes = list(spec.get("indexes") or [])
    attrs = _key_attrs(spec)
    for index in indexes:
        attrs.update(_key_attrs(index))
    request: dict[str, Any] = {
        "TableName": table,
        "KeySchema": _key_schema(spec),
        "AttributeDefinitions": [{"AttributeName": n, "AttributeType": t} for n, t in attrs.items()],
        "BillingMode": spec.get("billing_mode", "PAY_PER_REQUEST"),
    }
    if request["BillingMode"] == "PROVISIONED":
        request["ProvisionedThroughput"] = _throughput(spec, {})
    if indexes:
        request["GlobalSecondaryIndexes"] = [_index_request(i, spec) for i in indexes]
    if spec.get("local_secondary_indexes"):
        request["LocalSecondaryIndexes"] = list(spec["local_secondary_indexes"])
    if spec.get("tags"):
        request["Tags"] = [{"Key": str(k), "Value": str(v)} for k, v in spec["tags"].items()]
    return request


# -- DescribeTable → payload ----------------------------------------------------------------------


def billing_of(described: Mapping[str, Any]) -> dict[str, Any]:
    throughput = described.get("ProvisionedThroughput") or {}
    mode = (described.get("BillingModeSummary") or {}).get("BillingMode")
    mode = mode or ("PROVISIONED" if throughput.get("ReadCapacityUnits") else "PAY_PER_REQUEST")
    if mode != "PROVISIONED":
        return {"billing_mode": mode}
    return {
        "billing_mode": mode,
        "read_capacity": throughput["ReadCapacityUnits"],
        "write_capacity": throughput["WriteCapacityUnits"],
    }


def _key_spec(schema: Sequence[Mapping[str, str]], types: Mapping[str, str], kind: str) -> dict[str, str] | None:
    name = next((k["AttributeName"] for k in schema if k["KeyType"] == kind), None)
    return None if name is None else {"name": name, "type": types[name]}


def _index_spec(index: Mapping[str, Any], types: Mapping[str, str]) -> dict[str, Any]:
    projection = index.get("Projection") or {}
    spec: dict[str, Any] = {
        "name": index["IndexName"],
        "partition_key": _key_spec(index["KeySchema"], types, "HASH"),
        "projection": projection.get("NonKeyAttributes") or projection.get("ProjectionType", "ALL"),
    }
    sort_key = _key_spec(index["KeySchema"], types, "RANGE")
    if sort_key:
        spec["sort_key"] = sort_key
    throughput = index.get("ProvisionedThroughput") or {}
    if throughput.get("ReadCapacityUnits"):
        spec.update(read_capacity=throughput["ReadCapacityUnits"], write_capacity=throughput["WriteCapacityUnits"])
    return spec


def schema_of(described: Mapping[str, Any]) -> dict[str, Any]:
    """DescribeTable's answer → the create_table payload (without ``table``) that re-creates it."""
    types = {a["AttributeName"]: a["AttributeType"] for a in described["AttributeDefinitions"]}
    spec: dict[str, Any] = {"partition_key": _key_spec(described["KeySchema"], types, "HASH"), **billing_of(described)}
    sort_key = _key_spec(described["KeySchema"], types, "RANGE")
    if sort_key:
        spec["sort_key"] = sort_key
    if described.get("GlobalSecondaryIndexes"):
        spec["indexes"] = [_index_spec(i, types) for i in described["GlobalSecondaryIndexes"]]
    if described.get("LocalSecondaryIndexes"):
        keep = ("IndexName", "KeySchema", "Projection")
        spec["local_secondary_indexes"] = [{k: i[k] for k in keep} for i in described["LocalSecondaryIndexes"]]
    return spec


# -- updates --------------------------------------------------------------------------------------


def update_billing(client: Any, table: str, wanted: Mapping[str, Any], current: Mapping[str, Any]) -> None:
    request: dict[str, Any] = {"TableName": table, "BillingMode": wanted["billing_mode"]}
    if wanted["billing_mode"] == "PROVISIONED":
        request["ProvisionedThroughput"] = _throughput(wanted, {})
        updates = [
            {"Update": {"IndexName": i["name"], "ProvisionedThroughput": _throughput(i, wanted)}}
            for i in current.get("indexes", [])
        ]
        if updates:
            request["GlobalSecondaryIndexUpdates"] = updates
    client.update_table(**request)
    wait_until_active(client, table)


def create_index(client: Any, table: str, index: Mapping[str, Any], table_spec: Mapping[str, Any]) -> None:
    # Send every attribute definition, not only the new index's: moto replaces the table's list.
    known = {a["AttributeName"]: a["AttributeType"] for a in describe(client, table)["AttributeDefinitions"]}
    known.update(_key_attrs(index))
    client.update_table(
        TableName=table,
        AttributeDefinitions=[{"AttributeName": n, "AttributeType": t} for n, t in known.items()],
        GlobalSecondaryIndexUpdates=[{"Create": _index_request(index, table_spec)}],
    )
    wait_until_active(client, table)


def update_index(client: Any, table: str, update: Mapping[str, Any]) -> None:
    client.update_table(TableName=table, GlobalSecondaryIndexUpdates=[dict(update)])
    wait_until_active(client, table)


# -- TTL ------------------------------------------------------------------------------------------


def ttl_state(description: Mapping[str, Any]) -> dict[str, Any]:
    enabled = description.get("TimeToLiveStatus") in ("ENABLED", "ENABLING")
    return {"enabled": enabled, "attribute": description.get("AttributeName")}


def set_ttl(client: Any, table: str, wanted: Mapping[str, Any] | None) -> None:
    """Bring the table's TTL to ``wanted`` ({enabled, attribute}); a change of attribute disables first."""
    if not wanted:
        return
    now = ttl_state(client.describe_time_to_live(TableName=table).get("TimeToLiveDescription") or {})
    if now == dict(wanted) or (not now["enabled"] and not wanted["enabled"]):
        return
    if now["enabled"]:
        spec = {"Enabled": False, "AttributeName": now["attribute"]}
        client.update_time_to_live(TableName=table, TimeToLiveSpecification=spec)
    if wanted["enabled"]:
        spec = {"Enabled": True, "AttributeName": wanted["attribute"]}
        client.update_time_to_live(TableName=table, TimeToLiveSpecification=spec)
