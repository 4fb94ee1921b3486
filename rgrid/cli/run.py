"""`rgrid run`: submit a script, stream its output, bring its outputs home."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Awaitable
from pathlib import Path
from typing import Annotated

import typer

from rgrid.cli.batch import run_batch_command
from rgrid.cli.common import settings, with_session
from rgrid.cli.cost import show_estimate
from rgrid.cli.output import (
    OutputDirOption,
    cost,
    detached_hint,
    duration,
    err,
    exit_code_for,
    out,
    phase_text,
    print_json,
    write_record,
)
from rgrid.client import run as client_run
from rgrid.client import submit
from rgrid.client.batch_run import BatchOptions
from rgrid.client.parse import parse_duration, parse_memory_mb, parse_pairs
from rgrid.client.run import QuietEvents, RunOptions, RunResult
from rgrid.client.session import Session
from rgrid.client.waiting import WaitReport
from rgrid.infra.logstore import LogRecord
from rgrid.models.execution import Phase


def run(
    script: Annotated[Path, typer.Argument(help="The script to run (.py, or .js for Node).")],
    args: Annotated[
        list[str] | None,
        typer.Argument(help="Arguments for the script; any that is a file is uploaded."),
    ] = None,
    inputs: Annotated[
        list[Path] | None,
        typer.Option("--input", "-i", help="Extra file to stage in the work dir (repeatable)."),
    ] = None,
    env: Annotated[
        list[str] | None, typer.Option("--env", "-e", help="KEY=VALUE for the script (repeatable).")
    ] = None,
    secret: Annotated[
        list[str] | None,
        typer.Option(
            "--secret",
            help="Pass this variable from your environment as a secret: sealed in transit, "
            "never shown or stored in plain text (repeatable).",
        ),
    ] = None,
    project: Annotated[
        str | None,
        typer.Option(
            help="The project the run counts for (RgridProject; cost, limits).",
            envvar="RGRID_PROJECT",
        ),
    ] = None,
    metadata: Annotated[
        list[str] | None,
        typer.Option("--metadata", "-m", help="KEY=VALUE tag on the execution (repeatable)."),
    ] = None,
    timeout: Annotated[
        str | None, typer.Option(help="Kill the script after this long, e.g. 90s, 10m, 1h.")
    ] = None,
    cpus: Annotated[
        float | None, typer.Option(min=0.01, help="CPUs for the script (default 1).")
    ] = None,
    memory: Annotated[
        str | None, typer.Option(help="Memory limit, e.g. 512m, 2g (default 1g).")
    ] = None,
    runtime: Annotated[
        str | None,
        typer.Option(help="auto (docker if this node has it, else process), process, docker."),
    ] = None,
    image: Annotated[
        str | None, typer.Option(help="Run in this container image (implies docker).")
    ] = None,
    network: Annotated[
        bool, typer.Option("--network/--no-network", help="Let the container reach the network.")
    ] = True,
    retries: Annotated[
        int, typer.Option(min=0, help="Run again this many times if the script exits non-zero.")
    ] = 0,
    priority: Annotated[
        int,
        typer.Option(min=1, max=5, help="1 (most urgent) to 5: claimed ahead of lower ones."),
    ] = 3,
    no_cache: Annotated[
        bool,
        typer.Option(
            "--no-cache",
            help="Run even if an identical run's outputs are cached (and refresh the entry); "
            "rebuild the dependency layer.",
        ),
    ] = False,
    output_dir: OutputDirOption = Path("outputs"),
    remote_only: Annotated[
        bool, typer.Option("--remote-only", help="Leave outputs in storage; do not download.")
    ] = False,
    detach: Annotated[
        bool, typer.Option("--detach", "-d", help="Print the execution id and return at once.")
    ] = False,
    json_output: Annotated[
        bool, typer.Option("--json", help="Print one JSON object instead of streaming.")
    ] = False,
    dry_run: Annotated[
        bool,
        typer.Option("--dry-run", help="Show what would be staged and installed; run nothing."),
    ] = False,
    batch_patterns: Annotated[
        list[str] | None,
        typer.Option(
            "--batch",
            help="Run once per file matching this glob (repeatable; ** recurses); "
            "the file is appended after ARGS.",
        ),
    ] = None,
    parallel: Annotated[int, typer.Option(help="With --batch: how many items run at once.")] = 10,
    fail_fast: Annotated[
        bool, typer.Option("--fail-fast", help="With --batch: start nothing more after a failure.")
    ] = False,
    flat: Annotated[
        bool,
        typer.Option("--flat", help="With --batch: one output dir, names prefixed by input stem."),
    ] = False,
    show_output: Annotated[
        bool,
        typer.Option(
            "--show-output", help="With --batch: each item's output live, prefixed by its input."
        ),
    ] = False,
    watch: Annotated[
        bool | None,
        typer.Option(
            "--watch/--no-watch", "-w", help="With --batch: live progress (default on a terminal)."
        ),
    ] = None,
    budget: Annotated[
        str | None,
        typer.Option(help="Start nothing if the estimate is above this, e.g. 2.50 or €2.50."),
    ] = None,
    estimate_cost: Annotated[
        bool,
        typer.Option("--estimate-cost", help="Print what it would cost; start nothing."),
    ] = False,
) -> None:
    """Run a script on a node: stream its output live, then download what it wrote."""
    request = submit.RunRequest(
        script=script,
        args=args or [],
        extra_inputs=inputs or [],
        env=parse_pairs(env or [], "--env", env_keys=True),
        tags=parse_pairs(metadata or [], "--metadata"),
        timeout_s=parse_duration(timeout) if timeout else None,
        cpus=cpus,
        memory_mb=parse_memory_mb(memory) if memory else None,
        runtime=runtime,
        image=image,
        network=network,
        retries=retries,
        priority=priority,
        no_cache=no_cache,
        secret_names=secret or [],
        project=project,
    )
    if project:
        os.environ["RGRID_PROJECT"] = project  # read with the settings, as --profile is
    if estimate_cost:
        show_estimate(script, batch_patterns, None, parallel, timeout, json_output)
        return
    if dry_run:
        _print_dry_run(asyncio.run(submit.dry_run(settings(), request, Path.cwd())), json_output)
        return
    if batch_patterns:
        batch_options = BatchOptions(
            parallel, fail_fast, flat, output_dir, remote_only, detach, budget
        )
        raise typer.Exit(
            run_batch_command(
                request, batch_patterns, batch_options, watch, json_output, show_output
            )
        )
    options = RunOptions(output_dir, remote_only, detach, budget)
    view = RunView() if not json_output else None

    async def body(session: Session) -> int:
        call = client_run.run(session, request, Path.cwd(), options, view or _Warnings())
        return render_result(await watched(view, call), options, json_output)

    raise typer.Exit(with_session(body))


class RunView:
    """The human view of a run while it goes: its id, uploads, the script's output."""

    wants_output = True

    def __init__(self) -> None:
        self.execution_id: str | None = None
        self._last_wait: str | None = None

    def warning(self, line: str) -> None:
        err.print(f"[yellow]{line}[/yellow]")

    def started(self, execution_id: str, report: submit.UploadReport) -> None:
        self.execution_id = execution_id
        err.print(f"[bold]{execution_id}[/bold]")
        if report.uploaded:
            err.print(
                f"[dim]uploaded {report.uploaded} file(s), {report.uploaded_bytes} bytes; "
                f"{report.already_stored} already stored[/dim]"
            )

    def record(self, record: LogRecord) -> None:
        write_record(record)

    def waiting(self, report: WaitReport) -> None:
        """Say why the run waits, each time the reason changes."""
        line = report.line()
        if line != self._last_wait:
            self._last_wait = line
            err.print(line, style="yellow", markup=False, highlight=False)


