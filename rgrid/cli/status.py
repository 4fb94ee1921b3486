"""`rgrid status` and `rgrid cancel`: one execution or batch, as it stands."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from rgrid.cli.batch import render_status
from rgrid.cli.common import with_session
from rgrid.cli.output import (
    JsonOption,
    cost,
    duration,
    format_cost,
    out,
    phase_text,
    print_json,
    when,
)
from rgrid.client import batch, queue
from rgrid.client.session import Session
from rgrid.client.waiting import wait_report
from rgrid.client.watch import current_status
from rgrid.config_parts import StorageConfig
from rgrid.infra.retention import outputs_expire_at
from rgrid.models.execution import ExecutionStatus, Phase

if TYPE_CHECKING:
    from rgrid.money.report import ExecutionCost


def status(
    execution_id: Annotated[str, typer.Argument(help="An execution id, or a batch id.")],
    json_output: JsonOption = False,
) -> None:
    """Show an execution's phase, node, times, exit code, attempts, cost; or a batch's counts."""

    async def body(session: Session) -> None:
        from rgrid.client import money  # SQLAlchemy: only for the commands that price

        if execution_id.startswith("batch-"):
            progress = await batch.progress(session, execution_id)
            priced = await money.of_batch_or_none(session, execution_id)
            if json_output:
                data = progress.model_dump(mode="json", exclude={"state"})
                if priced is not None:
                    data["cost_microns"] = priced.executions_microns
                    data["idle_caused_microns"] = priced.idle_microns
                    data["cost_provisional"] = priced.provisional
                print_json(data)
            else:
                render_status(progress)
                if priced is not None:
                    out.print(
                        f"[bold]cost[/bold]      {format_cost(priced.executions_microns)} "
                        f"{_final(priced.provisional)}; idle it caused "
                        f"{format_cost(priced.idle_microns)}"
                    )
            return
        found = await current_status(session, execution_id)
        # A cached run returns outputs its source stored when that one finished.
        source = found
        if found.cached_from:
            source = await (await session.ledger()).get(found.cached_from)
        expiry = outputs_expire_at(StorageConfig.of(session.settings), source.finished_at)
        priced_run = await money.of_execution(session, execution_id)
        cost_text = _cost_text(found, priced_run)
        place = await queue.standing(session, found)
        waiting = await wait_report(session, found) if found.phase is Phase.QUEUED else None
        if json_output:
            data = found.model_dump(mode="json")
            if priced_run.node_id:  # the ledger knows its node: the amortized figure
                data["cost_microns"] = priced_run.cost_microns
            data["cost_provisional"] = priced_run.provisional or not (
                priced_run.node_id or found.cached
            )
            data["outputs_expire_at"] = expiry
            data["queue"] = place.model_dump() if place else None
            data["waiting"] = waiting.model_dump(mode="json") if waiting else None
            print_json(data)
            return
        table = Table(show_header=False, box=None)
        rows = [
            ("id", found.execution_id),
            ("phase", phase_text(found.phase)),
            ("script", " ".join([found.script, *found.args])),
            ("node", found.node_id or "-"),
            ("runtime", found.runtime or "-"),
            ("attempts", str(found.attempts)),
            ("priority", str(found.priority)),
            ("created", when(found.created_at)),
            ("started", when(found.started_at)),
            ("finished", when(found.finished_at)),
            ("duration", duration(found)),
            ("exit code", "-" if found.exit_code is None else str(found.exit_code)),
            ("cost", cost_text),
            ("tags", ", ".join(f"{k}={v}" for k, v in found.tags.items()) or "-"),
            ("outputs", str(len(found.outputs))),
        ]
        if found.outputs:
            rows.append(("expires", when(expiry) if expiry else "never (local storage)"))
        if place is not None:
            rows.append(("queue", _standing_text(place)))
        if found.cached:
            rows.append(("cached", f"outputs of {found.cached_from}; ran on no node"))
        if found.error:
            rows.append(("error", found.error))
        if waiting is not None:
            rows.append(("waiting", waiting.line()))
        for key, value in rows:
            table.add_row(f"[bold]{key}[/bold]", value)
        out.print(table)

    with_session(body)


def _standing_text(place: queue.Standing) -> str:
    eta = f", starts in ~{place.eta_s:.0f} s" if place.eta_s is not None else ""
    return (
        f"position {place.position} of {place.waiting} (estimate), "
        f"{place.pollers} node(s) polling{eta}"
    )


def _final(provisional: bool) -> str:
    return "(provisional: its billing hour is still open)" if provisional else "(final)"


def _cost_text(found: ExecutionStatus, priced: ExecutionCost) -> str:
    if found.cached:
        return f"{cost(found)} (served from the cache)"
    if priced.node_id:
        return f"{format_cost(priced.cost_microns)} {_final(priced.provisional)}"
    # Its node is not in the ledger: the figure it recorded at its end, which stays open.
    return f"{cost(found)} (provisional: its node has no ledger record)"
