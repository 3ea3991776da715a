"""Input validation and strict parsing of Polyv's task entries."""

import pytest

from polyv_retriever.errors import InvalidInput, UnexpectedResponse
from polyv_retriever.polyv.models import (
    TaskVideo,
    VideoStatus,
    validate_expire_days,
    validate_task_id,
    validate_vids,
)


@pytest.mark.parametrize(
    "task_id", ["", "short", "a/../b", "abc def ghi", "x" * 65, None, 42, "_polyv-retriever", "-abcdefgh"]
)
def test_malformed_task_ids_are_refused_with_the_value_named(task_id: object) -> None:
    with pytest.raises(InvalidInput, match=r"taskId .* is malformed"):
        validate_task_id(task_id)


def test_a_polyv_task_id_is_accepted() -> None:
    assert validate_task_id("16661c08b9564c1ea6f4544ccd568e58") == "16661c08b9564c1ea6f4544ccd568e58"


@pytest.mark.parametrize(
    ("vids", "message"),
    [
        ([], "non-empty list"),
        ("abc", "non-empty list"),
        ([f"v{i}" for i in range(101)], "101 vids given: at most 100 are taken at once"),
        (["a", ""], "empty vid"),
        (["a", "  "], "empty vid"),
        (["a", "a"], "'a' is given twice"),
        (["a,b"], "'a,b' is malformed"),
    ],
)
def test_vids_validation_names_the_problem(vids: object, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        validate_vids(vids)


def test_one_hundred_vids_is_the_limit_not_beyond() -> None:
    assert len(validate_vids([f"v{i}" for i in range(100)])) == 100


@pytest.mark.parametrize("days", [0, 8, -1, "3", 2.5, True, None])
def test_expire_days_must_be_an_integer_from_1_to_7(days: object) -> None:
    with pytest.raises(InvalidInput, match="expireDays must be an integer from 1 to 7"):
        validate_expire_days(days)


def test_task_entry_parses_the_documented_example() -> None:
    video = TaskVideo.from_api(
        {
            "vid": "1b448be32370f4822ac40fd926112a66_1",
            "url": "https://video-dl-2.videocc.net/1b448be323/6/x.mp4?auth_key=1-a-b-c",
            "status": "SUCCESS",
            "createTime": 1694663401000,
            "successTime": 1694663401000,
        }
    )
    assert video.status is VideoStatus.SUCCESS
    assert video.status.terminal
    assert video.success_time_ms == 1694663401000
    assert "url" not in video.public()  # a signed URL is a credential: never in public views


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"vid": "v", "status": "DONE"}, "unknown status 'DONE'"),
        ({"status": "INIT"}, "without a vid"),
        ({"vid": "v", "status": "SUCCESS", "url": None}, "SUCCESS but has no download url"),
        ({"vid": "v", "status": "INIT", "createTime": "yesterday"}, "non-integer createTime"),
        ("not an object", "not an object"),
    ],
)
def test_entries_that_break_the_contract_are_errors_that_say_so(entry: object, message: str) -> None:
    with pytest.raises(UnexpectedResponse, match=message):
        TaskVideo.from_api(entry)
