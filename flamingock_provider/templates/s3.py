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
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from flamingock_provider.core.context import ChangeContext
from flamingock_provider.core.template import Template
from flamingock_provider.exceptions import ConfigurationError
from flamingock_provider.targets.aws import aws_session

MAX_CAPTURED_BYTES = 256 * 1024  # an object kept in the audit entry for its rollback
_MISSING = frozenset(
    {
        "404",
        "NoSuchKey",
        "NotFound",
        "NoSuchBucket",
        "NoSuchLifecycleConfiguration",
        "NoSuchBucketPolicy",
        "NoSuchTagSet",
    }
)
# head_object fields restored with the body (they are also put_object's argument names)
_OBJECT_FIELDS = ("ContentType", "CacheControl", "ContentDisposition", "ContentEncoding", "ContentLanguage", "Metadata")


def _check_str(payload: Mapping[str, Any], key: str) -> list[str]:
    value = payload.get(key)
    if key not in payload or (isinstance(value, str) and value):
        return []
    return [f"field 'apply.{key}': expected a non-empty string, got {value!r}"]


def _missing(err: Exception) -> bool:
    response = getattr(err, "response", None)
    return isinstance(response, Mapping) and str(response.get("Error", {}).get("Code")) in _MISSING


def _read(call: Any, **kwargs: Any) -> Any:
    """Call an S3 getter; None when the thing it reads does not exist."""
    from botocore.exceptions import ClientError

    try:
        return call(**kwargs)
    except ClientError as err:
        if _missing(err):
            return None
        raise


def _versioning(client: Any, bucket: str) -> str:
    return str(client.get_bucket_versioning(Bucket=bucket).get("Status") or "")


def _bucket_exists(client: Any, bucket: str) -> bool:
    return _read(client.head_bucket, Bucket=bucket) is not None


class S3Template(Template):
    """Common parts: an aws target, a ``bucket``, rollbacks derived from the undo state."""

    target_kind = "aws"

    def validate(self, apply: Mapping[str, Any], rollback: Mapping[str, Any] | None) -> list[str]:
        problems = super().validate(apply, rollback) + _check_str(apply, "bucket")
        if rollback is not None:
            problems.append(f"field 'rollback': {self.name!r} derives its rollback from what apply replaced; remove it")
        return problems + self.check(apply)

    def check(self, apply: Mapping[str, Any]) -> list[str]:
        return []

    def derives_rollback(self, apply: Mapping[str, Any]) -> bool:
        return True

    def client(self, ctx: ChangeContext) -> Any:
        return aws_session(ctx, self.name).client("s3")


# -- buckets ------------------------------------------------------------------------------------


class CreateBucket(S3Template):
    name = "s3.create_bucket"
    apply_keys = frozenset({"bucket", "region"})
    required_apply_keys = frozenset({"bucket"})

    def check(self, apply: Mapping[str, Any]) -> list[str]:
        return _check_str(apply, "region")

    def apply(self, ctx: ChangeContext, payload: Mapping[str, Any]) -> Any:
        client, bucket = self.client(ctx), payload["bucket"]
        if _bucket_exists(client, bucket):
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
        if not _bucket_exists(client, bucket):
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
    apply_keys = frozenset({"bucket"})
    required_apply_keys = frozenset({"bucket"})

    def apply(self, ctx: ChangeContext, payload: Mapping[str, Any]) -> Any:
        client, bucket = self.client(ctx), payload["bucket"]
        if not _bucket_exists(client, bucket):
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
        if _bucket_exists(client, bucket):
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


def _capture_object(client: Any, bucket: str, key: str) -> dict[str, Any] | None:
    """The object's body and headers, or None when there is none; refuse past the size cap."""
    head = _read(client.head_object, Bucket=bucket, Key=key)
    if head is None:
        return None
    size = int(head.get("ContentLength", 0))
    if size > MAX_CAPTURED_BYTES:
        raise ConfigurationError(
            f"s3://{bucket}/{key} holds {size:,} bytes, over the {MAX_CAPTURED_BYTES:,}-byte copy kept to roll this "
            f"change back; enable versioning on the bucket (the rollback then restores the previous version), "
            f"or move the object aside first"
        )
    body = client.get_object(Bucket=bucket, Key=key)["Body"].read()
    saved = {field: head[field] for field in _OBJECT_FIELDS if head.get(field)}
    return {"body": base64.b64encode(body).decode(), "put": saved}


