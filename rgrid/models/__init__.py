"""Pydantic models that cross workflow, activity and CLI boundaries, one module per
boundary: execution, node, control, batch, pool, money."""
