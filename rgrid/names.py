"""Names shared by workflows, workers and clients: activities, task queues, workflow ids,
and the search attributes rgrid sets (registered by the dev server; see temporal-dev.yaml).

Id builders used by workflows are pure; the `new_*` ones (fresh ULIDs) are for clients only.
"""

from temporalio.common import SearchAttributeKey
from ulid import ULID

CONTROL_QUEUE = "rgrid"

PLAN = "plan"
RECORD = "record"
COMPUTE_COST = "compute_cost"
FINISH = "finish"  # compute_cost, then record
LOAD_ITEMS = "load_items"
ADMIT = "admit"
SEND_WEBHOOK = "send_webhook"

CLAIM_NODE = "claim_node"
STAGE_INPUTS = "stage_inputs"
RUN_CONTAINER = "run_container"
COLLECT_OUTPUTS = "collect_outputs"
EXECUTE = "execute"  # stage, run and collect in one step
RELEASE_NODE = "release_node"
PING_NODE = "ping_node"
DRAIN_NODE = "drain_node"

# Node pools (run by the control worker).
OBSERVE_POOL = "observe_pool"
PROVISION_NODE = "provision_node"
DESTROY_NODE = "destroy_node"
SAVE_NODE = "save_node"
REQUEST_CAPACITY = "request_capacity"


def shared_node_queue(node_class: str) -> str:
    """The queue every node of a class polls for claims while it has a free slot."""
    return f"rgrid-nodes-{node_class}"


def node_queue(node_id: str) -> str:
    """The queue only one node polls: the work of executions it has leased a slot to."""
    return f"rgrid-node-{node_id}"


# Filterable in the Web UI, e.g. `RgridProject = "geo"`.
PROJECT_ATTRIBUTE = SearchAttributeKey.for_keyword("RgridProject")
SCRIPT_ATTRIBUTE = SearchAttributeKey.for_keyword("RgridScript")
BATCH_ID_ATTRIBUTE = SearchAttributeKey.for_keyword("RgridBatchId")
TAGS_ATTRIBUTE = SearchAttributeKey.for_keyword_list("RgridTags")  # "k=v" per tag
NODE_ATTRIBUTE = SearchAttributeKey.for_keyword("RgridNode")  # once a node took the run
SEARCH_ATTRIBUTES = (
    PROJECT_ATTRIBUTE,
    SCRIPT_ATTRIBUTE,
    BATCH_ID_ATTRIBUTE,
    TAGS_ATTRIBUTE,
    NODE_ATTRIBUTE,
)


def new_execution_id() -> str:
    """A fresh, time-ordered execution id (clients only: not deterministic)."""
    return f"exec-{str(ULID()).lower()}"


def new_batch_id() -> str:
    """A fresh, time-ordered batch id (clients only: not deterministic)."""
    return f"batch-{str(ULID()).lower()}"


def dedup_execution_id(key: str, generation: int) -> str:
    """The id identical runs share while one is in flight; `generation` counts the runs
    of this key that have ended, so every id is used once."""
    return f"exec-{key[:26]}-{generation}"


def item_execution_id(batch_id: str, index: int, retry: int) -> str:
    """The id of a batch item's child execution; a retry gets a suffix of its own."""
    base = f"exec-{batch_id.removeprefix('batch-')}-{index}"
    return f"{base}-r{retry}" if retry else base


def pool_workflow_id(provider: str, node_class: str) -> str:
    """The NodePoolWorkflow that scales one node class of one provider."""
    return f"pool-{provider}-{node_class}"


def alert_workflow_id(alert_key: str) -> str:
    """One AlertWorkflow per limit crossing (limit, month, threshold)."""
    return f"alert-{alert_key}"


# The control plane's singletons: one per namespace, however many control workers run.
LIMIT_WATCH_ID = "limit-watch"
CHECK_LIMITS = "check_limits"
