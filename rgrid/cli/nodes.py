"""`rgrid nodes [drain|destroy ID]`: the nodes rgrid started, and steering the node pool."""

from __future__ import annotations

from typing import Annotated

import typer

from rgrid.cli.common import with_session
from rgrid.cli.output import JsonOption, out, print_json
from rgrid.cli.tables import Column, fitted_table
from rgrid.client import nodes
from rgrid.client.session import Session
from rgrid.money.pricing import format_microns

app = typer.Typer(help="Nodes: list them; drain or destroy one of the node pool's.")

NodeId = Annotated[str, typer.Argument(help="A node id from `rgrid nodes`.")]


NODE_COLUMNS = [
    Column("state", priority=4),
    Column("type", priority=1),
    Column("where", priority=0),
    Column("age", priority=2, justify="right"),
    Column("billed h", priority=1, justify="right"),
    Column("price/h", priority=2, justify="right"),
    Column("slots used", priority=3, justify="right"),
    Column("id", whole=True),
]


@app.callback(invoke_without_command=True)
def list_nodes(
    ctx: typer.Context,
    all_nodes: Annotated[bool, typer.Option("--all", "-a", help="Include deleted nodes.")] = False,
    json_output: JsonOption = False,
) -> None:
    """List nodes: state, age, billed hours, slots used."""
    if ctx.invoked_subcommand is not None:
        return

    async def body(session: Session) -> None:
        views = await nodes.list_nodes(session, include_deleted=all_nodes)
        if json_output:
            print_json([view.model_dump(mode="json") for view in views])
            return
        if not views:
            out.print("no nodes: they start when work is queued")
            return
        rows = []
        for view in views:
            node = view.node
            used = "-" if view.slots_used is None else f"{view.slots_used}/{node.slots}"
            rows.append(
                [
                    node.state.value,
                    node.server_type or node.provider,
                    node.location or "-",
                    _age(view.age_s),
                    str(view.billed_hours),
                    format_microns(node.hourly_price_microns, node.currency),
                    used,
                    node.node_id,
                ]
            )
        table = fitted_table(out, NODE_COLUMNS, rows)
        out.print(table)

    with_session(body)


@app.command()
def drain(node_id: NodeId) -> None:
    """Let a node finish its runs, take no more, then go."""
    with_session(lambda session: nodes.signal_pool(session, node_id, "drain"))
    out.print(f"draining {node_id}: it goes once its runs end")


@app.command()
def destroy(node_id: NodeId) -> None:
    """Delete a node now; its runs move to other nodes."""
    with_session(lambda session: nodes.signal_pool(session, node_id, "destroy"))
    out.print(f"destroying {node_id}")


def _age(seconds: float) -> str:
    minutes = int(seconds // 60)
    return f"{minutes // 60}h{minutes % 60:02d}m" if minutes >= 60 else f"{minutes}m"