class _Warnings(QuietEvents):
    """--json: nothing on stdout but the result; limit notes still go to stderr."""

    def warning(self, line: str) -> None:
        err.print(f"[yellow]{line}[/yellow]")


async def watched(view: RunView | None, call: Awaitable[RunResult]) -> RunResult:
    """Await a run; on Ctrl-C say that it goes on without us."""
    try:
        return await call
    except asyncio.CancelledError:  # Ctrl-C: the execution is durable and goes on
        if view is not None and view.execution_id is not None:
            err.print(detached_hint(view.execution_id))
        raise


def render_result(result: RunResult, options: RunOptions, json_output: bool) -> int:
    """Print a run's result for humans or as JSON; the process exit code."""
    status = result.status
    if status is None:  # detached
        if json_output:
            print_json({"id": result.execution_id, "status": result.detached_phase})
        else:
            out.print(result.execution_id)
        return 0
    for name in result.refused:
        err.print(f"[yellow]refused output {name!r}: it would leave {options.output_dir}[/yellow]")
    if json_output:
        print_json(_json_result(result))
    else:
        _print_summary(result, options)
    return exit_code_for(status)


def _print_dry_run(plan: submit.DryRun, json_output: bool) -> None:
    deps = plan.dependencies
    if json_output:
        print_json(
            {
                "args": plan.args,
                "files": plan.files,
                "dependencies": deps.model_dump(),
                "cache_key": plan.cache_key,
                "cache_parts": plan.cache_parts,
            }
        )
        return
    out.print(f"language      {deps.language}")
    out.print(f"dependencies  {', '.join(deps.requirements) or 'none'} (from {deps.source})")
    out.print(f"arguments     {' '.join(plan.args) or '-'}")
    out.print("staged files")
    for name, size in sorted(plan.files.items()):
        out.print(f"  {size:>10}  {name}")
    if plan.cache_key is None:
        out.print("cache key     none: the script says `rgrid: no-cache`")
    else:
        out.print(f"cache key     {plan.cache_key}, from")
        for part, value in plan.cache_parts.items():
            out.print(f"  {part:<13}{json.dumps(value)}", markup=False, highlight=False)
    out.print("nothing was uploaded or started (--dry-run)")


