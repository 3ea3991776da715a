"""`make deploy`'s checks around sam deploy, against a moto server: the parameter first, the outputs after."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import boto3

ROOT = Path(__file__).resolve().parents[2]


def helper(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(ROOT / "infra/tools/deploy_helper.py"), *args],
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_a_missing_credentials_parameter_stops_the_deploy_with_the_command_that_creates_it() -> None:
    result = helper("preflight", "/polyv-retriever/not-created", "us-east-1")
    assert result.returncode == 2
    (line,) = result.stderr.splitlines()
    assert "does not exist" in line
    assert (
        "aws ssm put-parameter --region us-east-1 --type SecureString --name /polyv-retriever/not-created"
        in line
    )


def test_an_existing_parameter_passes_without_showing_the_secret() -> None:
    boto3.client("ssm").put_parameter(
        Name="/polyv-retriever/deploy-test",
        Type="SecureString",
        Overwrite=True,
        Value=json.dumps({"appId": "app-123", "appSecret": "s3cr3t-value"}),
    )
    result = helper("preflight", "/polyv-retriever/deploy-test", "us-east-1")
    assert result.returncode == 0, result.stderr
    assert "app-123" in result.stdout
    assert "s3cr3t-value" not in result.stdout + result.stderr


def test_after_deploy_the_api_url_and_a_request_to_copy() -> None:
    api = "https://abc123.execute-api.us-east-1.amazonaws.com/v1"
    template = {
        "Resources": {"Topic": {"Type": "AWS::SNS::Topic"}},
        "Outputs": {"ApiUrl": {"Value": api}, "BucketName": {"Value": "my-bucket"}},
    }
    boto3.client("cloudformation").create_stack(StackName="deploy-test", TemplateBody=json.dumps(template))
    result = helper("outputs", "deploy-test", "us-east-1")
    assert result.returncode == 0, result.stderr
    assert f"API:     {api}" in result.stdout
    assert f"{api}/retrievals" in result.stdout
    assert "awscurl --service execute-api --region us-east-1 -X POST" in result.stdout
    # the project's own client, pointed at this stack: the command a user copies must be one the CLI takes
    submit = next(line.strip() for line in result.stdout.splitlines() if "polyv-retriever submit" in line)
    assert (
        submit
        == "polyv-retriever submit --stack-name deploy-test --region us-east-1 YOUR_VID --expire-days 3"
    )
    assert (
        "polyv-retriever get --stack-name deploy-test --region us-east-1 RETRIEVAL_ID --wait" in result.stdout
    )
