"""Kill -9 what must be survived, mid-batch; count lost and duplicated script runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from rgrid.infra import processes
from tests.chaos.conftest import Counter, Stack, report, start_batch

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1500)]


def finished(n: int):  # type: ignore[no-untyped-def]
    return lambda count: sum(count.done.values()) >= n


def assert_nothing_lost_or_run_twice(
    scenario: str,
    counter: Counter,
    batch,
    stack: Stack,  # type: ignore[no-untyped-def]
) -> None:
    code, stderr = batch.finish()
    figures = report(scenario, counter, batch, stack, code)
    assert code == 0, stderr[-2000:]
    assert figures["lost"] == 0, counter.lost(batch.items)
    assert figures["duplicated"] == 0, counter.duplicated(batch.items)
    assert figures["missing_outputs"] == 0, batch.missing_outputs()


def test_control_worker_killed_three_times_loses_and_repeats_nothing(
    stack: Stack, counter: tuple[Counter, str], tmp_path: Path
) -> None:
    count, url = counter
    batch = start_batch(stack, tmp_path / "work", url)
    after = 10
    for _ in range(3):
        count.wait_for(finished(after))
        stack.kill("control")
        # The next kill only once the batch moves again: three outages, not one long one.
        after = sum(count.done.values()) + 6
    assert_nothing_lost_or_run_twice("control-killed-3x", count, batch, stack)


def test_temporal_server_killed_loses_and_repeats_nothing(
    stack: Stack, counter: tuple[Counter, str], tmp_path: Path
) -> None:
    count, url = counter
    batch = start_batch(stack, tmp_path / "work", url)
    count.wait_for(finished(20))
    stack.kill("temporal")
    assert_nothing_lost_or_run_twice("temporal-killed", count, batch, stack)


def test_agent_killed_mid_item_loses_and_repeats_nothing(
    stack: Stack, counter: tuple[Counter, str], tmp_path: Path
) -> None:
    count, url = counter
    batch = start_batch(stack, tmp_path / "work", url)
    count.wait_for(finished(20))
    agent = stack.children()["agent-local-1"].process
    assert agent is not None
    killed: list[str] = []

    def mid_item(c: Counter) -> bool:
        # A script of this agent (its child; the item's name is in its command line)
        # has reported its start and not its end.
        for pid in processes.children_of(agent.pid):
            try:
                command = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                continue
            killed[:] = [i for i in c.running() if i.encode() in command]
            if killed:
                return True
        return False

    count.wait_for(mid_item)
    stack.kill("agent-local-1")
    stack.kills[-1]["item"] = killed[0]
    assert_nothing_lost_or_run_twice("agent-killed-mid-item", count, batch, stack)
    assert count.started[killed[0]] == 2  # killed mid-run, then run once, to its end
