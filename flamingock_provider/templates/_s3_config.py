"""The ``s3.put_bucket_*`` templates: a bucket setting captured, set, and set back by the rollback.

``CONFIGS`` also serves ``s3.delete_bucket``, which captures every setting and restores them on
rollback. No boto3 import at module level.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any, ClassVar

from flamingock_provider.core.context import ChangeContext
from flamingock_provider.templates._s3_base import S3Template, read, versioning


class BucketConfig(S3Template, ABC):
    """A bucket setting: capture the previous value, set the new one; the rollback sets it back."""

    value_key: ClassVar[str] = ""
    level = "rewrite"

    @property
    def effect(self) -> str:  # type: ignore[override]
        return f"replaces the bucket's {self.value_key} setting"

    def check(self, apply: Mapping[str, Any]) -> list[str]:
        if self.value_key not in apply:
            return [f"field 'apply.{self.value_key}': required by template {self.name!r}"]
        return self.check_value(apply[self.value_key])

    def check_value(self, value: Any) -> list[str]:
        return []

    @abstractmethod
    def capture(self, client: Any, bucket: str) -> Any:
        """The current value (JSON), None when unset."""

    @abstractmethod
    def restore(self, client: Any, bucket: str, value: Any) -> None:
        """Set ``value`` (as :meth:`capture` returned it); None unsets."""

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
        return versioning(client, bucket) or None

    def restore(self, client: Any, bucket: str, value: Any) -> None:
        status = value or "Suspended"  # a bucket never goes back to "never versioned"
        if value is None and not versioning(client, bucket):
            return
        client.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": status})


class PutBucketLifecycle(BucketConfig):
    name = "s3.put_bucket_lifecycle"
    value_key = "rules"
    apply_keys = frozenset({"bucket", "rules"})
    required_apply_keys = frozenset({"bucket", "rules"})

    def risk(self, apply: Mapping[str, Any], *, dialect: str | None = None) -> list[tuple[str, str]]:
        value = apply.get("rules")
        rules: list[Any] = value if isinstance(value, list) else []
        expiring = [
            str(r.get("ID", n))
            for n, r in enumerate(rules)
            if isinstance(r, Mapping) and ("Expiration" in r or "NoncurrentVersionExpiration" in r)
        ]
        if expiring:
            ids = ", ".join(expiring)
            return [("destructive", f"{self.name} bucket {apply.get('bucket')}: rules {ids} expire (delete) objects")]
        return super().risk(apply, dialect=dialect)

    def check_value(self, value: Any) -> list[str]:
        if isinstance(value, list) and value and all(isinstance(r, Mapping) for r in value):
            return []
        return ["field 'apply.rules': expected a non-empty list of S3 lifecycle rules (ID, Status, Filter, ...)"]

    def capture(self, client: Any, bucket: str) -> Any:
        reply = read(client.get_bucket_lifecycle_configuration, Bucket=bucket)
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
        reply = read(client.get_bucket_policy, Bucket=bucket)
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
        reply = read(client.get_bucket_tagging, Bucket=bucket)
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
