"""`rgrid cost` (reports, breakdowns, spending limits) and `rgrid estimate`."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import typer
from rich.table import Table
from typer.core import TyperGroup

from rgrid.cli.common import with_session
from rgrid.cli.output import JsonOption, err, out, print_json, when
from rgrid.client.batch import expand_patterns
from rgrid.client.capacity import effective_parallel
from rgrid.client.parse import parse_duration
from rgrid.client.session import Session
from rgrid.errors import UserInputError
from rgrid.money.pricing import format_microns

if TYPE_CHECKING:
    from pydantic import BaseModel

    from rgrid.money.estimate import Estimate

# rgrid.client.money loads SQLAlchemy: imported inside the commands, so every other
# command keeps its quick start.

GroupBy = Literal["day", "project", "tag", "batch", "script"]


class _CostGroup(TyperGroup):
    """`rgrid cost exec-…` / `rgrid cost batch-…` read as `rgrid cost show ID`."""

    def parse_args(self, ctx: typer.Context, args: list[str]) -> list[str]:  # type: ignore[override]
        args = original_spellings(args)
        if args and args[0].startswith(("exec-", "batch-")):
            args = ["show", *args]
        return super().parse_args(ctx, args)


def original_spellings(args: list[str]) -> list[str]:
    """The original RGrid's `--last 7d` (our --since) and `--execution ID` (a breakdown)."""
    if len(args) >= 2 and args[0] in ("--execution", "--batch"):
        return ["show", args[1], *args[2:]]
    if args and args[0].startswith(("--execution=", "--batch=")):
        return ["show", args[0].split("=", 1)[1], *args[1:]]
    return ["--since" if a == "--last" else a.replace("--last=", "--since=", 1) for a in args]


app = typer.Typer(
    cls=_CostGroup,
    help="What runs cost: reports that reconcile with node bills, breakdowns, limits. "
    "`rgrid cost exec-…` (or --execution ID) or `rgrid cost batch-…` breaks one down.",
    invoke_without_command=True,
)


def parse_when(text: str, now: datetime) -> datetime:
    """`7d`/`24h` before now, or a date / ISO time (UTC unless it says otherwise)."""
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return now - timedelta(seconds=parse_duration(text))
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed


@app.callback()
def report(
    ctx: typer.Context,
    since: Annotated[
        str,
        typer.Option(
            "--since",
            help="Start: a span back from now (7d, 24h) or a date (2026-11-01); "
            "--last 7d says the same.",
        ),
    ] = "7d",
    until: Annotated[str | None, typer.Option(help="End (a date or time); default now.")] = None,
    by: Annotated[
        GroupBy | None,
        typer.Option(
            "--by",
            help="Break the totals down (tag: by whole tag set; idle goes to the batch or "
            "project that caused its node, else to (pool)).",
        ),
    ] = None,
    project: Annotated[
        str | None, typer.Option(help="Only this project's runs and the idle it caused.")
    ] = None,
    json_output: JsonOption = False,
) -> None:
    """Cost of the billed hours in a window: executions + idle = node bills, to the micron."""
    if ctx.invoked_subcommand is not None:
        return
    now = datetime.now(UTC)
    start, end = parse_when(since, now), parse_when(until, now) if until else None
    if end is not None and end <= start:
        raise UserInputError("--until is not after --since", "swap them")

    async def body(session: Session) -> None:
        from rgrid.client import money
        from rgrid.money.breakdown import group_by

        _warn(await money.pending_alerts(session))
        found = await money.report(session, start, end, project)
        rows = group_by(found, by) if by else []
        if json_output:
            data: dict[str, Any] = found.model_dump(mode="json", exclude={"by_day"})
            data["executions"] = [c.model_dump(mode="json") for c in found.executions]
            if by:
                data["by"] = by
                data["groups"] = [row.model_dump() for row in rows]
            print_json(data)
            return
        status = "provisional (an hour is still open)" if found.provisional else "final"
        scope = f" for project {project}" if project else ""
        out.print(
            f"{when(start)} to {when(end or now)}{scope}: "
            f"{len([c for c in found.executions if not c.cached])} run(s) on "
            f"{len(found.nodes)} node(s), {status}"
        )
        if rows:
            table = Table(by or "", "runs", "executions", "idle", "total")
            for row in rows:
                table.add_row(
                    row.key,
                    str(row.executions),
                    format_microns(row.executions_microns, found.currency),
                    format_microns(row.idle_microns, found.currency),
                    format_microns(row.executions_microns + row.idle_microns, found.currency),
                )
            out.print(table)
        money_of = lambda amount: format_microns(amount, found.currency)  # noqa: E731
        out.print(f"executions  {money_of(found.executions_microns)}")
        out.print(f"idle        {money_of(found.idle_microns)}")
        out.print(f"node bills  {money_of(found.bill_microns)}")

    with_session(body)


@app.command("show", hidden=True)
def show(
    target: Annotated[str, typer.Argument(help="An execution id (exec-…) or batch id.")],
    json_output: JsonOption = False,
) -> None:
    """Breakdown of one execution's or batch's cost."""

    async def body(session: Session) -> None:
        from rgrid.client import money

        found: BaseModel
        if target.startswith("batch-"):
            found = batch = await money.of_batch(session, target)
            rows = [
                ("batch", batch.batch_id),
                ("runs", str(len(batch.executions))),
                ("runtime share", format_microns(batch.executions_microns)),
                ("idle it caused", format_microns(batch.idle_microns)),
                ("total", format_microns(batch.executions_microns + batch.idle_microns)),
                ("node hours", str(batch.node_hours)),
                ("status", _final(batch.provisional)),
            ]
        else:
            found = cost = await money.of_execution(session, target)
            rows = [
                ("execution", cost.execution_id),
                ("runtime share", format_microns(cost.cost_microns)),
                (
                    "idle share",
                    f"{format_microns(cost.idle_context_microns)} "
                    "(idle of its hours by its share; billed to the pool, not to it)",
                ),
                ("node", cost.node_id or "-"),
                ("node hours", str(cost.node_hours)),
                ("status", "cached: ran on no node" if cost.cached else _final(cost.provisional)),
            ]
        if json_output:
            print_json(found.model_dump(mode="json"))
            return
        table = Table(show_header=False, box=None)
        for key, value in rows:
            table.add_row(f"[bold]{key}[/bold]", value)
        out.print(table)

    with_session(body)


