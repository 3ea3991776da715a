"""Polyv sub-account credentials: from the environment, or from SSM Parameter Store (SecureString)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    NoCredentialsError,
    NoRegionError,
    PartialCredentialsError,
)

from polyv_retriever.aws_errors import AWS_CREDENTIALS_HINT
from polyv_retriever.errors import CredentialsError, InvalidInput, ParameterStoreUnavailable

#: AWS error codes that mean "these AWS credentials may not do this" (or are not valid at all).
AWS_ACCESS_CODES = frozenset(
    {
        "AccessDenied",
        "AccessDeniedException",
        "UnrecognizedClientException",
        "InvalidClientTokenId",
        "InvalidAccessKeyId",
        "InvalidSignatureException",
        "SignatureDoesNotMatch",
        "ExpiredToken",
        "ExpiredTokenException",
        "KMSAccessDeniedException",
    }
)


def aws_access_refused(exc: BaseException) -> bool:
    """AWS answered that these credentials may not make this call (or are not valid): an error code above,
    or a bare 403 (a HEAD has no body to carry a code)."""
    if not isinstance(exc, ClientError):
        return False
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return exc.response.get("Error", {}).get("Code") in AWS_ACCESS_CODES or status == 403


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
    except (parameters.exceptions.GetParameterError, BotoCoreError, ClientError) as exc:
        # Powertools wraps the SDK's error (raised while handling it); the client's creation (region) is not.
        raise _ssm_error(parameter_name, exc.__cause__ or exc.__context__ or exc) from None
    try:
        value = json.loads(str(raw))
        return Credentials(str(value["appId"]).strip(), str(value["appSecret"]).strip())
    except (ValueError, KeyError, TypeError):
        # Never echo the value: it is the secret.
        raise InvalidInput(
            f'SSM parameter {parameter_name} must hold JSON {{"appId": "...", "appSecret": "..."}}'
        ) from None


def _ssm_error(name: str, exc: BaseException) -> InvalidInput | CredentialsError | ParameterStoreUnavailable:
    """What a failed read of the credentials parameter means for the user: each cause, its own fix."""
    what = f"cannot read Polyv credentials from SSM parameter {name}"
    if isinstance(exc, NoRegionError):
        return InvalidInput(
            f"{what}: no AWS region is configured",
            hint="set AWS_DEFAULT_REGION, or a region in your AWS profile",
        )
    if isinstance(exc, NoCredentialsError | PartialCredentialsError):
        return CredentialsError(f"{what}: no AWS credentials found", hint=AWS_CREDENTIALS_HINT)
    code = str(exc.response.get("Error", {}).get("Code")) if isinstance(exc, ClientError) else None
    if code == "ParameterNotFound":
        return InvalidInput(
            f"{what}: it does not exist in this account and region",
            hint="create it (README: Deploying) or name the right one with --credentials-parameter",
        )
    if aws_access_refused(exc):
        return CredentialsError(
            f"{what}: AWS refused: {code}",
            hint="these AWS credentials need ssm:GetParameter on it (and kms:Decrypt on its key)",
        )
    # No answer (connection, timeout), throttling or a 5xx: worth another try. The SDK's own text can hold
    # an endpoint URL; the class or code names the cause well enough.
    return ParameterStoreUnavailable(f"{what}: {code or type(exc).__name__}")


def resolve(parameter_name: str | None = None) -> Credentials:
    """The environment's credentials if set, else the SSM parameter named by the argument or by
    POLYV_CREDENTIALS_PARAMETER."""
    found = from_env()
    if found:
        return found
    name = parameter_name or os.environ.get("POLYV_CREDENTIALS_PARAMETER")
    if not name:
        raise CredentialsError(
            "no Polyv credentials",
            hint="set POLYV_APP_ID and POLYV_APP_SECRET, or name an SSM SecureString parameter with "
            "--credentials-parameter or POLYV_CREDENTIALS_PARAMETER",
        )
    return from_ssm(name)
