"""Processes: the control worker, the node agent and the embedded dev stack."""
