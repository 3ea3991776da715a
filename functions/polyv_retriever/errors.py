"""One error vocabulary for the CLI, the Lambda handlers and the state machine.

A Lambda that raises one of these reports the class name as ``errorType``; that name is what the state
machine's ``Retry``/``Catch`` match, so the names are part of the public contract (see
``infra/statemachine/retrieval.asl.json`` and the test that keeps the two in step).
"""

from __future__ import annotations


class RetrieverError(Exception):
    """Base of every error this project raises on purpose."""

    retryable: bool = False
    #: What the operator should do about it; shown by the CLI after the message.
    hint: str = ""

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        if hint is not None:
            self.hint = hint

    @property
    def name(self) -> str:
        return type(self).__name__

    def describe(self) -> str:
        """The one line a user reads: what happened, then what to do."""
        text = str(self)
        return f"{text} ({self.hint})" if self.hint else text


class InvalidInput(RetrieverError):
    """A request we refuse before sending anything: a malformed taskId, too many vids, ..."""

    hint = "fix the input and try again"


class CredentialsError(RetrieverError):
    """Credentials missing, or refused for this call (Polyv's or AWS's): retrying cannot help until fixed."""

    hint = "provide working credentials (see the README's Credentials section)"


# --- Polyv answered with an error envelope -------------------------------------------------------------


class PolyvApiError(RetrieverError):
    """Polyv answered ``status: error``; carries Polyv's own code and description."""

    def __init__(self, code: int, desc: str, *, request_id: str | None = None, hint: str | None = None):
        self.code = code
        self.desc = desc
        self.request_id = request_id
        super().__init__(f"Polyv error {code}: {desc}", hint=hint)


class PolyvAuthError(PolyvApiError):
    """Codes 100-105: credentials, clock or permissions. Retrying the same request cannot help."""


class InvalidTimestamp(PolyvAuthError):
    hint = "the clock of this machine is off by more than 3 minutes: sync it (NTP)"


class AppNotFound(PolyvAuthError):
    hint = "POLYV_APP_ID does not name a Polyv application: check the appId in the VOD console"


class SubAccountNotFound(PolyvAuthError):
    hint = "the sub-account does not exist: create one with the content-distribution role"


class SubAccountExpired(PolyvAuthError):
    hint = "the sub-account has expired: renew it in the Polyv VOD console"


class InvalidSignature(PolyvAuthError):
    hint = "the appSecret does not match the appId: check POLYV_APP_SECRET / the SSM parameter"


class PermissionDenied(PolyvAuthError):
    hint = "the sub-account lacks permission for this call: grant it the content-distribution role"


class PolyvBusinessError(PolyvApiError):
    """Codes 3000 and up: Polyv refused the request itself (unknown task, bad parameter, ...)."""

    hint = "Polyv refused the request: check the taskId or vids"


# --- Transient: worth another try later ----------------------------------------------------------------


class TransientError(RetrieverError):
    retryable = True


class PolyvUnavailable(TransientError):
    """Polyv answered 5xx (or an unknown non-JSON error page)."""

    hint = "Polyv is having trouble; a retrieval retries it, a command can be run again later"


class RateLimited(TransientError):
    """Polyv's per-IP limit (1,500 requests / 10 s) was hit; the IP may be blocked for 5 minutes."""

    hint = "Polyv's rate limit was hit: back off for a few minutes"

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class PolyvTransportError(TransientError):
    """The connection to Polyv failed or timed out."""

    hint = "could not reach Polyv: check the network and POLYV_API_BASE_URL"


class MalformedResponse(TransientError):
    """The body was not the JSON envelope (cut short, a proxy's HTML page, ...)."""

    hint = "Polyv's answer was not understood; a retrieval retries it, a command can be run again later"


class UnexpectedResponse(RetrieverError):
    """A well-formed answer that breaks the documented contract (unknown status, missing field)."""

    hint = "Polyv's answer does not match its documentation: please report it"


