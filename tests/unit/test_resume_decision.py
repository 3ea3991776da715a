"""The transfer engine's resume decision, row by row: skip, resume which upload with which parts, start
afresh (aborting what), or refuse a source that changed between invocations."""

from __future__ import annotations

from typing import Any

import pytest

from polyv_retriever.transfer.engine import MiB, TransferSettings, plan
from polyv_retriever.transfer.resume import (
    Changed,
    Continuation,
    Decision,
    Fresh,
    JournalRecord,
    Resume,
    Skip,
    decide,
    reusable_parts,
)
from polyv_retriever.transfer.s3_multipart import ExistingObject, UploadedPart
from polyv_retriever.transfer.source import SourceInfo

SIZE = 12 * MiB  # three parts of 5, 5 and 2 MiB
PLAN = plan(SIZE, TransferSettings(min_part_size=5 * MiB), ranged=True)
SOURCE = SourceInfo(SIZE, '"v1"', ranged=True)
WANTED = {"polyv-vid": "v", "source-size": str(SIZE), "source-etag": '"v1"'}
CHECKSUM = "Zm9vYg=="


def upload(
    upload_id: str, *, size: int = SIZE, etag: str | None = '"v1"', part_size: int = 5 * MiB
) -> Continuation:
    return Continuation(upload_id, size, etag, part_size)


def part(number: int, crc: int | None = 7, size: int | None = None) -> UploadedPart:
    start, end = PLAN.bounds(number)
    return UploadedPart(number, f'"etag-{number}"', crc, end - start if size is None else size)


def run(**facts: Any) -> Decision:
    given: dict[str, Any] = {
        "probed": SOURCE,
        "metadata": WANTED,
        "existing": None,
        "continuation": None,
        "journal": None,
        "listed": {},
        "the_plan": PLAN,
    }
    return decide(**(given | facts))


def test_nothing_known_starts_afresh() -> None:
    assert run() == Fresh()


@pytest.mark.parametrize("size", [SIZE, 0], ids=["file", "empty"])
def test_the_same_source_already_copied_is_skipped(size: int) -> None:
    probed = SourceInfo(size, '"v1"', ranged=True)
    wanted = {**WANTED, "source-size": str(size)}
    existing = ExistingObject(size, {**wanted, "other": "kept"}, CHECKSUM)
    assert run(probed=probed, metadata=wanted, existing=existing) == Skip(CHECKSUM)


@pytest.mark.parametrize(
    "existing",
    [
        ExistingObject(SIZE - 1, WANTED, CHECKSUM),
        ExistingObject(SIZE, WANTED, None),  # not completed by a verified multipart upload
        ExistingObject(SIZE, {**WANTED, "polyv-vid": "another"}, CHECKSUM),
        ExistingObject(SIZE, {**WANTED, "source-etag": '"v0"'}, CHECKSUM),  # an older version's copy
    ],
    ids=["other-size", "no-checksum", "other-video", "other-version"],
)
def test_an_object_that_is_not_this_sources_copy_is_overwritten(existing: ExistingObject) -> None:
    assert run(existing=existing) == Fresh()


def test_a_skip_aborts_the_upload_a_dead_invocation_left_open() -> None:
    existing = ExistingObject(SIZE, WANTED, CHECKSUM)
    decision = run(existing=existing, continuation=upload("u1"), listed={"u1": {1: part(1)}})
    assert decision == Skip(CHECKSUM, abort=("u1",))


def test_a_continuation_resumes_its_upload_with_the_parts_s3_holds() -> None:
    decision = run(continuation=upload("u1"), listed={"u1": {1: part(1, crc=11), 3: part(3, crc=33)}})
    assert decision == Resume("u1", {1: part(1, crc=11), 3: part(3, crc=33)})


@pytest.mark.parametrize(
    "probed",
    [
        SourceInfo(SIZE + 1, '"v1"', ranged=True),
        SourceInfo(SIZE, '"v2"', ranged=True),
        SourceInfo(SIZE, None, ranged=True),
    ],
    ids=["size", "etag", "etag-gone"],
)
def test_a_continuation_of_another_source_is_refused(probed: SourceInfo) -> None:
    decision = run(probed=probed, continuation=upload("u1"), listed={"u1": {}})
    assert isinstance(decision, Changed)
    assert decision.abort == ("u1",)
    assert "changed between invocations" in decision.reason


def test_without_an_etag_last_modified_tells_a_continuation_apart() -> None:
    then = Continuation("u1", SIZE, None, 5 * MiB, "Tue, 14 Nov 2023 22:13:20 GMT")
    same = SourceInfo(SIZE, None, True, last_modified="Tue, 14 Nov 2023 22:13:20 GMT")
    later = SourceInfo(SIZE, None, True, last_modified="Tue, 14 Nov 2023 23:13:20 GMT")
    assert run(probed=same, metadata={}, continuation=then, listed={"u1": {}}) == Resume("u1", {})
    assert isinstance(run(probed=later, metadata={}, continuation=then, listed={"u1": {}}), Changed)


