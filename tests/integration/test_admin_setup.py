"""`rgrid admin setup` against real services: a Postgres cluster, a local S3 server and a
Temporal dev server that knows none of rgrid's search attributes."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aioboto3
import pytest
from temporalio.api.operatorservice.v1 import ListSearchAttributesRequest
from temporalio.testing import WorkflowEnvironment

from rgrid.client.setup import search_attributes, setup
from rgrid.config import Settings
from rgrid.errors import ConfigError
from rgrid.infra.ledger.migrations import head_revision
from rgrid.worker.dev import temporal_binary
from tests.postgres import Cluster

pytestmark = pytest.mark.integration


@pytest.fixture
async def bare_temporal() -> AsyncIterator[WorkflowEnvironment]:
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=temporal_binary(), ui=False
    )
    async with env:
        yield env


@pytest.fixture
async def s3(aws_env: None) -> AsyncIterator[Any]:
    async with aioboto3.Session().client("s3") as client:
        yield client


async def test_setup_prepares_every_shared_service_and_a_second_run_changes_nothing(
    postgres: Cluster, s3: Any, bare_temporal: WorkflowEnvironment, tmp_path: Path
) -> None:
    bucket = f"rgrid-{uuid.uuid4().hex[:12]}"
    await s3.create_bucket(Bucket=bucket)
    others = {"ID": "backups", "Filter": {"Prefix": "backups/"}, "Status": "Enabled",
              "Expiration": {"Days": 365}}  # fmt: skip
    await s3.put_bucket_lifecycle_configuration(
        Bucket=bucket, LifecycleConfiguration={"Rules": [others]}
    )
    settings = Settings(
        home=tmp_path,
        database_url=await postgres.create_database(),
        storage_url=f"s3://{bucket}/team",
        temporal_address=bare_temporal.client.service_client.config.target_host,
        retention_days=12,
    )

    first = {step.part: step for step in await setup(settings)}
    second = {step.part: step for step in await setup(settings)}

    assert first["ledger"].changed and f"schema {head_revision()}" in first["ledger"].detail
    assert first["lifecycle"].changed and first["search attributes"].changed
    assert not any(step.changed for step in second.values()), second
    rules = {
        rule["ID"]: rule
        for rule in (await s3.get_bucket_lifecycle_configuration(Bucket=bucket))["Rules"]
    }
    assert rules["backups"]["Expiration"] == {"Days": 365}  # not rgrid's: left alone
    assert rules["rgrid:team/outputs"]["Filter"]["Prefix"] == "team/outputs/"
    assert rules["rgrid:team/outputs"]["Expiration"] == {"Days": 12}
    assert rules["rgrid:team/logs"]["Expiration"] == {"Days": 12}
    assert rules["rgrid:team/cas"]["Expiration"] == {"Days": settings.input_retention_days}
    listed = await bare_temporal.client.operator_service.list_search_attributes(
        ListSearchAttributesRequest(namespace="default")
    )
    assert set(search_attributes()) <= set(listed.custom_attributes)


async def test_setup_creates_a_missing_bucket(aws_env: None, s3: Any, tmp_path: Path) -> None:
    bucket = f"rgrid-{uuid.uuid4().hex[:12]}"
    settings = Settings(home=tmp_path, storage_url=f"s3://{bucket}")

    steps = {step.part: step for step in await setup(settings)}

    assert steps["bucket"].changed and "created" in steps["bucket"].detail
    await s3.head_bucket(Bucket=bucket)
    assert steps["search attributes"].detail.endswith("the embedded server registers them at start")


async def test_setup_without_credentials_is_one_clear_error(
    aws_env: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    settings = Settings(home=tmp_path, storage_url=f"s3://rgrid-{uuid.uuid4().hex[:12]}")
    with pytest.raises(ConfigError) as caught:
        await setup(settings)
    assert "AWS_ACCESS_KEY_ID" in caught.value.one_line()