# --- Polling and transfer ------------------------------------------------------------------------------


class PollLimitExceeded(RetrieverError):
    """The task did not finish within the poll count or the overall deadline."""

    hint = "the task is still not finished on Polyv: raise the deadline or check the task in the console"


class DownloadNotAllowed(RetrieverError):
    """The download URL is not on the allow-list: refused before any connection."""

    hint = "add the host to POLYV_DOWNLOAD_ALLOW if it really is a Polyv download host"


class SourceUnavailable(TransientError):
    """The download failed in a way another attempt may fix (reset, short body, 5xx)."""

    hint = "the download failed after its retries; a retrieval retries it, a command can be run again"


class SourceExpired(TransientError):
    """The signed download URL answered 403: a fresh one comes from querying the task again."""

    hint = "the download URL expired; a fresh one is fetched from Polyv"


class SourceChanged(RetrieverError):
    """The source's size or identity changed while we copied it: the copy cannot be trusted."""

    hint = "the source file changed during the copy; start the retrieval again"


class RetrievalTimedOut(RetrieverError):
    """The attempt used up its time budget (just under its TimeoutSeconds): its manifest says so."""

    hint = "what was copied is in the manifest; start another attempt with rerun or retryFailed"


class RetrievalCancelled(RetrieverError):
    """An operator cancelled the retrieval (DELETE): a transfer still running stops between parts."""

    hint = "the retrieval was cancelled; start another attempt with rerun to finish it"


class RetrievalConflict(RetrieverError):
    """The request contradicts the retrieval's state (a rerun while one runs, a cancel of an ended one)."""

    hint = "wait for the running attempt to end, or cancel it first"


class RetrievalNotFound(RetrieverError):
    """No retrieval (execution) has that id."""

    hint = "start it with POST /retrievals"


class VideoNotReady(RetrieverError):
    """The video is not (or no longer) SUCCESS in the task, so there is nothing to download."""

    hint = "the video is not ready on Polyv"


class IntegrityError(RetrieverError):
    """What reached S3 does not match what the source served."""

    hint = "the copy was discarded; run the retrieval again"


class StorageError(TransientError):
    """S3 refused or failed a request after our retries (an answer, or none: connection, timeout)."""

    hint = "S3 failed; check the bucket, its permissions and the endpoint"


class EventNotDelivered(RetrieverError):
    """EventBridge did not accept the retrieval's completion event (retried: downstream rules wait on it).
    Only Finalize raises it, so only Finalize's Retry names it (not a TransientError: those are the
    Transfer's)."""

    retryable = True

    hint = "EventBridge refused the event; check the bus (EVENT_BUS_NAME) and the function's permission"


class OrchestrationError(TransientError):
    """Step Functions refused or failed a request (start or describe an execution) after our retries."""

    hint = "Step Functions failed; check the state machine, its permissions and the endpoint"


class CorruptRecord(RetrieverError):
    """A record object in the bucket is not the JSON document this project wrote there."""

    hint = "a record under the retrieval's _retrieval/ prefix was changed or damaged: delete or restore it"


class TransferInterrupted(RetrieverError):
    """The user stopped the copy (Ctrl-C): the upload was aborted, or kept if they asked to resume it."""

    hint = "run the same command again to copy the file"


class ParameterStoreUnavailable(TransientError):
    """SSM Parameter Store could not be reached or failed (connection, timeout, throttling, 5xx)."""

    hint = "SSM did not answer; try again (check the network or AWS_ENDPOINT_URL if it persists)"


#: Error names the state machine retries: every transient error above.
def retryable_error_names() -> list[str]:
    names: list[str] = []
    stack: list[type[RetrieverError]] = [TransientError]
    while stack:
        cls = stack.pop()
        names.append(cls.__name__)
        stack.extend(cls.__subclasses__())
    return sorted(n for n in names if n != TransientError.__name__)