def test_a_continuation_whose_upload_is_gone_starts_afresh() -> None:
    assert run(continuation=upload("u1"), listed={"u1": None}) == Fresh()


def test_a_continuation_planned_with_other_parts_is_aborted_and_started_afresh() -> None:
    decision = run(continuation=upload("u1", part_size=8 * MiB), listed={"u1": {1: part(1)}})
    assert decision == Fresh(abort=("u1",))


def test_a_crashed_invocations_journal_is_picked_up_with_its_part_crcs() -> None:
    # ListParts without checksums (as moto answers): the journal's CRCs make the parts reusable.
    journal = JournalRecord(upload("u1"), {1: 11, 2: 22})
    decision = run(journal=journal, listed={"u1": {1: part(1, crc=None), 2: part(2, crc=None)}})
    assert decision == Resume("u1", {1: part(1, crc=11), 2: part(2, crc=22)})


def test_a_journal_of_an_older_source_is_abandoned() -> None:
    journal = JournalRecord(upload("u0", etag='"v0"'), {1: 11})
    assert run(journal=journal, listed={"u0": {1: part(1)}}) == Fresh(abort=("u0",))


def test_a_journal_whose_upload_is_gone_starts_afresh_without_an_abort() -> None:
    assert run(journal=JournalRecord(upload("u0")), listed={"u0": None}) == Fresh()


def test_a_retried_invocation_with_an_old_continuation_goes_on_with_the_journals_upload() -> None:
    # Invocation k started u2 (another plan) and died; Step Functions retried it with u1's continuation.
    journal = JournalRecord(upload("u2"), {1: 11})
    decision = run(continuation=upload("u1"), journal=journal, listed={"u1": None, "u2": {1: part(1, None)}})
    assert decision == Resume("u2", {1: part(1, crc=11)})


def test_the_continuations_upload_wins_and_another_the_journal_names_is_aborted() -> None:
    journal = JournalRecord(upload("u2"), {1: 99})
    decision = run(continuation=upload("u1"), journal=journal, listed={"u1": {1: part(1, None)}, "u2": {}})
    assert decision == Resume("u1", {}, abort=("u2",))  # u2's CRCs are not u1's: part 1 is uploaded again


def test_a_changed_source_aborts_every_open_upload_named() -> None:
    journal = JournalRecord(upload("u2"))
    decision = run(
        probed=SourceInfo(SIZE, '"v2"', True),
        continuation=upload("u1"),
        journal=journal,
        listed={"u1": {}, "u2": {}},
    )
    assert isinstance(decision, Changed)
    assert decision.abort == ("u1", "u2")


@pytest.mark.parametrize(
    ("listed", "journal_crcs", "kept"),
    [
        ({1: part(1, crc=5)}, {}, {1: 5}),  # S3's CRC
        ({1: part(1, crc=None)}, {1: 6}, {1: 6}),  # the journal's, when S3 does not say
        ({1: part(1, crc=5)}, {1: 5}, {1: 5}),  # both, agreeing
        ({1: part(1, crc=5)}, {1: 6}, {}),  # both, disagreeing: uploaded again
        ({1: part(1, crc=None)}, {}, {}),  # no CRC anywhere: cannot be part of a verified whole
        ({1: part(1, size=4 * MiB)}, {}, {}),  # not the planned size
        ({3: part(3, size=2 * MiB)}, {}, {3: 7}),  # the short last part
        ({4: UploadedPart(4, '"e"', 7, 0)}, {}, {}),  # beyond the plan
    ],
    ids=["s3", "journal", "agree", "disagree", "none", "wrong-size", "last", "beyond"],
)
def test_reusable_parts(
    listed: dict[int, UploadedPart], journal_crcs: dict[int, int], kept: dict[int, int]
) -> None:
    assert {n: p.crc32 for n, p in reusable_parts(listed, journal_crcs, PLAN).items()} == kept


@pytest.mark.parametrize(
    "data",
    [
        {},
        {"upload_id": "u1"},
        {"upload_id": "u1", "size": "x", "part_size": 1},
        {**upload("u").to_dict(), "parts": [1]},
    ],
    ids=["empty", "partial", "bad-size", "bad-parts"],
)
def test_an_unreadable_journal_is_no_journal(data: dict[str, Any]) -> None:
    assert JournalRecord.parse(data) is None


def test_a_journal_reads_back_what_was_written() -> None:
    written = {**upload("u1").to_dict(), "parts": {"1": 11, "2": 22}}
    assert JournalRecord.parse(written) == JournalRecord(upload("u1"), {1: 11, 2: 22})
