"""Activity names shared by workflows and workers, and the task queues they run on."""

CONTROL_QUEUE = "rgrid"

PLAN = "plan"
RECORD = "record"
COMPUTE_COST = "compute_cost"

CLAIM_NODE = "claim_node"
STAGE_INPUTS = "stage_inputs"
RUN_CONTAINER = "run_container"
COLLECT_OUTPUTS = "collect_outputs"
RELEASE_NODE = "release_node"


def shared_node_queue(node_class: str) -> str:
    """The queue every node of a class polls for claims while it has a free slot."""
    return f"rgrid-nodes-{node_class}"


def node_queue(node_id: str) -> str:
    """The queue only one node polls: the work of executions it has leased a slot to."""
    return f"rgrid-node-{node_id}"
