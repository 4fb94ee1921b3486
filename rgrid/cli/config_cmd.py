"""`rgrid config`: the effective settings and where each came from; secrets stay hidden."""

from __future__ import annotations

from rich.table import Table

from rgrid.cli.common import settings
from rgrid.cli.output import JsonOption, out, print_json
from rgrid.config import describe_settings


def config(json_output: JsonOption = False) -> None:
    """Show the effective settings and their sources (env, profile, default)."""
    described = describe_settings(settings())
    if json_output:
        print_json({s.name: {"value": s.value, "source": s.source} for s in described})
        return
    table = Table("setting", box=None)
    table.add_column("value", overflow="fold")
    table.add_column("from", overflow="fold")
    for item in described:
        source = item.source if item.source != "default" else "[dim]default[/dim]"
        table.add_row(item.name, "-" if item.value is None else item.value, source)
    out.print(table)
