"""The CLI's retry of an unreachable control plane: a dead port is retried for the budget,
said once, then one ControlPlaneUnreachableError; what is not transport passes at once."""

from __future__ import annotations

import pytest

from rgrid.client.blips import NOTICE, Blips
from rgrid.config import Settings
from rgrid.errors import ControlPlaneUnreachableError, NotFoundError
from rgrid.infra.temporal import connect
from tests.conftest import free_port


async def test_a_dead_temporal_port_is_retried_for_the_budget_and_said_once() -> None:
    said: list[str] = []
    blips = Blips(budget_s=1.0, notice=said.append)
    dead = Settings(temporal_address=f"127.0.0.1:{free_port()}")
    with pytest.raises(ControlPlaneUnreachableError) as ended:
        await blips.call(lambda: connect(dead, timeout_s=0.5))
    assert said == [NOTICE]
    assert ended.value.one_line().startswith("control plane unreachable for 1 s")


async def test_an_error_that_is_not_transport_is_not_retried() -> None:
    said: list[str] = []
    calls = 0

    async def missing() -> None:
        nonlocal calls
        calls += 1
        raise NotFoundError("no execution 'exec-x'")

    with pytest.raises(NotFoundError):
        await Blips(budget_s=60, notice=said.append).call(missing)
    assert calls == 1
    assert said == []


async def test_a_call_that_recovers_within_the_budget_returns_its_answer() -> None:
    said: list[str] = []
    answers = iter([ConnectionRefusedError("down"), ConnectionRefusedError("down"), None])

    async def flaky() -> str:
        failure = next(answers)
        if failure is not None:
            raise failure
        return "answer"

    assert await Blips(budget_s=60, notice=said.append).call(flaky) == "answer"
    assert said == [NOTICE]
