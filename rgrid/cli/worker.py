"""`rgrid worker control|agent`: the long-running processes of a deployment, as systemd
(or `rgrid dev`) runs them. Both log JSON lines to stderr and drain on SIGTERM."""

from __future__ import annotations

from typing import Annotated

import typer

app = typer.Typer(help="Run a control worker or a node agent (the processes of a deployment).")


@app.command()
def control(
    health_port: Annotated[
        int | None,
        typer.Option(
            envvar="RGRID_HEALTH_PORT",
            help="Serve GET /healthz on 127.0.0.1:PORT: 200 while connected and polling.",
        ),
    ] = None,
) -> None:
    """All workflows, the control activities, the limit watch and the node pool; any
    number of replicas may run side by side."""
    from rgrid.worker.control import main

    main([] if health_port is None else ["--health-port", str(health_port)])


@app.command()
def agent(
    node_id: Annotated[str, typer.Option(help="This node's id (its own task queue).")],
    slots: Annotated[int, typer.Option(min=1, help="Runs this node takes at once.")] = 1,
    hourly_price_microns: Annotated[
        int | None, typer.Option(help="The node's hourly price, for its leases.")
    ] = None,
) -> None:
    """A node: claims slots for its node class and runs staged scripts (docker when a
    daemon answers, else the process runtime). Holds no database credentials."""
    from rgrid.worker.agent import main

    argv = ["--node-id", node_id, "--slots", str(slots)]
    if hourly_price_microns is not None:
        argv += ["--hourly-price-microns", str(hourly_price_microns)]
    main(argv)
