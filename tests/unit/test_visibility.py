"""What the Web UI shows first: summaries, current details, the failure message."""

from __future__ import annotations

from rgrid.models.batch import BatchSpec
from rgrid.models.execution import ExecutionSpec, ExecutionStatus, FileRef, Phase
from rgrid.workflows.visibility import (
    batch_summary,
    run_details,
    run_summary,
    script_failed,
    tag_list,
)

SCRIPT = FileRef(name="job.py", sha256="0" * 64, size=1)


def test_a_runs_summary_is_its_script_and_first_input_clipped_to_temporals_limit() -> None:
    data = FileRef(name="data/doc.txt", sha256="1" * 64, size=1)
    assert run_summary(ExecutionSpec(script=SCRIPT, inputs=[data])) == "job.py data/doc.txt"
    assert run_summary(ExecutionSpec(script=SCRIPT, args=["--fast"])) == "job.py --fast"
    long = run_summary(ExecutionSpec(script=SCRIPT, args=["é" * 300]))
    assert len(long.encode()) <= 200 and long.endswith("...")


def test_a_batchs_summary_is_its_patterns_and_count() -> None:
    spec = BatchSpec(template=ExecutionSpec(script=SCRIPT), total=12, manifest_key="m",
                     patterns=["data/*.csv"])  # fmt: skip
    assert batch_summary(spec) == "job.py over data/*.csv (12 files)"


def test_current_details_show_phase_node_attempt_exit_code_and_last_stderr_line() -> None:
    status = ExecutionStatus(execution_id="exec-1", phase=Phase.COLLECTING, node_id="local-1",
                             attempts=2, exit_code=3, stderr_tail="disk full")  # fmt: skip
    details = run_details(status)
    for part in ("collecting", "local-1", "**attempt** 2", "**exit code** 3", "disk full"):
        assert part in details


def test_the_failure_message_leads_with_the_exit_code() -> None:
    assert script_failed(3, "disk full") == "script exited with code 3: disk full"
    assert script_failed(3, "") == "script exited with code 3"


def test_tags_become_sorted_key_value_keywords() -> None:
    assert tag_list({"team": "geo", "env": "prod"}) == ["env=prod", "team=geo"]
