"""What every command shares: settings for the chosen profile, a session, async running."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

from rgrid.cli.output import err
from rgrid.cli.transfer import transfer_bars
from rgrid.client import stack_launch
from rgrid.client.session import Session
from rgrid.client.stack import read_stack, start_stack
from rgrid.config import Settings, load_settings

T = TypeVar("T")


def settings() -> Settings:
    """Settings from env, the selected profile and defaults."""
    return load_settings()


def ensure_stack_for(config: Settings) -> Callable[[], None]:
    """A callback that starts the embedded stack on first use, saying so."""

    def ensure() -> None:
        # A stack this command started early is shown starting, even if it is up by now.
        if read_stack(config) is None or stack_launch.unclaimed() is not None:

            def step(text: str, after_s: float) -> None:  # each step as the stack logs it
                err.print(f"[dim]  {after_s:4.1f}s {text}[/dim]")

            with err.status("starting the embedded stack (Temporal dev server, worker, nodes)…"):
                # Steps are progress for a person at a terminal; a log or a script gets
                # only the outcome (an error stays one line). A command goes on once
                # Temporal answers: what it starts waits there for the workers.
                info = start_stack(config, on_step=step if err.is_terminal else None, workers=False)
            launch = stack_launch.launched(config.home)
            took = ""
            if launch is not None and info.answered_at is not None:
                took = f" in {info.answered_at - launch.began:.1f}s"
            starting = "" if info.ready else " (its workers are still starting)"
            err.print(f"[dim]embedded stack up{took}{starting}; Web UI at {info.ui_url}[/dim]")

    return ensure


def with_session(body: Callable[[Session], Awaitable[T]]) -> T:
    """Run an async command body with a session that is closed afterwards."""

    async def main() -> T:
        config = settings()
        session = Session(config, ensure_stack=ensure_stack_for(config))
        session.track = transfer_bars()
        session.notice = lambda line: err.print(f"[yellow]{line}[/yellow]")
        try:
            result = await body(session)
            if session.ledger_open:  # spending-limit crossings not shown yet, once each
                from rgrid.client.money import unshown_warnings

                for line in await unshown_warnings(session):
                    err.print(f"[yellow]{line}[/yellow]")
            return result
        finally:
            await session.close()

    return asyncio.run(main())
