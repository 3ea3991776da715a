"""What every handler shares: settings checked once at cold start, clients reused across warm invocations.

Credentials are read from SSM only (never from the function's environment), through Powertools' cached
Parameters utility; they are never logged. Each factory imports the part of the pipeline it builds: every
handler imports this module, and a cold start should not pay for what its handler never uses (the
Transfer function needs neither the dispatcher nor the canceller).
"""

from __future__ import annotations

import os
from functools import cache
from typing import TYPE_CHECKING, Any

import boto3
import urllib3
from botocore.config import Config
from pydantic import BaseModel, ConfigDict, Field

from polyv_retriever import observability
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


class Settings(BaseModel):
    """The functions' environment (template.yaml sets it). Validated at cold start: a missing variable
    fails the first invocation with its name, not a KeyError deep inside."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    bucket_name: str = Field(alias="BUCKET_NAME", min_length=3)
    credentials_parameter: str = Field(alias="POLYV_CREDENTIALS_PARAMETER", min_length=1)
    state_machine_arn: str = Field("", alias="STATE_MACHINE_ARN")
    transfer_state_machine_arn: str = Field("", alias="TRANSFER_STATE_MACHINE_ARN")
    storage_class: str = Field("STANDARD", alias="STORAGE_CLASS")
    kms_key_id: str = Field("", alias="KMS_KEY_ID")
    idempotency_table: str = Field("", alias="IDEMPOTENCY_TABLE")


@cache
def settings() -> Settings:
    return Settings.model_validate(dict(os.environ))


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
