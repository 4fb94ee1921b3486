"""`rgrid cache ls|rm|clear`: the result cache's entries."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

import typer
from rich.table import Table

from rgrid.cli.common import with_session
from rgrid.cli.output import JsonOption, out, print_json, when
from rgrid.client.parse import parse_duration
from rgrid.client.session import Session
from rgrid.errors import UserInputError

app = typer.Typer(
    help="The result cache: identical runs are answered with earlier outputs.",
    no_args_is_help=True,
)

MIN_KEY_PREFIX = 8  # shorter prefixes would too easily name more than one entry


@app.command("ls")
def list_entries(json_output: JsonOption = False) -> None:
    """List cache entries, newest first."""

    async def body(session: Session) -> None:
        entries = await (await session.result_cache()).entries()
        if json_output:
            print_json([entry.model_dump(mode="json") for entry in entries])
            return
        table = Table("key", "script", "outputs", "bytes", "created", "hits", "execution")
        for entry in entries:
            table.add_row(
                entry.key[:16],
                entry.script,
                str(len(entry.outputs)),
                str(entry.size_bytes),
                when(entry.created_at),
                str(entry.hits),
                entry.execution_id,
            )
        out.print(table if entries else "the cache is empty")

    with_session(body)


@app.command("rm")
def remove(
    key: Annotated[str, typer.Argument(help="A cache key, or its first 8+ characters.")],
) -> None:
    """Forget one entry: the next identical run runs again. Outputs stay with their run."""
    if len(key) < MIN_KEY_PREFIX:
        raise UserInputError(f"key prefix {key!r} is too short", "give at least 8 characters")

    async def body(session: Session) -> None:
        cache = await session.result_cache()
        matches = [e.key for e in await cache.entries() if e.key.startswith(key)]
        if not matches:
            raise UserInputError(f"no cache entry {key!r}", "see `rgrid cache ls`")
        if len(matches) > 1:
            raise UserInputError(f"{key!r} names {len(matches)} entries", "give more of the key")
        await cache.remove(matches)
        out.print(f"removed {matches[0]}")

    with_session(body)


@app.command("clear")
def clear(
    older_than: Annotated[
        str | None, typer.Option(help="Only entries older than this, e.g. 30d, 12h.")
    ] = None,
) -> None:
    """Forget every entry (or every entry older than --older-than)."""
    age = timedelta(seconds=parse_duration(older_than)) if older_than else None

    async def body(session: Session) -> None:
        cache = await session.result_cache()
        removed = await cache.remove([e.key for e in await cache.entries(older_than=age)])
        out.print(f"removed {removed} entr{'y' if removed == 1 else 'ies'}")

    with_session(body)
