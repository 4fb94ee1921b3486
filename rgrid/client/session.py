"""A Session holds what a client needs: settings, storage, Temporal and the ledger,
each opened on first use (so `rgrid list` never waits for Temporal)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from temporalio.client import Client

from rgrid.client.blips import Blips
from rgrid.config import Settings
from rgrid.infra.storage import open_storage
from rgrid.infra.storage.base import Storage, Track
from rgrid.infra.temporal import connect

if TYPE_CHECKING:
    from rgrid.cache.service import ResultCache
    from rgrid.infra.ledger import Ledger


class Session:
    """Lazily opened connections to the parts of one rgrid deployment."""

    def __init__(self, settings: Settings, ensure_stack: Callable[[], None] | None = None) -> None:
        self.settings = settings
        self.storage: Storage = open_storage(settings.effective_storage_url)
        self._ensure_stack = ensure_stack
        # Set by the CLI to show large transfers; None shows nothing.
        self.track: Track | None = None
        self._client: Client | None = None
        self._ledger: Ledger | None = None
        # Set by the CLI: how to say once that the control plane is away and retried.
        self.notice: Callable[[str], None] | None = None
        self.blips = Blips(
            settings.unreachable_retry_s,
            self._say,
            gone=self._stack_gone if settings.embedded and ensure_stack is not None else None,
        )

    def _say(self, line: str) -> None:
        if self.notice is not None:
            self.notice(line)

    def _stack_gone(self) -> str | None:
        from rgrid.client.stack import stopped_reason

        return stopped_reason(self.settings)

    async def temporal(self) -> Client:
        """The Temporal client; starts the embedded stack first when that is the setup."""
        if self._client is None:
            if self.settings.embedded and self._ensure_stack is not None:
                self._ensure_stack()
            self._client = await connect(self.settings)
        return self._client

    async def ledger(self) -> Ledger:
        """The execution ledger."""
        if self._ledger is None:
            # Imported here: SQLAlchemy adds a third of a second to every command's start,
            # and `rgrid run` needs the ledger only when an execution did not succeed.
            from rgrid.infra.ledger import Ledger

            url = self.settings.effective_database_url
            # A client migrates only a SQLite ledger (its own file); a shared database is
            # migrated by workers and `rgrid admin setup`, where the rights to do so live.
            self._ledger = await Ledger.open(url, migrate=url.startswith("sqlite"))
        return self._ledger

    @property
    def ledger_open(self) -> bool:
        """True once something in this session has used the ledger."""
        return self._ledger is not None

    async def result_cache(self) -> ResultCache:
        """The result cache, kept in the ledger's database."""
        from rgrid.cache.service import ResultCache

        return ResultCache(await self.ledger(), self.storage, self.settings.cache_retention)

    async def close(self) -> None:
        """Release what was opened."""
        await self.storage.aclose()
        if self._ledger is not None:
            await self._ledger.close()
