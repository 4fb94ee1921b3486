from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from rgrid.activities.leases import LeaseBook
from rgrid.models.node import NodeLease


def lease(lease_id: str, expires_in_s: float = 60) -> NodeLease:
    return NodeLease(
        lease_id=lease_id,
        node_id="n",
        queue="q",
        expires_at=datetime.now(UTC) + timedelta(seconds=expires_in_s),
    )


async def test_a_full_node_stops_reserving_until_a_lease_ends() -> None:
    book = LeaseBook(slots=1)
    await book.reserve()
    book.open(lease("a"))
    book.claim_task_done()  # the claim task ended; its slot now belongs to lease a
    waiting = asyncio.create_task(book.reserve())
    await asyncio.sleep(0.05)
    assert not waiting.done()
    book.close("a")
    await asyncio.wait_for(waiting, 1)
    assert book.free == 0


async def test_an_unused_reservation_and_a_failed_claim_give_the_slot_back() -> None:
    book = LeaseBook(slots=2)
    await book.reserve()
    await book.reserve()
    book.unreserve()  # the poller gave up
    book.claim_task_done()  # a claim task that failed before opening a lease
    assert book.free == 2 and book.in_use == 0


async def test_expired_leases_are_reported_and_extension_keeps_them() -> None:
    book = LeaseBook(slots=2)
    for lease_id in ("old", "kept"):
        await book.reserve()
        book.open(lease(lease_id, expires_in_s=-1))
        book.claim_task_done()
    assert book.extend("kept", datetime.now(UTC) + timedelta(seconds=60))
    assert book.expired(datetime.now(UTC)) == ["old"]
    assert book.close("old") is not None and book.close("old") is None
    assert book.free == 1
