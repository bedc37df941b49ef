"""Snapshot an ``aws`` target for a rollback rehearsal: its DynamoDB tables and its S3 buckets.

DynamoDB: every table's key schema, attribute types, secondary indexes, TTL and item count (a paged
``Scan`` with ``Select=COUNT``); the engine's marker table is left out. S3: every bucket's keys with
their ETags, and its versioning, tagging, policy and lifecycle (one call each). A scratch account
holds only scratch data, so everything it holds is compared.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from flamingock_provider.core.rehearsal import Facts
from flamingock_provider.core.targets import TargetSession, marker_table


def snapshot_aws(session: TargetSession) -> Facts:
    """Return ``{"table t": {"key schema": ..., "items": n, ...}, "bucket b": {"key k": etag, ...}}``."""
    facts: dict[str, dict[str, Any]] = {}
    dynamodb = session.client("dynamodb")
    for page in dynamodb.get_paginator("list_tables").paginate():
        for table in page.get("TableNames", []):
            if table != marker_table(session.config):
                facts[f"table {table}"] = _table(dynamodb, table)
    s3 = session.client("s3")
    for bucket in sorted(b["Name"] for b in s3.list_buckets().get("Buckets", [])):
        facts[f"bucket {bucket}"] = _bucket(s3, bucket)
    return facts


def _table(client: Any, table: str) -> dict[str, Any]:
    described = client.describe_table(TableName=table)["Table"]
    facts: dict[str, Any] = {"key schema": _keys(described.get("KeySchema", []))}
    for attribute in described.get("AttributeDefinitions", []):
        facts[f"attribute {attribute['AttributeName']}"] = attribute["AttributeType"]
    for kind in ("GlobalSecondaryIndexes", "LocalSecondaryIndexes"):
        for index in described.get(kind, []):
            projection = index.get("Projection", {}).get("ProjectionType", "")
            facts[f"index {index['IndexName']}"] = f"{_keys(index.get('KeySchema', []))} {projection}".strip()
    ttl = client.describe_time_to_live(TableName=table).get("TimeToLiveDescription", {})
    if ttl.get("TimeToLiveStatus") in ("ENABLED", "ENABLING"):
        facts["ttl"] = ttl.get("AttributeName")
    count, start = 0, None
    while True:
        page = client.scan(TableName=table, Select="COUNT", **({"ExclusiveStartKey": start} if start else {}))
        count += int(page.get("Count", 0))
        start = page.get("LastEvaluatedKey")
        if not start:
            break
    facts["items"] = count
    return facts


def _keys(schema: list[dict[str, str]]) -> str:
    return ", ".join(f"{key['AttributeName']} {key['KeyType']}" for key in schema)


def _bucket(client: Any, bucket: str) -> dict[str, Any]:
    facts: dict[str, Any] = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for item in page.get("Contents", []):
            facts[f"key {item['Key']}"] = str(item.get("ETag", "")).strip('"')
    versioning = client.get_bucket_versioning(Bucket=bucket).get("Status")
    if versioning:
        facts["versioning"] = versioning
    tags = _config(lambda: client.get_bucket_tagging(Bucket=bucket).get("TagSet", []))
    if tags:
        facts["tagging"] = {t["Key"]: t["Value"] for t in tags}
    policy = _config(lambda: client.get_bucket_policy(Bucket=bucket).get("Policy"))
    if policy:
        facts["policy"] = json.loads(policy)
    rules = _config(lambda: client.get_bucket_lifecycle_configuration(Bucket=bucket).get("Rules", []))
    if rules:
        facts["lifecycle"] = json.loads(json.dumps(rules, default=str))
    return facts


def _config(read: Callable[[], Any]) -> Any:
    """A bucket setting, or None where S3 answers that the bucket has none (NoSuchTagSet, NoSuchBucketPolicy...)."""
    from botocore.exceptions import ClientError

    try:
        return read()
    except ClientError as err:
        if str(err.response.get("Error", {}).get("Code", "")).startswith("NoSuch"):
            return None
        raise
