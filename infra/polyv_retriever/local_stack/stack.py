"""The whole deployed shape on one machine, built from ``template.yaml``: no AWS, no Docker, no credentials.

    moto server  (S3, SSM, Step Functions executing the real definition)  <- boto3 via AWS_ENDPOINT_URL
      └ Lambda invocations -> the project's real handlers, in this process
    API Gateway front (REST proxy events)  -> the real API handler
    Polyv emulator (or the real Polyv, with real credentials)

Every port is chosen by the OS, so two stacks never clash; ``stop()`` (or leaving the ``with`` block) shuts
every server down. The stack sets this process's AWS environment to point at itself: run it in a process
of its own (``polyv-retriever run`` does; tests start ``python -m polyv_retriever.local_stack``).
"""

from __future__ import annotations

import importlib
import json
import os
from dataclasses import dataclass, field
from typing import Any

import boto3

from polyv_retriever.local_stack.api_gateway import ApiGatewayFront
from polyv_retriever.local_stack.moto_server import MotoServer
from polyv_retriever.local_stack.template import REGION, ResolvedTemplate, load_template
from polyv_retriever.polyv.credentials import Credentials
from polyv_retriever.polyv_emulator import EmulatorServer

BUCKET = "polyv-retriever-local"
#: The AWS credentials of everything on the local stack: moto accepts them, the API front checks them.
AWS_KEY_ID, AWS_SECRET = "local-stack", "local-stack"
#: Waits short enough for a demo; the same template parameters a deployment would override.
FAST_POLLING = {"PollFirstWaitSeconds": "1", "PollMaxWaitSeconds": "2"}


@dataclass
class StackOptions:
    #: Template parameter overrides, as `sam deploy --parameter-overrides` would pass them.
    parameters: dict[str, str] = field(default_factory=lambda: dict(FAST_POLLING))
    #: None: start the Polyv emulator. Otherwise the real (or another) Polyv, with these credentials.
    polyv_credentials: Credentials | None = None
    polyv_api_base_url: str | None = None
    emulator_time_scale: float = 60.0
    #: Extra environment for the functions (e.g. TRANSFER_TIME_RESERVE_SECONDS in tests).
    function_environment: dict[str, str] = field(default_factory=dict)
    #: Lambda timeouts to use instead of the template's, by logical id (to exercise continuations).
    function_timeouts: dict[str, float] = field(default_factory=dict)


