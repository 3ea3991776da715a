"""Every JSON shape that crosses a boundary between the parts, defined once.

The boundaries: the retrieval state machine's execution input and state document, each Lambda's event and
result, the transfer state machine's input and output, the manifest and the summary (the API's own request
and error bodies are in ``handlers/api.py``: they are pydantic models, for Powertools' OpenAPI validation).
The handlers parse their events with these models (``load``), the core returns them, and
``tests/unit/test_asl_contract.py`` checks every path the ASL reads (``ResultSelector``, ``Choice``,
``Pass``, ``ItemsPath``, ``SecondsPath``, ``Payload``) against them, so the definition and the code cannot
drift. The status vocabularies are the enums of ``vocabulary``.

They are msgspec Structs: typed and checked like pydantic models, but defined in microseconds. pydantic's
import and these models' schemas cost the Transfer and CheckStatus cold starts ~0.15 CPU s (about half of
``import boto3``), for events a few hundred bytes long. A Struct's constructor does not check its
arguments (mypy does, in the code); ``load`` checks everything that comes from outside.

No Lambda types in here: the CLI and the tests use the same models.
"""

from __future__ import annotations

from enum import Enum
from typing import Annotated, Any, TypeVar

import msgspec
from msgspec import Meta, Struct, field

from polyv_retriever.vocabulary import Outcome, StorageClass, TransferStatus, VideoOutcome, VideoState

Model = TypeVar("Model", bound=Struct)
#: What an invalid document raises from ``load``: its message names the field (``... - at `$.attempt```).
ContractError = msgspec.ValidationError


class Contract(Struct, kw_only=True, forbid_unknown_fields=True):
    """A shape this code writes: an unknown field is an error (the writer and the reader drifted).

    ``kw_only`` holds for the fields a class itself defines: one with a required field after a defaulted one
    (its own or inherited) says ``kw_only=True`` again."""


class Lenient(Contract, forbid_unknown_fields=False):
    """An event a Task's Payload sends: extra fields of the state are ignored."""


def load(model: type[Model], document: Any, *, lax: bool = False) -> Model:
    """``document`` (parsed JSON) checked against ``model``: every field's type, enum and bound. ``lax``
    also takes what converts without loss (``"5"`` or ``5.0`` for an int), for data this code wrote
    earlier in another shape."""
    return msgspec.convert(document, model, strict=not lax)


def dump(model: Struct) -> dict[str, Any]:
    """A model as the JSON the other side reads: enums as strings, fields that are None left out."""
    return _plain(model)  # type: ignore[no-any-return]


def to_json(model: Struct) -> dict[str, Any]:
    """A model as JSON with every field, None as null: where the ASL reads a field that may be null."""
    return msgspec.to_builtins(model)  # type: ignore[no-any-return]


