"""template.yaml's operations block: who hears about what and through which wire, checked on the template."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from polyv_retriever import observability
from polyv_retriever.local_stack.template import ResolvedTemplate, load_template
from polyv_retriever.transfer.engine import TransferSettings

TEMPLATE = load_template()
RESOURCES: dict[str, dict[str, Any]] = TEMPLATE["Resources"]
FUNCTIONS = sorted(k for k, v in RESOURCES.items() if v["Type"] == "AWS::Serverless::Function")
TOPIC = {"Ref": "NotificationTopic"}


def of_type(kind: str) -> dict[str, dict[str, Any]]:
    return {k: v["Properties"] for k, v in RESOURCES.items() if v["Type"] == kind}


def alarms_on(metric: str) -> dict[str, dict[str, Any]]:
    return {k: p for k, p in of_type("AWS::CloudWatch::Alarm").items() if p["MetricName"] == metric}


def test_every_alarm_notifies_the_topic() -> None:
    alarms = of_type("AWS::CloudWatch::Alarm")
    assert len(alarms) >= 12
    for name, props in alarms.items():
        assert props["AlarmActions"] == [TOPIC], name
        assert props["TreatMissingData"] == "notBreaching", name


@pytest.mark.parametrize("metric", ["ExecutionsFailed", "ExecutionsTimedOut"])
def test_failed_and_timed_out_executions_alarm_at_the_first_one(metric: str) -> None:
    (props,) = alarms_on(metric).values()
    assert props["Dimensions"] == [{"Name": "StateMachineArn", "Value": {"Ref": "RetrievalStateMachine"}}]
    assert (props["Threshold"], props["ComparisonOperator"]) == (1, "GreaterThanOrEqualToThreshold")


@pytest.mark.parametrize("metric", ["Errors", "Throttles"])
def test_each_function_has_its_errors_and_throttles_alarm(metric: str) -> None:
    watched = sorted(p["Dimensions"][0]["Value"]["Ref"] for p in alarms_on(metric).values())
    assert watched == FUNCTIONS


def test_api_5xx_and_the_transfer_near_its_timeout_alarm() -> None:
    (api,) = alarms_on("5XXError").values()
    assert {d["Name"] for d in api["Dimensions"]} == {"ApiName", "Stage"}
    assert RESOURCES["RetrievalApi"]["Properties"]["Name"] == {
        "Fn::Sub": api["Dimensions"][0]["Value"]["Fn::Sub"]
    }
    (duration,) = alarms_on("Duration").values()
    timeout_ms = RESOURCES["TransferFunction"]["Properties"]["Timeout"] * 1000
    normal_stop_ms = timeout_ms - TransferSettings.from_env().time_reserve_seconds * 1000
    # Above where a transfer normally stops to continue, below the timeout itself.
    assert normal_stop_ms < duration["Threshold"] < timeout_ms
    assert duration["Statistic"] == "Maximum"


def test_the_topic_takes_an_optional_email_and_lets_rules_and_alarms_publish() -> None:
    subscription = RESOURCES["NotificationEmailSubscription"]
    assert subscription["Condition"] == "HasNotificationEmail"
    assert subscription["Properties"]["Endpoint"] == {"Ref": "NotificationEmail"}
    assert TEMPLATE["Parameters"]["NotificationEmail"]["Default"] == ""
    statements = RESOURCES["NotificationTopicPolicy"]["Properties"]["PolicyDocument"]["Statement"]
    assert {s["Principal"]["Service"] for s in statements} == {
        "events.amazonaws.com",
        "cloudwatch.amazonaws.com",
    }


def test_executions_that_end_badly_notify_and_only_this_state_machines() -> None:
    rule = RESOURCES["ExecutionEndedRule"]["Properties"]
    pattern = rule["EventPattern"]
    assert pattern["source"] == ["aws.states"]
    assert sorted(pattern["detail"]["status"]) == ["ABORTED", "FAILED", "TIMED_OUT"]
    assert pattern["detail"]["stateMachineArn"] == [{"Ref": "RetrievalStateMachine"}]
    assert rule["Targets"][0]["Arn"] == TOPIC


@pytest.mark.parametrize(
    ("notify_on", "outcomes"), [("ALL", ["COMPLETE", "PARTIAL"]), ("PROBLEMS", ["PARTIAL"])]
)
def test_the_completion_rule_matches_the_projects_event_on_the_configured_bus(
    notify_on: str, outcomes: list[str]
) -> None:
    resolved = ResolvedTemplate(TEMPLATE, {"NotifyOn": notify_on, "EventBusName": "team-bus"})
    rule = resolved.resolve(RESOURCES["RetrievalCompletedRule"]["Properties"])
    assert rule["EventBusName"] == "team-bus"
    assert rule["EventPattern"]["source"] == [observability.SOURCE]
    assert rule["EventPattern"]["detail-type"] == [observability.COMPLETED]
    assert rule["EventPattern"]["detail"]["outcome"] == outcomes
    finalize = resolved.resolve(RESOURCES["FinalizeFunction"]["Properties"])
    assert finalize["Environment"]["Variables"]["EVENT_BUS_NAME"] == "team-bus"
    (put,) = [s for s in finalize["Policies"][0]["Statement"] if s["Action"] == "events:PutEvents"]
    assert put["Resource"].endswith(":event-bus/team-bus")


def transform(transformer: dict[str, Any], event: dict[str, Any]) -> str:
    """EventBridge's input transformer: each <name> becomes the value at its JSON path."""
    values = {}
    for name, path in transformer["InputPathsMap"].items():
        value: Any = event
        for part in path.removeprefix("$.").split("."):
            value = value[part]
        values[name] = value
    text = re.sub(r"<(\w+)>", lambda m: str(values[m[1]]), transformer["InputTemplate"])
    return str(json.loads(text))


