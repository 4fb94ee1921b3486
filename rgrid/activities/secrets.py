"""Opening a run's sealed secrets on the node, just before its script starts."""

from __future__ import annotations

from temporalio.exceptions import ApplicationError

from rgrid.errors import Failure
from rgrid.infra.codec import Keyring
from rgrid.models.execution import ExecutionSpec


def open_secrets(keyring: Keyring | None, spec: ExecutionSpec) -> dict[str, str]:
    """The spec's secrets in clear, by name; a node without the keys fails the run."""
    if not spec.secrets:
        return {}
    try:
        if keyring is None:
            raise ValueError("this node has no codec keys")
        return {name: keyring.unseal(name, v) for name, v in spec.secrets.items()}
    except ValueError as exc:
        # Not retried: another attempt on this node would fail the same way.
        raise ApplicationError(
            f"cannot open the run's secrets: {exc}; give the node the codec keys (RGRID_CODEC_KEY)",
            type=Failure.NODE_ERROR,
            non_retryable=True,
        ) from exc
