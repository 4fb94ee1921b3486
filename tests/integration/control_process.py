"""A control worker as its own process, for tests that kill it with SIGKILL:
python -m tests.integration.control_process   (settings from RGRID_* variables)"""

from __future__ import annotations

import asyncio

from rgrid.config import load_settings
from rgrid.infra.ledger import Ledger
from rgrid.infra.storage import open_storage
from rgrid.infra.temporal import connect
from rgrid.worker.control import build_control_worker


async def serve() -> None:
    settings = load_settings()
    client = await connect(settings)
    ledger = await Ledger.open(settings.effective_database_url)
    storage = open_storage(settings.effective_storage_url)
    async with build_control_worker(client, ledger, storage, settings):
        await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(serve())
