"""What Temporal's own tools show of a run: search attributes the workflows set on
themselves (so runs started by any client, and batch children, carry them), the summary
line, and the live current details.

Search attributes are workflow commands: callers ask `workflow.patched(VISIBLE)` first,
so histories recorded before these existed replay unchanged.
"""

from __future__ import annotations

from typing import Any

from temporalio import workflow
from temporalio.common import SearchAttributePair, SearchAttributeUpdate, TypedSearchAttributes

with workflow.unsafe.imports_passed_through():
    from rgrid import names
    from rgrid.models.batch import BatchProgress, BatchSpec
    from rgrid.models.execution import ExecutionSpec, ExecutionStatus

VISIBLE = "self-set-search-attributes"
_SUMMARY_MAX = 200  # the UI shows one line; Temporal caps summaries at 200 bytes


def tag_list(tags: dict[str, str]) -> list[str]:
    """Tags as RgridTags keeps them: `k=v`, sorted."""
    return [f"{key}={value}" for key, value in sorted(tags.items())]


def run_attributes(spec: ExecutionSpec) -> TypedSearchAttributes:
    """Project, script, batch and tags of an execution: what a batch gives its child at
    the start, or what the execution sets on itself (upsert_run)."""
    pairs: list[SearchAttributePair[Any]] = [
        SearchAttributePair(names.PROJECT_ATTRIBUTE, spec.project),
        SearchAttributePair(names.SCRIPT_ATTRIBUTE, spec.script.name),
        SearchAttributePair(names.TAGS_ATTRIBUTE, tag_list(spec.tags)),
    ]
    if spec.batch_id is not None:
        pairs.append(SearchAttributePair(names.BATCH_ID_ATTRIBUTE, spec.batch_id))
    return TypedSearchAttributes(pairs)


def upsert_run(spec: ExecutionSpec) -> None:
    """Project, script, batch and tags of an execution, as it starts."""
    updates: list[SearchAttributeUpdate[Any]] = [
        pair.key.value_set(pair.value) for pair in run_attributes(spec).search_attributes
    ]
    workflow.upsert_search_attributes(updates)


def upsert_run_missing(spec: ExecutionSpec) -> None:
    """upsert_run for only what the start did not give it (a batch gives them all, the
    CLI project and script): no command at all when nothing is missing."""
    have = workflow.info().typed_search_attributes
    missing: list[SearchAttributeUpdate[Any]] = [
        pair.key.value_set(pair.value)
        for pair in run_attributes(spec).search_attributes
        if have.get(pair.key) != pair.value and not (pair.value == [] and pair.key not in have)
    ]
    if missing:
        workflow.upsert_search_attributes(missing)


def upsert_batch(spec: BatchSpec) -> None:
    """The batch's own attributes: what its children will carry too."""
    template = spec.template
    workflow.upsert_search_attributes(
        [
            names.PROJECT_ATTRIBUTE.value_set(template.project),
            names.SCRIPT_ATTRIBUTE.value_set(template.script.name),
            names.BATCH_ID_ATTRIBUTE.value_set(workflow.info().workflow_id),
            names.TAGS_ATTRIBUTE.value_set(tag_list(template.tags)),
        ]
    )


def upsert_tags(tags: dict[str, str]) -> None:
    workflow.upsert_search_attributes([names.TAGS_ATTRIBUTE.value_set(tag_list(tags))])


def upsert_node(node_id: str) -> None:
    workflow.upsert_search_attributes([names.NODE_ATTRIBUTE.value_set(node_id)])


def run_summary(spec: ExecutionSpec) -> str:
    """`job.py data/doc.txt`: the script and its first input (or argument)."""
    first = spec.inputs[0].name if spec.inputs else (spec.args[0] if spec.args else "")
    return _clip(f"{spec.script.name} {first}".strip())


def batch_summary(spec: BatchSpec) -> str:
    """`job.py over data/*.csv (120 files)`."""
    over = " ".join(spec.patterns) or "a manifest"
    return _clip(f"{spec.template.script.name} over {over} ({spec.total} files)")


def run_details(status: ExecutionStatus) -> str:
    """The execution's live state as the Web UI's current details (markdown)."""
    lines = [f"**phase** {status.phase.value}", f"**attempt** {status.attempts}"]
    if status.node_id:
        lines.append(f"**node** {status.node_id}")
    if status.exit_code is not None:
        lines.append(f"**exit code** {status.exit_code}")
    if status.stderr_tail:
        lines.append(f"**last stderr line** `{status.stderr_tail}`")
    if status.error:
        lines.append(f"**error** {status.error}")
    return "  \n".join(lines)


def batch_details(progress: BatchProgress) -> str:
    """The batch's counts as its current details."""
    return (
        f"**{progress.succeeded + progress.cached + progress.failed}/{progress.total} done**  \n"
        f"running {progress.running}, failed {progress.failed}, cached {progress.cached}, "
        f"parallel {progress.parallel}{', paused' if progress.paused else ''}"
    )


def script_failed(exit_code: int | None, stderr_tail: str, memory_mb: int | None = None) -> str:
    """The failure message a script's non-zero exit gets: the code first, then why.
    SIGKILL (137 from a container, -9 from a process) is what the kernel's OOM killer
    sends when a script goes over its memory limit: by far its most common cause."""
    message = f"script exited with code {exit_code}"
    if exit_code in (137, -9) and memory_mb is not None:
        message = (
            f"script was killed (exit code {exit_code}, SIGKILL): most likely out of memory "
            f"at its {memory_mb} MB limit; raise it with --memory"
        )
    return f"{message}: {stderr_tail}" if stderr_tail else message


def _clip(text: str) -> str:
    encoded = text.encode()
    if len(encoded) <= _SUMMARY_MAX:
        return text
    return encoded[: _SUMMARY_MAX - 3].decode(errors="ignore") + "..."