def test_the_completion_notice_reads_as_a_sentence_from_the_real_event() -> None:
    summary = {
        "taskId": "t" * 32,
        "outcome": "PARTIAL",
        "counts": {"COPIED": 4, "SKIPPED": 0, "FAILED": 0, "POLYV_FAIL": 1},
        "bytes": 174067938,
        "manifest": "s3://b/polyv/t/manifest.json",
    }
    detail = observability.completion_detail(summary, execution="t" * 32, started_at=1.0, now=2.0)
    transformer = RESOURCES["RetrievalCompletedRule"]["Properties"]["Targets"][0]["InputTransformer"]
    notice = transform(transformer, {"detail": detail})
    assert notice == (
        f"polyv-retriever: retrieval {'t' * 32} finished PARTIAL: 4 copied, 0 already there, 0 failed, "
        "1 failed on Polyv; 174067938 bytes. Manifest: s3://b/polyv/t/manifest.json"
    )
    ended = RESOURCES["ExecutionEndedRule"]["Properties"]["Targets"][0]["InputTransformer"]
    assert "ended TIMED_OUT" in transform(ended, {"detail": {"name": "abc", "status": "TIMED_OUT"}})


def test_tracing_is_on_for_functions_state_machine_and_api() -> None:
    assert TEMPLATE["Globals"]["Function"]["Tracing"] == "Active"
    state_machines = [k for k, v in RESOURCES.items() if v["Type"] == "AWS::Serverless::StateMachine"]
    assert sorted(state_machines) == ["RetrievalStateMachine", "TransferStateMachine"]
    for name in state_machines:
        assert RESOURCES[name]["Properties"].get("Tracing") == {"Enabled": True}, name
    assert RESOURCES["RetrievalApi"]["Properties"]["TracingEnabled"] is True


def test_every_function_gets_the_metrics_namespace_parameter() -> None:
    resolved = ResolvedTemplate(TEMPLATE, {"MetricsNamespace": "Team/Polyv"})
    for function in resolved.functions():
        assert function.environment["POWERTOOLS_METRICS_NAMESPACE"] == "Team/Polyv", function.logical_id


def test_api_access_logs_are_json_without_bodies_or_query_strings() -> None:
    settings = RESOURCES["RetrievalApi"]["Properties"]["AccessLogSetting"]
    assert settings["DestinationArn"] == {"Fn::GetAtt": ["ApiAccessLogGroup", "Arn"]}
    line = json.loads(settings["Format"])  # the format itself is one JSON object
    assert {"requestId", "status", "resource", "latencyMs"} <= set(line)
    assert not re.search(r"querystring|\.path\b|body|header", settings["Format"], re.IGNORECASE)
    assert RESOURCES["ApiAccessLogGroup"]["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionDays"}


def test_the_dashboard_is_valid_json_showing_every_function_and_the_namespace() -> None:
    resolved = ResolvedTemplate(TEMPLATE, {"MetricsNamespace": "Team/Polyv"})
    body = json.loads(resolved.resolve(RESOURCES["Dashboard"]["Properties"]["DashboardBody"]))
    text = json.dumps(body)
    titles = [w["properties"]["title"] for w in body["widgets"]]
    assert any("status" in t for t in titles)
    assert any("throughput" in t for t in titles)
    assert any("outcome" in t for t in titles)
    assert any("Polyv errors" in t for t in titles)
    assert any("timeout" in t for t in titles)
    for function in FUNCTIONS:
        assert function in text
    assert "Team/Polyv" in text
