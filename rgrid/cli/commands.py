"""The table of rgrid's commands, read by rgrid.cli.app."""

# ruff: noqa: E501  (one line per command reads best)

# Each command's module is imported only when that command runs (or shows its own help):
# `rgrid --help` and `rgrid version` pay none of temporalio, SQLAlchemy, aiodocker or boto.
# name: (module in rgrid.cli, its command function or Typer app, the line `rgrid --help`
# shows, which tests/unit/test_cli_lazy.py holds equal to the command's own help).
COMMANDS: dict[str, tuple[str, str, str]] = {
    "run": ("run", "run", "Run a script on a node: stream its output live, then download what it wrote."),
    "status": ("status", "status", "Show an execution's phase, node, times, exit code, attempts, cost; or a batch's counts."),
    "logs": ("logs_cmd", "logs", "Print an execution's output, from storage (works after its node is gone)."),
    "list": ("listing", "list_executions", "List recent executions (or batches), newest first."),
    "cancel": ("cancel", "cancel", "Stop a running execution or batch (scripts are killed within seconds), or with --all every execution the filters select, after saying how many."),
    "watch": ("watch", "watch", "Follow a running (or ended) execution or batch to its end: its output, its outputs downloaded into the same layout, and the exit code `rgrid run` would have given."),
    "retry": ("retry", "retry", "Run a failed execution again, or a batch's failed items inside the same batch."),
    "download": ("download", "download", "Download an execution's outputs (after `rgrid run --remote-only`, or again); a batch's into OUTPUT_DIR/<input name>/, as the batch run does."),
    "outputs": ("download", "outputs", "List an execution's outputs with their sizes (they stay in storage)."),
    "config": ("config_cmd", "config", "Show the effective settings and their sources (env, profile, default)."),
    "init": ("init", "init", "Create or update a profile in the config file (dir 0700, file 0600)."),
    "estimate": ("cost", "estimate", "Estimate what a run or batch would cost, from earlier runs of the script; starts nothing."),
    "codec-server": ("codec", "codec_server_command", "Decode payloads for the Web UI (secrets masked); requires the token it prints."),
    "schema": ("schema", "schema_command", "Print the JSON schemas of workflow inputs and results (see docs/api.md)."),
    "console": ("console", "console", "Serve the web console: executions, batches, logs, outputs, costs and nodes."),
    "version": ("app", "version", "Print rgrid's version."),
    "cache": ("cache", "app", "The result cache: identical runs are answered with earlier outputs."),
    "cost": ("cost", "app", "What runs cost: reports that reconcile with node bills, breakdowns, limits. `rgrid cost exec-…` (or --execution ID) or `rgrid cost batch-…` breaks one down."),
    "dev": ("dev", "app", "The embedded stack: Temporal dev server, control worker, local nodes."),
    "admin": ("admin", "app", "Operate the shared services of a team deployment."),
    "nodes": ("nodes", "app", "Nodes: list them; drain or destroy one of the node pool's."),
    "queue": ("queue", "app", "The queue of runs waiting for a node, and the projects' shares."),
    "worker": ("worker", "app", "Run a control worker or a node agent (the processes of a deployment)."),
}  # fmt: skip
