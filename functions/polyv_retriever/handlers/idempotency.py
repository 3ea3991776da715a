"""Idempotent creation for the API (POST /retrievals with vids): Powertools Idempotency on the template's
DynamoDB table. Its own module: only the Api function imports it, so no other cold start loads it."""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from typing import Any, TypeVar

from aws_lambda_powertools.utilities.idempotency import (
    DynamoDBPersistenceLayer,
    IdempotencyConfig,
    idempotent_function,
)
from aws_lambda_powertools.utilities.idempotency.exceptions import (
    IdempotencyAlreadyInProgressError,
    IdempotencyValidationError,
)

from polyv_retriever.errors import RetrievalConflict
from polyv_retriever.handlers import runtime

IdempotencyInProgress = IdempotencyAlreadyInProgressError
#: A repeat within a week (the longest expireDays) answers the first request's retrievals.
IDEMPOTENCY_CONFIG = IdempotencyConfig(
    event_key_jmespath="key", payload_validation_jmespath="fingerprint", expires_after_seconds=7 * 86400
)
_F = TypeVar("_F", bound=Callable[..., Any])


@cache
def _persistence() -> DynamoDBPersistenceLayer:
    return DynamoDBPersistenceLayer(
        table_name=runtime.settings().idempotency_table, boto_config=runtime.AWS_CONFIG
    )


def idempotent(function: _F) -> _F:
    """``function(request=...)`` made at most once per ``request["key"]`` (Powertools Idempotency, the
    template's DynamoDB table). Without a table configured (the CLI, unit tests) it is called as it is."""
    if not runtime.settings().idempotency_table:
        return function
    guarded = idempotent_function(
        data_keyword_argument="request", persistence_store=_persistence(), config=IDEMPOTENCY_CONFIG
    )(function)

    def call(**kwargs: Any) -> Any:
        try:
            return guarded(**kwargs)
        except IdempotencyValidationError:
            raise RetrievalConflict("this Idempotency-Key was used with a different request") from None

    return call  # type: ignore[return-value]
