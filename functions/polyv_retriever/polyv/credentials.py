"""Polyv sub-account credentials: from the environment, or from SSM Parameter Store (SecureString)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

from polyv_retriever.errors import InvalidInput

#: Lambda warm invocations reuse a decrypted parameter for this long before asking SSM again.
SSM_CACHE_SECONDS = 300


@dataclass(frozen=True)
class Credentials:
    app_id: str
    # repr=False: a dataclass repr lands in logs and tracebacks sooner or later.
    secret: str = field(repr=False)

    def __post_init__(self) -> None:
        if not self.app_id or not self.secret:
            raise InvalidInput("Polyv credentials need both an appId and an app secret")


def from_env(environ: os._Environ[str] | dict[str, str] | None = None) -> Credentials | None:
    env = os.environ if environ is None else environ
    app_id, secret = env.get("POLYV_APP_ID"), env.get("POLYV_APP_SECRET")
    if app_id and secret:
        return Credentials(app_id, secret)
    return None


def from_ssm(parameter_name: str) -> Credentials:
    """One SecureString holding ``{"appId": ..., "appSecret": ...}``, read decrypted through Powertools'
    cached Parameters utility. One parameter, so appId and secret rotate together, atomically."""
    from aws_lambda_powertools.utilities import parameters

    try:
        raw = parameters.get_parameter(parameter_name, decrypt=True, max_age=SSM_CACHE_SECONDS)
    except parameters.exceptions.GetParameterError as exc:
        raise InvalidInput(
            f"cannot read Polyv credentials from SSM parameter {parameter_name}: {exc}"
        ) from None
    try:
        value = json.loads(str(raw))
        return Credentials(str(value["appId"]).strip(), str(value["appSecret"]).strip())
    except (ValueError, KeyError, TypeError):
        # Never echo the value: it is the secret.
        raise InvalidInput(
            f'SSM parameter {parameter_name} must hold JSON {{"appId": "...", "appSecret": "..."}}'
        ) from None


def resolve(parameter_name: str | None = None) -> Credentials:
    """The environment's credentials if set, else the SSM parameter named by the argument or by
    POLYV_CREDENTIALS_PARAMETER."""
    found = from_env()
    if found:
        return found
    name = parameter_name or os.environ.get("POLYV_CREDENTIALS_PARAMETER")
    if not name:
        raise InvalidInput(
            "no Polyv credentials: set POLYV_APP_ID and POLYV_APP_SECRET, "
            "or name an SSM SecureString parameter (POLYV_CREDENTIALS_PARAMETER)"
        )
    return from_ssm(name)
