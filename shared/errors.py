"""Bobbin's errors: one tree, each with a stable ``code`` and an HTTP ``status``.

    BobbinError                         internal_error (500)
    ├── InvalidRequest                  invalid_request (422)
    │   ├── ProviderNotConfigured       provider_not_configured (422)
    │   └── InvalidCursor               invalid_cursor (400)
    ├── NotFound                        not_found (404)
    │   ├── ProjectNotFound, SessionNotFound, AgentNotFound, TurnNotFound,
    │   │   ApprovalNotFound, ApiKeyNotFound, InstanceMissing
    ├── Conflict                        conflict (409)
    │   ├── TurnNotOpen                 turn_not_open
    │   ├── TurnNotCancellable          turn_not_cancellable
    │   ├── TurnCancelled               turn_cancelled (a decision after the turn's cancel)
    │   ├── ApprovalAlreadyDecided      approval_already_decided
    │   ├── IdempotencyKeyReused        idempotency_key_reused
    │   └── AlreadyExists               already_exists
    ├── AgentQueueFull                  agent_queue_full (429)
    ├── Unauthorized                    unauthorized (401)
    ├── ServiceUnavailable              service_unavailable (503)
    ├── AgentNotInitialized             agent_not_initialized (500: a programming error)
    ├── LeaseLost                       lease_lost (a stale lease holder tried to write)
    ├── TurnError                       a turn ended by a rule of the turn itself
    │   ├── MaxToolRoundsExceeded       max_tool_rounds_exceeded
    │   ├── TurnTimeout                 turn_timeout
    │   ├── WorkerLost                  worker_lost
    │   ├── WorkingDirectoryUnavailable working_directory_unavailable
    │   ├── BudgetExceeded              budget_exceeded
    │   └── ModelPriceUnknown           model_price_unknown
    └── ProviderError                   provider_error (502, retryable)
        ├── ProviderInstanceNotFound    provider_instance_not_found (422)
        ├── ModelNotFound               model_not_found (422)
        ├── ProviderCredentialMissing   provider_credential_missing (422)
        ├── ProviderAuthFailed          provider_auth_failed (502)
        ├── ProviderUnreachable         provider_unreachable (502, retryable)
        ├── ProviderOverloaded          provider_error (502, retryable; throttling)
        └── ProviderRateLimited         provider_rate_limited (429, retryable; throttling)

Errors cross processes (Celery payloads, stored events) as ``to_dict()``:
code, message and retryable, never a pickled exception or a traceback.
"""

from __future__ import annotations

from typing import Any, ClassVar


class BobbinError(Exception):
    code: ClassVar[str] = "internal_error"
    status: ClassVar[int] = 500
    retryable: ClassVar[bool] = False

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, "retryable": self.retryable}


class InvalidRequest(BobbinError):
    code, status = "invalid_request", 422


class ProviderNotConfigured(InvalidRequest):
    code = "provider_not_configured"


class InvalidCursor(InvalidRequest):
    code, status = "invalid_cursor", 400


class NotFound(BobbinError):
    code, status = "not_found", 404


class ProjectNotFound(NotFound):
    code = "project_not_found"


class SessionNotFound(NotFound):
    code = "session_not_found"


class AgentNotFound(NotFound):
    code = "agent_not_found"


class TurnNotFound(NotFound):
    code = "turn_not_found"


class ApprovalNotFound(NotFound):
    code = "approval_not_found"


class ApiKeyNotFound(NotFound):
    code = "api_key_not_found"


class InstanceMissing(NotFound):
    """A provider instance addressed by the instance routes does not exist."""

    code = "provider_instance_not_found"


class Conflict(BobbinError):
    code, status = "conflict", 409


class TurnNotOpen(Conflict):
    """A worker tried to change a turn that ended (e.g. cancelled while queued)."""

    code = "turn_not_open"


class TurnNotCancellable(Conflict):
    code = "turn_not_cancellable"


class TurnCancelled(Conflict):
    """A decision on a tool call whose turn's cancel was accepted first: nothing runs."""

    code = "turn_cancelled"


class ApprovalAlreadyDecided(Conflict):
    code = "approval_already_decided"


class IdempotencyKeyReused(Conflict):
    code = "idempotency_key_reused"


class AlreadyExists(Conflict):
    code = "already_exists"


class AgentQueueFull(BobbinError):
    code, status = "agent_queue_full", 429


class Unauthorized(BobbinError):
    code, status = "unauthorized", 401


class ServiceUnavailable(BobbinError):
    code, status = "service_unavailable", 503
    retryable = True  # the database or Redis was away for a moment: sending again may work


class AgentNotInitialized(BobbinError):
    code = "agent_not_initialized"


class LeaseLost(BobbinError):
    code, status = "lease_lost", 409


class TurnError(BobbinError):
    code = "turn_error"


class MaxToolRoundsExceeded(TurnError):
    code = "max_tool_rounds_exceeded"


class TurnTimeout(TurnError):
    code = "turn_timeout"


class WorkerLost(TurnError):
    code = "worker_lost"


class WorkingDirectoryUnavailable(TurnError):
    code = "working_directory_unavailable"


class BudgetExceeded(TurnError):
    """The call's worst case on top of what was spent would pass a budget."""

    code = "budget_exceeded"


class ModelPriceUnknown(TurnError):
    """A budget applies, and nothing says what the model costs."""

    code = "model_price_unknown"


class ProviderError(BobbinError):
    """A provider could not be made or its model call failed.

    ``throttled``: the provider asked callers to slow down (429, 503, 529),
    ``retry_after_s`` for how long when it said.
    """

    code, status, retryable = "provider_error", 502, True
    throttled: ClassVar[bool] = False

    def __init__(self, message: str, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class ProviderInstanceNotFound(ProviderError):
    code, status, retryable = "provider_instance_not_found", 422, False


class ModelNotFound(ProviderError):
    code, status, retryable = "model_not_found", 422, False


class ProviderCredentialMissing(ProviderError):
    code, status, retryable = "provider_credential_missing", 422, False


class ProviderAuthFailed(ProviderError):
    code, status, retryable = "provider_auth_failed", 502, False


class ProviderUnreachable(ProviderError):
    code, status, retryable = "provider_unreachable", 502, True


class ProviderRateLimited(ProviderError):
    code, status, retryable = "provider_rate_limited", 429, True
    throttled = True


class ProviderOverloaded(ProviderError):
    """503 or 529: the provider is overloaded and asks callers to slow down."""

    throttled = True


class ProviderBadRequest(ProviderError):
    """The provider refused the request itself (400/404/422): retrying cannot help."""

    code, retryable = "provider_error", False
