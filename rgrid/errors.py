"""Error taxonomy: every error a user can cause has a code, a message and a hint.

Adapters translate vendor exceptions into these (`raise ... from exc`); the CLI prints
`message` and `hint` on one line. Activities hand them to Temporal through the one
converter below, `as_application_error`. Workflows match failures on the type names in
`Failure`, never on string literals of their own.
"""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the CLI imports this module; temporalio loads only where it is used
    from temporalio.exceptions import ApplicationError


class Failure(StrEnum):
    """Temporal failure types rgrid raises and matches on (ApplicationError.type)."""

    # Raised by workflows: how an execution or batch ended.
    SCRIPT_FAILED = "ScriptFailed"
    SCRIPT_TIMED_OUT = "ScriptTimedOut"
    NODES_LOST = "NodesLost"
    NO_NODE_AVAILABLE = "NoNodeAvailable"
    NO_CAPACITY = "NoCapacity"
    NODE_ERROR = "NodeError"
    NOTHING_TO_RETRY = "NothingToRetry"
    # Raised by node activities.
    LEASE_LOST = "LeaseLost"
    NODE_DRAINING = "NodeDraining"
    # Raised by the alert activity.
    WEBHOOK_UNREACHABLE = "WebhookUnreachable"
    WEBHOOK_FAILED = "WebhookFailed"
    WEBHOOK_REJECTED = "WebhookRejected"
    # RgridError subclasses as as_application_error types them (by class name).
    USER_INPUT = "UserInputError"
    UNSAFE_PATH = "UnsafePathError"
    NOT_FOUND = "NotFoundError"
    QUOTA_EXCEEDED = "QuotaExceededError"
    CAPACITY_UNAVAILABLE = "CapacityUnavailableError"
    UNKNOWN_SERVER_CHOICE = "UnknownServerChoiceError"
    LIMIT_EXCEEDED = "LimitExceededError"
    BUDGET_EXCEEDED = "BudgetExceededError"
    ENVIRONMENT_BROKEN = "EnvironmentBroken"


class RgridError(Exception):
    """Base of every error rgrid reports to a user."""

    code = "error"
    retryable = False

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def one_line(self) -> str:
        """The single line the CLI prints: what happened, then what to do."""
        return f"{self.message}: {self.hint}" if self.hint else self.message


class UserInputError(RgridError):
    """A bad path, glob, option value or argument."""

    code = "bad_input"


class NotFoundError(RgridError):
    """An execution, file or object that does not exist."""

    code = "not_found"


class ConfigError(RgridError):
    """Settings that cannot work (bad URL, missing credentials)."""

    code = "config"


class ServiceUnavailableError(RgridError):
    """Temporal, the database or storage does not answer."""

    code = "unavailable"
    retryable = True


class ControlPlaneUnreachableError(ServiceUnavailableError):
    """Temporal (or storage) stayed unreachable for the CLI's whole retry budget."""

    code = "unreachable"
    retryable = False  # the budget is spent; the CLI exits 75 and `rgrid watch` resumes


class EmbeddedStackError(RgridError):
    """The embedded dev stack could not start or stop."""

    code = "embedded_stack"


class StorageError(RgridError):
    """Object storage failed to read or write."""

    code = "storage"
    retryable = True


class UnsafePathError(RgridError):
    """A path that would escape its directory (`..`, absolute, or through a link)."""

    code = "unsafe_path"


class DependencyInstallError(RgridError):
    """The script's dependencies could not be installed; retrying will not help."""

    code = "dependency_install"


class EnvironmentBroken(RgridError):
    """rgrid's own environment failed before the script started (a dependency layer
    missing or broken, the sandbox or interpreter not starting): an infrastructure fault,
    retried like a lost node, never the script's exit code."""

    code = "environment_broken"
    retryable = True


class LimitExceededError(RgridError):
    """A spending limit is used up: new runs and retries are refused."""

    code = "limit_exceeded"


class BudgetExceededError(RgridError):
    """A run's estimate is above the --budget it was given."""

    code = "budget_exceeded"


class ProvisioningError(RgridError):
    """The cloud provider refused or failed to create or delete a server."""

    code = "provisioning"
    retryable = True


class QuotaExceededError(ProvisioningError):
    """The account's limit on servers (or cores) is reached; another type will not help."""

    code = "quota_exceeded"
    retryable = False


class CapacityUnavailableError(ProvisioningError):
    """The location has no capacity for the type now; another choice may have."""

    code = "capacity_unavailable"
    retryable = False


class UnknownServerChoiceError(ProvisioningError):
    """A configured server type, location or image does not exist (or not together)."""

    code = "unknown_server_choice"
    retryable = False


def as_application_error(exc: RgridError) -> ApplicationError:
    """An rgrid error as Temporal sees it: typed by its class, retried only if retryable."""
    from temporalio.exceptions import ApplicationError

    return ApplicationError(
        exc.one_line(), type=type(exc).__name__, non_retryable=not exc.retryable
    )
