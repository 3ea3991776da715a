"""The contracts' own rules: what ``load`` refuses and how it says so, what ``dump`` writes, and that the
functions on the transfer path do not pay for pydantic (bench: cold start)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from polyv_retriever.contracts import (
    ContractError,
    RetrievalOptions,
    TransferEvent,
    TransferResult,
    TransferSummary,
    dump,
    load,
    to_json,
)
from polyv_retriever.handlers import runtime
from polyv_retriever.vocabulary import StorageClass, TransferStatus

EVENT = {"taskId": "t" * 32, "vid": "v1", "prefix": "polyv/", "attempt": 2}


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"attempt": "2"}, "$.attempt"),
        ({"vid": None}, "$.vid"),
        ({"options": {"storageClass": "COLDEST"}}, "$.options.storageClass"),
        ({"continuation": ["not", "an", "object"]}, "$.continuation"),
    ],
)
def test_an_event_is_checked_field_by_field_and_the_refusal_names_the_field(
    change: dict[str, object], named: str
) -> None:
    with pytest.raises(ContractError, match=named.replace("$", r"\$")):
        load(TransferEvent, {**EVENT, **change})


def test_a_missing_field_is_named() -> None:
    with pytest.raises(ContractError, match="`vid`"):
        load(TransferEvent, {k: v for k, v in EVENT.items() if k != "vid"})


def test_an_event_ignores_the_states_other_fields_a_result_this_code_writes_refuses_them() -> None:
    assert load(TransferEvent, {**EVENT, "poll": {"count": 1}}).vid == "v1"
    result = {**EVENT, "status": "COPIED", "result": {"key": "k", "size": 1}}
    assert load(TransferResult, result).status is TransferStatus.COPIED
    with pytest.raises(ContractError, match="unknown field `stray`"):
        load(TransferResult, {**result, "stray": 1})


def test_dump_leaves_out_unset_fields_but_keeps_the_nulls_inside_a_continuation() -> None:
    result = TransferResult(
        taskId="t" * 32,
        vid="v1",
        prefix="polyv/",
        options=RetrievalOptions(storageClass=StorageClass.GLACIER_IR),
        continuation={"uploadId": "u", "etag": None},
        status=TransferStatus.CONTINUE,
        result=TransferSummary(key="k", size=5),
    )
    written = dump(result)
    assert "crc32" not in written["result"]
    assert "s3Checksum" not in written["result"]
    assert written["continuation"] == {"uploadId": "u", "etag": None}
    assert written["status"] == "CONTINUE"
    assert type(written["status"]) is str
    assert written["options"] == {"storageClass": "GLACIER_IR"}
    assert load(TransferResult, json.loads(json.dumps(written))) == result


def test_to_json_keeps_every_field_for_a_choice_that_reads_it() -> None:
    written = to_json(load(TransferEvent, EVENT))
    assert written["continuation"] is None
    assert written["options"] == {"storageClass": None}


def test_a_missing_setting_fails_naming_the_variable() -> None:
    with pytest.raises(ContractError, match="`BUCKET_NAME`"):
        load(runtime.Settings, {"POLYV_CREDENTIALS_PARAMETER": "/polyv/credentials"})
    with pytest.raises(ContractError, match="BUCKET_NAME"):
        load(runtime.Settings, {"BUCKET_NAME": "b", "POLYV_CREDENTIALS_PARAMETER": "/p"})  # < 3 chars


@pytest.mark.parametrize(
    "handler", ["polyv_retriever.handlers.transfer", "polyv_retriever.handlers.check_status"]
)
def test_the_functions_on_the_transfer_path_do_not_import_pydantic(handler: str) -> None:
    """pydantic and schemas of these models were half of a bare ``import boto3`` on each cold start."""
    loaded = subprocess.run(
        [sys.executable, "-c", f"import sys, {handler}; print(sorted(sys.modules))"],
        capture_output=True,
        text=True,
        check=True,
        env={"LAMBDA_TASK_ROOT": "/var/task", "AWS_REGION": "us-east-1", "PATH": "/usr/bin:/bin"},
    ).stdout
    assert "'msgspec'" in loaded  # the contracts are imported: the check is not vacuous
    assert "'pydantic'" not in loaded
    assert "'pydantic_core'" not in loaded
