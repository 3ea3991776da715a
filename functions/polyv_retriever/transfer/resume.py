"""Where a copy starts: the whole resume decision of the transfer engine, as one pure function.

The engine gathers the facts (the probe, HEAD of the key, the journal, the continuation it was handed, the
parts S3 lists for each upload those name), calls :func:`decide`, and acts on the answer. Nothing here does
I/O, so every row of the decision table is a fast unit test (``tests/unit/test_resume_decision.py``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from polyv_retriever.transfer.s3_multipart import ExistingObject, UploadedPart

if TYPE_CHECKING:
    from polyv_retriever.transfer.engine import Plan
    from polyv_retriever.transfer.source import SourceInfo


@dataclass(frozen=True)
class Continuation:
    """What the next invocation needs to go on; the parts themselves are listed back from S3.

    ``size``, ``etag`` and ``last_modified`` are the source as the upload began reading it: an invocation
    that probes something else is looking at another file."""

    upload_id: str
    size: int
    etag: str | None
    part_size: int
    last_modified: str | None = None  # only for a source without an ETag (see SourceInfo)

    def same_source(self, info: SourceInfo) -> bool:
        return (self.size, self.etag or None, self.last_modified or None) == (
            info.size,
            info.etag or None,
            info.last_modified or None,
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Continuation:
        return cls(
            str(data["upload_id"]),
            int(data["size"]),
            data.get("etag"),
            int(data["part_size"]),
            data.get("last_modified"),
        )


@dataclass(frozen=True)
class JournalRecord:
    """What a journal object says: the upload it belongs to and the CRC of each part recorded so far."""

    upload: Continuation
    part_crcs: dict[int, int] = field(default_factory=dict)

    @classmethod
    def parse(cls, data: dict[str, Any] | None) -> JournalRecord | None:
        """None for no journal or one that cannot be read (it only ever saves work, never decides)."""
        if data is None:
            return None
        try:
            parts = data.get("parts") or {}
            return cls(Continuation.from_dict(data), {int(n): int(crc) for n, crc in parts.items()})
        except (KeyError, TypeError, ValueError, AttributeError):
            return None


# --- the decisions ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Skip:
    """The object at the key is this source, copied and verified before: nothing to move."""

    checksum: str
    abort: tuple[str, ...] = ()


@dataclass(frozen=True)
class Resume:
    """Go on with ``upload_id``; ``parts`` are already in S3, whole and with a known CRC."""

    upload_id: str
    parts: dict[int, UploadedPart]
    abort: tuple[str, ...] = ()


@dataclass(frozen=True)
class Fresh:
    """Start a new upload (after aborting ``abort``: uploads of an older source, or of another plan)."""

    abort: tuple[str, ...] = ()


@dataclass(frozen=True)
class Changed:
    """The source is not the one the continuation was copying: fail with SourceChanged (after aborting)."""

    reason: str
    abort: tuple[str, ...] = ()


Decision = Skip | Resume | Fresh | Changed


def decide(
    *,
    probed: SourceInfo,
    metadata: Mapping[str, str],
    existing: ExistingObject | None,
    continuation: Continuation | None,
    journal: JournalRecord | None,
    listed: Mapping[str, dict[int, UploadedPart] | None],
    the_plan: Plan,
) -> Decision:
    """``metadata``: what the object must carry (vid, task, the source's identity); ``listed``: the parts S3
    holds for each upload the continuation or journal names, None for an upload that is gone.

    The continuation is preferred to the journal; the journal is what a crashed invocation left (or what a
    retried one, handed an older continuation, must fall back to). Every other open upload they name is
    aborted: it can never be completed, and until aborted its parts are billed.
    """
    candidates = [c for c in (continuation, journal.upload if journal else None) if c is not None]
    still_open = tuple(dict.fromkeys(c.upload_id for c in candidates if listed.get(c.upload_id) is not None))

    # Checked with a continuation too: an invocation may have completed the upload and died before it
    # could say so. Only an upload that completed has a checksum; a foreign object has other metadata.
    if (
        existing is not None
        and existing.size == probed.size
        and existing.checksum is not None
        and all(existing.metadata.get(k) == v for k, v in metadata.items())
    ):
        return Skip(existing.checksum, abort=still_open)

    if continuation is not None and not continuation.same_source(probed):
        return Changed(
            f"the source changed between invocations (size {continuation.size} -> {probed.size}, "
            f"ETag {continuation.etag} -> {probed.etag}, "
            f"Last-Modified {continuation.last_modified} -> {probed.last_modified})",
            abort=still_open,
        )

    for candidate in candidates:
        parts = listed.get(candidate.upload_id)
        if parts is None or not candidate.same_source(probed) or candidate.part_size != the_plan.part_size:
            continue
        known_crcs = journal.part_crcs if journal and journal.upload.upload_id == candidate.upload_id else {}
        others = tuple(u for u in still_open if u != candidate.upload_id)
        return Resume(candidate.upload_id, reusable_parts(parts, known_crcs, the_plan), abort=others)

    return Fresh(abort=still_open)


def reusable_parts(
    listed: dict[int, UploadedPart], known_crcs: dict[int, int], the_plan: Plan
) -> dict[int, UploadedPart]:
    """Parts S3 holds that can be kept: of exactly the planned size, with a CRC from S3 or the journal (when
    both say, they must agree). Any other is uploaded again under the same number, replacing it."""
    reusable = {}
    for number, part in listed.items():
        if not 1 <= number <= the_plan.part_count:
            continue
        crc = part.crc32 if part.crc32 is not None else known_crcs.get(number)
        agreed = part.crc32 is None or number not in known_crcs or known_crcs[number] == part.crc32
        start, end = the_plan.bounds(number)
        if crc is not None and agreed and part.size == end - start:
            reusable[number] = UploadedPart(number, part.etag, crc, part.size)
    return reusable
