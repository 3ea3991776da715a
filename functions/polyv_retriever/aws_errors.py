"""The one translation of AWS SDK failures into the project's named errors.

botocore raises ``ClientError`` for an answer (with AWS's error code) and a ``BotoCoreError`` subclass for
a request that never got one (``EndpointConnectionError``, timeouts, a body cut short, no credentials).
Both become the error of the service that failed, so that the state machine's Retry lists, the API's
status codes and the CLI's exit codes see one vocabulary: :class:`StorageError` for S3,
:class:`OrchestrationError` for Step Functions (a Step Functions failure is never reported as S3's) and
:class:`EventNotDelivered` for EventBridge.
Every call site catches :data:`AWS_ERRORS`, handles the codes it expects (``NoSuchKey``,
``ExecutionDoesNotExist``) and raises what these functions return for anything else.
"""

from __future__ import annotations

from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError, PartialCredentialsError

from polyv_retriever.errors import EventNotDelivered, OrchestrationError, StorageError

#: What to do when the SDK found no credentials at all (the CLI's `status` says the same).
AWS_CREDENTIALS_HINT = "configure AWS credentials: aws configure, AWS_PROFILE, or AWS_ACCESS_KEY_ID/SECRET"

#: What an AWS SDK call can raise on its own: catch these around every call.
AWS_ERRORS = (ClientError, BotoCoreError)


def error_code(exc: BaseException) -> str | None:
    """AWS's error code of an answer; None for a failure that never got an answer (connection, timeout)."""
    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Code") or "") or None
    return None


def _describe(action: str, exc: BaseException) -> str:
    if isinstance(exc, NoCredentialsError | PartialCredentialsError):
        return f"{action} not sent: no AWS credentials found"
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        message = error.get("Message")
        return f"{action} failed: {error.get('Code')}" + (f": {message}" if message else "")
    # The exception's own text can hold an endpoint URL; its class names the cause well enough.
    return f"{action} failed: {type(exc).__name__} (no answer from the service)"


def s3_error(action: str, exc: BaseException) -> StorageError:
    """``action`` names the call and what it was for, e.g. ``"PutObject (journal)"``; never a secret."""
    return StorageError(_describe(f"S3 {action}", exc), hint=_hint(exc))


def sfn_error(action: str, exc: BaseException) -> OrchestrationError:
    return OrchestrationError(_describe(f"Step Functions {action}", exc), hint=_hint(exc))


def events_error(action: str, exc: BaseException) -> EventNotDelivered:
    """EventBridge's failure: the event was not delivered, which Finalize's Retry retries."""
    return EventNotDelivered(_describe(f"EventBridge {action}", exc), hint=_hint(exc))


def _hint(exc: BaseException) -> str | None:
    """The credentials' hint where there were none; otherwise the error's own."""
    return AWS_CREDENTIALS_HINT if isinstance(exc, NoCredentialsError | PartialCredentialsError) else None
