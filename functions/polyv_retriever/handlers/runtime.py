"""What every handler shares: settings checked once at cold start, clients reused across warm invocations.

Credentials are read from SSM only (never from the function's environment), through Powertools' cached
Parameters utility; they are never logged. Each factory imports the part of the pipeline it builds: every
handler imports this module, and a cold start should not pay for what its handler never uses (the
Transfer function needs neither the dispatcher nor the canceller).
"""

from __future__ import annotations

import os
from functools import cache
from typing import TYPE_CHECKING, Annotated, Any

import boto3
import urllib3
from botocore.config import Config
from msgspec import Meta, Struct, field

from polyv_retriever import observability
from polyv_retriever.contracts import load
from polyv_retriever.pipeline.records import S3RecordStore
from polyv_retriever.polyv import credentials
from polyv_retriever.polyv.client import PolyvClient
from polyv_retriever.transfer.s3_multipart import s3_client

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_stepfunctions import SFNClient

    from polyv_retriever.pipeline.cancel import Canceller
    from polyv_retriever.pipeline.executions import SfnTransferLauncher, StateMachine
    from polyv_retriever.pipeline.video_transfer import StorageDefaults

logger = observability.logger


class Settings(Struct, frozen=True):
    """The functions' environment (template.yaml sets it). Validated at cold start: a missing variable
    fails the first invocation with its name, not a KeyError deep inside."""

    bucket_name: Annotated[str, Meta(min_length=3)] = field(name="BUCKET_NAME")
    credentials_parameter: Annotated[str, Meta(min_length=1)] = field(name="POLYV_CREDENTIALS_PARAMETER")
    state_machine_arn: str = field(default="", name="STATE_MACHINE_ARN")
    transfer_state_machine_arn: str = field(default="", name="TRANSFER_STATE_MACHINE_ARN")
    storage_class: str = field(default="STANDARD", name="STORAGE_CLASS")
    kms_key_id: str = field(default="", name="KMS_KEY_ID")
    idempotency_table: str = field(default="", name="IDEMPOTENCY_TABLE")


@cache
def settings() -> Settings:
    return load(Settings, dict(os.environ))


AWS_CONFIG = Config(retries={"mode": "standard", "max_attempts": 5}, max_pool_connections=32)


@cache
def s3() -> S3Client:
    return s3_client()


@cache
def sfn() -> SFNClient:
    return boto3.client("stepfunctions", config=AWS_CONFIG)


@cache
def events() -> Any:
    return boto3.client("events", config=AWS_CONFIG)


@cache
def records() -> S3RecordStore:
    return S3RecordStore(s3(), settings().bucket_name)


def transfer_machine() -> StateMachine:
    from polyv_retriever.pipeline.executions import StateMachine

    return StateMachine(sfn(), settings().transfer_state_machine_arn)


def retrieval_machine() -> StateMachine:
    from polyv_retriever.pipeline.executions import StateMachine

    return StateMachine(sfn(), settings().state_machine_arn)


def transfer_launcher() -> SfnTransferLauncher:
    from polyv_retriever.pipeline.executions import SfnTransferLauncher

    return SfnTransferLauncher(transfer_machine())


def canceller() -> Canceller:
    from polyv_retriever.pipeline.cancel import Canceller

    return Canceller(s3(), settings().bucket_name, records(), transfer_machine())


def storage_defaults() -> StorageDefaults:
    from polyv_retriever.pipeline.video_transfer import StorageDefaults

    return StorageDefaults(storage_class=settings().storage_class, kms_key_id=settings().kms_key_id)


@cache
def download_pool() -> urllib3.PoolManager:
    # Enough connections for the transfer workers, each with its next part asked for ahead (2 x 32);
    # retries are the transfer's own (per part).
    return urllib3.PoolManager(num_pools=4, maxsize=64, retries=False)


def polyv_client() -> PolyvClient:
    """A client with the current credentials (Powertools caches the decrypted parameter for 5 minutes,
    so a rotated secret is picked up without a redeploy)."""
    return PolyvClient(credentials.from_ssm(settings().credentials_parameter))
