"""Names shared by workflows, workers and clients: activities, task queues, and the
search attributes rgrid sets (registered by the dev server; see temporal-dev.yaml)."""

from temporalio.common import SearchAttributeKey

CONTROL_QUEUE = "rgrid"

PLAN = "plan"
RECORD = "record"
COMPUTE_COST = "compute_cost"
LOAD_ITEMS = "load_items"
SEND_WEBHOOK = "send_webhook"

CLAIM_NODE = "claim_node"
STAGE_INPUTS = "stage_inputs"
RUN_CONTAINER = "run_container"
COLLECT_OUTPUTS = "collect_outputs"
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

# The control plane's singletons: one per namespace, however many control workers run.
LIMIT_WATCH_ID = "limit-watch"
CHECK_LIMITS = "check_limits"