def _restore_object(client: Any, bucket: str, key: str, saved: Mapping[str, Any]) -> None:
    client.put_object(Bucket=bucket, Key=key, Body=base64.b64decode(saved["body"]), **saved["put"])


def _undo_object(client: Any, bucket: str, key: str, state: Any) -> None:
    """Undo a put or delete of ``key`` from what the apply recorded."""
    if not isinstance(state, Mapping):
        return  # the single S3 call of the apply failed: nothing changed
    if state.get("version_id"):
        client.delete_object(Bucket=bucket, Key=key, VersionId=state["version_id"])
    elif state.get("previous") is not None:
        _restore_object(client, bucket, key, state["previous"])
    elif state.get("created"):
        client.delete_object(Bucket=bucket, Key=key)


class PutObject(S3Template):
    name = "s3.put_object"
    apply_keys = frozenset({"bucket", "key", "body", "json", "file", "content_type", "metadata"})
    required_apply_keys = frozenset({"bucket", "key"})

    def check(self, apply: Mapping[str, Any]) -> list[str]:
        problems = _check_str(apply, "key") + _check_str(apply, "file")
        if sum(k in apply for k in ("body", "json", "file")) != 1:
            problems.append("field 'apply': give exactly one of 'body' (text), 'json' (a value) or 'file'")
        metadata = apply.get("metadata", {})
        if not isinstance(metadata, Mapping) or not all(isinstance(v, str) for v in metadata.values()):
            problems.append(f"field 'apply.metadata': expected a mapping of strings, got {metadata!r}")
        return problems

    def apply(self, ctx: ChangeContext, payload: Mapping[str, Any]) -> Any:
        client, bucket, key = self.client(ctx), payload["bucket"], payload["key"]
        versioned = _versioning(client, bucket) == "Enabled"
        previous = None if versioned else _capture_object(client, bucket, key)
        reply = client.put_object(Bucket=bucket, Key=key, Body=_body(ctx, payload), **_put_args(payload))
        version = reply.get("VersionId") if versioned else None
        return {"version_id": version, "previous": previous, "created": True}

    def rollback(
        self, ctx: ChangeContext, payload: Mapping[str, Any], rollback: Mapping[str, Any] | None, undo_state: Any
    ) -> None:
        _undo_object(self.client(ctx), payload["bucket"], payload["key"], undo_state)


def _body(ctx: ChangeContext, payload: Mapping[str, Any]) -> bytes:
    if "file" in payload:
        return (Path(ctx.pipeline.path) / payload["file"]).read_bytes()
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
    apply_keys = frozenset({"bucket", "key"})
    required_apply_keys = frozenset({"bucket", "key"})

    def check(self, apply: Mapping[str, Any]) -> list[str]:
        return _check_str(apply, "key")

    def apply(self, ctx: ChangeContext, payload: Mapping[str, Any]) -> Any:
        client, bucket, key = self.client(ctx), payload["bucket"], payload["key"]
        if _versioning(client, bucket) == "Enabled":
            marker = client.delete_object(Bucket=bucket, Key=key).get("VersionId")
            return {"version_id": marker, "previous": None}
        previous = _capture_object(client, bucket, key)
        if previous is not None:
            client.delete_object(Bucket=bucket, Key=key)
        return {"version_id": None, "previous": previous}

    def rollback(
        self, ctx: ChangeContext, payload: Mapping[str, Any], rollback: Mapping[str, Any] | None, undo_state: Any
    ) -> None:
        _undo_object(self.client(ctx), payload["bucket"], payload["key"], undo_state)


# -- bucket configuration ----------------------------------------------------------------------


class BucketConfig(S3Template):
    """A bucket setting: capture the previous value, set the new one; the rollback sets it back."""

    value_key: ClassVar[str] = ""

    def check(self, apply: Mapping[str, Any]) -> list[str]:
        if self.value_key not in apply:
            return [f"field 'apply.{self.value_key}': required by template {self.name!r}"]
        return self.check_value(apply[self.value_key])

    def check_value(self, value: Any) -> list[str]:
        return []

    def capture(self, client: Any, bucket: str) -> Any:
        """The current value (JSON), None when unset."""
        raise NotImplementedError

    def restore(self, client: Any, bucket: str, value: Any) -> None:
        """Set ``value`` (as :meth:`capture` returned it); None unsets."""
        raise NotImplementedError

    def apply(self, ctx: ChangeContext, payload: Mapping[str, Any]) -> Any:
        client, bucket = self.client(ctx), payload["bucket"]
        previous = self.capture(client, bucket)
        self.restore(client, bucket, self.from_payload(payload[self.value_key]))
        return {"previous": previous}

    def from_payload(self, value: Any) -> Any:
        return value

    def rollback(
        self, ctx: ChangeContext, payload: Mapping[str, Any], rollback: Mapping[str, Any] | None, undo_state: Any
    ) -> None:
        if isinstance(undo_state, Mapping):
            self.restore(self.client(ctx), payload["bucket"], undo_state["previous"])


