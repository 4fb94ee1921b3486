"""`rgrid admin setup`: make a team deployment's shared services ready for rgrid. Every
step is idempotent: run it again after an upgrade, or when unsure."""

from __future__ import annotations

from importlib import resources

import yaml
from pydantic import BaseModel
from sqlalchemy.engine import make_url
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import (
    AddSearchAttributesRequest,
    ListSearchAttributesRequest,
)
from temporalio.service import RPCError

from rgrid.config import Settings
from rgrid.errors import ConfigError
from rgrid.infra.ledger import Ledger, SchemaBehindError
from rgrid.infra.ledger.migrations import schema_revision
from rgrid.infra.retention import lifecycle_rules, merge_rules
from rgrid.infra.storage import open_storage
from rgrid.infra.temporal import connect


class SetupStep(BaseModel):
    """One thing setup looked at: what, whether it changed anything, and how it is now."""

    part: str
    changed: bool
    detail: str


async def setup(settings: Settings) -> list[SetupStep]:
    """Migrate the ledger, prepare the bucket, register search attributes."""
    return [
        await _ledger(settings),
        *await _storage(settings),
        await _search_attributes(settings),
    ]


async def _ledger(settings: Settings) -> SetupStep:
    url = settings.effective_database_url
    where = make_url(url).render_as_string(hide_password=True)
    try:
        ledger, changed = await Ledger.open(url, migrate=False), False
    except SchemaBehindError:
        ledger, changed = await Ledger.open(url, migrate=True), True
    try:
        now = await schema_revision(ledger.engine)
    finally:
        await ledger.close()
    verb = "migrated to" if changed else "at"
    return SetupStep(part="ledger", changed=changed, detail=f"{where} {verb} schema {now}")


async def _storage(settings: Settings) -> list[SetupStep]:
    url = settings.effective_storage_url
    if not url.startswith("s3://"):
        return [
            SetupStep(
                part="storage",
                changed=False,
                detail=f"{url} is a local directory: nothing expires there",
            )
        ]
    from rgrid.infra.storage.s3 import S3Storage

    storage = open_storage(url)
    assert isinstance(storage, S3Storage)
    steps = []
    try:
        created = await storage.ensure_bucket()
        steps.append(
            SetupStep(
                part="bucket",
                changed=created,
                detail=f"{storage.bucket} {'created' if created else 'exists'}",
            )
        )
        ours = lifecycle_rules(
            storage.prefix, settings.retention_days, settings.input_retention_days
        )
        existing = await storage.get_lifecycle()
        wanted = merge_rules(existing, ours)
        changed = _normal(wanted) != _normal(existing)
        if changed:
            await storage.put_lifecycle(wanted)
        steps.append(
            SetupStep(
                part="lifecycle",
                changed=changed,
                detail=f"outputs and logs expire after {settings.retention_days} days, "
                f"inputs {settings.input_retention_days} days after their last use",
            )
        )
    finally:
        await storage.aclose()
    return steps


def _normal(rules: list[dict[str, object]]) -> list[str]:
    return sorted(repr(sorted(rule.items())) for rule in rules)


_KINDS = {
    "Keyword": IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD,
    "Text": IndexedValueType.INDEXED_VALUE_TYPE_TEXT,
    "Int": IndexedValueType.INDEXED_VALUE_TYPE_INT,
    "Double": IndexedValueType.INDEXED_VALUE_TYPE_DOUBLE,
    "Bool": IndexedValueType.INDEXED_VALUE_TYPE_BOOL,
    "Datetime": IndexedValueType.INDEXED_VALUE_TYPE_DATETIME,
    "KeywordList": IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD_LIST,
}


def search_attributes() -> dict[str, IndexedValueType.ValueType]:
    """rgrid's search attributes, from temporal-dev.yaml (the dev server's own list)."""
    config = yaml.safe_load(resources.files("rgrid").joinpath("temporal-dev.yaml").read_text())
    return {name: _KINDS[kind] for name, kind in config.get("search_attributes", {}).items()}


async def _search_attributes(settings: Settings) -> SetupStep:
    wanted = search_attributes()
    if settings.embedded:
        return SetupStep(
            part="search attributes",
            changed=False,
            detail=f"{', '.join(wanted)}: the embedded server registers them at start",
        )
    client = await connect(settings)
    namespace = settings.temporal_namespace
    operator = client.operator_service
    try:
        listed = await operator.list_search_attributes(
            ListSearchAttributesRequest(namespace=namespace)
        )
        missing = {k: v for k, v in wanted.items() if k not in listed.custom_attributes}
        if missing:
            await operator.add_search_attributes(
                AddSearchAttributesRequest(namespace=namespace, search_attributes=missing)
            )
    except RPCError as exc:
        raise ConfigError(
            f"could not register search attributes in namespace {namespace!r} ({exc.message})",
            "on Temporal Cloud add them with `tcld namespace search-attributes add`: "
            + ", ".join(f"{k} ({_name(v)})" for k, v in wanted.items()),
        ) from exc
    detail = ", ".join(wanted) + f" in namespace {namespace}"
    if missing:
        detail = f"registered {', '.join(missing)}; " + detail
    return SetupStep(part="search attributes", changed=bool(missing), detail=detail)


def _name(kind: IndexedValueType.ValueType) -> str:
    return next(name for name, value in _KINDS.items() if value == kind)