def _json_result(result: RunResult) -> dict[str, object]:
    status = result.status
    assert status is not None
    report = result.report
    return {
        "id": status.execution_id,
        "status": status.phase.value,
        "exit_code": status.exit_code,
        "outputs": [str(path) for path in result.local],
        "remote_outputs": [o.path for o in status.outputs],
        "cost_microns": status.cost_microns,
        "duration_s": status.duration_s,
        "node": status.node_id,
        "runtime": status.runtime,
        "attempts": status.attempts,
        "cached": status.cached,
        "cached_from": status.cached_from,
        "error": status.error,
        "uploaded_files": report.uploaded,
        "uploaded_bytes": report.uploaded_bytes,
        "already_stored_files": report.already_stored,
    }


def _print_summary(result: RunResult, options: RunOptions) -> None:
    status = result.status
    assert status is not None
    local = result.local
    node = f"{status.node_id or '-'} ({status.runtime})" if status.runtime else "-"
    line = f"{phase_text(status.phase)} in {duration(status)} on {node}, cost {cost(status)}"
    if status.cached:
        line = f"cached: same inputs as {status.cached_from} (use --no-cache to run again)"
    elif status.error and status.phase is not Phase.SUCCEEDED:
        line += f" ({status.error})"
    err.print(line)
    if options.remote_only and status.outputs:
        kept = len(status.outputs)
        err.print(f"{kept} output(s) kept in storage: `rgrid download {status.execution_id}`")
    elif local:
        err.print(f"{len(local)} output(s) in {options.output_dir}/")
        for path in local[:20]:
            err.print(f"  {_relative(path)}", style="dim")
        if len(local) > 20:
            err.print(f"  … and {len(local) - 20} more", style="dim")


def _relative(path: Path) -> Path:
    return path.relative_to(Path.cwd()) if path.is_relative_to(Path.cwd()) else path
