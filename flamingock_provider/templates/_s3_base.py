"""What every ``s3.*`` template shares: the base class, reads that tolerate absence, object capture/restore.

No boto3/botocore import at module level.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
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


def check_str(payload: Mapping[str, Any], key: str) -> list[str]:
    value = payload.get(key)
    if key not in payload or (isinstance(value, str) and value):
        return []
    return [f"field 'apply.{key}': expected a non-empty string, got {value!r}"]


def _missing(err: Exception) -> bool:
    response = getattr(err, "response", None)
    return isinstance(response, Mapping) and str(response.get("Error", {}).get("Code")) in _MISSING


def read(call: Any, **kwargs: Any) -> Any:
    """Call an S3 getter; None when the thing it reads does not exist."""
    from botocore.exceptions import ClientError

    try:
        return call(**kwargs)
    except ClientError as err:
        if _missing(err):
            return None
        raise


def versioning(client: Any, bucket: str) -> str:
    return str(client.get_bucket_versioning(Bucket=bucket).get("Status") or "")


def bucket_exists(client: Any, bucket: str) -> bool:
    return read(client.head_bucket, Bucket=bucket) is not None


class S3Template(Template):
    """Common parts: an aws target, a ``bucket``, rollbacks derived from the undo state."""

    target_kind = "aws"

    def validate(self, apply: Mapping[str, Any], rollback: Mapping[str, Any] | None) -> list[str]:
        problems = super().validate(apply, rollback) + check_str(apply, "bucket")
        if rollback is not None:
            problems.append(f"field 'rollback': {self.name!r} derives its rollback from what apply replaced; remove it")
        return problems + self.check(apply)

    def check(self, apply: Mapping[str, Any]) -> list[str]:
        return []

    def derives_rollback(self, apply: Mapping[str, Any]) -> bool:
        return True

    def client(self, ctx: ChangeContext) -> Any:
        return aws_session(ctx, self.name).client("s3")

    # -- risk and impact (SPEC §14) --------------------------------------------------------------

    level: ClassVar[str] = "safe"
    effect: ClassVar[str] = "creates"

    def risk(self, apply: Mapping[str, Any], *, dialect: str | None = None) -> list[tuple[str, str]]:
        where = f"s3://{apply.get('bucket')}/{apply['key']}" if "key" in apply else f"bucket {apply.get('bucket')}"
        return [(self.level, f"{self.name} {where}: {self.effect}")]


LIST_CAP = 1000  # objects listed for an impact estimate: one ListObjectsV2 page


def count_objects(client: Any, bucket: str, prefix: str = "") -> str:
    """``"N objects"`` under ``prefix`` from one listing page, ``"1000+ objects"`` past it."""
    reply = read(client.list_objects_v2, Bucket=bucket, Prefix=prefix, MaxKeys=LIST_CAP)
    if reply is None:
        return "does not exist"
    n = int(reply.get("KeyCount", len(reply.get("Contents", []))))
    under = f" under {prefix}" if prefix else ""
    return f"{n:,}{'+' if reply.get('IsTruncated') else ''} objects{under}"


def describe_object(client: Any, bucket: str, key: str) -> str:
    head = read(client.head_object, Bucket=bucket, Key=key)
    if head is None:
        return f"s3://{bucket}/{key}: absent"
    return f"s3://{bucket}/{key}: {int(head.get('ContentLength', 0)):,} bytes"


# -- objects: capture and restore -----------------------------------------------------------


def capture_object(client: Any, bucket: str, key: str) -> dict[str, Any] | None:
    """The object's body and headers, or None when there is none; refuse past the size cap."""
    head = read(client.head_object, Bucket=bucket, Key=key)
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


def undo_object(client: Any, bucket: str, key: str, state: Any) -> None:
    """Undo a put or delete of ``key`` from what the apply recorded."""
    if not isinstance(state, Mapping):
        return  # the single S3 call of the apply failed: nothing changed
    if state.get("version_id"):
        client.delete_object(Bucket=bucket, Key=key, VersionId=state["version_id"])
    elif state.get("previous") is not None:
        _restore_object(client, bucket, key, state["previous"])
    elif state.get("created"):
        client.delete_object(Bucket=bucket, Key=key)
