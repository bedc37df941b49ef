"""The ``s3.*`` templates: buckets, objects and bucket configuration on an ``aws`` target.

None is transactional. Each apply first captures what it is about to replace and returns it as the
undo state (JSON: object bodies in base64, at most :data:`MAX_CAPTURED_BYTES`), so the derived
rollback puts back exactly that:

=======================  ===============================================================
operation                rollback
=======================  ===============================================================
create_bucket            delete the bucket (refused while it holds objects)
delete_bucket            re-create it with its versioning, lifecycle, policy and tags
put_object               the previous object (body, content type, metadata) or none
delete_object            the deleted object
put_bucket_versioning    the previous status (never-versioned becomes Suspended: S3 has no way back)
put_bucket_lifecycle     the previous rules, or none
put_bucket_policy        the previous policy, or none
put_bucket_tagging       the previous tags, or none
=======================  ===============================================================

On a bucket with versioning Enabled, object changes are undone through versions instead of copies:
the rollback deletes the version (or delete marker) the apply created, so the previous version is
current again, whatever its size. No boto3 import at module level.

This module holds the bucket and object operations and ``TEMPLATES``; the base class and the
capture/restore helpers are in ``_s3_base``, the bucket settings in ``_s3_config``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from flamingock_provider.core.context import ChangeContext
from flamingock_provider.core.template import Template
from flamingock_provider.exceptions import ConfigurationError
from flamingock_provider.templates._s3_base import (
    MAX_CAPTURED_BYTES,
    S3Template,
    bucket_exists,
    capture_object,
    check_str,
    count_objects,
    describe_object,
    undo_object,
    versioning,
)
from flamingock_provider.templates._s3_config import CONFIGS

__all__ = ["CONFIGS", "MAX_CAPTURED_BYTES", "TEMPLATES"]

# -- buckets ------------------------------------------------------------------------------------


class CreateBucket(S3Template):
    name = "s3.create_bucket"
    effect = "creates the bucket"
    apply_keys = frozenset({"bucket", "region"})
    required_apply_keys = frozenset({"bucket"})

    def check(self, apply: Mapping[str, Any]) -> list[str]:
        return check_str(apply, "region")

    def apply(self, ctx: ChangeContext, payload: Mapping[str, Any]) -> Any:
        client, bucket = self.client(ctx), payload["bucket"]
        if bucket_exists(client, bucket):
            raise ConfigurationError(
                f"S3 bucket {bucket!r} already exists; pick another name, or `flamingock fix` this change as applied"
            )
        _create_bucket(client, bucket, payload.get("region"))
        return {"bucket": bucket}

    def rollback(
        self, ctx: ChangeContext, payload: Mapping[str, Any], rollback: Mapping[str, Any] | None, undo_state: Any
    ) -> None:
        client, bucket = self.client(ctx), payload["bucket"]
        if not isinstance(undo_state, Mapping):  # the apply did not create it (e.g. it existed): keep it
            ctx.log.warning("change %s: no bucket recorded as created; nothing to delete", ctx.change.id)
            return
        if not bucket_exists(client, bucket):
            return  # already gone
        listed = client.list_objects_v2(Bucket=bucket, MaxKeys=1)
        if listed.get("KeyCount", 0):
            raise ConfigurationError(
                f"S3 bucket {bucket!r} still holds objects this change did not put; move them away (or roll back "
                f"the changes that put them) and run the rollback again"
            )
        _purge_versions(client, bucket)
        client.delete_bucket(Bucket=bucket)


def _create_bucket(client: Any, bucket: str, region: str | None) -> None:
    region = region or client.meta.region_name
    if region and region != "us-east-1":
        client.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": region})
    else:
        client.create_bucket(Bucket=bucket)


def _purge_versions(client: Any, bucket: str) -> None:
    """Remove noncurrent versions and delete markers (left by rolled-back object changes)."""
    for page in client.get_paginator("list_object_versions").paginate(Bucket=bucket):
        stale = page.get("Versions", []) + page.get("DeleteMarkers", [])
        objects = [{"Key": v["Key"], "VersionId": v["VersionId"]} for v in stale]
        if objects:
            client.delete_objects(Bucket=bucket, Delete={"Objects": objects, "Quiet": True})


class DeleteBucket(S3Template):
    name = "s3.delete_bucket"
    level = "destructive"
    effect = "deletes the bucket"

    def impact(self, ctx: ChangeContext, payload: Mapping[str, Any], *, timeout: float) -> str | None:
        return f"bucket {payload['bucket']}: {count_objects(self.client(ctx), payload['bucket'])}"

    apply_keys = frozenset({"bucket"})
    required_apply_keys = frozenset({"bucket"})

    def apply(self, ctx: ChangeContext, payload: Mapping[str, Any]) -> Any:
        client, bucket = self.client(ctx), payload["bucket"]
        if not bucket_exists(client, bucket):
            raise ConfigurationError(f"S3 bucket {bucket!r} does not exist; nothing to delete")
        location = client.get_bucket_location(Bucket=bucket).get("LocationConstraint") or "us-east-1"
        saved = {"bucket": bucket, "region": location}
        saved["config"] = {op: CONFIGS[op].capture(client, bucket) for op in CONFIGS}
        client.delete_bucket(Bucket=bucket)
        return saved

    def rollback(
        self, ctx: ChangeContext, payload: Mapping[str, Any], rollback: Mapping[str, Any] | None, undo_state: Any
    ) -> None:
        client, bucket = self.client(ctx), payload["bucket"]
        if bucket_exists(client, bucket):
            return  # the delete never happened
        if not isinstance(undo_state, Mapping):
            raise ConfigurationError(
                f"change {ctx.change.id!r}: bucket {bucket!r} is gone and its configuration was not captured; "
                f"re-create it by hand, then `flamingock fix` the change"
            )
        _create_bucket(client, bucket, undo_state.get("region"))
        for op, previous in undo_state.get("config", {}).items():
            if previous is not None:
                CONFIGS[op].restore(client, bucket, previous)


# -- objects ------------------------------------------------------------------------------------


class PutObject(S3Template):
    name = "s3.put_object"
    level = "rewrite"
    effect = "puts the object, replacing the one at that key if any"

    def impact(self, ctx: ChangeContext, payload: Mapping[str, Any], *, timeout: float) -> str | None:
        return describe_object(self.client(ctx), payload["bucket"], payload["key"])

    apply_keys = frozenset({"bucket", "key", "body", "json", "file", "content_type", "metadata"})
    required_apply_keys = frozenset({"bucket", "key"})

    def check(self, apply: Mapping[str, Any]) -> list[str]:
        problems = check_str(apply, "key") + check_str(apply, "file")
        if sum(k in apply for k in ("body", "json", "file")) != 1:
            problems.append("field 'apply': give exactly one of 'body' (text), 'json' (a value) or 'file'")
        metadata = apply.get("metadata", {})
        if not isinstance(metadata, Mapping) or not all(isinstance(v, str) for v in metadata.values()):
            problems.append(f"field 'apply.metadata': expected a mapping of strings, got {metadata!r}")
        return problems

    def apply(self, ctx: ChangeContext, payload: Mapping[str, Any]) -> Any:
        client, bucket, key = self.client(ctx), payload["bucket"], payload["key"]
        versioned = versioning(client, bucket) == "Enabled"
        previous = None if versioned else capture_object(client, bucket, key)
        reply = client.put_object(Bucket=bucket, Key=key, Body=_body(ctx, payload), **_put_args(payload))
        version = reply.get("VersionId") if versioned else None
        return {"version_id": version, "previous": previous, "created": True}

    def rollback(
        self, ctx: ChangeContext, payload: Mapping[str, Any], rollback: Mapping[str, Any] | None, undo_state: Any
    ) -> None:
        undo_object(self.client(ctx), payload["bucket"], payload["key"], undo_state)


def _body(ctx: ChangeContext, payload: Mapping[str, Any]) -> bytes:
    if "file" in payload:
        return (Path(ctx.pipeline.path) / str(payload["file"])).read_bytes()
    if "json" in payload:
        return json.dumps(payload["json"], indent=2, sort_keys=True).encode()
    return str(payload["body"]).encode()


def _put_args(payload: Mapping[str, Any]) -> dict[str, Any]:
    args: dict[str, Any] = {}
    content_type = payload.get("content_type") or ("application/json" if "json" in payload else None)
    if content_type:
        args["ContentType"] = content_type
    if payload.get("metadata"):
        args["Metadata"] = {str(k): str(v) for k, v in payload["metadata"].items()}
    return args


class DeleteObject(S3Template):
    name = "s3.delete_object"
    level = "rewrite"
    effect = "deletes the object at that key (captured for the rollback)"

    def impact(self, ctx: ChangeContext, payload: Mapping[str, Any], *, timeout: float) -> str | None:
        return describe_object(self.client(ctx), payload["bucket"], payload["key"])

    apply_keys = frozenset({"bucket", "key"})
    required_apply_keys = frozenset({"bucket", "key"})

    def check(self, apply: Mapping[str, Any]) -> list[str]:
        return check_str(apply, "key")

    def apply(self, ctx: ChangeContext, payload: Mapping[str, Any]) -> Any:
        client, bucket, key = self.client(ctx), payload["bucket"], payload["key"]
        if versioning(client, bucket) == "Enabled":
            marker = client.delete_object(Bucket=bucket, Key=key).get("VersionId")
            return {"version_id": marker, "previous": None}
        previous = capture_object(client, bucket, key)
        if previous is not None:
            client.delete_object(Bucket=bucket, Key=key)
        return {"version_id": None, "previous": previous}

    def rollback(
        self, ctx: ChangeContext, payload: Mapping[str, Any], rollback: Mapping[str, Any] | None, undo_state: Any
    ) -> None:
        undo_object(self.client(ctx), payload["bucket"], payload["key"], undo_state)


TEMPLATES: dict[str, Template] = {
    "create_bucket": CreateBucket(),
    "delete_bucket": DeleteBucket(),
    "put_object": PutObject(),
    "delete_object": DeleteObject(),
    "put_bucket_versioning": CONFIGS["versioning"],
    "put_bucket_lifecycle": CONFIGS["lifecycle"],
    "put_bucket_policy": CONFIGS["policy"],
    "put_bucket_tagging": CONFIGS["tagging"],
}
