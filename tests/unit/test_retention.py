from __future__ import annotations

from datetime import UTC, datetime

from rgrid.infra.retention import expires_at, lifecycle_rules, merge_rules


def test_outputs_expire_at_the_midnight_after_their_retention_days() -> None:
    stored = datetime(2026, 3, 1, 15, 30, tzinfo=UTC)
    assert expires_at(stored, 30) == datetime(2026, 4, 1, tzinfo=UTC)
    assert expires_at(datetime(2026, 3, 1, tzinfo=UTC), 1) == datetime(2026, 3, 2, tzinfo=UTC)


def test_rules_cover_each_area_under_the_storage_prefix() -> None:
    rules = {r["ID"]: r for r in lifecycle_rules("team/", 30, 7)}
    assert rules["rgrid:team/outputs"]["Filter"] == {"Prefix": "team/outputs/"}
    assert rules["rgrid:team/outputs"]["Expiration"] == {"Days": 30}
    assert rules["rgrid:team/logs"]["Expiration"] == {"Days": 30}
    assert rules["rgrid:team/cas"]["Expiration"] == {"Days": 7}
    assert rules["rgrid:team/multipart"]["AbortIncompleteMultipartUpload"] == {
        "DaysAfterInitiation": 1
    }


def test_merging_keeps_other_rules_and_replaces_ours() -> None:
    theirs = {"ID": "backups", "Filter": {"Prefix": "b/"}, "Status": "Enabled"}
    old = lifecycle_rules("", 10, 7)
    new = lifecycle_rules("", 30, 7)
    merged = merge_rules([theirs, *old], new)
    assert merged == [theirs, *new]