class PutBucketVersioning(BucketConfig):
    name = "s3.put_bucket_versioning"
    value_key = "status"
    apply_keys = frozenset({"bucket", "status"})
    required_apply_keys = frozenset({"bucket", "status"})

    def check_value(self, value: Any) -> list[str]:
        return [] if value in ("Enabled", "Suspended") else ["field 'apply.status': expected Enabled or Suspended"]

    def capture(self, client: Any, bucket: str) -> Any:
        return _versioning(client, bucket) or None

    def restore(self, client: Any, bucket: str, value: Any) -> None:
        status = value or "Suspended"  # a bucket never goes back to "never versioned"
        if value is None and not _versioning(client, bucket):
            return
        client.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": status})


class PutBucketLifecycle(BucketConfig):
    name = "s3.put_bucket_lifecycle"
    value_key = "rules"
    apply_keys = frozenset({"bucket", "rules"})
    required_apply_keys = frozenset({"bucket", "rules"})

    def check_value(self, value: Any) -> list[str]:
        if isinstance(value, list) and value and all(isinstance(r, Mapping) for r in value):
            return []
        return ["field 'apply.rules': expected a non-empty list of S3 lifecycle rules (ID, Status, Filter, ...)"]

    def capture(self, client: Any, bucket: str) -> Any:
        reply = _read(client.get_bucket_lifecycle_configuration, Bucket=bucket)
        return None if reply is None else reply.get("Rules")

    def restore(self, client: Any, bucket: str, value: Any) -> None:
        if value is None:
            client.delete_bucket_lifecycle(Bucket=bucket)
        else:
            client.put_bucket_lifecycle_configuration(Bucket=bucket, LifecycleConfiguration={"Rules": value})


class PutBucketPolicy(BucketConfig):
    name = "s3.put_bucket_policy"
    value_key = "policy"
    apply_keys = frozenset({"bucket", "policy"})
    required_apply_keys = frozenset({"bucket", "policy"})

    def check_value(self, value: Any) -> list[str]:
        if isinstance(value, (Mapping, str)):
            return []
        return ["field 'apply.policy': expected a policy document (a mapping or a JSON string)"]

    def from_payload(self, value: Any) -> Any:
        return value if isinstance(value, str) else json.dumps(value)

    def capture(self, client: Any, bucket: str) -> Any:
        reply = _read(client.get_bucket_policy, Bucket=bucket)
        return None if reply is None else reply.get("Policy")

    def restore(self, client: Any, bucket: str, value: Any) -> None:
        if value is None:
            client.delete_bucket_policy(Bucket=bucket)
        else:
            client.put_bucket_policy(Bucket=bucket, Policy=value)


class PutBucketTagging(BucketConfig):
    name = "s3.put_bucket_tagging"
    value_key = "tags"
    apply_keys = frozenset({"bucket", "tags"})
    required_apply_keys = frozenset({"bucket", "tags"})

    def check_value(self, value: Any) -> list[str]:
        return [] if isinstance(value, Mapping) and value else ["field 'apply.tags': expected a mapping of tags"]

    def from_payload(self, value: Any) -> Any:
        return {str(k): str(v) for k, v in value.items()}

    def capture(self, client: Any, bucket: str) -> Any:
        reply = _read(client.get_bucket_tagging, Bucket=bucket)
        return None if reply is None else {t["Key"]: t["Value"] for t in reply.get("TagSet", [])}

    def restore(self, client: Any, bucket: str, value: Any) -> None:
        if value is None:
            client.delete_bucket_tagging(Bucket=bucket)
        else:
            tags = [{"Key": k, "Value": v} for k, v in value.items()]
            client.put_bucket_tagging(Bucket=bucket, Tagging={"TagSet": tags})


CONFIGS: dict[str, BucketConfig] = {
    "versioning": PutBucketVersioning(),
    "lifecycle": PutBucketLifecycle(),
    "policy": PutBucketPolicy(),
    "tagging": PutBucketTagging(),
}

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
