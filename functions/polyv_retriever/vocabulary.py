"""The status vocabularies every part speaks: the state machines, the Lambdas, the manifest, the API and
the CLI compare against these, never against string literals.

Plain enums with no imports, so the CLI and the transfer engine can use them without loading the models;
``contracts`` (the JSON shapes) types its fields with them.
"""

from __future__ import annotations

from enum import StrEnum

# --- vocabularies -----------------------------------------------------------------------------------------


class ExecutionStatus(StrEnum):
    """A retrieval attempt as Step Functions reports it (the API's ``status``)."""

    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    TIMED_OUT = "TIMED_OUT"
    ABORTED = "ABORTED"
    PENDING_REDRIVE = "PENDING_REDRIVE"

    @property
    def terminal(self) -> bool:
        return self not in (ExecutionStatus.RUNNING, ExecutionStatus.PENDING_REDRIVE)


#: How a child execution (or an attempt) can end other than SUCCEEDED.
ENDED_UNSUCCESSFULLY = frozenset({ExecutionStatus.FAILED, ExecutionStatus.TIMED_OUT, ExecutionStatus.ABORTED})


class Outcome(StrEnum):
    """The manifest's verdict on a whole retrieval attempt (also the completion event's ``outcome``)."""

    COMPLETE = "COMPLETE"  # every video is in S3 (copied now or already there)
    PARTIAL = "PARTIAL"  # some video failed, on Polyv's side or ours
    FAILED = "FAILED"  # the retrieval as a whole failed (credentials, the poll deadline, ...)
    TIMED_OUT = "TIMED_OUT"  # the attempt ran out of its time budget; what was copied is listed
    CANCELLED = "CANCELLED"  # an operator stopped it (DELETE); what was copied is listed


class VideoOutcome(StrEnum):
    """One video's line in the manifest."""

    COPIED = "COPIED"  # copied by this attempt, verified in S3
    SKIPPED = "SKIPPED"  # already in S3 and intact
    FAILED = "FAILED"  # our transfer failed after its retries; ``error`` says why
    POLYV_FAIL = "POLYV_FAIL"  # Polyv could not thaw it
    INVALID_VID = "INVALID_VID"  # Polyv answered a vid that cannot be a key: refused, nothing written
    NOT_COPIED = "NOT_COPIED"  # the attempt was cancelled or timed out before it was copied


#: Outcomes whose object is in S3.
LANDED = frozenset({VideoOutcome.COPIED, VideoOutcome.SKIPPED})
#: Outcomes a ``retryFailed`` attempt tries again (Polyv's own failures cannot be fixed by us).
RETRIED_BY_RETRY_FAILED = frozenset({VideoOutcome.FAILED, VideoOutcome.NOT_COPIED})


class TransferStatus(StrEnum):
    """What one Transfer invocation reports."""

    COPIED = "COPIED"
    SKIPPED = "SKIPPED"
    CONTINUE = "CONTINUE"  # time ran low: invoke again with ``continuation``
    FAILED = "FAILED"  # set by the transfer state machine's Catch, never by the function


class VideoState(StrEnum):
    """A video's place in the retrieval's dispatcher (the parent state machine's state document)."""

    QUEUED = "QUEUED"  # SUCCESS on Polyv, waiting for a transfer slot
    RUNNING = "RUNNING"  # its transfer execution runs
    COPIED = "COPIED"
    SKIPPED = "SKIPPED"
    FAILED = "FAILED"

    @property
    def terminal(self) -> bool:
        return self not in (VideoState.QUEUED, VideoState.RUNNING)


class StorageClass(StrEnum):
    """S3 storage classes a retrieval may write (a backup usually wants a cold one)."""

    STANDARD = "STANDARD"
    INTELLIGENT_TIERING = "INTELLIGENT_TIERING"
    STANDARD_IA = "STANDARD_IA"
    GLACIER_IR = "GLACIER_IR"
    DEEP_ARCHIVE = "DEEP_ARCHIVE"