def _final(provisional: bool) -> str:
    return "provisional: a billing hour it ran in is still open" if provisional else "final"


@app.command("set-limit")
def set_limit(
    amount: Annotated[
        str, typer.Argument(help="Per month: 50, €50, EUR 50, €50/month; 0 removes.")
    ],
    project: Annotated[
        str | None, typer.Option(help="Limit this project only (default: everything).")
    ] = None,
    alert_at: Annotated[int, typer.Option(help="Warn at this percent of the limit.")] = 80,
    webhook: Annotated[
        str | None, typer.Option(help="POST a JSON alert here at each crossing.")
    ] = None,
) -> None:
    """Set a monthly spending limit: a warning at --alert-at %, new runs refused at 100 %."""

    async def body(session: Session) -> None:
        from rgrid.client import money

        limit = await money.set_limit(session, amount, project, alert_at, webhook)
        if limit is None:
            out.print("limit removed")
            return
        out.print(f"limit set: {money.describe(limit)}, warning at {limit.alert_at_percent}%")

    with_session(body)


@app.command("show-limit")
def show_limit(json_output: JsonOption = False) -> None:
    """Show the limits and this month's spend against them."""

    async def body(session: Session) -> None:
        from rgrid.client import money

        found = await money.limit_statuses(session)
        if json_output:
            print_json(
                [
                    {**s.limit.model_dump(), "spent_microns": s.spent_microns, "percent": s.percent}
                    for s in found
                ]
            )
            return
        if not found:
            out.print('no spending limit: set one with `rgrid cost set-limit "€50/month"`')
            return
        for status in found:
            state = "used up" if status.exceeded else "warning" if status.warning else "ok"
            out.print(
                f"{money.describe(status.limit)}: {format_microns(status.spent_microns)} spent "
                f"({status.percent}%, {state}); warning at {status.limit.alert_at_percent}%"
                + (f"; webhook {status.limit.webhook}" if status.limit.webhook else "")
            )

    with_session(body)


@app.command("remove-limit")
def remove_limit(
    project: Annotated[str | None, typer.Option(help="The project's limit.")] = None,
) -> None:
    """Remove a spending limit."""

    async def body(session: Session) -> None:
        from rgrid.client import money

        removed = await money.drop_limit(session, project)
        out.print("limit removed" if removed else "there was no such limit")

    with_session(body)


def estimate(
    script: Annotated[Path, typer.Argument(help="The script to estimate.")],
    batch_patterns: Annotated[
        list[str] | None,
        typer.Option("--batch", help="Count the files matching this glob (repeatable)."),
    ] = None,
    files: Annotated[int | None, typer.Option(help="Number of inputs (runs).")] = None,
    parallel: Annotated[int, typer.Option(help="How many run at once.")] = 10,
    timeout: Annotated[
        str | None, typer.Option(help="Assumed run time when there is no history.")
    ] = None,
    json_output: JsonOption = False,
) -> None:
    """Estimate what a run or batch would cost, from earlier runs of the script; starts nothing."""
    show_estimate(script, batch_patterns, files, parallel, timeout, json_output)


def show_estimate(
    script: Path,
    batch_patterns: list[str] | None,
    files: int | None,
    parallel: int,
    timeout: str | None,
    json_output: bool,
) -> None:
    """`rgrid estimate` and `rgrid run --estimate-cost`: at the parallelism the nodes allow."""
    if batch_patterns and files is not None:
        raise UserInputError("--batch and --files exclude each other", "pick one")
    runs = len(expand_patterns(batch_patterns, Path.cwd())) if batch_patterns else files or 1
    timeout_s = parse_duration(timeout) if timeout else None

    async def body(session: Session) -> None:
        from rgrid.client import money

        parallelism = effective_parallel(session.settings, parallel) if runs > 1 else None
        effective = parallelism.effective if parallelism else parallel
        found = await money.estimate_script(session, script, runs, effective, timeout_s)
        if json_output:
            print_json(found.model_dump(mode="json"))
            return
        if parallelism is not None and parallelism.reason:
            err.print(f"[yellow]{parallelism.reason}[/yellow]")
        render_estimate(found)

    with_session(body)


def render_estimate(found: Estimate) -> None:
    """An estimate, its range and how it was derived."""
    currency = found.price.currency
    out.print(
        f"estimate   {format_microns(found.expected_microns, currency)} for {found.runs} run(s)"
        f" (up to {format_microns(found.high_microns, currency)} at the 90th percentile)"
    )
    out.print(
        f"new nodes  {format_microns(found.bill_if_new_nodes_microns, currency)} if "
        f"{found.nodes} node(s) are started for it ({found.wall_ms / 3_600_000:.2f} h of work)"
    )
    for line in found.derivation:
        out.print(f"  {line}", style="dim")
    out.print("nothing was started")


def _warn(lines: list[str]) -> None:
    for line in lines:
        err.print(f"[yellow]{line}[/yellow]")