class LocalStack:
    def __init__(self, options: StackOptions | None = None) -> None:
        self.options = options or StackOptions()
        self.moto: MotoServer | None = None
        self.emulator: EmulatorServer | None = None
        self.api: ApiGatewayFront | None = None
        self.state_machine_arn = ""
        self.credentials_parameter = ""
        self.notification_queue_url = ""

    # --- lifecycle -------------------------------------------------------------------------------------

    def start(self) -> LocalStack:
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        self.moto = MotoServer().start()
        # Fake credentials that cannot reach AWS, and every boto3 client aimed at moto.
        os.environ.update(
            AWS_ACCESS_KEY_ID=AWS_KEY_ID,
            AWS_SECRET_ACCESS_KEY=AWS_SECRET,
            AWS_DEFAULT_REGION=REGION,
            AWS_REGION=REGION,
            AWS_ENDPOINT_URL=self.moto.endpoint,
        )
        for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN"):
            os.environ.pop(name, None)

        credentials, base_url = self.options.polyv_credentials, self.options.polyv_api_base_url
        if credentials is None:
            self.emulator = EmulatorServer(time_scale=self.options.emulator_time_scale).start()
            credentials = Credentials(self.emulator.app_id, self.emulator.secret)
            base_url = self.emulator.base_url

        resolved = ResolvedTemplate(
            load_template(), self.options.parameters, physical_names={"DataBucket": BUCKET}
        )
        self._create_bucket(resolved)
        self._create_tables(resolved)
        self._store_credentials(resolved, credentials)
        self._configure_functions(resolved, base_url)
        self._create_state_machines(resolved)
        self._create_event_rules(resolved)
        api_function = next(f for f in resolved.functions() if f.logical_id == "ApiFunction")
        self.api = ApiGatewayFront(
            _load_handler(api_function.handler),
            routes=resolved.api_routes(),
            timeout_seconds=api_function.timeout,
            credentials={AWS_KEY_ID: AWS_SECRET},
        ).start()

    def stop(self) -> None:
        for server in (self.api, self.emulator, self.moto):
            if server is not None:
                server.stop()
        self.api = self.emulator = self.moto = None

    def __enter__(self) -> LocalStack:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    def describe(self) -> dict[str, Any]:
        """Where everything is: what `python -m polyv_retriever.local_stack` prints for tests and people."""
        assert self.moto is not None
        assert self.api is not None
        return {
            "awsEndpoint": self.moto.endpoint,
            "apiUrl": self.api.url,
            "bucket": BUCKET,
            "stateMachineArn": self.state_machine_arn,
            "credentialsParameter": self.credentials_parameter,
            "polyvEmulator": self.emulator.base_url if self.emulator else None,
            "notificationQueueUrl": self.notification_queue_url,
            "region": REGION,
        }

    # --- resources from the template --------------------------------------------------------------------

    def _create_bucket(self, resolved: ResolvedTemplate) -> None:
        s3 = boto3.client("s3")
        if not resolved.condition("CreateBucket"):
            # An existing bucket is named by parameter: locally it has to be made, without our settings.
            s3.create_bucket(Bucket=resolved.parameters["ExistingBucketName"])
            return
        props = resolved.bucket_properties()
        s3.create_bucket(Bucket=BUCKET)
        s3.put_bucket_encryption(
            Bucket=BUCKET,
            ServerSideEncryptionConfiguration={
                "Rules": [
                    {"ApplyServerSideEncryptionByDefault": rule["ServerSideEncryptionByDefault"]}
                    for rule in props["BucketEncryption"]["ServerSideEncryptionConfiguration"]
                ]
            },
        )
        s3.put_public_access_block(
            Bucket=BUCKET, PublicAccessBlockConfiguration=props["PublicAccessBlockConfiguration"]
        )
        s3.put_bucket_lifecycle_configuration(
            Bucket=BUCKET,
            LifecycleConfiguration={
                "Rules": [_lifecycle_rule(r) for r in props["LifecycleConfiguration"]["Rules"]]  # type: ignore[misc]
            },
        )

    def _create_tables(self, resolved: ResolvedTemplate) -> None:
        """Every DynamoDB table of the template, with its keys and TTL (the idempotency table)."""
        dynamodb = boto3.client("dynamodb")
        for logical_id, resource in resolved.resources.items():
            if resource["Type"] != "AWS::DynamoDB::Table":
                continue
            props = resolved.resolve(resource["Properties"])
            name = resolved.physical_name(logical_id)
            dynamodb.create_table(
                TableName=name,
                AttributeDefinitions=props["AttributeDefinitions"],
                KeySchema=props["KeySchema"],
                BillingMode=props["BillingMode"],
            )
            if "TimeToLiveSpecification" in props:
                dynamodb.update_time_to_live(
                    TableName=name, TimeToLiveSpecification=props["TimeToLiveSpecification"]
                )

    def _store_credentials(self, resolved: ResolvedTemplate, credentials: Credentials) -> None:
        self.credentials_parameter = resolved.parameters["CredentialsParameterName"]
        boto3.client("ssm").put_parameter(
            Name=self.credentials_parameter,
            Type="SecureString",
            Value=json.dumps({"appId": credentials.app_id, "appSecret": credentials.secret}),
            Overwrite=True,
        )

    def _configure_functions(self, resolved: ResolvedTemplate, polyv_base_url: str | None) -> None:
        assert self.moto is not None
        environment: dict[str, str] = {}
        functions = resolved.functions()
        for function in functions:
            for name, value in function.environment.items():
                if environment.get(name, value) != value:
                    # All functions share this process's environment: a clash would silently mislead.
                    raise ValueError(f"functions disagree on {name}; the local stack cannot host both")
                environment[name] = value
        if polyv_base_url:
            environment["POLYV_API_BASE_URL"] = polyv_base_url
        if self.emulator is not None:
            # The emulator serves downloads over plain HTTP on loopback: allow exactly that origin.
            environment["POLYV_DOWNLOAD_ALLOW"] = (
                f"{environment['POLYV_DOWNLOAD_ALLOW']},{self.emulator.base_url}"
            )
        # stdout belongs to the tool running the stack (`run --json`, `invoke`): logs and metrics use stderr.
        environment["POLYV_RETRIEVER_FUNCTION_OUTPUT"] = "stderr"
        environment.update(self.options.function_environment)
        os.environ.update(environment)
        for function in functions:
            timeout = self.options.function_timeouts.get(function.logical_id, function.timeout)
            self.moto.register_function(
                function.logical_id, _load_handler(function.handler), timeout, function.memory
            )

    def _create_state_machines(self, resolved: ResolvedTemplate) -> None:
        """Every state machine of the template (the retrieval's and the per-video transfer's), each at the
        ARN the template hands to the functions."""
        sfn = boto3.client("stepfunctions")
        for logical_id in resolved.state_machine_ids():
            name, definition = resolved.state_machine(logical_id)
            created = sfn.create_state_machine(
                name=name,
                definition=definition,
                roleArn=f"arn:aws:iam::123456789012:role/{name}Role",
                type="STANDARD",
            )
            expected = resolved.resolve({"Ref": logical_id})
            if created["stateMachineArn"] != expected:
                raise RuntimeError(f"template resolves {logical_id} to {expected}, moto created {created}")
            if logical_id == "RetrievalStateMachine":
                self.state_machine_arn = created["stateMachineArn"]

    def _create_event_rules(self, resolved: ResolvedTemplate) -> None:
        """The template's EventBridge rules, as written, on moto's EventBridge. moto cannot deliver to SNS,
        so an SQS queue stands in for the notification topic: it receives exactly what the topic would
        (the rule's pattern and input transformer applied), and ``notificationQueueUrl`` names it."""
        events, sqs = boto3.client("events"), boto3.client("sqs")
        topic_queue = sqs.create_queue(QueueName="NotificationTopic")["QueueUrl"]
        topic_arn = sqs.get_queue_attributes(QueueUrl=topic_queue, AttributeNames=["QueueArn"])
        self.notification_queue_url = topic_queue
        buses = {"default"}
        for logical_id, rule in resolved.event_rules().items():
            bus = rule.get("EventBusName", "default")
            if bus not in buses:
                events.create_event_bus(Name=bus)
                buses.add(bus)
            events.put_rule(Name=logical_id, EventPattern=json.dumps(rule["EventPattern"]), EventBusName=bus)
            targets = []
            for target in rule["Targets"]:
                if target["Arn"] != resolved.resolve({"Ref": "NotificationTopic"}):
                    raise ValueError(f"{logical_id}: the local stack only knows the notification topic")
                targets.append({**target, "Arn": topic_arn["Attributes"]["QueueArn"]})
            events.put_targets(Rule=logical_id, EventBusName=bus, Targets=targets)


def _load_handler(path: str) -> Any:
    module, _, attribute = path.rpartition(".")
    return getattr(importlib.import_module(module), attribute)


def _lifecycle_rule(rule: dict[str, Any]) -> dict[str, Any]:
    """CloudFormation's lifecycle rule shape -> the S3 API's."""
    converted: dict[str, Any] = {
        "ID": rule["Id"],
        "Status": rule["Status"],
        "Filter": {"Prefix": rule.get("Prefix", "")},
    }
    if "AbortIncompleteMultipartUpload" in rule:
        converted["AbortIncompleteMultipartUpload"] = rule["AbortIncompleteMultipartUpload"]
    if "ExpirationInDays" in rule:
        converted["Expiration"] = {"Days": int(rule["ExpirationInDays"])}
    return converted
