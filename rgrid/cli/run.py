"""`rgrid run`: submit a script, stream its output, bring its outputs home."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer

from rgrid.cli.batch import run_batch
from rgrid.cli.common import settings, with_session
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
from rgrid.client import queue, submit
from rgrid.client.batch import expand_patterns
from rgrid.client.outputs import download_outputs
from rgrid.client.parse import parse_duration, parse_memory_mb, parse_pairs
from rgrid.client.session import Session
from rgrid.client.waiting import WaitReport
from rgrid.client.watch import replay_logs, wait_for_result
from rgrid.models.execution import ExecutionStatus, Phase


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
    metadata: Annotated[
        list[str] | None,
        typer.Option("--metadata", "-m", help="KEY=VALUE tag on the execution (repeatable)."),
    ] = None,
    timeout: Annotated[
        str | None, typer.Option(help="Kill the script after this long, e.g. 90s, 10m, 1h.")
    ] = None,
    cpus: Annotated[float | None, typer.Option(help="CPUs for the script (default 1).")] = None,
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
        no_cache=no_cache,
        priority=priority,
    )

    if dry_run:
        _print_dry_run(asyncio.run(submit.dry_run(settings(), request, Path.cwd())), json_output)
        return
    if batch_patterns:

        async def batch_body(session: Session) -> int:
            runs = len(expand_patterns(batch_patterns, Path.cwd()))
            await _checks(session, request, budget, runs, parallel)
            return await run_batch(
                session,
                request,
                batch_patterns,
                parallel,
                fail_fast,
                flat,
                watch,
                output_dir,
                remote_only,
                detach,
                json_output,
            )

        raise typer.Exit(with_session(batch_body))

    async def body(session: Session) -> int:
        await _checks(session, request, budget)
        spec, report = await submit.prepare(session, request, Path.cwd())
        cached = await submit.serve_from_cache(session, spec)
        execution_id = (
            cached.execution_id if cached else await submit.start_riding_out(session, spec)
        )
        if detach:
            if json_output:
                print_json({"id": execution_id, "status": cached.phase if cached else "queued"})
            else:
                out.print(execution_id)
            return 0
        if not json_output:
            err.print(f"[bold]{execution_id}[/bold]")
            if report.uploaded:
                err.print(
                    f"[dim]uploaded {report.uploaded} file(s), {report.uploaded_bytes} bytes; "
                    f"{report.already_stored} already stored[/dim]"
                )
        if cached is None:
            return await follow_execution(
                session, execution_id, output_dir, remote_only, json_output, report
            )
        if not json_output:
            await replay_logs(session, cached, write_record)
        return await conclude(session, cached, output_dir, remote_only, json_output, report)

    raise typer.Exit(with_session(body))


async def _checks(
    session: Session,
    request: submit.RunRequest,
    budget: str | None,
    runs: int = 1,
    parallel: int = 1,
) -> None:
    """Spending limits, --budget and the queue's bounds, before anything is uploaded or
    started."""
    from rgrid.client import money  # loads SQLAlchemy, as the run's ledger use does anyway

    # A batch keeps at most `parallel` items waiting for a node, not its whole list.
    await queue.check_room(session, session.settings.project, min(runs, parallel))

    for line in await money.before_run(
        session, request.script, budget, runs, parallel, request.timeout_s
    ):
        err.print(f"[yellow]{line}[/yellow]")


async def follow_execution(
    session: Session,
    execution_id: str,
    output_dir: Path,
    remote_only: bool,
    json_output: bool,
    report: submit.UploadReport,
) -> int:
    """Stream an execution's output, download its outputs, summarise; the exit code."""
    try:
        status = await wait_for_result(
            session,
            execution_id,
            None if json_output else write_record,
            on_wait=None if json_output else print_wait(),
        )
    except asyncio.CancelledError:  # Ctrl-C: the execution is durable and goes on
        err.print(detached_hint(execution_id))
        raise
    return await conclude(session, status, output_dir, remote_only, json_output, report)


async def conclude(
    session: Session,
    status: ExecutionStatus,
    output_dir: Path,
    remote_only: bool,
    json_output: bool,
    report: submit.UploadReport,
) -> int:
    """Download an ended execution's outputs and summarise it; the exit code."""
    local: list[Path] = []
    if not remote_only and status.outputs:
        local, refused = await download_outputs(
            session.storage, status, output_dir, track=session.track
        )
        for name in refused:
            err.print(f"[yellow]refused output {name!r}: it would leave {output_dir}[/yellow]")
    if json_output:
        print_json(_json_result(status, local, report))
    else:
        _print_summary(status, local, output_dir, remote_only)
    return exit_code_for(status)


def print_wait() -> Callable[[WaitReport], None]:
    """Say why a run waits, once each time the reason changes."""
    said: list[str] = []

    def show(report: WaitReport) -> None:
        line = report.line()
        if not said or said[-1] != line:
            said.append(line)
            err.print(line, style="yellow", markup=False, highlight=False)

    return show


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


def _json_result(
    status: ExecutionStatus, local: list[Path], report: submit.UploadReport
) -> dict[str, object]:
    return {
        "id": status.execution_id,
        "status": status.phase.value,
        "exit_code": status.exit_code,
        "outputs": [str(path) for path in local],
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


def _print_summary(
    status: ExecutionStatus, local: list[Path], output_dir: Path, remote_only: bool
) -> None:
    node = f"{status.node_id or '-'} ({status.runtime})" if status.runtime else "-"
    line = f"{phase_text(status.phase)} in {duration(status)} on {node}, cost {cost(status)}"
    if status.cached:
        line = f"cached: same inputs as {status.cached_from} (use --no-cache to run again)"
    elif status.error and status.phase is not Phase.SUCCEEDED:
        line += f" ({status.error})"
    err.print(line)
    if remote_only and status.outputs:
        kept = len(status.outputs)
        err.print(f"{kept} output(s) kept in storage: `rgrid download {status.execution_id}`")
    elif local:
        err.print(f"{len(local)} output(s) in {output_dir}/")
        for path in local[:20]:
            err.print(f"  {_relative(path)}", style="dim")
        if len(local) > 20:
            err.print(f"  … and {len(local) - 20} more", style="dim")


def _relative(path: Path) -> Path:
    return path.relative_to(Path.cwd()) if path.is_relative_to(Path.cwd()) else path
