"""Every JSON shape that crosses a boundary between the parts, defined once.

The boundaries: the API's requests and answers, the retrieval state machine's execution input and state
document, each Lambda's event and result, the transfer state machine's input and output, the manifest and
the summary. The handlers parse their events with these models, the core returns them, and
``tests/unit/test_asl_contract.py`` checks every path the ASL reads (``ResultSelector``, ``Choice``,
``Pass``, ``ItemsPath``, ``SecondsPath``, ``Payload``) against them, so the definition and the code cannot
drift. The status vocabularies are the enums of ``vocabulary``.

No Lambda types in here: the CLI and the tests use the same models.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from polyv_retriever.vocabulary import Outcome, StorageClass, TransferStatus, VideoOutcome, VideoState

# --- the one error shape -------------------------------------------------------------------------------


class ErrorInfo(BaseModel):
    """A failure as recorded in the manifest, the summary, the API and the state document."""

    name: str = Field(
        description="the error's name (errors.py, or a Step Functions name like States.Timeout)"
    )
    cause: str = Field(default="", description="what a person reads: the message, without secrets")


class ApiError(BaseModel):
    """Every 4xx/5xx body of the API: the one shape its refusals answer and its OpenAPI document names."""

    message: str = Field(description="what is wrong, naming the field or the retrieval")


class StepFunctionsError(BaseModel):
    """What a ``Catch`` with ``ResultPath`` puts into the state: Step Functions' own names."""

    model_config = ConfigDict(extra="allow")
    Error: str = "Unknown"
    Cause: str | None = None


_STRICT = ConfigDict(extra="forbid")
_LENIENT = ConfigDict(extra="ignore")


# --- the retrieval (parent) state machine ---------------------------------------------------------------


class RetrievalOptions(BaseModel):
    """Where the files go; chosen per request, defaulted from the template's parameters."""

    model_config = _STRICT
    storageClass: StorageClass | None = None


class ExecutionInput(BaseModel):
    """What the API starts a retrieval attempt with (the execution's input)."""

    model_config = _STRICT
    taskId: str
    prefix: str
    attempt: int = Field(default=1, ge=1)
    options: RetrievalOptions = Field(default_factory=RetrievalOptions)
    #: retryFailed: only these vids are transferred; None = every SUCCESS video.
    only: list[str] | None = None


class VideoProgress(BaseModel):
    """One video in the dispatcher's ledger (kept small: 100 of them stay far below 256 KB)."""

    model_config = _STRICT
    state: VideoState
    execution: str | None = Field(default=None, description="the transfer execution's name")
    startedAt: float | None = Field(default=None, description="epoch seconds the dispatcher started it")
    key: str | None = None
    size: int | None = None
    crc32: str | None = None
    s3Checksum: str | None = None
    error: ErrorInfo | None = None


class PollProgress(BaseModel):
    """CheckStatus's result: where Polyv and the transfers stand, and what the state machine does next."""

    model_config = _STRICT
    done: bool = Field(description="every video terminal on Polyv and every transfer ended")
    count: int = Field(description="Polyv queries so far")
    startedAt: float = Field(description="epoch seconds of the first poll")
    nextPollAt: float = Field(
        default=0, description="epoch seconds of the next Polyv query (0: Polyv is done)"
    )
    waitSeconds: int = Field(description="the Wait state's SecondsPath")
    checkWait: float = Field(
        default=0,
        description="seconds between looks at running transfers (short after a change, then doubling)",
    )
    counts: dict[str, int] = Field(default_factory=dict, description="Polyv's statuses, counted")
    polyvFailed: list[str] = Field(default_factory=list, description="vids Polyv could not thaw")
    invalid: list[str] = Field(default_factory=list, description="vids refused as keys (hostile/invalid)")
    videos: dict[str, VideoProgress] = Field(default_factory=dict)


class CheckStatusEvent(BaseModel):
    """The CheckStatus Task's Payload."""

    model_config = _LENIENT
    taskId: str
    prefix: str
    attempt: int = 1
    options: RetrievalOptions = Field(default_factory=RetrievalOptions)
    only: list[str] | None = None
    poll: PollProgress | None = None


class RetrievalStateDocument(BaseModel):
    """The parent execution's data as it moves between states (what ``$`` holds)."""

    model_config = _STRICT
    taskId: str
    prefix: str
    attempt: int
    options: RetrievalOptions
    only: list[str] | None
    poll: PollProgress | None
    failure: StepFunctionsError | None = None
    summary: RecordFailureResult | None = None
    recordFailure: StepFunctionsError | None = None


class FinalizeEvent(BaseModel):
    """The Finalize Task's Payload: the ledger (success path) or the failure that ended the attempt."""

    model_config = _LENIENT
    taskId: str
    prefix: str
    attempt: int = 1
    poll: PollProgress | None = None
    failure: StepFunctionsError | None = None


class Summary(BaseModel):
    """Finalize's result: the execution's output, and the completion event's detail."""

    model_config = _STRICT
    taskId: str
    attempt: int
    outcome: Outcome
    counts: dict[VideoOutcome, int]
    bytes: int
    manifest: str
    error: ErrorInfo | None = None


class FailedSummary(Summary):
    """Finalize's result on the failure path (the event had a ``failure``): the error is always there."""

    error: ErrorInfo


class RecordFailureResult(BaseModel):
    """What the state machine keeps of Finalize's answer on the failure path (for its Fail state)."""

    model_config = _STRICT
    error: ErrorInfo


# --- the transfer (child) state machine ----------------------------------------------------------------


class TransferEvent(BaseModel):
    """A transfer execution's input, and each Transfer invocation's event."""

    model_config = _LENIENT
    taskId: str
    vid: str
    prefix: str
    attempt: int = 1
    options: RetrievalOptions = Field(default_factory=RetrievalOptions)
    continuation: dict[str, Any] | None = None


class TransferSummary(BaseModel):
    model_config = _STRICT
    key: str
    size: int
    crc32: str | None = None
    s3Checksum: str | None = None
    bytesTransferred: int = 0
    seconds: float = 0
    parts: int = 0
    ranged: bool = False
    urlRefreshes: int = 0


class TransferResult(TransferEvent):
    """A Transfer invocation's result: the event again (so CONTINUE can feed the next invocation)."""

    model_config = _STRICT
    status: TransferStatus
    result: TransferSummary


class TransferFailure(BaseModel):
    """The transfer state machine's output when its Catch took over."""

    model_config = _STRICT
    vid: str
    status: TransferStatus
    error: StepFunctionsError


# --- the manifest --------------------------------------------------------------------------------------


class ManifestVideo(BaseModel):
    model_config = _STRICT
    vid: str
    outcome: VideoOutcome
    key: str | None = None
    size: int | None = None
    crc32: str | None = None
    s3Checksum: str | None = None
    error: str | None = None
    cause: str | None = None


class Manifest(BaseModel):
    """``{prefix}{taskId}/manifest.json``: every video's outcome, written when an attempt ends."""

    model_config = _STRICT
    taskId: str
    attempt: int
    outcome: Outcome
    finishedAt: str
    destination: str
    counts: dict[VideoOutcome, int]
    bytes: int
    videos: list[ManifestVideo]
    error: ErrorInfo | None = None


RetrievalStateDocument.model_rebuild()


def dump(model: BaseModel) -> dict[str, Any]:
    """A model as the JSON the other side reads (enums as strings, unset optionals left out)."""
    return model.model_dump(mode="json", exclude_none=True)
