"""How long stored things live: the S3 lifecycle rules `rgrid admin setup` installs, and
when an execution's outputs expire under them."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from typing import Any

from rgrid.config_parts import StorageConfig

# Rule ids rgrid owns on a bucket; other rules on the bucket are left alone.
RULE_PREFIX = "rgrid"


def rule_id(prefix: str, area: str) -> str:
    """The id of rgrid's rule for one area (outputs, logs, …) under a storage prefix."""
    return f"{RULE_PREFIX}:{prefix}{area}"


def lifecycle_rules(prefix: str, retention_days: int, input_days: int) -> list[dict[str, Any]]:
    """Rules expiring outputs, logs and batch manifests after `retention_days`, inputs
    (`cas/`) after `input_days` without use, and unfinished multipart uploads after a day."""
    rules = [
        _expire(prefix, "outputs/", retention_days),
        _expire(prefix, "logs/", retention_days),
        _expire(prefix, "batches/", retention_days),
        _expire(prefix, "cas/", input_days),
    ]
    rules.append(
        {
            "ID": rule_id(prefix, "multipart"),
            "Filter": {"Prefix": prefix},
            "Status": "Enabled",
            "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 1},
        }
    )
    return rules


def _expire(prefix: str, area: str, days: int) -> dict[str, Any]:
    return {
        "ID": rule_id(prefix, area.rstrip("/")),
        "Filter": {"Prefix": prefix + area},
        "Status": "Enabled",
        "Expiration": {"Days": days},
    }


def merge_rules(existing: list[dict[str, Any]], ours: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The bucket's rules with rgrid's replaced: others' rules are kept as they were."""
    mine = {rule["ID"] for rule in ours}
    return [rule for rule in existing if rule.get("ID") not in mine] + ours


def expires_at(stored_at: datetime, days: int) -> datetime:
    """When S3 removes an object stored at `stored_at` under a rule of `days` days: S3
    counts whole days and rounds up to the next midnight UTC."""
    moment = stored_at.astimezone(UTC) + timedelta(days=days)
    midnight = datetime.combine(moment.date(), time(), tzinfo=UTC)
    return midnight if midnight == moment else midnight + timedelta(days=1)


def outputs_expire_at(storage: StorageConfig, stored_at: datetime | None) -> datetime | None:
    """When the bucket's lifecycle rule removes outputs stored at `stored_at` (None:
    nothing expires them, or they are not stored yet)."""
    if stored_at is None or not storage.url.startswith("s3://"):
        return None
    return expires_at(stored_at, storage.retention_days)