def _plain(value: Any) -> Any:
    if isinstance(value, Struct):
        return {
            name: _plain(item)
            for name in value.__struct_fields__
            if (item := getattr(value, name)) is not None
        }
    if isinstance(value, dict):
        return {_plain(key): _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    if isinstance(value, Enum):
        return value.value
    return value


# --- the one error shape -------------------------------------------------------------------------------


class ErrorInfo(Contract):
    """A failure as recorded in the manifest, the summary, the API and the state document."""

    #: the error's name (errors.py, or a Step Functions name like States.Timeout)
    name: str
    #: what a person reads: the message, without secrets
    cause: str = ""


class StepFunctionsError(Lenient):
    """What a ``Catch`` with ``ResultPath`` puts into the state: Step Functions' own names."""

    Error: str = "Unknown"
    Cause: str | None = None


# --- the retrieval (parent) state machine ---------------------------------------------------------------


class RetrievalOptions(Contract):
    """Where the files go; chosen per request, defaulted from the template's parameters."""

    storageClass: StorageClass | None = None


class ExecutionInput(Contract):
    """What the API starts a retrieval attempt with (the execution's input)."""

    taskId: str
    prefix: str
    attempt: Annotated[int, Meta(ge=1)] = 1
    options: RetrievalOptions = field(default_factory=RetrievalOptions)
    #: retryFailed: only these vids are transferred; None = every SUCCESS video.
    only: list[str] | None = None


class VideoProgress(Contract):
    """One video in the dispatcher's ledger (kept small: 100 of them stay far below 256 KB)."""

    state: VideoState
    #: the transfer execution's name
    execution: str | None = None
    #: epoch seconds the dispatcher started it
    startedAt: float | None = None
    key: str | None = None
    size: int | None = None
    crc32: str | None = None
    s3Checksum: str | None = None
    error: ErrorInfo | None = None


class PollProgress(Contract, kw_only=True):
    """CheckStatus's result: where Polyv and the transfers stand, and what the state machine does next."""

    #: every video terminal on Polyv and every transfer ended
    done: bool
    #: Polyv queries so far
    count: int
    #: epoch seconds of the first poll
    startedAt: float
    #: epoch seconds of the next Polyv query (0: Polyv is done)
    nextPollAt: float = 0
    #: the Wait state's SecondsPath
    waitSeconds: int
    #: seconds between looks at running transfers (short after a change, then doubling)
    checkWait: float = 0
    #: Polyv's statuses, counted
    counts: dict[str, int] = field(default_factory=dict)
    #: vids Polyv could not thaw
    polyvFailed: list[str] = field(default_factory=list)
    #: vids refused as keys (hostile/invalid)
    invalid: list[str] = field(default_factory=list)
    videos: dict[str, VideoProgress] = field(default_factory=dict)


class CheckStatusEvent(Lenient):
    """The CheckStatus Task's Payload."""

    taskId: str
    prefix: str
    attempt: int = 1
    options: RetrievalOptions = field(default_factory=RetrievalOptions)
    only: list[str] | None = None
    poll: PollProgress | None = None


class RetrievalStateDocument(Contract):
    """The parent execution's data as it moves between states (what ``$`` holds)."""

    taskId: str
    prefix: str
    attempt: int
    options: RetrievalOptions
    only: list[str] | None
    poll: PollProgress | None
    failure: StepFunctionsError | None = None
    summary: RecordFailureResult | None = None
    recordFailure: StepFunctionsError | None = None


class FinalizeEvent(Lenient):
    """The Finalize Task's Payload: the ledger (success path) or the failure that ended the attempt."""

    taskId: str
    prefix: str
    attempt: int = 1
    poll: PollProgress | None = None
    failure: StepFunctionsError | None = None


class Summary(Contract):
    """Finalize's result: the execution's output, and the completion event's detail."""

    taskId: str
    attempt: int
    outcome: Outcome
    counts: dict[VideoOutcome, int]
    bytes: int
    manifest: str
    error: ErrorInfo | None = None


class FailedSummary(Summary, kw_only=True):
    """Finalize's result on the failure path (the event had a ``failure``): the error is always there."""

    error: ErrorInfo


class RecordFailureResult(Contract):
    """What the state machine keeps of Finalize's answer on the failure path (for its Fail state)."""

    error: ErrorInfo


# --- the transfer (child) state machine ----------------------------------------------------------------


class TransferEvent(Lenient):
    """A transfer execution's input, and each Transfer invocation's event."""

    taskId: str
    vid: str
    prefix: str
    attempt: int = 1
    options: RetrievalOptions = field(default_factory=RetrievalOptions)
    continuation: dict[str, Any] | None = None


class TransferSummary(Contract):
    key: str
    size: int
    crc32: str | None = None
    s3Checksum: str | None = None
    bytesTransferred: int = 0
    seconds: float = 0
    parts: int = 0
    ranged: bool = False
    urlRefreshes: int = 0


class TransferResult(TransferEvent, kw_only=True, forbid_unknown_fields=True):
    """A Transfer invocation's result: the event again (so CONTINUE can feed the next invocation)."""

    status: TransferStatus
    result: TransferSummary


class TransferFailure(Contract):
    """The transfer state machine's output when its Catch took over."""

    vid: str
    status: TransferStatus
    error: StepFunctionsError


# --- the manifest --------------------------------------------------------------------------------------


class ManifestVideo(Contract):
    vid: str
    outcome: VideoOutcome
    key: str | None = None
    size: int | None = None
    crc32: str | None = None
    s3Checksum: str | None = None
    error: str | None = None
    cause: str | None = None


class Manifest(Contract):
    """``{prefix}{taskId}/manifest.json``: every video's outcome, written when an attempt ends."""

    taskId: str
    attempt: int
    outcome: Outcome
    finishedAt: str
    destination: str
    counts: dict[VideoOutcome, int]
    bytes: int
    videos: list[ManifestVideo]
    error: ErrorInfo | None = None
