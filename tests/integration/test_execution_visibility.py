"""What Temporal shows of an execution, set by the workflow itself: search attributes,
summary, current details; a secret reaches the script and its printed value is redacted
from the stored logs; the history of a run with all of this replays."""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest
from temporalio.api.sdk.v1 import WorkflowMetadata
from temporalio.client import Client, WorkflowFailureError
from temporalio.exceptions import ApplicationError

from rgrid import names
from rgrid.client import submit
from rgrid.client.session import Session
from rgrid.config import Settings
from rgrid.infra.ledger import Ledger
from rgrid.infra.logstore import read_new_records
from rgrid.infra.storage.local import LocalStorage
from rgrid.models.execution import Phase
from tests.integration.conftest import agent, assert_replays

pytestmark = pytest.mark.integration


async def test_a_run_sets_its_own_attributes_summary_and_details_and_replays(
    client: Client, control: Ledger, settings: Settings, tmp_path: Path
) -> None:
    token = f"tok-{secrets.token_hex(8)}"
    script = tmp_path / "job.py"
    script.write_text(
        "import os, sys\nprint('got', os.environ['API_TOKEN'])\n"
        "print('bad row', file=sys.stderr)\nsys.exit(4)\n# rgrid: no-cache\n"
    )
    (tmp_path / "data.csv").write_text("a\n")
    session = Session(settings)
    request = submit.RunRequest(
        script=script,
        args=[str(tmp_path / "data.csv")],
        env={"API_TOKEN": token, "MODE": "x"},
        tags={"team": "geo"},
        project="geo-vis",
    )
    spec, _ = await submit.prepare(session, request, tmp_path)
    assert token not in spec.model_dump_json() and "API_TOKEN" in spec.secrets
    async with agent(client, settings, "node-vis"):
        handle = await submit.start(session, spec)
        with pytest.raises(WorkflowFailureError) as failure:
            await handle.result()
        metadata = await handle.query("__temporal_workflow_metadata", result_type=WorkflowMetadata)
    cause = failure.value.cause
    assert isinstance(cause, ApplicationError)
    assert cause.message == "script exited with code 4: bad row"
    assert "**exit code** 4" in metadata.current_details
    assert "node-vis" in metadata.current_details

    described = await handle.describe()
    attributes = described.typed_search_attributes
    assert attributes.get(names.PROJECT_ATTRIBUTE) == "geo-vis"
    assert attributes.get(names.SCRIPT_ATTRIBUTE) == "job.py"
    assert attributes.get(names.TAGS_ATTRIBUTE) == ["team=geo"]
    assert attributes.get(names.NODE_ATTRIBUTE) == "node-vis"
    assert await described.static_summary() == "job.py data.csv"

    # The script saw the secret; the stored log shows it redacted.
    storage = LocalStorage(Path(settings.effective_storage_url.removeprefix("file://")))
    records = await read_new_records(storage, handle.id, set())
    printed = b"".join(r.data for r in records)
    assert b"got [secret]" in printed and token.encode() not in printed
    assert (await control.get(handle.id)).phase is Phase.FAILED
    await assert_replays(handle)
