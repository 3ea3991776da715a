"""Typed results of Polyv's source-file-task calls, parsed strictly from the documented envelope."""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol

from polyv_retriever.errors import InvalidInput, UnexpectedResponse

# Polyv's taskIds are 32 hex digits; accept a little more (letters, digits, - and _) in case that changes,
# but never anything that could smuggle a parameter or a path.
#: The first character is a letter or digit: with an empty prefix ``{taskId}/`` starts every key of the
#: retrieval, and a leading '_' could put it under the bucket's lifecycle-managed ``_polyv-retriever/``.
TASK_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{7,63}$")
VID_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
MAX_VIDS_PER_TASK = 100
EXPIRE_DAYS_RANGE = range(1, 8)


class VideoStatus(StrEnum):
    INIT = "INIT"
    PROCESS = "PROCESS"
    SUCCESS = "SUCCESS"
    FAIL = "FAIL"

    @property
    def terminal(self) -> bool:
        return self in (VideoStatus.SUCCESS, VideoStatus.FAIL)


@dataclass(frozen=True)
class TaskVideo:
    vid: str
    status: VideoStatus
    url: str | None
    create_time_ms: int | None
    success_time_ms: int | None

    @classmethod
    def from_api(cls, item: Any) -> TaskVideo:
        if not isinstance(item, dict):
            raise UnexpectedResponse(f"task entry is not an object: {type(item).__name__}")
        vid = item.get("vid")
        if not isinstance(vid, str) or not vid:
            raise UnexpectedResponse("task entry without a vid")
        raw_status = item.get("status")
        try:
            status = VideoStatus(str(raw_status))
        except ValueError:
            raise UnexpectedResponse(f"video {vid} has unknown status {raw_status!r}") from None
        url = item.get("url")
        if url is not None and not isinstance(url, str):
            raise UnexpectedResponse(f"video {vid} has a url that is not a string")
        if status is VideoStatus.SUCCESS and not url:
            raise UnexpectedResponse(f"video {vid} is SUCCESS but has no download url")
        return cls(
            vid=vid,
            status=status,
            url=url or None,
            create_time_ms=_optional_int(item, "createTime", vid),
            success_time_ms=_optional_int(item, "successTime", vid),
        )

    def public(self) -> dict[str, Any]:
        """A JSON view without the signed download URL, which is a bearer credential until it expires."""
        return {
            "vid": self.vid,
            "status": self.status.value,
            "createTime": self.create_time_ms,
            "successTime": self.success_time_ms,
        }


def _optional_int(item: dict[str, Any], key: str, vid: str) -> int | None:
    value = item.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise UnexpectedResponse(f"video {vid} has a non-integer {key}: {value!r}")
    return value


@dataclass(frozen=True)
class RetrievalTask:
    task_id: str
    videos: tuple[TaskVideo, ...]

    @property
    def all_terminal(self) -> bool:
        return all(v.status.terminal for v in self.videos)

    def counts(self) -> dict[str, int]:
        counts = {s.value: 0 for s in VideoStatus}
        for video in self.videos:
            counts[video.status.value] += 1
        return counts

    def video(self, vid: str) -> TaskVideo | None:
        return next((v for v in self.videos if v.vid == vid), None)

    def public(self) -> dict[str, Any]:
        return {"taskId": self.task_id, "counts": self.counts(), "videos": [v.public() for v in self.videos]}


class TaskReader(Protocol):
    """What the pipeline needs of Polyv: the client, or an in-memory fake in unit tests."""

    def get_task(self, task_id: str) -> RetrievalTask: ...


def validate_task_id(task_id: object) -> str:
    if not isinstance(task_id, str) or not TASK_ID_PATTERN.fullmatch(task_id):
        raise InvalidInput(
            f"taskId {task_id!r} is malformed: expected 8-64 letters, digits, '-' or '_', "
            "starting with a letter or digit (Polyv's are 32 hex digits)"
        )
    return task_id


def validate_vids(vids: object, limit: int = MAX_VIDS_PER_TASK) -> list[str]:
    if not isinstance(vids, list | tuple) or not vids:
        raise InvalidInput("vids must be a non-empty list of Polyv video ids")
    if len(vids) > limit:
        raise InvalidInput(f"{len(vids)} vids given: at most {limit} are taken at once")
    seen: set[str] = set()
    for vid in vids:
        if not isinstance(vid, str) or not vid.strip():
            raise InvalidInput("vids must not contain an empty vid")
        problem = key_safe_vid(vid)
        if problem is not None:
            raise InvalidInput(f"vid {vid[:80]!r} is malformed: {problem}")
        if vid in seen:
            raise InvalidInput(f"vid {vid!r} is given twice")
        seen.add(vid)
    return list(vids)


#: Names under a retrieval's root that belong to us: a vid equal to one of them could overwrite a record.
_RESERVED_VID_NAMES = frozenset({"manifest"})


def key_safe_vid(vid: str) -> str | None:
    """Why a vid that Polyv answered cannot become part of an S3 key, or None when it can.

    Polyv's answer is input like any other: a vid with '/', '..', control characters or the name of one
    of our own records would put an object outside ``{prefix}{taskId}/`` or over a record. Such a vid is a
    per-video failure (INVALID_VID); nothing is written for it."""
    if not VID_PATTERN.fullmatch(vid):
        return "not 1-64 letters, digits, '-' or '_'"
    if vid.startswith("_") or vid.lower() in _RESERVED_VID_NAMES:
        return "collides with the retrieval's own records"
    return None


def validate_expire_days(expire_days: object) -> int:
    if (
        isinstance(expire_days, bool)
        or not isinstance(expire_days, int)
        or expire_days not in EXPIRE_DAYS_RANGE
    ):
        raise InvalidInput(f"expireDays must be an integer from 1 to 7, not {expire_days!r}")
    return expire_days
