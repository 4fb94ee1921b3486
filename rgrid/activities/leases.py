"""Node slots as leases, the slot supplier that makes Temporal the scheduler, and the
node pool's calls about them (ping, drain).

The agent's claim worker polls the shared queue only while the node has a free slot:
its custom slot supplier blocks in `reserve_slot` until one is free. A `claim_node`
task turns the reserved slot into a lease that outlives the task; the lease ends when
the execution releases it or stops renewing it.
"""

from __future__ import annotations

import asyncio
import threading
from datetime import datetime

from temporalio import activity
from temporalio.worker import (
    CustomSlotSupplier,
    SlotMarkUsedContext,
    SlotPermit,
    SlotReleaseContext,
    SlotReserveContext,
)

from rgrid import names
from rgrid.models.node import NodeActionInput, NodeLease, NodeLoad


class LeaseBook:
    """Free slots and open leases of one node; safe to call from Temporal's threads."""

    def __init__(self, slots: int) -> None:
        self.slots = slots
        self._free = slots
        self._claimed_tasks = 0
        self._leases: dict[str, NodeLease] = {}
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._changed: asyncio.Event | None = None
        self.draining = False

    def drain(self) -> None:
        """Take no more claims; open leases run to their end."""
        self.draining = True
        self._wake()

    async def reserve(self) -> None:
        """Wait for a free slot and take it."""
        if self._changed is None:
            self._loop = asyncio.get_running_loop()
            self._changed = asyncio.Event()
        while True:
            self._changed.clear()
            with self._lock:
                if self._free > 0 and not self.draining:
                    self._free -= 1
                    return
            await self._changed.wait()

    def unreserve(self) -> None:
        """Give back a reserved slot that no task used."""
        self._give_back()

    def open(self, lease: NodeLease) -> None:
        """Record a lease; it keeps the slot its claim task reserved."""
        with self._lock:
            self._leases[lease.lease_id] = lease
            self._claimed_tasks += 1

    def claim_task_done(self) -> None:
        """A claim task ended: its slot now belongs to its lease, or is free if none opened."""
        with self._lock:
            if self._claimed_tasks > 0:
                self._claimed_tasks -= 1
                return
        self._give_back()

    def get(self, lease_id: str) -> NodeLease | None:
        """The open lease with this id, if any."""
        with self._lock:
            return self._leases.get(lease_id)

    def extend(self, lease_id: str, until: datetime) -> bool:
        """Push a lease's expiry; False if it is no longer open."""
        with self._lock:
            lease = self._leases.get(lease_id)
            if lease is None:
                return False
            lease.expires_at = max(lease.expires_at, until)
            return True

    def close(self, lease_id: str) -> NodeLease | None:
        """End a lease and free its slot (idempotent)."""
        with self._lock:
            lease = self._leases.pop(lease_id, None)
        if lease is not None:
            self._give_back()
        return lease

    def expired(self, now: datetime) -> list[str]:
        """Ids of leases whose holder stopped renewing them."""
        with self._lock:
            return [lid for lid, lease in self._leases.items() if lease.expires_at < now]

    @property
    def free(self) -> int:
        """Slots neither leased nor reserved by a poller."""
        with self._lock:
            return self._free

    @property
    def in_use(self) -> int:
        """Slots held by open leases."""
        with self._lock:
            return len(self._leases)

    def _give_back(self) -> None:
        with self._lock:
            self._free += 1
        self._wake()

    def _wake(self) -> None:
        if self._loop is not None and self._changed is not None:
            self._loop.call_soon_threadsafe(self._changed.set)


class LeaseSlotSupplier(CustomSlotSupplier):
    """Lets the claim worker poll only while the node has a free slot."""

    def __init__(self, book: LeaseBook) -> None:
        self._book = book

    async def reserve_slot(self, ctx: SlotReserveContext) -> SlotPermit:
        await self._book.reserve()
        return SlotPermit()

    def try_reserve_slot(self, ctx: SlotReserveContext) -> SlotPermit | None:
        return None  # no eager tasks: claims always come through a poll

    def mark_slot_used(self, ctx: SlotMarkUsedContext) -> None:
        pass

    def release_slot(self, ctx: SlotReleaseContext) -> None:
        if ctx.slot_info is None:
            self._book.unreserve()
        else:
            self._book.claim_task_done()


class LeaseBookActivities:
    """The node pool's calls to one node about its slots: ping (its load) and drain."""

    def __init__(self, node_id: str, book: LeaseBook) -> None:
        self._node_id = node_id
        self._book = book

    @activity.defn(name=names.PING_NODE)
    async def ping_node(self, request: NodeActionInput) -> NodeLoad:
        return NodeLoad(
            node_id=self._node_id,
            slots=self._book.slots,
            in_use=self._book.in_use,
            draining=self._book.draining,
        )

    @activity.defn(name=names.DRAIN_NODE)
    async def drain_node(self, request: NodeActionInput) -> NodeLoad:
        """Take no more claims; answers the load, so an idle node can go at once."""
        self._book.drain()
        return await self.ping_node(request)
